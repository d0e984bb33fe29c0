//! The `linux` backend: each environment in its own pid, mount, IPC and UTS namespaces (and
//! network namespace with `--network none`), on a read-only root built from the host's system
//! directories, as an unprivileged user with no capabilities under a seccomp filter, inside a
//! cgroup that limits memory, CPU and processes and freezes it while idle.
//!
//! How an environment starts: on one long-lived spawner thread (so `PR_SET_PDEATHSIG` ties pid 1
//! to the server's life), the backend creates the environment's cgroup with its limits, builds
//! the [`child::ChildPlan`] and clones pid 1, which sets everything up and execs the runtime
//! (see [`child`]). The caller then awaits the set-up pipe: end-of-file means the runtime was
//! exec'd, a record means a step failed. The instance waits on pid 1's pidfd; pid 1 reports the
//! runtime's exit status before it exits.
//!
//! CPU: an environment's quota (its memory over 1,769 MB, of one core) applies from the end of
//! its init ([`SandboxControl::initialized`]); init runs unthrottled, so a cold start does not
//! crawl at 128 MB.
//!
//! Clean-up: ending an environment kills pid 1 (the kernel then kills its whole pid namespace),
//! kills whatever is left in the cgroup and removes the cgroup. Mounts live only in the
//! environment's own mount namespace and vanish with it; nothing is mounted on the host.
//!
//! Not for: unprivileged operation. The backend needs root (`CAP_SYS_ADMIN`); user-namespace
//! mode is not implemented, and [`LinuxSandbox::new`] says so.

pub mod cgroup;
mod child;
pub mod netns;
pub mod seccomp;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serval_model::EnvironmentId;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, Notify};

use self::cgroup::{CgroupLimits, Cgroups, EnvCgroup};
use self::child::{ChildPlan, RootSpec, RootTemplate, Stage};
use self::netns::NetnsPool;
use self::seccomp::SeccompFilter;
use crate::process::ExecImage;
use crate::{
    Endpoint, ExitInfo, Layout, MemoryUsage, Network, Sandbox, SandboxControl, SandboxError,
    SandboxInstance, SandboxSpec,
};

/// The user functions run as: AWS's `sbx_user1051`.
pub const SANDBOX_UID: u32 = 993;
pub const SANDBOX_GID: u32 = 990;
/// Where the Runtime API listens inside an environment's own network namespace.
pub const ISOLATED_RUNTIME_API_PORT: u16 = 9001;
/// Memory that buys one full core, as on AWS.
pub const MB_PER_CORE: f64 = 1769.0;
/// Processes and threads per environment, as on AWS.
pub const DEFAULT_PIDS_MAX: u32 = 1024;
/// Open files per process, as on AWS.
pub const NOFILE_LIMIT: u64 = 1024;
/// Namespaces kept ready for `--network none`.
const NETNS_POOL_TARGET: usize = 4;
/// How long pid 1 may take to set up and exec before the environment is abandoned.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The network functions get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network: the function reaches what the host reaches (local development).
    Host,
    /// Only a loopback of its own; the Runtime API is the one thing it can connect to.
    None,
}

impl NetworkMode {
    pub fn name(self) -> &'static str {
        match self {
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }
}

/// How the server configures the backend.
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    pub network: NetworkMode,
    /// Where `/usr`, `/etc` and the `/bin`, `/lib*`, `/sbin` entries come from: the host's `/`
    /// by default, or an operator's root file system (a debootstrap'd tree, say).
    pub rootfs: Option<PathBuf>,
    /// Host directories shown read-only at the same path (interpreter install prefixes).
    pub extra_dirs: Vec<PathBuf>,
    /// A directory of the server's own for the backend's files (staging root, passwd).
    pub work_dir: PathBuf,
    /// Processes and threads per environment.
    pub pids_max: u32,
}

/// Why the backend cannot run here.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Unavailable {
    pub reason: String,
}

fn unavailable(reason: impl Into<String>) -> Unavailable {
    Unavailable {
        reason: reason.into(),
    }
}

type Job = Box<dyn FnOnce(&mut Stacks) + Send>;

