//! The `Engine` handle: function registry, invocation entry point, idle reaping, shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serval_model::{FunctionConfig, FunctionName, RequestId};
use serval_runtimes::RuntimeSet;
use serval_sandbox::AnySandbox;
use serval_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::environment::{self, CodeUsage, ColdStart, FunctionSpec, Shared};
use crate::logs::LogWriter;
use crate::pool::Pool;
use crate::{EngineConfig, EngineStats, InvokeError, InvokeOutcome, InvokeRequest, InvokeResult};

/// How long shutdown waits for in-flight invocations.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often unused code packages are collected.
const CODE_GC_INTERVAL: Duration = Duration::from_secs(600);
/// How old an unreferenced package must be before it is collected (an upload in progress is
/// not referenced yet).
const CODE_GC_GRACE: Duration = Duration::from_secs(600);

struct Inner {
    /// The asynchronous dispatcher, once `start_async` ran.
    pub(crate) dispatcher: std::sync::OnceLock<crate::dispatch::DispatcherHandle>,
    shared: Shared,
    store: Store,
    functions: RwLock<HashMap<FunctionName, Arc<Pool>>>,
    running: AtomicU32,
    shutting_down: AtomicBool,
    cancel: CancellationToken,
}

/// A cloneable front to the engine. Create it inside a Tokio runtime.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Holds one slot of the account's concurrency while an invocation runs.
struct Permit<'a>(&'a AtomicU32);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Engine {
    /// Starts the engine's background work (idle reaper, log writer thread).
    pub fn new(
        config: EngineConfig,
        sandbox: AnySandbox,
        runtimes: Arc<RuntimeSet>,
        store: Store,
        log_retention: Duration,
    ) -> std::io::Result<Engine> {
        std::fs::create_dir_all(&config.envs_dir)?;
        let logs = LogWriter::start(store.clone(), log_retention)?;
        let inner = Arc::new(Inner {
            dispatcher: std::sync::OnceLock::new(),
            shared: Shared {
                config,
                sandbox,
                runtimes,
                logs,
                environments: Arc::new(AtomicU32::new(0)),
                code_usage: CodeUsage::default(),
            },
            store,
            functions: RwLock::new(HashMap::new()),
            running: AtomicU32::new(0),
            shutting_down: AtomicBool::new(false),
            cancel: CancellationToken::new(),
        });
        tokio::spawn(reaper(Arc::downgrade(&inner), inner.cancel.clone()));
        if let Some(grace) = inner.shared.config.freeze_grace {
            tokio::spawn(freezer(Arc::downgrade(&inner), inner.cancel.clone(), grace));
        }
        tokio::spawn(code_collector(Arc::downgrade(&inner), inner.cancel.clone()));
        Ok(Engine { inner })
    }

