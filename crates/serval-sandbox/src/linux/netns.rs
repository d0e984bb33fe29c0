//! Network namespaces for `--network none`.
//!
//! Each such environment runs in a network namespace of its own that holds only loopback, with
//! its Runtime API socket bound inside at `127.0.0.1:9001`: the function reaches the Runtime API
//! and nothing else, and every environment uses the same address because the namespaces differ.
//! The server keeps the listening socket (it accepts on it from its own namespace; a socket stays
//! in the namespace it was created in) and a descriptor of the namespace, which the sandbox child
//! joins with `setns` before it executes the runtime.
//!
//! Creating a namespace costs under a millisecond with a long tail, so [`NetnsPool`] keeps a few
//! ready on a thread of its own and a cold start takes one.
//!
//! Not for: any network beyond loopback (no veth, bridge or NAT: `--network host` uses the
//! server's own namespace), nor joining a namespace (the sandbox child does that).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the Runtime API listens inside every isolated namespace.
const RUNTIME_API_ADDRESS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9001));

/// The first wait of the refill thread after a failed creation; doubled per failure in a row.
const REFILL_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait of the refill thread between failed creations.
const REFILL_RETRY_MAX: Duration = Duration::from_secs(5);

/// A ready network namespace with loopback up and the Runtime API socket bound inside it.
#[derive(Debug)]
pub struct IsolatedNet {
    /// The namespace (`/proc/thread-self/ns/net` of the thread that made it), for `setns`.
    pub netns: OwnedFd,
    /// Non-blocking, bound to `address` inside the namespace.
    pub listener: TcpListener,
    /// `127.0.0.1:9001`, as seen from inside the namespace.
    pub address: SocketAddr,
}

/// A step of [`create`] that failed; travels inside the `io::Error` it returns.
#[derive(Debug, thiserror::Error)]
#[error("failed to {step}")]
struct NetnsError {
    step: &'static str,
    #[source]
    source: io::Error,
}

/// Wraps an `io::Error` from `step`, keeping its kind.
fn failed(step: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |source| io::Error::new(source.kind(), NetnsError { step, source })
}

/// Creates one (blocking): on a thread of its own, `unshare(CLONE_NEWNET)`, brings `lo` up
/// (`SIOCSIFFLAGS`), binds `127.0.0.1:9001` non-blocking and opens `/proc/thread-self/ns/net`.
///
/// The thread ends right after; the namespace lives on as long as the descriptor or the socket.
/// The calling thread's namespace is untouched. Needs `CAP_SYS_ADMIN`.
pub fn create() -> io::Result<IsolatedNet> {
    std::thread::Builder::new()
        .name("serval-netns".to_owned())
        .spawn(create_on_this_thread)
        .map_err(failed("spawn a network namespace thread"))?
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?
}

/// Moves the calling thread into a new network namespace and sets it up. The thread must not do
/// anything else afterwards: it ends in that namespace.
fn create_on_this_thread() -> io::Result<IsolatedNet> {
    // SAFETY: takes no pointers; changes only this thread's network namespace (a network
    // namespace is per thread, so other threads of the process are unaffected).
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(failed("unshare a network namespace")(
            io::Error::last_os_error(),
        ));
    }
    bring_loopback_up().map_err(failed("bring lo up in a new network namespace"))?;
    let listener = TcpListener::bind(RUNTIME_API_ADDRESS)
        .map_err(failed("bind 127.0.0.1:9001 in a new network namespace"))?;
    listener
        .set_nonblocking(true)
        .map_err(failed("make the runtime api socket non-blocking"))?;
    // std opens with O_RDONLY | O_CLOEXEC.
    let netns =
        File::open("/proc/thread-self/ns/net").map_err(failed("open /proc/thread-self/ns/net"))?;
    Ok(IsolatedNet {
        netns: OwnedFd::from(netns),
        listener,
        address: RUNTIME_API_ADDRESS,
    })
}

/// Sets `IFF_UP` on `lo` of the calling thread's network namespace.
fn bring_loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    // SAFETY: `ifreq` is plain old data (a name and a union of integers, addresses and a
    // pointer); all zeroes is a valid value of it.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads `ifr_name` and writes `ifru_flags` of the `ifreq` we pass,
    // which lives for the whole call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just set `ifru_flags`, the union's active field after SIOCGIFFLAGS.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `ifr_name` and `ifru_flags` of the `ifreq` we pass.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How the pool makes a namespace: [`create`], or a stand-in in tests.
type Factory = fn() -> io::Result<IsolatedNet>;

