//! HTTP APIs (`http_apis`) and their integrations, routes and stages (`http_api_parts`).
//!
//! For: plain storage of API Gateway v2 HTTP APIs as JSON records: put, get, list and delete
//! of an API and of each kind of part, a whole API written at once (quick create), and
//! consistent snapshots of an API with its parts for the gateway (at start-up and after each
//! change). Deleting an API removes its parts (`ON DELETE CASCADE`).
//!
//! Not for: their rules (unique route keys, targets that exist, stage names, limits): the API
//! checks those under its mutation lock before it writes, so these calls need no
//! read-check-write transactions of their own.

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serval_model::{ApiIntegration, ApiRoute, ApiStage, HttpApi, HttpApiSnapshot};

use crate::versions::{decode, encode, missing_or_db};
use crate::{Store, StoreError};

/// The kinds of rows in `http_api_parts`, as the `kind` column spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Integration,
    Route,
    Stage,
}

impl PartKind {
    fn as_str(self) -> &'static str {
        match self {
            PartKind::Integration => "integration",
            PartKind::Route => "route",
            PartKind::Stage => "stage",
        }
    }
}

/// A record kept in `http_api_parts`: its kind and its id within the API.
trait Part: Serialize + DeserializeOwned {
    const KIND: PartKind;
    fn id(&self) -> &str;
}

impl Part for ApiIntegration {
    const KIND: PartKind = PartKind::Integration;
    fn id(&self) -> &str {
        &self.integration_id
    }
}

impl Part for ApiRoute {
    const KIND: PartKind = PartKind::Route;
    fn id(&self) -> &str {
        &self.route_id
    }
}

impl Part for ApiStage {
    const KIND: PartKind = PartKind::Stage;
    fn id(&self) -> &str {
        &self.stage_name
    }
}

fn put_api_row(conn: &Connection, api: &HttpApi) -> Result<(), StoreError> {
    let json = encode(|| format!("http api {}", api.api_id), api)?;
    conn.prepare_cached(
        "INSERT INTO http_apis (api_id, config) VALUES (?1, ?2)
         ON CONFLICT (api_id) DO UPDATE SET config = excluded.config",
    )
    .and_then(|mut stmt| stmt.execute(params![api.api_id, json]))
    .map_err(StoreError::db("put http api"))?;
    Ok(())
}

fn put_part_row<P: Part>(conn: &Connection, api_id: &str, part: &P) -> Result<(), StoreError> {
    let kind = P::KIND.as_str();
    let json = encode(
        || format!("{kind} {} of http api {api_id}", part.id()),
        part,
    )?;
    conn.prepare_cached(
        "INSERT INTO http_api_parts (api_id, kind, id, config) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (api_id, kind, id) DO UPDATE SET config = excluded.config",
    )
    .and_then(|mut stmt| stmt.execute(params![api_id, kind, part.id(), json]))
    .map_err(missing_or_db(
        format_args!("http api {api_id}"),
        "put http api part",
    ))?;
    Ok(())
}

fn get_api_row(conn: &Connection, api_id: &str) -> Result<Option<HttpApi>, StoreError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT config FROM http_apis WHERE api_id = ?1")
        .and_then(|mut stmt| stmt.query_row([api_id], |r| r.get(0)).optional())
        .map_err(StoreError::db("read http api"))?;
    json.map(|j| decode(|| format!("http api {api_id}"), &j))
        .transpose()
}

fn list_part_rows<P: Part>(conn: &Connection, api_id: &str) -> Result<Vec<P>, StoreError> {
    let kind = P::KIND.as_str();
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, config FROM http_api_parts WHERE api_id = ?1 AND kind = ?2 ORDER BY id",
        )
        .map_err(StoreError::db("list http api parts"))?;
    let rows = stmt
        .query_map(params![api_id, kind], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(StoreError::db("list http api parts"))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json) = row.map_err(StoreError::db("list http api parts"))?;
        out.push(decode(
            || format!("{kind} {id} of http api {api_id}"),
            &json,
        )?);
    }
    Ok(out)
}

