//! One execution environment: its creation (cold start), one invocation through it, and how
//! each way of failing is classified.
//!
//! An environment is a sandboxed runtime process plus three tasks: the Runtime API server on its
//! own loopback port, the log pump, and a supervisor that reaps the process and cleans up. The
//! [`Environment`] value is the engine's handle; dropping it destroys the environment.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use serval_model::{EnvironmentId, FunctionConfig, RequestId, RuntimeFamily};
use serval_runtimes::{Placement, RuntimeSet};
use serval_sandbox::{
    AnyControl, AnyInstance, AnySandbox, ExitInfo, Layout, Sandbox, SandboxControl, SandboxError,
    SandboxInstance, SandboxSpec,
};
use tokio::net::unix::pipe;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::logs::{self, LogCapture, LogWriter, StreamId};
use crate::runtime_api::{self, Exchange, InitSignal, Invocation, Reply};
use crate::{Diagnostic, EngineConfig, InvokeError, InvokeRequest, InvokeResult};

const MB: u64 = 1024 * 1024;
/// How long a killed environment may take to be reaped before the caller is answered anyway.
const REAP_WAIT: Duration = Duration::from_secs(2);
/// How stale the peak memory in a `REPORT` line may be. Reading it costs a `/proc` read, too
/// much for every warm invocation; the peak only grows, so a recent reading is a fair floor.
const MEMORY_REFRESH: Duration = Duration::from_millis(250);

/// Counts live environments per code package (by SHA-256 hex), so that collecting unused
/// packages never removes code a running environment still executes.
#[derive(Clone, Default)]
pub struct CodeUsage(Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>);

/// One environment's hold on its code package.
pub struct CodeRef {
    usage: CodeUsage,
    hash: String,
}

impl CodeUsage {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn hold(&self, hash: &str) -> CodeRef {
        *self.lock().entry(hash.to_owned()).or_insert(0) += 1;
        CodeRef {
            usage: self.clone(),
            hash: hash.to_owned(),
        }
    }

    /// Packages some live environment uses.
    pub fn in_use(&self) -> std::collections::HashSet<String> {
        self.lock().keys().cloned().collect()
    }
}

impl Drop for CodeRef {
    fn drop(&mut self) {
        let mut counts = self.usage.lock();
        if let Some(n) = counts.get_mut(&self.hash) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.hash);
            }
        }
    }
}

/// What every environment of the engine shares.
pub struct Shared {
    pub config: EngineConfig,
    pub sandbox: AnySandbox,
    pub runtimes: Arc<RuntimeSet>,
    pub logs: LogWriter,
    /// Live environments, for stats.
    pub environments: Arc<AtomicU32>,
    /// Code packages live environments use.
    pub code_usage: CodeUsage,
}

/// A function configuration resolved for running: shared by all environments of one pool.
pub struct FunctionSpec {
    pub config: FunctionConfig,
    pub function_arn: HeaderValue,
    pub code_dir: PathBuf,
    pub log_group: String,
    pub timeout: Duration,
    pub memory_limit_bytes: u64,
    /// Standard and user variables; per-environment ones are added at creation.
    pub env_base: Vec<(String, String)>,
    /// Set when the handler cannot name a function in this runtime: every cold start fails
    /// with `Runtime.MalformedHandlerName` without starting an interpreter.
    pub malformed_handler: Option<String>,
}

