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

mod dispatch;
mod engine;
mod environment;
mod logs;
mod pool;
mod runtime_api;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serval_model::{FunctionName, Qualifier, RequestId};

pub use engine::Engine;

/// How asynchronous invocations are paced: AWS's shapes, with bases a server may shorten.
#[derive(Debug, Clone)]
pub struct AsyncConfig {
    /// The wait before the first retry of a failed event; the second waits twice as long.
    /// AWS: one minute.
    pub retry_base: Duration,
    /// How long one second of `MaximumEventAgeInSeconds` lasts. Real time (one second)
    /// except in tests.
    pub event_age_unit: Duration,
    /// A throttled event waits this long before its function is tried again, doubling on
    /// each further throttle up to [`AsyncConfig::throttle_backoff_max`]. AWS: one second.
    pub throttle_backoff_min: Duration,
    /// AWS: five minutes.
    pub throttle_backoff_max: Duration,
    /// How many events of one function may run at once when its backlog begins; the number
    /// grows by as many again every [`AsyncConfig::scale_interval`] while the function's
    /// events keep waiting for a slot (AWS scales a function's concurrency step by step the
    /// same way). Keeps a burst of events from becoming a burst of cold starts.
    pub scale_step: u32,
    pub scale_interval: Duration,
}

/// The default [`AsyncConfig::scale_step`]: four events per core, at least eight.
fn default_scale_step() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores * 4).unwrap_or(u32::MAX).max(8)
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(60),
            event_age_unit: Duration::from_secs(1),
            throttle_backoff_min: Duration::from_secs(1),
            throttle_backoff_max: Duration::from_secs(300),
            scale_step: default_scale_step(),
            scale_interval: Duration::from_secs(1),
        }
    }
}

impl AsyncConfig {
    /// AWS's shape around one retry base: throttle back-off from `base / 60` to `5 × base`.
    pub fn with_retry_base(retry_base: Duration) -> Self {
        Self {
            retry_base,
            throttle_backoff_min: (retry_base / 60).max(Duration::from_millis(1)),
            throttle_backoff_max: retry_base * 5,
            ..Self::default()
        }
    }
}

/// One asynchronous (`Event`) invocation, as the API hands it over.
#[derive(Debug, Clone)]
pub struct AsyncInvokeRequest {
    pub function: FunctionName,
    /// `None` runs `$LATEST`.
    pub qualifier: Option<Qualifier>,
    pub payload: Bytes,
}

/// Why an asynchronous invocation was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("function {function} not found")]
    FunctionNotFound {
        function: FunctionName,
        qualifier: Option<Qualifier>,
    },
    /// The queue holds as much as it may.
    #[error("the asynchronous event queue is full")]
    Full(#[source] serval_store::QueueError),
    /// The server runs without a queue or is shutting down.
    #[error("asynchronous invocations are not accepted now")]
    Unavailable,
    /// Storing the event failed; it was not accepted.
    #[error("failed to store the event")]
    Store(#[source] serval_store::QueueError),
}

/// The account's concurrency as GetAccountSettings reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencySummary {
    /// `ConcurrentExecutions`: the server's account limit.
    pub account_limit: u32,
    /// `UnreservedConcurrentExecutions`: the limit less every function's reservation.
    pub unreserved: u32,
    /// How low reservations may push `unreserved`: AWS's 100, or a tenth of a smaller
    /// server limit.
    pub unreserved_minimum: u32,
}

/// Progress of a provisioned concurrency config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionedState {
    InProgress,
    Ready,
    Failed,
}

/// What GetProvisionedConcurrencyConfig reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedStatus {
    pub requested: u32,
    /// Initialized environments that exist for the config now.
    pub allocated: u32,
    /// Of those, how many can take an invocation (all of them: busy ones count too, as AWS
    /// counts them).
    pub available: u32,
    pub state: ProvisionedState,
    /// Why it failed (the init error), when `state` is `Failed`.
    pub reason: Option<String>,
}

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
    /// `None` runs `$LATEST`; an alias runs the version it routes this invocation to.
    pub qualifier: Option<Qualifier>,
    /// The request id to run under: `None` for a fresh one; the async dispatcher passes the
    /// event's id so every attempt carries the same one, as on AWS.
    pub request_id: Option<RequestId>,
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
    #[error("function {function} not found")]
    FunctionNotFound {
        function: FunctionName,
        qualifier: Option<Qualifier>,
    },
    #[error("concurrency limit exceeded for {function}")]
    TooManyRequests {
        function: FunctionName,
        /// AWS's `Reason`: `ConcurrentInvocationLimitExceeded` (the account's unreserved
        /// pool) or `ReservedFunctionConcurrentInvocationLimitExceeded` (the function's own
        /// reservation, including a reservation of 0).
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
