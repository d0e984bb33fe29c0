//! Published versions, aliases, and the settings kept beside a function: reserved
//! concurrency, provisioned concurrency configs, event-invoke configs.
//!
//! For: plain storage of these records (CRUD, listing, start-up loading). Not for: their
//! rules (which version an alias may point at, limits, preconditions): the API checks those
//! under its mutation lock before it writes, so these calls need no read-check-write
//! transactions of their own. Deleting a function (`delete_function`) removes all of them.

use std::fmt::Display;

use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serval_model::{
    AliasConfig, EventInvokeConfig, FunctionConfig, FunctionName, ProvisionedConcurrencyConfig,
    VersionId,
};

use crate::{Store, StoreError};

/// SQL for one table of JSON records keyed by `(function, key)`: aliases (keyed by alias
/// name) and the two settings keyed by qualifier share one implementation.
struct KeyedTable {
    /// What one record is called in errors: `alias`, `event-invoke config`, ...
    what: &'static str,
    /// `(?1 function, ?2 key, ?3 json)`, replacing a record with the same key.
    upsert: &'static str,
    /// `(?1 function, ?2 key)` -> `config`.
    get: &'static str,
    /// `(?1 function)` -> `key, config` in key order.
    list: &'static str,
    /// `()` -> `function, key, config` in function, then key order.
    all: &'static str,
    /// `(?1 function, ?2 key)`.
    delete: &'static str,
}

const ALIASES: KeyedTable = KeyedTable {
    what: "alias",
    upsert: "INSERT INTO aliases (function, name, config) VALUES (?1, ?2, ?3)
             ON CONFLICT (function, name) DO UPDATE SET config = excluded.config",
    get: "SELECT config FROM aliases WHERE function = ?1 AND name = ?2",
    list: "SELECT name, config FROM aliases WHERE function = ?1 ORDER BY name",
    all: "SELECT function, name, config FROM aliases ORDER BY function, name",
    delete: "DELETE FROM aliases WHERE function = ?1 AND name = ?2",
};

const EVENT_INVOKE_CONFIGS: KeyedTable = KeyedTable {
    what: "event-invoke config",
    upsert: "INSERT INTO event_invoke_configs (function, qualifier, config) VALUES (?1, ?2, ?3)
             ON CONFLICT (function, qualifier) DO UPDATE SET config = excluded.config",
    get: "SELECT config FROM event_invoke_configs WHERE function = ?1 AND qualifier = ?2",
    list: "SELECT qualifier, config FROM event_invoke_configs WHERE function = ?1
           ORDER BY qualifier",
    all: "SELECT function, qualifier, config FROM event_invoke_configs
          ORDER BY function, qualifier",
    delete: "DELETE FROM event_invoke_configs WHERE function = ?1 AND qualifier = ?2",
};

const PROVISIONED_CONCURRENCY: KeyedTable = KeyedTable {
    what: "provisioned concurrency config",
    upsert: "INSERT INTO provisioned_concurrency_configs (function, qualifier, config)
             VALUES (?1, ?2, ?3)
             ON CONFLICT (function, qualifier) DO UPDATE SET config = excluded.config",
    get: "SELECT config FROM provisioned_concurrency_configs
          WHERE function = ?1 AND qualifier = ?2",
    list: "SELECT qualifier, config FROM provisioned_concurrency_configs WHERE function = ?1
           ORDER BY qualifier",
    all: "SELECT function, qualifier, config FROM provisioned_concurrency_configs
          ORDER BY function, qualifier",
    delete: "DELETE FROM provisioned_concurrency_configs WHERE function = ?1 AND qualifier = ?2",
};

pub(crate) fn encode<T: Serialize>(
    what: impl FnOnce() -> String,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt {
        what: what(),
        source: Box::new(source),
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: impl FnOnce() -> String,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt {
        what: what(),
        source: Box::new(source),
    })
}

/// An integer column that must fit `T` (a version number, a concurrency).
fn column<T: TryFrom<i64>>(what: impl FnOnce() -> String, value: i64) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt {
        what: what(),
        source: format!("value {value} out of range").into(),
    })
}

/// A function name read back from a key column.
fn function_name(name: &str) -> Result<FunctionName, StoreError> {
    FunctionName::parse(name).map_err(|source| StoreError::Corrupt {
        what: format!("function name {name}"),
        source: Box::new(source),
    })
}

/// Maps an insert's failed foreign key (its parent row, such as the function or the HTTP API,
/// does not exist) to `NotFound` naming `missing`, and any other failure to `Database`.
pub(crate) fn missing_or_db<'a>(
    missing: impl Display + 'a,
    operation: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| match &source {
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::NotFound {
                name: missing.to_string(),
            }
        }
        _ => StoreError::Database { operation, source },
    }
}

