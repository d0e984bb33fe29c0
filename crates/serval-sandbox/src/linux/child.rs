//! What runs inside a new environment before the runtime: the sandbox's pid 1.
//!
//! The parent builds a [`ChildPlan`] (every string, path and descriptor the child needs, as C
//! strings and raw descriptors) and clones a child into new pid, mount, IPC and UTS namespaces.
//! That child is pid 1 of the environment. It joins the environment's cgroups and network
//! namespace, builds the root file system from the plan's [`MountOp`]s, pivots into it, drops
//! every privilege, installs the seccomp filter, and starts the runtime as pid 2 with
//! `clone(CLONE_VM | CLONE_VFORK)` + `execve`. From then on it only reaps processes. When the
//! runtime ends it reports the runtime's wait status on the status pipe and exits, and the
//! kernel kills whatever is left in the pid namespace.
//!
//! pid 1 is a copy of the multi-threaded server, so it must not allocate, lock or panic: it
//! calls only raw system calls on data prepared before the clone. A failing step writes
//! `(stage, errno)` on the set-up pipe and exits; the runtime's successful `execve` closes that
//! pipe (close-on-exec), which is how the parent knows the environment started.
//!
//! Building the plan is pure and unit-tested; executing it needs root and is covered by the
//! backend's tests and the end-to-end isolation suite.
//!
//! Not for: cgroup files (see `cgroup`), network namespaces (see `netns`), the filter (see
//! `seccomp`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libc::{c_char, c_int, c_ulong, c_void};

use super::seccomp::SeccompFilter;

/// The steps of the child's set-up, reported with the errno of the one that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    ParentGone = 1,
    JoinCgroup,
    JoinNetwork,
    PrivateMounts,
    Mount,
    Mkdir,
    Symlink,
    Mknod,
    ReadOnly,
    PivotRoot,
    Hostname,
    Limits,
    Descriptors,
    DropPrivileges,
    NoNewPrivs,
    Seccomp,
    StartRuntime,
    Exec,
}

impl Stage {
    const ALL: [Stage; 18] = [
        Stage::ParentGone,
        Stage::JoinCgroup,
        Stage::JoinNetwork,
        Stage::PrivateMounts,
        Stage::Mount,
        Stage::Mkdir,
        Stage::Symlink,
        Stage::Mknod,
        Stage::ReadOnly,
        Stage::PivotRoot,
        Stage::Hostname,
        Stage::Limits,
        Stage::Descriptors,
        Stage::DropPrivileges,
        Stage::NoNewPrivs,
        Stage::Seccomp,
        Stage::StartRuntime,
        Stage::Exec,
    ];

    pub fn from_u32(v: u32) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as u32 == v)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Stage::ParentGone => "check the server is alive",
            Stage::JoinCgroup => "join the cgroup",
            Stage::JoinNetwork => "join the network namespace",
            Stage::PrivateMounts => "make mounts private",
            Stage::Mount => "mount",
            Stage::Mkdir => "create a mount point",
            Stage::Symlink => "create a symlink",
            Stage::Mknod => "create a device node",
            Stage::ReadOnly => "make the root read-only",
            Stage::PivotRoot => "pivot into the new root",
            Stage::Hostname => "set the host name",
            Stage::Limits => "set resource limits",
            Stage::Descriptors => "arrange descriptors",
            Stage::DropPrivileges => "drop privileges",
            Stage::NoNewPrivs => "set no_new_privs",
            Stage::Seccomp => "install the seccomp filter",
            Stage::StartRuntime => "start the runtime",
            Stage::Exec => "exec the runtime",
        }
    }
}

/// One step of building the root, on absolute paths under the new root (before the pivot).
#[derive(Debug, PartialEq, Eq)]
pub enum MountOp {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
        /// A mask over a path the kernel may not have (a `/proc` entry): ENOENT is fine.
        optional: bool,
    },
    Mkdir {
        path: CString,
        mode: libc::mode_t,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    Mknod {
        path: CString,
        mode: libc::mode_t,
        dev: libc::dev_t,
    },
    /// Makes the tree at `path` and every mount below it read-only and nosuid.
    ReadOnlyTree {
        path: CString,
    },
}

/// The system entries taken from the host's (or the operator's) root.
pub const SYSTEM_ENTRIES: &[&str] = &[
    "bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc",
];