impl FunctionSpec {
    pub fn new(config: FunctionConfig, code_dir: PathBuf, shared: &Shared) -> Self {
        let region = &shared.config.region;
        let arn = match config.version.as_str() {
            "$LATEST" => config.arn(region),
            version => format!("{}:{version}", config.arn(region)),
        };
        let log_group = format!("/aws/lambda/{}", config.name);
        let mut env: Vec<(String, String)> = vec![
            ("AWS_LAMBDA_FUNCTION_NAME".into(), config.name.to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), config.version.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                config.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_LOG_GROUP_NAME".into(), log_group.clone()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
            ("AWS_REGION".into(), region.clone()),
            ("AWS_DEFAULT_REGION".into(), region.clone()),
            (
                "AWS_EXECUTION_ENV".into(),
                format!("AWS_Lambda_{}", config.runtime),
            ),
            ("_HANDLER".into(), config.handler.to_string()),
            ("TZ".into(), ":UTC".into()),
            ("LANG".into(), "en_US.UTF-8".into()),
            ("PATH".into(), shared.runtimes.search_path().to_owned()),
            ("AWS_ACCESS_KEY_ID".into(), "SERVALLOCALACCESSKEY".into()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                "serval-local-secret-access-key".into(),
            ),
            (
                "AWS_SESSION_TOKEN".into(),
                "serval-local-session-token".into(),
            ),
        ];
        env.extend(
            config
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let family = config.runtime.family();
        // Worded as each runtime words it (the bootstraps check the same rules).
        let malformed_handler = config.handler.split(family).err().map(|e| match family {
            RuntimeFamily::Node => format!("Bad handler {}", config.handler),
            _ => e.to_string(),
        });
        Self {
            malformed_handler,
            function_arn: HeaderValue::from_str(&arn)
                .expect("an ARN built from a validated name is a valid header value"),
            code_dir,
            log_group,
            timeout: Duration::from_secs(u64::from(config.timeout_secs)),
            memory_limit_bytes: u64::from(config.memory_mb) * MB,
            env_base: env,
            config,
        }
    }
}

/// A running environment. Dropping it destroys the environment.
pub struct Environment {
    pub id: EnvironmentId,
    exchange: Arc<Exchange>,
    control: AnyControl,
    exit: watch::Receiver<Option<ExitInfo>>,
    capture: Arc<LogCapture>,
    cancel: CancellationToken,
    pub last_used: Instant,
    /// Whether the sandbox froze it while idle; thawed before its next invocation.
    frozen: bool,
    /// Set on a fresh environment until its first invocation reports it.
    init_duration: Option<Duration>,
    /// Set while the environment counts toward its pool's provisioned concurrency.
    provisioned: Option<ProvisionedMark>,
    peak_memory_bytes: u64,
    memory_read_at: Option<Instant>,
    counter: Arc<AtomicU32>,
    _code: CodeRef,
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why an environment is created: for an invocation waiting on it, or ahead of time for
/// provisioned concurrency (`AWS_LAMBDA_INITIALIZATION_TYPE` tells the function which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitType {
    OnDemand,
    Provisioned,
}

/// Counts an environment in its pool's provisioned set for as long as it is held.
pub struct ProvisionedMark(Arc<AtomicU32>);

impl ProvisionedMark {
    pub fn new(counter: Arc<AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for ProvisionedMark {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a cold start produced.
pub enum ColdStart {
    Ready(Environment),
    /// Init failed; the environment is already gone. The diagnostic is the caller's answer.
    Failed {
        diagnostic: Diagnostic,
        tail: Option<String>,
    },
}

/// The result of one invocation in an environment.
pub struct Run {
    pub result: InvokeResult,
    /// Whether the environment may serve another invocation.
    pub reusable: bool,
    pub tail: Option<String>,
}

fn diagnostic(error_type: &str, message: &str) -> Diagnostic {
    let body = serde_json::json!({ "errorType": error_type, "errorMessage": message });
    Diagnostic {
        error_type: error_type.to_owned(),
        body: Bytes::from(serde_json::to_vec(&body).expect("a json value always serializes")),
    }
}

fn exit_diagnostic(request_id: &RequestId, exit: &ExitInfo) -> Diagnostic {
    if exit.oom_killed {
        return out_of_memory(request_id);
    }
    let reason = if exit.code == Some(0) {
        "Runtime exited without providing a reason".to_owned()
    } else {
        format!("Runtime exited with error: {}", exit.describe())
    };
    diagnostic(
        "Runtime.ExitError",
        &format!("RequestId: {request_id} Error: {reason}"),
    )
}

fn out_of_memory(request_id: &RequestId) -> Diagnostic {
    diagnostic(
        "Runtime.OutOfMemory",
        &format!("RequestId: {request_id} Error: Runtime exited with error: signal: killed"),
    )
}

fn timed_out(request_id: &RequestId, timeout: Duration) -> Diagnostic {
    diagnostic(
        "Sandbox.Timedout",
        &format!(
            "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
            timeout.as_secs_f64()
        ),
    )
}

fn runtime_error(error_type: Option<String>, body: Bytes) -> Diagnostic {
    // The runtime's header names the type; fall back to the document's own errorType.
    let error_type = error_type.filter(|t| !t.is_empty()).unwrap_or_else(|| {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("errorType")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "Unhandled".to_owned())
    });
    let body = if body.is_empty() {
        diagnostic(&error_type, "").body
    } else {
        body
    };
    Diagnostic { error_type, body }
}

fn stream_name(version: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}/{:02}/{:02}/[{version}]{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        uuid_hex()
    )
}

/// An X-Ray-shaped trace header derived from the request id (its 32 hex digits give the
/// 24-digit root id and the 16-digit parent id).
fn trace_header(request_id: &RequestId, epoch_secs: i64) -> HeaderValue {
    let mut hex = [0u8; 32];
    let mut n = 0;
    for b in request_id
        .as_str()
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .take(32)
    {
        hex[n] = b;
        n += 1;
    }
    let hex = std::str::from_utf8(&hex[..n]).unwrap_or_default();
    let (root, parent) = (hex.get(..24).unwrap_or(hex), hex.get(16..).unwrap_or(hex));
    HeaderValue::from_str(&format!(
        "Root=1-{epoch_secs:08x}-{root};Parent={parent};Sampled=0"
    ))
    .expect("hex digits and punctuation are a valid header value")
}

fn uuid_hex() -> String {
    RequestId::new().as_str().replace('-', "")
}

fn encode_tail(tail: Option<Vec<u8>>) -> Option<String> {
    tail.map(|t| base64::engine::general_purpose::STANDARD.encode(t))
}

fn report_line(
    request_id: &RequestId,
    duration: Duration,
    memory_mb: u32,
    max_used_bytes: u64,
    init: Option<Duration>,
) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    let billed = ms.ceil().max(1.0) as u64;
    let used_mb = max_used_bytes.div_ceil(MB);
    let mut line = format!(
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {used_mb} MB"
    );
    if let Some(init) = init {
        line.push_str(&format!(
            "\tInit Duration: {:.2} ms",
            init.as_secs_f64() * 1000.0
        ));
    }
    line
}

/// What starting an environment's process produced.
enum Start {
    /// The runtime process runs; its supervisor now owns the scratch directory.
    Running(Environment, oneshot::Receiver<InitSignal>),
    /// The runtime could not be started: the function's fault (no bootstrap, exec failed).
    Refused(ColdStart),
}

/// Whether a failure to start the runtime process is the package's fault (AWS reports these as
/// `Runtime.InvalidEntrypoint`) rather than Serval's.
fn is_entrypoint_error(error: &SandboxError) -> Option<&std::io::Error> {
    match error {
        SandboxError::Spawn { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) || source.raw_os_error() == Some(ENOEXEC) =>
        {
            Some(source)
        }
        _ => None,
    }
}

/// `ENOEXEC`: "exec format error", a file the kernel cannot execute.
const ENOEXEC: i32 = 8;

/// Creates an environment for `spec` and waits for its runtime to finish init.
pub async fn create(
    shared: &Shared,
    spec: &FunctionSpec,
    request_id: &RequestId,
    tail: bool,
    init_type: InitType,
) -> Result<ColdStart, InvokeError> {
    let started = Instant::now();
    let id = EnvironmentId::next();
    let tmp_dir = shared.config.envs_dir.join(id.to_string());
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(|source| InvokeError::Setup {
            function: spec.config.name.clone(),
            source,
        })?;
    let cause = Cause {
        request_id,
        tail,
        init_type,
    };
    let started_env = start(shared, spec, cause, id, &tmp_dir, started).await;
    if !matches!(started_env, Ok(Start::Running(..))) {
        // Nothing was started that would clean up after itself.
        if let Err(error) = tokio::fs::remove_dir_all(&tmp_dir).await {
            tracing::warn!(%error, dir = %tmp_dir.display(), "failed to remove environment directory");
        }
    }
    let (mut env, init) = match started_env? {
        Start::Running(env, init) => (env, init),
        Start::Refused(cold) => return Ok(cold),
    };

    let mut exit = env.exit.clone();
    let failure = tokio::select! {
        biased;
        signal = init => match signal {
            Ok(InitSignal::Ready) => None,
            Ok(InitSignal::Failed { error_type, body }) => Some(runtime_error(error_type, body)),
            Err(_) => Some(diagnostic("Runtime.Unknown", "environment ended during init")),
        },
        info = exit.wait_for(Option::is_some) => {
            let info = info.ok().and_then(|i| i.clone()).unwrap_or_else(ExitInfo::unknown);
            Some(exit_diagnostic(request_id, &info))
        }
        _ = tokio::time::sleep(shared.config.init_timeout) => Some(diagnostic(
            "Sandbox.Timedout",
            &format!("RequestId: {request_id} Error: Init timed out after {:.2} seconds", shared.config.init_timeout.as_secs_f64()),
        )),
    };
    match failure {
        None => {
            env.init_duration = Some(started.elapsed());
            env.control.initialized();
            Ok(ColdStart::Ready(env))
        }
        Some(diagnostic) => {
            env.cancel.cancel();
            env.await_exit().await;
            env.capture.drain();
            env.capture.system_line(format!(
                "START RequestId: {request_id} Version: {}",
                spec.config.version
            ));
            let peak = env.control.memory().peak_bytes;
            let tail = finish_failed(&env.capture, request_id, spec, started.elapsed(), peak);
            tracing::debug!(env = %env.id, error_type = %diagnostic.error_type, "environment init failed");
            Ok(ColdStart::Failed { diagnostic, tail })
        }
    }
}

/// What an environment is started for: the invocation waiting on it (whose request id its
/// init output is logged under, and whether it asked for the log tail) and the init type.
#[derive(Clone, Copy)]
struct Cause<'a> {
    request_id: &'a RequestId,
    tail: bool,
    init_type: InitType,
}

