//! cgroups for environments: one group per environment with its memory, CPU and pids limits, the
//! freezer, memory accounting and OOM detection, on cgroup v1 or v2 (detected at start-up).
//!
//! Layout: each server makes a parent group `serval/<server pid>` under its own cgroup in every
//! hierarchy it uses (v1: memory, cpu, pids, freezer; v2: the unified one), and one child group
//! per environment, `serval/<server pid>/<env id>`. At start-up, parents left by servers that are
//! no longer alive are emptied (their processes killed) and removed.
//!
//! On cgroup v2 a group may hand controllers to its children only while it holds no processes of
//! its own, and the server sits in its own cgroup. So when that cgroup holds the server and nothing
//! else (a delegated scope), the server moves itself into a leaf `serval/<server pid>/server`
//! before enabling the controllers; a cgroup shared with other processes is refused.
//!
//! Every file-system side effect (and the kill of a group's processes) goes through [`CgroupFs`],
//! so the logic is unit-tested against a fake without root.
//!
//! Not for: namespaces or mounts (see the sibling modules).

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serval_model::EnvironmentId;

use crate::MemoryUsage;

/// The CFS period every group gets, in microseconds (100 ms).
const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota a group gets, in microseconds (1 ms per period).
const MIN_CPU_QUOTA_US: i64 = 1_000;
/// How long [`EnvCgroup::remove`] keeps retrying while dying processes are still listed.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between two tries of [`EnvCgroup::remove`].
const REMOVE_RETRY_INTERVAL: Duration = Duration::from_millis(10);
/// How often [`Cgroups::init`] recreates the shared `serval` group when another server removed it
/// between our `mkdir`s.
const MKDIR_ATTEMPTS: usize = 5;
/// The controllers enabled down the chain on cgroup v2.
const V2_CONTROLLERS: &str = "+memory +cpu +pids";
/// The v2 leaf the server moves itself into when its own cgroup must hand out controllers.
const SERVER_LEAF: &str = "server";
/// The group every server's parent lives in.
const SERVAL_DIR: &str = "serval";

/// The file-system operations on cgroup files, and the kill of a listed process: the seam that
/// unit tests replace.
pub trait CgroupFs: Send + Sync + 'static {
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    /// Writes `value` with a single `write` to an existing file.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The names of the directories in `path`.
    fn list_dirs(&self, path: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    /// Opens an existing file `O_WRONLY | O_CLOEXEC`.
    fn open_write(&self, path: &Path) -> io::Result<OwnedFd>;
    /// Sends `SIGKILL` to `pid` (always > 0, never the server itself).
    fn kill(&self, pid: i32) -> io::Result<()>;
}

/// The real cgroup file systems, through `std::fs` and `kill(2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl CgroupFs for RealFs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
        file.write_all(value.as_bytes())
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn list_dirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn open_write(&self, path: &Path) -> io::Result<OwnedFd> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        Ok(file.into())
    }

    fn kill(&self, pid: i32) -> io::Result<()> {
        // SAFETY: kill(2) has no memory-safety preconditions; callers pass a pid > 0.
        if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Which cgroup interface the server drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The limits of one environment's group.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupLimits {
    /// Hard memory limit; swap is off.
    pub memory_bytes: u64,
    /// Most processes and threads at once ([`CgroupLimits::DEFAULT_PIDS_MAX`] by default).
    pub pids_max: u32,
    /// `None`: no CPU quota (the init boost); `Some(x)`: `x` cores through the CFS quota.
    pub cpu_cores: Option<f64>,
}

impl CgroupLimits {
    /// The default `pids_max`.
    pub const DEFAULT_PIDS_MAX: u32 = 1024;
}

/// A failure to set up or drive cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups are not available: {reason}")]
    NotAvailable { reason: String },
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to create cgroup {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {file} for {group}")]
    Write {
        group: String,
        file: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to open {file} of {group}")]
    Open {
        group: String,
        file: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove cgroup {}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One directory per controller the server uses; on v2 (and for co-mounted v1 hierarchies)
/// several controllers share one directory.
#[derive(Debug, Clone, PartialEq)]
struct Dirs {
    /// The distinct directories, in the order memory, cpu, pids, freezer.
    paths: Vec<PathBuf>,
    memory: usize,
    cpu: usize,
    pids: usize,
    freezer: usize,
}

impl Dirs {
    fn new(memory: PathBuf, cpu: PathBuf, pids: PathBuf, freezer: PathBuf) -> Dirs {
        let mut paths: Vec<PathBuf> = Vec::with_capacity(4);
        let mut index = |path: PathBuf| match paths.iter().position(|p| *p == path) {
            Some(i) => i,
            None => {
                paths.push(path);
                paths.len() - 1
            }
        };
        let memory = index(memory);
        let cpu = index(cpu);
        let pids = index(pids);
        let freezer = index(freezer);
        Dirs {
            paths,
            memory,
            cpu,
            pids,
            freezer,
        }
    }

    fn unified(path: PathBuf) -> Dirs {
        Dirs {
            paths: vec![path],
            memory: 0,
            cpu: 0,
            pids: 0,
            freezer: 0,
        }
    }

    fn join(&self, name: &str) -> Dirs {
        Dirs {
            paths: self.paths.iter().map(|p| p.join(name)).collect(),
            ..*self
        }
    }

    fn memory(&self) -> &Path {
        &self.paths[self.memory]
    }
    fn cpu(&self) -> &Path {
        &self.paths[self.cpu]
    }
    fn pids(&self) -> &Path {
        &self.paths[self.pids]
    }
    fn freezer(&self) -> &Path {
        &self.paths[self.freezer]
    }
}

/// Optional files, probed once on the server's parent group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Features {
    /// v1 `memory.memsw.limit_in_bytes` (swap accounting).
    memsw: bool,
    /// v2 `memory.swap.max`.
    swap_max: bool,
    /// v2 `cgroup.kill`.
    kill_file: bool,
    /// v2 `memory.peak`.
    peak: bool,
}

/// What every group of a server shares.
struct Shared {
    fs: Arc<dyn CgroupFs>,
    version: CgroupVersion,
    features: Features,
    server_pid: u32,
}

impl Shared {
    /// Whether `pid` may be killed: a real process id that is neither this process nor the server.
    fn may_kill(&self, pid: i32) -> bool {
        pid > 0 && pid as u32 != self.server_pid && pid as u32 != std::process::id()
    }
}

/// This server's cgroups: the engine-wide handle, held in an `Arc`.
pub struct Cgroups {
    shared: Arc<Shared>,
    /// `<own>/serval/<server pid>` in every hierarchy.
    parent: Dirs,
    /// The v2 leaf the server moved itself into, if it had to.
    server_leaf: Option<PathBuf>,
}

impl std::fmt::Debug for Cgroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroups")
            .field("version", &self.shared.version)
            .field("parent", &self.parent.paths)
            .finish_non_exhaustive()
    }
}

impl Cgroups {
    /// Reads /proc/self/mountinfo and /proc/self/cgroup, picks v1 (memory, cpu, pids, freezer all
    /// mounted as v1 hierarchies) or v2 (unified, with memory cpu pids available), creates this
    /// server's parent groups, enables v2 controllers down the chain, removes stale parents of
    /// dead servers (kill their processes, rmdir children then the parent).
    pub fn init() -> Result<Cgroups, CgroupError> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
                path: PathBuf::from(path),
                source,
            })
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        let self_cgroup = read("/proc/self/cgroup")?;
        Cgroups::init_with(
            Arc::new(RealFs),
            &mountinfo,
            &self_cgroup,
            std::process::id(),
            &pid_alive,
        )
    }

    /// The same with every input injected, for tests.
    pub fn init_with(
        fs: Arc<dyn CgroupFs>,
        mountinfo: &str,
        self_cgroup: &str,
        server_pid: u32,
        pid_alive: &dyn Fn(u32) -> bool,
    ) -> Result<Cgroups, CgroupError> {
        let (version, own) = detect(&*fs, mountinfo, self_cgroup)?;
        if version == CgroupVersion::V2 {
            check_v2_delegation(&*fs, own.memory())?;
        }
        let root = own.join(SERVAL_DIR);
        let pid_name = server_pid.to_string();
        let parent = root.join(&pid_name);
        let mut shared = Shared {
            fs,
            version,
            features: Features::default(),
            server_pid,
        };

        for dir in &root.paths {
            ensure_dir(&*shared.fs, dir)?;
        }
        remove_stale(&shared, &root, &pid_name, pid_alive);
        for (root_dir, parent_dir) in root.paths.iter().zip(&parent.paths) {
            ensure_parent(&*shared.fs, root_dir, parent_dir)?;
        }
        let server_leaf = match version {
            CgroupVersion::V1 => None,
            CgroupVersion::V2 => {
                enable_v2_controllers(&shared, own.memory(), root.memory(), parent.memory())?
            }
        };
        shared.features = probe_features(&*shared.fs, version, &parent);
        if version == CgroupVersion::V1 {
            hold_freezer_active(&*shared.fs, parent.freezer());
        }
        tracing::debug!(?version, parent = %parent.memory().display(), "cgroups ready");
        Ok(Cgroups {
            shared: Arc::new(shared),
            parent,
            server_leaf,
        })
    }

    /// The cgroup version in use.
    pub fn version(&self) -> CgroupVersion {
        self.shared.version
    }

    /// For the start-up line: "cgroup v1" / "cgroup v2".
    pub fn describe(&self) -> &'static str {
        match self.shared.version {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        }
    }

    /// Creates the group of `env` with `limits`: only the `mkdir`s and the writes the limits need
    /// (this is on the cold-start path). On failure nothing is left behind.
    pub fn create(
        &self,
        env: EnvironmentId,
        limits: &CgroupLimits,
    ) -> Result<EnvCgroup, CgroupError> {
        let name = env.to_string();
        let group = EnvCgroup {
            shared: Arc::clone(&self.shared),
            dirs: self.parent.join(&name),
            name,
        };
        for (made, dir) in group.dirs.paths.iter().enumerate() {
            if let Err(source) = self.shared.fs.mkdir(dir) {
                group.rmdir_first(made);
                return Err(CgroupError::Create {
                    path: dir.clone(),
                    source,
                });
            }
        }
        if let Err(error) = group.apply_limits(limits) {
            group.rmdir_first(group.dirs.paths.len());
            return Err(error);
        }
        Ok(group)
    }

    /// Removes this server's parent groups (best effort; at shutdown, after every environment).
    pub fn remove_parents(&self) {
        let skip = self.server_leaf.as_ref().map(|_| SERVER_LEAF);
        empty_parent(&self.shared, &self.parent, skip);
        for dir in &self.parent.paths {
            match self.shared.fs.rmdir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if self.server_leaf.is_some() => {
                    tracing::debug!(path = %dir.display(), error = %e,
                        "kept the cgroup the server runs in");
                }
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e,
                        "failed to remove the server's cgroup");
                }
            }
            // The shared `serval` group goes too once no server uses it; another server's
            // init recreates it if it races with this.
            if let Some(root) = dir.parent() {
                let _ = self.shared.fs.rmdir(root);
            }
        }
    }
}

