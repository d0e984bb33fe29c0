//! Function metadata and tags: one row per function name holding its `FunctionConfig` as
//! JSON and its tags.
//!
//! For: storing and paging `$LATEST` configurations, optimistic concurrency on `RevisionId`.
//! Not for: validating configuration (serval-model) or choosing a new `RevisionId` and
//! `LastModified` (the caller sets them on the config it passes in).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rusqlite::{params, OptionalExtension};
use serval_model::{limits::LIST_MAX_ITEMS, FunctionConfig, FunctionName};

use crate::{Store, StoreError};

fn decode_config(name: &str, json: &str) -> Result<FunctionConfig, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt {
        what: format!("function {name}"),
        source: Box::new(source),
    })
}

fn decode_tags(name: &str, json: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt {
        what: format!("tags of function {name}"),
        source: Box::new(source),
    })
}

fn encode<T: serde::Serialize>(name: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt {
        what: format!("function {name}"),
        source: Box::new(source),
    })
}

/// The opaque `Marker` that continues a listing after function `name`.
fn encode_marker(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(name.as_bytes())
}

fn decode_marker(marker: &str) -> Result<String, StoreError> {
    let invalid = || StoreError::InvalidMarker {
        marker: marker.to_owned(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(marker).map_err(|_| invalid())?;
    let name = String::from_utf8(bytes).map_err(|_| invalid())?;
    FunctionName::parse(&name).map_err(|_| invalid())?;
    Ok(name)
}

impl Store {
    /// Stores a new function with its tags; `AlreadyExists` if the name is taken.
    pub fn create_function(
        &self,
        cfg: &FunctionConfig,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let name = cfg.name.as_str();
        let config = encode(name, cfg)?;
        let tags = encode(name, tags)?;
        let w = self.writer();
        let inserted = w
            .conn
            .execute(
                "INSERT INTO functions (name, config, tags) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, config, tags],
            )
            .map_err(StoreError::db("insert function"))?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// The function's stored configuration, or `None` if it does not exist.
    pub fn get_function(&self, name: &FunctionName) -> Result<Option<FunctionConfig>, StoreError> {
        let json: Option<String> = self
            .reader()
            .query_row(
                "SELECT config FROM functions WHERE name = ?1",
                [name.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::db("read function"))?;
        json.map(|j| decode_config(name.as_str(), &j)).transpose()
    }

    /// One page of functions in name order, and the `NextMarker` if more follow.
    ///
    /// `marker` is a value this method returned before (opaque; `InvalidMarker` otherwise).
    /// `max_items` is clamped to 1..=50.
    pub fn list_functions(
        &self,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<(Vec<FunctionConfig>, Option<String>), StoreError> {
        let after = marker.map(decode_marker).transpose()?.unwrap_or_default();
        let max_items = max_items.clamp(1, LIST_MAX_ITEMS);
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, config FROM functions WHERE name > ?1 ORDER BY name LIMIT ?2",
            )
            .map_err(StoreError::db("list functions"))?;
        let rows = stmt
            .query_map(params![after, (max_items + 1) as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(StoreError::db("list functions"))?;
        let mut out = Vec::with_capacity(max_items + 1);
        for row in rows {
            let (name, json) = row.map_err(StoreError::db("list functions"))?;
            out.push(decode_config(&name, &json)?);
        }
        let next = if out.len() > max_items {
            out.truncate(max_items);
            out.last().map(|c| encode_marker(c.name.as_str()))
        } else {
            None
        };
        Ok((out, next))
    }

    /// Every function, in name order (start-up, schedulers).
    pub fn all_functions(&self) -> Result<Vec<FunctionConfig>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT name, config FROM functions ORDER BY name")
            .map_err(StoreError::db("list functions"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(StoreError::db("list functions"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, json) = row.map_err(StoreError::db("list functions"))?;
            out.push(decode_config(&name, &json)?);
        }
        Ok(out)
    }

    /// Replaces the stored configuration of `cfg.name` with `cfg`.
    ///
    /// With `expected_revision_id`, fails with `RevisionMismatch` unless the stored
    /// configuration's `revision_id` equals it (checked and written in one transaction).
    /// `NotFound` if the function does not exist. The caller sets the new `revision_id`.
    pub fn update_function(
        &self,
        cfg: &FunctionConfig,
        expected_revision_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let name = cfg.name.as_str();
        let config = encode(name, cfg)?;
        let mut w = self.writer();
        let tx = w
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin update function"))?;
        let current: Option<String> = tx
            .query_row(
                "SELECT config FROM functions WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::db("read function"))?;
        let Some(current) = current else {
            return Err(StoreError::NotFound {
                name: name.to_owned(),
            });
        };
        if let Some(expected) = expected_revision_id {
            let current = decode_config(name, &current)?;
            if current.revision_id != expected {
                return Err(StoreError::RevisionMismatch {
                    name: name.to_owned(),
                    expected: expected.to_owned(),
                    actual: current.revision_id,
                });
            }
        }
        tx.execute(
            "UPDATE functions SET config = ?2 WHERE name = ?1",
            params![name, config],
        )
        .map_err(StoreError::db("update function"))?;
        tx.commit()
            .map_err(StoreError::db("commit update function"))
    }

    /// Deletes the function and its tags; `false` if it did not exist. Its published versions,
    /// aliases, reserved concurrency, event-invoke and provisioned concurrency configs go with
    /// it in the same statement (the schema cascades them), and its version numbers start
    /// again from 1 if the name is created again. Code packages and logs are left alone
    /// (other functions may share the code; logs outlive functions).
    pub fn delete_function(&self, name: &FunctionName) -> Result<bool, StoreError> {
        let n = self
            .writer()
            .conn
            .execute("DELETE FROM functions WHERE name = ?1", [name.as_str()])
            .map_err(StoreError::db("delete function"))?;
        Ok(n > 0)
    }

    /// The function's tags; `NotFound` if it does not exist.
    pub fn tags(&self, name: &FunctionName) -> Result<BTreeMap<String, String>, StoreError> {
        let json: Option<String> = self
            .reader()
            .query_row(
                "SELECT tags FROM functions WHERE name = ?1",
                [name.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::db("read tags"))?;
        match json {
            Some(j) => decode_tags(name.as_str(), &j),
            None => Err(StoreError::NotFound {
                name: name.to_string(),
            }),
        }
    }

    /// Adds or overwrites `tags` on the function; `NotFound` if it does not exist. Limits
    /// (at most 50 tags) are the caller's to check.
    pub fn tag(
        &self,
        name: &FunctionName,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.modify_tags(name, |current| {
            current.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        })
    }

    /// Removes `keys` from the function's tags (absent keys are ignored); `NotFound` if the
    /// function does not exist.
    pub fn untag(&self, name: &FunctionName, keys: &[String]) -> Result<(), StoreError> {
        self.modify_tags(name, |current| {
            for k in keys {
                current.remove(k);
            }
        })
    }

    fn modify_tags(
        &self,
        name: &FunctionName,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), StoreError> {
        let name = name.as_str();
        let mut w = self.writer();
        let tx = w
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin tag"))?;
        let json: Option<String> = tx
            .query_row("SELECT tags FROM functions WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(StoreError::db("read tags"))?;
        let Some(json) = json else {
            return Err(StoreError::NotFound {
                name: name.to_owned(),
            });
        };
        let mut tags = decode_tags(name, &json)?;
        change(&mut tags);
        tx.execute(
            "UPDATE functions SET tags = ?2 WHERE name = ?1",
            params![name, encode(name, &tags)?],
        )
        .map_err(StoreError::db("write tags"))?;
        tx.commit().map_err(StoreError::db("commit tags"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serval_model::{
        Architecture, EnvironmentVars, FunctionState, Handler, LastUpdateStatus, PackageType,
        Runtime,
    };

    pub(crate) fn config(name: &str, revision: &str) -> FunctionConfig {
        FunctionConfig {
            name: FunctionName::parse(name).unwrap(),
            runtime: Runtime::Python312,
            role: "arn:aws:iam::123456789012:role/r".into(),
            handler: Handler::parse("app.handler").unwrap(),
            description: String::new(),
            timeout_secs: 3,
            memory_mb: 128,
            ephemeral_storage_mb: 512,
            environment: EnvironmentVars::default(),
            architecture: Architecture::X86_64,
            package_type: PackageType::Zip,
            code_sha256_hex: "00".repeat(32),
            code_size: 10,
            last_modified: "2026-01-01T00:00:00.000+0000".into(),
            revision_id: revision.into(),
            version: "$LATEST".into(),
            state: FunctionState::Active,
            last_update_status: LastUpdateStatus::Successful,
        }
    }

    fn fname(s: &str) -> FunctionName {
        FunctionName::parse(s).unwrap()
    }

    #[test]
    fn creates_gets_and_refuses_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cfg = config("f1", "r1");
        let mut tags = BTreeMap::new();
        tags.insert("team".to_string(), "a".to_string());
        store.create_function(&cfg, &tags).unwrap();
        assert_eq!(store.get_function(&fname("f1")).unwrap(), Some(cfg.clone()));
        assert_eq!(store.get_function(&fname("nope")).unwrap(), None);
        let err = store.create_function(&cfg, &tags).unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { ref name } if name == "f1"));
        assert_eq!(err.aws_error_type(), "ResourceConflictException");
    }

    #[test]
    fn update_checks_revision_and_existence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .create_function(&config("f", "r1"), &BTreeMap::new())
            .unwrap();
        let mut next = config("f", "r2");
        next.memory_mb = 256;
        let err = store.update_function(&next, Some("wrong")).unwrap_err();
        assert!(matches!(err, StoreError::RevisionMismatch { ref actual, .. } if actual == "r1"));
        assert_eq!(err.aws_error_type(), "PreconditionFailedException");
        store.update_function(&next, Some("r1")).unwrap();
        assert_eq!(
            store.get_function(&fname("f")).unwrap().unwrap().memory_mb,
            256
        );
        // Without an expected revision, the update is unconditional.
        store.update_function(&config("f", "r3"), None).unwrap();
        let err = store
            .update_function(&config("gone", "x"), None)
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }));
    }

    #[test]
    fn lists_in_pages_by_name_and_rejects_bad_marker() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in (0..7).rev() {
            store
                .create_function(&config(&format!("fn-{i}"), "r"), &BTreeMap::new())
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut marker = None;
        loop {
            let (page, next) = store.list_functions(marker.as_deref(), 3).unwrap();
            assert!(page.len() <= 3);
            seen.extend(page.into_iter().map(|c| c.name.to_string()));
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        let expected: Vec<String> = (0..7).map(|i| format!("fn-{i}")).collect();
        assert_eq!(seen, expected);
        let (all, next) = store.list_functions(None, 1000).unwrap();
        assert_eq!((all.len(), next), (7, None));
        assert_eq!(store.all_functions().unwrap().len(), 7);
        for bad in ["!!!", "Zm9vLmJhcg", "_w"] {
            // invalid base64, "foo.bar" (not a function name), invalid UTF-8
            let err = store.list_functions(Some(bad), 10).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidMarker { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn deletes_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tags = BTreeMap::new();
        tags.insert("a".to_string(), "1".to_string());
        store.create_function(&config("f", "r"), &tags).unwrap();
        let mut more = BTreeMap::new();
        more.insert("b".to_string(), "2".to_string());
        more.insert("a".to_string(), "3".to_string());
        store.tag(&fname("f"), &more).unwrap();
        assert_eq!(store.tags(&fname("f")).unwrap(), more);
        store
            .untag(&fname("f"), &["a".to_string(), "zz".to_string()])
            .unwrap();
        assert_eq!(store.tags(&fname("f")).unwrap().len(), 1);
        assert!(store.delete_function(&fname("f")).unwrap());
        assert!(!store.delete_function(&fname("f")).unwrap());
        assert!(matches!(
            store.tags(&fname("f")),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.tag(&fname("f"), &more),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.untag(&fname("f"), &[]),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn functions_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .create_function(&config("keep", "r9"), &BTreeMap::new())
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store
                .get_function(&fname("keep"))
                .unwrap()
                .unwrap()
                .revision_id,
            "r9"
        );
    }
}