/// The number of a published version's configuration (`cfg.version`), as stored.
fn published_number(cfg: &FunctionConfig) -> Result<i64, StoreError> {
    let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Corrupt {
        what: format!("version {} of function {}", cfg.version, cfg.name),
        source,
    };
    match VersionId::parse(&cfg.version) {
        Ok(VersionId::Published(n)) => {
            i64::try_from(n).map_err(|_| corrupt("version number out of range".into()))
        }
        Ok(VersionId::Latest) => Err(corrupt("$LATEST is not a published version".into())),
        Err(source) => Err(corrupt(Box::new(source))),
    }
}

impl Store {
    /// Reserves and returns the next version number of `name` (1 for the first publish).
    /// Numbers are never reused, even after a version is deleted. `NotFound` if the function
    /// does not exist.
    pub fn next_version_number(&self, name: &FunctionName) -> Result<u64, StoreError> {
        let w = self.writer();
        let mut stmt = w
            .conn
            .prepare_cached(
                "UPDATE functions SET last_version = last_version + 1 WHERE name = ?1
                 RETURNING last_version",
            )
            .map_err(StoreError::db("reserve version number"))?;
        let last: Option<i64> = stmt
            .query_row([name.as_str()], |r| r.get(0))
            .optional()
            .map_err(StoreError::db("reserve version number"))?;
        match last {
            Some(n) => column(|| format!("last version of function {name}"), n),
            None => Err(StoreError::NotFound {
                name: name.to_string(),
            }),
        }
    }