/// The stacks pid 1 and the runtime's vfork child start on. Reused: each clone gets a copy.
struct Stacks {
    init: Vec<u8>,
    runtime: Vec<u8>,
}

const STACK_BYTES: usize = 256 * 1024;

fn stack_top(stack: &mut [u8]) -> *mut libc::c_void {
    // x86_64 and aarch64 stacks grow down and want 16-byte alignment.
    let top = stack.as_mut_ptr() as usize + stack.len();
    (top & !15) as *mut libc::c_void
}

struct Inner {
    config: LinuxConfig,
    template: RootTemplate,
    cgroups: Cgroups,
    seccomp: SeccompFilter,
    netns: Option<NetnsPool>,
    jobs: std::sync::Mutex<mpsc::Sender<Job>>,
    server_pidfd: OwnedFd,
    argv_area: Option<(usize, usize)>,
    cleanups: AtomicUsize,
    cleaned: Notify,
}

/// The isolating backend. Create it inside a Tokio runtime.
pub struct LinuxSandbox {
    inner: Arc<Inner>,
}

impl LinuxSandbox {
    /// Prepares the backend: checks privileges, detects cgroups (removing stale groups of dead
    /// servers), builds the seccomp filter and the root template. Blocking.
    pub fn new(config: LinuxConfig) -> Result<LinuxSandbox, Unavailable> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(unavailable(
                "not running as root (the linux sandbox needs CAP_SYS_ADMIN; user-namespace mode is not implemented)",
            ));
        }
        let cgroups = Cgroups::init().map_err(|e| unavailable(error_chain(&e)))?;
        let seccomp = SeccompFilter::build().map_err(|e| unavailable(error_chain(&e)))?;
        let base = config.rootfs.clone().unwrap_or_else(|| PathBuf::from("/"));
        let system = RootTemplate::system_entries(&base).map_err(|e| {
            unavailable(format!(
                "cannot read root file system {}: {e}",
                base.display()
            ))
        })?;
        if !system
            .iter()
            .any(|e| matches!(e, child::SystemEntry::Dir { .. }))
        {
            return Err(unavailable(format!(
                "{} has none of {:?}",
                base.display(),
                child::SYSTEM_ENTRIES
            )));
        }
        let staging = config.work_dir.join("root");
        std::fs::create_dir_all(&staging)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", staging.display())))?;
        let passwd = write_passwd(&base, &config.work_dir)
            .map_err(|e| unavailable(format!("cannot write the sandbox passwd file: {e}")))?;
        let extra_dirs = config
            .extra_dirs
            .iter()
            .filter(|d| d.is_absolute() && d.is_dir() && !under_system_dir(d))
            .cloned()
            .collect();
        let template = RootTemplate {
            staging,
            system,
            extra_dirs,
            passwd: Some(passwd),
        };
        let netns = match config.network {
            NetworkMode::Host => None,
            NetworkMode::None => Some(
                NetnsPool::new(NETNS_POOL_TARGET)
                    .map_err(|e| unavailable(format!("cannot create network namespaces: {e}")))?,
            ),
        };
        // SAFETY: pidfd_open on our own pid; the result is checked.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
        if pidfd < 0 {
            return Err(unavailable(format!(
                "pidfd_open failed: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: a fresh descriptor we own.
        let server_pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        let jobs = start_spawner()
            .map_err(|e| unavailable(format!("cannot start the spawner thread: {e}")))?;
        Ok(LinuxSandbox {
            inner: Arc::new(Inner {
                config,
                template,
                cgroups,
                seccomp,
                netns,
                jobs: std::sync::Mutex::new(jobs),
                server_pidfd,
                argv_area: argv_area(),
                cleanups: AtomicUsize::new(0),
                cleaned: Notify::new(),
            }),
        })
    }

    /// What the start-up line says after `linux`: `running as root; cgroup v1; network host`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "running as root; {}; network {}",
            self.inner.cgroups.describe(),
            self.inner.config.network.name()
        );
        if let Some(rootfs) = &self.inner.config.rootfs {
            s.push_str(&format!("; rootfs {}", rootfs.display()));
        }
        s
    }

    /// Runs every step of an environment's set-up and proves it reached the final `execve`: the
    /// program is a path that cannot exist inside, so a working sandbox answers "no such file"
    /// from the exec step, whatever the root file system holds. Checks that this kernel allows
    /// everything before the server commits to the backend.
    pub async fn self_test(&self) -> Result<(), Unavailable> {
        let probe = self.inner.config.work_dir.join("probe");
        std::fs::create_dir_all(&probe)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", probe.display())))?;
        let endpoint = self
            .endpoint()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        let (_reader, writer) =
            std::io::pipe().map_err(|e| unavailable(format!("cannot create a pipe: {e}")))?;
        let spec = SandboxSpec {
            env_id: EnvironmentId::next(),
            program: "/var/task/.serval-self-test-missing".into(),
            args: Vec::new(),
            env: Vec::new(),
            task_root: probe.clone(),
            runtime_dir: probe.clone(),
            tmp_dir: probe,
            memory_mb: 128,
            ephemeral_storage_mb: 16,
            output: writer.into(),
            network: endpoint.network,
        };
        match self.spawn(spec).await {
            Err(SandboxError::Spawn { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(())
            }
            Err(e) => Err(unavailable(format!("self-test: {}", error_chain(&e)))),
            Ok(mut instance) => {
                instance.control().kill();
                instance.wait().await;
                Err(unavailable("self-test: a missing program started"))
            }
        }
    }

    /// Waits for the clean-up of every ended environment, then removes this server's cgroups.
    pub async fn shutdown(&self) {
        self.settled().await;
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.cgroups.remove_parents()).await;
    }

    /// Waits until every ended environment is cleaned up (its cgroup removed).
    pub async fn settled(&self) {
        loop {
            let notified = self.inner.cleaned.notified();
            if self.inner.cleanups.load(Ordering::Acquire) == 0 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut s = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}

/// Whether `dir` lies in one of the system entries, which come from the root file system only
/// (never from the host when an operator gave `--rootfs`).
fn under_system_dir(dir: &Path) -> bool {
    child::SYSTEM_ENTRIES
        .iter()
        .any(|name| dir.starts_with(Path::new("/").join(name)))
}

/// The root's `/etc/passwd` plus the sandbox user, so `whoami` and `os.userInfo()` work.
fn write_passwd(base: &Path, work_dir: &Path) -> io::Result<PathBuf> {
    let mut text = std::fs::read_to_string(base.join("etc/passwd")).unwrap_or_default();
    let taken = text
        .lines()
        .any(|l| l.split(':').nth(2) == Some(&SANDBOX_UID.to_string()));
    if !taken {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "sbx_user1051:x:{SANDBOX_UID}:{SANDBOX_GID}::/tmp:/sbin/nologin\n"
        ));
    }
    let path = work_dir.join("passwd");
    let tmp = work_dir.join("passwd.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Where the kernel keeps this process's command line (`/proc/self/stat` fields 48 and 49).
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // Fields after the comm start at field 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (end > start).then_some((start, end - start))
}

fn start_spawner() -> io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("serval-linux-spawner".into())
        .spawn(move || {
            let mut stacks = Stacks {
                init: vec![0u8; STACK_BYTES],
                runtime: vec![0u8; STACK_BYTES],
            };
            for job in rx {
                job(&mut stacks);
            }
        })?;
    Ok(tx)
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What the spawner thread hands back: pid 1 and the read ends of its pipes.
struct Started {
    pidfd: OwnedFd,
    setup: OwnedFd,
    status: OwnedFd,
    cgroup: Arc<EnvCgroup>,
}

impl Inner {
    /// Creates the cgroup and clones pid 1. Runs on the spawner thread.
    fn start(&self, spec: SandboxSpec, stacks: &mut Stacks) -> Result<Started, SandboxError> {
        let env_id = spec.env_id;
        let control = |action: &'static str| {
            move |source: io::Error| SandboxError::Control {
                env_id,
                action,
                source,
            }
        };
        let cgroup = self
            .cgroups
            .create(
                env_id,
                &CgroupLimits {
                    memory_bytes: u64::from(spec.memory_mb) * 1024 * 1024,
                    pids_max: self.config.pids_max,
                    cpu_cores: None,
                },
            )
            .map_err(|e| SandboxError::Control {
                env_id,
                action: "create the cgroup of",
                source: io::Error::other(error_chain(&e)),
            })?;
        let cgroup = Arc::new(cgroup);
        let result = self.clone_init(&spec, &cgroup, stacks);
        match result {
            Ok((pidfd, setup, status)) => Ok(Started {
                pidfd,
                setup,
                status,
                cgroup,
            }),
            Err(e) => {
                let _ = cgroup.remove();
                Err(control("start")(e))
            }
        }
    }

    fn clone_init(
        &self,
        spec: &SandboxSpec,
        cgroup: &EnvCgroup,
        stacks: &mut Stacks,
    ) -> io::Result<(OwnedFd, OwnedFd, OwnedFd)> {
        let join = cgroup
            .open_join_files()
            .map_err(|e| io::Error::other(error_chain(&e)))?;
        let (setup_r, setup_w) = pipe_cloexec()?;
        let (status_r, status_w) = pipe_cloexec()?;
        let ops = child::plan_root(
            &self.template,
            &RootSpec {
                task_root: &spec.task_root,
                runtime_dir: &spec.runtime_dir,
                tmp_mb: spec.ephemeral_storage_mb,
                shm_mb: spec.memory_mb,
            },
        )?;
        let exec = ExecImage::new(spec)?;
        let plan = ChildPlan {
            ops,
            staging: CString::new(self.template.staging.as_os_str().as_encoded_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?,
            exec,
            cwd: c"/var/task".into(),
            hostname: c"localhost",
            uid: SANDBOX_UID,
            gid: SANDBOX_GID,
            nofile: NOFILE_LIMIT,
            join_fds: join.iter().map(|f| f.as_raw_fd()).collect(),
            netns_fd: match &spec.network {
                Network::Isolated(fd) => fd.as_raw_fd(),
                Network::Host => -1,
            },
            server_pidfd: self.server_pidfd.as_raw_fd(),
            output_fd: spec.output.as_raw_fd(),
            setup_fd: setup_w.as_raw_fd(),
            status_fd: status_w.as_raw_fd(),
            seccomp: &self.seccomp,
            argv_area: self.argv_area,
            runtime_stack_top: stack_top(&mut stacks.runtime),
        };
        let mut pidfd: libc::c_int = -1;
        let flags = libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_PIDFD
            | libc::SIGCHLD;
        // SAFETY: the child runs `sandbox_init` on its own copy of memory (no CLONE_VM), which
        // only makes system calls on the plan; the plan and stacks outlive the call here.
        let pid = unsafe {
            libc::clone(
                child::sandbox_init,
                stack_top(&mut stacks.init),
                flags,
                &plan as *const ChildPlan as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            )
        };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: CLONE_PIDFD stored a fresh descriptor we now own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        drop(plan);
        drop((setup_w, status_w, join));
        Ok((pidfd, setup_r, status_r))
    }
}

impl Inner {
    /// Kills, reaps and removes an environment nobody waits for. Runs on the spawner thread.
    fn abandon(&self, started: Started) {
        // SAFETY: pidfd_send_signal and waitid on our own child's pidfd; no pointers kept.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                started.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PIDFD,
                started.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            );
        }
        started.cgroup.kill_all();
        if let Err(error) = started.cgroup.remove() {
            tracing::warn!(error = %error_chain(&error), "failed to remove an abandoned environment's cgroup");
        }
    }
}