/// An empty v1 group kept frozen for the server's life, beside the environments' groups.
const FREEZER_ANCHOR: &str = "freezer-anchor";

/// Keeps the v1 freezer's global "some group is frozen" switch on. The kernel flips a static key
/// when the first group freezes and the last one thaws, which costs ~100 µs of cross-CPU code
/// patching; with this group frozen, thawing an environment (on an invocation's path) is a plain
/// state change of a few µs. Best effort: without it thawing is merely slower.
fn hold_freezer_active(fs: &dyn CgroupFs, parent: &Path) {
    let anchor = parent.join(FREEZER_ANCHOR);
    let result = fs
        .mkdir(&anchor)
        .or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .and_then(|()| fs.write(&anchor.join("freezer.state"), "FROZEN"));
    if let Err(error) = result {
        tracing::debug!(path = %anchor.display(), %error, "failed to create the freezer anchor");
    }
}

/// The group of one environment.
pub struct EnvCgroup {
    shared: Arc<Shared>,
    /// For messages: `env-7`, or `serval/<pid>/<name>` for a stale group.
    name: String,
    dirs: Dirs,
}

impl std::fmt::Debug for EnvCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvCgroup")
            .field("name", &self.name)
            .field("dirs", &self.dirs.paths)
            .finish_non_exhaustive()
    }
}

impl EnvCgroup {
    /// Opens (O_WRONLY | O_CLOEXEC) the `cgroup.procs` file of every hierarchy of this group; the
    /// sandbox child writes "0" to each to join before it runs anything.
    ///
    /// On v1 these are the `tasks` files: the child is single-threaded, and moving one thread
    /// (the writer itself) spares the kernel the global threadgroup lock a `cgroup.procs` write
    /// takes, whose RCU synchronisation costs milliseconds per hierarchy.
    pub fn open_join_files(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        let file = match self.shared.version {
            CgroupVersion::V1 => "tasks",
            CgroupVersion::V2 => "cgroup.procs",
        };
        self.dirs
            .paths
            .iter()
            .map(|dir| {
                let path = dir.join(file);
                self.shared
                    .fs
                    .open_write(&path)
                    .map_err(|source| CgroupError::Open {
                        group: self.name.clone(),
                        file,
                        path,
                        source,
                    })
            })
            .collect()
    }

    /// Sets or lifts the CPU quota (period 100 ms; quota = cores * period, at least 1 ms).
    pub fn set_cpu(&self, cores: Option<f64>) -> Result<(), CgroupError> {
        let dir = self.dirs.cpu();
        match self.shared.version {
            CgroupVersion::V1 => {
                let quota = cores.map_or(-1, cpu_quota_us);
                self.write(dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                self.write(dir, "cpu.cfs_quota_us", &quota.to_string())
            }
            CgroupVersion::V2 => {
                let value = match cores {
                    Some(cores) => format!("{} {CPU_PERIOD_US}", cpu_quota_us(cores)),
                    None => format!("max {CPU_PERIOD_US}"),
                };
                self.write(dir, "cpu.max", &value)
            }
        }
    }

    /// Starts freezing (v1 freezer.state FROZEN, v2 cgroup.freeze 1); does not wait.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.shared.version {
            CgroupVersion::V1 => self.write(self.dirs.freezer(), "freezer.state", "FROZEN"),
            CgroupVersion::V2 => self.write(self.dirs.freezer(), "cgroup.freeze", "1"),
        }
    }

    /// Lets every process run again (v1 freezer.state THAWED, v2 cgroup.freeze 0).
    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.shared.version {
            CgroupVersion::V1 => self.write(self.dirs.freezer(), "freezer.state", "THAWED"),
            CgroupVersion::V2 => self.write(self.dirs.freezer(), "cgroup.freeze", "0"),
        }
    }

    /// Whether every process is frozen now (v1 freezer.state == FROZEN, v2 cgroup.events frozen 1).
    pub fn is_frozen(&self) -> bool {
        match self.shared.version {
            CgroupVersion::V1 => self
                .read(self.dirs.freezer(), "freezer.state")
                .is_some_and(|state| state.trim() == "FROZEN"),
            CgroupVersion::V2 => {
                self.read(self.dirs.freezer(), "cgroup.events")
                    .and_then(|events| parse_counter(&events, "frozen"))
                    == Some(1)
            }
        }
    }

    /// Current usage and peak (v1 usage_in_bytes / max_usage_in_bytes; v2 memory.current /
    /// memory.peak, falling back to current). Errors read as 0.
    pub fn memory(&self) -> MemoryUsage {
        let dir = self.dirs.memory();
        let number = |file| {
            self.read(dir, file)
                .and_then(|text| text.trim().parse::<u64>().ok())
        };
        let (current, peak) = match self.shared.version {
            CgroupVersion::V1 => (
                number("memory.usage_in_bytes"),
                number("memory.max_usage_in_bytes"),
            ),
            CgroupVersion::V2 => {
                let current = number("memory.current");
                let peak = if self.shared.features.peak {
                    number("memory.peak")
                } else {
                    None
                };
                (current, peak)
            }
        };
        let current_bytes = current.unwrap_or(0);
        MemoryUsage {
            current_bytes,
            peak_bytes: peak.unwrap_or(current_bytes).max(current_bytes),
        }
    }

    /// Whether the kernel's OOM killer killed a process of this group (oom_kill counter > 0 in
    /// v1 memory.oom_control / v2 memory.events).
    pub fn oom_killed(&self) -> bool {
        let file = match self.shared.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        self.read(self.dirs.memory(), file)
            .and_then(|text| parse_counter(&text, "oom_kill"))
            .is_some_and(|kills| kills > 0)
    }

    /// The pids in the group (v1: of the pids hierarchy).
    pub fn procs(&self) -> Vec<i32> {
        self.read(self.dirs.pids(), "cgroup.procs")
            .map(|text| parse_pids(&text))
            .unwrap_or_default()
    }

    /// SIGKILLs every process (v2 cgroup.kill when present, else each pid in procs), then thaws
    /// so frozen processes die.
    pub fn kill_all(&self) {
        let fs = &*self.shared.fs;
        let by_file = self.shared.version == CgroupVersion::V2
            && self.shared.features.kill_file
            && fs.write(&self.dirs.pids().join("cgroup.kill"), "1").is_ok();
        if !by_file {
            // Two passes: the second catches children forked while the first was under way.
            // On v1 the hierarchies are read separately, so a process that joined only some of
            // them is found too.
            for _ in 0..2 {
                let mut pids = BTreeSet::new();
                for dir in &self.dirs.paths {
                    if let Some(text) = self.read(dir, "cgroup.procs") {
                        pids.extend(parse_pids(&text));
                    }
                }
                for pid in pids.into_iter().filter(|&pid| self.shared.may_kill(pid)) {
                    if let Err(e) = fs.kill(pid) {
                        if e.raw_os_error() != Some(libc::ESRCH) {
                            tracing::debug!(group = %self.name, pid, error = %e,
                                "failed to kill a process of a cgroup");
                        }
                    }
                }
            }
        }
        if let Err(e) = self.thaw() {
            tracing::debug!(group = %self.name, error = %e, "failed to thaw a killed cgroup");
        }
    }

    /// Removes the group from every hierarchy; blocking: retries rmdir (EBUSY while dying
    /// processes are still listed) for up to 2 s, killing again between tries.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        let mut remaining: Vec<&Path> = self.dirs.paths.iter().map(PathBuf::as_path).collect();
        loop {
            let mut busy = None;
            let mut failed = None;
            remaining.retain(|dir| match self.shared.fs.rmdir(dir) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    busy = Some((dir.to_path_buf(), e));
                    true
                }
                Err(e) => {
                    failed = Some((dir.to_path_buf(), e));
                    true
                }
            });
            if let Some((path, source)) = failed {
                return Err(CgroupError::Remove { path, source });
            }
            let Some((path, source)) = busy else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(CgroupError::Remove { path, source });
            }
            self.kill_all();
            std::thread::sleep(REMOVE_RETRY_INTERVAL);
        }
    }

    /// Writes the limits of a freshly made group.
    fn apply_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let memory = self.dirs.memory();
        let bytes = limits.memory_bytes.to_string();
        match self.shared.version {
            CgroupVersion::V1 => {
                self.write(memory, "memory.limit_in_bytes", &bytes)?;
                if self.shared.features.memsw {
                    self.write(memory, "memory.memsw.limit_in_bytes", &bytes)?;
                }
                // Refused by some kernels for non-root groups; the memsw limit is what counts.
                let _ = self.shared.fs.write(&memory.join("memory.swappiness"), "0");
            }
            CgroupVersion::V2 => {
                self.write(memory, "memory.max", &bytes)?;
                if self.shared.features.swap_max {
                    self.write(memory, "memory.swap.max", "0")?;
                }
            }
        }
        self.write(self.dirs.pids(), "pids.max", &limits.pids_max.to_string())?;
        // A new group has no quota; only a quota needs writing.
        if limits.cpu_cores.is_some() {
            self.set_cpu(limits.cpu_cores)?;
        }
        Ok(())
    }

    /// Removes the first `count` directories (best effort), undoing a failed `create`.
    fn rmdir_first(&self, count: usize) {
        for dir in self.dirs.paths.iter().take(count) {
            let _ = self.shared.fs.rmdir(dir);
        }
    }

    fn write(&self, dir: &Path, file: &'static str, value: &str) -> Result<(), CgroupError> {
        let path = dir.join(file);
        self.shared
            .fs
            .write(&path, value)
            .map_err(|source| CgroupError::Write {
                group: self.name.clone(),
                file,
                path,
                source,
            })
    }

    fn read(&self, dir: &Path, file: &str) -> Option<String> {
        self.shared.fs.read(&dir.join(file)).ok()
    }
}

