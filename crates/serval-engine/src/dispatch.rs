//! The asynchronous dispatcher: runs events from the durable queue through the engine, with
//! AWS's retry, throttling, event-age and destination semantics.
//!
//! For: deciding when each accepted event runs, how often it is retried, when it is given up,
//! and what its destination receives. Not for: storing events (`serval_store::EventQueue`
//! does, durably, before `enqueue` returns) or running them (`Engine::invoke`).
//!
//! Shape (STYLE habit 1): one task owns a [`Scheduler`] — per function a FIFO of ready
//! events, a round-robin ring of functions with ready events (one function's backlog cannot
//! starve another's), and a timer heap for events waiting on a retry and functions backing off
//! after a throttle. `enqueue` stores the event and hands it to the task over a channel (no
//! polling); each attempt runs in its own task that reports back to the dispatcher. The
//! scheduler is pure (time is passed in), so its rules are tested without an engine; the
//! task reaches the engine through the [`Backend`] seam.
//!
//! Semantics (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>):
//! - a function error (or a failure to create its environment) is a failed attempt; attempt
//!   `n` is followed by a wait of `n × retry_base` (AWS: 1 min, then 2 min) until
//!   `MaximumRetryAttempts` retries were made, then the event is given up
//!   (`RetriesExhausted`);
//! - a throttle is not an attempt: the function's events wait, from `throttle_backoff_min`
//!   doubling per consecutive throttle up to `throttle_backoff_max`, reset by a success;
//! - before every attempt an event older than `MaximumEventAgeInSeconds` is given up
//!   (`EventAgeExceeded`), and never run;
//! - a success or a give-up goes to the `OnSuccess` / `OnFailure` destination function as an
//!   invocation record, stored in the same transaction that finishes the event.
//!
//! Delivery is at least once: an event whose outcome was not yet committed when the server
//! stopped runs again at the next start. Waiting events are held in memory (bounded by the
//! queue's limits).
//!
//! Scheduled rules enter through [`Engine::enqueue_scheduled`]: one fire's events are stored
//! with the rule's schedule mark in one transaction (the queue refuses a due time the rule
//! already fired for), then run like any other asynchronous event.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serval_model::limits::{EVENT_AGE_SECS_DEFAULT, RETRY_ATTEMPTS_DEFAULT};
use serval_model::{EventInvokeConfig, FunctionName, FunctionRef, Qualifier, RequestId};
use serval_store::{EventQueue, NewEvent, QueueError, QueuedEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{
    AsyncConfig, AsyncInvokeRequest, Engine, EnqueueError, InvokeError, InvokeOutcome,
    InvokeRequest, InvokeResult,
};

/// How long shutdown waits for running events to finish and record their outcome.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a function held back by its reserved concurrency (or a reservation of 0) is
/// looked at again when none of its own events finishes: the reservation may have changed,
/// and its waiting events may have grown too old.
const RESERVATION_RECHECK: Duration = Duration::from_secs(1);
/// The qualifier of an event invoked without one.
const LATEST: &str = "$LATEST";

// ---------------------------------------------------------------------------------------------
// The engine seam.

/// What the scheduler asks at each decision: settings can change while events wait.
pub(crate) trait Policy {
    /// Most events running at once, overall.
    fn account_limit(&self) -> u32;
    /// The function's reserved concurrency: most of its events running at once.
    fn reserved(&self, function: &FunctionName) -> Option<u32>;
    /// The event-invoke config of exactly this qualifier, if one was put.
    fn event_config(&self, function: &FunctionName, qualifier: &str) -> Option<EventInvokeConfig>;
}

/// What the dispatcher task needs from the engine; tests run it against a fake.
pub(crate) trait Backend: Policy + Clone + Send + Sync + 'static {
    /// The region reported in invocation records' ARNs.
    fn region(&self) -> &str;
    /// Whether a destination function (and qualifier) exists now.
    fn has_target(&self, function: &FunctionName, qualifier: Option<&Qualifier>) -> bool;
    /// Runs one attempt.
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> impl Future<Output = Result<InvokeOutcome, InvokeError>> + Send;
}

#[derive(Clone)]
struct EngineBackend(Engine);

impl Policy for EngineBackend {
    fn account_limit(&self) -> u32 {
        self.0.concurrency().account_limit
    }
    fn reserved(&self, function: &FunctionName) -> Option<u32> {
        self.0.reserved_concurrency(function)
    }
    fn event_config(&self, function: &FunctionName, qualifier: &str) -> Option<EventInvokeConfig> {
        self.0.event_invoke_config(function, qualifier)
    }
}

impl Backend for EngineBackend {
    fn region(&self) -> &str {
        &self.0.config().region
    }
    fn has_target(&self, function: &FunctionName, qualifier: Option<&Qualifier>) -> bool {
        self.0.has_target(function, qualifier)
    }
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> impl Future<Output = Result<InvokeOutcome, InvokeError>> + Send {
        self.0.invoke(req)
    }
}

// ---------------------------------------------------------------------------------------------
// The engine's entry points.

impl Engine {
    /// Starts running asynchronous events: `leftovers` (what `EventQueue::open` returned)
    /// first, then whatever `enqueue` accepts. Call once, after every function, version,
    /// alias and setting is registered.
    pub fn start_async(&self, queue: EventQueue, leftovers: Vec<QueuedEvent>, config: AsyncConfig) {
        let mut started = false;
        self.inner.dispatcher.get_or_init(|| {
            started = true;
            spawn_dispatcher(EngineBackend(self.clone()), queue, leftovers, config)
        });
        if !started {
            tracing::warn!("the asynchronous dispatcher was already started");
        }
    }

    /// Accepts one asynchronous invocation: checks the function and qualifier exist, stores
    /// the event durably, and hands it to the dispatcher. Returns the request id the event
    /// runs under once it is on disk.
    pub async fn enqueue(&self, req: AsyncInvokeRequest) -> Result<RequestId, EnqueueError> {
        // Shutting down first: shutdown forgets the functions, which is no reason to say 404.
        let Some(dispatcher) = self.inner.dispatcher.get() else {
            return Err(EnqueueError::Unavailable);
        };
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(EnqueueError::Unavailable);
        }
        if !self.has_target(&req.function, req.qualifier.as_ref()) {
            return Err(EnqueueError::FunctionNotFound {
                function: req.function,
                qualifier: req.qualifier,
            });
        }
        let qualifier = req
            .qualifier
            .as_ref()
            .map_or_else(|| LATEST.to_owned(), Qualifier::to_string);
        dispatcher
            .enqueue(req.function, qualifier, req.payload)
            .await
    }

    /// Accepts one fire of scheduled rule `rule` (its key in the queue's schedule marks) due at
    /// `due_ms` (ms since the epoch): stores an event per request and advances the rule's
    /// mark in one transaction, then hands the events to the dispatcher. A request whose
    /// function or qualifier does not exist is skipped with a warning; the mark advances even
    /// when every request was skipped.
    ///
    /// Returns the request ids the events run under, in the order of the stored requests, or
    /// `None` when the rule already fired for `due_ms` (nothing was stored). On an error
    /// nothing was stored and the mark did not move: the same due time may be tried again.
    pub async fn enqueue_scheduled(
        &self,
        requests: Vec<AsyncInvokeRequest>,
        rule: &str,
        due_ms: i64,
    ) -> Result<Option<Vec<RequestId>>, EnqueueError> {
        let Some(dispatcher) = self.inner.dispatcher.get() else {
            return Err(EnqueueError::Unavailable);
        };
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(EnqueueError::Unavailable);
        }
        let mut events = Vec::with_capacity(requests.len());
        for req in requests {
            if !self.has_target(&req.function, req.qualifier.as_ref()) {
                let qualifier = req.qualifier.as_ref().map(Qualifier::to_string);
                tracing::warn!(rule, function = %req.function, qualifier, "scheduled rule target not found: skipping it");
                continue;
            }
            let qualifier = req
                .qualifier
                .as_ref()
                .map_or_else(|| LATEST.to_owned(), Qualifier::to_string);
            events.push((req.function, qualifier, req.payload));
        }
        dispatcher
            .enqueue_scheduled(events, rule.to_owned(), due_ms)
            .await
    }

    /// The due time (ms since the epoch) scheduled rule `rule` last fired for, as committed;
    /// `None` if it never fired or the server runs without a queue.
    pub fn schedule_mark(&self, rule: &str) -> Option<i64> {
        self.inner.dispatcher.get()?.queue.schedule_mark(rule)
    }
}

/// Commands from the engine to the dispatcher task.
enum Command {
    /// A newly stored event.
    Admit(QueuedEvent),
    /// Stop starting events; answer once the running ones recorded their outcome.
    Shutdown(oneshot::Sender<()>),
}

/// The engine's side of a running dispatcher.
pub(crate) struct DispatcherHandle {
    commands: mpsc::UnboundedSender<Command>,
    queue: EventQueue,
    stopping: AtomicBool,
}

impl DispatcherHandle {
    /// Stops starting events, waits (bounded) for running ones to finish and record their
    /// outcome, and flushes the queue. Queued events stay on disk for the next start.
    pub(crate) async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Shutdown(reply)).is_ok()
            && tokio::time::timeout(SHUTDOWN_TIMEOUT, done).await.is_err()
        {
            tracing::warn!(
                timeout = ?SHUTDOWN_TIMEOUT,
                "asynchronous events still running at shutdown; they run again at the next start"
            );
        }
        if let Err(error) = self.queue.flush().await {
            tracing::warn!(%error, "failed to flush the asynchronous event queue at shutdown");
        }
    }

    /// Stores one event and hands it to the dispatcher. The store-and-hand-over runs in its
    /// own task, so a caller that stops waiting cannot leave a stored event unscheduled.
    async fn enqueue(
        &self,
        function: FunctionName,
        qualifier: String,
        payload: Bytes,
    ) -> Result<RequestId, EnqueueError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(EnqueueError::Unavailable);
        }
        let request_id = RequestId::new();
        let event = NewEvent {
            request_id: request_id.as_str().to_owned(),
            function,
            qualifier,
            payload,
            enqueued_ms: wall_now_ms(),
        };
        let queue = self.queue.clone();
        let commands = self.commands.clone();
        let stored = tokio::spawn(async move {
            let event = queue.append(event).await?;
            // A closed channel means the dispatcher stopped: the event waits on disk.
            let _ = commands.send(Command::Admit(event));
            Ok::<(), QueueError>(())
        });
        match stored.await {
            Ok(Ok(())) => Ok(request_id),
            Ok(Err(error @ QueueError::Full { .. })) => Err(EnqueueError::Full(error)),
            Ok(Err(error)) => Err(EnqueueError::Store(error)),
            Err(_) => Err(EnqueueError::Unavailable),
        }
    }
}