/// The API and its parts, read on one connection (the caller holds a transaction).
fn snapshot_of(conn: &Connection, api_id: &str) -> Result<Option<HttpApiSnapshot>, StoreError> {
    let Some(api) = get_api_row(conn, api_id)? else {
        return Ok(None);
    };
    Ok(Some(HttpApiSnapshot {
        integrations: list_part_rows(conn, api_id)?,
        routes: list_part_rows(conn, api_id)?,
        stages: list_part_rows(conn, api_id)?,
        api,
    }))
}

impl Store {
    /// Creates or replaces an HTTP API's own record (its parts are kept).
    pub fn put_http_api(&self, api: &HttpApi) -> Result<(), StoreError> {
        let w = self.writer();
        put_api_row(&w.conn, api)
    }

    /// Makes the stored API exactly `snapshot` in one transaction: the API record is created
    /// or replaced, and its parts become the snapshot's (others are removed). Used by quick
    /// create, which makes an API, an integration, a route and a stage at once.
    pub fn put_http_api_snapshot(&self, snapshot: &HttpApiSnapshot) -> Result<(), StoreError> {
        let api_id = snapshot.api.api_id.as_str();
        let mut w = self.writer();
        let tx = w
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin put http api"))?;
        put_api_row(&tx, &snapshot.api)?;
        tx.prepare_cached("DELETE FROM http_api_parts WHERE api_id = ?1")
            .and_then(|mut stmt| stmt.execute([api_id]))
            .map_err(StoreError::db("put http api"))?;
        for integration in &snapshot.integrations {
            put_part_row(&tx, api_id, integration)?;
        }
        for route in &snapshot.routes {
            put_part_row(&tx, api_id, route)?;
        }
        for stage in &snapshot.stages {
            put_part_row(&tx, api_id, stage)?;
        }
        tx.commit().map_err(StoreError::db("commit put http api"))
    }

    /// One HTTP API's record, or `None`.
    pub fn get_http_api(&self, api_id: &str) -> Result<Option<HttpApi>, StoreError> {
        get_api_row(&self.reader(), api_id)
    }