/// Whether process `pid` exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
        Err(e) => e.kind() != io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// `round(cores * period)` in microseconds, at least 1 ms.
fn cpu_quota_us(cores: f64) -> i64 {
    // `as` saturates and maps NaN to 0.
    ((cores * CPU_PERIOD_US as f64).round() as i64).max(MIN_CPU_QUOTA_US)
}

/// The value of a `key N` line (`oom_kill 3` in memory.oom_control or memory.events).
fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.trim().split_once(char::is_whitespace)?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

fn parse_pids(text: &str) -> Vec<i32> {
    text.lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// One line of /proc/self/mountinfo that mounts a cgroup file system.
#[derive(Debug, Clone, PartialEq)]
struct CgroupMount {
    /// The directory of the hierarchy's group `root` (usually `/`) in the mount namespace.
    root: String,
    mount_point: PathBuf,
    v2: bool,
    /// The super options (`rw,cpu,cpuacct`); for v1 they name the controllers.
    options: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional...] - fstype source super
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().skip(6).position(|f| *f == "-")? + 6;
            let fstype = *fields.get(dash + 1)?;
            let v2 = match fstype {
                "cgroup" => false,
                "cgroup2" => true,
                _ => return None,
            };
            Some(CgroupMount {
                root: unescape_mount_field(fields.get(3)?),
                mount_point: PathBuf::from(unescape_mount_field(fields.get(4)?)),
                v2,
                options: fields
                    .get(dash + 3)
                    .map(|o| o.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Undoes the octal escapes of mountinfo (`\040` for a space).
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match escaped {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/cgroup: the controllers of a hierarchy (empty for v2) and the
/// process's path in it.
#[derive(Debug, Clone, PartialEq)]
struct Membership {
    v2: bool,
    controllers: Vec<String>,
    path: String,
}

fn parse_self_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                v2: id == "0" && controllers.is_empty(),
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The directory of the process's group `own_path` under `mount`, if the mount shows it.
fn group_dir(mount: &CgroupMount, own_path: &str) -> Option<PathBuf> {
    let relative = if mount.root == "/" {
        own_path
    } else {
        let rest = own_path.strip_prefix(mount.root.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let relative = relative.trim_start_matches('/');
    Some(if relative.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(relative)
    })
}

/// The own group of this process in the v1 hierarchy of `controller`, or why there is none.
fn v1_dir(
    mounts: &[CgroupMount],
    members: &[Membership],
    controller: &str,
) -> Result<PathBuf, String> {
    let member = members
        .iter()
        .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))
        .ok_or_else(|| format!("no v1 {controller} hierarchy in /proc/self/cgroup"))?;
    mounts
        .iter()
        .filter(|m| !m.v2 && m.options.iter().any(|o| o == controller))
        .find_map(|m| group_dir(m, &member.path))
        .ok_or_else(|| {
            format!(
                "the v1 {controller} group {} is not visible under any mount",
                member.path
            )
        })
}

/// Picks the version and finds this process's own group in each hierarchy.
fn detect(
    fs: &dyn CgroupFs,
    mountinfo: &str,
    self_cgroup: &str,
) -> Result<(CgroupVersion, Dirs), CgroupError> {
    let mounts = parse_mountinfo(mountinfo);
    let members = parse_self_cgroup(self_cgroup);

    let v1 = ["memory", "cpu", "pids", "freezer"].map(|c| v1_dir(&mounts, &members, c));
    let v1_problems: Vec<String> = v1.iter().filter_map(|r| r.clone().err()).collect();
    if let [Ok(memory), Ok(cpu), Ok(pids), Ok(freezer)] = v1 {
        return Ok((CgroupVersion::V1, Dirs::new(memory, cpu, pids, freezer)));
    }

    let v2_problem = match members.iter().find(|m| m.v2) {
        None => "no v2 entry in /proc/self/cgroup".to_owned(),
        Some(member) => {
            let mut problem = "no cgroup2 mount".to_owned();
            for mount in mounts.iter().filter(|m| m.v2) {
                let Some(dir) = group_dir(mount, &member.path) else {
                    problem = format!("the v2 group {} is not visible", member.path);
                    continue;
                };
                let path = mount.mount_point.join("cgroup.controllers");
                let controllers = fs.read(&path).unwrap_or_default();
                let missing = missing_controllers(&controllers);
                if missing.is_empty() {
                    return Ok((CgroupVersion::V2, Dirs::unified(dir)));
                }
                problem = format!(
                    "the cgroup2 mount {} lacks {} (bound to v1 or not built in)",
                    mount.mount_point.display(),
                    missing.join(", ")
                );
            }
            problem
        }
    };
    Err(CgroupError::NotAvailable {
        reason: format!(
            "need memory, cpu, pids and freezer as v1 hierarchies or memory, cpu and pids on \
             cgroup v2; v1: {}; v2: {v2_problem}",
            v1_problems.join(", ")
        ),
    })
}

/// Which of memory, cpu and pids a `cgroup.controllers` text lacks.
fn missing_controllers(controllers: &str) -> Vec<&'static str> {
    let present: Vec<&str> = controllers.split_whitespace().collect();
    ["memory", "cpu", "pids"]
        .into_iter()
        .filter(|c| !present.contains(c))
        .collect()
}

/// Refuses a v2 group whose parent did not hand it memory, cpu and pids.
fn check_v2_delegation(fs: &dyn CgroupFs, own: &Path) -> Result<(), CgroupError> {
    let path = own.join("cgroup.controllers");
    let controllers = fs
        .read(&path)
        .map_err(|source| CgroupError::Read { path, source })?;
    let missing = missing_controllers(&controllers);
    if missing.is_empty() {
        return Ok(());
    }
    Err(CgroupError::NotAvailable {
        reason: format!(
            "the server's cgroup {} was not given {} by its parent; run serval in a delegated \
             cgroup, e.g. `systemd-run --scope -p Delegate=yes serval server`",
            own.display(),
            missing.join(", ")
        ),
    })
}

/// `mkdir` that accepts an existing directory.
fn ensure_dir(fs: &dyn CgroupFs, dir: &Path) -> Result<(), CgroupError> {
    match fs.mkdir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Makes `parent` inside `root`, remaking `root` if another server removed it meanwhile.
fn ensure_parent(fs: &dyn CgroupFs, root: &Path, parent: &Path) -> Result<(), CgroupError> {
    let mut attempt = 1;
    loop {
        match fs.mkdir(parent) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < MKDIR_ATTEMPTS => {
                ensure_dir(fs, root)?;
                attempt += 1;
            }
            Err(source) => {
                return Err(CgroupError::Create {
                    path: parent.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Empties and removes the parents of servers that are gone, and empties the one named for our
/// own pid (left by an earlier process that had it), which is then reused.
fn remove_stale(shared: &Shared, root: &Dirs, own_name: &str, pid_alive: &dyn Fn(u32) -> bool) {
    let mut names = BTreeSet::new();
    for dir in &root.paths {
        names.extend(shared.fs.list_dirs(dir).unwrap_or_default());
    }
    for name in names {
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let parent = root.join(&name);
        if name == own_name {
            let removed = empty_parent(shared, &parent, None);
            if removed > 0 {
                tracing::info!(
                    server_pid = pid,
                    groups = removed,
                    "emptied the cgroups an earlier server with this pid left"
                );
            }
            continue;
        }
        if pid_alive(pid) {
            continue;
        }
        let removed = empty_parent(shared, &parent, None);
        let group = EnvCgroup {
            shared: stale_shared(shared),
            name: format!("{SERVAL_DIR}/{name}"),
            dirs: parent,
        };
        group.kill_all();
        match group.remove() {
            Ok(()) => tracing::info!(
                server_pid = pid,
                groups = removed,
                "removed the cgroups of a server that is gone"
            ),
            Err(e) => tracing::warn!(server_pid = pid, error = %e,
                "failed to remove the cgroups of a server that is gone"),
        }
    }
}

/// A view of `shared` for groups of other servers: no optional features assumed.
fn stale_shared(shared: &Shared) -> Arc<Shared> {
    Arc::new(Shared {
        fs: Arc::clone(&shared.fs),
        version: shared.version,
        features: Features {
            kill_file: shared.version == CgroupVersion::V2,
            ..Features::default()
        },
        server_pid: shared.server_pid,
    })
}

/// Kills the processes of every child group of `parent` and removes those groups (except `skip`);
/// the number removed.
fn empty_parent(shared: &Shared, parent: &Dirs, skip: Option<&str>) -> usize {
    let mut names = BTreeSet::new();
    for dir in &parent.paths {
        names.extend(shared.fs.list_dirs(dir).unwrap_or_default());
    }
    let view = stale_shared(shared);
    let mut removed = 0;
    for name in names.into_iter().filter(|n| Some(n.as_str()) != skip) {
        let group = EnvCgroup {
            shared: Arc::clone(&view),
            dirs: parent.join(&name),
            name,
        };
        group.kill_all();
        match group.remove() {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(group = %group.name, error = %e,
                "failed to remove a left-over cgroup"),
        }
    }
    removed
}

/// Enables memory, cpu and pids from the server's own group down to its parent. When the own
/// group holds the server alone, moves the server into a leaf first (v2 lets only groups without
/// processes hand out controllers); the leaf, if made.
fn enable_v2_controllers(
    shared: &Shared,
    own: &Path,
    root: &Path,
    parent: &Path,
) -> Result<Option<PathBuf>, CgroupError> {
    let fs = &*shared.fs;
    let write = |dir: &Path, file: &'static str, value: &str| {
        let path = dir.join(file);
        fs.write(&path, value).map_err(|source| CgroupError::Write {
            group: dir.display().to_string(),
            file,
            path,
            source,
        })
    };
    let busy = |e: &CgroupError| matches!(e, CgroupError::Write { source, .. } if source.raw_os_error() == Some(libc::EBUSY));
    let shared_with_others = |others: usize| CgroupError::NotAvailable {
        reason: format!(
            "the server's cgroup {} holds {others} other process(es), and cgroup v2 enables \
             controllers only for groups without processes of their own; run serval alone in a \
             delegated cgroup, e.g. `systemd-run --scope -p Delegate=yes serval server`",
            own.display()
        ),
    };

    let mut leaf = None;
    if let Err(error) = write(own, "cgroup.subtree_control", V2_CONTROLLERS) {
        if !busy(&error) {
            return Err(error);
        }
        let procs_path = own.join("cgroup.procs");
        let procs = fs.read(&procs_path).map_err(|source| CgroupError::Read {
            path: procs_path,
            source,
        })?;
        let others = parse_pids(&procs)
            .into_iter()
            .filter(|&pid| pid as u32 != shared.server_pid)
            .count();
        if others > 0 {
            return Err(shared_with_others(others));
        }
        let server_dir = parent.join(SERVER_LEAF);
        ensure_dir(fs, &server_dir)?;
        write(&server_dir, "cgroup.procs", &shared.server_pid.to_string())?;
        tracing::info!(cgroup = %server_dir.display(),
            "moved the server into a leaf cgroup to enable controllers for its environments");
        leaf = Some(server_dir);
        if let Err(error) = write(own, "cgroup.subtree_control", V2_CONTROLLERS) {
            if busy(&error) {
                return Err(shared_with_others(1));
            }
            return Err(error);
        }
    }
    write(root, "cgroup.subtree_control", V2_CONTROLLERS)?;
    write(parent, "cgroup.subtree_control", V2_CONTROLLERS)?;
    Ok(leaf)
}

/// Which optional files the kernel offers, seen on the server's parent group.
fn probe_features(fs: &dyn CgroupFs, version: CgroupVersion, parent: &Dirs) -> Features {
    let memory = parent.memory();
    match version {
        CgroupVersion::V1 => Features {
            memsw: fs.exists(&memory.join("memory.memsw.limit_in_bytes")),
            ..Features::default()
        },
        CgroupVersion::V2 => Features {
            memsw: false,
            swap_max: fs.exists(&memory.join("memory.swap.max")),
            kill_file: fs.exists(&memory.join("cgroup.kill")),
            peak: fs.exists(&memory.join("memory.peak")),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;

    use super::*;

    // ---- a fake cgroup file system -------------------------------------------------------------

    /// Files every new group gets on v1 (all controllers' files, whatever the hierarchy).
    const V1_FILES: &[(&str, &str)] = &[
        ("cgroup.procs", ""),
        ("tasks", ""),
        ("memory.limit_in_bytes", "9223372036854771712\n"),
        ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
        ("memory.swappiness", "60\n"),
        ("memory.usage_in_bytes", "0\n"),
        ("memory.max_usage_in_bytes", "0\n"),
        (
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        ),
        ("pids.max", "max\n"),
        ("cpu.cfs_period_us", "100000\n"),
        ("cpu.cfs_quota_us", "-1\n"),
        ("freezer.state", "THAWED\n"),
    ];

    const V2_FILES: &[(&str, &str)] = &[
        ("cgroup.procs", ""),
        ("cgroup.controllers", "cpu memory pids\n"),
        ("cgroup.subtree_control", ""),
        ("cgroup.freeze", "0\n"),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
        ("cgroup.kill", ""),
        ("memory.max", "max\n"),
        ("memory.swap.max", "max\n"),
        ("memory.current", "0\n"),
        ("memory.peak", "0\n"),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
        ),
        ("pids.max", "max\n"),
        ("cpu.max", "max 100000\n"),
    ];

    #[derive(Default)]
    struct FakeState {
        dirs: BTreeSet<PathBuf>,
        files: BTreeMap<PathBuf, String>,
        writes: Vec<(PathBuf, String)>,
        killed: Vec<i32>,
        opened: Vec<PathBuf>,
        template: Vec<(&'static str, &'static str)>,
        /// Groups exempt from v2's "no internal processes" rule (the real root).
        mount_roots: BTreeSet<PathBuf>,
        fail_writes: BTreeMap<PathBuf, i32>,
    }

    /// An in-memory cgroup tree with the kernel's rules that matter here: control files appear
    /// with `mkdir`, `rmdir` is refused while processes or children remain, writes need an
    /// existing file, v2 `cgroup.subtree_control` is refused in a group with processes, writing a
    /// pid to `cgroup.procs` moves it, `kill` and `cgroup.kill` make processes leave.
    struct FakeFs(Mutex<FakeState>);

    fn errno(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    impl FakeFs {
        fn new(template: &[(&'static str, &'static str)]) -> Arc<FakeFs> {
            Arc::new(FakeFs(Mutex::new(FakeState {
                template: template.to_vec(),
                dirs: [PathBuf::from("/")].into(),
                ..FakeState::default()
            })))
        }

        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.0.lock().expect("fake fs lock")
        }

        /// `mkdir -p` with the control files in every new directory.
        fn add_group(&self, path: &str) {
            let mut ancestors: Vec<&Path> = Path::new(path).ancestors().collect();
            ancestors.reverse();
            for dir in ancestors {
                if !self.state().dirs.contains(dir) {
                    self.mkdir(dir).expect("fake mkdir");
                }
            }
        }

        fn set(&self, path: &str, content: &str) {
            self.state()
                .files
                .insert(PathBuf::from(path), content.to_owned());
        }

        fn get(&self, path: &str) -> Option<String> {
            self.state().files.get(Path::new(path)).cloned()
        }

        fn remove_file(&self, path: &str) {
            self.state().files.remove(Path::new(path));
        }

        fn has_dir(&self, path: &str) -> bool {
            self.state().dirs.contains(Path::new(path))
        }

        fn writes(&self) -> Vec<(String, String)> {
            self.state()
                .writes
                .iter()
                .map(|(p, v)| (p.display().to_string(), v.clone()))
                .collect()
        }

        fn clear_writes(&self) {
            self.state().writes.clear();
        }

        fn killed(&self) -> Vec<i32> {
            self.state().killed.clone()
        }

        fn leave_everywhere(state: &mut FakeState, pid: i32) {
            for (path, content) in state.files.iter_mut() {
                if path.ends_with("cgroup.procs") {
                    *content = parse_pids(content)
                        .into_iter()
                        .filter(|&p| p != pid)
                        .map(|p| format!("{p}\n"))
                        .collect();
                }
            }
        }
    }

    impl CgroupFs for FakeFs {
        fn mkdir(&self, path: &Path) -> io::Result<()> {
            let mut state = self.state();
            if state.dirs.contains(path) {
                return Err(errno(libc::EEXIST));
            }
            if !path.parent().is_some_and(|p| state.dirs.contains(p)) {
                return Err(errno(libc::ENOENT));
            }
            state.dirs.insert(path.to_path_buf());
            let template = state.template.clone();
            for (name, content) in template {
                state.files.insert(path.join(name), content.to_owned());
            }
            Ok(())
        }

        fn rmdir(&self, path: &Path) -> io::Result<()> {
            let mut state = self.state();
            if !state.dirs.contains(path) {
                return Err(errno(libc::ENOENT));
            }
            let procs = state
                .files
                .get(&path.join("cgroup.procs"))
                .cloned()
                .unwrap_or_default();
            let has_children = state
                .dirs
                .iter()
                .any(|d| d.parent() == Some(path) && d != path);
            if !procs.trim().is_empty() || has_children {
                return Err(errno(libc::EBUSY));
            }
            state.dirs.remove(path);
            state.files.retain(|f, _| f.parent() != Some(path));
            Ok(())
        }

        fn write(&self, path: &Path, value: &str) -> io::Result<()> {
            let mut state = self.state();
            if let Some(&code) = state.fail_writes.get(path) {
                return Err(errno(code));
            }
            if !state.files.contains_key(path) {
                return Err(errno(libc::ENOENT));
            }
            let dir = path.parent().expect("files live in a dir").to_path_buf();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            state.writes.push((path.to_path_buf(), value.to_owned()));
            match name {
                "cgroup.subtree_control" => {
                    let procs = &state.files[&dir.join("cgroup.procs")];
                    if !state.mount_roots.contains(&dir) && !procs.trim().is_empty() {
                        return Err(errno(libc::EBUSY));
                    }
                    state.files.insert(path.to_path_buf(), value.to_owned());
                }
                "cgroup.procs" => {
                    let pid: i32 = value.trim().parse().map_err(|_| errno(libc::EINVAL))?;
                    FakeFs::leave_everywhere(&mut state, pid);
                    state
                        .files
                        .get_mut(path)
                        .expect("checked above")
                        .push_str(&format!("{pid}\n"));
                }
                "cgroup.kill" => {
                    let procs = state.files[&dir.join("cgroup.procs")].clone();
                    for pid in parse_pids(&procs) {
                        state.killed.push(pid);
                        FakeFs::leave_everywhere(&mut state, pid);
                    }
                }
                _ => {
                    state.files.insert(path.to_path_buf(), value.to_owned());
                }
            }
            Ok(())
        }

        fn read(&self, path: &Path) -> io::Result<String> {
            self.state()
                .files
                .get(path)
                .cloned()
                .ok_or_else(|| errno(libc::ENOENT))
        }

        fn list_dirs(&self, path: &Path) -> io::Result<Vec<String>> {
            let state = self.state();
            if !state.dirs.contains(path) {
                return Err(errno(libc::ENOENT));
            }
            Ok(state
                .dirs
                .iter()
                .filter(|d| d.parent() == Some(path) && *d != path)
                .filter_map(|d| d.file_name()?.to_str().map(str::to_owned))
                .collect())
        }

        fn exists(&self, path: &Path) -> bool {
            let state = self.state();
            state.dirs.contains(path) || state.files.contains_key(path)
        }

        fn open_write(&self, path: &Path) -> io::Result<OwnedFd> {
            let mut state = self.state();
            if !state.files.contains_key(path) {
                return Err(errno(libc::ENOENT));
            }
            state.opened.push(path.to_path_buf());
            Ok(std::fs::File::options()
                .write(true)
                .open("/dev/null")?
                .into())
        }

        fn kill(&self, pid: i32) -> io::Result<()> {
            let mut state = self.state();
            state.killed.push(pid);
            FakeFs::leave_everywhere(&mut state, pid);
            Ok(())
        }
    }

    // ---- fixtures ------------------------------------------------------------------------------

    const SERVER_PID: u32 = 123;

    /// Like this CI machine, with cpu and cpuacct co-mounted and the memory group nested.
    const V1_MOUNTINFO: &str = "\
31 23 0:28 / /cg ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /cg/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /cg/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /cg/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /cg/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /cg/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /cg/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /cg/unified rw,relatime - cgroup2 cgroup2 rw
";

    const V1_SELF: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
1:cpu,cpuacct:/
0::/
";

    const V1_MEMORY: &str = "/cg/memory/process_api/abc/serval/123";
    const V1_CPU: &str = "/cg/cpu,cpuacct/serval/123";
    const V1_PIDS: &str = "/cg/pids/serval/123";
    const V1_FREEZER: &str = "/cg/freezer/serval/123";

    fn v1_fs() -> Arc<FakeFs> {
        let fs = FakeFs::new(V1_FILES);
        for dir in [
            "/cg/cpu,cpuacct",
            "/cg/memory/process_api/abc",
            "/cg/devices",
            "/cg/freezer",
            "/cg/pids",
        ] {
            fs.add_group(dir);
        }
        fs.state().template = V2_FILES.to_vec();
        fs.add_group("/cg/unified");
        fs.set("/cg/unified/cgroup.controllers", "hugetlb\n");
        fs.state().template = V1_FILES.to_vec();
        fs
    }

    const V2_MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const V2_SELF: &str = "0::/system.slice/serval.service\n";
    const V2_OWN: &str = "/sys/fs/cgroup/system.slice/serval.service";
    const V2_PARENT: &str = "/sys/fs/cgroup/system.slice/serval.service/serval/123";

    /// A v2 tree whose own group already hands out the controllers (the server at the root of a
    /// delegated subtree, no processes in its own group in the fake).
    fn v2_fs() -> Arc<FakeFs> {
        let fs = FakeFs::new(V2_FILES);
        fs.add_group(V2_OWN);
        fs.set(
            "/sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        );
        fs.state()
            .mount_roots
            .insert(PathBuf::from("/sys/fs/cgroup"));
        fs
    }

    fn init(fs: &Arc<FakeFs>, mountinfo: &str, self_cgroup: &str) -> Cgroups {
        init_result(fs, mountinfo, self_cgroup).expect("init")
    }

    fn init_result(
        fs: &Arc<FakeFs>,
        mountinfo: &str,
        self_cgroup: &str,
    ) -> Result<Cgroups, CgroupError> {
        let fs: Arc<dyn CgroupFs> = Arc::clone(fs) as Arc<dyn CgroupFs>;
        Cgroups::init_with(fs, mountinfo, self_cgroup, SERVER_PID, &|_| true)
    }

    fn limits(cpu_cores: Option<f64>) -> CgroupLimits {
        CgroupLimits {
            memory_bytes: 64 << 20,
            pids_max: 8,
            cpu_cores,
        }
    }

    fn w(path: &str, value: &str) -> (String, String) {
        (path.to_owned(), value.to_owned())
    }

    // ---- detection and parsing -----------------------------------------------------------------

    #[test]
    fn detects_v1_with_comounted_cpu_and_nested_memory_group() {
        let fs = v1_fs();
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        assert_eq!(cgroups.version(), CgroupVersion::V1);
        assert_eq!(cgroups.describe(), "cgroup v1");
        assert_eq!(cgroups.parent.memory(), Path::new(V1_MEMORY));
        assert_eq!(cgroups.parent.cpu(), Path::new(V1_CPU));
        assert_eq!(cgroups.parent.pids(), Path::new(V1_PIDS));
        assert_eq!(cgroups.parent.freezer(), Path::new(V1_FREEZER));
        for dir in [V1_MEMORY, V1_CPU, V1_PIDS, V1_FREEZER] {
            assert!(fs.has_dir(dir), "{dir} made");
        }
        assert!(cgroups.shared.features.memsw);
    }

    #[test]
    fn detects_v2_when_the_unified_mount_has_memory_cpu_and_pids() {
        let fs = v2_fs();
        let cgroups = init(&fs, V2_MOUNTINFO, V2_SELF);
        assert_eq!(cgroups.version(), CgroupVersion::V2);
        assert_eq!(cgroups.describe(), "cgroup v2");
        assert_eq!(cgroups.parent.paths, vec![PathBuf::from(V2_PARENT)]);
        assert_eq!(
            fs.writes(),
            vec![
                w(&format!("{V2_OWN}/cgroup.subtree_control"), V2_CONTROLLERS),
                w(
                    &format!("{V2_OWN}/serval/cgroup.subtree_control"),
                    V2_CONTROLLERS
                ),
                w(
                    &format!("{V2_PARENT}/cgroup.subtree_control"),
                    V2_CONTROLLERS
                ),
            ]
        );
        assert!(cgroups.server_leaf.is_none());
        let features = cgroups.shared.features;
        assert!(features.swap_max && features.kill_file && features.peak);
    }

    #[test]
    fn prefers_v1_when_a_hybrid_unified_mount_has_the_controllers_too() {
        let fs = v1_fs();
        fs.set("/cg/unified/cgroup.controllers", "cpu memory pids\n");
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        assert_eq!(cgroups.version(), CgroupVersion::V1);
    }

    #[test]
    fn refuses_a_v1_tree_without_freezer_when_v2_has_only_hugetlb() {
        let fs = v1_fs();
        let mountinfo: String = V1_MOUNTINFO
            .lines()
            .filter(|l| !l.contains("freezer"))
            .map(|l| format!("{l}\n"))
            .collect();
        let error = init_result(&fs, &mountinfo, V1_SELF).expect_err("no freezer");
        let CgroupError::NotAvailable { reason } = &error else {
            panic!("unexpected {error:?}");
        };
        assert!(reason.contains("freezer"), "{reason}");
        assert!(reason.contains("lacks memory, cpu, pids"), "{reason}");
        assert!(error.to_string().starts_with("cgroups are not available: "));
    }

    #[test]
    fn refuses_a_v2_group_that_was_not_given_the_controllers() {
        let fs = v2_fs();
        fs.set(&format!("{V2_OWN}/cgroup.controllers"), "memory\n");
        let error = init_result(&fs, V2_MOUNTINFO, V2_SELF).expect_err("not delegated");
        let CgroupError::NotAvailable { reason } = error else {
            panic!("unexpected {error:?}");
        };
        assert!(reason.contains("cpu, pids"), "{reason}");
        assert!(reason.contains("Delegate=yes"), "{reason}");
    }

    #[test]
    fn moves_the_server_into_a_leaf_when_its_v2_group_holds_only_the_server() {
        let fs = v2_fs();
        fs.set(&format!("{V2_OWN}/cgroup.procs"), "123\n");
        let cgroups = init(&fs, V2_MOUNTINFO, V2_SELF);
        let leaf = format!("{V2_PARENT}/server");
        assert_eq!(cgroups.server_leaf, Some(PathBuf::from(&leaf)));
        assert_eq!(
            fs.get(&format!("{leaf}/cgroup.procs")).as_deref(),
            Some("123\n")
        );
        assert_eq!(
            fs.get(&format!("{V2_OWN}/cgroup.procs")).as_deref(),
            Some("")
        );
        assert_eq!(
            fs.get(&format!("{V2_PARENT}/cgroup.subtree_control"))
                .as_deref(),
            Some(V2_CONTROLLERS)
        );

        // Environments are siblings of the leaf; the leaf stays at shutdown.
        let group = cgroups
            .create(EnvironmentId::next(), &limits(None))
            .expect("create");
        group.remove().expect("remove");
        cgroups.remove_parents();
        assert!(fs.has_dir(&leaf));
        assert!(fs.killed().is_empty());
    }

    #[test]
    fn refuses_a_v2_group_shared_with_other_processes() {
        let fs = v2_fs();
        fs.set(&format!("{V2_OWN}/cgroup.procs"), "123\n77\n");
        let error = init_result(&fs, V2_MOUNTINFO, V2_SELF).expect_err("busy");
        let CgroupError::NotAvailable { reason } = error else {
            panic!("unexpected {error:?}");
        };
        assert!(reason.contains("1 other process"), "{reason}");
        assert!(
            reason.contains("systemd-run --scope -p Delegate=yes"),
            "{reason}"
        );
        // Nothing moved.
        assert_eq!(
            fs.get(&format!("{V2_OWN}/cgroup.procs")).as_deref(),
            Some("123\n77\n")
        );
    }

    #[test]
    fn parses_mountinfo_escapes_optional_fields_and_mount_roots() {
        let mounts = parse_mountinfo(
            "1 0 0:1 /docker/abc /sys/fs/cgroup/my\\040mem rw shared:1 master:2 - cgroup cgroup rw,memory\n\
             2 0 0:2 / /proc rw - proc proc rw\n\
             3 0 0:3 / /cg2 rw - cgroup2 none rw\n",
        );
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].root, "/docker/abc");
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/my mem"));
        assert!(!mounts[0].v2);
        assert_eq!(mounts[0].options, vec!["rw", "memory"]);
        assert!(mounts[1].v2);

        let memory = &mounts[0];
        assert_eq!(
            group_dir(memory, "/docker/abc/sub").as_deref(),
            Some(Path::new("/sys/fs/cgroup/my mem/sub"))
        );
        assert_eq!(
            group_dir(memory, "/docker/abc").as_deref(),
            Some(Path::new("/sys/fs/cgroup/my mem"))
        );
        assert_eq!(group_dir(memory, "/docker/abcd"), None);
        assert_eq!(group_dir(memory, "/other"), None);
        assert_eq!(
            group_dir(&mounts[1], "/").as_deref(),
            Some(Path::new("/cg2"))
        );
    }

    #[test]
    fn parses_self_cgroup_lines_of_both_versions() {
        let members = parse_self_cgroup("1:cpu,cpuacct:/a\n0::/b:c\n9:name=systemd:/\n");
        assert_eq!(members[0].controllers, vec!["cpu", "cpuacct"]);
        assert!(!members[0].v2);
        assert_eq!(members[1].path, "/b:c");
        assert!(members[1].v2);
        assert!(!members[2].v2);
    }

    #[test]
    fn shares_one_directory_between_comounted_controllers() {
        let dirs = Dirs::new("/m".into(), "/cp".into(), "/cp".into(), "/f".into());
        assert_eq!(dirs.paths.len(), 3);
        assert_eq!(dirs.cpu(), dirs.pids());
        assert_eq!(dirs.join("env-1").pids(), Path::new("/cp/env-1"));
    }

    #[test]
    fn computes_cpu_quota_with_a_floor_of_one_millisecond() {
        assert_eq!(cpu_quota_us(1.0), 100_000);
        assert_eq!(cpu_quota_us(1.5), 150_000);
        assert_eq!(cpu_quota_us(0.123_456), 12_346);
        assert_eq!(cpu_quota_us(0.005), 1_000);
        assert_eq!(cpu_quota_us(0.0), 1_000);
        assert_eq!(cpu_quota_us(-2.0), 1_000);
        assert_eq!(cpu_quota_us(f64::NAN), 1_000);
    }

    #[test]
    fn parses_oom_kill_counters() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_counter(v1, "oom_kill"), Some(2));
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_counter(v2, "oom_kill"), Some(1));
        assert_eq!(parse_counter("oom_kill_disable 1\n", "oom_kill"), None);
        assert_eq!(parse_counter("oom_kill x\n", "oom_kill"), None);
    }

    // ---- creation and limits -------------------------------------------------------------------

    #[test]
    fn v1_create_writes_limits_into_each_hierarchy() {
        let fs = v1_fs();
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        fs.clear_writes();
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(Some(0.5))).expect("create");
        let name = id.to_string();
        assert_eq!(
            fs.writes(),
            vec![
                w(
                    &format!("{V1_MEMORY}/{name}/memory.limit_in_bytes"),
                    "67108864"
                ),
                w(
                    &format!("{V1_MEMORY}/{name}/memory.memsw.limit_in_bytes"),
                    "67108864"
                ),
                w(&format!("{V1_MEMORY}/{name}/memory.swappiness"), "0"),
                w(&format!("{V1_PIDS}/{name}/pids.max"), "8"),
                w(&format!("{V1_CPU}/{name}/cpu.cfs_period_us"), "100000"),
                w(&format!("{V1_CPU}/{name}/cpu.cfs_quota_us"), "50000"),
            ]
        );

        fs.clear_writes();
        group.set_cpu(None).expect("lift quota");
        assert_eq!(
            fs.writes(),
            vec![
                w(&format!("{V1_CPU}/{name}/cpu.cfs_period_us"), "100000"),
                w(&format!("{V1_CPU}/{name}/cpu.cfs_quota_us"), "-1"),
            ]
        );

        let files = group.open_join_files().expect("join files");
        assert_eq!(files.len(), 4);
        let opened = fs.state().opened.clone();
        assert_eq!(
            opened,
            [V1_MEMORY, V1_CPU, V1_PIDS, V1_FREEZER]
                .map(|d| PathBuf::from(format!("{d}/{name}/tasks")))
        );
    }

    #[test]
    fn v1_create_without_quota_or_swap_accounting_skips_those_writes() {
        let fs = v1_fs();
        fs.remove_file(&format!("{V1_MEMORY}/memory.memsw.limit_in_bytes"));
        fs.state()
            .template
            .retain(|(name, _)| *name != "memory.memsw.limit_in_bytes");
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        fs.clear_writes();
        let id = EnvironmentId::next();
        cgroups.create(id, &limits(None)).expect("create");
        let files: Vec<String> = fs
            .writes()
            .into_iter()
            .map(|(path, _)| path.rsplit('/').next().unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            files,
            vec!["memory.limit_in_bytes", "memory.swappiness", "pids.max"]
        );
    }

    #[test]
    fn v2_create_writes_limits_into_the_unified_group() {
        let fs = v2_fs();
        let cgroups = init(&fs, V2_MOUNTINFO, V2_SELF);
        fs.clear_writes();
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(Some(0.25))).expect("create");
        let dir = format!("{V2_PARENT}/{id}");
        assert_eq!(
            fs.writes(),
            vec![
                w(&format!("{dir}/memory.max"), "67108864"),
                w(&format!("{dir}/memory.swap.max"), "0"),
                w(&format!("{dir}/pids.max"), "8"),
                w(&format!("{dir}/cpu.max"), "25000 100000"),
            ]
        );
        fs.clear_writes();
        group.set_cpu(None).expect("lift quota");
        assert_eq!(
            fs.writes(),
            vec![w(&format!("{dir}/cpu.max"), "max 100000")]
        );
        assert_eq!(group.open_join_files().expect("join files").len(), 1);
    }

    #[test]
    fn failed_create_names_the_file_and_leaves_no_group() {
        let fs = v1_fs();
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        let id = EnvironmentId::next();
        fs.state().fail_writes.insert(
            PathBuf::from(format!("{V1_PIDS}/{id}/pids.max")),
            libc::EINVAL,
        );
        let error = cgroups.create(id, &limits(None)).expect_err("refused");
        assert_eq!(
            error.to_string(),
            format!("failed to write pids.max for {id}")
        );
        let source = std::error::Error::source(&error).expect("source kept");
        assert_eq!(
            source.to_string(),
            io::Error::from_raw_os_error(libc::EINVAL).to_string()
        );
        for dir in [V1_MEMORY, V1_CPU, V1_PIDS, V1_FREEZER] {
            assert!(!fs.has_dir(&format!("{dir}/{id}")), "{dir}/{id} left");
        }
    }

    // ---- control -------------------------------------------------------------------------------

    #[test]
    fn freezes_and_reports_frozen_on_both_versions() {
        let fs = v1_fs();
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(None)).expect("create");
        let state = format!("{V1_FREEZER}/{id}/freezer.state");
        group.freeze().expect("freeze");
        assert_eq!(fs.get(&state).as_deref(), Some("FROZEN"));
        fs.set(&state, "FREEZING\n");
        assert!(!group.is_frozen());
        fs.set(&state, "FROZEN\n");
        assert!(group.is_frozen());
        group.thaw().expect("thaw");
        assert!(!group.is_frozen());

        let fs = v2_fs();
        let cgroups = init(&fs, V2_MOUNTINFO, V2_SELF);
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(None)).expect("create");
        let dir = format!("{V2_PARENT}/{id}");
        group.freeze().expect("freeze");
        assert_eq!(
            fs.get(&format!("{dir}/cgroup.freeze")).as_deref(),
            Some("1")
        );
        assert!(!group.is_frozen());
        fs.set(&format!("{dir}/cgroup.events"), "populated 1\nfrozen 1\n");
        assert!(group.is_frozen());
        group.thaw().expect("thaw");
        assert_eq!(
            fs.get(&format!("{dir}/cgroup.freeze")).as_deref(),
            Some("0")
        );
    }

    #[test]
    fn reads_memory_and_oom_kills() {
        let fs = v1_fs();
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(None)).expect("create");
        let dir = format!("{V1_MEMORY}/{id}");
        fs.set(&format!("{dir}/memory.usage_in_bytes"), "4096\n");
        fs.set(&format!("{dir}/memory.max_usage_in_bytes"), "8192\n");
        assert_eq!(
            group.memory(),
            MemoryUsage {
                current_bytes: 4096,
                peak_bytes: 8192
            }
        );
        assert!(!group.oom_killed());
        fs.set(
            &format!("{dir}/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        assert!(group.oom_killed());

        let fs = v2_fs();
        fs.remove_file(&format!("{V2_OWN}/memory.peak"));
        fs.state()
            .template
            .retain(|(name, _)| *name != "memory.peak");
        let cgroups = init(&fs, V2_MOUNTINFO, V2_SELF);
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(None)).expect("create");
        let dir = format!("{V2_PARENT}/{id}");
        fs.set(&format!("{dir}/memory.current"), "12288\n");
        assert_eq!(
            group.memory(),
            MemoryUsage {
                current_bytes: 12288,
                peak_bytes: 12288
            }
        );
        fs.set(&format!("{dir}/memory.current"), "garbage");
        assert_eq!(group.memory(), MemoryUsage::default());
        fs.set(&format!("{dir}/memory.events"), "oom 2\noom_kill 2\n");
        assert!(group.oom_killed());
    }

    #[test]
    fn v1_kill_all_kills_listed_pids_but_never_the_server_then_thaws() {
        let fs = v1_fs();
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(None)).expect("create");
        fs.set(
            &format!("{V1_PIDS}/{id}/cgroup.procs"),
            "0\n-1\n4242\n123\n",
        );
        fs.set(&format!("{V1_MEMORY}/{id}/cgroup.procs"), "4242\n4343\n");
        group.freeze().expect("freeze");
        group.kill_all();
        assert_eq!(fs.killed(), vec![4242, 4343]);
        assert_eq!(
            fs.get(&format!("{V1_FREEZER}/{id}/freezer.state"))
                .as_deref(),
            Some("THAWED")
        );
        assert_eq!(group.procs(), vec![0, -1, 123]);
    }

    #[test]
    fn v2_kill_all_uses_cgroup_kill() {
        let fs = v2_fs();
        let cgroups = init(&fs, V2_MOUNTINFO, V2_SELF);
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(None)).expect("create");
        let dir = format!("{V2_PARENT}/{id}");
        fs.set(&format!("{dir}/cgroup.procs"), "500\n501\n");
        assert_eq!(group.procs(), vec![500, 501]);
        fs.clear_writes();
        group.kill_all();
        assert_eq!(
            fs.writes(),
            vec![
                w(&format!("{dir}/cgroup.kill"), "1"),
                w(&format!("{dir}/cgroup.freeze"), "0"),
            ]
        );
        assert!(group.procs().is_empty());
    }

    #[test]
    fn remove_kills_what_is_left_and_is_idempotent() {
        let fs = v1_fs();
        let cgroups = init(&fs, V1_MOUNTINFO, V1_SELF);
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(None)).expect("create");
        fs.set(&format!("{V1_MEMORY}/{id}/cgroup.procs"), "4242\n");
        group.remove().expect("remove");
        assert_eq!(fs.killed(), vec![4242]);
        for dir in [V1_MEMORY, V1_CPU, V1_PIDS, V1_FREEZER] {
            assert!(!fs.has_dir(&format!("{dir}/{id}")));
        }
        group.remove().expect("removing again is fine");

        cgroups.remove_parents();
        for dir in [V1_MEMORY, V1_CPU, V1_PIDS, V1_FREEZER] {
            assert!(!fs.has_dir(dir), "{dir} left");
            let root = Path::new(dir).parent().expect("serval dir");
            assert!(!fs.exists(root), "{} left", root.display());
        }
    }

    #[test]
    fn remove_reports_other_failures_at_once() {
        struct Refusing;
        impl CgroupFs for Refusing {
            fn mkdir(&self, _: &Path) -> io::Result<()> {
                Ok(())
            }
            fn rmdir(&self, _: &Path) -> io::Result<()> {
                Err(errno(libc::EACCES))
            }
            fn write(&self, _: &Path, _: &str) -> io::Result<()> {
                Ok(())
            }
            fn read(&self, _: &Path) -> io::Result<String> {
                Ok(String::new())
            }
            fn list_dirs(&self, _: &Path) -> io::Result<Vec<String>> {
                Ok(Vec::new())
            }
            fn exists(&self, _: &Path) -> bool {
                true
            }
            fn open_write(&self, _: &Path) -> io::Result<OwnedFd> {
                Err(errno(libc::ENOENT))
            }
            fn kill(&self, _: i32) -> io::Result<()> {
                Ok(())
            }
        }
        let cgroups = Cgroups::init_with(Arc::new(Refusing), V1_MOUNTINFO, V1_SELF, 1, &|_| true)
            .expect("init");
        let id = EnvironmentId::next();
        let group = cgroups.create(id, &limits(None)).expect("create");
        let error = group.remove().expect_err("refused");
        assert!(matches!(error, CgroupError::Remove { .. }));
        assert!(error
            .to_string()
            .starts_with("failed to remove cgroup /cg/"));
        let error = group.open_join_files().expect_err("no file");
        assert_eq!(error.to_string(), format!("failed to open tasks of {id}"));
    }

    // ---- stale clean-up ------------------------------------------------------------------------

    #[test]
    fn removes_parents_of_dead_servers_only_and_empties_our_own() {
        let fs = v1_fs();
        let roots = [
            "/cg/memory/process_api/abc/serval",
            "/cg/cpu,cpuacct/serval",
            "/cg/pids/serval",
            "/cg/freezer/serval",
        ];
        for root in roots {
            fs.add_group(&format!("{root}/111/env-1"));
            fs.set(&format!("{root}/111/env-1/cgroup.procs"), "5001\n");
            fs.add_group(&format!("{root}/222/env-2"));
            fs.set(&format!("{root}/222/env-2/cgroup.procs"), "6001\n");
            fs.add_group(&format!("{root}/123/env-3"));
            fs.set(&format!("{root}/123/env-3/cgroup.procs"), "7001\n");
        }
        fs.add_group("/cg/pids/serval/notes");
        // A half-made group of the dead server in one hierarchy only.
        fs.add_group("/cg/memory/process_api/abc/serval/111/env-9");
        fs.set("/cg/freezer/serval/111/env-1/freezer.state", "FROZEN\n");

        let dyn_fs: Arc<dyn CgroupFs> = Arc::clone(&fs) as Arc<dyn CgroupFs>;
        let cgroups =
            Cgroups::init_with(dyn_fs, V1_MOUNTINFO, V1_SELF, SERVER_PID, &|pid| pid == 222)
                .expect("init");

        let mut killed = fs.killed();
        killed.sort_unstable();
        killed.dedup();
        assert_eq!(killed, vec![5001, 7001]);
        assert!(fs
            .writes()
            .contains(&w("/cg/freezer/serval/111/env-1/freezer.state", "THAWED")));
        for root in roots {
            assert!(!fs.has_dir(&format!("{root}/111")), "{root}/111 left");
            assert!(
                fs.has_dir(&format!("{root}/222/env-2")),
                "{root}/222 removed"
            );
            assert!(fs.has_dir(&format!("{root}/123")), "{root}/123 not reused");
            assert!(
                !fs.has_dir(&format!("{root}/123/env-3")),
                "{root}/123/env-3 left"
            );
        }
        assert!(fs.has_dir("/cg/pids/serval/notes"));
        assert!(cgroups.create(EnvironmentId::next(), &limits(None)).is_ok());
    }

    // ---- RealFs on a temporary directory -------------------------------------------------------

    #[test]
    fn real_fs_works_on_plain_directories() {
        let temp = tempfile::tempdir().expect("temp dir");
        let fs = RealFs;
        let group = temp.path().join("g");
        fs.mkdir(&group).expect("mkdir");
        assert_eq!(
            fs.mkdir(&group).expect_err("exists").kind(),
            io::ErrorKind::AlreadyExists
        );
        let file = group.join("pids.max");
        assert_eq!(
            fs.write(&file, "8").expect_err("no such file").kind(),
            io::ErrorKind::NotFound
        );
        std::fs::write(&file, "max\n").expect("seed file");
        fs.write(&file, "8").expect("write");
        assert_eq!(fs.read(&file).expect("read"), "8");
        fs.mkdir(&group.join("env-1")).expect("mkdir child");
        assert_eq!(fs.list_dirs(&group).expect("list"), vec!["env-1"]);
        assert!(fs.exists(&file));
        let fd = fs.open_write(&file).expect("open");
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        fs.rmdir(&group.join("env-1")).expect("rmdir");
        assert_eq!(
            fs.rmdir(&group.join("env-1")).expect_err("gone").kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn pid_alive_sees_live_processes_and_not_reaped_or_zombie_ones() {
        assert!(pid_alive(std::process::id()));
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        // Until reaped it is a zombie.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!pid_alive(pid), "a zombie is not alive");
        child.wait().expect("reap");
        assert!(!pid_alive(pid));
    }

    // ---- the real cgroup v1 tree (root only) ---------------------------------------------------

    /// Keeps a process alive whose pid serves as a test's server pid: unique among live
    /// processes, and alive for every other server (test or real), so no one's stale clean-up
    /// takes the test's groups while it runs.
    struct PidHolder(Child);

    impl PidHolder {
        fn spawn() -> PidHolder {
            PidHolder(sleeper())
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for PidHolder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleeper() -> Child {
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep")
    }

    /// The real mountinfo and cgroup membership when this machine can run the root tests.
    fn real_v1() -> Option<(String, String)> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root to make cgroups");
            return None;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        match detect(&RealFs, &mountinfo, &self_cgroup) {
            Ok((CgroupVersion::V1, _)) => Some((mountinfo, self_cgroup)),
            Ok((version, _)) => {
                eprintln!("skipping: this machine runs {version:?}, the test needs cgroup v1");
                None
            }
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }

    /// Starts `sleep` inside `group` through its join files.
    fn spawn_in(group: &EnvCgroup) -> Child {
        let files = group.open_join_files().expect("join files");
        let fds: Vec<RawFd> = files.iter().map(AsRawFd::as_raw_fd).collect();
        let mut command = Command::new("sleep");
        command.arg("600").stdin(Stdio::null());
        // SAFETY: the closure only calls write(2), which is async-signal-safe, on descriptors
        // that stay open until `spawn` returns.
        unsafe {
            command.pre_exec(move || {
                for &fd in &fds {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn sleep in the group");
        drop(files);
        child
    }

    fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) for `child` to end; its terminating signal.
    fn wait_for_signal(child: &mut Child) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.signal();
            }
            assert!(Instant::now() < deadline, "process survived");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn real_v1_group_limits_freezes_kills_and_removes() {
        let Some((mountinfo, self_cgroup)) = real_v1() else {
            return;
        };
        let holder = PidHolder::spawn();
        let cgroups = Cgroups::init_with(
            Arc::new(RealFs),
            &mountinfo,
            &self_cgroup,
            holder.pid(),
            &pid_alive,
        )
        .expect("init");
        assert_eq!(cgroups.version(), CgroupVersion::V1);
        let id = EnvironmentId::next();
        let group = cgroups
            .create(id, &limits(Some(0.5)))
            .expect("create group");
        let read = |dir: &Path, file: &str| {
            std::fs::read_to_string(dir.join(file))
                .expect("read limit")
                .trim()
                .to_owned()
        };
        assert_eq!(
            read(group.dirs.memory(), "memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(read(group.dirs.pids(), "pids.max"), "8");
        assert_eq!(read(group.dirs.cpu(), "cpu.cfs_quota_us"), "50000");

        let mut child = spawn_in(&group);
        let pid = child.id() as i32;
        assert!(group.procs().contains(&pid), "{pid} in {:?}", group.procs());

        group.freeze().expect("freeze");
        wait_until("frozen", || group.is_frozen());
        group.thaw().expect("thaw");
        wait_until("thawed", || !group.is_frozen());
        let memory = group.memory();
        assert!(memory.current_bytes > 0, "{memory:?}");
        assert!(memory.peak_bytes >= memory.current_bytes, "{memory:?}");
        assert!(!group.oom_killed());

        // Killing a frozen group works: kill_all thaws after the kill.
        group.freeze().expect("freeze again");
        wait_until("frozen again", || group.is_frozen());
        group.kill_all();
        assert_eq!(wait_for_signal(&mut child), Some(libc::SIGKILL));

        group.remove().expect("remove");
        for dir in &group.dirs.paths {
            assert!(!dir.exists(), "{} left", dir.display());
        }
        group.remove().expect("remove again");
        cgroups.remove_parents();
        for dir in &cgroups.parent.paths {
            assert!(!dir.exists(), "{} left", dir.display());
        }
    }

    #[test]
    fn real_v1_stale_groups_of_a_gone_server_are_killed_and_removed() {
        let Some((mountinfo, self_cgroup)) = real_v1() else {
            return;
        };
        // A "server" that is alive while its groups are made, then dies.
        let mut gone = PidHolder::spawn();
        let stale = Cgroups::init_with(
            Arc::new(RealFs),
            &mountinfo,
            &self_cgroup,
            gone.pid(),
            &pid_alive,
        )
        .expect("init the stale server");
        let group = stale
            .create(EnvironmentId::next(), &limits(None))
            .expect("create stale group");
        let mut orphan = spawn_in(&group);
        group.freeze().expect("freeze");
        wait_until("frozen", || group.is_frozen());
        let _ = gone.0.kill();
        let _ = gone.0.wait();
        assert!(!pid_alive(gone.pid()));

        let holder = PidHolder::spawn();
        let cgroups = Cgroups::init_with(
            Arc::new(RealFs),
            &mountinfo,
            &self_cgroup,
            holder.pid(),
            &pid_alive,
        )
        .expect("init");
        assert_eq!(wait_for_signal(&mut orphan), Some(libc::SIGKILL));
        for dir in group.dirs.paths.iter().chain(&stale.parent.paths) {
            assert!(!dir.exists(), "{} left", dir.display());
        }
        cgroups.remove_parents();
        for dir in &cgroups.parent.paths {
            assert!(!dir.exists(), "{} left", dir.display());
        }
    }
}