impl Sandbox for LinuxSandbox {
    type Instance = LinuxInstance;

    fn layout(&self, _host: &Layout) -> Layout {
        Layout {
            task_root: "/var/task".into(),
            runtime_dir: "/var/runtime".into(),
            tmp_dir: "/tmp".into(),
        }
    }

    fn enforces_memory_limit(&self) -> bool {
        true
    }

    async fn endpoint(&self) -> Result<Endpoint, SandboxError> {
        match &self.inner.netns {
            None => crate::process::loopback_endpoint(),
            Some(pool) => {
                let net = pool
                    .take()
                    .await
                    .map_err(|source| SandboxError::Endpoint { source })?;
                Ok(Endpoint {
                    listener: net.listener,
                    address: net.address,
                    network: Network::Isolated(net.netns),
                })
            }
        }
    }

    async fn spawn(&self, spec: SandboxSpec) -> Result<LinuxInstance, SandboxError> {
        let env_id = spec.env_id;
        let program = spec.program.display().to_string();
        let memory_mb = spec.memory_mb;
        let (reply, response) = oneshot::channel();
        let inner = self.inner.clone();
        let job: Job = Box::new(move |stacks| {
            // A caller that gave up in the meantime leaves the environment to be taken down here.
            if let Err(Ok(started)) = reply.send(inner.start(spec, stacks)) {
                inner.abandon(started);
            }
        });
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| SandboxError::BackendGone { env_id })?;
        let started = response
            .await
            .map_err(|_| SandboxError::BackendGone { env_id })??;
        let control = LinuxControl {
            env_id,
            shared: Arc::new(ControlShared {
                pidfd: started.pidfd,
                cgroup: started.cgroup,
                memory_mb,
                reaped: AtomicBool::new(false),
            }),
        };
        let mut instance = LinuxInstance {
            control,
            status: Some(started.status),
            inner: self.inner.clone(),
            done: false,
        };
        match read_setup(started.setup).await {
            Ok(None) => Ok(instance),
            Ok(Some((stage, errno))) => {
                instance.control.kill();
                instance.wait().await;
                let source = io::Error::from_raw_os_error(errno);
                if stage == Stage::Exec {
                    Err(SandboxError::Spawn {
                        env_id,
                        program,
                        source,
                    })
                } else {
                    Err(SandboxError::Setup {
                        env_id,
                        step: stage.describe(),
                        source,
                    })
                }
            }
            Err(source) => {
                instance.control.kill();
                instance.wait().await;
                Err(SandboxError::Setup {
                    env_id,
                    step: "report its set-up",
                    source,
                })
            }
        }
    }
}

