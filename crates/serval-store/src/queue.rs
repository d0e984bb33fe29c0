//! The durable queue of asynchronous invocations: `<data_dir>/queue.db`, SQLite in WAL mode
//! with `synchronous=FULL`, written by one thread that commits in groups.
//!
//! For: accepting an event only once it is on disk and fsync'd (an `append` returns after the
//! commit that holds it), remembering retries, and handing back at start-up every event that
//! was accepted and not finished. Not for: deciding when an event runs, retries or expires
//! (the engine's dispatcher).
//!
//! Group commit: callers hand their records to the writer thread and wait; the thread takes
//! everything queued (up to `QueueLimits::max_batch`), writes it in one transaction and
//! commits once, so one fsync acknowledges the whole group. `finish` and `retry_later` are not
//! waited on: they ride along with the next commit, and if a crash loses them the event runs
//! again (delivery is at least once).
//!
//! Schedule marks (`schedule_marks`, schema 2): for each scheduled rule, the due time of its
//! last fire. [`EventQueue::append_scheduled`] stores the events of one fire and advances the
//! rule's mark in the same transaction, and refuses a due time at or before the mark, so a
//! rule never fires twice for one due time, even across a crash. The marks are loaded at open
//! and kept current after each commit ([`EventQueue::schedule_mark`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serval_model::FunctionName;
use tokio::sync::oneshot;

use crate::StoreError;

/// File name of the queue database inside the data directory.
pub const QUEUE_DB_FILE_NAME: &str = "queue.db";

/// Bounds on what the queue holds (accepted and not yet finished).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Most events held; `append` answers `Full` beyond it.
    pub max_events: usize,
    /// Most payload bytes held; `append` answers `Full` beyond it.
    pub max_bytes: u64,
    /// Most records written by one commit.
    pub max_batch: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_events: 100_000,
            max_bytes: 1 << 30,
            max_batch: 1024,
        }
    }
}

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The invocation's request id, kept across retries.
    pub request_id: String,
    pub function: FunctionName,
    /// `$LATEST`, a version number or an alias name, as invoked.
    pub qualifier: String,
    pub payload: Bytes,
    /// When the event was accepted, milliseconds since the epoch.
    pub enqueued_ms: i64,
}

/// An event held by the queue.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    /// Increasing in acceptance order.
    pub id: i64,
    pub request_id: String,
    pub function: FunctionName,
    pub qualifier: String,
    pub payload: Bytes,
    pub enqueued_ms: i64,
    /// Attempts made so far (0 for a new event).
    pub attempts: u32,
    /// Not to be run before this time, milliseconds since the epoch (0: now).
    pub not_before_ms: i64,
}

/// Why an event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `QueueLimits::max_events` events or `max_bytes` bytes.
    #[error("the asynchronous event queue is full ({events} events, {bytes} bytes)")]
    Full { events: usize, bytes: u64 },
    /// The writer thread has stopped (the queue was closed or failed).
    #[error("the asynchronous event queue is closed")]
    Closed,
    /// Writing failed; the event is not stored.
    #[error("failed to store an asynchronous event")]
    Store(#[source] StoreError),
}

/// A cloneable handle to the queue; the writer thread ends when the last handle is dropped,
/// after committing what it was given.
#[derive(Clone)]
pub struct EventQueue {
    front: Arc<Front>,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (events, bytes) = self.held();
        f.debug_struct("EventQueue")
            .field("events", &events)
            .field("bytes", &bytes)
            .finish_non_exhaustive()
    }
}

/// Schema version of `queue.db` (its own `user_version`, independent of `serval.db`).
const QUEUE_SCHEMA_VERSION: i64 = 2;

/// How long the writer waits on another connection's lock (only a second Serval on the same
/// data directory could hold one).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest the write-ahead log is left on disk after a checkpoint.
const JOURNAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

/// Schema migrations of `queue.db`; entry `i` brings it from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"
    -- AUTOINCREMENT: ids are never reused, so a late `finish` of an old id cannot remove a
    -- newer event.
    CREATE TABLE IF NOT EXISTS events (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id     TEXT NOT NULL,
        function       TEXT NOT NULL,
        qualifier      TEXT NOT NULL,
        payload        BLOB NOT NULL,
        enqueued_ms    INTEGER NOT NULL,
        attempts       INTEGER NOT NULL DEFAULT 0,
        not_before_ms  INTEGER NOT NULL DEFAULT 0
    );
    "#,
    // 1 -> 2: the due time (ms since the epoch) of each scheduled rule's last fire, written
    // in the transaction that stores the fire's events.
    r#"
    CREATE TABLE IF NOT EXISTS schedule_marks (
        rule    TEXT PRIMARY KEY NOT NULL,
        due_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
];

const INSERT_SQL: &str = "INSERT INTO events (request_id, function, qualifier, payload, \
     enqueued_ms) VALUES (?1, ?2, ?3, ?4, ?5)";
const DELETE_SQL: &str = "DELETE FROM events WHERE id = ?1 RETURNING length(payload)";
const RETRY_SQL: &str = "UPDATE events SET attempts = ?2, not_before_ms = ?3 WHERE id = ?1";
const MARK_SQL: &str = "SELECT due_ms FROM schedule_marks WHERE rule = ?1";
const SET_MARK_SQL: &str = "INSERT INTO schedule_marks (rule, due_ms) VALUES (?1, ?2) \
     ON CONFLICT (rule) DO UPDATE SET due_ms = excluded.due_ms";