    /// Every HTTP API's record, by API id.
    pub fn list_http_apis(&self) -> Result<Vec<HttpApi>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT api_id, config FROM http_apis ORDER BY api_id")
            .map_err(StoreError::db("list http apis"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(StoreError::db("list http apis"))?;
        let mut out = Vec::new();
        for row in rows {
            let (api_id, json) = row.map_err(StoreError::db("list http apis"))?;
            out.push(decode(|| format!("http api {api_id}"), &json)?);
        }
        Ok(out)
    }

    /// Deletes an HTTP API with its integrations, routes and stages; `false` if it did not
    /// exist.
    pub fn delete_http_api(&self, api_id: &str) -> Result<bool, StoreError> {
        let w = self.writer();
        let n = w
            .conn
            .prepare_cached("DELETE FROM http_apis WHERE api_id = ?1")
            .and_then(|mut stmt| stmt.execute([api_id]))
            .map_err(StoreError::db("delete http api"))?;
        Ok(n > 0)
    }

    /// One HTTP API with all its parts, read consistently; `None` if it does not exist.
    pub fn http_api_snapshot(&self, api_id: &str) -> Result<Option<HttpApiSnapshot>, StoreError> {
        let conn = self.reader();
        let tx = conn
            .unchecked_transaction()
            .map_err(StoreError::db("begin read http api"))?;
        let snapshot = snapshot_of(&tx, api_id)?;
        tx.finish().map_err(StoreError::db("end read http api"))?;
        Ok(snapshot)
    }

    /// Every HTTP API with its parts, read consistently, by API id (start-up loading).
    pub fn http_api_snapshots(&self) -> Result<Vec<HttpApiSnapshot>, StoreError> {
        let conn = self.reader();
        let tx = conn
            .unchecked_transaction()
            .map_err(StoreError::db("begin read http apis"))?;
        let ids: Vec<String> = {
            let mut stmt = tx
                .prepare_cached("SELECT api_id FROM http_apis ORDER BY api_id")
                .map_err(StoreError::db("list http apis"))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(StoreError::db("list http apis"))?;
            rows.collect::<Result<_, _>>()
                .map_err(StoreError::db("list http apis"))?
        };
        let mut out = Vec::with_capacity(ids.len());
        for api_id in &ids {
            if let Some(snapshot) = snapshot_of(&tx, api_id)? {
                out.push(snapshot);
            }
        }
        tx.finish().map_err(StoreError::db("end read http apis"))?;
        Ok(out)
    }

    /// Creates or replaces an integration of an API. `NotFound` if the API does not exist.
    pub fn put_api_integration(
        &self,
        api_id: &str,
        integration: &ApiIntegration,
    ) -> Result<(), StoreError> {
        self.put_part(api_id, integration)
    }

    /// One integration of an API, or `None`.
    pub fn get_api_integration(
        &self,
        api_id: &str,
        integration_id: &str,
    ) -> Result<Option<ApiIntegration>, StoreError> {
        self.get_part(api_id, integration_id)
    }

    /// An API's integrations by id (empty if the API does not exist).
    pub fn list_api_integrations(&self, api_id: &str) -> Result<Vec<ApiIntegration>, StoreError> {
        list_part_rows(&self.reader(), api_id)
    }

    /// Deletes an integration; `false` if it did not exist.
    pub fn delete_api_integration(
        &self,
        api_id: &str,
        integration_id: &str,
    ) -> Result<bool, StoreError> {
        self.delete_part(PartKind::Integration, api_id, integration_id)
    }

    /// Creates or replaces a route of an API. `NotFound` if the API does not exist.
    pub fn put_api_route(&self, api_id: &str, route: &ApiRoute) -> Result<(), StoreError> {
        self.put_part(api_id, route)
    }

    /// One route of an API, or `None`.
    pub fn get_api_route(
        &self,
        api_id: &str,
        route_id: &str,
    ) -> Result<Option<ApiRoute>, StoreError> {
        self.get_part(api_id, route_id)
    }

    /// An API's routes by id (empty if the API does not exist).
    pub fn list_api_routes(&self, api_id: &str) -> Result<Vec<ApiRoute>, StoreError> {
        list_part_rows(&self.reader(), api_id)
    }

    /// Deletes a route; `false` if it did not exist.
    pub fn delete_api_route(&self, api_id: &str, route_id: &str) -> Result<bool, StoreError> {
        self.delete_part(PartKind::Route, api_id, route_id)
    }

    /// Creates or replaces a stage of an API (keyed by its name). `NotFound` if the API does
    /// not exist.
    pub fn put_api_stage(&self, api_id: &str, stage: &ApiStage) -> Result<(), StoreError> {
        self.put_part(api_id, stage)
    }

    /// One stage of an API, or `None`.
    pub fn get_api_stage(
        &self,
        api_id: &str,
        stage_name: &str,
    ) -> Result<Option<ApiStage>, StoreError> {
        self.get_part(api_id, stage_name)
    }

    /// An API's stages by name (empty if the API does not exist).
    pub fn list_api_stages(&self, api_id: &str) -> Result<Vec<ApiStage>, StoreError> {
        list_part_rows(&self.reader(), api_id)
    }

    /// Deletes a stage; `false` if it did not exist.
    pub fn delete_api_stage(&self, api_id: &str, stage_name: &str) -> Result<bool, StoreError> {
        self.delete_part(PartKind::Stage, api_id, stage_name)
    }

    fn put_part<P: Part>(&self, api_id: &str, part: &P) -> Result<(), StoreError> {
        let w = self.writer();
        put_part_row(&w.conn, api_id, part)
    }

    fn get_part<P: Part>(&self, api_id: &str, id: &str) -> Result<Option<P>, StoreError> {
        let kind = P::KIND.as_str();
        let conn = self.reader();
        let json: Option<String> = conn
            .prepare_cached(
                "SELECT config FROM http_api_parts WHERE api_id = ?1 AND kind = ?2 AND id = ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![api_id, kind, id], |r| r.get(0))
                    .optional()
            })
            .map_err(StoreError::db("read http api part"))?;
        json.map(|j| decode(|| format!("{kind} {id} of http api {api_id}"), &j))
            .transpose()
    }

