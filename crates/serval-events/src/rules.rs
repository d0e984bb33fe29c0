//! Scheduled EventBridge rules: a task that fires each enabled rule's targets at the rule's
//! due times, through the engine's durable asynchronous queue.
//!
//! Shape (STYLE habit 1): one task owns every rule's schedule; callers hold a [`Schedules`]
//! handle and tell it about each stored change ([`Schedules::put_rule`] with the rule's
//! whole target list, [`Schedules::remove_rule`]). The API stores first and tells second,
//! under its mutation lock, so the task sees changes in the store's order. The task reaches
//! the engine through the [`Backend`] seam and reads time from a [`Clock`], so tests drive
//! it on a clock they move by hand.
//!
//! Semantics:
//! - `rate(...)` counts from the rule's anchor (its creation, its last enabling or the last
//!   change of its expression); `cron(...)` fires at its UTC times;
//! - a fire sends AWS's Scheduled Event (`"detail-type": "Scheduled Event"`, `"source":
//!   "aws.events"`, `time` the due time) to every target, or the target's constant `Input`,
//!   as one asynchronous invocation each, stored with the rule's schedule mark in one queue
//!   transaction ([`serval_engine::Engine::enqueue_scheduled`]): a rule never fires twice for
//!   one due time, even across a crash;
//! - due times missed while the server was down are not replayed: the next due time is the
//!   first strictly after both now and the rule's mark; the same holds when a fire is late
//!   (only the due time being fired is kept, later ones that passed meanwhile are skipped);
//! - a fire the queue refuses (full, unavailable) is tried again for the same due time
//!   after a back-off (1 s doubling to 30 s, real time) until it is stored or the rule
//!   changes; the mark moves only when it is stored;
//! - a rule without targets does nothing at its due times (no mark is written); a rule
//!   changed while waiting keeps its due time if its schedule still gives it.
//!
//! The clock runs `clock_speed` times faster than real time (`--schedule-clock-speed`, for
//! tests): now = start + real elapsed × speed. Due times, event times and rate anchors are
//! on that clock.
//!
//! Not for: validating or storing rules (the API and the store), running the invocations (the
//! engine's dispatcher), pattern rules or PutEvents (Serval has no event bus yet).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serval_engine::{AsyncInvokeRequest, Engine, EnqueueError};
use serval_model::{Rule, RuleName, RuleTarget};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::schedule::ScheduleExpression;

/// First wait before a refused fire is tried again; doubles up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two tries of a refused fire.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Settings of the rule scheduler.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// The region in rule ARNs and events.
    pub region: String,
    /// How many times faster than real time the scheduler's clock runs (1 in production;
    /// tests speed it up so `rate(1 minute)` fires every second or so). 0 is taken as 1.
    pub clock_speed: u32,
}

/// Handle to the scheduler task; cheap to clone. The task ends when every handle is gone.
#[derive(Clone)]
pub struct Schedules {
    commands: mpsc::UnboundedSender<Command>,
    clock: Clock,
}

impl std::fmt::Debug for Schedules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedules").finish_non_exhaustive()
    }
}

impl Schedules {
    /// Starts the scheduler with no rules, on a clock running `config.clock_speed` times
    /// real time from now. Call from within a Tokio runtime.
    pub fn start(engine: Engine, config: ScheduleConfig) -> Schedules {
        let clock = Clock::scaled(config.clock_speed);
        spawn(EngineBackend(engine), clock, config.region, RETRY_BACKOFF)
    }

    /// Now on the scheduler's clock (rate anchors are taken from it).
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Schedules a stored rule with its whole target list, replacing what was known of it.
    /// Does not block: safe to call under the API's mutation lock.
    pub fn put_rule(&self, rule: Rule, targets: Vec<RuleTarget>) {
        self.send(Command::Put { rule, targets });
    }

    /// Forgets a deleted rule; a fire already being stored completes.
    pub fn remove_rule(&self, name: &RuleName) {
        self.send(Command::Remove { name: name.clone() });
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::warn!("the rule scheduler has stopped; rule change ignored");
        }
    }

    /// Waits until every fire due by now on the clock was started and has finished.
    #[cfg(test)]
    async fn settle(&self) {
        let (reply, done) = oneshot::channel();
        self.send(Command::Settle(reply));
        let _ = done.await;
    }
}

// ---------------------------------------------------------------------------------------------
// The engine seam and the clock.

/// What the scheduler needs from the engine; tests use a fake.
pub(crate) trait Backend: Clone + Send + Sync + 'static {
    /// The due time (ms since the epoch) rule `rule` last fired for, as committed.
    fn mark(&self, rule: &str) -> Option<i64>;
    /// Stores one fire's invocations with the rule's mark; the number stored, or `None`
    /// when the rule already fired for `due_ms`.
    fn fire(
        &self,
        requests: Vec<AsyncInvokeRequest>,
        rule: String,
        due_ms: i64,
    ) -> impl Future<Output = Result<Option<usize>, EnqueueError>> + Send;
}