/// Paths under `/proc` hidden behind `/dev/null` (files) or an empty read-only tmpfs (dirs), and
/// ones made read-only, as container runtimes do by default.
const PROC_MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "sysrq-trigger",
];
const PROC_MASKED_DIRS: &[&str] = &["acpi", "scsi"];
const PROC_READ_ONLY: &[&str] = &["bus", "fs", "irq", "sys", "asound"];

/// What every environment's root has in common, resolved once when the backend starts.
#[derive(Debug, Clone)]
pub struct RootTemplate {
    /// An empty host directory the root tmpfs is mounted on (inside the child's namespace).
    pub staging: PathBuf,
    /// System entries: a directory bound read-only, or a symlink recreated.
    pub system: Vec<SystemEntry>,
    /// Host directories bound read-only at the same path (interpreter prefixes).
    pub extra_dirs: Vec<PathBuf>,
    /// A file bound over `/etc/passwd` naming the sandbox user, if any.
    pub passwd: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemEntry {
    Dir { name: String, source: PathBuf },
    Symlink { name: String, target: PathBuf },
}

impl RootTemplate {
    /// Reads the system entries of `base` (`/` or an operator's root file system).
    pub fn system_entries(base: &Path) -> io::Result<Vec<SystemEntry>> {
        let mut entries = Vec::new();
        for name in SYSTEM_ENTRIES {
            let path = base.join(name);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.file_type().is_symlink() {
                entries.push(SystemEntry::Symlink {
                    name: (*name).to_owned(),
                    target: std::fs::read_link(&path)?,
                });
            } else if meta.is_dir() {
                entries.push(SystemEntry::Dir {
                    name: (*name).to_owned(),
                    source: path,
                });
            }
        }
        Ok(entries)
    }
}

/// The per-environment part of the root.
pub struct RootSpec<'a> {
    pub task_root: &'a Path,
    /// Serval's runtime files, bound at `/var/runtime`.
    pub runtime_dir: &'a Path,
    pub tmp_mb: u32,
    pub shm_mb: u32,
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path"))
}

fn cstring(s: &str) -> CString {
    CString::new(s).expect("constant strings have no NUL byte")
}