    /// Stores a published version (`cfg.version` is its number as text). Versions are
    /// immutable: storing a number that exists is `AlreadyExists`.
    pub fn put_version(&self, cfg: &FunctionConfig) -> Result<(), StoreError> {
        let name = &cfg.name;
        let version = published_number(cfg)?;
        let json = encode(|| format!("version {version} of function {name}"), cfg)?;
        let mut w = self.writer();
        let tx = w
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin put version"))?;
        // A number stored without `next_version_number` is still never handed out again.
        let found = tx
            .prepare_cached(
                "UPDATE functions SET last_version = max(last_version, ?2) WHERE name = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![name.as_str(), version]))
            .map_err(StoreError::db("put version"))?;
        if found == 0 {
            return Err(StoreError::NotFound {
                name: name.to_string(),
            });
        }
        let inserted = tx
            .prepare_cached(
                "INSERT INTO function_versions (function, version, config) VALUES (?1, ?2, ?3)
                 ON CONFLICT (function, version) DO NOTHING",
            )
            .and_then(|mut stmt| stmt.execute(params![name.as_str(), version, json]))
            .map_err(StoreError::db("put version"))?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists {
                name: format!("{name}:{version}"),
            });
        }
        tx.commit().map_err(StoreError::db("commit put version"))
    }

    /// One published version, or `None`.
    pub fn get_version(
        &self,
        name: &FunctionName,
        version: u64,
    ) -> Result<Option<FunctionConfig>, StoreError> {
        let Ok(number) = i64::try_from(version) else {
            return Ok(None);
        };
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT config FROM function_versions WHERE function = ?1 AND version = ?2",
            )
            .map_err(StoreError::db("read version"))?;
        let json: Option<String> = stmt
            .query_row(params![name.as_str(), number], |r| r.get(0))
            .optional()
            .map_err(StoreError::db("read version"))?;
        json.map(|j| decode(|| format!("version {version} of function {name}"), &j))
            .transpose()
    }

    /// The function's published versions in ascending number order.
    pub fn list_versions(&self, name: &FunctionName) -> Result<Vec<FunctionConfig>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT version, config FROM function_versions WHERE function = ?1
                 ORDER BY version",
            )
            .map_err(StoreError::db("list versions"))?;
        let rows = stmt
            .query_map([name.as_str()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(StoreError::db("list versions"))?;
        let mut out = Vec::new();
        for row in rows {
            let (version, json) = row.map_err(StoreError::db("list versions"))?;
            out.push(decode(
                || format!("version {version} of function {name}"),
                &json,
            )?);
        }
        Ok(out)
    }

    /// Every published version of every function (start-up).
    pub fn all_versions(&self) -> Result<Vec<FunctionConfig>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT function, version, config FROM function_versions
                 ORDER BY function, version",
            )
            .map_err(StoreError::db("list versions"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(StoreError::db("list versions"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, version, json) = row.map_err(StoreError::db("list versions"))?;
            out.push(decode(
                || format!("version {version} of function {name}"),
                &json,
            )?);
        }
        Ok(out)
    }

    /// Deletes one published version and the settings put on it (event-invoke config,
    /// provisioned concurrency config, both keyed by the version number as qualifier);
    /// `false` if it did not exist.
    pub fn delete_version(&self, name: &FunctionName, version: u64) -> Result<bool, StoreError> {
        let Ok(number) = i64::try_from(version) else {
            return Ok(false);
        };
        self.delete_with_settings(
            "DELETE FROM function_versions WHERE function = ?1 AND version = ?2",
            name,
            &number,
            &version.to_string(),
        )
    }

    /// Creates or replaces an alias.
    pub fn put_alias(&self, alias: &AliasConfig) -> Result<(), StoreError> {
        self.put_keyed(&ALIASES, &alias.function, &alias.name, alias)
    }

    /// One alias, or `None`.
    pub fn get_alias(
        &self,
        name: &FunctionName,
        alias: &str,
    ) -> Result<Option<AliasConfig>, StoreError> {
        self.get_keyed(&ALIASES, name, alias)
    }

    /// The function's aliases in name order.
    pub fn list_aliases(&self, name: &FunctionName) -> Result<Vec<AliasConfig>, StoreError> {
        self.list_keyed(&ALIASES, name)
    }

    /// Every alias of every function (start-up).
    pub fn all_aliases(&self) -> Result<Vec<AliasConfig>, StoreError> {
        self.all_keyed(&ALIASES)
    }

    /// Deletes an alias and the settings put on it (event-invoke config and provisioned
    /// concurrency config keyed by the alias name); `false` if it did not exist.
    pub fn delete_alias(&self, name: &FunctionName, alias: &str) -> Result<bool, StoreError> {
        self.delete_with_settings(ALIASES.delete, name, &alias, alias)
    }

    /// Sets (`Some`) or removes (`None`) the function's reserved concurrency. `NotFound` if
    /// the function does not exist.
    pub fn set_reserved_concurrency(
        &self,
        name: &FunctionName,
        reserved: Option<u32>,
    ) -> Result<(), StoreError> {
        let w = self.writer();
        let mut stmt = w
            .conn
            .prepare_cached("UPDATE functions SET reserved_concurrency = ?2 WHERE name = ?1")
            .map_err(StoreError::db("set reserved concurrency"))?;
        let n = stmt
            .execute(params![name.as_str(), reserved])
            .map_err(StoreError::db("set reserved concurrency"))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// The function's reserved concurrency, if any. `NotFound` if the function does not exist.
    pub fn reserved_concurrency(&self, name: &FunctionName) -> Result<Option<u32>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT reserved_concurrency FROM functions WHERE name = ?1")
            .map_err(StoreError::db("read reserved concurrency"))?;
        let row: Option<Option<i64>> = stmt
            .query_row([name.as_str()], |r| r.get(0))
            .optional()
            .map_err(StoreError::db("read reserved concurrency"))?;
        match row {
            None => Err(StoreError::NotFound {
                name: name.to_string(),
            }),
            Some(None) => Ok(None),
            Some(Some(n)) => {
                column(|| format!("reserved concurrency of function {name}"), n).map(Some)
            }
        }
    }

    /// Every function's reserved concurrency, for functions that have one.
    pub fn all_reserved_concurrency(&self) -> Result<Vec<(FunctionName, u32)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, reserved_concurrency FROM functions
                 WHERE reserved_concurrency IS NOT NULL ORDER BY name",
            )
            .map_err(StoreError::db("list reserved concurrency"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(StoreError::db("list reserved concurrency"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, n) = row.map_err(StoreError::db("list reserved concurrency"))?;
            let reserved = column(|| format!("reserved concurrency of function {name}"), n)?;
            out.push((function_name(&name)?, reserved));
        }
        Ok(out)
    }

    /// Creates or replaces the event-invoke config of `(cfg.function, cfg.qualifier)`.
    pub fn put_event_invoke_config(&self, cfg: &EventInvokeConfig) -> Result<(), StoreError> {
        self.put_keyed(&EVENT_INVOKE_CONFIGS, &cfg.function, &cfg.qualifier, cfg)
    }

    /// The event-invoke config of one qualifier (`$LATEST`, a number or an alias), or `None`.
    pub fn get_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfig>, StoreError> {
        self.get_keyed(&EVENT_INVOKE_CONFIGS, name, qualifier)
    }

    /// The function's event-invoke configs, ordered by qualifier.
    pub fn list_event_invoke_configs(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<EventInvokeConfig>, StoreError> {
        self.list_keyed(&EVENT_INVOKE_CONFIGS, name)
    }

    /// Every event-invoke config (start-up).
    pub fn all_event_invoke_configs(&self) -> Result<Vec<EventInvokeConfig>, StoreError> {
        self.all_keyed(&EVENT_INVOKE_CONFIGS)
    }

    /// Deletes one event-invoke config; `false` if there was none.
    pub fn delete_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        self.delete_keyed(&EVENT_INVOKE_CONFIGS, name, qualifier)
    }

    /// Creates or replaces the provisioned concurrency config of `(cfg.function,
    /// cfg.qualifier)`.
    pub fn put_provisioned_concurrency(
        &self,
        cfg: &ProvisionedConcurrencyConfig,
    ) -> Result<(), StoreError> {
        self.put_keyed(&PROVISIONED_CONCURRENCY, &cfg.function, &cfg.qualifier, cfg)
    }

    /// The provisioned concurrency config of one qualifier, or `None`.
    pub fn get_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConcurrencyConfig>, StoreError> {
        self.get_keyed(&PROVISIONED_CONCURRENCY, name, qualifier)
    }

    /// The function's provisioned concurrency configs, ordered by qualifier.
    pub fn list_provisioned_concurrency(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<ProvisionedConcurrencyConfig>, StoreError> {
        self.list_keyed(&PROVISIONED_CONCURRENCY, name)
    }

    /// Every provisioned concurrency config (start-up).
    pub fn all_provisioned_concurrency(
        &self,
    ) -> Result<Vec<ProvisionedConcurrencyConfig>, StoreError> {
        self.all_keyed(&PROVISIONED_CONCURRENCY)
    }

    /// Deletes one provisioned concurrency config; `false` if there was none.
    pub fn delete_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        self.delete_keyed(&PROVISIONED_CONCURRENCY, name, qualifier)
    }
}