impl DispatcherHandle {
    /// Stores one scheduled fire's events with the rule's mark and hands them to the
    /// dispatcher; `None` when the rule already fired for `due_ms`. Runs in its own task, as
    /// `enqueue` does.
    async fn enqueue_scheduled(
        &self,
        events: Vec<(FunctionName, String, Bytes)>,
        rule: String,
        due_ms: i64,
    ) -> Result<Option<Vec<RequestId>>, EnqueueError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(EnqueueError::Unavailable);
        }
        let now_ms = wall_now_ms();
        let mut ids = Vec::with_capacity(events.len());
        let events: Vec<NewEvent> = events
            .into_iter()
            .map(|(function, qualifier, payload)| {
                let request_id = RequestId::new();
                let event = NewEvent {
                    request_id: request_id.as_str().to_owned(),
                    function,
                    qualifier,
                    payload,
                    enqueued_ms: now_ms,
                };
                ids.push(request_id);
                event
            })
            .collect();
        let queue = self.queue.clone();
        let commands = self.commands.clone();
        let stored = tokio::spawn(async move {
            let stored = queue.append_scheduled(events, rule, due_ms).await?;
            let fired = stored.is_some();
            for event in stored.into_iter().flatten() {
                // A closed channel means the dispatcher stopped: the event waits on disk.
                let _ = commands.send(Command::Admit(event));
            }
            Ok::<bool, QueueError>(fired)
        });
        match stored.await {
            Ok(Ok(true)) => Ok(Some(ids)),
            Ok(Ok(false)) => Ok(None),
            Ok(Err(error @ QueueError::Full { .. })) => Err(EnqueueError::Full(error)),
            Ok(Err(error)) => Err(EnqueueError::Store(error)),
            Err(_) => Err(EnqueueError::Unavailable),
        }
    }
}

/// Starts the dispatcher task with `leftovers` loaded, and returns its handle.
fn spawn_dispatcher<B: Backend>(
    backend: B,
    queue: EventQueue,
    leftovers: Vec<QueuedEvent>,
    config: AsyncConfig,
) -> DispatcherHandle {
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let mut scheduler = Scheduler::new(config);
    let (now, wall) = (Instant::now(), wall_now_ms());
    let count = leftovers.len();
    for event in leftovers {
        scheduler.admit(event, now, wall);
    }
    if count > 0 {
        tracing::info!(events = count, "resuming asynchronous events");
    }
    let dispatcher = Dispatcher {
        backend,
        queue: queue.clone(),
        scheduler,
        commands,
        commands_open: true,
        reports_tx,
        reports,
        writes: 0,
        stopping: None,
        gone_warned: HashMap::new(),
    };
    tokio::spawn(dispatcher.run());
    DispatcherHandle {
        commands: commands_tx,
        queue,
        stopping: AtomicBool::new(false),
    }
}

// ---------------------------------------------------------------------------------------------
// The dispatcher task.

/// What spawned work reports back to the dispatcher task.
enum Report {
    /// An attempt ended.
    Attempted { id: i64, result: AttemptResult },
    /// A destination record was stored (`None`: storing it failed; the event stays on disk).
    Stored(Option<QueuedEvent>),
}

struct Dispatcher<B: Backend> {
    backend: B,
    queue: EventQueue,
    scheduler: Scheduler,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Destination records being stored.
    writes: usize,
    /// Once stopping, who waits for the end.
    stopping: Option<Vec<oneshot::Sender<()>>>,
    /// When a dropped event of each deleted function was last logged (one warning per
    /// function every [`GONE_WARN_INTERVAL`], not one per event of a backlog).
    gone_warned: HashMap<FunctionName, Instant>,
}

/// How often the events dropped for one deleted function are reported.
const GONE_WARN_INTERVAL: Duration = Duration::from_secs(10);

impl<B: Backend> Dispatcher<B> {
    /// Drops an event whose function or qualifier no longer exists.
    fn drop_gone(&mut self, event: &QueuedEvent) {
        let now = Instant::now();
        self.gone_warned
            .retain(|_, at| now.saturating_duration_since(*at) < GONE_WARN_INTERVAL);
        if !self.gone_warned.contains_key(&event.function) {
            self.gone_warned.insert(event.function.clone(), now);
            tracing::warn!(function = %event.function, qualifier = event.qualifier, request_id = event.request_id, "function no longer exists: dropping its asynchronous events");
        } else {
            tracing::debug!(function = %event.function, request_id = event.request_id, "dropping asynchronous event of a deleted function");
        }
        self.queue.finish(event.id);
    }

    async fn run(mut self) {
        loop {
            if self.stopping.is_none() {
                self.start_due();
            } else if self.scheduler.in_flight() == 0 && self.writes == 0 {
                for waiter in self.stopping.take().unwrap_or_default() {
                    let _ = waiter.send(());
                }
                return;
            }
            let wake = match self.stopping {
                None => self.scheduler.next_wakeup(),
                Some(_) => None,
            };
            tokio::select! {
                biased;
                Some(report) = self.reports.recv() => self.on_report(report),
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(Command::Admit(event)) => {
                        // Once stopping, a new event waits on disk for the next start.
                        if self.stopping.is_none() {
                            self.scheduler.admit(event, Instant::now(), wall_now_ms());
                        }
                    }
                    Some(Command::Shutdown(waiter)) => {
                        self.stopping.get_or_insert_with(Vec::new).push(waiter);
                    }
                    None => {
                        self.commands_open = false;
                        self.stopping.get_or_insert_with(Vec::new);
                    }
                },
                () = sleep_until(wake), if wake.is_some() => {}
            }
        }
    }

    /// Starts every event that may run now, and settles those found too old.
    fn start_due(&mut self) {
        while let Some(action) = self.scheduler.next(Instant::now(), &self.backend) {
            match action {
                Action::Run(event) => self.start(event),
                Action::Settle(settled) => self.settle(settled),
            }
        }
    }

    fn start(&mut self, event: QueuedEvent) {
        let id = event.id;
        let Ok(qualifier) = Qualifier::parse(&event.qualifier) else {
            tracing::warn!(function = %event.function, qualifier = event.qualifier, request_id = event.request_id, "dropping asynchronous event with an invalid qualifier");
            // Gone: the scheduler forgets it; the queue drops it.
            self.scheduler.complete(
                id,
                AttemptResult::Gone,
                Instant::now(),
                wall_now_ms(),
                &self.backend,
            );
            self.queue.finish(id);
            return;
        };
        if !self.backend.has_target(&event.function, Some(&qualifier)) {
            // Deleted: no task, no invocation (a deleted function's backlog drains fast).
            self.scheduler.complete(
                id,
                AttemptResult::Gone,
                Instant::now(),
                wall_now_ms(),
                &self.backend,
            );
            self.drop_gone(&event);
            return;
        }
        let backend = self.backend.clone();
        let reports = self.reports_tx.clone();
        tokio::spawn(async move {
            // Reports the attempt even if the invocation panics, so the event's slot is freed
            // and it is tried again (a panic is Serval's failure, not the function's).
            let mut guard = AttemptGuard {
                reports,
                id,
                result: None,
            };
            let req = InvokeRequest {
                function: event.function.clone(),
                qualifier: Some(qualifier),
                request_id: Some(RequestId::from_stored(event.request_id.clone())),
                payload: event.payload.clone(),
                client_context: None,
                log_tail: false,
            };
            guard.result = Some(classify(&event, backend.invoke(req).await));
        });
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Attempted { id, result } => {
                let completion = self.scheduler.complete(
                    id,
                    result,
                    Instant::now(),
                    wall_now_ms(),
                    &self.backend,
                );
                self.apply(completion);
            }
            Report::Stored(event) => {
                self.writes -= 1;
                if let (Some(event), None) = (event, &self.stopping) {
                    self.scheduler.admit(event, Instant::now(), wall_now_ms());
                }
            }
        }
    }

    fn apply(&mut self, completion: Completion) {
        match completion {
            Completion::Settle(settled) => self.settle(settled),
            Completion::Retry {
                id,
                attempts,
                not_before_ms,
            } => self.queue.retry_later(id, attempts, not_before_ms),
            Completion::Drop(event) => self.drop_gone(&event),
            Completion::Requeued | Completion::Leave | Completion::Unknown => {}
        }
    }

    /// Ends an event: to its destination as an invocation record, or just removed.
    fn settle(&mut self, settled: Settled) {
        let event = &settled.event;
        let config = self.backend.event_config(&event.function, &event.qualifier);
        let destination = config.and_then(|c| match settled.condition {
            Condition::Success => c.on_success,
            _ => c.on_failure,
        });
        if settled.condition != Condition::Success {
            tracing::info!(function = %event.function, qualifier = event.qualifier, request_id = event.request_id, condition = settled.condition.as_str(), attempts = event.attempts, "gave up on an asynchronous event");
        }
        let Some(arn) = destination else {
            self.queue.finish(event.id);
            return;
        };
        let target = match FunctionRef::parse(&arn) {
            Ok(target)
                if self
                    .backend
                    .has_target(&target.name, target.qualifier.as_ref()) =>
            {
                target
            }
            _ => {
                tracing::warn!(function = %event.function, destination = arn, request_id = event.request_id, "destination function not found: dropping the invocation record");
                self.queue.finish(event.id);
                return;
            }
        };
        let now_ms = wall_now_ms();
        let next = NewEvent {
            request_id: RequestId::new().as_str().to_owned(),
            function: target.name,
            qualifier: target
                .qualifier
                .as_ref()
                .map_or_else(|| LATEST.to_owned(), Qualifier::to_string),
            payload: invocation_record(self.backend.region(), &settled, now_ms),
            enqueued_ms: now_ms,
        };
        let id = event.id;
        let queue = self.queue.clone();
        let reports = self.reports_tx.clone();
        self.writes += 1;
        tokio::spawn(async move {
            // A failed write (a full disk, say) is tried again a few times before the event
            // is left for the next start, where it runs again.
            let mut wait = RECORD_WRITE_RETRY;
            let mut stored = None;
            for attempt in 1..=RECORD_WRITE_ATTEMPTS {
                match queue.finish_and_append(id, next.clone()).await {
                    Ok(event) => {
                        stored = Some(event);
                        break;
                    }
                    Err(error) if attempt < RECORD_WRITE_ATTEMPTS => {
                        tracing::warn!(%error, event = id, "failed to store an invocation record; trying again");
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    Err(error) => {
                        tracing::warn!(%error, event = id, "failed to store an invocation record; the event runs again at the next start");
                    }
                }
            }
            let _ = reports.send(Report::Stored(stored));
        });
    }
}

