//! The `Engine` handle: function registry, invocation entry point, idle reaping, shutdown.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serval_model::limits::UNRESERVED_CONCURRENCY_MIN;
use serval_model::{
    AliasConfig, EventInvokeConfig, FunctionConfig, FunctionName, Qualifier, RequestId, VersionId,
};
use serval_runtimes::RuntimeSet;
use serval_sandbox::AnySandbox;
use serval_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::environment::{self, CodeUsage, ColdStart, FunctionSpec, InitType, Shared};
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

/// One function as the engine holds it: `$LATEST`, its published versions (each with its own
/// pool), its aliases and its settings.
struct FunctionEntry {
    latest: Arc<Pool>,
    versions: HashMap<u64, Arc<Pool>>,
    aliases: HashMap<String, AliasRoute>,
    /// Reserved concurrency; `Some(0)` throttles every invocation.
    reserved: Option<u32>,
    /// Invocations of any version running now.
    running: Arc<AtomicU32>,
    event_configs: HashMap<String, EventInvokeConfig>,
    /// Provisioned concurrency requested per qualifier (a version number or an alias).
    provisioned: BTreeMap<String, u32>,
}

/// Where an alias sends invocations.
#[derive(Debug, Clone, Copy)]
struct AliasRoute {
    primary: VersionId,
    /// Another published version and the share of invocations it gets.
    additional: Option<(u64, f64)>,
}

impl FunctionEntry {
    fn new(latest: Arc<Pool>) -> Self {
        Self {
            latest,
            versions: HashMap::new(),
            aliases: HashMap::new(),
            reserved: None,
            running: Arc::new(AtomicU32::new(0)),
            event_configs: HashMap::new(),
            provisioned: BTreeMap::new(),
        }
    }

    fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        std::iter::once(&self.latest).chain(self.versions.values())
    }

    fn version_pool(&self, version: VersionId) -> Option<&Arc<Pool>> {
        match version {
            VersionId::Latest => Some(&self.latest),
            VersionId::Published(n) => self.versions.get(&n),
        }
    }

    /// The pool an invocation with `qualifier` runs in; an alias with routing weights picks
    /// one of its two versions at random by weight.
    fn route(&self, qualifier: Option<&Qualifier>) -> Option<&Arc<Pool>> {
        match qualifier {
            None | Some(Qualifier::Latest) => Some(&self.latest),
            Some(Qualifier::Version(n)) => self.versions.get(n),
            Some(Qualifier::Alias(alias)) => {
                let route = self.aliases.get(alias)?;
                match route.additional {
                    Some((version, weight)) if fastrand::f64() < weight => {
                        self.versions.get(&version)
                    }
                    _ => self.version_pool(route.primary),
                }
            }
        }
    }

    /// The pool provisioned concurrency on `qualifier` keeps warm: a version's, or an alias's
    /// primary version's.
    fn provisioned_pool(&self, qualifier: &str) -> Option<&Arc<Pool>> {
        match Qualifier::parse(qualifier).ok()? {
            Qualifier::Latest => None,
            Qualifier::Version(n) => self.versions.get(&n),
            Qualifier::Alias(alias) => match self.aliases.get(&alias)?.primary {
                // Only published versions are provisioned (the API refuses the rest).
                VersionId::Latest => None,
                version => self.version_pool(version),
            },
        }
    }

    /// Recomputes every pool's provisioned target from the configs.
    fn retarget(&self) {
        let mut targets: HashMap<*const Pool, u32> = HashMap::new();
        for (qualifier, requested) in &self.provisioned {
            if let Some(pool) = self.provisioned_pool(qualifier) {
                let target = targets.entry(Arc::as_ptr(pool)).or_default();
                *target = target.saturating_add(*requested);
            }
        }
        for pool in self.pools() {
            let target = targets.get(&Arc::as_ptr(pool)).copied().unwrap_or(0);
            pool.provisioned_target.store(target, Ordering::Release);
        }
    }

    fn retire(self) {
        for pool in self.pools() {
            pool.retire();
        }
    }
}