/// The steps that build one environment's root under `template.staging`.
pub fn plan_root(template: &RootTemplate, env: &RootSpec<'_>) -> io::Result<Vec<MountOp>> {
    let root = &template.staging;
    let at = |rel: &str| cstr(&root.join(rel));
    let mut ops = Vec::with_capacity(48);
    let bind = |source: &Path, target: CString| -> io::Result<MountOp> {
        Ok(MountOp::Mount {
            source: Some(cstr(source)?),
            target,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            optional: false,
        })
    };
    let mkdir = |path: CString, mode| MountOp::Mkdir { path, mode };

    ops.push(MountOp::Mount {
        source: Some(cstring("serval-root")),
        target: cstr(root)?,
        fstype: Some(cstring("tmpfs")),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(cstring("size=1m,nr_inodes=4096,mode=0755")),
        optional: false,
    });
    for entry in &template.system {
        match entry {
            SystemEntry::Symlink { name, target } => ops.push(MountOp::Symlink {
                target: cstr(target)?,
                path: at(name)?,
            }),
            SystemEntry::Dir { name, source } => {
                ops.push(mkdir(at(name)?, 0o755));
                ops.push(bind(source, at(name)?)?);
            }
        }
    }
    for dir in [
        "var",
        "var/task",
        "var/runtime",
        "opt",
        "tmp",
        "proc",
        "dev",
    ] {
        ops.push(mkdir(at(dir)?, 0o755));
    }
    ops.push(bind(env.task_root, at("var/task")?)?);
    ops.push(bind(env.runtime_dir, at("var/runtime")?)?);
    for dir in &template.extra_dirs {
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        let mut partial = PathBuf::new();
        for component in rel.components() {
            partial.push(component);
            ops.push(mkdir(cstr(&root.join(&partial))?, 0o755));
        }
        ops.push(bind(dir, cstr(&root.join(rel))?)?);
    }
    if let Some(passwd) = &template.passwd {
        ops.push(MountOp::Mount {
            source: Some(cstr(passwd)?),
            target: at("etc/passwd")?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            optional: true,
        });
    }

    // A minimal /dev.
    ops.push(MountOp::Mount {
        source: Some(cstring("serval-dev")),
        target: at("dev")?,
        fstype: Some(cstring("tmpfs")),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(cstring("size=64k,nr_inodes=64,mode=0755")),
        optional: false,
    });
    for (name, minor) in [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ] {
        ops.push(MountOp::Mknod {
            path: at(&format!("dev/{name}"))?,
            mode: libc::S_IFCHR | 0o666,
            dev: libc::makedev(1, minor),
        });
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: cstring(target),
            path: at(&format!("dev/{name}"))?,
        });
    }
    ops.push(mkdir(at("dev/shm")?, 0o1777));

    // Everything so far becomes read-only; the writable mounts come after.
    ops.push(MountOp::ReadOnlyTree { path: cstr(root)? });

    ops.push(MountOp::Mount {
        source: Some(cstring("serval-tmp")),
        target: at("tmp")?,
        fstype: Some(cstring("tmpfs")),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(CString::new(format!("size={}m,mode=1777", env.tmp_mb)).expect("digits")),
        optional: false,
    });
    ops.push(MountOp::Mount {
        source: Some(cstring("serval-shm")),
        target: at("dev/shm")?,
        fstype: Some(cstring("tmpfs")),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: Some(CString::new(format!("size={}m,mode=1777", env.shm_mb)).expect("digits")),
        optional: false,
    });
    ops.push(MountOp::Mount {
        source: Some(cstring("proc")),
        target: at("proc")?,
        fstype: Some(cstring("proc")),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
        optional: false,
    });
    for name in PROC_MASKED_FILES {
        ops.push(MountOp::Mount {
            source: Some(at("dev/null")?),
            target: at(&format!("proc/{name}"))?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            optional: true,
        });
    }
    for name in PROC_MASKED_DIRS {
        ops.push(MountOp::Mount {
            source: Some(cstring("serval-masked")),
            target: at(&format!("proc/{name}"))?,
            fstype: Some(cstring("tmpfs")),
            flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data: Some(cstring("size=4k")),
            optional: true,
        });
    }
    for name in PROC_READ_ONLY {
        let path = at(&format!("proc/{name}"))?;
        ops.push(MountOp::Mount {
            source: Some(path.clone()),
            target: path.clone(),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            optional: true,
        });
        ops.push(MountOp::ReadOnlyTree { path });
    }
    Ok(ops)
}

/// Everything pid 1 needs, prepared by the parent. Pointers point into the owned strings.
pub struct ChildPlan {
    pub ops: Vec<MountOp>,
    pub staging: CString,
    pub exec: crate::process::ExecImage,
    pub cwd: CString,
    pub hostname: &'static CStr,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub nofile: u64,
    pub join_fds: Vec<RawFd>,
    pub netns_fd: RawFd,
    pub server_pidfd: RawFd,
    pub output_fd: RawFd,
    pub setup_fd: RawFd,
    pub status_fd: RawFd,
    pub seccomp: *const SeccompFilter,
    /// The server's command line in memory; pid 1 blanks its copy so `/proc/1/cmdline` does not
    /// show the server's arguments.
    pub argv_area: Option<(usize, usize)>,
    /// Top of the stack the runtime's vfork child runs on (inside pid 1's copy of memory).
    pub runtime_stack_top: *mut c_void,
}

/// Descriptor numbers in pid 1 after it arranged them.
const SETUP_FD: c_int = 3;
const STATUS_FD: c_int = 4;
const SERVER_FD: c_int = 5;

