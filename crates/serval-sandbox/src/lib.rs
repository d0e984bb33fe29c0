//! Isolated process trees with limits: the `Sandbox` trait and its backends.
//!
//! A sandbox starts one execution environment's runtime process from a [`SandboxSpec`] and hands
//! back an instance the engine waits on, plus a cloneable [`SandboxControl`] to kill, measure,
//! freeze and thaw it. Backends are selected at run time through [`AnySandbox`]; the engine never
//! names a concrete backend. This crate knows nothing about the Runtime API or functions; it only
//! runs processes. It is the only crate with `unsafe` (process-group and `prctl` calls).
//!
//! Backends: [`process`] (portable, no isolation: its own process group, a clean environment,
//! killed as a group). The `linux` backend (namespaces, cgroups, seccomp) plugs in beside it.

use std::ffi::OsString;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serval_model::EnvironmentId;

pub mod process;

pub use process::ProcessSandbox;

/// Everything a backend needs to start one environment's runtime process.
#[derive(Debug)]
pub struct SandboxSpec {
    pub env_id: EnvironmentId,
    /// The program to execute (an interpreter or the package's `bootstrap`).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment; nothing is inherited from the server.
    pub env: Vec<(String, String)>,
    /// The unpacked code (`/var/task` inside an isolating backend); also the working directory.
    pub task_root: PathBuf,
    /// Serval's runtime files (`/var/runtime` inside an isolating backend).
    pub runtime_dir: PathBuf,
    /// The environment's private writable scratch directory (`/tmp` inside an isolating backend).
    pub tmp_dir: PathBuf,
    pub memory_mb: u32,
    pub ephemeral_storage_mb: u32,
    /// Write end of the log pipe; becomes both stdout and stderr.
    pub output: OwnedFd,
}

/// The directories of one environment: the code, Serval's runtime files, the scratch space.
/// The engine prepares them on the host; a backend says where its functions see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub task_root: PathBuf,
    pub runtime_dir: PathBuf,
    pub tmp_dir: PathBuf,
}

/// How an environment's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Terminating signal, if it was killed.
    pub signal: Option<i32>,
    /// Whether the backend knows the memory limit killed it.
    pub oom_killed: bool,
}

impl ExitInfo {
    /// An end whose cause is unknown (the process was reaped elsewhere, or never reported).
    pub fn unknown() -> Self {
        Self {
            code: None,
            signal: None,
            oom_killed: false,
        }
    }

    /// AWS's wording for the end of a runtime process: `exit status 3`, `signal: killed`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(libc::SIGKILL)) => "signal: killed".to_owned(),
            (None, Some(libc::SIGSEGV)) => "signal: segmentation fault".to_owned(),
            (None, Some(libc::SIGABRT)) => "signal: aborted".to_owned(),
            (None, Some(libc::SIGTERM)) => "signal: terminated".to_owned(),
            (None, Some(s)) => format!("signal: {s}"),
            (None, None) => "unknown exit".to_owned(),
        }
    }
}

/// Memory an environment uses, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub current_bytes: u64,
    pub peak_bytes: u64,
}

/// A platform failure while creating or controlling a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("failed to start {program} for {env_id}")]
    Spawn {
        env_id: EnvironmentId,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox backend for {env_id} is gone")]
    BackendGone { env_id: EnvironmentId },
    #[error("failed to {action} {env_id}")]
    Control {
        env_id: EnvironmentId,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A backend that can start isolated process trees.
pub trait Sandbox: Send + Sync {
    type Instance: SandboxInstance;
    /// Where a function in this backend sees the host directories of `host` (`/var/task`,
    /// `/var/runtime`, `/tmp` in an isolating backend; the same paths in `process`).
    fn layout(&self, host: &Layout) -> Layout;
    /// Whether the kernel enforces `memory_mb` (and reports `oom_killed`); if not, the engine
    /// watches memory itself.
    fn enforces_memory_limit(&self) -> bool;
    /// Starts the environment's process. The returned instance owns the process.
    fn spawn(
        &self,
        spec: SandboxSpec,
    ) -> impl Future<Output = Result<Self::Instance, SandboxError>> + Send;
}

/// One running environment; whoever holds it is the one who reaps it.
pub trait SandboxInstance: Send + 'static {
    type Control: SandboxControl;
    fn control(&self) -> Self::Control;
    /// Resolves when the whole environment has ended. Cancel-safe.
    fn wait(&mut self) -> impl Future<Output = ExitInfo> + Send;
}

/// A cloneable front to a running environment.
pub trait SandboxControl: Clone + Send + Sync + 'static {
    /// Kills every process of the environment. Idempotent.
    fn kill(&self);
    /// Current and peak memory of the environment.
    fn memory(&self) -> MemoryUsage;
    /// Stops every process of the environment from running until [`SandboxControl::thaw`].
    fn freeze(&self) -> Result<(), SandboxError>;
    fn thaw(&self) -> Result<(), SandboxError>;
}

/// The backend in use, chosen at start-up.
pub enum AnySandbox {
    Process(ProcessSandbox),
}

/// An instance of whichever backend is in use.
pub enum AnyInstance {
    Process(process::ProcessInstance),
}

/// A control handle of whichever backend is in use.
#[derive(Clone)]
pub enum AnyControl {
    Process(process::ProcessControl),
}

impl AnySandbox {
    /// Short name for logs and `serval server`'s start-up line.
    pub fn name(&self) -> &'static str {
        match self {
            AnySandbox::Process(_) => "process",
        }
    }
}

impl Sandbox for AnySandbox {
    type Instance = AnyInstance;
    fn layout(&self, host: &Layout) -> Layout {
        match self {
            AnySandbox::Process(s) => s.layout(host),
        }
    }
    fn enforces_memory_limit(&self) -> bool {
        match self {
            AnySandbox::Process(s) => s.enforces_memory_limit(),
        }
    }
    async fn spawn(&self, spec: SandboxSpec) -> Result<AnyInstance, SandboxError> {
        match self {
            AnySandbox::Process(s) => s.spawn(spec).await.map(AnyInstance::Process),
        }
    }
}

impl SandboxInstance for AnyInstance {
    type Control = AnyControl;
    fn control(&self) -> AnyControl {
        match self {
            AnyInstance::Process(i) => AnyControl::Process(i.control()),
        }
    }
    async fn wait(&mut self) -> ExitInfo {
        match self {
            AnyInstance::Process(i) => i.wait().await,
        }
    }
}

impl SandboxControl for AnyControl {
    fn kill(&self) {
        match self {
            AnyControl::Process(c) => c.kill(),
        }
    }
    fn memory(&self) -> MemoryUsage {
        match self {
            AnyControl::Process(c) => c.memory(),
        }
    }
    fn freeze(&self) -> Result<(), SandboxError> {
        match self {
            AnyControl::Process(c) => c.freeze(),
        }
    }
    fn thaw(&self) -> Result<(), SandboxError> {
        match self {
            AnyControl::Process(c) => c.thaw(),
        }
    }
}