pub(crate) struct Inner {
    /// The asynchronous dispatcher, once `start_async` ran.
    pub(crate) dispatcher: std::sync::OnceLock<crate::dispatch::DispatcherHandle>,
    shared: Shared,
    store: Store,
    functions: RwLock<HashMap<FunctionName, FunctionEntry>>,
    /// Invocations running now, all functions.
    running: AtomicU32,
    /// Invocations running now of functions without a reservation.
    unreserved_running: AtomicU32,
    /// Sum of every function's reserved concurrency.
    reserved_total: AtomicU32,
    pub(crate) shutting_down: AtomicBool,
    cancel: CancellationToken,
    /// Wakes the provisioner when a target changes or a provisioned environment is gone.
    provisioner: Notify,
}

/// A cloneable front to the engine. Create it inside a Tokio runtime.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// Holds one slot of concurrency while an invocation runs: the function's, and the
/// account's unreserved pool's when the function has no reservation.
struct Permit<'a> {
    inner: &'a Inner,
    function: Arc<AtomicU32>,
    unreserved: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.function.fetch_sub(1, Ordering::AcqRel);
        if self.unreserved {
            self.inner.unreserved_running.fetch_sub(1, Ordering::AcqRel);
        }
        self.inner.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a failed provisioned init waits before it is tried again.
const PROVISION_RETRY: Duration = Duration::from_secs(5);
/// Most provisioned environments of one pool initializing at once.
const PROVISION_PARALLEL: u32 = 8;