/// What the writer thread is asked to do.
enum Command {
    Append {
        event: NewEvent,
        reply: oneshot::Sender<Result<QueuedEvent, QueueError>>,
    },
    FinishAndAppend {
        id: i64,
        next: NewEvent,
        reply: oneshot::Sender<Result<QueuedEvent, QueueError>>,
    },
    Finish {
        id: i64,
    },
    RetryLater {
        id: i64,
        attempts: u32,
        not_before_ms: i64,
    },
    Flush {
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    AppendScheduled {
        events: Vec<NewEvent>,
        rule: String,
        due_ms: i64,
        reply: oneshot::Sender<Result<Option<Vec<QueuedEvent>>, QueueError>>,
    },
}

/// Events and payload bytes accepted and not finished.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    events: usize,
    bytes: u64,
}

/// State shared by the handles and the writer thread.
struct Counters {
    held: Mutex<Held>,
    /// Each scheduled rule's committed mark (due time of its last fire, ms); updated by the
    /// writer after each commit that advances one.
    marks: Mutex<HashMap<String, i64>>,
    /// Commits the writer made (a measure of how well commits are grouped).
    commits: AtomicU64,
    /// Held by a test to keep the writer from draining the channel until it is filled.
    #[cfg(test)]
    gate: Mutex<()>,
}

impl Counters {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // The guarded value is two counters updated in one statement: poisoning is moot.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn release(&self, events: usize, bytes: u64) {
        let mut held = self.held();
        held.events = held.events.saturating_sub(events);
        held.bytes = held.bytes.saturating_sub(bytes);
    }

    fn add(&self, events: usize, bytes: u64) {
        let mut held = self.held();
        held.events += events;
        held.bytes += bytes;
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // Each update is one insert: poisoning is moot.
        self.marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the handles share; dropping the last one closes the channel and ends the writer.
struct Front {
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    limits: QueueLimits,
}

fn payload_bytes(payload: &Bytes) -> u64 {
    payload.len() as u64
}

impl EventQueue {
    /// Opens (creating if needed) `<data_dir>/queue.db` and starts the writer thread. Returns
    /// the handle and every event accepted before and not finished, in id order.
    pub fn open(
        data_dir: &Path,
        limits: QueueLimits,
    ) -> Result<(EventQueue, Vec<QueuedEvent>), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            operation: "create directory",
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(QUEUE_DB_FILE_NAME);
        let mut conn = connect(&path)?;
        migrate(&mut conn, &path)?;
        let events = load(&conn)?;
        let marks = load_marks(&conn)?;
        let held = Held {
            events: events.len(),
            bytes: events.iter().map(|e| payload_bytes(&e.payload)).sum(),
        };
        let counters = Arc::new(Counters {
            held: Mutex::new(held),
            marks: Mutex::new(marks),
            commits: AtomicU64::new(0),
            #[cfg(test)]
            gate: Mutex::new(()),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            path: path.clone(),
            counters: counters.clone(),
            max_batch: limits.max_batch.max(1),
        };
        std::thread::Builder::new()
            .name("serval-queue".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreError::Io {
                operation: "start the writer thread for",
                path: path.clone(),
                source,
            })?;
        let queue = EventQueue {
            front: Arc::new(Front {
                commands: tx,
                counters,
                limits,
            }),
        };
        Ok((queue, events))
    }

    /// Stores a new event; returns once it is committed and fsync'd.
    pub async fn append(&self, event: NewEvent) -> Result<QueuedEvent, QueueError> {
        let bytes = payload_bytes(&event.payload);
        self.reserve(bytes)?;
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::Append { event, reply }) {
            self.front.counters.release(1, bytes);
            return Err(QueueError::Closed);
        }
        // The writer releases the reservation itself when the write fails.
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Finishes event `id` and stores `next` (a destination's invocation record) in the same
    /// transaction; returns once it is committed. Not refused by the limits: a record of work
    /// already accepted is never dropped.
    pub async fn finish_and_append(
        &self,
        id: i64,
        next: NewEvent,
    ) -> Result<QueuedEvent, QueueError> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::FinishAndAppend { id, next, reply }) {
            return Err(QueueError::Closed);
        }
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Removes a handled event (not waited on).
    pub fn finish(&self, id: i64) {
        if !self.send(Command::Finish { id }) {
            tracing::warn!(event = id, "queue closed: finished event stays on disk");
        }
    }

    /// Records that event `id` failed `attempts` times and runs again at `not_before_ms`
    /// (not waited on).
    pub fn retry_later(&self, id: i64, attempts: u32, not_before_ms: i64) {
        let command = Command::RetryLater {
            id,
            attempts,
            not_before_ms,
        };
        if !self.send(command) {
            tracing::warn!(event = id, "queue closed: retry of event not recorded");
        }
    }

    /// Stores the events of one fire of scheduled rule `rule` due at `due_ms` and advances the
    /// rule's mark to `due_ms`, in one transaction; returns once it is committed. Answers
    /// `Ok(None)`, writing nothing, when the stored mark is already at or after `due_ms` (the
    /// rule fired for that due time). `events` may be empty: the mark still advances.
    /// Refused with `Full` like [`Self::append`] when the events do not fit the limits.
    pub async fn append_scheduled(
        &self,
        events: Vec<NewEvent>,
        rule: String,
        due_ms: i64,
    ) -> Result<Option<Vec<QueuedEvent>>, QueueError> {
        let count = events.len();
        let bytes: u64 = events.iter().map(|e| payload_bytes(&e.payload)).sum();
        self.reserve_many(count, bytes)?;
        let (reply, answer) = oneshot::channel();
        let command = Command::AppendScheduled {
            events,
            rule,
            due_ms,
            reply,
        };
        if !self.send(command) {
            self.front.counters.release(count, bytes);
            return Err(QueueError::Closed);
        }
        // The writer releases the reservation itself when nothing is stored.
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// The committed mark of scheduled rule `rule`: the due time (ms since the epoch) of its
    /// last fire, or `None` if it never fired.
    pub fn schedule_mark(&self, rule: &str) -> Option<i64> {
        self.front.counters.marks().get(rule).copied()
    }

    /// Every committed schedule mark, by rule.
    pub fn schedule_marks(&self) -> HashMap<String, i64> {
        self.front.counters.marks().clone()
    }

    /// Waits until everything handed to the writer so far is committed.
    pub async fn flush(&self) -> Result<(), QueueError> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::Flush { reply }) {
            return Err(QueueError::Closed);
        }
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Events and payload bytes held now.
    pub fn held(&self) -> (usize, u64) {
        let held = *self.front.counters.held();
        (held.events, held.bytes)
    }

    /// Commits the writer thread has made since the queue was opened.
    #[cfg(test)]
    pub(crate) fn commit_count(&self) -> u64 {
        self.front.counters.commits.load(Ordering::Acquire)
    }

    /// Hands a command to the writer; `false` when the writer has stopped.
    fn send(&self, command: Command) -> bool {
        self.front.commands.send(command).is_ok()
    }

    /// Counts a new event of `bytes` as held, unless that would break the limits.
    fn reserve(&self, bytes: u64) -> Result<(), QueueError> {
        self.reserve_many(1, bytes)
    }

    /// Counts `events` new events of `bytes` in all as held, unless that would break the
    /// limits (nothing to count is always allowed).
    fn reserve_many(&self, events: usize, bytes: u64) -> Result<(), QueueError> {
        if events == 0 && bytes == 0 {
            return Ok(());
        }
        let limits = &self.front.limits;
        let mut held = self.front.counters.held();
        if held.events + events > limits.max_events || held.bytes + bytes > limits.max_bytes {
            return Err(QueueError::Full {
                events: held.events,
                bytes: held.bytes,
            });
        }
        held.events += events;
        held.bytes += bytes;
        Ok(())
    }
}

/// Opens `queue.db` with the queue's pragmas: WAL, and `synchronous=FULL` so that each commit
/// fsyncs the log and an acknowledged event survives power loss.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(StoreError::db("open queue"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::db("set queue busy_timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(StoreError::db("set queue journal_mode"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(StoreError::db("set queue synchronous"))?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)
        .map_err(StoreError::db("set queue journal_size_limit"))?;
    Ok(conn)
}