// The shared implementation of the keyed tables.
impl Store {
    fn put_keyed<T: Serialize>(
        &self,
        table: &KeyedTable,
        name: &FunctionName,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let json = encode(|| format!("{} {key} of function {name}", table.what), value)?;
        let w = self.writer();
        let mut stmt = w
            .conn
            .prepare_cached(table.upsert)
            .map_err(StoreError::db("put record"))?;
        stmt.execute(params![name.as_str(), key, json])
            .map_err(missing_or_db(name, "put record"))?;
        Ok(())
    }

    fn get_keyed<T: DeserializeOwned>(
        &self,
        table: &KeyedTable,
        name: &FunctionName,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(table.get)
            .map_err(StoreError::db("read record"))?;
        let json: Option<String> = stmt
            .query_row(params![name.as_str(), key], |r| r.get(0))
            .optional()
            .map_err(StoreError::db("read record"))?;
        json.map(|j| decode(|| format!("{} {key} of function {name}", table.what), &j))
            .transpose()
    }

    fn list_keyed<T: DeserializeOwned>(
        &self,
        table: &KeyedTable,
        name: &FunctionName,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(table.list)
            .map_err(StoreError::db("list records"))?;
        let rows = stmt
            .query_map([name.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(StoreError::db("list records"))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, json) = row.map_err(StoreError::db("list records"))?;
            out.push(decode(
                || format!("{} {key} of function {name}", table.what),
                &json,
            )?);
        }
        Ok(out)
    }

