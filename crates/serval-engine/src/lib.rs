//! The heart of Serval: execution environments for functions, and invocations through them.
//!
//! The engine keeps, per function configuration, a pool of environments. An invocation takes an
//! idle environment (warm) or creates one (cold start: sandbox + runtime init), hands the event to
//! the runtime through that environment's own Runtime API server, waits for the result under the
//! function's deadline, and returns the environment to the pool. It captures the runtime's
//! output as log lines framed by `START`/`END`/`REPORT`, and classifies every way a function can
//! fail (handler error, timeout, out of memory, runtime exit, init failure) as an outcome, not an
//! error.
//!
//! Not for: HTTP routes of the control plane, persistence decisions, or validation of user
//! input — callers hand it validated model types.

mod engine;
mod environment;
mod logs;
mod pool;
mod runtime_api;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serval_model::{FunctionName, RequestId};

pub use engine::Engine;

/// How long an idle environment runs on before it is frozen, by default.
pub const DEFAULT_FREEZE_GRACE: Duration = Duration::from_millis(100);

/// Server-wide engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The region reported in ARNs and `AWS_REGION`.
    pub region: String,
    /// How long an idle environment is kept before it is destroyed.
    pub keep_alive: Duration,
    /// Account-wide limit on concurrently running invocations.
    pub max_concurrency: u32,
    /// Where per-environment scratch directories live (`<data_dir>/envs`).
    pub envs_dir: PathBuf,
    /// How long a runtime may take to initialize before the environment is abandoned.
    pub init_timeout: Duration,
    /// How often a busy environment's memory is checked against its limit (backends without a
    /// kernel-enforced limit only).
    pub memory_poll_interval: Duration,
    /// How long an environment stays idle before the sandbox freezes it (`None`: never). Thawing
    /// is on the next invocation's path, so a short grace keeps back-to-back invocations
    /// unfrozen.
    pub freeze_grace: Option<Duration>,
}

impl EngineConfig {
    /// Defaults for a server: 10 minute keep-alive, AWS's default account concurrency.
    pub fn new(region: impl Into<String>, envs_dir: PathBuf) -> Self {
        Self {
            region: region.into(),
            keep_alive: Duration::from_secs(600),
            max_concurrency: serval_model::limits::ACCOUNT_CONCURRENCY_DEFAULT,
            envs_dir,
            init_timeout: Duration::from_secs(10),
            memory_poll_interval: Duration::from_millis(20),
            freeze_grace: Some(DEFAULT_FREEZE_GRACE),
        }
    }
}

/// One synchronous invocation, as the API hands it over.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub function: FunctionName,
    /// The payload bytes exactly as the caller sent them.
    pub payload: Bytes,
    /// `ClientContext`, decoded from base64 and re-serialized as compact (single-line) JSON by
    /// the caller; handed to the runtime in `Lambda-Runtime-Client-Context`.
    pub client_context: Option<String>,
    /// Whether the caller asked for `LogType: Tail`.
    pub log_tail: bool,
}

/// What an invocation produced. A function's own failure is data here, not an error.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    pub request_id: RequestId,
    /// `$LATEST` or the version number that ran.
    pub executed_version: String,
    pub result: InvokeResult,
    /// The last 4 KB of the invocation's log, base64, when `log_tail` was asked for.
    pub log_tail: Option<String>,
}

/// The function's answer.
#[derive(Debug, Clone)]
pub enum InvokeResult {
    /// The bytes the runtime posted as the response.
    Success(Bytes),
    /// The function failed; the caller gets status 200 and `X-Amz-Function-Error`.
    FunctionError(Diagnostic),
}

/// A function failure as the caller sees it.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// AWS's `errorType` (`Runtime.ExitError`, `Sandbox.Timedout`, the exception's type...).
    pub error_type: String,
    /// The JSON error document returned as the response body.
    pub body: Bytes,
}

/// Why the engine could not run an invocation at all (not a function failure).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("function {0} not found")]
    FunctionNotFound(FunctionName),
    #[error("concurrency limit exceeded for {function}")]
    TooManyRequests {
        function: FunctionName,
        /// AWS's `Reason`: `ConcurrentInvocationLimitExceeded`.
        reason: &'static str,
    },
    #[error("failed to create an environment for {function}")]
    Sandbox {
        function: FunctionName,
        #[source]
        source: serval_sandbox::SandboxError,
    },
    #[error("failed to set up an environment for {function}")]
    Setup {
        function: FunctionName,
        #[source]
        source: std::io::Error,
    },
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Counters the control plane reports (GetAccountSettings).
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    pub running_invocations: u32,
    pub environments: u32,
}