/// Reports a failed step on the set-up pipe and ends the process.
///
/// # Safety
/// Only in the sandbox child.
unsafe fn fail(fd: c_int, stage: Stage) -> ! {
    let errno = *libc::__errno_location();
    let mut record = [0u8; 8];
    record[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    record[4..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(fd, record.as_ptr().cast(), record.len());
    libc::_exit(126);
}

fn opt_ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;

/// # Safety
/// Only in the sandbox child.
unsafe fn run_op(op: &MountOp, fd: c_int) {
    match op {
        MountOp::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            optional,
        } => {
            let rc = libc::mount(
                opt_ptr(source),
                target.as_ptr(),
                opt_ptr(fstype),
                *flags,
                opt_ptr(data).cast(),
            );
            if rc != 0 && !(*optional && *libc::__errno_location() == libc::ENOENT) {
                fail(fd, Stage::Mount);
            }
        }
        MountOp::Mkdir { path, mode } => {
            if libc::mkdir(path.as_ptr(), *mode) != 0 && *libc::__errno_location() != libc::EEXIST {
                fail(fd, Stage::Mkdir);
            }
        }
        MountOp::Symlink { target, path } => {
            if libc::symlink(target.as_ptr(), path.as_ptr()) != 0 {
                fail(fd, Stage::Symlink);
            }
        }
        MountOp::Mknod { path, mode, dev } => {
            if libc::mknod(path.as_ptr(), *mode, *dev) != 0 {
                fail(fd, Stage::Mknod);
            }
        }
        MountOp::ReadOnlyTree { path } => {
            let attr = MountAttr {
                attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            let rc = libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            );
            // No partial fallback: on a kernel without mount_setattr (before 5.12) the binds
            // would stay writable, so the set-up fails and the server falls back loudly. A
            // `/proc` entry this kernel does not have is fine.
            if rc != 0 && *libc::__errno_location() != libc::ENOENT {
                fail(fd, Stage::ReadOnly);
            }
        }
    }
}

/// The entry point of the sandbox's pid 1 (passed to `clone`).
///
/// `arg` must point to a [`ChildPlan`] that outlives the clone (pid 1 has its own copy of
/// memory); only `clone` calls this.
pub extern "C" fn sandbox_init(arg: *mut c_void) -> c_int {
    // SAFETY: per the contract above; everything below is raw system calls on the plan.
    unsafe { init_main(arg) }
}

/// # Safety
/// See [`sandbox_init`].
unsafe fn init_main(arg: *mut c_void) -> c_int {
    let plan = &*(arg as *const ChildPlan);
    let setup = plan.setup_fd;

    // Die with the server, and make sure it did not die before this was set.
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
        fail(setup, Stage::ParentGone);
    }
    let mut pfd = libc::pollfd {
        fd: plan.server_pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    if libc::poll(&mut pfd, 1, 0) != 0 {
        fail(setup, Stage::ParentGone);
    }

    // A session of its own: no controlling terminal, and out of the server's process group
    // (a Ctrl-C or a kill of that group is the server's business, not the environments').
    libc::syscall(libc::SYS_setsid);

    for &fd in &plan.join_fds {
        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(setup, Stage::JoinCgroup);
        }
    }
    if plan.netns_fd >= 0 && libc::setns(plan.netns_fd, libc::CLONE_NEWNET) != 0 {
        fail(setup, Stage::JoinNetwork);
    }

    libc::umask(0);
    if libc::mount(
        std::ptr::null(),
        c"/".as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ) != 0
    {
        fail(setup, Stage::PrivateMounts);
    }
    for op in &plan.ops {
        run_op(op, setup);
    }
    if libc::chdir(plan.staging.as_ptr()) != 0
        || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
        || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
        || libc::chdir(c"/".as_ptr()) != 0
    {
        fail(setup, Stage::PivotRoot);
    }
    if libc::sethostname(plan.hostname.as_ptr(), plan.hostname.to_bytes().len()) != 0 {
        fail(setup, Stage::Hostname);
    }

    // Hide the server's command line and name.
    if let Some((start, len)) = plan.argv_area {
        let area = start as *mut u8;
        std::ptr::write_bytes(area, 0, len);
        let name = b"/init";
        if len > name.len() {
            std::ptr::copy_nonoverlapping(name.as_ptr(), area, name.len());
        }
    }
    libc::prctl(libc::PR_SET_NAME, c"init".as_ptr(), 0, 0, 0);

    // Descriptors: 0 /dev/null, 1 and 2 the log pipe, 3 set-up, 4 status, 5 the server's pidfd
    // (until the privileges are dropped); nothing else. /dev/null is opened without
    // close-on-exec: if it lands on 0 itself, dup2(0, 0) would keep the flag.
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    let setup_hi = libc::fcntl(setup, libc::F_DUPFD_CLOEXEC, 64);
    let status_hi = libc::fcntl(plan.status_fd, libc::F_DUPFD_CLOEXEC, 64);
    let output_hi = libc::fcntl(plan.output_fd, libc::F_DUPFD_CLOEXEC, 64);
    let server_hi = libc::fcntl(plan.server_pidfd, libc::F_DUPFD_CLOEXEC, 64);
    if null < 0 || setup_hi < 0 || status_hi < 0 || output_hi < 0 || server_hi < 0 {
        fail(setup, Stage::Descriptors);
    }
    if libc::dup2(null, 0) != 0
        || libc::dup2(output_hi, 1) != 1
        || libc::dup2(output_hi, 2) != 2
        || libc::dup3(setup_hi, SETUP_FD, libc::O_CLOEXEC) != SETUP_FD
        || libc::dup3(status_hi, STATUS_FD, libc::O_CLOEXEC) != STATUS_FD
        || libc::dup3(server_hi, SERVER_FD, libc::O_CLOEXEC) != SERVER_FD
    {
        fail(setup_hi, Stage::Descriptors);
    }
    if libc::syscall(libc::SYS_close_range, SERVER_FD + 1, c_int::MAX, 0) != 0 {
        fail(SETUP_FD, Stage::Descriptors);
    }

    // Limits, once only the descriptors above are open: the server may hold more than the
    // function's descriptor limit, and with the limit applied first the copies of its table
    // would leave no room to arrange ours.
    let nofile = libc::rlimit {
        rlim_cur: plan.nofile,
        rlim_max: plan.nofile,
    };
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) != 0
        || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0
    {
        fail(SETUP_FD, Stage::Limits);
    }

    // Privileges: no capabilities in any set, the sandbox user, no way back.
    for cap in 0..64 {
        libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
    libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL,
        0,
        0,
        0,
    );
    // Raw system calls, not glibc's wrappers: those broadcast the change to every thread glibc
    // knows of, and in this copy of the server that list names threads that are not here (and
    // the broadcast takes locks another thread may have held at the clone).
    if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
        || libc::syscall(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0
        || libc::syscall(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0
    {
        fail(SETUP_FD, Stage::DropPrivileges);
    }
    // Changing credentials cleared the parent-death signal: set it again, and check once more
    // that the server did not die in between.
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
        fail(SETUP_FD, Stage::ParentGone);
    }
    let mut pfd = libc::pollfd {
        fd: SERVER_FD,
        events: libc::POLLIN,
        revents: 0,
    };
    if libc::poll(&mut pfd, 1, 0) != 0 {
        fail(SETUP_FD, Stage::ParentGone);
    }
    libc::close(SERVER_FD);
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        fail(SETUP_FD, Stage::NoNewPrivs);
    }
    // Not dumpable: the function (same uid) cannot read pid 1's memory, descriptors or root.
    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    if let Err(errno) = (*plan.seccomp).install() {
        *libc::__errno_location() = errno;
        fail(SETUP_FD, Stage::Seccomp);
    }

    let runtime = libc::clone(
        start_runtime,
        plan.runtime_stack_top,
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        arg,
    );
    if runtime < 0 {
        fail(SETUP_FD, Stage::StartRuntime);
    }
    // The runtime has exec'd (or failed and said so): the parent sees end-of-file now.
    libc::close(SETUP_FD);

    loop {
        let mut status: c_int = 0;
        let pid = libc::waitpid(-1, &mut status, libc::__WALL);
        if pid == runtime {
            libc::write(
                STATUS_FD,
                (&status as *const c_int).cast(),
                std::mem::size_of::<c_int>(),
            );
            libc::_exit(0);
        }
        if pid < 0 && *libc::__errno_location() == libc::ECHILD {
            libc::_exit(0);
        }
    }
}