    fn all_keyed<T: DeserializeOwned>(&self, table: &KeyedTable) -> Result<Vec<T>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(table.all)
            .map_err(StoreError::db("list records"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(StoreError::db("list records"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, key, json) = row.map_err(StoreError::db("list records"))?;
            out.push(decode(
                || format!("{} {key} of function {name}", table.what),
                &json,
            )?);
        }
        Ok(out)
    }

    fn delete_keyed(
        &self,
        table: &KeyedTable,
        name: &FunctionName,
        key: &str,
    ) -> Result<bool, StoreError> {
        let w = self.writer();
        let mut stmt = w
            .conn
            .prepare_cached(table.delete)
            .map_err(StoreError::db("delete record"))?;
        let n = stmt
            .execute(params![name.as_str(), key])
            .map_err(StoreError::db("delete record"))?;
        Ok(n > 0)
    }

    /// Runs `delete` (`?1` the function, `?2` `key`) and deletes the event-invoke and
    /// provisioned concurrency configs keyed by `qualifier`, in one transaction; whether
    /// `delete` removed a row.
    fn delete_with_settings(
        &self,
        delete: &'static str,
        name: &FunctionName,
        key: &dyn rusqlite::ToSql,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        let mut w = self.writer();
        let tx = w
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin delete"))?;
        let n = tx
            .prepare_cached(delete)
            .and_then(|mut stmt| stmt.execute(params![name.as_str(), key]))
            .map_err(StoreError::db("delete record"))?;
        // A Function URL of an alias goes with the alias.
        let deletes = [
            EVENT_INVOKE_CONFIGS.delete,
            PROVISIONED_CONCURRENCY.delete,
            "DELETE FROM function_urls WHERE function = ?1 AND qualifier = ?2",
        ];
        for delete in deletes {
            tx.prepare_cached(delete)
                .and_then(|mut stmt| stmt.execute(params![name.as_str(), qualifier]))
                .map_err(StoreError::db("delete settings"))?;
        }
        tx.commit().map_err(StoreError::db("commit delete"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rusqlite::Connection;
    use serval_model::VersionId;

    use super::*;
    use crate::functions::tests::config;
    use crate::{db, DB_FILE_NAME};

    fn fname(s: &str) -> FunctionName {
        FunctionName::parse(s).unwrap()
    }

    fn create(store: &Store, name: &str) {
        store
            .create_function(&config(name, "r"), &BTreeMap::new())
            .unwrap();
    }

    /// Publishes `$LATEST` of `name` as the next version number, as the API does.
    fn publish(store: &Store, name: &str) -> u64 {
        let n = store.next_version_number(&fname(name)).unwrap();
        store.put_version(&version(name, n)).unwrap();
        n
    }

    fn version(name: &str, n: u64) -> FunctionConfig {
        let mut cfg = config(name, &format!("r{n}"));
        cfg.version = n.to_string();
        cfg
    }

    fn alias(name: &str, alias: &str, version: u64) -> AliasConfig {
        AliasConfig {
            function: fname(name),
            name: alias.into(),
            function_version: VersionId::Published(version),
            description: String::new(),
            additional_version_weights: BTreeMap::new(),
            revision_id: format!("{alias}-{version}"),
        }
    }

    fn event_invoke(name: &str, qualifier: &str, retries: u32) -> EventInvokeConfig {
        EventInvokeConfig {
            function: fname(name),
            qualifier: qualifier.into(),
            maximum_retry_attempts: Some(retries),
            maximum_event_age_secs: None,
            on_success: None,
            on_failure: Some("arn:aws:lambda:us-east-1:123456789012:function:dlq".into()),
            last_modified_ms: 1,
        }
    }

    fn provisioned(name: &str, qualifier: &str, requested: u32) -> ProvisionedConcurrencyConfig {
        ProvisionedConcurrencyConfig {
            function: fname(name),
            qualifier: qualifier.into(),
            requested,
            last_modified: "2026-01-01T00:00:00+0000".into(),
        }
    }

    fn qualifiers_of_event_invoke(store: &Store, name: &str) -> Vec<String> {
        let list = store.list_event_invoke_configs(&fname(name)).unwrap();
        list.into_iter().map(|c| c.qualifier).collect()
    }

    fn qualifiers_of_provisioned(store: &Store, name: &str) -> Vec<String> {
        let list = store.list_provisioned_concurrency(&fname(name)).unwrap();
        list.into_iter().map(|c| c.qualifier).collect()
    }

    #[test]
    fn numbers_versions_from_one_and_never_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        create(&store, "g");
        assert_eq!(publish(&store, "f"), 1);
        assert_eq!(publish(&store, "f"), 2);
        // Each function counts on its own.
        assert_eq!(publish(&store, "g"), 1);
        assert!(store.delete_version(&fname("f"), 2).unwrap());
        assert_eq!(store.next_version_number(&fname("f")).unwrap(), 3);
        // A reserved number that was never stored is not handed out again either.
        assert_eq!(store.next_version_number(&fname("f")).unwrap(), 4);
        let err = store.next_version_number(&fname("nope")).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { ref name } if name == "nope"));
    }

    #[test]
    fn put_version_refuses_duplicates_and_keeps_numbers_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        assert_eq!(publish(&store, "f"), 1);
        let mut again = version("f", 1);
        again.description = "changed".into();
        let err = store.put_version(&again).unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { ref name } if name == "f:1"));
        assert_eq!(err.aws_error_type(), "ResourceConflictException");
        // Versions are immutable: the first one stays.
        let stored = store.get_version(&fname("f"), 1).unwrap().unwrap();
        assert_eq!(stored, version("f", 1));
        // A number stored without reserving it is not handed out afterwards.
        store.put_version(&version("f", 7)).unwrap();
        assert_eq!(store.next_version_number(&fname("f")).unwrap(), 8);
        let err = store.put_version(&version("nope", 1)).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { ref name } if name == "nope"));
        // `$LATEST` or garbage is not a published version.
        for bad in ["$LATEST", "x", "0"] {
            let mut cfg = version("f", 9);
            cfg.version = bad.into();
            let err = store.put_version(&cfg).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{bad}: {err}");
        }
        assert_eq!(store.get_version(&fname("f"), 9).unwrap(), None);
        assert_eq!(store.get_version(&fname("f"), u64::MAX).unwrap(), None);
        assert!(!store.delete_version(&fname("f"), u64::MAX).unwrap());
    }

    #[test]
    fn lists_versions_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        create(&store, "a");
        for n in [10, 2, 1] {
            store.put_version(&version("f", n)).unwrap();
        }
        store.put_version(&version("a", 3)).unwrap();
        let numbers = |list: Vec<FunctionConfig>| -> Vec<(String, String)> {
            list.into_iter()
                .map(|c| (c.name.to_string(), c.version))
                .collect()
        };
        let f = |v: &str| ("f".to_string(), v.to_string());
        // Numeric, not text order: 10 comes last.
        assert_eq!(
            numbers(store.list_versions(&fname("f")).unwrap()),
            vec![f("1"), f("2"), f("10")]
        );
        assert_eq!(
            numbers(store.all_versions().unwrap()),
            vec![("a".into(), "3".into()), f("1"), f("2"), f("10")]
        );
        assert!(store.list_versions(&fname("nope")).unwrap().is_empty());
    }

    #[test]
    fn delete_version_removes_settings_keyed_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        publish(&store, "f");
        publish(&store, "f");
        for q in ["$LATEST", "1", "2", "live"] {
            store
                .put_event_invoke_config(&event_invoke("f", q, 1))
                .unwrap();
        }
        for q in ["1", "2", "live"] {
            store
                .put_provisioned_concurrency(&provisioned("f", q, 5))
                .unwrap();
        }
        store.put_alias(&alias("f", "live", 1)).unwrap();

        assert!(store.delete_version(&fname("f"), 1).unwrap());
        assert_eq!(store.get_version(&fname("f"), 1).unwrap(), None);
        assert!(store.get_version(&fname("f"), 2).unwrap().is_some());
        assert_eq!(
            qualifiers_of_event_invoke(&store, "f"),
            ["$LATEST", "2", "live"]
        );
        assert_eq!(qualifiers_of_provisioned(&store, "f"), ["2", "live"]);
        // Aliases are the API's to check, not cascaded from a version.
        assert!(store.get_alias(&fname("f"), "live").unwrap().is_some());
        assert!(!store.delete_version(&fname("f"), 1).unwrap());
    }

    #[test]
    fn puts_replaces_lists_and_deletes_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        create(&store, "a");
        for n in ["prod", "live", "beta"] {
            store.put_alias(&alias("f", n, 1)).unwrap();
        }
        store.put_alias(&alias("a", "zed", 1)).unwrap();
        let mut live = alias("f", "live", 2);
        live.additional_version_weights.insert(1, 0.25);
        store.put_alias(&live).unwrap();
        assert_eq!(
            store.get_alias(&fname("f"), "live").unwrap(),
            Some(live.clone())
        );
        assert_eq!(store.get_alias(&fname("f"), "nope").unwrap(), None);
        let names: Vec<String> = store
            .list_aliases(&fname("f"))
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["beta", "live", "prod"]);
        let all: Vec<(String, String)> = store
            .all_aliases()
            .unwrap()
            .into_iter()
            .map(|a| (a.function.to_string(), a.name))
            .collect();
        assert_eq!(all[0], ("a".to_string(), "zed".to_string()));
        assert_eq!(all.len(), 4);

        let err = store.put_alias(&alias("nope", "live", 1)).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { ref name } if name == "nope"));
    }

    #[test]
    fn delete_alias_removes_settings_keyed_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        publish(&store, "f");
        store.put_alias(&alias("f", "live", 1)).unwrap();
        store.put_alias(&alias("f", "beta", 1)).unwrap();
        for q in ["1", "live", "beta"] {
            store
                .put_event_invoke_config(&event_invoke("f", q, 0))
                .unwrap();
            store
                .put_provisioned_concurrency(&provisioned("f", q, 2))
                .unwrap();
        }
        assert!(store.delete_alias(&fname("f"), "live").unwrap());
        assert_eq!(store.get_alias(&fname("f"), "live").unwrap(), None);
        assert_eq!(qualifiers_of_event_invoke(&store, "f"), ["1", "beta"]);
        assert_eq!(qualifiers_of_provisioned(&store, "f"), ["1", "beta"]);
        assert!(!store.delete_alias(&fname("f"), "live").unwrap());
        assert!(!store.delete_alias(&fname("nope"), "live").unwrap());
    }

    #[test]
    fn puts_replaces_lists_and_deletes_event_invoke_configs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        create(&store, "a");
        for q in ["live", "$LATEST", "2", "10"] {
            store
                .put_event_invoke_config(&event_invoke("f", q, 1))
                .unwrap();
        }
        store
            .put_event_invoke_config(&event_invoke("a", "$LATEST", 1))
            .unwrap();
        let replaced = event_invoke("f", "$LATEST", 0);
        store.put_event_invoke_config(&replaced).unwrap();
        assert_eq!(
            store
                .get_event_invoke_config(&fname("f"), "$LATEST")
                .unwrap(),
            Some(replaced)
        );
        assert_eq!(
            store.get_event_invoke_config(&fname("f"), "3").unwrap(),
            None
        );
        // Ordered by qualifier as text.
        assert_eq!(
            qualifiers_of_event_invoke(&store, "f"),
            ["$LATEST", "10", "2", "live"]
        );
        let all = store.all_event_invoke_configs().unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].function, fname("a"));

        assert!(store
            .delete_event_invoke_config(&fname("f"), "live")
            .unwrap());
        assert!(!store
            .delete_event_invoke_config(&fname("f"), "live")
            .unwrap());
        assert_eq!(
            qualifiers_of_event_invoke(&store, "f"),
            ["$LATEST", "10", "2"]
        );
        let err = store
            .put_event_invoke_config(&event_invoke("nope", "$LATEST", 1))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { ref name } if name == "nope"));
    }

    #[test]
    fn puts_replaces_lists_and_deletes_provisioned_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        create(&store, "a");
        for q in ["live", "3", "1"] {
            store
                .put_provisioned_concurrency(&provisioned("f", q, 1))
                .unwrap();
        }
        store
            .put_provisioned_concurrency(&provisioned("a", "1", 1))
            .unwrap();
        store
            .put_provisioned_concurrency(&provisioned("f", "3", 9))
            .unwrap();
        assert_eq!(
            store
                .get_provisioned_concurrency(&fname("f"), "3")
                .unwrap()
                .map(|c| c.requested),
            Some(9)
        );
        assert_eq!(
            store.get_provisioned_concurrency(&fname("f"), "2").unwrap(),
            None
        );
        assert_eq!(qualifiers_of_provisioned(&store, "f"), ["1", "3", "live"]);
        let all = store.all_provisioned_concurrency().unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].function, fname("a"));

        assert!(store
            .delete_provisioned_concurrency(&fname("f"), "1")
            .unwrap());
        assert!(!store
            .delete_provisioned_concurrency(&fname("f"), "1")
            .unwrap());
        assert_eq!(qualifiers_of_provisioned(&store, "f"), ["3", "live"]);
        let err = store
            .put_provisioned_concurrency(&provisioned("nope", "1", 1))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { ref name } if name == "nope"));
    }

    #[test]
    fn sets_and_removes_reserved_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        create(&store, "g");
        create(&store, "h");
        assert_eq!(store.reserved_concurrency(&fname("f")).unwrap(), None);
        store
            .set_reserved_concurrency(&fname("f"), Some(5))
            .unwrap();
        store
            .set_reserved_concurrency(&fname("g"), Some(0))
            .unwrap();
        store
            .set_reserved_concurrency(&fname("f"), Some(7))
            .unwrap();
        assert_eq!(store.reserved_concurrency(&fname("f")).unwrap(), Some(7));
        assert_eq!(store.reserved_concurrency(&fname("g")).unwrap(), Some(0));
        assert_eq!(
            store.all_reserved_concurrency().unwrap(),
            vec![(fname("f"), 7), (fname("g"), 0)]
        );
        store.set_reserved_concurrency(&fname("f"), None).unwrap();
        assert_eq!(store.reserved_concurrency(&fname("f")).unwrap(), None);
        assert_eq!(
            store.all_reserved_concurrency().unwrap(),
            vec![(fname("g"), 0)]
        );
        // Updating `$LATEST` leaves it alone.
        store.update_function(&config("g", "r2"), None).unwrap();
        assert_eq!(store.reserved_concurrency(&fname("g")).unwrap(), Some(0));
        for result in [
            store.set_reserved_concurrency(&fname("nope"), Some(1)),
            store.set_reserved_concurrency(&fname("nope"), None),
            store.reserved_concurrency(&fname("nope")).map(|_| ()),
        ] {
            assert!(matches!(result, Err(StoreError::NotFound { ref name }) if name == "nope"));
        }
    }

    #[test]
    fn delete_function_removes_everything_and_restarts_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for name in ["f", "other"] {
            create(&store, name);
            publish(&store, name);
            publish(&store, name);
            store.put_alias(&alias(name, "live", 1)).unwrap();
            store
                .set_reserved_concurrency(&fname(name), Some(3))
                .unwrap();
            for q in ["$LATEST", "2", "live"] {
                store
                    .put_event_invoke_config(&event_invoke(name, q, 1))
                    .unwrap();
            }
            store
                .put_provisioned_concurrency(&provisioned(name, "live", 1))
                .unwrap();
        }
        assert!(store.delete_function(&fname("f")).unwrap());
        let f = fname("f");
        assert!(store.list_versions(&f).unwrap().is_empty());
        assert!(store.list_aliases(&f).unwrap().is_empty());
        assert!(store.list_event_invoke_configs(&f).unwrap().is_empty());
        assert!(store.list_provisioned_concurrency(&f).unwrap().is_empty());
        assert!(matches!(
            store.reserved_concurrency(&f),
            Err(StoreError::NotFound { .. })
        ));
        // The other function keeps all of its own.
        assert_eq!(store.all_versions().unwrap().len(), 2);
        assert_eq!(store.all_aliases().unwrap().len(), 1);
        assert_eq!(store.all_event_invoke_configs().unwrap().len(), 3);
        assert_eq!(store.all_provisioned_concurrency().unwrap().len(), 1);
        assert_eq!(
            store.all_reserved_concurrency().unwrap(),
            vec![(fname("other"), 3)]
        );
        // Created again, it starts from scratch, as in AWS.
        create(&store, "f");
        assert_eq!(store.reserved_concurrency(&f).unwrap(), None);
        assert!(store.list_versions(&f).unwrap().is_empty());
        assert_eq!(publish(&store, "f"), 1);
        assert_eq!(publish(&store, "other"), 3);
    }

    #[test]
    fn everything_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            create(&store, "f");
            publish(&store, "f");
            publish(&store, "f");
            store.delete_version(&fname("f"), 2).unwrap();
            store.put_alias(&alias("f", "live", 1)).unwrap();
            store
                .set_reserved_concurrency(&fname("f"), Some(4))
                .unwrap();
            store
                .put_event_invoke_config(&event_invoke("f", "live", 2))
                .unwrap();
            store
                .put_provisioned_concurrency(&provisioned("f", "1", 6))
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let f = fname("f");
        assert_eq!(store.get_version(&f, 1).unwrap(), Some(version("f", 1)));
        assert_eq!(
            store.get_alias(&f, "live").unwrap(),
            Some(alias("f", "live", 1))
        );
        assert_eq!(store.reserved_concurrency(&f).unwrap(), Some(4));
        assert_eq!(
            store.get_event_invoke_config(&f, "live").unwrap(),
            Some(event_invoke("f", "live", 2))
        );
        assert_eq!(
            store.get_provisioned_concurrency(&f, "1").unwrap(),
            Some(provisioned("f", "1", 6))
        );
        // The counter is durable too: 2 was handed out before the restart.
        assert_eq!(store.next_version_number(&f).unwrap(), 3);
    }

    #[test]
    fn upgrades_a_schema_version_1_database_keeping_its_functions() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config("old", "r1");
        {
            // A database as a build with only the first migration left it.
            let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
            conn.execute_batch(db::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO functions (name, config, tags) VALUES (?1, ?2, ?3)",
                params![
                    "old",
                    serde_json::to_string(&cfg).unwrap(),
                    r#"{"team":"a"}"#
                ],
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let v: i64 = store
            .reader()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, db::SCHEMA_VERSION);
        let old = fname("old");
        assert_eq!(store.get_function(&old).unwrap(), Some(cfg));
        assert_eq!(store.tags(&old).unwrap()["team"], "a");
        assert_eq!(store.reserved_concurrency(&old).unwrap(), None);
        assert!(store.list_versions(&old).unwrap().is_empty());
        assert_eq!(publish(&store, "old"), 1);
        store.put_alias(&alias("old", "live", 1)).unwrap();
        assert!(store.delete_function(&old).unwrap());
        assert!(store.all_aliases().unwrap().is_empty());
        drop(store);
        // Opening again does not migrate twice.
        let store = Store::open(dir.path()).unwrap();
        assert!(store.all_versions().unwrap().is_empty());
    }

    #[test]
    fn reports_a_corrupt_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        create(&store, "f");
        store
            .writer()
            .conn
            .execute(
                "INSERT INTO function_versions (function, version, config) VALUES ('f', 1, '{')",
                [],
            )
            .unwrap();
        let err = store.get_version(&fname("f"), 1).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { ref what, .. } if what == "version 1 of function f"),
            "{err}"
        );
        assert!(matches!(
            store.all_versions(),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