#[derive(Clone)]
struct EngineBackend(Engine);

impl Backend for EngineBackend {
    fn mark(&self, rule: &str) -> Option<i64> {
        self.0.schedule_mark(rule)
    }

    fn fire(
        &self,
        requests: Vec<AsyncInvokeRequest>,
        rule: String,
        due_ms: i64,
    ) -> impl Future<Output = Result<Option<usize>, EnqueueError>> + Send {
        let engine = self.0.clone();
        async move {
            let stored = engine.enqueue_scheduled(requests, &rule, due_ms).await?;
            Ok(stored.map(|ids| ids.len()))
        }
    }
}

/// Longest one wall-clock sleep lasts before the clock is read again.
const WALL_SLICE: Duration = Duration::from_secs(30);

/// The scheduler's time.
#[derive(Clone)]
pub(crate) enum Clock {
    /// The wall clock (speed 1): follows the system's time, also across a suspend or a clock
    /// step, which a monotonic clock would not.
    Wall,
    /// `wall` at `start`, then `speed` times real time.
    Scaled {
        wall: OffsetDateTime,
        start: Instant,
        speed: u32,
    },
    /// Moved by hand (tests).
    #[cfg(test)]
    Manual(tokio::sync::watch::Receiver<OffsetDateTime>),
}

impl Clock {
    fn scaled(speed: u32) -> Clock {
        if speed == 0 {
            tracing::warn!("schedule clock speed 0 taken as 1");
        }
        if speed <= 1 {
            return Clock::Wall;
        }
        Clock::Scaled {
            wall: OffsetDateTime::now_utc(),
            start: Instant::now(),
            speed: speed.max(1),
        }
    }

    fn now(&self) -> OffsetDateTime {
        match self {
            Clock::Wall => OffsetDateTime::now_utc(),
            Clock::Scaled { wall, start, speed } => {
                let elapsed = start.elapsed().saturating_mul(*speed);
                *wall + elapsed
            }
            #[cfg(test)]
            Clock::Manual(rx) => *rx.borrow(),
        }
    }