/// Prepares the environment's Runtime API, log pipe and variables, and starts its process.
async fn start(
    shared: &Shared,
    spec: &FunctionSpec,
    cause: Cause<'_>,
    id: EnvironmentId,
    tmp_dir: &std::path::Path,
    started: Instant,
) -> Result<Start, InvokeError> {
    let Cause {
        request_id,
        tail,
        init_type,
    } = cause;
    let function = &spec.config.name;
    let setup = |source| InvokeError::Setup {
        function: function.clone(),
        source,
    };
    let endpoint = shared
        .sandbox
        .endpoint()
        .await
        .map_err(|source| InvokeError::Sandbox {
            function: function.clone(),
            source,
        })?;
    let api_addr = endpoint.address;
    let listener = TcpListener::from_std(endpoint.listener).map_err(setup)?;
    let network = endpoint.network;
    let (reader, writer) = std::io::pipe().map_err(setup)?;
    let reader = pipe::Receiver::from_owned_fd(reader.into()).map_err(setup)?;
    let stream = Arc::new(StreamId {
        group: spec.log_group.clone(),
        stream: stream_name(&spec.config.version),
    });
    let capture =
        Arc::new(LogCapture::new(reader, shared.logs.clone(), stream.clone()).map_err(setup)?);
    // Init output belongs to the request that caused the cold start, as on AWS.
    capture.begin_invocation(request_id);
    if tail {
        capture.start_tail();
    }
    let refuse = |error_type: &str, message: String| {
        capture.system_line(format!(
            "START RequestId: {request_id} Version: {}",
            spec.config.version
        ));
        capture.system_line(message.clone());
        let tail = finish_failed(&capture, request_id, spec, started.elapsed(), 0);
        Start::Refused(ColdStart::Failed {
            diagnostic: diagnostic(error_type, &message),
            tail,
        })
    };

    // Paths as the function will see them; the backend decides.
    let host = Layout {
        task_root: spec.code_dir.clone(),
        runtime_dir: shared.runtimes.runtime_dir().to_owned(),
        tmp_dir: tmp_dir.to_owned(),
    };
    let inside = shared.sandbox.layout(&host);
    let placement = Placement {
        task_root: &inside.task_root,
        runtime_dir: &inside.runtime_dir,
    };
    if let Some(message) = &spec.malformed_handler {
        return Ok(refuse("Runtime.MalformedHandlerName", message.clone()));
    }
    let launch = match shared
        .runtimes
        .launch_at(spec.config.runtime, &spec.code_dir, placement)
    {
        Ok(launch) => launch,
        Err(error) => return Ok(refuse(error.error_type(), error.to_string())),
    };
    let program = launch.program.display().to_string();
    let mut env = spec.env_base.clone();
    if init_type == InitType::Provisioned {
        for (key, value) in env.iter_mut() {
            if key == "AWS_LAMBDA_INITIALIZATION_TYPE" {
                *value = "provisioned-concurrency".into();
            }
        }
    }
    env.push(("AWS_LAMBDA_RUNTIME_API".into(), api_addr.to_string()));
    env.push(("AWS_LAMBDA_LOG_STREAM_NAME".into(), stream.stream.clone()));
    env.push((
        "LAMBDA_TASK_ROOT".into(),
        inside.task_root.display().to_string(),
    ));
    env.push((
        "LAMBDA_RUNTIME_DIR".into(),
        inside.runtime_dir.display().to_string(),
    ));
    env.push(("TMPDIR".into(), inside.tmp_dir.display().to_string()));
    env.push(("HOME".into(), inside.tmp_dir.display().to_string()));
    env.extend(launch.env);

    let spawned = shared
        .sandbox
        .spawn(SandboxSpec {
            env_id: id,
            program: launch.program,
            args: launch.args,
            env,
            task_root: host.task_root,
            runtime_dir: host.runtime_dir,
            tmp_dir: host.tmp_dir,
            memory_mb: spec.config.memory_mb,
            ephemeral_storage_mb: spec.config.ephemeral_storage_mb,
            output: writer.into(),
            network,
        })
        .await;
    let instance = match spawned {
        Ok(instance) => instance,
        Err(error) => {
            if let Some(source) = is_entrypoint_error(&error) {
                let message = format!(
                    "RequestId: {request_id} Error: fork/exec {program}: {}",
                    exec_error_text(source)
                );
                return Ok(refuse("Runtime.InvalidEntrypoint", message));
            }
            return Err(InvokeError::Sandbox {
                function: function.clone(),
                source: error,
            });
        }
    };
    let control = instance.control();
    let cancel = CancellationToken::new();
    let (exit_tx, exit_rx) = watch::channel(None);
    let (exchange, init) = Exchange::new();
    tokio::spawn(runtime_api::serve(
        listener,
        exchange.clone(),
        cancel.clone(),
    ));
    tokio::spawn(logs::pump(capture.clone()));
    tokio::spawn(supervise(
        instance,
        cancel.clone(),
        exit_tx,
        tmp_dir.to_owned(),
        capture.clone(),
    ));
    shared.environments.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(env = %id, function = %function, "environment started");
    Ok(Start::Running(
        Environment {
            id,
            exchange,
            control,
            exit: exit_rx,
            capture,
            cancel,
            last_used: Instant::now(),
            frozen: false,
            init_duration: None,
            provisioned: None,
            peak_memory_bytes: 0,
            memory_read_at: None,
            counter: shared.environments.clone(),
            _code: shared.code_usage.hold(&spec.config.code_sha256_hex),
        },
        init,
    ))
}