/// Keeps a few namespaces ready so a cold start does not pay for creating one.
///
/// A dedicated thread refills the pool up to its target whenever one is taken. Dropping the pool
/// stops that thread (waiting for at most one creation in progress) and closes the namespaces
/// still ready.
pub struct NetnsPool {
    shared: Arc<Shared>,
    refiller: Option<JoinHandle<()>>,
    create: Factory,
}

/// What the pool's handle and its refill thread share.
struct Shared {
    state: Mutex<PoolState>,
    /// Wakes the refill thread: a namespace was taken, or the pool is shutting down.
    wake: Condvar,
    target: usize,
}

struct PoolState {
    ready: VecDeque<IsolatedNet>,
    shutdown: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl NetnsPool {
    /// Starts the pool: `target` namespaces kept ready, refilled on a dedicated thread. With a
    /// `target` of 0 there is no thread and [`NetnsPool::take`] always creates one.
    pub fn new(target: usize) -> io::Result<NetnsPool> {
        Self::with_factory(target, create)
    }

    fn with_factory(target: usize, create: Factory) -> io::Result<NetnsPool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(PoolState {
                ready: VecDeque::with_capacity(target),
                shutdown: false,
            }),
            wake: Condvar::new(),
            target,
        });
        let refiller = if target == 0 {
            None
        } else {
            let shared = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name("serval-netns-pool".to_owned())
                .spawn(move || refill(&shared, create))?;
            Some(thread)
        };
        Ok(NetnsPool {
            shared,
            refiller,
            create,
        })
    }

    /// A ready namespace (or one created now on a blocking thread if the pool is empty).
    pub async fn take(&self) -> io::Result<IsolatedNet> {
        let ready = self.shared.lock().ready.pop_front();
        if let Some(net) = ready {
            self.shared.wake.notify_one();
            return Ok(net);
        }
        tokio::task::spawn_blocking(self.create)
            .await
            .map_err(io::Error::other)?
    }
}

impl Drop for NetnsPool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.refiller.take() {
            if thread.join().is_err() {
                tracing::warn!("network namespace pool thread panicked");
            }
        }
    }
}

