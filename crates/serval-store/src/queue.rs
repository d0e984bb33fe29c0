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

use std::path::Path;

use bytes::Bytes;
use serval_model::FunctionName;

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
pub struct EventQueue {}

impl EventQueue {
    /// Opens (creating if needed) `<data_dir>/queue.db` and starts the writer thread. Returns
    /// the handle and every event accepted before and not finished, in id order.
    pub fn open(
        data_dir: &Path,
        limits: QueueLimits,
    ) -> Result<(EventQueue, Vec<QueuedEvent>), StoreError> {
        todo!("{data_dir:?}{limits:?}")
    }

    /// Stores a new event; returns once it is committed and fsync'd.
    pub async fn append(&self, event: NewEvent) -> Result<QueuedEvent, QueueError> {
        todo!("{event:?}")
    }

    /// Finishes event `id` and stores `next` (a destination's invocation record) in the same
    /// transaction; returns once it is committed. Not refused by the limits: a record of work
    /// already accepted is never dropped.
    pub async fn finish_and_append(
        &self,
        id: i64,
        next: NewEvent,
    ) -> Result<QueuedEvent, QueueError> {
        todo!("{id}{next:?}")
    }

    /// Removes a handled event (not waited on).
    pub fn finish(&self, id: i64) {
        todo!("{id}")
    }

    /// Records that event `id` failed `attempts` times and runs again at `not_before_ms`
    /// (not waited on).
    pub fn retry_later(&self, id: i64, attempts: u32, not_before_ms: i64) {
        todo!("{id}{attempts}{not_before_ms}")
    }

    /// Waits until everything handed to the writer so far is committed.
    pub async fn flush(&self) -> Result<(), QueueError> {
        todo!()
    }

    /// Events and payload bytes held now.
    pub fn held(&self) -> (usize, u64) {
        todo!()
    }
}