    fn delete_part(&self, kind: PartKind, api_id: &str, id: &str) -> Result<bool, StoreError> {
        let w = self.writer();
        let n = w
            .conn
            .prepare_cached(
                "DELETE FROM http_api_parts WHERE api_id = ?1 AND kind = ?2 AND id = ?3",
            )
            .and_then(|mut stmt| stmt.execute(params![api_id, kind.as_str(), id]))
            .map_err(StoreError::db("delete http api part"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn api(id: &str) -> HttpApi {
        HttpApi {
            api_id: id.into(),
            name: format!("api {id}"),
            description: None,
            protocol_type: "HTTP".into(),
            route_selection_expression: "$request.method $request.path".into(),
            api_key_selection_expression: "$request.header.x-api-key".into(),
            cors: None,
            created_date: "2026-11-25T10:00:00Z".into(),
            disable_execute_api_endpoint: false,
            version: None,
            tags: BTreeMap::new(),
        }
    }

    fn integration(id: &str) -> ApiIntegration {
        ApiIntegration {
            integration_id: id.into(),
            integration_type: "AWS_PROXY".into(),
            integration_uri: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            payload_format_version: "2.0".into(),
            timeout_in_millis: 30_000,
            description: None,
            integration_method: Some("POST".into()),
            connection_type: "INTERNET".into(),
            api_gateway_managed: false,
        }
    }

    fn route(id: &str, key: &str) -> ApiRoute {
        ApiRoute {
            route_id: id.into(),
            route_key: key.into(),
            target: Some("integrations/i1".into()),
            authorization_type: "NONE".into(),
            api_key_required: false,
            operation_name: None,
            api_gateway_managed: false,
        }
    }

    fn stage(name: &str) -> ApiStage {
        ApiStage {
            stage_name: name.into(),
            auto_deploy: true,
            description: None,
            stage_variables: BTreeMap::new(),
            created_date: "2026-11-25T10:00:00Z".into(),
            last_updated_date: "2026-11-25T10:00:00Z".into(),
            tags: BTreeMap::new(),
            api_gateway_managed: false,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn puts_replaces_gets_lists_and_deletes_apis() {
        let (_dir, store) = open();
        assert_eq!(store.get_http_api("a1").unwrap(), None);
        store.put_http_api(&api("b2")).unwrap();
        store.put_http_api(&api("a1")).unwrap();
        let mut renamed = api("a1");
        renamed.name = "renamed".into();
        store.put_http_api(&renamed).unwrap();
        assert_eq!(store.get_http_api("a1").unwrap(), Some(renamed.clone()));
        let ids: Vec<String> = store
            .list_http_apis()
            .unwrap()
            .into_iter()
            .map(|a| a.api_id)
            .collect();
        assert_eq!(ids, ["a1", "b2"]);
        assert!(store.delete_http_api("a1").unwrap());
        assert!(!store.delete_http_api("a1").unwrap());
        assert_eq!(store.get_http_api("a1").unwrap(), None);
        assert_eq!(store.list_http_apis().unwrap(), [api("b2")]);
    }

    #[test]
    fn keeps_parts_by_kind_and_id() {
        let (_dir, store) = open();
        store.put_http_api(&api("a1")).unwrap();
        store.put_api_integration("a1", &integration("i1")).unwrap();
        store.put_api_route("a1", &route("r2", "GET /b")).unwrap();
        store.put_api_route("a1", &route("r1", "GET /a")).unwrap();
        store.put_api_stage("a1", &stage("$default")).unwrap();
        store.put_api_stage("a1", &stage("dev")).unwrap();

        // The same id under another kind is another record.
        store.put_api_stage("a1", &stage("i1")).unwrap();
        assert_eq!(
            store.get_api_integration("a1", "i1").unwrap(),
            Some(integration("i1"))
        );
        assert_eq!(store.get_api_route("a1", "i1").unwrap(), None);

        let mut changed = route("r1", "POST /a");
        changed.operation_name = Some("op".into());
        store.put_api_route("a1", &changed).unwrap();
        assert_eq!(store.get_api_route("a1", "r1").unwrap(), Some(changed));
        let keys: Vec<String> = store
            .list_api_routes("a1")
            .unwrap()
            .into_iter()
            .map(|r| r.route_key)
            .collect();
        assert_eq!(keys, ["POST /a", "GET /b"]);
        let stages: Vec<String> = store
            .list_api_stages("a1")
            .unwrap()
            .into_iter()
            .map(|s| s.stage_name)
            .collect();
        assert_eq!(stages, ["$default", "dev", "i1"]);

        assert!(store.delete_api_route("a1", "r1").unwrap());
        assert!(!store.delete_api_route("a1", "r1").unwrap());
        assert!(store.delete_api_stage("a1", "dev").unwrap());
        assert!(!store.delete_api_integration("a1", "r2").unwrap());
        assert!(store.delete_api_integration("a1", "i1").unwrap());
        assert_eq!(store.list_api_integrations("a1").unwrap(), []);
        assert_eq!(
            store.list_api_routes("a1").unwrap(),
            [route("r2", "GET /b")]
        );
        assert_eq!(store.list_api_stages("nope").unwrap(), []);
    }

    #[test]
    fn refuses_part_of_missing_api() {
        let (_dir, store) = open();
        let err = store
            .put_api_route("nope", &route("r1", "$default"))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        let err = store.put_api_stage("nope", &stage("dev")).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    }

    #[test]
    fn deleting_api_removes_its_parts_only() {
        let (_dir, store) = open();
        for id in ["a1", "a2"] {
            store.put_http_api(&api(id)).unwrap();
            store.put_api_integration(id, &integration("i1")).unwrap();
            store.put_api_route(id, &route("r1", "$default")).unwrap();
            store.put_api_stage(id, &stage("$default")).unwrap();
        }
        assert!(store.delete_http_api("a1").unwrap());
        assert_eq!(store.list_api_integrations("a1").unwrap(), []);
        assert_eq!(store.list_api_routes("a1").unwrap(), []);
        assert_eq!(store.list_api_stages("a1").unwrap(), []);
        assert_eq!(store.http_api_snapshot("a1").unwrap(), None);
        // A new API under the same id starts empty.
        store.put_http_api(&api("a1")).unwrap();
        assert_eq!(store.list_api_routes("a1").unwrap(), []);
        assert_eq!(store.list_api_routes("a2").unwrap().len(), 1);
    }

    #[test]
    fn snapshots_hold_api_and_all_parts() {
        let (_dir, store) = open();
        store.put_http_api(&api("b2")).unwrap();
        store.put_http_api(&api("a1")).unwrap();
        store.put_api_integration("a1", &integration("i1")).unwrap();
        store.put_api_route("a1", &route("r1", "GET /x")).unwrap();
        store.put_api_stage("a1", &stage("$default")).unwrap();
        let expected = HttpApiSnapshot {
            api: api("a1"),
            integrations: vec![integration("i1")],
            routes: vec![route("r1", "GET /x")],
            stages: vec![stage("$default")],
        };
        assert_eq!(
            store.http_api_snapshot("a1").unwrap(),
            Some(expected.clone())
        );
        assert_eq!(store.http_api_snapshot("zz").unwrap(), None);
        let all = store.http_api_snapshots().unwrap();
        assert_eq!(
            all,
            [
                expected,
                HttpApiSnapshot {
                    api: api("b2"),
                    integrations: vec![],
                    routes: vec![],
                    stages: vec![],
                }
            ]
        );
    }

    #[test]
    fn put_snapshot_replaces_the_whole_api() {
        let (_dir, store) = open();
        store.put_http_api(&api("a1")).unwrap();
        store
            .put_api_route("a1", &route("old", "GET /old"))
            .unwrap();
        store.put_api_stage("a1", &stage("dev")).unwrap();
        let mut snapshot = HttpApiSnapshot {
            api: api("a1"),
            integrations: vec![integration("i1")],
            routes: vec![route("r1", "$default")],
            stages: vec![stage("$default")],
        };
        snapshot.api.name = "quick".into();
        store.put_http_api_snapshot(&snapshot).unwrap();
        assert_eq!(store.http_api_snapshot("a1").unwrap(), Some(snapshot));
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_http_api(&api("a1")).unwrap();
            store.put_api_stage("a1", &stage("prod")).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.http_api_snapshots().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].stages, [stage("prod")]);
    }
}