/// The refill thread: keeps `shared.target` namespaces ready until shutdown.
fn refill(shared: &Shared, create: Factory) {
    let mut retry = REFILL_RETRY_FIRST;
    loop {
        {
            let mut state = shared.lock();
            while !state.shutdown && state.ready.len() >= shared.target {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.shutdown {
                return;
            }
        }
        match create() {
            Ok(net) => {
                retry = REFILL_RETRY_FIRST;
                let mut state = shared.lock();
                if state.shutdown {
                    return;
                }
                state.ready.push_back(net);
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    retry_ms = retry.as_millis() as u64,
                    "failed to create a network namespace for the pool"
                );
                let state = shared.lock();
                let (state, _) = shared
                    .wake
                    .wait_timeout_while(state, retry, |state| !state.shutdown)
                    .unwrap_or_else(PoisonError::into_inner);
                if state.shutdown {
                    return;
                }
                retry = (retry * 2).min(REFILL_RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;
    use std::os::fd::AsFd;
    use std::time::Instant;

    fn running_as_root() -> bool {
        // SAFETY: geteuid has no arguments and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// (device, inode) of what `fd` refers to: equal for the same namespace.
    fn identity(fd: impl AsFd) -> (u64, u64) {
        let file = File::from(fd.as_fd().try_clone_to_owned().expect("dup"));
        let meta = file.metadata().expect("fstat");
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }

    /// Runs `f` on a new thread that first joins the network namespace `netns`.
    fn in_netns<T: Send + 'static>(netns: &OwnedFd, f: impl FnOnce() -> T + Send + 'static) -> T {
        let netns = netns.try_clone().expect("dup the namespace descriptor");
        std::thread::spawn(move || {
            // SAFETY: `netns` is an open namespace descriptor; setns only changes this thread's
            // network namespace, and the thread ends after `f`.
            let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the namespace")
    }

    /// Accepts one connection on a non-blocking listener, waiting up to a few seconds.
    fn accept_one(listener: &TcpListener) -> TcpStream {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match listener.accept() {
                Ok((stream, _)) => return stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    #[test]
    fn binds_runtime_api_inside_a_namespace_of_its_own() {
        if !running_as_root() {
            eprintln!("skipping: creating a network namespace needs root");
            return;
        }
        let net = create().expect("create a namespace");
        assert_eq!(net.address, RUNTIME_API_ADDRESS);
        assert_eq!(net.listener.local_addr().unwrap(), RUNTIME_API_ADDRESS);
        let host_ns = File::open("/proc/thread-self/ns/net").expect("open the host namespace");
        assert_ne!(identity(&net.netns), identity(&host_ns));

        let host_listener = TcpListener::bind("127.0.0.1:0").expect("bind on the host");
        let host_address = host_listener.local_addr().unwrap();
        let (mut inside, to_host, devices) = in_netns(&net.netns, move || {
            let inside = TcpStream::connect(RUNTIME_API_ADDRESS);
            let to_host = TcpStream::connect(host_address);
            let mut devices = String::new();
            File::open("/proc/thread-self/net/dev")
                .and_then(|mut f| f.read_to_string(&mut devices))
                .expect("read /proc/thread-self/net/dev");
            (inside, to_host, devices)
        });
        let inside = inside.as_mut().expect("connect to the runtime api inside");
        let accepted = accept_one(&net.listener);
        assert_eq!(
            accepted.peer_addr().unwrap(),
            inside.local_addr().unwrap(),
            "accepted the connection made inside"
        );
        let error = to_host.expect_err("the host's loopback must be unreachable");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);

        // /proc/net/dev: two header lines, then "<name>: <counters>" per interface.
        let names: Vec<&str> = devices
            .lines()
            .skip(2)
            .filter_map(|line| line.split(':').next())
            .map(str::trim)
            .collect();
        assert_eq!(names, ["lo"]);
    }

    #[test]
    fn leaves_the_calling_thread_in_its_namespace() {
        if !running_as_root() {
            eprintln!("skipping: creating a network namespace needs root");
            return;
        }
        let before = identity(File::open("/proc/thread-self/ns/net").unwrap());
        let _net = create().expect("create a namespace");
        let after = identity(File::open("/proc/thread-self/ns/net").unwrap());
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn pool_hands_out_distinct_namespaces() {
        if !running_as_root() {
            eprintln!("skipping: creating a network namespace needs root");
            return;
        }
        let pool = NetnsPool::new(2).expect("start the pool");
        let mut seen = Vec::new();
        // More than the target, so some come from the pool and some may be created on demand.
        for _ in 0..5 {
            let net = pool.take().await.expect("take a namespace");
            assert_eq!(net.listener.local_addr().unwrap(), RUNTIME_API_ADDRESS);
            seen.push(net);
        }
        let mut ids: Vec<_> = seen.iter().map(|net| identity(&net.netns)).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), seen.len(), "every namespace is a new one");
    }

    /// A stand-in for [`create`] that needs no privileges: /dev/null as the namespace and an
    /// ephemeral port on the host.
    fn fake_create() -> io::Result<IsolatedNet> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        Ok(IsolatedNet {
            netns: File::open("/dev/null")?.into(),
            address: listener.local_addr()?,
            listener,
        })
    }

    fn failing_create() -> io::Result<IsolatedNet> {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    }

    /// Waits until the pool holds `count` ready namespaces (panics after a few seconds).
    fn wait_until_ready(pool: &NetnsPool, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.shared.lock().ready.len() != count {
            assert!(
                Instant::now() < deadline,
                "pool never reached {count} ready"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[tokio::test]
    async fn refills_after_a_namespace_is_taken() {
        let pool = NetnsPool::with_factory(2, fake_create).expect("start the pool");
        wait_until_ready(&pool, 2);
        let first = pool.take().await.expect("take");
        let second = pool.take().await.expect("take");
        assert_ne!(first.address, second.address);
        wait_until_ready(&pool, 2);
    }

    #[tokio::test]
    async fn creates_on_demand_when_empty() {
        let pool = NetnsPool::with_factory(0, fake_create).expect("start the pool");
        assert!(pool.refiller.is_none());
        pool.take().await.expect("take from an empty pool");

        let pool = NetnsPool::with_factory(1, failing_create).expect("start the pool");
        let error = pool.take().await.expect_err("the factory fails");
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn dropping_the_pool_ends_its_thread() {
        let pool = NetnsPool::with_factory(3, fake_create).expect("start the pool");
        wait_until_ready(&pool, 3);
        let shared = Arc::downgrade(&pool.shared);
        drop(pool);
        // The thread held the other reference; it is gone once the thread has ended.
        assert!(shared.upgrade().is_none(), "refill thread still running");

        // Also while it backs off after failures.
        let pool = NetnsPool::with_factory(1, failing_create).expect("start the pool");
        let shared = Arc::downgrade(&pool.shared);
        drop(pool);
        assert!(shared.upgrade().is_none(), "refill thread still running");
    }
}