/// Reads the set-up pipe to its end: `None` when the runtime was exec'd, else the failed step.
async fn read_setup(fd: OwnedFd) -> io::Result<Option<(Stage, i32)>> {
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut record = Vec::with_capacity(8);
    let read = tokio::time::timeout(SETUP_TIMEOUT, async {
        let mut buf = [0u8; 16];
        loop {
            let n = rx.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, io::Error>(());
            }
            record.extend_from_slice(&buf[..n]);
            if record.len() >= 8 {
                return Ok(());
            }
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "sandbox set-up timed out"))?;
    read?;
    if record.len() < 8 {
        return Ok(None);
    }
    let stage = u32::from_ne_bytes(record[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(record[4..8].try_into().expect("4 bytes"));
    let stage = Stage::from_u32(stage).unwrap_or(Stage::StartRuntime);
    Ok(Some((stage, errno)))
}

struct ControlShared {
    pidfd: OwnedFd,
    cgroup: Arc<EnvCgroup>,
    memory_mb: u32,
    reaped: AtomicBool,
}

/// A running environment of the `linux` backend.
pub struct LinuxInstance {
    control: LinuxControl,
    status: Option<OwnedFd>,
    inner: Arc<Inner>,
    done: bool,
}

impl LinuxInstance {
    /// Reaps pid 1 (blocking until it has exited if `block`); `None` while it still runs.
    fn reap(&self, block: bool) -> Option<libc::siginfo_t> {
        // SAFETY: an all-zero siginfo_t is valid; waitid writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
        loop {
            // SAFETY: waitid on our own child's pidfd.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    self.control.shared.pidfd.as_raw_fd() as libc::id_t,
                    &mut info,
                    flags,
                )
            };
            if rc == 0 {
                // SAFETY: si_pid is valid for SIGCHLD siginfo.
                return (unsafe { info.si_pid() } != 0).then_some(info);
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // ECHILD: already reaped elsewhere.
            return Some(info);
        }
    }

    fn exit_info(&mut self, info: &libc::siginfo_t) -> ExitInfo {
        let mut exit = ExitInfo::unknown();
        // The runtime's own status, if pid 1 lived to report it.
        let mut raw = [0u8; 4];
        let reported = self.status.take().is_some_and(|fd| {
            // SAFETY: reading into a local buffer from our pipe; pid 1 has exited so this does
            // not block (the write end is closed).
            let n = unsafe { libc::read(fd.as_raw_fd(), raw.as_mut_ptr().cast(), 4) };
            n == 4
        });
        if reported {
            let status = i32::from_ne_bytes(raw);
            if libc::WIFEXITED(status) {
                exit.code = Some(libc::WEXITSTATUS(status));
            } else if libc::WIFSIGNALED(status) {
                exit.signal = Some(libc::WTERMSIG(status));
            }
        } else {
            // SAFETY: si_status is valid for SIGCHLD siginfo.
            let status = unsafe { info.si_status() };
            match info.si_code {
                libc::CLD_EXITED => exit.code = Some(status),
                _ => exit.signal = Some(status),
            }
        }
        // The kernel's OOM killer sends SIGKILL; a counter left by a subprocess the function
        // survived does not make a later clean exit an OOM.
        exit.oom_killed =
            exit.signal == Some(libc::SIGKILL) && self.control.shared.cgroup.oom_killed();
        exit
    }

    /// Kills what is left and removes the cgroup, off the async threads; counted so shutdown
    /// can wait for it.
    fn clean_up(&mut self, reap_first: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let inner = self.inner.clone();
        let shared = self.control.shared.clone();
        let env_id = self.control.env_id;
        inner.cleanups.fetch_add(1, Ordering::AcqRel);
        let work = move || {
            if reap_first {
                // SAFETY: a zeroed siginfo_t is valid; blocking waitid on our child.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                unsafe {
                    libc::waitid(
                        libc::P_PIDFD,
                        shared.pidfd.as_raw_fd() as libc::id_t,
                        &mut info,
                        libc::WEXITED,
                    )
                };
                shared.reaped.store(true, Ordering::Release);
            }
            shared.cgroup.kill_all();
            if let Err(error) = shared.cgroup.remove() {
                tracing::warn!(env = %env_id, error = %error_chain(&error), "failed to remove an environment's cgroup");
            }
            if inner.cleanups.fetch_sub(1, Ordering::AcqRel) == 1 {
                inner.cleaned.notify_waiters();
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(work);
            }
            Err(_) => {
                let _ = std::thread::Builder::new()
                    .name("serval-env-cleanup".into())
                    .spawn(work);
            }
        }
    }
}