/// Creates the schema, refusing a queue written by a newer Serval.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::db("begin queue migration"))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::db("read queue user_version"))?;
    if found > QUEUE_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: QUEUE_SCHEMA_VERSION,
        });
    }
    if found < QUEUE_SCHEMA_VERSION {
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            tx.execute_batch(sql)
                .map_err(StoreError::db("migrate queue schema"))?;
            tracing::info!(from, to = from + 1, "queue.migrate");
        }
        tx.pragma_update(None, "user_version", QUEUE_SCHEMA_VERSION)
            .map_err(StoreError::db("write queue user_version"))?;
    }
    tx.commit()
        .map_err(StoreError::db("commit queue migration"))?;
    Ok(())
}

/// Every stored event, in id order. A row whose function name no longer validates can never
/// run: it is removed with a warning rather than failing the start-up.
fn load(conn: &Connection) -> Result<Vec<QueuedEvent>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, request_id, function, qualifier, payload, enqueued_ms, attempts, \
             not_before_ms FROM events ORDER BY id",
        )
        .map_err(StoreError::db("read queued events"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .map_err(StoreError::db("read queued events"))?;
    let mut events = Vec::new();
    let mut invalid = Vec::new();
    for row in rows {
        let (id, request_id, function, qualifier, payload, enqueued_ms, attempts, not_before_ms) =
            row.map_err(StoreError::db("read queued events"))?;
        let Ok(function) = FunctionName::parse(&function) else {
            tracing::warn!(
                event = id,
                function,
                "dropping queued event with an invalid function name"
            );
            invalid.push(id);
            continue;
        };
        events.push(QueuedEvent {
            id,
            request_id,
            function,
            qualifier,
            payload: Bytes::from(payload),
            enqueued_ms,
            attempts: u32::try_from(attempts).unwrap_or(0),
            not_before_ms,
        });
    }
    drop(stmt);
    for id in invalid {
        conn.execute("DELETE FROM events WHERE id = ?1", [id])
            .map_err(StoreError::db("remove invalid queued event"))?;
    }
    Ok(events)
}

/// Every schedule mark, by rule.
fn load_marks(conn: &Connection) -> Result<HashMap<String, i64>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT rule, due_ms FROM schedule_marks")
        .map_err(StoreError::db("read schedule marks"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(StoreError::db("read schedule marks"))?;
    let mut marks = HashMap::new();
    for row in rows {
        let (rule, due_ms) = row.map_err(StoreError::db("read schedule marks"))?;
        marks.insert(rule, due_ms);
    }
    Ok(marks)
}

/// The writer thread's state: the only connection that writes `queue.db`.
struct Writer {
    conn: Connection,
    /// `queue.db`, for errors.
    path: PathBuf,
    counters: Arc<Counters>,
    max_batch: usize,
}

/// What one command did inside a batch's transaction.
enum Effect {
    None,
    Inserted(i64),
    /// Payload bytes of the removed event, if there was one.
    Deleted(Option<u64>),
    Replaced {
        inserted: i64,
        deleted: Option<u64>,
    },
    /// The ids of a fire's events, or `None` when the rule's mark was already at its due time.
    Scheduled(Option<Vec<i64>>),
}

impl Writer {
    /// Group commit: block for one command, take whatever else is queued (up to `max_batch`),
    /// write all of it in one transaction, commit once, answer every waiter. Ends when every
    /// handle is gone and the channel is drained.
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Ok(first) = commands.recv() {
            batch.push(first);
            #[cfg(test)]
            let gate = self.counters.clone();
            #[cfg(test)]
            let _gate = gate.gate.lock().unwrap_or_else(|p| p.into_inner());
            while batch.len() < self.max_batch {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.write(&mut batch);
        }
    }

    /// Writes one batch and answers its waiters; leaves `batch` empty.
    fn write(&mut self, batch: &mut Vec<Command>) {
        let needs_commit = batch.iter().any(|c| !matches!(c, Command::Flush { .. }));
        let effects = if needs_commit {
            self.transact(batch)
        } else {
            Ok(Vec::new())
        };
        match effects {
            Ok(effects) => {
                let mut effects = effects.into_iter();
                for command in batch.drain(..) {
                    let effect = effects.next().unwrap_or(Effect::None);
                    self.answer(command, effect);
                }
            }
            Err(error) if batch.len() > 1 => {
                // One bad command must not fail the others of its group: write each on its
                // own, so only the ones that fail again are refused (only on this path; the
                // happy path stays one commit per group).
                tracing::warn!(error = %error, commands = batch.len(), "a group commit of the asynchronous event queue failed; writing its commands one by one");
                for command in batch.drain(..) {
                    match self.transact(std::slice::from_ref(&command)) {
                        Ok(mut effects) => {
                            let effect = effects.pop().unwrap_or(Effect::None);
                            self.answer(command, effect);
                        }
                        Err(error) => {
                            tracing::error!(error = %error, "failed to write to the asynchronous event queue");
                            self.fail(command, &Arc::new(error));
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "failed to write to the asynchronous event queue");
                let shared = Arc::new(error);
                for command in batch.drain(..) {
                    self.fail(command, &shared);
                }
            }
        }
    }

    fn transact(&mut self, batch: &[Command]) -> Result<Vec<Effect>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin queue batch"))?;
        let mut effects = Vec::with_capacity(batch.len());
        for command in batch {
            let effect = match command {
                Command::Append { event, .. } => Effect::Inserted(insert(&tx, event)?),
                Command::FinishAndAppend { id, next, .. } => {
                    let deleted = delete(&tx, *id)?;
                    let inserted = insert(&tx, next)?;
                    Effect::Replaced { inserted, deleted }
                }
                Command::Finish { id } => Effect::Deleted(delete(&tx, *id)?),
                Command::RetryLater {
                    id,
                    attempts,
                    not_before_ms,
                } => {
                    tx.prepare_cached(RETRY_SQL)
                        .and_then(|mut s| s.execute(params![id, attempts, not_before_ms]))
                        .map_err(StoreError::db("record queued event retry"))?;
                    Effect::None
                }
                Command::Flush { .. } => Effect::None,
                Command::AppendScheduled {
                    events,
                    rule,
                    due_ms,
                    ..
                } => Effect::Scheduled(insert_scheduled(&tx, events, rule, *due_ms)?),
            };
            effects.push(effect);
        }
        tx.commit().map_err(StoreError::db("commit queue batch"))?;
        self.counters.commits.fetch_add(1, Ordering::AcqRel);
        Ok(effects)
    }

    /// Answers one committed command and updates what the queue holds.
    fn answer(&self, command: Command, effect: Effect) {
        match (command, effect) {
            (Command::Append { event, reply }, Effect::Inserted(id)) => {
                let _ = reply.send(Ok(queued(id, event)));
            }
            (
                Command::FinishAndAppend { next, reply, .. },
                Effect::Replaced { inserted, deleted },
            ) => {
                if let Some(bytes) = deleted {
                    self.counters.release(1, bytes);
                }
                self.counters.add(1, payload_bytes(&next.payload));
                let _ = reply.send(Ok(queued(inserted, next)));
            }
            (Command::Finish { .. }, Effect::Deleted(Some(bytes))) => {
                self.counters.release(1, bytes);
            }
            (Command::Flush { reply }, _) => {
                let _ = reply.send(Ok(()));
            }
            (
                Command::AppendScheduled {
                    events,
                    rule,
                    due_ms,
                    reply,
                },
                effect,
            ) => {
                let ids = match effect {
                    Effect::Scheduled(Some(ids)) => ids,
                    _ => {
                        // Already fired: nothing was stored.
                        let bytes = events.iter().map(|e| payload_bytes(&e.payload)).sum();
                        self.counters.release(events.len(), bytes);
                        let _ = reply.send(Ok(None));
                        return;
                    }
                };
                {
                    let mut marks = self.counters.marks();
                    let mark = marks.entry(rule).or_insert(due_ms);
                    *mark = (*mark).max(due_ms);
                }
                let stored = ids
                    .into_iter()
                    .zip(events)
                    .map(|(id, event)| queued(id, event))
                    .collect();
                let _ = reply.send(Ok(Some(stored)));
            }
            _ => {}
        }
    }

    /// Answers one command of a batch that was not written.
    fn fail(&self, command: Command, error: &Arc<StoreError>) {
        let err = || {
            QueueError::Store(StoreError::Io {
                operation: "write",
                path: self.path.clone(),
                source: std::io::Error::other(SharedError(error.clone())),
            })
        };
        match command {
            Command::Append { event, reply } => {
                self.counters.release(1, payload_bytes(&event.payload));
                let _ = reply.send(Err(err()));
            }
            Command::FinishAndAppend { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Command::Flush { reply } => {
                let _ = reply.send(Err(err()));
            }
            Command::AppendScheduled { events, reply, .. } => {
                let bytes = events.iter().map(|e| payload_bytes(&e.payload)).sum();
                self.counters.release(events.len(), bytes);
                let _ = reply.send(Err(err()));
            }
            Command::Finish { id } | Command::RetryLater { id, .. } => {
                tracing::warn!(
                    event = id,
                    "lost an update of a queued event; it may run again"
                );
            }
        }
    }
}

fn queued(id: i64, event: NewEvent) -> QueuedEvent {
    QueuedEvent {
        id,
        request_id: event.request_id,
        function: event.function,
        qualifier: event.qualifier,
        payload: event.payload,
        enqueued_ms: event.enqueued_ms,
        attempts: 0,
        not_before_ms: 0,
    }
}

fn insert(tx: &Transaction<'_>, event: &NewEvent) -> Result<i64, StoreError> {
    #[cfg(test)]
    if event.request_id == tests::POISON_REQUEST_ID {
        return Err(StoreError::InvalidParameter {
            message: "a record the test made unwritable".into(),
        });
    }
    let mut stmt = tx
        .prepare_cached(INSERT_SQL)
        .map_err(StoreError::db("prepare queued event insert"))?;
    stmt.execute(params![
        event.request_id,
        event.function.as_str(),
        event.qualifier,
        &event.payload[..],
        event.enqueued_ms,
    ])
    .map_err(StoreError::db("insert queued event"))?;
    Ok(tx.last_insert_rowid())
}

/// Stores one fire's events and advances `rule`'s mark to `due_ms`, unless the mark is already
/// there (`None`, nothing written).
fn insert_scheduled(
    tx: &Transaction<'_>,
    events: &[NewEvent],
    rule: &str,
    due_ms: i64,
) -> Result<Option<Vec<i64>>, StoreError> {
    let mark: Option<i64> = tx
        .prepare_cached(MARK_SQL)
        .and_then(|mut s| s.query_row([rule], |r| r.get(0)).optional())
        .map_err(StoreError::db("read schedule mark"))?;
    if mark.is_some_and(|m| m >= due_ms) {
        return Ok(None);
    }
    let mut ids = Vec::with_capacity(events.len());
    for event in events {
        ids.push(insert(tx, event)?);
    }
    tx.prepare_cached(SET_MARK_SQL)
        .and_then(|mut s| s.execute(params![rule, due_ms]))
        .map_err(StoreError::db("write schedule mark"))?;
    Ok(Some(ids))
}

/// Removes event `id`; returns its payload size if it existed.
fn delete(tx: &Transaction<'_>, id: i64) -> Result<Option<u64>, StoreError> {
    let mut stmt = tx
        .prepare_cached(DELETE_SQL)
        .map_err(StoreError::db("prepare queued event delete"))?;
    let mut rows = stmt
        .query([id])
        .map_err(StoreError::db("delete queued event"))?;
    match rows.next().map_err(StoreError::db("delete queued event"))? {
        Some(row) => {
            let bytes: i64 = row.get(0).map_err(StoreError::db("delete queued event"))?;
            Ok(Some(u64::try_from(bytes).unwrap_or(0)))
        }
        None => Ok(None),
    }
}

/// One failed batch's error, shared by every waiter of the batch.
#[derive(Debug)]
struct SharedError(Arc<StoreError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Write};
    use std::time::Instant;

    use super::*;

    fn event(n: usize, payload: &str) -> NewEvent {
        NewEvent {
            request_id: format!("req-{n}"),
            function: FunctionName::parse("f").unwrap(),
            qualifier: "$LATEST".into(),
            payload: Bytes::from(payload.to_owned()),
            enqueued_ms: 1_000 + n as i64,
        }
    }

    fn open(dir: &Path) -> (EventQueue, Vec<QueuedEvent>) {
        EventQueue::open(dir, QueueLimits::default()).unwrap()
    }

    #[tokio::test]
    async fn appended_events_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, leftovers) = open(dir.path());
        assert!(leftovers.is_empty());
        let a = queue.append(event(1, "{\"a\":1}")).await.unwrap();
        let b = queue.append(event(2, "bb")).await.unwrap();
        assert!(b.id > a.id);
        assert_eq!((a.attempts, a.not_before_ms), (0, 0));
        assert_eq!(queue.held(), (2, 9));
        drop(queue);

        let (queue, leftovers) = open(dir.path());
        let ids: Vec<i64> = leftovers.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![a.id, b.id]);
        assert_eq!(leftovers[0].payload, Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(leftovers[0].request_id, "req-1");
        assert_eq!(leftovers[0].function.as_str(), "f");
        assert_eq!(leftovers[0].qualifier, "$LATEST");
        assert_eq!(leftovers[1].enqueued_ms, 1_002);
        assert_eq!(queue.held(), (2, 9));
    }

    #[tokio::test]
    async fn finish_and_retry_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = open(dir.path());
        let a = queue.append(event(1, "aaaa")).await.unwrap();
        let b = queue.append(event(2, "bb")).await.unwrap();
        queue.finish(a.id);
        queue.retry_later(b.id, 2, 123_456);
        queue.flush().await.unwrap();
        assert_eq!(queue.held(), (1, 2));
        drop(queue);

        let (queue, leftovers) = open(dir.path());
        assert_eq!(leftovers.len(), 1);
        assert_eq!(leftovers[0].id, b.id);
        assert_eq!(leftovers[0].attempts, 2);
        assert_eq!(leftovers[0].not_before_ms, 123_456);
        assert_eq!(queue.held(), (1, 2));
    }

    #[tokio::test]
    async fn finish_of_unknown_id_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = open(dir.path());
        let a = queue.append(event(1, "x")).await.unwrap();
        queue.finish(a.id + 1000);
        queue.finish(a.id);
        queue.finish(a.id);
        queue.retry_later(a.id, 1, 5);
        queue.flush().await.unwrap();
        assert_eq!(queue.held(), (0, 0));
        let b = queue.append(event(2, "y")).await.unwrap();
        assert!(b.id > a.id, "ids are not reused");
        drop(queue);
        let (_, leftovers) = open(dir.path());
        assert_eq!(leftovers.len(), 1);
        assert_eq!(leftovers[0].id, b.id);
        assert_eq!(leftovers[0].attempts, 0);
    }

    #[tokio::test]
    async fn finish_and_append_replaces_atomically_and_ignores_limits() {
        let dir = tempfile::tempdir().unwrap();
        let limits = QueueLimits {
            max_events: 1,
            ..QueueLimits::default()
        };
        let (queue, _) = EventQueue::open(dir.path(), limits).unwrap();
        let a = queue.append(event(1, "abc")).await.unwrap();
        let record = queue
            .finish_and_append(a.id, event(2, "record"))
            .await
            .unwrap();
        assert!(record.id > a.id);
        assert_eq!(queue.held(), (1, 6));
        // Exempt from the limits even when full.
        let other = queue.finish_and_append(999, event(3, "r2")).await.unwrap();
        assert_eq!(queue.held(), (2, 8));
        drop(queue);
        let (_, leftovers) = EventQueue::open(dir.path(), limits).unwrap();
        let ids: Vec<i64> = leftovers.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![record.id, other.id]);
        assert_eq!(leftovers[0].request_id, "req-2");
    }

    #[tokio::test]
    async fn append_beyond_limits_is_refused_until_events_finish() {
        let dir = tempfile::tempdir().unwrap();
        let limits = QueueLimits {
            max_events: 2,
            max_bytes: 10,
            max_batch: 8,
        };
        let (queue, _) = EventQueue::open(dir.path(), limits).unwrap();
        let a = queue.append(event(1, "12345")).await.unwrap();
        let err = queue.append(event(2, "123456")).await.unwrap_err();
        assert!(
            matches!(
                err,
                QueueError::Full {
                    events: 1,
                    bytes: 5
                }
            ),
            "{err:?}"
        );
        queue.append(event(3, "12345")).await.unwrap();
        let err = queue.append(event(4, "")).await.unwrap_err();
        assert!(matches!(err, QueueError::Full { events: 2, .. }), "{err:?}");
        queue.finish(a.id);
        queue.flush().await.unwrap();
        queue.append(event(5, "1")).await.unwrap();
        assert_eq!(queue.held(), (2, 6));
        drop(queue);
        // Reopening counts what is held again.
        let (queue, leftovers) = EventQueue::open(dir.path(), limits).unwrap();
        assert_eq!(leftovers.len(), 2);
        assert!(matches!(
            queue.append(event(6, "")).await,
            Err(QueueError::Full { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = open(dir.path());
        queue.append(event(0, "warm-up")).await.unwrap();
        let before = queue.commit_count();
        // Hold the writer after it takes the first command until all 64 are queued, so the
        // batch does not depend on thread timing.
        let gate = queue.front.counters.gate.lock().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 1..=64 {
            let queue = queue.clone();
            tasks.spawn(async move { queue.append(event(n, "payload")).await.map(|e| e.id) });
        }
        let started = Instant::now();
        while queue.held().0 < 65 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "appends not queued"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(gate);
        let mut ids = Vec::new();
        while let Some(id) = tasks.join_next().await {
            ids.push(id.unwrap().unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 64);
        let commits = queue.commit_count() - before;
        assert_eq!(commits, 1, "64 appends took {commits} commits");
    }

    /// A request id `insert` refuses in tests, to make one command of a group fail.
    pub(super) const POISON_REQUEST_ID: &str = "poison";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_failing_command_does_not_fail_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = open(dir.path());
        queue.append(event(0, "warm-up")).await.unwrap();
        let gate = queue.front.counters.gate.lock().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 1..=6 {
            let queue = queue.clone();
            let mut e = event(n, "payload");
            if n == 3 {
                e.request_id = POISON_REQUEST_ID.into();
            }
            tasks.spawn(async move { (n, queue.append(e).await.map(|e| e.id)) });
        }
        let started = Instant::now();
        while queue.held().0 < 7 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "appends not queued"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(gate);
        let mut ok = 0;
        while let Some(joined) = tasks.join_next().await {
            let (n, result) = joined.unwrap();
            match result {
                Ok(_) => ok += 1,
                Err(QueueError::Store(_)) => assert_eq!(n, 3, "only the poisoned append fails"),
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!(ok, 5);
        assert_eq!(queue.held().0, 6, "the refused event is not counted");
        drop(queue);
        let (_, events) = open(dir.path());
        assert_eq!(events.len(), 6);
        assert!(events.iter().all(|e| e.request_id != POISON_REQUEST_ID));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_cut_at_max_batch() {
        let dir = tempfile::tempdir().unwrap();
        let limits = QueueLimits {
            max_batch: 4,
            ..QueueLimits::default()
        };
        let (queue, _) = EventQueue::open(dir.path(), limits).unwrap();
        queue.append(event(0, "warm-up")).await.unwrap();
        let before = queue.commit_count();
        let gate = queue.front.counters.gate.lock().unwrap();
        let appends: Vec<_> = (1..=8)
            .map(|n| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.append(event(n, "p")).await })
            })
            .collect();
        let started = Instant::now();
        while queue.held().0 < 9 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "appends not queued"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(gate);
        for a in appends {
            a.await.unwrap().unwrap();
        }
        assert_eq!(queue.commit_count() - before, 2);
    }

    #[tokio::test]
    async fn scheduled_fire_stores_events_and_mark_together() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = open(dir.path());
        assert_eq!(queue.schedule_mark("nightly"), None);
        let stored = queue
            .append_scheduled(
                vec![event(1, "one"), event(2, "two")],
                "nightly".into(),
                60_000,
            )
            .await
            .unwrap()
            .expect("a first fire is stored");
        assert_eq!(stored.len(), 2);
        assert!(stored[1].id > stored[0].id);
        assert_eq!(stored[0].request_id, "req-1");
        assert_eq!(queue.schedule_mark("nightly"), Some(60_000));
        assert_eq!(queue.held(), (2, 6));
        drop(queue);
        let (queue, leftovers) = open(dir.path());
        assert_eq!(leftovers.len(), 2);
        assert_eq!(queue.schedule_mark("nightly"), Some(60_000));
        assert_eq!(
            queue.schedule_marks(),
            HashMap::from([("nightly".to_owned(), 60_000)])
        );
    }

    #[tokio::test]
    async fn a_due_time_at_or_before_the_mark_is_not_fired_again() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = open(dir.path());
        queue
            .append_scheduled(vec![event(1, "a")], "r".into(), 120_000)
            .await
            .unwrap()
            .unwrap();
        for due in [120_000, 60_000] {
            let again = queue
                .append_scheduled(vec![event(2, "bb")], "r".into(), due)
                .await
                .unwrap();
            assert!(again.is_none(), "due {due} fired twice");
        }
        // Nothing was stored or held for the refused fires; the mark did not move back.
        assert_eq!(queue.held(), (1, 1));
        assert_eq!(queue.schedule_mark("r"), Some(120_000));
        // Another rule has its own mark; a later due time fires.
        assert!(queue
            .append_scheduled(vec![event(3, "c")], "other".into(), 60_000)
            .await
            .unwrap()
            .is_some());
        assert!(queue
            .append_scheduled(vec![], "r".into(), 180_000)
            .await
            .unwrap()
            .is_some());
        assert_eq!(queue.schedule_mark("r"), Some(180_000));
        drop(queue);
        // Across a restart (a crash after the commit) the same due time is still refused.
        let (queue, leftovers) = open(dir.path());
        assert_eq!(leftovers.len(), 2);
        assert!(queue
            .append_scheduled(vec![event(4, "d")], "r".into(), 180_000)
            .await
            .unwrap()
            .is_none());
        drop(queue);
        let (_, leftovers) = open(dir.path());
        assert_eq!(leftovers.len(), 2);
    }

    #[tokio::test]
    async fn a_scheduled_fire_that_does_not_fit_is_refused_without_a_mark() {
        let dir = tempfile::tempdir().unwrap();
        let limits = QueueLimits {
            max_events: 2,
            ..QueueLimits::default()
        };
        let (queue, _) = EventQueue::open(dir.path(), limits).unwrap();
        queue.append(event(0, "x")).await.unwrap();
        let err = queue
            .append_scheduled(vec![event(1, "a"), event(2, "b")], "r".into(), 60_000)
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::Full { events: 1, .. }), "{err:?}");
        assert_eq!(queue.schedule_mark("r"), None);
        assert_eq!(queue.held(), (1, 1));
        // The same due time can be tried again once there is room.
        assert!(queue
            .append_scheduled(vec![event(1, "a")], "r".into(), 60_000)
            .await
            .unwrap()
            .is_some());
        assert_eq!(queue.held(), (2, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_fires_of_one_due_time_in_one_group_store_one() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = open(dir.path());
        queue.append(event(0, "warm-up")).await.unwrap();
        let gate = queue.front.counters.gate.lock().unwrap();
        let fires: Vec<_> = (1..=2)
            .map(|n| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    queue
                        .append_scheduled(vec![event(n, "p")], "r".into(), 60_000)
                        .await
                })
            })
            .collect();
        let started = Instant::now();
        while queue.held().0 < 3 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "fires not queued"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(gate);
        let mut stored = 0;
        for fire in fires {
            if fire.await.unwrap().unwrap().is_some() {
                stored += 1;
            }
        }
        assert_eq!(stored, 1);
        assert_eq!(queue.held().0, 2);
    }

    #[tokio::test]
    async fn migrates_a_version_1_queue_keeping_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(QUEUE_DB_FILE_NAME);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO events (request_id, function, qualifier, payload, enqueued_ms) \
                 VALUES ('old', 'f', '$LATEST', x'7b7d', 5)",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let (queue, leftovers) = open(dir.path());
        assert_eq!(leftovers.len(), 1);
        assert_eq!(leftovers[0].request_id, "old");
        assert!(queue.schedule_marks().is_empty());
        assert!(queue
            .append_scheduled(vec![event(1, "a")], "r".into(), 60_000)
            .await
            .unwrap()
            .is_some());
        drop(queue);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, QUEUE_SCHEMA_VERSION);
        let (_, leftovers) = open(dir.path());
        assert_eq!(leftovers.len(), 2);
    }

    #[test]
    fn refuses_queue_from_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let conn = Connection::open(dir.path().join(QUEUE_DB_FILE_NAME)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = EventQueue::open(dir.path(), QueueLimits::default()).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn uses_wal_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir.path().join(QUEUE_DB_FILE_NAME)).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2));
    }

    const CRASH_DIR_ENV: &str = "SERVAL_QUEUE_CRASH_CHILD_DIR";

    /// The child half of `acknowledged_events_survive_sigkill`: appends from 16 tasks
    /// forever, printing each acknowledged id. Does nothing when run as a normal test.
    #[test]
    fn crash_child_appends_until_killed() {
        let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (queue, _) = open(Path::new(&dir));
            let mut tasks = tokio::task::JoinSet::new();
            for task in 0..16 {
                let queue = queue.clone();
                tasks.spawn(async move {
                    for n in 0.. {
                        let e = queue.append(event(task * 1_000_000 + n, "crash")).await;
                        let id = e.unwrap().id;
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "acked {id}").unwrap();
                        out.flush().unwrap();
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        });
    }

    #[test]
    fn acknowledged_events_survive_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "queue::tests::crash_child_appends_until_killed",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut acked = Vec::new();
        let mut killed = false;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("acked ") {
                acked.push(id.parse::<i64>().unwrap());
            }
            if !killed && acked.len() >= 500 {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(killed, "child ended before being killed: {status}");
        let (_, leftovers) = open(dir.path());
        let stored: std::collections::HashSet<i64> = leftovers.iter().map(|e| e.id).collect();
        let lost: Vec<i64> = acked
            .iter()
            .copied()
            .filter(|id| !stored.contains(id))
            .collect();
        assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
        assert!(stored.len() >= acked.len());
        eprintln!(
            "{} acknowledged before SIGKILL, {} stored",
            acked.len(),
            stored.len()
        );
    }

    /// Appends per second and acknowledgement latency with 64 concurrent tasks, each finishing
    /// its event once acknowledged (the steady state of the dispatcher). Prints; asserts
    /// nothing about speed.
    #[test]
    #[ignore = "benchmark: cargo test -p serval-store --release --lib bench_queue -- --ignored --nocapture"]
    fn bench_queue_appends_with_64_tasks() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
        runtime.block_on(async move {
            let (queue, _) = open(dir.path());
            let run_for = Duration::from_secs(5);
            let before = queue.commit_count();
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for task in 0..64 {
                let queue = queue.clone();
                tasks.spawn(async move {
                    let mut latencies = Vec::new();
                    let mut n = 0;
                    while started.elapsed() < run_for {
                        let t = Instant::now();
                        let e = queue
                            .append(event(task * 10_000_000 + n, "{\"key\":\"value\",\"n\":12345}"))
                            .await
                            .unwrap();
                        latencies.push(t.elapsed());
                        queue.finish(e.id);
                        n += 1;
                    }
                    latencies
                });
            }
            let mut latencies = Vec::new();
            while let Some(l) = tasks.join_next().await {
                latencies.extend(l.unwrap());
            }
            let elapsed = started.elapsed();
            queue.flush().await.unwrap();
            let commits = queue.commit_count() - before;
            latencies.sort();
            let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
            println!(
                "appends: {} in {:.2?} = {:.0}/s; commits: {} ({:.1} records each); ack p50 {:.2?} p99 {:.2?} max {:.2?}",
                latencies.len(),
                elapsed,
                latencies.len() as f64 / elapsed.as_secs_f64(),
                commits,
                latencies.len() as f64 * 2.0 / commits as f64,
                pct(0.50),
                pct(0.99),
                latencies[latencies.len() - 1],
            );
        });
    }
}