    fn functions(&self) -> std::sync::RwLockReadGuard<'_, HashMap<FunctionName, Arc<Pool>>> {
        self.inner
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn functions_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<FunctionName, Arc<Pool>>> {
        self.inner
            .functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a function's current configuration (create or update). New invocations use
    /// environments of this configuration; in-flight ones finish on the old.
    pub fn deploy(&self, config: FunctionConfig) {
        let code_dir = self.inner.store.code_dir(&config.code_sha256_hex);
        let name = config.name.clone();
        let pool = Arc::new(Pool::new(FunctionSpec::new(
            config,
            code_dir,
            &self.inner.shared,
        )));
        let old = self.functions_mut().insert(name, pool);
        if let Some(old) = old {
            old.retire();
        }
    }

    /// Forgets a function; its idle environments are destroyed now, busy ones when they finish.
    pub fn remove(&self, name: &FunctionName) {
        let old = self.functions_mut().remove(name);
        if let Some(old) = old {
            old.retire();
        }
    }

    /// Registers a published version (`config.version` is its number). Versions never change;
    /// registering one again replaces its pool.
    pub fn deploy_version(&self, config: FunctionConfig) {
        todo!("{config:?}")
    }

    /// Forgets one published version; its environments go as in [`Engine::remove`].
    pub fn remove_version(&self, name: &FunctionName, version: u64) {
        todo!("{name}{version}")
    }

    /// Registers or replaces an alias (its routing applies to the next invocation).
    pub fn set_alias(&self, alias: &serval_model::AliasConfig) {
        todo!("{alias:?}")
    }

    /// Forgets an alias.
    pub fn remove_alias(&self, name: &FunctionName, alias: &str) {
        todo!("{name}{alias}")
    }

    /// Sets (`Some`, 0 disables the function) or removes the function's reserved concurrency.
    pub fn set_reserved_concurrency(&self, name: &FunctionName, reserved: Option<u32>) {
        todo!("{name}{reserved:?}")
    }

    /// The account limit and what is left unreserved.
    pub fn concurrency(&self) -> crate::ConcurrencySummary {
        todo!()
    }

    /// Keeps `requested` initialized environments for a version or alias (`qualifier`), and
    /// starts creating them now.
    pub fn set_provisioned_concurrency(&self, name: &FunctionName, qualifier: &str, requested: u32) {
        todo!("{name}{qualifier}{requested}")
    }

    /// Stops keeping environments for the qualifier; the extra ones age out as usual.
    pub fn remove_provisioned_concurrency(&self, name: &FunctionName, qualifier: &str) {
        todo!("{name}{qualifier}")
    }

    /// Progress of the qualifier's provisioned concurrency, if it has a config.
    pub fn provisioned_status(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Option<crate::ProvisionedStatus> {
        todo!("{name}{qualifier}")
    }

    /// Registers or replaces how async events of `(cfg.function, cfg.qualifier)` are retried
    /// and where their results go.
    pub fn set_event_invoke_config(&self, cfg: serval_model::EventInvokeConfig) {
        todo!("{cfg:?}")
    }

    /// Forgets an event-invoke config (AWS's defaults apply again).
    pub fn remove_event_invoke_config(&self, name: &FunctionName, qualifier: &str) {
        todo!("{name}{qualifier}")
    }

    /// The event-invoke config of exactly this qualifier (`$LATEST`, a number, an alias).
    pub(crate) fn event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Option<serval_model::EventInvokeConfig> {
        todo!("{name}{qualifier}")
    }

    /// The function's reserved concurrency, if it has one.
    pub(crate) fn reserved_concurrency(&self, name: &FunctionName) -> Option<u32> {
        todo!("{name}")
    }

    /// Whether an invocation of `name` with `qualifier` (`None`: `$LATEST`) has something
    /// to run.
    pub(crate) fn has_target(&self, name: &FunctionName, qualifier: Option<&serval_model::Qualifier>) -> bool {
        todo!("{name}{qualifier:?}")
    }

    /// Whether the function is registered.
    pub fn has_function(&self, name: &FunctionName) -> bool {
        self.functions().contains_key(name)
    }

    fn permit(&self, function: &FunctionName) -> Result<Permit<'_>, InvokeError> {
        let running = &self.inner.running;
        let before = running.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(running);
        if before >= self.inner.shared.config.max_concurrency {
            return Err(InvokeError::TooManyRequests {
                function: function.clone(),
                reason: "ConcurrentInvocationLimitExceeded",
            });
        }
        Ok(permit)
    }

    /// Runs one synchronous invocation.
    ///
    /// If the caller stops waiting (its connection closed), the invocation still runs to its
    /// end in the background, as on AWS: the function is not killed mid-handler, its log gets
    /// its `END` and `REPORT`, and its environment returns to the pool.
    pub async fn invoke(&self, req: InvokeRequest) -> Result<InvokeOutcome, InvokeError> {
        let span = tracing::trace_span!("engine.invoke", function = %req.function);
        let engine = self.clone();
        FinishOnDrop::new(async move { engine.invoke_inner(req).await })
            .instrument(span)
            .await
    }

    async fn invoke_inner(&self, req: InvokeRequest) -> Result<InvokeOutcome, InvokeError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(InvokeError::ShuttingDown);
        }
        let pool = self
            .functions()
            .get(&req.function)
            .cloned()
            .ok_or_else(|| InvokeError::FunctionNotFound {
                function: req.function.clone(),
                qualifier: req.qualifier.clone(),
            })?;
        let _permit = self.permit(&req.function)?;
        let request_id = RequestId::new();
        let spec = &pool.spec;
        let shared = &self.inner.shared;
        let mut env = match pool.acquire() {
            Some(env) => env,
            None => match environment::create(shared, spec, &request_id, req.log_tail).await? {
                ColdStart::Ready(env) => env,
                ColdStart::Failed { diagnostic, tail } => {
                    return Ok(InvokeOutcome {
                        request_id,
                        executed_version: spec.config.version.clone(),
                        result: InvokeResult::FunctionError(diagnostic),
                        log_tail: tail,
                    });
                }
            },
        };
        let run = env.invoke(shared, spec, &request_id, &req).await;
        if run.reusable {
            pool.release(env);
        } else {
            drop(env);
        }
        Ok(InvokeOutcome {
            request_id,
            executed_version: spec.config.version.clone(),
            result: run.result,
            log_tail: run.tail,
        })
    }

    /// Running invocations and live environments.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            running_invocations: self.inner.running.load(Ordering::Relaxed),
            environments: self.inner.shared.environments.load(Ordering::Relaxed),
        }
    }

    /// The settings the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.shared.config
    }

    /// Stops accepting invocations, lets in-flight ones finish (bounded), destroys every
    /// environment and flushes logs.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let started = Instant::now();
        while self.inner.running.load(Ordering::Acquire) > 0 && started.elapsed() < DRAIN_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pools: Vec<Arc<Pool>> = self.functions_mut().drain().map(|(_, p)| p).collect();
        for pool in pools {
            pool.retire();
        }
        self.inner.cancel.cancel();
        let started = Instant::now();
        while self.inner.shared.environments.load(Ordering::Acquire) > 0
            && started.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.inner.shared.sandbox.shutdown().await;
        let logs = self.inner.shared.logs.clone();
        let _ = tokio::task::spawn_blocking(move || logs.flush_blocking()).await;
    }
}