impl Drop for LinuxInstance {
    /// An instance dropped without being waited for still takes its environment with it.
    fn drop(&mut self) {
        if !self.done {
            self.control.kill();
            self.clean_up(true);
        }
    }
}

impl SandboxInstance for LinuxInstance {
    type Control = LinuxControl;

    fn control(&self) -> LinuxControl {
        self.control.clone()
    }

    async fn wait(&mut self) -> ExitInfo {
        if self.done {
            return ExitInfo::unknown();
        }
        let fd = match self.control.shared.pidfd.try_clone() {
            Ok(fd) => fd,
            Err(_) => return ExitInfo::unknown(),
        };
        // SAFETY: `fd` is an OwnedFd moved into the AsyncFd, open for its whole life.
        let registered =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
        let Ok(async_fd) = registered else {
            return ExitInfo::unknown();
        };
        let info = loop {
            if let Some(info) = self.reap(false) {
                break info;
            }
            match async_fd.readable().await {
                Ok(mut guard) => guard.clear_ready(),
                Err(_) => {
                    break self.reap(true).unwrap_or_else(|| {
                        // SAFETY: an all-zero siginfo_t is valid.
                        unsafe { std::mem::zeroed() }
                    });
                }
            }
        };
        self.control.shared.reaped.store(true, Ordering::Release);
        let exit = self.exit_info(&info);
        self.clean_up(false);
        exit
    }
}