/// The runtime's first moments: a vfork child of pid 1 that only execs.
///
/// Runs on pid 1's memory until `execve`; calls nothing but system calls. `arg` is pid 1's
/// plan; only pid 1's `clone` calls this.
extern "C" fn start_runtime(arg: *mut c_void) -> c_int {
    // SAFETY: per the contract above.
    unsafe {
        let plan = &*(arg as *const ChildPlan);
        // The server ignores SIGPIPE and its threads may block signals; exec keeps both. The
        // runtime starts with the defaults (raw calls: this child has its own signal handlers
        // table, no CLONE_SIGHAND, but shares pid 1's memory).
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::syscall(
            libc::SYS_rt_sigaction,
            libc::SIGPIPE,
            &action as *const libc::sigaction,
            std::ptr::null::<libc::sigaction>(),
            8usize,
        );
        let empty: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null::<u64>(),
            8usize,
        );
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail(SETUP_FD, Stage::Exec);
        }
        let error = plan.exec.execve();
        *libc::__errno_location() = error.raw_os_error().unwrap_or(libc::EINVAL);
        fail(SETUP_FD, Stage::Exec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> RootTemplate {
        RootTemplate {
            staging: "/srv/stage".into(),
            system: vec![
                SystemEntry::Symlink {
                    name: "bin".into(),
                    target: "usr/bin".into(),
                },
                SystemEntry::Dir {
                    name: "usr".into(),
                    source: "/usr".into(),
                },
            ],
            extra_dirs: vec!["/root/.pyenv/versions/3.11.7".into()],
            passwd: None,
        }
    }

    fn targets(ops: &[MountOp]) -> Vec<String> {
        ops.iter()
            .filter_map(|op| match op {
                MountOp::Mount { target, .. } => Some(target.to_str().unwrap().to_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plan_binds_code_runtime_and_interpreter_under_the_staging_root() {
        let ops = plan_root(
            &template(),
            &RootSpec {
                task_root: Path::new("/data/code/abc"),
                runtime_dir: Path::new("/data/runtime"),
                tmp_mb: 512,
                shm_mb: 128,
            },
        )
        .unwrap();
        let t = targets(&ops);
        assert_eq!(t[0], "/srv/stage", "the root tmpfs comes first");
        for want in [
            "/srv/stage/usr",
            "/srv/stage/var/task",
            "/srv/stage/var/runtime",
            "/srv/stage/root/.pyenv/versions/3.11.7",
            "/srv/stage/tmp",
            "/srv/stage/proc",
            "/srv/stage/proc/kcore",
        ] {
            assert!(t.contains(&want.to_owned()), "missing {want} in {t:?}");
        }
        assert!(ops.contains(&MountOp::Symlink {
            target: c"usr/bin".into(),
            path: c"/srv/stage/bin".into(),
        }));
        assert!(ops.iter().any(|op| matches!(op,
            MountOp::Mount { target, data: Some(d), .. }
                if target.to_str().unwrap() == "/srv/stage/tmp" && d.to_str().unwrap() == "size=512m,mode=1777")));
    }

    #[test]
    fn writable_mounts_come_after_the_root_is_made_read_only() {
        let ops = plan_root(
            &template(),
            &RootSpec {
                task_root: Path::new("/data/code/abc"),
                runtime_dir: Path::new("/data/runtime"),
                tmp_mb: 10,
                shm_mb: 10,
            },
        )
        .unwrap();
        let ro = ops
            .iter()
            .position(|op| matches!(op, MountOp::ReadOnlyTree { path } if path.to_str().unwrap() == "/srv/stage"))
            .expect("the root is made read-only");
        let pos = |want: &str| {
            ops.iter()
                .position(|op| matches!(op, MountOp::Mount { target, .. } if target.to_str().unwrap() == want))
                .unwrap()
        };
        assert!(pos("/srv/stage/var/task") < ro);
        assert!(pos("/srv/stage/tmp") > ro);
        assert!(pos("/srv/stage/dev/shm") > ro);
        assert!(pos("/srv/stage/proc") > ro);
    }

    #[test]
    fn system_entries_keep_symlinks_and_skip_missing_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("usr")).unwrap();
        std::os::unix::fs::symlink("usr/lib", dir.path().join("lib")).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let entries = RootTemplate::system_entries(dir.path()).unwrap();
        assert_eq!(
            entries,
            vec![
                SystemEntry::Symlink {
                    name: "lib".into(),
                    target: "usr/lib".into()
                },
                SystemEntry::Dir {
                    name: "usr".into(),
                    source: dir.path().join("usr")
                },
            ]
        );
    }

    #[test]
    fn stages_round_trip() {
        for v in 1..=18 {
            assert_eq!(Stage::from_u32(v).unwrap() as u32, v);
        }
        assert!(Stage::from_u32(0).is_none());
    }
}
