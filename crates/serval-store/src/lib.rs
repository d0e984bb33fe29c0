//! serval-store: persistence for Serval's embedded single-node mode.
//!
//! What it keeps, under one data directory:
//! - function metadata and tags (`functions`), in SQLite (WAL) at `<data_dir>/serval.db`;
//! - published versions, aliases, reserved concurrency, event-invoke and provisioned
//!   concurrency configs (`versions`), in the same database;
//! - the durable queue of asynchronous invocations (`queue`), in its own database
//!   `<data_dir>/queue.db` with `synchronous=FULL` and group commit;
//! - code packages (`code`), content-addressed by SHA-256: the zip as uploaded at
//!   `<data_dir>/code/<hex>.zip` and its validated, read-only unpacked tree at
//!   `<data_dir>/code/<hex>/`, unpacked once per hash, and removed by
//!   `collect_unused_code` once no function references it;
//! - function logs in CloudWatch Logs' model (`logs`): groups, streams, events, with
//!   per-group retention enforced by `apply_log_retention`.
//!
//! What it is not for: deciding anything. Validation of names and configuration lives in
//! `serval-model`, business rules in the engine and the API. The API here is synchronous and
//! may block on disk; async callers wrap calls in `tokio::task::spawn_blocking`.
//!
//! A `Store` is a cheap, cloneable handle (`Arc` inside). Writes go through one SQLite
//! connection behind a mutex; reads use a second connection, which WAL lets run beside a
//! writer.

mod code;
mod db;
mod error;
mod function_urls;
mod functions;
mod http_apis;
mod logs;
mod queue;
mod rules;
mod versions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub use code::{CodeInfo, CodeLimits};
pub use error::{CodeError, StoreError};
pub use logs::{
    DescribeLogStreamsQuery, FilterLogEventsQuery, FilteredEventsPage, FilteredLogEvent,
    GetLogEventsQuery, LogEvent, LogEventsPage, LogGroupInfo, LogStreamInfo, LogStreamOrder,
    OutputLogEvent, StreamEvents, LOG_EVENTS_MAX_LIMIT, REQUEST_ID_MAX_BYTES,
};
pub use queue::{EventQueue, NewEvent, QueueError, QueueLimits, QueuedEvent, QUEUE_DB_FILE_NAME};

/// File name of the metadata database inside the data directory.
pub const DB_FILE_NAME: &str = "serval.db";
/// Folder of code packages inside the data directory.
pub const CODE_DIR_NAME: &str = "code";

/// Handle to one data directory's persistent state. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    code_root: PathBuf,
    /// Serialises making a package visible or re-using it (`put_code`) against removing it
    /// (`collect_unused_code`). `put_code` holds it only for a check and a touch or for two
    /// renames, never while unpacking. Taken before a connection's lock, never while one is
    /// held.
    code_lock: Mutex<()>,
    writer: Mutex<Writer>,
    reader: Mutex<Connection>,
}

/// The writer connection and what is cached beside it; only touched under the writer lock.
struct Writer {
    conn: Connection,
    /// `(group, stream) -> log_streams.id`, so an append batch does not look the stream up.
    stream_ids: std::collections::HashMap<(String, String), i64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`: the directory layout, the SQLite
    /// database in WAL mode, the schema (migrated by `user_version`). Removes temporary
    /// leftovers of code uploads interrupted by a crash.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let code_root = data_dir.join(CODE_DIR_NAME);
        std::fs::create_dir_all(&code_root).map_err(|source| StoreError::Io {
            operation: "create directory",
            path: code_root.clone(),
            source,
        })?;
        code::remove_stale_temporaries(&code_root);
        let db_path = data_dir.join(DB_FILE_NAME);
        let mut conn = db::connect(&db_path)?;
        db::migrate(&mut conn, &db_path)?;
        let reader = db::connect(&db_path)?;
        Ok(Store {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_owned(),
                code_root,
                code_lock: Mutex::new(()),
                writer: Mutex::new(Writer {
                    conn,
                    stream_ids: Default::default(),
                }),
                reader: Mutex::new(reader),
            }),
        })
    }

    /// The data directory this store was opened on.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The writer connection. A panic while it was held cannot leave a half-done transaction
    /// behind (rusqlite rolls back on drop), so a poisoned lock is still usable.
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The code package lock; see `Inner::code_lock`. It guards no data, so poisoning is moot.
    fn code_lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .code_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The reader connection; see `writer` about poisoning.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Store>();
    }

    #[test]
    fn open_creates_layout_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = Store::open(&data).unwrap();
        assert!(data.join(DB_FILE_NAME).is_file());
        assert!(data.join(CODE_DIR_NAME).is_dir());
        drop(store);
        let store = Store::open(&data).unwrap();
        let v: i64 = store
            .reader()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, db::SCHEMA_VERSION);
        let mode: String = store
            .reader()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_database_from_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
    }
}