/// The ARN the caller invoked, as the function sees it (`context.invoked_function_arn`): the
/// alias's when invoked through one, `:$LATEST` when asked for by name, else the version's own.
fn invoked_arn(shared: &Shared, spec: &FunctionSpec, req: &InvokeRequest) -> HeaderValue {
    let qualified = |q: &str| {
        HeaderValue::from_str(&format!("{}:{q}", spec.config.arn(&shared.config.region)))
            .unwrap_or_else(|_| spec.function_arn.clone())
    };
    match &req.qualifier {
        Some(serval_model::Qualifier::Alias(alias)) => qualified(alias),
        Some(serval_model::Qualifier::Latest) => qualified("$LATEST"),
        _ => spec.function_arn.clone(),
    }
}

/// Go's wording for exec failures, as AWS's runtime reports them.
fn exec_error_text(error: &std::io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(ENOEXEC) => "exec format error",
        Some(2) => "no such file or directory",
        Some(13) => "permission denied",
        _ => match error.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory",
            std::io::ErrorKind::PermissionDenied => "permission denied",
            _ => "exec failed",
        },
    }
}

fn finish_failed(
    capture: &LogCapture,
    request_id: &RequestId,
    spec: &FunctionSpec,
    elapsed: Duration,
    peak: u64,
) -> Option<String> {
    capture.system_line(format!("END RequestId: {request_id}"));
    capture.system_line(report_line(
        request_id,
        elapsed,
        spec.config.memory_mb,
        peak,
        Some(elapsed),
    ));
    capture.end_invocation();
    encode_tail(capture.take_tail())
}

