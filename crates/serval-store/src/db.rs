//! SQLite connections and the schema: opening `serval.db` in WAL mode, pragmas, migrations
//! keyed on `PRAGMA user_version`.
//!
//! For: everything about how the database file is set up. Not for: queries of any one
//! feature — those live beside the feature (`functions`, `versions`, `code`, `logs`).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// The schema version this build writes; `user_version` of a fresh database after `migrate`.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// How long a connection waits on another's lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; entry `i` brings the database from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"
    CREATE TABLE functions (
        name      TEXT PRIMARY KEY NOT NULL,
        config    TEXT NOT NULL,           -- FunctionConfig as JSON
        tags      TEXT NOT NULL DEFAULT '{}'
    ) WITHOUT ROWID;

    CREATE TABLE code_packages (
        sha256_hex     TEXT PRIMARY KEY NOT NULL,
        sha256_base64  TEXT NOT NULL,
        zip_size       INTEGER NOT NULL,
        unzipped_size  INTEGER NOT NULL,
        created_ms     INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE log_groups (
        name           TEXT PRIMARY KEY NOT NULL,
        creation_ms    INTEGER NOT NULL,
        retention_days INTEGER,
        stored_bytes   INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;

    CREATE TABLE log_streams (
        id                INTEGER PRIMARY KEY,
        group_name        TEXT NOT NULL REFERENCES log_groups(name) ON DELETE CASCADE,
        name              TEXT NOT NULL,
        creation_ms       INTEGER NOT NULL,
        first_event_ms    INTEGER,
        last_event_ms     INTEGER,
        last_ingestion_ms INTEGER,
        stored_bytes      INTEGER NOT NULL DEFAULT 0,
        UNIQUE (group_name, name)
    );
    CREATE INDEX log_streams_by_last_event ON log_streams (group_name, last_event_ms, name);

    -- One row per (stream, appended batch): the events are encoded in `data` and exploded
    -- at query time, so appending costs one row per batch, not per line.
    CREATE TABLE log_chunks (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        stream_id     INTEGER NOT NULL REFERENCES log_streams(id) ON DELETE CASCADE,
        group_name    TEXT NOT NULL,
        event_count   INTEGER NOT NULL,
        min_ts        INTEGER NOT NULL,
        max_ts        INTEGER NOT NULL,
        ingestion_ms  INTEGER NOT NULL,
        bytes         INTEGER NOT NULL,
        data          BLOB NOT NULL
    );
    CREATE INDEX log_chunks_by_stream ON log_chunks (stream_id, id);
    CREATE INDEX log_chunks_by_group ON log_chunks (group_name, id);
    CREATE INDEX log_chunks_by_max_ts ON log_chunks (max_ts);
    "#,
    // 1 -> 2: published versions, aliases and per-function settings. Every table below
    // cascades from `functions`, so deleting a function removes all of it in one statement,
    // and a function created again under the same name starts from `last_version = 0`.
    r#"
    -- The last version number handed out (never reused), and reserved concurrency (NULL: none).
    ALTER TABLE functions ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE functions ADD COLUMN reserved_concurrency INTEGER;

    CREATE TABLE function_versions (
        function  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        version   INTEGER NOT NULL,
        config    TEXT NOT NULL,           -- FunctionConfig as JSON
        PRIMARY KEY (function, version)
    ) WITHOUT ROWID;

    CREATE TABLE aliases (
        function  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name      TEXT NOT NULL,
        config    TEXT NOT NULL,           -- AliasConfig as JSON
        PRIMARY KEY (function, name)
    ) WITHOUT ROWID;

    -- Keyed by the qualifier as put: `$LATEST`, a version number or an alias name.
    CREATE TABLE event_invoke_configs (
        function  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier TEXT NOT NULL,
        config    TEXT NOT NULL,           -- EventInvokeConfig as JSON
        PRIMARY KEY (function, qualifier)
    ) WITHOUT ROWID;

    -- Keyed by a version number or an alias name.
    CREATE TABLE provisioned_concurrency_configs (
        function  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier TEXT NOT NULL,
        config    TEXT NOT NULL,           -- ProvisionedConcurrencyConfig as JSON
        PRIMARY KEY (function, qualifier)
    ) WITHOUT ROWID;
    "#,
    // 2 -> 3: HTTP triggers and schedules. Function URLs cascade from their function; an
    // API's integrations, routes and stages from the API; a rule's targets from the rule.
    r#"
    -- Keyed by '$LATEST' (the unqualified function) or an alias name.
    CREATE TABLE function_urls (
        function  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier TEXT NOT NULL,
        url_id    TEXT NOT NULL UNIQUE,
        config    TEXT NOT NULL,           -- FunctionUrlConfig as JSON
        PRIMARY KEY (function, qualifier)
    ) WITHOUT ROWID;

    CREATE TABLE http_apis (
        api_id    TEXT PRIMARY KEY NOT NULL,
        config    TEXT NOT NULL            -- HttpApi as JSON
    ) WITHOUT ROWID;

    CREATE TABLE http_api_parts (
        api_id    TEXT NOT NULL REFERENCES http_apis(api_id) ON DELETE CASCADE,
        kind      TEXT NOT NULL,           -- 'integration', 'route' or 'stage'
        id        TEXT NOT NULL,           -- integration id, route id or stage name
        config    TEXT NOT NULL,           -- ApiIntegration / ApiRoute / ApiStage as JSON
        PRIMARY KEY (api_id, kind, id)
    ) WITHOUT ROWID;

    CREATE TABLE rules (
        name      TEXT PRIMARY KEY NOT NULL,
        config    TEXT NOT NULL            -- Rule as JSON
    ) WITHOUT ROWID;

    CREATE TABLE rule_targets (
        rule      TEXT NOT NULL REFERENCES rules(name) ON DELETE CASCADE,
        id        TEXT NOT NULL,
        config    TEXT NOT NULL,           -- RuleTarget as JSON
        PRIMARY KEY (rule, id)
    ) WITHOUT ROWID;
    "#,
];

/// Opens one connection to `path` with Serval's pragmas (WAL, `synchronous=NORMAL`, foreign
/// keys, busy timeout).
pub(crate) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(StoreError::db("open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::db("set busy_timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(StoreError::db("set journal_mode"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(StoreError::db("set synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(StoreError::db("set foreign_keys"))?;
    Ok(conn)
}

/// Brings the schema up to `SCHEMA_VERSION`, refusing a database from a newer Serval.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(StoreError::db("begin migration"))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::db("read user_version"))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)
            .map_err(StoreError::db("migrate schema"))?;
        tracing::info!(from, to = from + 1, "store.migrate");
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(StoreError::db("write user_version"))?;
    tx.commit().map_err(StoreError::db("commit migration"))?;
    Ok(())
}