/// How often storing an invocation record is tried, and the first wait between tries
/// (doubling).
const RECORD_WRITE_ATTEMPTS: u32 = 5;
const RECORD_WRITE_RETRY: Duration = Duration::from_millis(200);

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What an attempt's result means for the event.
fn classify(event: &QueuedEvent, result: Result<InvokeOutcome, InvokeError>) -> AttemptResult {
    match result {
        Ok(outcome) => match outcome.result {
            InvokeResult::Success(body) => AttemptResult::Success(Response {
                executed_version: outcome.executed_version,
                function_error: false,
                body,
            }),
            InvokeResult::FunctionError(diagnostic) => AttemptResult::Failed(Response {
                executed_version: outcome.executed_version,
                function_error: true,
                body: diagnostic.body,
            }),
        },
        Err(InvokeError::TooManyRequests { .. }) => AttemptResult::Throttled,
        Err(InvokeError::FunctionNotFound { .. }) => AttemptResult::Gone,
        Err(InvokeError::ShuttingDown) => AttemptResult::ShuttingDown,
        // Serval's own failure (no environment could be made): as AWS does with its system
        // errors, the event goes back to wait like a throttled one, without using one of its
        // attempts; only its maximum age ends it.
        Err(error @ (InvokeError::Sandbox { .. } | InvokeError::Setup { .. })) => {
            tracing::warn!(error = %error, source = error_source(&error), request_id = event.request_id, "asynchronous attempt failed to start; it waits and is tried again");
            AttemptResult::Throttled
        }
    }
}

/// Sends an attempt's report when dropped: its result, or a throttle-like result when the
/// attempt ended by unwinding.
struct AttemptGuard {
    reports: mpsc::UnboundedSender<Report>,
    id: i64,
    result: Option<AttemptResult>,
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            tracing::error!(
                event = self.id,
                "an asynchronous attempt panicked; the event is tried again"
            );
            AttemptResult::Throttled
        });
        let _ = self.reports.send(Report::Attempted {
            id: self.id,
            result,
        });
    }
}

fn error_source(error: &InvokeError) -> String {
    std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, now (for persisted times only).
fn wall_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The scheduler: pure state and rules, time passed in.

/// Why an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    /// AWS's `requestContext.condition`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// What an attempt returned, as far as an invocation record shows it.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// `$LATEST` or the version number that ran.
    pub(crate) executed_version: String,
    /// Whether the function failed (`functionError: Unhandled`).
    pub(crate) function_error: bool,
    /// The response, or the error document.
    pub(crate) body: Bytes,
}

/// How one attempt ended.
#[derive(Debug)]
pub(crate) enum AttemptResult {
    Success(Response),
    /// A function error, or a failure to set its environment up: an attempt that counts.
    Failed(Response),
    /// Over a concurrency limit: not an attempt.
    Throttled,
    /// The function or qualifier no longer exists.
    Gone,
    /// The engine is stopping: the event stays on disk.
    ShuttingDown,
}

/// An event that is done: to be finished, or sent to a destination.
#[derive(Debug)]
pub(crate) struct Settled {
    /// With `attempts` counting every attempt made.
    pub(crate) event: QueuedEvent,
    pub(crate) condition: Condition,
    /// The last attempt's response, if one ran since the event was loaded.
    pub(crate) last: Option<Response>,
}

/// What to do next.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start an attempt.
    Run(QueuedEvent),
    /// End an event without running it (too old).
    Settle(Settled),
}

/// What an attempt's end asks for.
#[derive(Debug)]
pub(crate) enum Completion {
    Settle(Settled),
    /// Record the failed attempt; the event runs again at `not_before_ms`.
    Retry {
        id: i64,
        attempts: u32,
        not_before_ms: i64,
    },
    /// Throttled: the event waits in its function's queue; nothing to record.
    Requeued,
    /// The function is gone: finish the event.
    Drop(QueuedEvent),
    /// Shutting down: leave the event on disk.
    Leave,
    /// Not an event with a running attempt.
    Unknown,
}

/// One event the scheduler holds.
#[derive(Debug)]
struct Held {
    event: QueuedEvent,
    /// When the scheduler got it, and how old it was then.
    admitted: Instant,
    age_at_admission: Duration,
    /// Whether it waits on a timer (rather than in its function's ready queue).
    on_timer: bool,
    last: Option<Response>,
}

impl Held {
    fn age(&self, now: Instant) -> Duration {
        self.age_at_admission + now.saturating_duration_since(self.admitted)
    }
}

/// One function's events.
#[derive(Debug, Default)]
struct Lane {
    /// Ready events by id: acceptance order, which a retried or throttled event keeps.
    ready: BTreeSet<i64>,
    running: u32,
    /// Whether the lane's name is in the ring (removal is lazy: a popped lane that cannot run
    /// is skipped).
    in_ring: bool,
    /// Held back by its reserved concurrency until one of its events ends or a recheck.
    parked: bool,
    recheck_pending: bool,
    /// The current throttle back-off, and until when the lane waits.
    backoff: Option<Duration>,
    blocked_until: Option<Instant>,
    /// How many of its events may run at once now (0: not yet set, `scale_step`), and when
    /// that last grew.
    scale: u32,
    scaled_at: Option<Instant>,
}

impl Lane {
    fn can_ring(&self) -> bool {
        !self.in_ring && !self.parked && self.blocked_until.is_none() && !self.ready.is_empty()
    }
    fn is_idle(&self) -> bool {
        self.ready.is_empty()
            && self.running == 0
            && !self.in_ring
            && !self.parked
            && self.blocked_until.is_none()
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// An event's retry wait ended.
    Event(i64),
    /// A function's throttle back-off ended.
    Unblock(FunctionName),
    /// Look at a function held back by its reservation again.
    Recheck(FunctionName),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    seq: u64,
    kind: TimerKind,
}

/// The settings that apply to one event now.
struct EventSettings {
    retries: u32,
    max_age: Duration,
}

/// Ready queues, round robin, timers, back-off and age: every scheduling rule, without I/O.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: AsyncConfig,
    /// Events waiting: ready in a lane, or on a timer.
    waiting: HashMap<i64, Held>,
    /// Events with an attempt running.
    running: HashMap<i64, Held>,
    lanes: HashMap<FunctionName, Lane>,
    /// Functions with ready events, in turn.
    ring: VecDeque<FunctionName>,
    timers: BinaryHeap<Reverse<Timer>>,
    timer_seq: u64,
    in_flight: u32,
    /// Events found too old outside of `next`'s own pick, to hand out first.
    expired: VecDeque<Settled>,
}

impl Scheduler {
    pub(crate) fn new(config: AsyncConfig) -> Self {
        Self {
            config,
            waiting: HashMap::new(),
            running: HashMap::new(),
            lanes: HashMap::new(),
            ring: VecDeque::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            in_flight: 0,
            expired: VecDeque::new(),
        }
    }

    /// Attempts running now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Events held, running or not.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    /// Takes an event: ready now, or at its `not_before_ms`.
    pub(crate) fn admit(&mut self, event: QueuedEvent, now: Instant, wall_now_ms: i64) {
        let id = event.id;
        if self.waiting.contains_key(&id) || self.running.contains_key(&id) {
            return;
        }
        let age_ms = wall_now_ms.saturating_sub(event.enqueued_ms).max(0);
        let wait_ms = event.not_before_ms.saturating_sub(wall_now_ms);
        let function = event.function.clone();
        self.waiting.insert(
            id,
            Held {
                event,
                admitted: now,
                age_at_admission: Duration::from_millis(age_ms as u64),
                on_timer: false,
                last: None,
            },
        );
        if wait_ms > 0 {
            self.wait_for_timer(id, now + Duration::from_millis(wait_ms as u64));
        } else {
            self.make_ready(function, id);
        }
    }

    /// The next thing to do at `now`, if any: an event to start (within the account's and
    /// the function's concurrency) or one to give up on.
    pub(crate) fn next(&mut self, now: Instant, policy: &impl Policy) -> Option<Action> {
        self.fire_timers(now, policy);
        if let Some(settled) = self.expired.pop_front() {
            return Some(Action::Settle(settled));
        }
        let account_limit = policy.account_limit();
        while self.in_flight < account_limit {
            let function = self.ring.pop_front()?;
            let reserved = policy.reserved(&function);
            let Some(lane) = self.lanes.get_mut(&function) else {
                continue;
            };
            lane.in_ring = false;
            if lane.parked || lane.blocked_until.is_some() || lane.ready.is_empty() {
                self.forget_if_idle(&function);
                continue;
            }
            if reserved.is_some_and(|reserved| lane.running >= reserved) {
                lane.parked = true;
                if !std::mem::replace(&mut lane.recheck_pending, true) {
                    self.push_timer(now + RESERVATION_RECHECK, TimerKind::Recheck(function));
                }
                continue;
            }
            // Scaling: a backlog earns more slots step by step, not all at once.
            if lane.scale == 0 {
                lane.scale = self.config.scale_step.max(1);
            }
            if lane.running >= lane.scale {
                let since = *lane.scaled_at.get_or_insert(now);
                let due = since + self.config.scale_interval;
                if now >= due {
                    lane.scale = lane.scale.saturating_add(self.config.scale_step.max(1));
                    lane.scaled_at = Some(now);
                } else {
                    lane.parked = true;
                    if !std::mem::replace(&mut lane.recheck_pending, true) {
                        self.push_timer(due, TimerKind::Recheck(function));
                    }
                    continue;
                }
            }
            let Some(id) = lane.ready.pop_first() else {
                continue;
            };
            let Some(held) = self.waiting.remove(&id) else {
                self.enring(&function);
                continue;
            };
            if self.too_old(&held, now, policy) {
                self.enring(&function);
                self.forget_if_idle(&function);
                return Some(Action::Settle(Settled {
                    event: held.event,
                    condition: Condition::EventAgeExceeded,
                    last: held.last,
                }));
            }
            if let Some(lane) = self.lanes.get_mut(&function) {
                lane.running += 1;
            }
            self.in_flight += 1;
            self.enring(&function);
            let event = held.event.clone();
            self.running.insert(id, held);
            return Some(Action::Run(event));
        }
        None
    }