    /// Returns once the clock reads `at` or later.
    async fn sleep_until(&self, at: OffsetDateTime) {
        match self {
            Clock::Wall => loop {
                // In slices, each re-reading the wall clock: a sleep measures monotonic time,
                // which stands still while the machine is suspended.
                let Ok(left) = Duration::try_from(at - OffsetDateTime::now_utc()) else {
                    return;
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(WALL_SLICE)).await;
            },
            Clock::Scaled { wall, start, speed } => {
                let ahead = at - *wall;
                let Ok(ahead) = Duration::try_from(ahead) else {
                    return; // `at` is before the start
                };
                // Rounded up, so the clock has reached `at` on waking.
                let nanos = ahead.as_nanos().div_ceil(u128::from(*speed));
                let real = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                match start.checked_add(real) {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            }
            #[cfg(test)]
            Clock::Manual(rx) => {
                let mut rx = rx.clone();
                while *rx.borrow_and_update() < at {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// Starts the scheduler task and returns its handle.
pub(crate) fn spawn<B: Backend>(
    backend: B,
    clock: Clock,
    region: String,
    retry_backoff: Duration,
) -> Schedules {
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let scheduler = Scheduler {
        backend,
        clock: clock.clone(),
        region,
        retry_backoff,
        entries: HashMap::new(),
        next_generation: 0,
        commands,
        reports_tx,
        reports,
        settling: Vec::new(),
    };
    tokio::spawn(scheduler.run());
    Schedules {
        commands: commands_tx,
        clock,
    }
}

// ---------------------------------------------------------------------------------------------
// The scheduler task.

enum Command {
    Put {
        rule: Rule,
        targets: Vec<RuleTarget>,
    },
    Remove {
        name: RuleName,
    },
    /// Answer once the fires due by now have finished (tests).
    #[cfg(test)]
    Settle(oneshot::Sender<()>),
}

/// The end of one fire, sent by its task.
struct Report {
    name: RuleName,
    generation: u64,
    due: OffsetDateTime,
    result: Result<Option<usize>, EnqueueError>,
}

/// Where one rule's schedule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Disabled, or its schedule gives no more due times.
    Idle,
    /// Next due at this time.
    Waiting(OffsetDateTime),
    /// The fire due at `due` was refused; try it again at `retry_at` (real time).
    Retrying {
        due: OffsetDateTime,
        retry_at: Instant,
    },
}

struct Entry {
    rule: Rule,
    expr: ScheduleExpression,
    targets: Vec<RuleTarget>,
    /// Bumped by every change of the rule.
    generation: u64,
    phase: Phase,
    /// The due time of the fire being stored, if one is.
    in_flight: Option<OffsetDateTime>,
    /// The next wait after a refused fire.
    backoff: Duration,
}

struct Scheduler<B: Backend> {
    backend: B,
    clock: Clock,
    region: String,
    retry_backoff: Duration,
    entries: HashMap<RuleName, Entry>,
    /// Generations are unique across entries: a late report of a deleted rule's fire cannot
    /// match a new rule of the same name.
    next_generation: u64,
    commands: mpsc::UnboundedReceiver<Command>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    settling: Vec<oneshot::Sender<()>>,
}

impl<B: Backend> Scheduler<B> {
    async fn run(mut self) {
        loop {
            self.fire_due();
            if !self.settling.is_empty() && self.entries.values().all(|e| e.in_flight.is_none()) {
                for waiter in self.settling.drain(..) {
                    let _ = waiter.send(());
                }
            }
            let mut next_due: Option<OffsetDateTime> = None;
            let mut next_retry: Option<Instant> = None;
            for entry in self.entries.values().filter(|e| e.in_flight.is_none()) {
                match entry.phase {
                    Phase::Waiting(due) => {
                        next_due = Some(next_due.map_or(due, |d| d.min(due)));
                    }
                    Phase::Retrying { retry_at, .. } => {
                        next_retry = Some(next_retry.map_or(retry_at, |r| r.min(retry_at)));
                    }
                    Phase::Idle => {}
                }
            }
            let clock = self.clock.clone();
            tokio::select! {
                biased;
                Some(report) = self.reports.recv() => self.on_report(report),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                () = wait_due(&clock, next_due) => {}
                () = wait_retry(next_retry) => {}
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Put { rule, targets } => self.put(rule, targets),
            Command::Remove { name } => {
                if self.entries.remove(&name).is_some() {
                    tracing::debug!(rule = %name, "rule unscheduled");
                }
            }
            #[cfg(test)]
            Command::Settle(waiter) => self.settling.push(waiter),
        }
    }

    fn put(&mut self, rule: Rule, targets: Vec<RuleTarget>) {
        let name = rule.name.clone();
        let expr = match ScheduleExpression::parse(&rule.schedule_expression) {
            Ok(expr) => expr,
            Err(error) => {
                tracing::warn!(rule = %name, %error, "stored rule has an invalid schedule; it never fires");
                self.entries.remove(&name);
                return;
            }
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        let in_flight = self.entries.get(&name).and_then(|e| e.in_flight);
        let mut entry = Entry {
            rule,
            expr,
            targets,
            generation,
            phase: Phase::Idle,
            in_flight,
            backoff: self.retry_backoff,
        };
        entry.phase = self.next_phase(&entry, in_flight);
        tracing::debug!(rule = %name, phase = ?entry.phase, "rule scheduled");
        self.entries.insert(name, entry);
    }

    /// The rule's next due time: the first strictly after now, its committed mark and
    /// `after` (a due time just fired or being fired).
    fn next_phase(&self, entry: &Entry, after: Option<OffsetDateTime>) -> Phase {
        if !entry.rule.state.is_enabled() {
            return Phase::Idle;
        }
        let mut from = self.clock.now();
        let mark = self
            .backend
            .mark(entry.rule.name.as_str())
            .and_then(from_ms);
        for t in [mark, after].into_iter().flatten() {
            from = from.max(t);
        }
        let anchor = from_ms(entry.rule.anchor_ms).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        match entry.expr.next_after_anchored(anchor, from) {
            Some(due) => Phase::Waiting(due),
            None => Phase::Idle,
        }
    }

    /// Starts every fire that is due now (or whose retry is due).
    fn fire_due(&mut self) {
        let now = self.clock.now();
        let real_now = Instant::now();
        let due: Vec<(RuleName, OffsetDateTime)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.in_flight.is_none())
            .filter_map(|(name, e)| match e.phase {
                Phase::Waiting(due) if due <= now => Some((name.clone(), due)),
                Phase::Retrying { due, retry_at } if retry_at <= real_now => {
                    Some((name.clone(), due))
                }
                _ => None,
            })
            .collect();
        for (name, due) in due {
            self.start_fire(&name, due);
        }
    }

    fn start_fire(&mut self, name: &RuleName, due: OffsetDateTime) {
        let Some(entry) = self.entries.get(name) else {
            return;
        };
        if entry.targets.is_empty() {
            tracing::debug!(rule = %name, due = %due, "rule without targets is due; nothing to fire");
            let phase = self.next_phase(entry, Some(due));
            if let Some(entry) = self.entries.get_mut(name) {
                entry.phase = phase;
            }
            return;
        }
        let requests = self.requests(entry, due);
        let generation = entry.generation;
        let backend = self.backend.clone();
        let mut report = ReportOnDrop {
            reports: self.reports_tx.clone(),
            report: Some(Report {
                name: name.clone(),
                generation,
                due,
                result: Err(EnqueueError::Unavailable),
            }),
        };
        let rule = name.to_string();
        let due_ms = to_ms(due);
        if let Some(entry) = self.entries.get_mut(name) {
            entry.in_flight = Some(due);
        }
        tokio::spawn(async move {
            let result = backend.fire(requests, rule, due_ms).await;
            if let Some(r) = report.report.as_mut() {
                r.result = result;
            }
        });
    }

    /// One invocation per target: the Scheduled Event, or the target's constant input.
    fn requests(&self, entry: &Entry, due: OffsetDateTime) -> Vec<AsyncInvokeRequest> {
        let event = scheduled_event(&self.region, &entry.rule, due);
        entry
            .targets
            .iter()
            .filter_map(|target| {
                let function = match target.function() {
                    Ok(f) => f,
                    Err(error) => {
                        tracing::warn!(rule = %entry.rule.name, target = %target.id, %error, "stored target names no function; skipping it");
                        return None;
                    }
                };
                let payload = match &target.input {
                    Some(input) => Bytes::from(input.clone()),
                    None => event.clone(),
                };
                Some(AsyncInvokeRequest {
                    function: function.name,
                    qualifier: function.qualifier,
                    payload,
                })
            })
            .collect()
    }

    fn on_report(&mut self, report: Report) {
        let Report {
            name,
            generation,
            due,
            result,
        } = report;
        let Some(entry) = self.entries.get_mut(&name) else {
            return; // removed meanwhile
        };
        entry.in_flight = None;
        let phase = match result {
            Ok(Some(events)) => {
                tracing::info!(rule = %name, due = %due, events, "scheduled rule fired");
                self.settled(&name, Some(due))
            }
            Ok(None) => {
                tracing::info!(rule = %name, due = %due, "scheduled rule already fired for this due time; skipping it");
                self.settled(&name, Some(due))
            }
            Err(error) if generation == entry.generation && entry.rule.state.is_enabled() => {
                let wait = entry.backoff;
                entry.backoff = (wait * 2).min(RETRY_BACKOFF_MAX.max(self.retry_backoff));
                tracing::warn!(rule = %name, due = %due, %error, retry_in = ?wait, "failed to fire scheduled rule; trying the same due time again");
                Some(Phase::Retrying {
                    due,
                    retry_at: Instant::now() + wait,
                })
            }
            Err(error) => {
                // The rule changed while the fire was being stored: it starts over from its
                // next due time.
                tracing::warn!(rule = %name, due = %due, %error, "failed to fire scheduled rule, which has changed since");
                self.settled(&name, None)
            }
        };
        if let (Some(entry), Some(phase)) = (self.entries.get_mut(&name), phase) {
            entry.phase = phase;
        }
    }

    /// The phase after a fire ended (stored or refused as already fired).
    fn settled(&mut self, name: &RuleName, after: Option<OffsetDateTime>) -> Option<Phase> {
        let entry = self.entries.get(name)?;
        let phase = self.next_phase(entry, after);
        if let Some(entry) = self.entries.get_mut(name) {
            entry.backoff = self.retry_backoff;
        }
        Some(phase)
    }
}

/// Sends a fire's report when its task ends, even by a panic (the rule must not stay "in
/// flight" forever).
struct ReportOnDrop {
    reports: mpsc::UnboundedSender<Report>,
    report: Option<Report>,
}

impl Drop for ReportOnDrop {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            let _ = self.reports.send(report);
        }
    }
}

async fn wait_due(clock: &Clock, at: Option<OffsetDateTime>) {
    match at {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn wait_retry(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// The event.

/// AWS's Scheduled Event, members in AWS's order.
#[derive(Serialize)]
struct ScheduledEvent<'a> {
    version: &'static str,
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: &'static str,
    source: &'static str,
    account: &'static str,
    time: String,
    region: &'a str,
    resources: [String; 1],
    detail: serde_json::Map<String, serde_json::Value>,
}

/// The event a rule's fire due at `due` sends to its targets (one id for all of them).
fn scheduled_event(region: &str, rule: &Rule, due: OffsetDateTime) -> Bytes {
    let event = ScheduledEvent {
        version: "0",
        id: uuid::Uuid::new_v4().to_string(),
        detail_type: "Scheduled Event",
        source: "aws.events",
        account: serval_model::ACCOUNT_ID,
        time: event_time(due),
        region,
        resources: [rule.arn(region)],
        detail: serde_json::Map::new(),
    };
    Bytes::from(serde_json::to_vec(&event).expect("the event serializes: strings and a map"))
}

/// `2026-11-25T10:00:00Z`.
fn event_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use serval_model::{Qualifier, RuleState, TargetId};
    use time::macros::datetime;
    use tokio::sync::watch;

    use super::*;

    /// One call of the fake backend.
    #[derive(Debug)]
    struct Fire {
        rule: String,
        due: OffsetDateTime,
        requests: Vec<AsyncInvokeRequest>,
        stored: bool,
    }

    #[derive(Clone)]
    struct FakeBackend {
        marks: Arc<Mutex<HashMap<String, i64>>>,
        /// Calls still to refuse.
        refuse: Arc<AtomicU32>,
        fires: mpsc::UnboundedSender<Fire>,
    }

    impl Backend for FakeBackend {
        fn mark(&self, rule: &str) -> Option<i64> {
            self.marks.lock().unwrap().get(rule).copied()
        }

        fn fire(
            &self,
            requests: Vec<AsyncInvokeRequest>,
            rule: String,
            due_ms: i64,
        ) -> impl Future<Output = Result<Option<usize>, EnqueueError>> + Send {
            let refused = self
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let result = if refused {
                Err(EnqueueError::Unavailable)
            } else {
                let mut marks = self.marks.lock().unwrap();
                match marks.get(&rule) {
                    Some(&mark) if mark >= due_ms => Ok(None),
                    _ => {
                        marks.insert(rule.clone(), due_ms);
                        Ok(Some(requests.len()))
                    }
                }
            };
            let _ = self.fires.send(Fire {
                rule,
                due: from_ms(due_ms).unwrap(),
                requests,
                stored: matches!(result, Ok(Some(_))),
            });
            std::future::ready(result)
        }
    }

    struct Fixture {
        schedules: Schedules,
        clock: watch::Sender<OffsetDateTime>,
        backend: FakeBackend,
        fires: mpsc::UnboundedReceiver<Fire>,
    }

    const REGION: &str = "eu-west-1";

    fn fixture(start: OffsetDateTime, marks: &[(&str, OffsetDateTime)]) -> Fixture {
        let (clock, rx) = watch::channel(start);
        let (fires_tx, fires) = mpsc::unbounded_channel();
        let backend = FakeBackend {
            marks: Arc::new(Mutex::new(
                marks
                    .iter()
                    .map(|(rule, at)| (rule.to_string(), to_ms(*at)))
                    .collect(),
            )),
            refuse: Arc::default(),
            fires: fires_tx,
        };
        let schedules = spawn(
            backend.clone(),
            Clock::Manual(rx),
            REGION.into(),
            Duration::from_millis(5),
        );
        Fixture {
            schedules,
            clock,
            backend,
            fires,
        }
    }

    impl Fixture {
        /// Moves the clock and waits until what fell due has fired; returns those fires.
        async fn advance_to(&mut self, t: OffsetDateTime) -> Vec<Fire> {
            self.clock.send_replace(t);
            self.schedules.settle().await;
            let mut out = Vec::new();
            while let Ok(fire) = self.fires.try_recv() {
                out.push(fire);
            }
            out
        }

        async fn next_fire(&mut self) -> Fire {
            tokio::time::timeout(Duration::from_secs(10), self.fires.recv())
                .await
                .expect("a fire within 10 s")
                .unwrap()
        }

        fn mark(&self, rule: &str) -> Option<OffsetDateTime> {
            self.backend.mark(rule).and_then(from_ms)
        }
    }

    fn rule(name: &str, expr: &str, anchor: OffsetDateTime) -> Rule {
        Rule {
            name: RuleName::parse(name).unwrap(),
            schedule_expression: expr.into(),
            state: RuleState::Enabled,
            description: None,
            role_arn: None,
            tags: BTreeMap::new(),
            anchor_ms: to_ms(anchor),
        }
    }

    fn target(id: &str, arn_tail: &str, input: Option<&str>) -> RuleTarget {
        RuleTarget {
            id: TargetId::parse_field(id, "id").unwrap(),
            arn: format!("arn:aws:lambda:eu-west-1:000000000000:function:{arn_tail}"),
            input: input.map(str::to_owned),
            role_arn: None,
        }
    }

    fn dues(fires: &[Fire]) -> Vec<OffsetDateTime> {
        fires.iter().map(|f| f.due).collect()
    }

    #[tokio::test]
    async fn rate_rule_fires_at_its_virtual_times_and_never_twice() {
        let t0 = datetime!(2026-11-25 10:00:30 UTC);
        let mut fx = fixture(t0, &[]);
        fx.schedules.put_rule(
            rule("every-minute", "rate(1 minute)", t0),
            vec![target("t1", "f", None)],
        );
        fx.schedules.settle().await;
        assert!(fx
            .advance_to(datetime!(2026-11-25 10:00:59 UTC))
            .await
            .is_empty());
        let fires = fx.advance_to(datetime!(2026-11-25 10:01:00 UTC)).await;
        assert_eq!(dues(&fires), [datetime!(2026-11-25 10:01:00 UTC)]);
        assert_eq!(fires[0].rule, "every-minute");
        assert!(fires[0].stored);
        assert_eq!(
            fx.mark("every-minute"),
            Some(datetime!(2026-11-25 10:01:00 UTC))
        );
        // The same moment again: nothing more.
        assert!(fx
            .advance_to(datetime!(2026-11-25 10:01:59 UTC))
            .await
            .is_empty());
        assert_eq!(
            dues(&fx.advance_to(datetime!(2026-11-25 10:02:00 UTC)).await),
            [datetime!(2026-11-25 10:02:00 UTC)]
        );
        // A late wake fires the pending due time once and skips those that passed meanwhile.
        assert_eq!(
            dues(&fx.advance_to(datetime!(2026-11-25 10:05:30 UTC)).await),
            [datetime!(2026-11-25 10:03:00 UTC)]
        );
        assert_eq!(
            dues(&fx.advance_to(datetime!(2026-11-25 10:06:00 UTC)).await),
            [datetime!(2026-11-25 10:06:00 UTC)]
        );
    }

    #[tokio::test]
    async fn each_target_gets_the_scheduled_event_or_its_constant_input() {
        let t0 = datetime!(2026-11-25 09:59:00 UTC);
        let mut fx = fixture(t0, &[]);
        fx.schedules.put_rule(
            rule("nightly", "cron(0 10 * * ? *)", t0),
            vec![
                target("a", "f", None),
                target("b", "g:live", Some("{\"constant\":true}")),
                target("c", "h:7", None),
            ],
        );
        fx.schedules.settle().await;
        let fires = fx.advance_to(datetime!(2026-11-25 10:00:00 UTC)).await;
        assert_eq!(fires.len(), 1);
        let requests = &fires[0].requests;
        assert_eq!(requests.len(), 3);
        assert_eq!(
            (requests[0].function.as_str(), &requests[0].qualifier),
            ("f", &None)
        );
        assert_eq!(requests[1].qualifier, Some(Qualifier::Alias("live".into())));
        assert_eq!(requests[2].qualifier, Some(Qualifier::Version(7)));
        assert_eq!(
            requests[1].payload,
            Bytes::from_static(b"{\"constant\":true}")
        );
        let event: serde_json::Value = serde_json::from_slice(&requests[0].payload).unwrap();
        assert_eq!(event["version"], "0");
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert_eq!(event["source"], "aws.events");
        assert_eq!(event["account"], serval_model::ACCOUNT_ID);
        assert_eq!(event["time"], "2026-11-25T10:00:00Z");
        assert_eq!(event["region"], REGION);
        assert_eq!(
            event["resources"],
            serde_json::json!(["arn:aws:events:eu-west-1:000000000000:rule/nightly"])
        );
        assert_eq!(event["detail"], serde_json::json!({}));
        assert!(uuid::Uuid::parse_str(event["id"].as_str().unwrap()).is_ok());
        // Every target of one fire gets the same event.
        assert_eq!(requests[0].payload, requests[2].payload);
        // AWS's member order.
        let text = std::str::from_utf8(&requests[0].payload).unwrap();
        assert!(text.starts_with("{\"version\":\"0\",\"id\":"), "{text}");
        // Cron: the next day at 10:00.
        assert!(fx
            .advance_to(datetime!(2026-11-26 09:59:59 UTC))
            .await
            .is_empty());
        assert_eq!(
            dues(&fx.advance_to(datetime!(2026-11-26 10:00:00 UTC)).await),
            [datetime!(2026-11-26 10:00:00 UTC)]
        );
    }

    #[tokio::test]
    async fn disabled_rule_does_not_fire_until_enabled_and_rate_counts_from_enabling() {
        let t0 = datetime!(2026-11-25 10:00:00 UTC);
        let mut fx = fixture(t0, &[]);
        let mut r = rule("r", "rate(5 minutes)", t0);
        r.state = RuleState::Disabled;
        fx.schedules
            .put_rule(r.clone(), vec![target("t", "f", None)]);
        fx.schedules.settle().await;
        assert!(fx
            .advance_to(datetime!(2026-11-25 10:30:00 UTC))
            .await
            .is_empty());
        // Enabled at 10:32:10 (the API moves the anchor): first fire five minutes later,
        // counted from 10:32.
        r.state = RuleState::Enabled;
        r.anchor_ms = to_ms(datetime!(2026-11-25 10:32:10 UTC));
        fx.clock.send_replace(datetime!(2026-11-25 10:32:10 UTC));
        fx.schedules
            .put_rule(r.clone(), vec![target("t", "f", None)]);
        fx.schedules.settle().await;
        assert!(fx
            .advance_to(datetime!(2026-11-25 10:36:59 UTC))
            .await
            .is_empty());
        assert_eq!(
            dues(&fx.advance_to(datetime!(2026-11-25 10:37:00 UTC)).await),
            [datetime!(2026-11-25 10:37:00 UTC)]
        );
        // Disabled again: silent.
        r.state = RuleState::Disabled;
        fx.schedules.put_rule(r, vec![target("t", "f", None)]);
        fx.schedules.settle().await;
        assert!(fx
            .advance_to(datetime!(2026-11-25 11:00:00 UTC))
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn removed_rule_stops_firing() {
        let t0 = datetime!(2026-11-25 10:00:00 UTC);
        let mut fx = fixture(t0, &[]);
        let r = rule("r", "rate(1 minute)", t0);
        fx.schedules
            .put_rule(r.clone(), vec![target("t", "f", None)]);
        fx.schedules.settle().await;
        assert_eq!(
            fx.advance_to(datetime!(2026-11-25 10:01:00 UTC))
                .await
                .len(),
            1
        );
        fx.schedules.remove_rule(&r.name);
        assert!(fx
            .advance_to(datetime!(2026-11-25 10:10:00 UTC))
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn restart_does_not_replay_missed_due_times() {
        // The rule last fired at 10:05; the server comes back at 10:10:30.
        let now = datetime!(2026-11-25 10:10:30 UTC);
        let mut fx = fixture(
            now,
            &[
                ("r", datetime!(2026-11-25 10:05:00 UTC)),
                // A mark ahead of the clock (a faster clock before the restart).
                ("ahead", datetime!(2026-11-25 10:20:00 UTC)),
            ],
        );
        let anchor = datetime!(2026-11-25 09:00:00 UTC);
        fx.schedules.put_rule(
            rule("r", "rate(1 minute)", anchor),
            vec![target("t", "f", None)],
        );
        fx.schedules.settle().await;
        fx.schedules.put_rule(
            rule("ahead", "rate(1 minute)", anchor),
            vec![target("t", "f", None)],
        );
        fx.schedules.settle().await;
        fx.schedules.put_rule(
            rule("weekdays", "cron(0/15 * ? * MON-FRI *)", anchor),
            vec![target("t", "f", None)],
        );
        fx.schedules.settle().await;
        assert!(fx.advance_to(now).await.is_empty(), "missed times replayed");
        let fires = fx.advance_to(datetime!(2026-11-25 10:11:00 UTC)).await;
        assert_eq!(
            (fires.len(), fires[0].rule.as_str(), fires[0].due),
            (1, "r", datetime!(2026-11-25 10:11:00 UTC))
        );
        let fires = fx.advance_to(datetime!(2026-11-25 10:15:00 UTC)).await;
        let mut names: Vec<_> = fires.iter().map(|f| (f.rule.as_str(), f.due)).collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("r", datetime!(2026-11-25 10:12:00 UTC)),
                ("weekdays", datetime!(2026-11-25 10:15:00 UTC)),
            ]
        );
        // The rule whose mark is ahead resumes after its mark.
        let fires = fx.advance_to(datetime!(2026-11-25 10:20:59 UTC)).await;
        assert!(fires.iter().all(|f| f.rule != "ahead"), "{fires:?}");
        let fires = fx.advance_to(datetime!(2026-11-25 10:21:00 UTC)).await;
        assert!(fires
            .iter()
            .any(|f| f.rule == "ahead" && f.due == datetime!(2026-11-25 10:21:00 UTC)));
    }

    #[tokio::test]
    async fn refused_fire_is_retried_for_the_same_due_time() {
        let t0 = datetime!(2026-11-25 10:00:00 UTC);
        let mut fx = fixture(t0, &[]);
        fx.backend.refuse.store(2, Ordering::SeqCst);
        fx.schedules.put_rule(
            rule("r", "rate(1 minute)", t0),
            vec![target("t", "f", None)],
        );
        fx.schedules.settle().await;
        let first = fx.advance_to(datetime!(2026-11-25 10:01:30 UTC)).await;
        assert_eq!(dues(&first), [datetime!(2026-11-25 10:01:00 UTC)]);
        assert!(!first[0].stored);
        assert_eq!(fx.mark("r"), None, "a refused fire moved the mark");
        for stored in [false, true] {
            let retry = fx.next_fire().await;
            assert_eq!(
                (retry.due, retry.stored),
                (datetime!(2026-11-25 10:01:00 UTC), stored)
            );
        }
        fx.schedules.settle().await;
        assert_eq!(fx.mark("r"), Some(datetime!(2026-11-25 10:01:00 UTC)));
        assert_eq!(
            dues(&fx.advance_to(datetime!(2026-11-25 10:02:00 UTC)).await),
            [datetime!(2026-11-25 10:02:00 UTC)]
        );
    }

    #[tokio::test]
    async fn rule_without_targets_is_quiet_and_an_update_keeps_the_due_time() {
        let t0 = datetime!(2026-11-25 10:00:00 UTC);
        let mut fx = fixture(t0, &[]);
        let r = rule("r", "rate(10 minutes)", t0);
        fx.schedules.put_rule(r.clone(), vec![]);
        fx.schedules.settle().await;
        assert!(fx
            .advance_to(datetime!(2026-11-25 10:10:00 UTC))
            .await
            .is_empty());
        assert_eq!(fx.mark("r"), None);
        // Targets added at 10:12: the next due time (10:20) stays.
        fx.schedules
            .put_rule(r.clone(), vec![target("a", "f", None)]);
        fx.schedules.settle().await;
        fx.advance_to(datetime!(2026-11-25 10:12:00 UTC)).await;
        fx.schedules.put_rule(
            r.clone(),
            vec![target("a", "f", None), target("b", "g", None)],
        );
        fx.schedules.settle().await;
        let fires = fx.advance_to(datetime!(2026-11-25 10:20:00 UTC)).await;
        assert_eq!(dues(&fires), [datetime!(2026-11-25 10:20:00 UTC)]);
        assert_eq!(fires[0].requests.len(), 2);
        // A new expression with a new anchor takes over.
        let mut r = r;
        r.schedule_expression = "rate(1 hour)".into();
        r.anchor_ms = to_ms(datetime!(2026-11-25 10:25:00 UTC));
        fx.clock.send_replace(datetime!(2026-11-25 10:25:00 UTC));
        fx.schedules.put_rule(r, vec![target("a", "f", None)]);
        fx.schedules.settle().await;
        assert!(fx
            .advance_to(datetime!(2026-11-25 11:24:59 UTC))
            .await
            .is_empty());
        assert_eq!(
            dues(&fx.advance_to(datetime!(2026-11-25 11:25:00 UTC)).await),
            [datetime!(2026-11-25 11:25:00 UTC)]
        );
    }

    #[tokio::test]
    async fn a_stored_rule_with_an_invalid_schedule_never_fires() {
        let t0 = datetime!(2026-11-25 10:00:00 UTC);
        let mut fx = fixture(t0, &[]);
        fx.schedules.put_rule(
            rule("bad", "rate(0 minutes)", t0),
            vec![target("t", "f", None)],
        );
        fx.schedules.settle().await;
        assert!(fx
            .advance_to(datetime!(2026-11-26 10:00:00 UTC))
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn a_fast_real_clock_fires_a_rate_rule_every_interval() {
        let (fires_tx, mut fires) = mpsc::unbounded_channel();
        let backend = FakeBackend {
            marks: Arc::default(),
            refuse: Arc::default(),
            fires: fires_tx,
        };
        // 6000x: one virtual minute lasts 10 ms.
        let schedules = spawn(
            backend,
            Clock::scaled(6000),
            REGION.into(),
            Duration::from_millis(5),
        );
        let anchor = schedules.now();
        schedules.put_rule(
            rule("fast", "rate(1 minute)", anchor),
            vec![target("t", "f", None)],
        );
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let fire = tokio::time::timeout(Duration::from_secs(10), fires.recv())
                .await
                .expect("a fire within 10 s")
                .unwrap();
            assert!(fire.stored);
            assert!(fire.due <= schedules.now(), "fired before its due time");
            seen.push(fire.due);
        }
        let first = anchor
            .replace_second(0)
            .unwrap()
            .replace_nanosecond(0)
            .unwrap()
            + time::Duration::minutes(1);
        assert_eq!(seen[0], first);
        for pair in seen.windows(2) {
            // Never twice, never backwards; late wakes may skip due times.
            assert!(pair[1] > pair[0]);
            assert_eq!((pair[1] - pair[0]).whole_seconds() % 60, 0);
        }
    }

    #[test]
    fn event_time_is_utc_at_the_second() {
        assert_eq!(
            event_time(datetime!(2026-11-25 12:00:00 +02:00)),
            "2026-11-25T10:00:00Z"
        );
        assert_eq!(
            from_ms(to_ms(datetime!(2026-01-02 03:04:05 UTC))),
            Some(datetime!(2026-01-02 03:04:05 UTC))
        );
    }
}
