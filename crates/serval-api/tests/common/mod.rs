//! A real store, a real engine and the API router in a temp dir, and helpers to call it.

#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serval_api::{router, ApiState};
use serval_engine::{Engine, EngineConfig};
use serval_runtimes::RuntimeSet;
use serval_sandbox::{AnySandbox, ProcessSandbox};
use serval_store::Store;
use tower::ServiceExt;

pub const REGION: &str = "us-east-1";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/lambda-role";

/// One server's worth of state in a temp dir.
pub struct Harness {
    pub router: Router,
    pub store: Store,
    pub engine: Engine,
    _dir: tempfile::TempDir,
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The AWS error type of a failed call.
    pub fn error_type(&self) -> &str {
        self.headers
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The error message, whichever spelling the model uses.
    pub fn message(&self) -> String {
        let j = self.json();
        j.get("Message")
            .or_else(|| j.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// Asserts an AWS error of `status` and type `name`.
    pub fn assert_error(&self, status: u16, name: &str) {
        assert_eq!(
            (self.status.as_u16(), self.error_type()),
            (status, name),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let j = self.json();
        assert!(j.get("Type").is_some() || j.get("__type").is_some(), "{j}");
    }
}

impl Harness {
    pub async fn new() -> Harness {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = Store::open(&dir.path().join("data")).expect("open store");
        let runtimes =
            RuntimeSet::discover(&dir.path().join("runtime")).expect("discover runtimes");
        let engine = Engine::new(
            EngineConfig::new(REGION, dir.path().join("envs")),
            AnySandbox::Process(ProcessSandbox::new().expect("process sandbox")),
            Arc::new(runtimes),
            store.clone(),
            Duration::from_secs(30 * 86_400),
        )
        .expect("start engine");
        let gateway = serval_events::Gateway::new(engine.clone(), REGION, 9000);
        let schedules = serval_events::Schedules::start(
            engine.clone(),
            serval_events::ScheduleConfig {
                region: REGION.into(),
                clock_speed: 1,
            },
        );
        let router = router(ApiState::new(
            engine.clone(),
            store.clone(),
            REGION,
            gateway,
            schedules,
        ));
        Harness {
            router,
            store,
            engine,
            _dir: dir,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("read body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(&self, method: Method, uri: &str, body: impl Into<Body>) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1:9000")
            .body(body.into())
            .unwrap();
        self.send(req).await
    }

    pub async fn json(&self, method: Method, uri: &str, body: serde_json::Value) -> Reply {
        self.call(method, uri, body.to_string()).await
    }

    /// CreateFunction with a python handler and the given extra members.
    pub async fn create(&self, name: &str, extra: serde_json::Value) -> Reply {
        let mut body = serde_json::json!({
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": { "ZipFile": b64(&python_zip("return event")) },
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.json(Method::POST, "/2015-03-31/functions", body).await
    }

    /// A CloudWatch Logs call.
    pub async fn logs(&self, op: &str, body: serde_json::Value) -> Reply {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/")
            .header("x-amz-target", format!("Logs_20140328.{op}"))
            .header("content-type", "application/x-amz-json-1.1")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A zip holding `files`.
pub fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(content.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A python package whose `app.handler` runs `body` (one statement, e.g. `return event`).
pub fn python_zip(body: &str) -> Vec<u8> {
    zip_of(&[(
        "app.py",
        &format!("def handler(event, context):\n    {body}\n"),
    )])
}

/// `:` → `%3A`, as botocore encodes ARNs in paths.
pub fn encode(arn: &str) -> String {
    arn.replace(':', "%3A").replace('$', "%24")
}