    /// When `next` may have something new to do without any other input.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(timer)| timer.at)
    }

    /// Records how an attempt of event `id` ended, and says what to write.
    pub(crate) fn complete(
        &mut self,
        id: i64,
        result: AttemptResult,
        now: Instant,
        wall_now_ms: i64,
        policy: &impl Policy,
    ) -> Completion {
        let Some(mut held) = self.running.remove(&id) else {
            return Completion::Unknown;
        };
        self.in_flight -= 1;
        let function = held.event.function.clone();
        let lane = self.lanes.entry(function.clone()).or_default();
        lane.running = lane.running.saturating_sub(1);
        lane.parked = false;
        let completion = match result {
            AttemptResult::Success(response) => {
                lane.backoff = None;
                held.event.attempts += 1;
                Completion::Settle(Settled {
                    event: held.event,
                    condition: Condition::Success,
                    last: Some(response),
                })
            }
            AttemptResult::Failed(response) => {
                held.event.attempts += 1;
                held.last = Some(response);
                let attempts = held.event.attempts;
                if attempts <= self.settings(&held.event, policy).retries {
                    let wait = self.config.retry_base.saturating_mul(attempts);
                    let not_before_ms =
                        wall_now_ms.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
                    held.event.not_before_ms = not_before_ms;
                    self.waiting.insert(id, held);
                    self.wait_for_timer(id, now + wait);
                    Completion::Retry {
                        id,
                        attempts,
                        not_before_ms,
                    }
                } else {
                    Completion::Settle(Settled {
                        event: held.event,
                        condition: Condition::RetriesExhausted,
                        last: held.last,
                    })
                }
            }
            AttemptResult::Throttled => {
                lane.ready.insert(id);
                let backing_off = lane.blocked_until.is_some_and(|until| until > now);
                if !backing_off {
                    let backoff = match lane.backoff {
                        None => self.config.throttle_backoff_min,
                        Some(previous) => previous.saturating_mul(2),
                    }
                    .min(self.config.throttle_backoff_max);
                    lane.backoff = Some(backoff);
                    lane.blocked_until = Some(now + backoff);
                    self.waiting.insert(id, held);
                    self.push_timer(now + backoff, TimerKind::Unblock(function.clone()));
                } else {
                    self.waiting.insert(id, held);
                }
                Completion::Requeued
            }
            AttemptResult::Gone => Completion::Drop(held.event),
            AttemptResult::ShuttingDown => Completion::Leave,
        };
        self.enring(&function);
        self.forget_if_idle(&function);
        completion
    }

    /// The current throttle back-off of a function, if it is backing off.
    #[cfg(test)]
    fn backoff(&self, function: &FunctionName) -> Option<Duration> {
        self.lanes.get(function).and_then(|lane| lane.backoff)
    }

    fn settings(&self, event: &QueuedEvent, policy: &impl Policy) -> EventSettings {
        let config = policy.event_config(&event.function, &event.qualifier);
        let retries = config
            .as_ref()
            .map_or(RETRY_ATTEMPTS_DEFAULT, EventInvokeConfig::retries);
        let age_secs = config
            .and_then(|c| c.maximum_event_age_secs)
            .unwrap_or(EVENT_AGE_SECS_DEFAULT);
        EventSettings {
            retries,
            max_age: self.config.event_age_unit.saturating_mul(age_secs),
        }
    }

    fn too_old(&self, held: &Held, now: Instant, policy: &impl Policy) -> bool {
        held.age(now) > self.settings(&held.event, policy).max_age
    }

    fn fire_timers(&mut self, now: Instant, policy: &impl Policy) {
        while self
            .timers
            .peek()
            .is_some_and(|Reverse(timer)| timer.at <= now)
        {
            let Some(Reverse(timer)) = self.timers.pop() else {
                break;
            };
            match timer.kind {
                TimerKind::Event(id) => {
                    let Some(held) = self.waiting.get_mut(&id) else {
                        continue;
                    };
                    if held.on_timer {
                        held.on_timer = false;
                        let function = held.event.function.clone();
                        self.make_ready(function, id);
                    }
                }
                TimerKind::Unblock(function) => {
                    if let Some(lane) = self.lanes.get_mut(&function) {
                        if lane.blocked_until.is_some_and(|until| until <= now) {
                            lane.blocked_until = None;
                        }
                    }
                    self.enring(&function);
                    self.forget_if_idle(&function);
                }
                TimerKind::Recheck(function) => {
                    if let Some(lane) = self.lanes.get_mut(&function) {
                        lane.recheck_pending = false;
                        lane.parked = false;
                    }
                    self.expire_waiting(&function, now, policy);
                    self.enring(&function);
                    self.forget_if_idle(&function);
                }
            }
        }
    }

    /// Gives up on a function's ready events that are too old (they cannot run now).
    /// Gives up a held-back function's events that are too old, oldest first. Ages fall
    /// with ids (acceptance order), so it stops at the first event young enough: a recheck
    /// costs a few lookups, not a pass over a backlog of any size. (An event of another
    /// qualifier with a shorter maximum age further back is checked when it comes up to run.)
    fn expire_waiting(&mut self, function: &FunctionName, now: Instant, policy: &impl Policy) {
        loop {
            let Some(id) = self
                .lanes
                .get(function)
                .and_then(|lane| lane.ready.first().copied())
            else {
                return;
            };
            let expired = match self.waiting.get(&id) {
                Some(held) => self.too_old(held, now, policy),
                // Not held any more: a stale entry to drop.
                None => true,
            };
            if !expired {
                return;
            }
            if let Some(lane) = self.lanes.get_mut(function) {
                lane.ready.remove(&id);
            }
            if let Some(held) = self.waiting.remove(&id) {
                self.expired.push_back(Settled {
                    event: held.event,
                    condition: Condition::EventAgeExceeded,
                    last: held.last,
                });
            }
        }
    }

    fn wait_for_timer(&mut self, id: i64, at: Instant) {
        if let Some(held) = self.waiting.get_mut(&id) {
            held.on_timer = true;
        }
        self.push_timer(at, TimerKind::Event(id));
    }

    fn push_timer(&mut self, at: Instant, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            kind,
        }));
    }

    fn make_ready(&mut self, function: FunctionName, id: i64) {
        self.lanes
            .entry(function.clone())
            .or_default()
            .ready
            .insert(id);
        self.enring(&function);
    }

    /// Puts a function at the back of the ring if it has events that may run.
    fn enring(&mut self, function: &FunctionName) {
        if let Some(lane) = self.lanes.get_mut(function) {
            if lane.can_ring() {
                lane.in_ring = true;
                self.ring.push_back(function.clone());
            }
        }
    }

    fn forget_if_idle(&mut self, function: &FunctionName) {
        if self.lanes.get(function).is_some_and(Lane::is_idle) {
            self.lanes.remove(function);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Invocation records.

/// AWS's invocation record for a destination: what was asked, how it ended, and (when an
/// attempt ran) what the function answered. Payloads that are JSON are embedded as JSON,
/// others as strings.
pub(crate) fn invocation_record(region: &str, settled: &Settled, timestamp_ms: i64) -> Bytes {
    let event = &settled.event;
    let response_len = settled.last.as_ref().map_or(0, |r| r.body.len());
    // A record is an asynchronous event itself: it stays within the async payload limit, so
    // a chain of destinations cannot grow records without bound. The response goes first,
    // then the request.
    let omit_response =
        RECORD_OVERHEAD_BYTES + event.payload.len() + response_len > RECORD_MAX_BYTES;
    let omit_request = RECORD_OVERHEAD_BYTES + event.payload.len() > RECORD_MAX_BYTES;
    let mut out = Vec::with_capacity(512 + event.payload.len() + response_len);
    out.extend_from_slice(b"{\"version\":\"1.0\",\"timestamp\":");
    push_json_string(&mut out, &format_timestamp(timestamp_ms));
    out.extend_from_slice(b",\"requestContext\":{\"requestId\":");
    push_json_string(&mut out, &event.request_id);
    out.extend_from_slice(b",\"functionArn\":");
    push_json_string(
        &mut out,
        &format!("{}:{}", event.function.arn(region), event.qualifier),
    );
    out.extend_from_slice(b",\"condition\":");
    push_json_string(&mut out, settled.condition.as_str());
    out.extend_from_slice(b",\"approximateInvokeCount\":");
    out.extend_from_slice(event.attempts.to_string().as_bytes());
    out.extend_from_slice(b"},\"requestPayload\":");
    if omit_request {
        push_json_string(&mut out, &omitted(event.payload.len()));
    } else {
        push_json_value(&mut out, &event.payload);
    }
    if let Some(last) = &settled.last {
        out.extend_from_slice(b",\"responseContext\":{\"statusCode\":200,\"executedVersion\":");
        push_json_string(&mut out, &last.executed_version);
        if last.function_error {
            out.extend_from_slice(b",\"functionError\":\"Unhandled\"");
        }
        out.extend_from_slice(b"},\"responsePayload\":");
        if omit_response {
            push_json_string(&mut out, &omitted(last.body.len()));
        } else {
            push_json_value(&mut out, &last.body);
        }
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Largest invocation record: the asynchronous payload limit.
const RECORD_MAX_BYTES: usize = serval_model::limits::ASYNC_PAYLOAD_MAX_BYTES;
/// Room kept for everything in a record but the two payloads.
const RECORD_OVERHEAD_BYTES: usize = 1024;

/// What stands in for a payload too large for an invocation record.
fn omitted(bytes: usize) -> String {
    format!("(omitted: {bytes} bytes do not fit the {RECORD_MAX_BYTES}-byte invocation record)")
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing a JSON string to a Vec cannot fail");
}

/// `bytes` as they are when they are one JSON document, else as a JSON string.
fn push_json_value(out: &mut Vec<u8>, bytes: &[u8]) {
    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        out.extend_from_slice(bytes);
    } else {
        push_json_string(out, &String::from_utf8_lossy(bytes));
    }
}

/// `2019-11-14T18:16:05.568Z`.
fn format_timestamp(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::Diagnostic;

    const SEC: Duration = Duration::from_secs(1);
    const WALL: i64 = 1_700_000_000_000;

    fn name(s: &str) -> FunctionName {
        FunctionName::parse(s).unwrap()
    }

    fn event(id: i64, function: &str) -> QueuedEvent {
        QueuedEvent {
            id,
            request_id: format!("req-{id}"),
            function: name(function),
            qualifier: LATEST.into(),
            payload: Bytes::from_static(b"{\"n\":1}"),
            enqueued_ms: WALL,
            attempts: 0,
            not_before_ms: 0,
        }
    }

    fn config() -> AsyncConfig {
        AsyncConfig {
            retry_base: 60 * SEC,
            event_age_unit: SEC,
            throttle_backoff_min: SEC,
            throttle_backoff_max: 4 * SEC,
            scale_step: u32::MAX,
            scale_interval: SEC,
        }
    }

    fn response(body: &str, error: bool) -> Response {
        Response {
            executed_version: LATEST.into(),
            function_error: error,
            body: Bytes::from(body.to_owned()),
        }
    }

    fn invoke_config(function: &str, retries: Option<u32>, age: Option<u32>) -> EventInvokeConfig {
        EventInvokeConfig {
            function: name(function),
            qualifier: LATEST.into(),
            maximum_retry_attempts: retries,
            maximum_event_age_secs: age,
            on_success: None,
            on_failure: None,
            last_modified_ms: 0,
        }
    }

    #[derive(Default)]
    struct FakePolicy {
        limit: u32,
        reserved: HashMap<FunctionName, u32>,
        configs: HashMap<FunctionName, EventInvokeConfig>,
    }

    impl FakePolicy {
        fn with_limit(limit: u32) -> Self {
            Self {
                limit,
                ..Self::default()
            }
        }
    }

    impl Policy for FakePolicy {
        fn account_limit(&self) -> u32 {
            self.limit
        }
        fn reserved(&self, function: &FunctionName) -> Option<u32> {
            self.reserved.get(function).copied()
        }
        fn event_config(&self, function: &FunctionName, _: &str) -> Option<EventInvokeConfig> {
            self.configs.get(function).cloned()
        }
    }

    fn expect_run(action: Option<Action>) -> QueuedEvent {
        match action {
            Some(Action::Run(event)) => event,
            other => panic!("expected an attempt, got {other:?}"),
        }
    }

    fn expect_settle(action: Option<Action>) -> Settled {
        match action {
            Some(Action::Settle(settled)) => settled,
            other => panic!("expected a give-up, got {other:?}"),
        }
    }

    #[test]
    fn round_robin_keeps_a_backlog_from_starving_another_function() {
        let mut s = Scheduler::new(config());
        let now = Instant::now();
        for id in 1..=1000 {
            s.admit(event(id, "big"), now, WALL);
        }
        s.admit(event(1001, "small"), now, WALL);
        let policy = FakePolicy::with_limit(1);
        let mut order = Vec::new();
        while let Some(action) = s.next(now, &policy) {
            let e = expect_run(Some(action));
            order.push(e.id);
            assert!(s.next(now, &policy).is_none(), "account limit of 1");
            let c = s.complete(
                e.id,
                AttemptResult::Success(response("1", false)),
                now,
                WALL,
                &policy,
            );
            assert!(matches!(
                c,
                Completion::Settle(Settled {
                    condition: Condition::Success,
                    ..
                })
            ));
        }
        assert_eq!(order.len(), 1001);
        assert_eq!(&order[..3], &[1, 1001, 2], "the small function runs second");
        let big: Vec<i64> = order.iter().copied().filter(|&id| id != 1001).collect();
        assert!(
            big.windows(2).all(|w| w[0] < w[1]),
            "each function's events in order"
        );
        assert_eq!(s.len(), 0);
        assert!(s.lanes.is_empty() && s.ring.is_empty());
    }

    #[test]
    fn functions_take_turns_when_several_run_at_once() {
        let mut s = Scheduler::new(config());
        let now = Instant::now();
        for id in 1..=10 {
            s.admit(event(id, "a"), now, WALL);
        }
        for id in 11..=12 {
            s.admit(event(id, "b"), now, WALL);
        }
        let policy = FakePolicy::with_limit(4);
        let started: Vec<i64> = std::iter::from_fn(|| s.next(now, &policy))
            .map(|a| expect_run(Some(a)).id)
            .collect();
        assert_eq!(started, vec![1, 11, 2, 12]);
        assert_eq!(s.in_flight(), 4);
    }

    #[test]
    fn failed_attempts_wait_base_then_twice_base_then_give_up() {
        let mut s = Scheduler::new(config());
        let policy = FakePolicy::with_limit(10);
        let t0 = Instant::now();
        s.admit(event(1, "f"), t0, WALL);
        let e = expect_run(s.next(t0, &policy));
        let c = s.complete(
            e.id,
            AttemptResult::Failed(response("{\"errorMessage\":\"x\"}", true)),
            t0,
            WALL,
            &policy,
        );
        assert!(
            matches!(c, Completion::Retry { id: 1, attempts: 1, not_before_ms } if not_before_ms == WALL + 60_000),
            "{c:?}"
        );
        assert!(s.next(t0, &policy).is_none());
        assert_eq!(s.next_wakeup(), Some(t0 + 60 * SEC));
        assert!(s.next(t0 + 59 * SEC, &policy).is_none());
        let e = expect_run(s.next(t0 + 60 * SEC, &policy));
        assert_eq!(e.attempts, 1);
        let t1 = t0 + 60 * SEC;
        let c = s.complete(
            e.id,
            AttemptResult::Failed(response("{}", true)),
            t1,
            WALL + 60_000,
            &policy,
        );
        assert!(
            matches!(c, Completion::Retry { attempts: 2, not_before_ms, .. } if not_before_ms == WALL + 180_000),
            "{c:?}"
        );
        assert!(s.next(t1 + 119 * SEC, &policy).is_none());
        let e = expect_run(s.next(t1 + 120 * SEC, &policy));
        let c = s.complete(
            e.id,
            AttemptResult::Failed(response("{\"last\":true}", true)),
            t1 + 120 * SEC,
            WALL,
            &policy,
        );
        let Completion::Settle(settled) = c else {
            panic!("{c:?}")
        };
        assert_eq!(settled.condition, Condition::RetriesExhausted);
        assert_eq!(settled.event.attempts, 3);
        assert_eq!(
            settled.last.unwrap().body,
            Bytes::from_static(b"{\"last\":true}")
        );
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn retries_follow_the_event_invoke_config_read_at_each_decision() {
        let mut s = Scheduler::new(config());
        let mut policy = FakePolicy::with_limit(10);
        policy
            .configs
            .insert(name("f"), invoke_config("f", Some(1), None));
        let t0 = Instant::now();
        s.admit(event(1, "f"), t0, WALL);
        let e = expect_run(s.next(t0, &policy));
        let c = s.complete(
            e.id,
            AttemptResult::Failed(response("{}", true)),
            t0,
            WALL,
            &policy,
        );
        assert!(matches!(c, Completion::Retry { attempts: 1, .. }));
        // The setting changes while the event waits.
        policy
            .configs
            .insert(name("f"), invoke_config("f", Some(0), None));
        let e = expect_run(s.next(t0 + 60 * SEC, &policy));
        let c = s.complete(
            e.id,
            AttemptResult::Failed(response("{}", true)),
            t0,
            WALL,
            &policy,
        );
        assert!(matches!(
            c,
            Completion::Settle(Settled {
                condition: Condition::RetriesExhausted,
                ..
            })
        ));
    }

    #[test]
    fn events_older_than_the_maximum_age_are_given_up_without_running() {
        let mut s = Scheduler::new(config());
        let mut policy = FakePolicy::with_limit(10);
        policy
            .configs
            .insert(name("f"), invoke_config("f", None, Some(60)));
        let now = Instant::now();
        let mut old = event(1, "f");
        old.enqueued_ms = WALL - 61_000;
        let mut fresh = event(2, "f");
        fresh.enqueued_ms = WALL - 59_000;
        s.admit(old, now, WALL);
        s.admit(fresh, now, WALL);
        let settled = expect_settle(s.next(now, &policy));
        assert_eq!(
            (settled.event.id, settled.condition),
            (1, Condition::EventAgeExceeded)
        );
        assert_eq!(settled.event.attempts, 0);
        assert!(settled.last.is_none());
        assert_eq!(expect_run(s.next(now, &policy)).id, 2);
    }

    #[test]
    fn age_is_checked_before_a_retry() {
        let mut s = Scheduler::new(config());
        let mut policy = FakePolicy::with_limit(10);
        policy
            .configs
            .insert(name("f"), invoke_config("f", None, Some(90)));
        let t0 = Instant::now();
        s.admit(event(1, "f"), t0, WALL);
        let e = expect_run(s.next(t0, &policy));
        s.complete(
            e.id,
            AttemptResult::Failed(response("{}", true)),
            t0,
            WALL,
            &policy,
        );
        let e = expect_run(s.next(t0 + 60 * SEC, &policy));
        s.complete(
            e.id,
            AttemptResult::Failed(response("{\"second\":1}", true)),
            t0 + 60 * SEC,
            WALL,
            &policy,
        );
        // The second retry would start at 180 s, past the 90 s maximum age.
        let settled = expect_settle(s.next(t0 + 180 * SEC, &policy));
        assert_eq!(settled.condition, Condition::EventAgeExceeded);
        assert_eq!(settled.event.attempts, 2);
        assert_eq!(
            settled.last.unwrap().body,
            Bytes::from_static(b"{\"second\":1}")
        );
    }

    #[test]
    fn throttles_back_off_doubling_up_to_the_cap_and_reset_on_success() {
        let mut s = Scheduler::new(config());
        let policy = FakePolicy::with_limit(10);
        let f = name("f");
        let mut now = Instant::now();
        s.admit(event(1, "f"), now, WALL);
        s.admit(event(2, "f"), now, WALL);
        for expected in [1, 2, 4, 4] {
            let e = expect_run(s.next(now, &policy));
            assert_eq!(e.id, 1, "a throttled event keeps its place");
            let c = s.complete(e.id, AttemptResult::Throttled, now, WALL, &policy);
            assert!(matches!(c, Completion::Requeued));
            assert_eq!(s.backoff(&f), Some(expected * SEC));
            assert!(s
                .next(now + expected * SEC - Duration::from_millis(1), &policy)
                .is_none());
            now += expected * SEC;
        }
        let e = expect_run(s.next(now, &policy));
        let c = s.complete(
            e.id,
            AttemptResult::Success(response("{}", false)),
            now,
            WALL,
            &policy,
        );
        let Completion::Settle(settled) = c else {
            panic!("{c:?}")
        };
        assert_eq!(settled.event.attempts, 1, "throttles are not attempts");
        assert_eq!(s.backoff(&f), None);
        let e = expect_run(s.next(now, &policy));
        assert_eq!(e.id, 2);
        s.complete(e.id, AttemptResult::Throttled, now, WALL, &policy);
        assert_eq!(
            s.backoff(&f),
            Some(SEC),
            "back-off starts over after a success"
        );
    }

    #[test]
    fn throttles_of_concurrent_attempts_count_once() {
        let mut s = Scheduler::new(config());
        let policy = FakePolicy::with_limit(10);
        let now = Instant::now();
        for id in 1..=3 {
            s.admit(event(id, "f"), now, WALL);
        }
        let ids: Vec<i64> = (0..3)
            .map(|_| expect_run(s.next(now, &policy)).id)
            .collect();
        for id in ids {
            s.complete(id, AttemptResult::Throttled, now, WALL, &policy);
        }
        assert_eq!(s.backoff(&name("f")), Some(SEC));
        let ids: Vec<i64> = std::iter::from_fn(|| s.next(now + SEC, &policy))
            .map(|a| expect_run(Some(a)).id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3], "requeued in their original order");
    }

    #[test]
    fn throttling_one_function_does_not_hold_back_another() {
        let mut s = Scheduler::new(config());
        let policy = FakePolicy::with_limit(10);
        let now = Instant::now();
        s.admit(event(1, "a"), now, WALL);
        let e = expect_run(s.next(now, &policy));
        s.complete(e.id, AttemptResult::Throttled, now, WALL, &policy);
        s.admit(event(2, "b"), now, WALL);
        assert_eq!(expect_run(s.next(now, &policy)).id, 2);
        assert!(s.next(now, &policy).is_none());
    }

    #[test]
    fn a_backlog_earns_concurrency_step_by_step() {
        let mut s = Scheduler::new(AsyncConfig {
            scale_step: 2,
            ..config()
        });
        let policy = FakePolicy::with_limit(100);
        let now = Instant::now();
        for id in 1..=10 {
            s.admit(event(id, "f"), now, WALL);
        }
        let run = |s: &mut Scheduler, at: Instant| {
            std::iter::from_fn(|| s.next(at, &policy))
                .map(|a| expect_run(Some(a)).id)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&mut s, now), vec![1, 2], "the first step");
        assert!(
            run(&mut s, now + SEC / 2).is_empty(),
            "no growth before the interval"
        );
        assert_eq!(run(&mut s, now + SEC), vec![3, 4], "one step more after it");
        assert_eq!(run(&mut s, now + 2 * SEC), vec![5, 6]);
        // A finished event frees its slot at once.
        s.complete(
            1,
            AttemptResult::Success(response("{}", false)),
            now + 2 * SEC,
            WALL,
            &policy,
        );
        assert_eq!(run(&mut s, now + 2 * SEC), vec![7]);
        // Another function starts from the first step, whatever this one earned.
        s.admit(event(11, "g"), now + 2 * SEC, WALL);
        assert_eq!(run(&mut s, now + 2 * SEC), vec![11]);
    }

    #[test]
    fn account_limit_and_reserved_concurrency_cap_events_in_flight() {
        let mut s = Scheduler::new(config());
        let mut policy = FakePolicy::with_limit(3);
        policy.reserved.insert(name("r"), 1);
        let now = Instant::now();
        for id in 1..=3 {
            s.admit(event(id, "r"), now, WALL);
        }
        for id in 4..=9 {
            s.admit(event(id, "u"), now, WALL);
        }
        let started: Vec<i64> = std::iter::from_fn(|| s.next(now, &policy))
            .map(|a| expect_run(Some(a)).id)
            .collect();
        assert_eq!(
            started,
            vec![1, 4, 5],
            "r runs one at a time, all within the account's 3"
        );
        s.complete(
            4,
            AttemptResult::Success(response("{}", false)),
            now,
            WALL,
            &policy,
        );
        assert_eq!(
            expect_run(s.next(now, &policy)).id,
            6,
            "r is still at its reservation"
        );
        s.complete(
            1,
            AttemptResult::Success(response("{}", false)),
            now,
            WALL,
            &policy,
        );
        assert_eq!(
            expect_run(s.next(now, &policy)).id,
            7,
            "u's turn comes first"
        );
        s.complete(
            5,
            AttemptResult::Success(response("{}", false)),
            now,
            WALL,
            &policy,
        );
        assert_eq!(expect_run(s.next(now, &policy)).id, 2, "then r's");
    }

    #[test]
    fn a_reservation_of_zero_holds_events_until_it_changes_or_they_expire() {
        let mut s = Scheduler::new(config());
        let mut policy = FakePolicy::with_limit(10);
        policy.reserved.insert(name("z"), 0);
        policy
            .configs
            .insert(name("z"), invoke_config("z", None, Some(60)));
        let t0 = Instant::now();
        s.admit(event(1, "z"), t0, WALL);
        assert!(s.next(t0, &policy).is_none());
        assert!(s.next_wakeup().is_some(), "a recheck is due");
        let mut late = event(2, "z");
        late.enqueued_ms = WALL + 30_000;
        s.admit(late, t0 + 30 * SEC, WALL + 30_000);
        assert!(s.next(t0 + 30 * SEC, &policy).is_none());
        // Event 1 is past its 60 s while held back; event 2 is not.
        let settled = expect_settle(s.next(t0 + 61 * SEC, &policy));
        assert_eq!(
            (settled.event.id, settled.condition),
            (1, Condition::EventAgeExceeded)
        );
        assert!(s.next(t0 + 61 * SEC, &policy).is_none());
        policy.reserved.remove(&name("z"));
        let e = expect_run(s.next(t0 + 62 * SEC, &policy));
        assert_eq!(e.id, 2);
    }

    #[test]
    fn leftovers_keep_their_attempts_and_wait_for_not_before() {
        let mut s = Scheduler::new(config());
        let policy = FakePolicy::with_limit(10);
        let t0 = Instant::now();
        let mut e = event(7, "f");
        e.attempts = 1;
        e.not_before_ms = WALL + 30_000;
        s.admit(e, t0, WALL);
        s.admit(event(8, "f"), t0, WALL);
        assert_eq!(expect_run(s.next(t0, &policy)).id, 8);
        assert!(s.next(t0 + 29 * SEC, &policy).is_none());
        let e = expect_run(s.next(t0 + 30 * SEC, &policy));
        assert_eq!((e.id, e.attempts), (7, 1));
        let c = s.complete(
            7,
            AttemptResult::Failed(response("{}", true)),
            t0 + 30 * SEC,
            WALL,
            &policy,
        );
        assert!(
            matches!(c, Completion::Retry { attempts: 2, not_before_ms, .. } if not_before_ms == WALL + 120_000),
            "{c:?}"
        );
    }

    #[test]
    fn gone_functions_drop_events_and_shutdown_leaves_them() {
        let mut s = Scheduler::new(config());
        let policy = FakePolicy::with_limit(10);
        let now = Instant::now();
        s.admit(event(1, "f"), now, WALL);
        s.admit(event(2, "g"), now, WALL);
        let a = expect_run(s.next(now, &policy));
        let b = expect_run(s.next(now, &policy));
        assert!(
            matches!(s.complete(a.id, AttemptResult::Gone, now, WALL, &policy), Completion::Drop(e) if e.id == 1)
        );
        assert!(matches!(
            s.complete(b.id, AttemptResult::ShuttingDown, now, WALL, &policy),
            Completion::Leave
        ));
        assert!(matches!(
            s.complete(b.id, AttemptResult::Throttled, now, WALL, &policy),
            Completion::Unknown
        ));
        assert_eq!((s.len(), s.in_flight()), (0, 0));
    }

    #[test]
    fn an_event_admitted_twice_is_held_once() {
        let mut s = Scheduler::new(config());
        let policy = FakePolicy::with_limit(10);
        let now = Instant::now();
        s.admit(event(1, "f"), now, WALL);
        s.admit(event(1, "f"), now, WALL);
        expect_run(s.next(now, &policy));
        s.admit(event(1, "f"), now, WALL);
        assert!(s.next(now, &policy).is_none());
    }

    fn record(settled: &Settled) -> serde_json::Value {
        let bytes = invocation_record("us-east-1", settled, 1_573_755_365_568);
        serde_json::from_slice(&bytes).unwrap()
    }

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn success_record_has_aws_shape() {
        let mut e = event(1, "f");
        e.attempts = 1;
        let settled = Settled {
            event: e,
            condition: Condition::Success,
            last: Some(Response {
                executed_version: "3".into(),
                function_error: false,
                body: Bytes::from_static(b"{\"ok\":true}"),
            }),
        };
        let v = record(&settled);
        assert_eq!(
            v,
            serde_json::json!({
                "version": "1.0",
                "timestamp": "2019-11-14T18:16:05.568Z",
                "requestContext": {
                    "requestId": "req-1",
                    "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
                    "condition": "Success",
                    "approximateInvokeCount": 1
                },
                "requestPayload": {"n": 1},
                "responseContext": {"statusCode": 200, "executedVersion": "3"},
                "responsePayload": {"ok": true}
            })
        );
        let raw = String::from_utf8(invocation_record("us-east-1", &settled, 0).to_vec()).unwrap();
        assert!(raw.starts_with("{\"version\":\"1.0\",\"timestamp\":\"1970-01-01T00:00:00.000Z\",\"requestContext\":{\"requestId\""), "{raw}");
    }

    #[test]
    fn records_stay_within_the_async_payload_limit() {
        let mut e = event(1, "f");
        e.attempts = 1;
        e.payload = Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(1000)));
        let big = format!("\"{}\"", "y".repeat(RECORD_MAX_BYTES));
        let settled = Settled {
            event: e,
            condition: Condition::Success,
            last: Some(response(&big, false)),
        };
        let raw = invocation_record("us-east-1", &settled, 0);
        assert!(raw.len() <= RECORD_MAX_BYTES, "{}", raw.len());
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["requestPayload"]["pad"].as_str().unwrap().len(), 1000);
        assert!(v["responsePayload"]
            .as_str()
            .unwrap()
            .starts_with("(omitted: "));
    }

    #[test]
    fn retries_exhausted_record_carries_the_error() {
        let mut e = event(1, "f");
        e.attempts = 3;
        e.qualifier = "live".into();
        e.payload = Bytes::from_static(b"not json");
        let settled = Settled {
            event: e,
            condition: Condition::RetriesExhausted,
            last: Some(response(
                "{\"errorMessage\":\"boom\",\"errorType\":\"Error\"}",
                true,
            )),
        };
        let v = record(&settled);
        assert_eq!(v["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(v["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(
            v["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:f:live"
        );
        assert_eq!(v["requestPayload"], "not json");
        assert_eq!(
            v["responseContext"],
            serde_json::json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
        );
        assert_eq!(v["responsePayload"]["errorMessage"], "boom");
    }

    #[test]
    fn age_exceeded_record_without_an_attempt_has_no_response() {
        let settled = Settled {
            event: event(1, "f"),
            condition: Condition::EventAgeExceeded,
            last: None,
        };
        let v = record(&settled);
        let mut ks = keys(&v);
        ks.sort();
        assert_eq!(
            ks,
            ["requestContext", "requestPayload", "timestamp", "version"]
        );
        assert_eq!(v["requestContext"]["condition"], "EventAgeExceeded");
        assert_eq!(v["requestContext"]["approximateInvokeCount"], 0);
    }

    #[test]
    fn age_exceeded_record_after_attempts_has_the_last_response() {
        let mut e = event(1, "f");
        e.attempts = 2;
        let settled = Settled {
            event: e,
            condition: Condition::EventAgeExceeded,
            last: Some(response("plain text error", true)),
        };
        let v = record(&settled);
        assert_eq!(v["responseContext"]["functionError"], "Unhandled");
        assert_eq!(v["responsePayload"], "plain text error");
    }

    // --- The dispatcher task against a fake engine and a real queue. ---

    type Behaviour = dyn Fn(&InvokeRequest) -> Result<InvokeOutcome, InvokeError> + Send + Sync;

    #[derive(Clone)]
    struct FakeBackend {
        limit: u32,
        configs: Arc<Mutex<HashMap<FunctionName, EventInvokeConfig>>>,
        targets: Arc<HashSet<FunctionName>>,
        delay: Duration,
        behaviour: Arc<Behaviour>,
        calls: mpsc::UnboundedSender<InvokeRequest>,
    }

    impl Policy for FakeBackend {
        fn account_limit(&self) -> u32 {
            self.limit
        }
        fn reserved(&self, _: &FunctionName) -> Option<u32> {
            None
        }
        fn event_config(&self, function: &FunctionName, _: &str) -> Option<EventInvokeConfig> {
            self.configs.lock().unwrap().get(function).cloned()
        }
    }

    impl Backend for FakeBackend {
        fn region(&self) -> &str {
            "us-east-1"
        }
        fn has_target(&self, function: &FunctionName, _: Option<&Qualifier>) -> bool {
            self.targets.contains(function)
        }
        fn invoke(
            &self,
            req: InvokeRequest,
        ) -> impl Future<Output = Result<InvokeOutcome, InvokeError>> + Send {
            let this = self.clone();
            async move {
                let _ = this.calls.send(req.clone());
                tokio::time::sleep(this.delay).await;
                (this.behaviour)(&req)
            }
        }
    }

    fn ok(req: &InvokeRequest, body: &'static str) -> Result<InvokeOutcome, InvokeError> {
        Ok(InvokeOutcome {
            request_id: req.request_id.clone().unwrap(),
            executed_version: LATEST.into(),
            result: InvokeResult::Success(Bytes::from_static(body.as_bytes())),
            log_tail: None,
        })
    }

    fn function_error(req: &InvokeRequest) -> Result<InvokeOutcome, InvokeError> {
        Ok(InvokeOutcome {
            request_id: req.request_id.clone().unwrap(),
            executed_version: LATEST.into(),
            result: InvokeResult::FunctionError(Diagnostic {
                error_type: "Error".into(),
                body: Bytes::from_static(b"{\"errorMessage\":\"boom\"}"),
            }),
            log_tail: None,
        })
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        handle: DispatcherHandle,
        queue: EventQueue,
        calls: mpsc::UnboundedReceiver<InvokeRequest>,
    }

    fn start(
        limit: u32,
        delay: Duration,
        configs: Vec<EventInvokeConfig>,
        behaviour: impl Fn(&InvokeRequest) -> Result<InvokeOutcome, InvokeError> + Send + Sync + 'static,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (queue, leftovers) =
            EventQueue::open(dir.path(), serval_store::QueueLimits::default()).unwrap();
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let backend = FakeBackend {
            limit,
            configs: Arc::new(Mutex::new(
                configs
                    .into_iter()
                    .map(|c| (c.function.clone(), c))
                    .collect(),
            )),
            targets: Arc::new(["f", "dest"].into_iter().map(name).collect()),
            delay,
            behaviour: Arc::new(behaviour),
            calls: calls_tx,
        };
        let config = AsyncConfig {
            retry_base: Duration::from_millis(20),
            event_age_unit: SEC,
            throttle_backoff_min: Duration::from_millis(5),
            throttle_backoff_max: Duration::from_millis(20),
            ..AsyncConfig::default()
        };
        let handle = spawn_dispatcher(backend, queue.clone(), leftovers, config);
        Fixture {
            _dir: dir,
            handle,
            queue,
            calls,
        }
    }

    async fn next_call(calls: &mut mpsc::UnboundedReceiver<InvokeRequest>) -> InvokeRequest {
        tokio::time::timeout(10 * SEC, calls.recv())
            .await
            .expect("an invocation within 10 s")
            .unwrap()
    }

    async fn wait_until_empty(queue: &EventQueue) {
        for _ in 0..1000 {
            queue.flush().await.unwrap();
            if queue.held() == (0, 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("queue still holds {:?}", queue.held());
    }

    #[tokio::test]
    async fn an_enqueued_event_runs_under_its_request_id_and_is_finished() {
        let mut fx = start(10, Duration::ZERO, vec![], |req| ok(req, "{}"));
        let id = fx
            .handle
            .enqueue(name("f"), LATEST.into(), Bytes::from_static(b"{\"k\":1}"))
            .await
            .unwrap();
        let call = next_call(&mut fx.calls).await;
        assert_eq!(call.request_id.as_ref(), Some(&id));
        assert_eq!(call.qualifier, Some(Qualifier::Latest));
        assert_eq!(call.payload, Bytes::from_static(b"{\"k\":1}"));
        wait_until_empty(&fx.queue).await;
        fx.handle.shutdown().await;
    }

    #[tokio::test]
    async fn events_of_a_deleted_function_are_dropped_without_an_invocation() {
        let mut fx = start(10, Duration::ZERO, vec![], |req| ok(req, "{}"));
        for _ in 0..3 {
            fx.handle
                .enqueue(name("deleted"), LATEST.into(), Bytes::from_static(b"{}"))
                .await
                .unwrap();
        }
        wait_until_empty(&fx.queue).await;
        fx.handle
            .enqueue(name("f"), LATEST.into(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let call = next_call(&mut fx.calls).await;
        assert_eq!(
            call.function.as_str(),
            "f",
            "no invocation of the deleted function"
        );
        fx.handle.shutdown().await;
    }

    #[tokio::test]
    async fn an_attempt_that_panics_is_tried_again() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = calls.clone();
        let mut fx = start(10, Duration::ZERO, vec![], move |req| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("a bug in the engine");
            }
            ok(req, "{}")
        });
        let id = fx
            .handle
            .enqueue(name("f"), LATEST.into(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        for _ in 0..2 {
            let call = next_call(&mut fx.calls).await;
            assert_eq!(call.request_id.as_ref(), Some(&id));
        }
        wait_until_empty(&fx.queue).await;
        fx.handle.shutdown().await;
    }

    #[tokio::test]
    async fn failures_retry_then_reach_the_failure_destination() {
        let mut cfg = invoke_config("f", Some(1), None);
        cfg.on_failure = Some("arn:aws:lambda:us-east-1:000000000000:function:dest".into());
        let mut fx = start(10, Duration::ZERO, vec![cfg], |req| {
            if req.function.as_str() == "f" {
                function_error(req)
            } else {
                ok(req, "{}")
            }
        });
        let id = fx
            .handle
            .enqueue(name("f"), LATEST.into(), Bytes::from_static(b"[1,2]"))
            .await
            .unwrap();
        for _ in 0..2 {
            let call = next_call(&mut fx.calls).await;
            assert_eq!(
                (call.function.as_str(), call.request_id.as_ref()),
                ("f", Some(&id))
            );
        }
        let call = next_call(&mut fx.calls).await;
        assert_eq!(call.function.as_str(), "dest");
        assert_eq!(call.qualifier, Some(Qualifier::Latest));
        assert_ne!(call.request_id.as_ref(), Some(&id));
        let v: serde_json::Value = serde_json::from_slice(&call.payload).unwrap();
        assert_eq!(v["requestContext"]["requestId"], id.as_str());
        assert_eq!(v["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(v["requestContext"]["approximateInvokeCount"], 2);
        assert_eq!(v["requestPayload"], serde_json::json!([1, 2]));
        assert_eq!(v["responsePayload"]["errorMessage"], "boom");
        wait_until_empty(&fx.queue).await;
        fx.handle.shutdown().await;
    }

    #[tokio::test]
    async fn success_reaches_the_success_destination() {
        let mut cfg = invoke_config("f", None, None);
        cfg.on_success = Some("dest".into());
        let mut fx = start(10, Duration::ZERO, vec![cfg], |req| ok(req, "\"done\""));
        fx.handle
            .enqueue(name("f"), LATEST.into(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(next_call(&mut fx.calls).await.function.as_str(), "f");
        let call = next_call(&mut fx.calls).await;
        assert_eq!(call.function.as_str(), "dest");
        let v: serde_json::Value = serde_json::from_slice(&call.payload).unwrap();
        assert_eq!(v["requestContext"]["condition"], "Success");
        assert_eq!(v["responsePayload"], "done");
        wait_until_empty(&fx.queue).await;
        fx.handle.shutdown().await;
    }

    #[tokio::test]
    async fn throttled_events_run_after_backing_off() {
        let throttles = Arc::new(Mutex::new(2));
        let t = throttles.clone();
        let mut fx = start(10, Duration::ZERO, vec![], move |req| {
            let mut left = t.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(InvokeError::TooManyRequests {
                    function: req.function.clone(),
                    reason: "ConcurrentInvocationLimitExceeded",
                });
            }
            ok(req, "{}")
        });
        fx.handle
            .enqueue(name("f"), LATEST.into(), Bytes::new())
            .await
            .unwrap();
        for _ in 0..3 {
            next_call(&mut fx.calls).await;
        }
        wait_until_empty(&fx.queue).await;
        fx.handle.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_waits_for_running_attempts_and_leaves_queued_events() {
        let mut fx = start(1, Duration::from_millis(100), vec![], |req| ok(req, "{}"));
        for _ in 0..3 {
            fx.handle
                .enqueue(name("f"), LATEST.into(), Bytes::from_static(b"{}"))
                .await
                .unwrap();
        }
        next_call(&mut fx.calls).await;
        fx.handle.shutdown().await;
        // The running one finished and was recorded; two wait on disk.
        assert_eq!(fx.queue.held().0, 2);
        assert!(
            fx.calls.try_recv().is_err(),
            "nothing starts after shutdown"
        );
        let err = fx
            .handle
            .enqueue(name("f"), LATEST.into(), Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(err, EnqueueError::Unavailable), "{err:?}");
    }

    #[tokio::test]
    async fn a_scheduled_fire_runs_its_events_once_per_due_time() {
        let mut fx = start(10, Duration::ZERO, vec![], |req| ok(req, "{}"));
        let events = vec![
            (
                name("f"),
                LATEST.to_owned(),
                Bytes::from_static(b"{\"n\":1}"),
            ),
            (
                name("dest"),
                "3".to_owned(),
                Bytes::from_static(b"{\"n\":2}"),
            ),
        ];
        let ids = fx
            .handle
            .enqueue_scheduled(events.clone(), "nightly".into(), 60_000)
            .await
            .unwrap()
            .expect("the first fire is stored");
        assert_eq!(ids.len(), 2);
        let mut calls = [
            next_call(&mut fx.calls).await,
            next_call(&mut fx.calls).await,
        ];
        calls.sort_by_key(|c| c.function.clone());
        assert_eq!(calls[0].function.as_str(), "dest");
        assert_eq!(calls[0].qualifier, Some(Qualifier::Version(3)));
        assert_eq!(calls[0].request_id.as_ref(), Some(&ids[1]));
        assert_eq!(calls[1].payload, Bytes::from_static(b"{\"n\":1}"));
        assert_eq!(fx.queue.schedule_mark("nightly"), Some(60_000));
        // The same due time again: nothing stored, nothing run.
        let again = fx
            .handle
            .enqueue_scheduled(events, "nightly".into(), 60_000)
            .await
            .unwrap();
        assert!(again.is_none());
        wait_until_empty(&fx.queue).await;
        assert!(fx.calls.try_recv().is_err(), "a due time ran twice");
        // A fire without events still advances the mark.
        let none = fx
            .handle
            .enqueue_scheduled(vec![], "nightly".into(), 120_000)
            .await
            .unwrap();
        assert_eq!(none.map(|ids| ids.len()), Some(0));
        assert_eq!(fx.queue.schedule_mark("nightly"), Some(120_000));
        fx.handle.shutdown().await;
        let err = fx
            .handle
            .enqueue_scheduled(vec![], "nightly".into(), 180_000)
            .await
            .unwrap_err();
        assert!(matches!(err, EnqueueError::Unavailable), "{err:?}");
        assert_eq!(fx.queue.schedule_mark("nightly"), Some(120_000));
    }

    #[tokio::test]
    async fn leftovers_run_at_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (queue, _) =
                EventQueue::open(dir.path(), serval_store::QueueLimits::default()).unwrap();
            queue
                .append(NewEvent {
                    request_id: "left-1".into(),
                    function: name("f"),
                    qualifier: "7".into(),
                    payload: Bytes::from_static(b"{}"),
                    enqueued_ms: wall_now_ms(),
                })
                .await
                .unwrap();
        }
        let (queue, leftovers) =
            EventQueue::open(dir.path(), serval_store::QueueLimits::default()).unwrap();
        assert_eq!(leftovers.len(), 1);
        let (calls_tx, mut calls) = mpsc::unbounded_channel();
        let backend = FakeBackend {
            limit: 10,
            configs: Arc::default(),
            targets: Arc::new([name("f")].into_iter().collect()),
            delay: Duration::ZERO,
            behaviour: Arc::new(|req| ok(req, "{}")),
            calls: calls_tx,
        };
        let handle = spawn_dispatcher(backend, queue.clone(), leftovers, config());
        let call = next_call(&mut calls).await;
        assert_eq!(
            call.request_id,
            Some(RequestId::from_stored("left-1".into()))
        );
        assert_eq!(call.qualifier, Some(Qualifier::Version(7)));
        wait_until_empty(&queue).await;
        handle.shutdown().await;
    }

    /// Stamps when each attempt starts and succeeds at once.
    #[derive(Clone, Default)]
    struct StampBackend {
        started: Arc<Mutex<HashMap<RequestId, std::time::Instant>>>,
    }

    impl Policy for StampBackend {
        fn account_limit(&self) -> u32 {
            1000
        }
        fn reserved(&self, _: &FunctionName) -> Option<u32> {
            None
        }
        fn event_config(&self, _: &FunctionName, _: &str) -> Option<EventInvokeConfig> {
            None
        }
    }

    impl Backend for StampBackend {
        fn region(&self) -> &str {
            "us-east-1"
        }
        fn has_target(&self, _: &FunctionName, _: Option<&Qualifier>) -> bool {
            true
        }
        fn invoke(
            &self,
            req: InvokeRequest,
        ) -> impl Future<Output = Result<InvokeOutcome, InvokeError>> + Send {
            let id = req.request_id.clone().unwrap();
            self.started
                .lock()
                .unwrap()
                .insert(id, std::time::Instant::now());
            std::future::ready(ok(&req, "{}"))
        }
    }

    /// Durable enqueues per second through the dispatcher with 64 concurrent callers, the
    /// acknowledgement latency, and how long after `enqueue` returns the attempt starts.
    /// Prints; asserts nothing about speed.
    #[test]
    #[ignore = "benchmark: cargo test -p serval-engine --release --lib bench_enqueue -- --ignored --nocapture"]
    fn bench_enqueue_with_64_callers() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
        runtime.block_on(async move {
            let (queue, leftovers) =
                EventQueue::open(dir.path(), serval_store::QueueLimits::default()).unwrap();
            let backend = StampBackend::default();
            let handle = Arc::new(spawn_dispatcher(
                backend.clone(),
                queue.clone(),
                leftovers,
                AsyncConfig::default(),
            ));
            let run_for = Duration::from_secs(5);
            let started = std::time::Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let handle = handle.clone();
                tasks.spawn(async move {
                    let mut acks = Vec::new();
                    while started.elapsed() < run_for {
                        let t = std::time::Instant::now();
                        let id = handle
                            .enqueue(name("f"), LATEST.into(), Bytes::from_static(b"{\"key\":\"value\"}"))
                            .await
                            .unwrap();
                        let done = std::time::Instant::now();
                        acks.push((id, done - t, done));
                    }
                    acks
                });
            }
            let mut acks = Vec::new();
            while let Some(a) = tasks.join_next().await {
                acks.extend(a.unwrap());
            }
            let elapsed = started.elapsed();
            handle.shutdown().await;
            let stamps = backend.started.lock().unwrap();
            let mut ack: Vec<Duration> = acks.iter().map(|a| a.1).collect();
            let mut to_start: Vec<Duration> = acks
                .iter()
                .filter_map(|(id, _, done)| stamps.get(id).map(|s| s.saturating_duration_since(*done)))
                .collect();
            ack.sort();
            to_start.sort();
            let pct = |v: &[Duration], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
            println!(
                "enqueues: {} in {:.2?} = {:.0}/s; ack p50 {:.2?} p99 {:.2?}; started {} of them, enqueue-return to start p50 {:.2?} p99 {:.2?}",
                ack.len(),
                elapsed,
                ack.len() as f64 / elapsed.as_secs_f64(),
                pct(&ack, 0.5),
                pct(&ack, 0.99),
                to_start.len(),
                pct(&to_start, 0.5),
                pct(&to_start, 0.99),
            );
        });
    }
}
