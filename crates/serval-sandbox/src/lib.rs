//! Isolated process trees with limits: the `Sandbox` trait and its backends.
//!
//! A sandbox starts one execution environment's runtime process from a [`SandboxSpec`] and hands
//! back an instance the engine waits on, plus a cloneable [`SandboxControl`] to kill, measure,
//! freeze and thaw it. Backends are selected at run time through [`AnySandbox`]; the engine never
//! names a concrete backend. This crate knows nothing about the Runtime API or functions; it only
//! runs processes. It is the only crate with `unsafe` (process-group and `prctl` calls).
//!
//! Backends: [`process`] (portable, no isolation: its own process group, a clean environment,
//! killed as a group) and [`linux`] (namespaces, a read-only root, cgroup limits and freezer,
//! seccomp, an unprivileged user; Linux only, needs root).

use std::ffi::OsString;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serval_model::EnvironmentId;

#[cfg(target_os = "linux")]
pub mod linux;
pub mod process;

#[cfg(target_os = "linux")]
pub use linux::{LinuxConfig, LinuxSandbox, NetworkMode};
pub use process::ProcessSandbox;

/// Where one environment's Runtime API listens: a socket the server accepts on, bound where the
/// environment can reach it, and the address the runtime connects to
/// (`AWS_LAMBDA_RUNTIME_API`). Obtained from [`Sandbox::endpoint`] before the spawn; its
/// `network` goes into the [`SandboxSpec`].
#[derive(Debug)]
pub struct Endpoint {
    pub listener: std::net::TcpListener,
    pub address: std::net::SocketAddr,
    pub network: Network,
}

/// The network an environment runs in.
#[derive(Debug)]
pub enum Network {
    /// The server's own network namespace.
    Host,
    /// A network namespace of its own (only loopback), held open by this descriptor.
    Isolated(OwnedFd),
}

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
    /// The network the environment joins; from the [`Endpoint`] its Runtime API listens on.
    pub network: Network,
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
    #[error("failed to {step} for {env_id}")]
    Setup {
        env_id: EnvironmentId,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open a runtime api socket")]
    Endpoint {
        #[source]
        source: std::io::Error,
    },
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
    /// Opens the Runtime API socket of a new environment, bound where that environment can reach
    /// it (inside its network namespace when it gets one).
    fn endpoint(&self) -> impl Future<Output = Result<Endpoint, SandboxError>> + Send;
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
    /// Called once the runtime finished its init: ends the init phase's CPU boost, so the
    /// function's share of a core is proportional to its memory from its first invocation on.
    fn initialized(&self);
}

/// The backend in use, chosen at start-up.
pub enum AnySandbox {
    Process(ProcessSandbox),
    #[cfg(target_os = "linux")]
    Linux(LinuxSandbox),
}

/// An instance of whichever backend is in use.
pub enum AnyInstance {
    Process(process::ProcessInstance),
    #[cfg(target_os = "linux")]
    Linux(linux::LinuxInstance),
}

/// A control handle of whichever backend is in use.
#[derive(Clone)]
pub enum AnyControl {
    Process(process::ProcessControl),
    #[cfg(target_os = "linux")]
    Linux(linux::LinuxControl),
}

/// Forwards one call to whichever backend a value of an `Any*` enum holds.
macro_rules! dispatch {
    ($value:expr, $enum:ident, $b:ident => $call:expr) => {
        match $value {
            $enum::Process($b) => $call,
            #[cfg(target_os = "linux")]
            $enum::Linux($b) => $call,
        }
    };
}

impl AnySandbox {
    /// Short name for logs and `serval server`'s start-up line.
    pub fn name(&self) -> &'static str {
        match self {
            AnySandbox::Process(_) => "process",
            #[cfg(target_os = "linux")]
            AnySandbox::Linux(_) => "linux",
        }
    }
}

impl AnySandbox {
    /// Waits for ended environments to be cleaned up and releases the backend's resources
    /// (the `linux` backend's cgroups). Call once, after every environment ended.
    pub async fn shutdown(&self) {
        match self {
            AnySandbox::Process(_) => {}
            #[cfg(target_os = "linux")]
            AnySandbox::Linux(s) => s.shutdown().await,
        }
    }
}

impl AnySandbox {
    /// Waits until every ended environment is cleaned up (nothing to wait for in `process`).
    pub async fn settled(&self) {
        match self {
            AnySandbox::Process(_) => {}
            #[cfg(target_os = "linux")]
            AnySandbox::Linux(s) => s.settled().await,
        }
    }
}

impl Sandbox for AnySandbox {
    type Instance = AnyInstance;
    fn layout(&self, host: &Layout) -> Layout {
        dispatch!(self, AnySandbox, s => s.layout(host))
    }
    fn enforces_memory_limit(&self) -> bool {
        dispatch!(self, AnySandbox, s => s.enforces_memory_limit())
    }
    async fn endpoint(&self) -> Result<Endpoint, SandboxError> {
        dispatch!(self, AnySandbox, s => s.endpoint().await)
    }
    async fn spawn(&self, spec: SandboxSpec) -> Result<AnyInstance, SandboxError> {
        match self {
            AnySandbox::Process(s) => s.spawn(spec).await.map(AnyInstance::Process),
            #[cfg(target_os = "linux")]
            AnySandbox::Linux(s) => s.spawn(spec).await.map(AnyInstance::Linux),
        }
    }
}

impl SandboxInstance for AnyInstance {
    type Control = AnyControl;
    fn control(&self) -> AnyControl {
        match self {
            AnyInstance::Process(i) => AnyControl::Process(i.control()),
            #[cfg(target_os = "linux")]
            AnyInstance::Linux(i) => AnyControl::Linux(i.control()),
        }
    }
    async fn wait(&mut self) -> ExitInfo {
        dispatch!(self, AnyInstance, i => i.wait().await)
    }
}

impl SandboxControl for AnyControl {
    fn kill(&self) {
        dispatch!(self, AnyControl, c => c.kill())
    }
    fn memory(&self) -> MemoryUsage {
        dispatch!(self, AnyControl, c => c.memory())
    }
    fn freeze(&self) -> Result<(), SandboxError> {
        dispatch!(self, AnyControl, c => c.freeze())
    }
    fn thaw(&self) -> Result<(), SandboxError> {
        dispatch!(self, AnyControl, c => c.thaw())
    }
    fn initialized(&self) {
        dispatch!(self, AnyControl, c => c.initialized())
    }
}