/// Removes code packages no function and no live environment uses, every
/// [`CODE_GC_INTERVAL`].
async fn code_collector(inner: std::sync::Weak<Inner>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CODE_GC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let mut in_use = inner.shared.code_usage.in_use();
        in_use.extend(
            inner
                .functions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|p| p.spec.config.code_sha256_hex.clone()),
        );
        let store = inner.store.clone();
        drop(inner);
        match tokio::task::spawn_blocking(move || {
            store.collect_unused_code_except(CODE_GC_GRACE, &in_use)
        })
        .await
        {
            Ok(Ok(freed)) if freed > 0 => {
                tracing::info!(freed_bytes = freed, "collected unused code packages")
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "failed to collect unused code packages"),
            Err(error) => tracing::warn!(%error, "code collector task failed"),
        }
    }
}

/// Drives a future; if dropped before it completes, hands the rest of it to the runtime.
///
/// Costs one allocation per invocation; a task is spawned only when the caller gave up.
struct FinishOnDrop<F: Future<Output = T> + Send + 'static, T: Send + 'static> {
    future: Option<Pin<Box<F>>>,
}

impl<F: Future<Output = T> + Send + 'static, T: Send + 'static> FinishOnDrop<F, T> {
    fn new(future: F) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl<F: Future<Output = T> + Send + 'static, T: Send + 'static> Future for FinishOnDrop<F, T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Pending;
        };
        let out = future.as_mut().poll(cx);
        if out.is_ready() {
            self.future = None;
        }
        out
    }
}

impl<F: Future<Output = T> + Send + 'static, T: Send + 'static> Drop for FinishOnDrop<F, T> {
    fn drop(&mut self) {
        if let Some(future) = self.future.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = future.await;
                });
            }
        }
    }
}

/// Every `period`, calls `visit` on each pool with the instant before which an environment has
/// been idle for `idle`; ends with the engine.
async fn sweep_idle(
    inner: std::sync::Weak<Inner>,
    cancel: CancellationToken,
    period: Duration,
    idle: Duration,
    visit: impl Fn(&Pool, Instant),
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let Some(cutoff) = Instant::now().checked_sub(idle) else {
            continue;
        };
        let pools: Vec<Arc<Pool>> = inner
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        drop(inner);
        for pool in pools {
            visit(&pool, cutoff);
        }
    }
}

/// Destroys idle environments once they have been unused for the keep-alive.
async fn reaper(inner: std::sync::Weak<Inner>, cancel: CancellationToken) {
    let keep_alive = match inner.upgrade() {
        Some(i) => i.shared.config.keep_alive,
        None => return,
    };
    let period = (keep_alive / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    sweep_idle(inner, cancel, period, keep_alive, |pool, cutoff| {
        let reaped = pool.reap(cutoff);
        if reaped > 0 {
            tracing::debug!(function = %pool.spec.config.name, reaped, idle = pool.idle_count(), "reaped idle environments");
        }
    })
    .await;
}

/// Freezes environments idle for longer than `grace`, checking twice per grace period.
async fn freezer(inner: std::sync::Weak<Inner>, cancel: CancellationToken, grace: Duration) {
    let period = (grace / 2).max(Duration::from_millis(10));
    sweep_idle(inner, cancel, period, grace, |pool, cutoff| {
        pool.freeze_idle(cutoff);
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    /// Servers run invocations on a multi-threaded runtime, so the future must be `Send`.
    #[allow(dead_code, unreachable_code, clippy::diverging_sub_expression)]
    fn invoke_future_is_send(engine: Engine, req: InvokeRequest) {
        assert_send(engine.invoke(req));
    }
}