impl Engine {
    /// Starts the engine's background work (idle reaper, freezer, provisioner, log writer
    /// thread).
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
            unreserved_running: AtomicU32::new(0),
            reserved_total: AtomicU32::new(0),
            shutting_down: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            provisioner: Notify::new(),
        });
        tokio::spawn(reaper(Arc::downgrade(&inner), inner.cancel.clone()));
        if let Some(grace) = inner.shared.config.freeze_grace {
            tokio::spawn(freezer(Arc::downgrade(&inner), inner.cancel.clone(), grace));
        }
        tokio::spawn(code_collector(Arc::downgrade(&inner), inner.cancel.clone()));
        tokio::spawn(provisioner(Arc::downgrade(&inner), inner.cancel.clone()));
        Ok(Engine { inner })
    }

    fn functions(&self) -> std::sync::RwLockReadGuard<'_, HashMap<FunctionName, FunctionEntry>> {
        self.inner
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn functions_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<FunctionName, FunctionEntry>> {
        self.inner
            .functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn pool(&self, config: FunctionConfig) -> Arc<Pool> {
        let code_dir = self.inner.store.code_dir(&config.code_sha256_hex);
        Arc::new(Pool::new(FunctionSpec::new(
            config,
            code_dir,
            &self.inner.shared,
        )))
    }

    /// Changes one function's entry (if registered) and re-targets its provisioned
    /// concurrency.
    fn modify(&self, name: &FunctionName, change: impl FnOnce(&mut FunctionEntry)) {
        {
            let mut functions = self.functions_mut();
            let Some(entry) = functions.get_mut(name) else {
                return;
            };
            change(entry);
            entry.retarget();
        }
        self.inner.provisioner.notify_one();
    }

    /// Registers a function's current configuration (`$LATEST`; create or update). New
    /// invocations use environments of this configuration; in-flight ones finish on the old.
    pub fn deploy(&self, config: FunctionConfig) {
        let name = config.name.clone();
        let pool = self.pool(config);
        let old = {
            let mut functions = self.functions_mut();
            match functions.get_mut(&name) {
                Some(entry) => Some(std::mem::replace(&mut entry.latest, pool)),
                None => {
                    functions.insert(name, FunctionEntry::new(pool));
                    None
                }
            }
        };
        if let Some(old) = old {
            old.retire();
        }
    }

    /// Registers a published version (`config.version` is its number). Versions never change;
    /// registering one again replaces its pool. Ignored if the function is not registered.
    pub fn deploy_version(&self, config: FunctionConfig) {
        let Ok(VersionId::Published(number)) = VersionId::parse(&config.version) else {
            tracing::warn!(function = %config.name, version = %config.version, "not a published version; ignored");
            return;
        };
        let name = config.name.clone();
        let pool = self.pool(config);
        let mut old = None;
        self.modify(&name, |entry| old = entry.versions.insert(number, pool));
        if let Some(old) = old {
            old.retire();
        }
    }

    /// Forgets one published version; its idle environments are destroyed now, busy ones
    /// when they finish.
    pub fn remove_version(&self, name: &FunctionName, version: u64) {
        let mut old = None;
        self.modify(name, |entry| {
            old = entry.versions.remove(&version);
            entry.provisioned.remove(&version.to_string());
            entry.event_configs.remove(&version.to_string());
        });
        if let Some(old) = old {
            old.retire();
        }
    }

    /// Forgets a function and everything of it; its idle environments are destroyed now, busy
    /// ones when they finish.
    pub fn remove(&self, name: &FunctionName) {
        let old = self.functions_mut().remove(name);
        if let Some(old) = old {
            if old.reserved.is_some() {
                self.recount_reserved();
            }
            old.retire();
        }
    }

    /// Registers or replaces an alias (its routing applies to the next invocation).
    pub fn set_alias(&self, alias: &AliasConfig) {
        let route = AliasRoute {
            primary: alias.function_version,
            additional: alias
                .additional_version_weights
                .iter()
                .next()
                .map(|(version, weight)| (*version, *weight)),
        };
        self.modify(&alias.function, |entry| {
            entry.aliases.insert(alias.name.clone(), route);
        });
    }

    /// Forgets an alias and the settings put on it.
    pub fn remove_alias(&self, name: &FunctionName, alias: &str) {
        self.modify(name, |entry| {
            entry.aliases.remove(alias);
            entry.provisioned.remove(alias);
            entry.event_configs.remove(alias);
        });
    }

    /// Sets (`Some`, 0 disables the function) or removes the function's reserved concurrency.
    pub fn set_reserved_concurrency(&self, name: &FunctionName, reserved: Option<u32>) {
        self.modify(name, |entry| entry.reserved = reserved);
        self.recount_reserved();
    }

    fn recount_reserved(&self) {
        let total: u32 = self
            .functions()
            .values()
            .filter_map(|entry| entry.reserved)
            .sum();
        self.inner.reserved_total.store(total, Ordering::Release);
    }

    /// The account limit and what is left unreserved.
    pub fn concurrency(&self) -> crate::ConcurrencySummary {
        let account_limit = self.inner.shared.config.max_concurrency;
        crate::ConcurrencySummary {
            account_limit,
            unreserved: account_limit
                .saturating_sub(self.inner.reserved_total.load(Ordering::Acquire)),
            unreserved_minimum: UNRESERVED_CONCURRENCY_MIN.min(account_limit / 10),
        }
    }

    /// Keeps `requested` initialized environments for a version or alias (`qualifier`), and
    /// starts creating them now.
    pub fn set_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
        requested: u32,
    ) {
        self.modify(name, |entry| {
            entry.provisioned.insert(qualifier.to_owned(), requested);
        });
    }

    /// Stops keeping environments for the qualifier; the extra ones age out as usual.
    pub fn remove_provisioned_concurrency(&self, name: &FunctionName, qualifier: &str) {
        self.modify(name, |entry| {
            entry.provisioned.remove(qualifier);
        });
    }

    /// Progress of the qualifier's provisioned concurrency, if it has a config.
    pub fn provisioned_status(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Option<crate::ProvisionedStatus> {
        let functions = self.functions();
        let entry = functions.get(name)?;
        let requested = *entry.provisioned.get(qualifier)?;
        let Some(pool) = entry.provisioned_pool(qualifier) else {
            return Some(crate::ProvisionedStatus {
                requested,
                allocated: 0,
                available: 0,
                state: crate::ProvisionedState::Failed,
                reason: Some(format!("{qualifier} does not name a published version")),
            });
        };
        let target = pool.provisioned_target.load(Ordering::Acquire);
        let live = pool.provisioned_live.load(Ordering::Acquire);
        let allocated = live.min(requested);
        let failure = pool
            .provisioned_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, reason)| reason.clone());
        let (state, reason) = if live >= target {
            (crate::ProvisionedState::Ready, None)
        } else if let Some(reason) = failure {
            (crate::ProvisionedState::Failed, Some(reason))
        } else {
            (crate::ProvisionedState::InProgress, None)
        };
        Some(crate::ProvisionedStatus {
            requested,
            allocated,
            available: allocated,
            state,
            reason,
        })
    }

    /// Registers or replaces how async events of `(cfg.function, cfg.qualifier)` are retried
    /// and where their results go.
    pub fn set_event_invoke_config(&self, cfg: EventInvokeConfig) {
        let name = cfg.function.clone();
        self.modify(&name, |entry| {
            entry.event_configs.insert(cfg.qualifier.clone(), cfg);
        });
    }

    /// Forgets an event-invoke config (AWS's defaults apply again).
    pub fn remove_event_invoke_config(&self, name: &FunctionName, qualifier: &str) {
        self.modify(name, |entry| {
            entry.event_configs.remove(qualifier);
        });
    }

    /// The event-invoke config of exactly this qualifier (`$LATEST`, a number, an alias).
    pub(crate) fn event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Option<EventInvokeConfig> {
        self.functions()
            .get(name)?
            .event_configs
            .get(qualifier)
            .cloned()
    }

    /// The function's reserved concurrency, if it has one.
    pub(crate) fn reserved_concurrency(&self, name: &FunctionName) -> Option<u32> {
        self.functions().get(name)?.reserved
    }

    /// Whether an invocation of `name` with `qualifier` (`None`: `$LATEST`) has something
    /// to run.
    pub(crate) fn has_target(&self, name: &FunctionName, qualifier: Option<&Qualifier>) -> bool {
        self.functions()
            .get(name)
            .is_some_and(|entry| entry.route(qualifier).is_some())
    }

    /// Whether the function is registered.
    pub fn has_function(&self, name: &FunctionName) -> bool {
        self.functions().contains_key(name)
    }

    fn permit(
        &self,
        function: &FunctionName,
        reserved: Option<u32>,
        running: &Arc<AtomicU32>,
    ) -> Result<Permit<'_>, InvokeError> {
        let inner = &*self.inner;
        inner.running.fetch_add(1, Ordering::AcqRel);
        let before = running.fetch_add(1, Ordering::AcqRel);
        let mut permit = Permit {
            inner,
            function: running.clone(),
            unreserved: false,
        };
        let throttled = |reason| InvokeError::TooManyRequests {
            function: function.clone(),
            reason,
        };
        match reserved {
            Some(reserved) => {
                if before >= reserved {
                    return Err(throttled(
                        "ReservedFunctionConcurrentInvocationLimitExceeded",
                    ));
                }
            }
            None => {
                permit.unreserved = true;
                let before = inner.unreserved_running.fetch_add(1, Ordering::AcqRel);
                let pool = inner
                    .shared
                    .config
                    .max_concurrency
                    .saturating_sub(inner.reserved_total.load(Ordering::Acquire));
                if before >= pool {
                    return Err(throttled("ConcurrentInvocationLimitExceeded"));
                }
            }
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
        let routed = {
            let functions = self.functions();
            functions.get(&req.function).and_then(|entry| {
                let pool = entry.route(req.qualifier.as_ref())?;
                Some((pool.clone(), entry.reserved, entry.running.clone()))
            })
        };
        let (pool, reserved, running) = routed.ok_or_else(|| InvokeError::FunctionNotFound {
            function: req.function.clone(),
            qualifier: req.qualifier.clone(),
        })?;
        let _permit = self.permit(&req.function, reserved, &running)?;
        let request_id = req.request_id.clone().unwrap_or_default();
        let spec = &pool.spec;
        let shared = &self.inner.shared;
        let mut env = match pool.acquire() {
            Some(env) => env,
            None => match environment::create(
                shared,
                spec,
                &request_id,
                req.log_tail,
                InitType::OnDemand,
            )
            .await?
            {
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
            let provisioned = env.is_provisioned();
            drop(env);
            if provisioned {
                self.inner.provisioner.notify_one();
            }
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

    /// The first step of shutdown, for the moment the signal arrives: refuses new invocations
    /// and tells the asynchronous dispatcher to start no more events (queued ones stay on
    /// disk). Running invocations go on; [`Engine::shutdown`] waits for them.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        if self.inner.dispatcher.get().is_some() {
            let engine = self.clone();
            tokio::spawn(async move {
                if let Some(dispatcher) = engine.inner.dispatcher.get() {
                    dispatcher.shutdown().await;
                }
            });
        }
    }

    /// Stops accepting invocations, stops the asynchronous dispatcher (queued events stay on
    /// disk), lets in-flight invocations finish (bounded), destroys every environment and
    /// flushes logs.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        if let Some(dispatcher) = self.inner.dispatcher.get() {
            dispatcher.shutdown().await;
        }
        let started = Instant::now();
        while self.inner.running.load(Ordering::Acquire) > 0 && started.elapsed() < DRAIN_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let entries: Vec<FunctionEntry> = self.functions_mut().drain().map(|(_, e)| e).collect();
        for entry in entries {
            entry.retire();
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

/// Every pool of every function (for the background sweeps).
fn all_pools(inner: &Inner) -> Vec<Arc<Pool>> {
    inner
        .functions
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .flat_map(|entry| entry.pools().cloned().collect::<Vec<_>>())
        .collect()
}

/// Keeps each pool's provisioned environments at its target: creates missing ones (a few at
/// a time, backing off after a failed init), and lets surplus ones age out.
async fn provisioner(weak: std::sync::Weak<Inner>, cancel: CancellationToken) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        for pool in all_pools(&inner) {
            if pool.is_retired() {
                continue;
            }
            pool.trim_provisioned();
            let target = pool.provisioned_target.load(Ordering::Acquire);
            let live = pool.provisioned_live.load(Ordering::Acquire);
            let in_progress = pool.provisioning.load(Ordering::Acquire);
            if live + in_progress >= target {
                continue;
            }
            let failed_recently = pool
                .provisioned_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < PROVISION_RETRY);
            if failed_recently {
                continue;
            }
            let missing =
                (target - live - in_progress).min(PROVISION_PARALLEL.saturating_sub(in_progress));
            for _ in 0..missing {
                pool.provisioning.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(provision_one(Arc::downgrade(&inner), pool.clone()));
            }
        }
        drop(inner);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wait_for_provisioner(&weak) => {}
        }
    }
}

