//! Function URL configurations (`function_urls`): one per function and qualifier (`$LATEST`
//! for the unqualified function, else an alias name), each with a server-unique URL id. Rows
//! cascade from their function; an alias's row is deleted with the alias (`versions`).

use rusqlite::{params, OptionalExtension};
use serval_model::{FunctionName, FunctionUrlConfig};

use crate::versions::{decode, encode, missing_or_db};
use crate::{Store, StoreError};

/// The row key of a URL's qualifier.
fn key(qualifier: Option<&str>) -> &str {
    qualifier.unwrap_or("$LATEST")
}

impl Store {
    /// Creates or replaces the URL configuration of `(cfg.function, cfg.qualifier)`.
    /// `NotFound` if the function does not exist.
    pub fn put_function_url(&self, cfg: &FunctionUrlConfig) -> Result<(), StoreError> {
        let json = encode(|| format!("URL config of function {}", cfg.function), cfg)?;
        let w = self.writer();
        let mut stmt = w
            .conn
            .prepare_cached(
                "INSERT INTO function_urls (function, qualifier, url_id, config)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (function, qualifier)
                 DO UPDATE SET url_id = excluded.url_id, config = excluded.config",
            )
            .map_err(StoreError::db("put function URL"))?;
        stmt.execute(params![
            cfg.function.as_str(),
            key(cfg.qualifier.as_deref()),
            cfg.url_id,
            json
        ])
        .map_err(missing_or_db(&cfg.function, "put function URL"))?;
        Ok(())
    }

    /// The URL configuration of the function (`qualifier` `None`) or one of its aliases.
    pub fn get_function_url(
        &self,
        name: &FunctionName,
        qualifier: Option<&str>,
    ) -> Result<Option<FunctionUrlConfig>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT config FROM function_urls WHERE function = ?1 AND qualifier = ?2",
            )
            .map_err(StoreError::db("read function URL"))?;
        let json: Option<String> = stmt
            .query_row(params![name.as_str(), key(qualifier)], |r| r.get(0))
            .optional()
            .map_err(StoreError::db("read function URL"))?;
        json.map(|j| decode(|| format!("URL config of function {name}"), &j))
            .transpose()
    }

    /// The function's URL configurations, ordered by qualifier.
    pub fn list_function_urls(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<FunctionUrlConfig>, StoreError> {
        self.query_function_urls(
            "SELECT config FROM function_urls WHERE function = ?1 ORDER BY qualifier",
            params![name.as_str()],
        )
    }

    /// Every URL configuration (start-up).
    pub fn all_function_urls(&self) -> Result<Vec<FunctionUrlConfig>, StoreError> {
        self.query_function_urls(
            "SELECT config FROM function_urls ORDER BY function, qualifier",
            params![],
        )
    }

    /// Deletes one URL configuration; returns it, or `None` if there was none.
    pub fn delete_function_url(
        &self,
        name: &FunctionName,
        qualifier: Option<&str>,
    ) -> Result<Option<FunctionUrlConfig>, StoreError> {
        let w = self.writer();
        let mut stmt = w
            .conn
            .prepare_cached(
                "DELETE FROM function_urls WHERE function = ?1 AND qualifier = ?2 RETURNING config",
            )
            .map_err(StoreError::db("delete function URL"))?;
        let json: Option<String> = stmt
            .query_row(params![name.as_str(), key(qualifier)], |r| r.get(0))
            .optional()
            .map_err(StoreError::db("delete function URL"))?;
        json.map(|j| decode(|| format!("URL config of function {name}"), &j))
            .transpose()
    }

    fn query_function_urls(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<FunctionUrlConfig>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(StoreError::db("list function URLs"))?;
        let rows = stmt
            .query_map(args, |r| r.get::<_, String>(0))
            .map_err(StoreError::db("list function URLs"))?;
        let mut out = Vec::new();
        for row in rows {
            let json = row.map_err(StoreError::db("list function URLs"))?;
            out.push(decode(|| "a function URL config".to_owned(), &json)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serval_model::UrlAuthType;

    use super::*;
    use crate::functions::tests::config;

    fn fname(s: &str) -> FunctionName {
        FunctionName::parse(s).unwrap()
    }

    fn url(function: &str, qualifier: Option<&str>, id: &str) -> FunctionUrlConfig {
        FunctionUrlConfig {
            function: fname(function),
            qualifier: qualifier.map(str::to_owned),
            url_id: id.to_owned(),
            auth_type: UrlAuthType::None,
            cors: None,
            invoke_mode: "BUFFERED".into(),
            creation_time: "2026-11-25T10:00:00.000+0000".into(),
            last_modified_time: "2026-11-25T10:00:00.000+0000".into(),
        }
    }

    #[test]
    fn urls_are_kept_per_qualifier_and_cascade_with_their_function() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .create_function(&config("f", "r1"), &Default::default())
            .unwrap();
        let err = store.put_function_url(&url("g", None, "x")).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

        store.put_function_url(&url("f", None, "aaa")).unwrap();
        store
            .put_function_url(&url("f", Some("live"), "bbb"))
            .unwrap();
        assert_eq!(
            store
                .get_function_url(&fname("f"), None)
                .unwrap()
                .unwrap()
                .url_id,
            "aaa"
        );
        assert_eq!(
            store
                .get_function_url(&fname("f"), Some("live"))
                .unwrap()
                .unwrap()
                .url_id,
            "bbb"
        );
        assert!(store
            .get_function_url(&fname("f"), Some("x"))
            .unwrap()
            .is_none());
        let ids: Vec<_> = store
            .list_function_urls(&fname("f"))
            .unwrap()
            .into_iter()
            .map(|u| u.url_id)
            .collect();
        assert_eq!(ids, ["aaa", "bbb"]);

        // The same URL id cannot serve two configurations.
        assert!(store
            .put_function_url(&url("f", Some("beta"), "aaa"))
            .is_err());

        let gone = store
            .delete_function_url(&fname("f"), Some("live"))
            .unwrap();
        assert_eq!(gone.unwrap().url_id, "bbb");
        assert!(store
            .delete_function_url(&fname("f"), Some("live"))
            .unwrap()
            .is_none());

        store.delete_function(&fname("f")).unwrap();
        assert!(store.all_function_urls().unwrap().is_empty());
    }
}