async fn supervise(
    mut instance: AnyInstance,
    cancel: CancellationToken,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    tmp_dir: PathBuf,
    capture: Arc<LogCapture>,
) {
    let info = tokio::select! {
        info = instance.wait() => info,
        _ = cancel.cancelled() => {
            instance.control().kill();
            instance.wait().await
        }
    };
    capture.drain();
    let _ = exit_tx.send(Some(info));
    cancel.cancel();
    if let Err(error) = tokio::fs::remove_dir_all(&tmp_dir).await {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(%error, dir = %tmp_dir.display(), "failed to remove environment directory");
        }
    }
}

enum Ending {
    Reply(Result<Reply, tokio::sync::oneshot::error::RecvError>),
    Timeout,
    Exited(ExitInfo),
    OutOfMemory,
}

impl Environment {
    /// Whether the runtime process is still there.
    pub fn is_alive(&self) -> bool {
        self.exit.borrow().is_none()
    }

    /// Freezes an idle environment; a failure leaves it running (it is merely not frozen).
    pub fn freeze(&mut self) {
        if self.frozen {
            return;
        }
        match self.control.freeze() {
            Ok(()) => self.frozen = true,
            Err(error) => {
                tracing::debug!(env = %self.id, %error, "failed to freeze an idle environment")
            }
        }
    }