async fn wait_for_provisioner(weak: &std::sync::Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    // Also wakes on a timer: a provisioned environment may die idle (its runtime exits), and
    // a failed init is retried after `PROVISION_RETRY`.
    let _ = tokio::time::timeout(Duration::from_millis(500), inner.provisioner.notified()).await;
}

/// Creates one provisioned environment for `pool` and puts it in the pool's idle set.
async fn provision_one(weak: std::sync::Weak<Inner>, pool: Arc<Pool>) {
    let Some(inner) = weak.upgrade() else { return };
    let request_id = RequestId::new();
    let created = environment::create(
        &inner.shared,
        &pool.spec,
        &request_id,
        false,
        InitType::Provisioned,
    )
    .await;
    let failure = match created {
        Ok(ColdStart::Ready(mut env)) => {
            env.mark_provisioned(pool.provisioned_mark());
            pool.release(env);
            None
        }
        Ok(ColdStart::Failed { diagnostic, .. }) => Some(format!(
            "{}: {}",
            diagnostic.error_type,
            String::from_utf8_lossy(&diagnostic.body)
        )),
        Err(error) => Some(error.to_string()),
    };
    if let Some(reason) = &failure {
        tracing::warn!(function = %pool.spec.config.name, version = %pool.spec.config.version, %reason, "provisioned environment failed to initialize");
    }
    *pool
        .provisioned_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = failure.map(|reason| (Instant::now(), reason));
    pool.provisioning.fetch_sub(1, Ordering::AcqRel);
    inner.provisioner.notify_one();
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
            all_pools(&inner)
                .iter()
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
        let pools = all_pools(&inner);
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