/// Cloneable control of a `linux` environment.
#[derive(Clone)]
pub struct LinuxControl {
    env_id: EnvironmentId,
    shared: Arc<ControlShared>,
}

impl LinuxControl {
    fn cgroup_error(&self, action: &'static str, e: cgroup::CgroupError) -> SandboxError {
        SandboxError::Control {
            env_id: self.env_id,
            action,
            source: io::Error::other(error_chain(&e)),
        }
    }
}

impl SandboxControl for LinuxControl {
    fn kill(&self) {
        if !self.shared.reaped.load(Ordering::Acquire) {
            // SAFETY: pidfd_send_signal on our pidfd; no pointers.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    self.shared.pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
        // pid 1's death ends the namespace, but frozen processes die only once thawed.
        let _ = self.shared.cgroup.thaw();
    }

    fn memory(&self) -> MemoryUsage {
        self.shared.cgroup.memory()
    }

    fn freeze(&self) -> Result<(), SandboxError> {
        self.shared
            .cgroup
            .freeze()
            .map_err(|e| self.cgroup_error("freeze", e))
    }

    fn thaw(&self) -> Result<(), SandboxError> {
        self.shared
            .cgroup
            .thaw()
            .map_err(|e| self.cgroup_error("thaw", e))
    }

    fn initialized(&self) {
        let cores = f64::from(self.shared.memory_mb) / MB_PER_CORE;
        if let Err(error) = self.shared.cgroup.set_cpu(Some(cores)) {
            tracing::warn!(env = %self.env_id, error = %error_chain(&error), "failed to set the cpu quota");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::OnceLock;

    /// One backend per test process, as in a server: every backend of a process shares the
    /// process's cgroup parent.
    fn sandbox() -> Option<&'static LinuxSandbox> {
        static SANDBOX: OnceLock<Option<LinuxSandbox>> = OnceLock::new();
        SANDBOX
            .get_or_init(|| {
                let work =
                    std::env::temp_dir().join(format!("serval-linux-test-{}", std::process::id()));
                match LinuxSandbox::new(LinuxConfig {
                    network: NetworkMode::Host,
                    rootfs: None,
                    extra_dirs: Vec::new(),
                    work_dir: work,
                    pids_max: 64,
                }) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("skipping linux sandbox tests: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }

    fn spec(script: &str, memory_mb: u32, task_root: &Path) -> (SandboxSpec, std::io::PipeReader) {
        let (reader, writer) = std::io::pipe().unwrap();
        let spec = SandboxSpec {
            env_id: EnvironmentId::next(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            task_root: task_root.to_owned(),
            runtime_dir: task_root.to_owned(),
            tmp_dir: task_root.to_owned(),
            memory_mb,
            ephemeral_storage_mb: 8,
            output: writer.into(),
            network: Network::Host,
        };
        (spec, reader)
    }

    async fn run(script: &str, memory_mb: u32) -> Option<(ExitInfo, String)> {
        let sandbox = sandbox()?;
        let dir = tempfile::tempdir().unwrap();
        let (spec, mut reader) = spec(script, memory_mb, dir.path());
        let mut instance = sandbox.spawn(spec).await.unwrap();
        let exit = instance.wait().await;
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        Some((exit, out))
    }

    #[tokio::test]
    async fn runs_as_the_sandbox_user_without_privileges_in_its_own_pid_namespace() {
        let Some((exit, out)) = run(
            "id -u; id -g; echo pid=$$; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
             ls /proc | grep -cE '^[0-9]+$'; touch /var/task/x 2>&1 || echo task-ro; \
             touch /x 2>/dev/null || echo root-ro; echo hi > /tmp/t && cat /tmp/t",
            128,
        )
        .await
        else {
            return;
        };
        assert_eq!(exit.code, Some(0), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], SANDBOX_UID.to_string(), "{out}");
        assert_eq!(lines[1], SANDBOX_GID.to_string(), "{out}");
        assert_eq!(
            lines[2], "pid=2",
            "the runtime is pid 2 under the sandbox's init: {out}"
        );
        assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(out.contains("Seccomp:\t2"), "{out}");
        assert!(out.contains("task-ro") && out.contains("root-ro"), "{out}");
        assert!(out.contains("\nhi\n"), "/tmp is writable: {out}");
    }

    #[tokio::test]
    async fn starts_while_the_server_holds_more_descriptors_than_a_function_may() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        if limit.rlim_cur < 2_000 {
            eprintln!(
                "skipping: the descriptor limit {} is too low",
                limit.rlim_cur
            );
            return;
        }
        // Well past the function's 1,024, as a busy server's table is.
        let held: Vec<std::fs::File> = (0..1_500)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let Some((exit, out)) = run("ulimit -n; ls /proc/self/fd | wc -l", 128).await else {
            return;
        };
        drop(held);
        assert_eq!(exit.code, Some(0), "{out}");
        assert!(out.starts_with("1024\n"), "{out}");
    }

    #[tokio::test]
    async fn reports_the_runtime_exit_code_and_signal() {
        let Some((exit, _)) = run("exit 7", 128).await else {
            return;
        };
        assert_eq!(exit.code, Some(7));
        let (exit, _) = run("kill -SEGV $$", 128).await.unwrap();
        assert_eq!(exit.signal, Some(libc::SIGSEGV));
        assert!(!exit.oom_killed);
    }

    #[tokio::test]
    async fn the_memory_limit_kills_and_is_reported_as_oom() {
        // `tail` keeps the endless "line" of /dev/zero in memory.
        let Some((exit, out)) = run("exec tail /dev/zero", 32).await else {
            return;
        };
        assert_eq!(exit.signal, Some(libc::SIGKILL), "{out}");
        assert!(exit.oom_killed, "{exit:?}");
    }

    #[tokio::test]
    async fn kill_ends_every_process_of_the_environment() {
        let Some(sandbox) = sandbox() else { return };
        let dir = tempfile::tempdir().unwrap();
        let (spec, _reader) = spec("sleep 100 & sleep 100", 128, dir.path());
        let mut instance = sandbox.spawn(spec).await.unwrap();
        let control = instance.control();
        let cgroup = control.shared.cgroup.clone();
        // init, sh and its two sleeps.
        for _ in 0..200 {
            if cgroup.procs().len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(cgroup.procs().len(), 4, "{:?}", cgroup.procs());
        control.kill();
        let exit = instance.wait().await;
        assert!(
            exit.signal == Some(libc::SIGKILL) || exit.code.is_some(),
            "{exit:?}"
        );
        for _ in 0..200 {
            if cgroup.procs().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("processes survived: {:?}", cgroup.procs());
    }

    #[tokio::test]
    async fn a_file_the_kernel_cannot_execute_is_a_spawn_error() {
        let Some(sandbox) = sandbox() else { return };
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = dir.path().join("bootstrap");
        std::fs::write(&bootstrap, "echo ran-by-sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (mut s, _reader) = spec("", 128, dir.path());
        s.program = "/var/task/bootstrap".into();
        s.args.clear();
        match sandbox.spawn(s).await {
            Err(SandboxError::Spawn { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOEXEC))
            }
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("no shebang: exec must fail"),
        }
        let (mut s, _reader) = spec("", 128, dir.path());
        s.program = "/var/task/missing".into();
        match sandbox.spawn(s).await {
            Err(SandboxError::Spawn { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::NotFound)
            }
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("a missing program must not start"),
        }
    }

    #[tokio::test]
    async fn freezing_stops_every_process_until_thawed() {
        let Some(sandbox) = sandbox() else { return };
        let dir = tempfile::tempdir().unwrap();
        let (spec, _reader) = spec("while :; do :; done", 128, dir.path());
        let mut instance = sandbox.spawn(spec).await.unwrap();
        let control = instance.control();
        control.freeze().unwrap();
        let cgroup = control.shared.cgroup.clone();
        let mut frozen = false;
        for _ in 0..100 {
            if cgroup.is_frozen() {
                frozen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(frozen, "the environment never froze");
        control.thaw().unwrap();
        assert!(!cgroup.is_frozen());
        control.kill();
        instance.wait().await;
    }

    #[test]
    fn passwd_names_the_sandbox_user_once() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("etc")).unwrap();
        std::fs::write(base.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh").unwrap();
        let work = tempfile::tempdir().unwrap();
        let path = write_passwd(base.path(), work.path()).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text,
            "root:x:0:0::/root:/bin/sh\nsbx_user1051:x:993:990::/tmp:/sbin/nologin\n"
        );
        std::fs::write(base.path().join("etc/passwd"), &text).unwrap();
        let again =
            std::fs::read_to_string(write_passwd(base.path(), work.path()).unwrap()).unwrap();
        assert_eq!(again, text);
    }
}