    /// Thaws an environment taken for an invocation; false if it cannot run (destroy it).
    pub fn thaw(&mut self) -> bool {
        if !self.frozen {
            return true;
        }
        match self.control.thaw() {
            Ok(()) => {
                self.frozen = false;
                true
            }
            Err(error) => {
                tracing::warn!(env = %self.id, %error, "failed to thaw an environment; destroying it");
                false
            }
        }
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Makes a freshly initialized environment part of provisioned concurrency: its init
    /// happened ahead of any invocation, so no REPORT line carries an `Init Duration`.
    pub fn mark_provisioned(&mut self, mark: ProvisionedMark) {
        self.init_duration = None;
        self.provisioned = Some(mark);
    }

    /// Takes the environment out of provisioned concurrency (it may now be reaped).
    pub fn unmark_provisioned(&mut self) {
        self.provisioned = None;
    }

    pub fn is_provisioned(&self) -> bool {
        self.provisioned.is_some()
    }

    async fn await_exit(&mut self) -> Option<ExitInfo> {
        let mut exit = self.exit.clone();
        let info = match tokio::time::timeout(REAP_WAIT, exit.wait_for(Option::is_some)).await {
            Ok(Ok(info)) => info.clone(),
            _ => None,
        };
        info
    }

    /// Runs one invocation in this environment.
    pub async fn invoke(
        &mut self,
        shared: &Shared,
        spec: &FunctionSpec,
        request_id: &RequestId,
        req: &InvokeRequest,
    ) -> Run {
        if req.log_tail {
            self.capture.start_tail();
        }
        self.capture.begin_invocation(request_id);
        self.capture.system_line(format!(
            "START RequestId: {request_id} Version: {}",
            spec.config.version
        ));
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + spec.timeout;
        let deadline_ms = logs::now_ms() + spec.timeout.as_millis() as i64;
        let client_context = req
            .client_context
            .as_deref()
            .and_then(|cc| HeaderValue::from_str(cc).ok());
        let request_header =
            HeaderValue::from_str(request_id.as_str()).expect("a uuid is a valid header value");
        let trace_id = trace_header(request_id, deadline_ms / 1000);
        let reply = self.exchange.dispatch(Invocation {
            request_id: request_header,
            deadline_ms: HeaderValue::from(deadline_ms),
            function_arn: invoked_arn(shared, spec, req),
            trace_id,
            client_context,
            cognito_identity: None,
            payload: req.payload.clone(),
        });

        let mut exit = self.exit.clone();
        let control = self.control.clone();
        let limit = spec.memory_limit_bytes;
        let poll = shared.config.memory_poll_interval;
        let mut peak = 0u64;
        let watch_memory = !shared.sandbox.enforces_memory_limit();
        let memory_watch = async {
            if !watch_memory {
                return std::future::pending().await;
            }
            loop {
                tokio::time::sleep(poll).await;
                let usage = control.memory();
                peak = peak.max(usage.peak_bytes);
                if usage.current_bytes > limit {
                    return;
                }
            }
        };
        let ending = tokio::select! {
            biased;
            reply = reply => Ending::Reply(reply),
            info = exit.wait_for(Option::is_some) => Ending::Exited(
                info.ok().and_then(|i| i.clone()).unwrap_or_else(ExitInfo::unknown)
            ),
            _ = tokio::time::sleep_until(deadline) => Ending::Timeout,
            _ = memory_watch => Ending::OutOfMemory,
        };
        let duration = started.elapsed();
        self.peak_memory_bytes = self.peak_memory_bytes.max(peak);

        let (result, reusable) = match ending {
            Ending::Reply(Ok(Reply::Response(body))) => (InvokeResult::Success(body), true),
            Ending::Reply(Ok(Reply::Error { error_type, body })) => (
                InvokeResult::FunctionError(runtime_error(error_type, body)),
                true,
            ),
            Ending::Reply(Ok(Reply::ResponseTooLarge)) => (
                InvokeResult::FunctionError(diagnostic(
                    "Function.ResponseSizeTooLarge",
                    "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
                )),
                true,
            ),
            Ending::Reply(Err(_)) => {
                let info = self.await_exit().await.unwrap_or_else(ExitInfo::unknown);
                (
                    InvokeResult::FunctionError(exit_diagnostic(request_id, &info)),
                    false,
                )
            }
            Ending::Exited(info) => (
                InvokeResult::FunctionError(exit_diagnostic(request_id, &info)),
                false,
            ),
            Ending::Timeout => {
                self.cancel.cancel();
                self.await_exit().await;
                self.capture.drain();
                self.capture.system_line(format!(
                    "{} {request_id} Task timed out after {:.2} seconds",
                    rfc3339_now(),
                    spec.timeout.as_secs_f64()
                ));
                (
                    InvokeResult::FunctionError(timed_out(request_id, spec.timeout)),
                    false,
                )
            }
            Ending::OutOfMemory => {
                self.cancel.cancel();
                self.await_exit().await;
                (
                    InvokeResult::FunctionError(out_of_memory(request_id)),
                    false,
                )
            }
        };
        if reusable {
            self.capture.drain();
        }
        if !reusable
            || self
                .memory_read_at
                .is_none_or(|t| t.elapsed() >= MEMORY_REFRESH)
        {
            self.peak_memory_bytes = self.peak_memory_bytes.max(self.control.memory().peak_bytes);
            self.memory_read_at = Some(Instant::now());
        }
        let peak = self.peak_memory_bytes;
        self.capture
            .system_line(format!("END RequestId: {request_id}"));
        self.capture.system_line(report_line(
            request_id,
            duration,
            spec.config.memory_mb,
            peak,
            self.init_duration.take(),
        ));
        self.capture.end_invocation();
        self.last_used = Instant::now();
        Run {
            result,
            reusable: reusable && self.is_alive(),
            tail: encode_tail(self.capture.take_tail()),
        }
    }
}

fn rfc3339_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_report_lines_as_aws_does() {
        let id = RequestId::new();
        let line = report_line(&id, Duration::from_micros(1500), 128, 20 * MB + 1, None);
        assert_eq!(
            line,
            format!("REPORT RequestId: {id}\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 21 MB")
        );
        let cold = report_line(
            &id,
            Duration::from_millis(3),
            256,
            0,
            Some(Duration::from_micros(12_340)),
        );
        assert!(cold.ends_with("\tInit Duration: 12.34 ms"));
    }

    #[test]
    fn classifies_runtime_exits() {
        let id = RequestId::new();
        let crash = exit_diagnostic(
            &id,
            &ExitInfo {
                code: Some(3),
                signal: None,
                oom_killed: false,
            },
        );
        assert_eq!(crash.error_type, "Runtime.ExitError");
        assert!(String::from_utf8_lossy(&crash.body)
            .contains("Runtime exited with error: exit status 3"));
        let oom = exit_diagnostic(
            &id,
            &ExitInfo {
                code: None,
                signal: Some(9),
                oom_killed: true,
            },
        );
        assert_eq!(oom.error_type, "Runtime.OutOfMemory");
        let clean = exit_diagnostic(
            &id,
            &ExitInfo {
                code: Some(0),
                signal: None,
                oom_killed: false,
            },
        );
        assert!(String::from_utf8_lossy(&clean.body).contains("without providing a reason"));
    }

    #[test]
    fn code_stays_in_use_while_any_environment_holds_it() {
        let usage = CodeUsage::default();
        let a = usage.hold("abc");
        let b = usage.hold("abc");
        assert!(usage.in_use().contains("abc"));
        drop(a);
        assert!(usage.in_use().contains("abc"));
        drop(b);
        assert!(usage.in_use().is_empty());
    }

    #[test]
    fn trace_header_is_derived_from_the_request_id() {
        let id = RequestId::new();
        let hex = id.as_str().replace('-', "");
        let header = trace_header(&id, 0x65);
        assert_eq!(
            header.to_str().unwrap(),
            format!(
                "Root=1-00000065-{};Parent={};Sampled=0",
                &hex[..24],
                &hex[16..]
            )
        );
    }

    #[test]
    fn timeout_message_has_two_decimals() {
        let id = RequestId::new();
        let d = timed_out(&id, Duration::from_secs(1));
        assert!(String::from_utf8_lossy(&d.body).contains("Task timed out after 1.00 seconds"));
        assert_eq!(d.error_type, "Sandbox.Timedout");
    }

    #[test]
    fn runtime_error_type_falls_back_to_document() {
        let d = runtime_error(
            None,
            Bytes::from_static(br#"{"errorType":"ValueError","errorMessage":"x"}"#),
        );
        assert_eq!(d.error_type, "ValueError");
        let d = runtime_error(Some("Custom".into()), Bytes::from_static(b"{}"));
        assert_eq!(d.error_type, "Custom");
        let d = runtime_error(None, Bytes::new());
        assert_eq!(d.error_type, "Unhandled");
        assert!(!d.body.is_empty());
    }
}
