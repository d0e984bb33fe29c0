//! `Invoke` through the router: the payload limit, header validation, and (with the engine)
//! real invocations of a Python function.

mod common;

use axum::body::Body;
use base64::Engine as _;
use bytes::Bytes;
use common::*;
use http::{Method, Request};
use serde_json::json;

const INVOKE_F: &str = "/2015-03-31/functions/f/invocations";

fn invoke_req(uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method(Method::POST).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

#[tokio::test]
async fn refuses_payload_over_6mb_by_content_length_with_aws_message() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    let n = 6_291_457usize;
    let r = h
        .send(invoke_req(INVOKE_F, &[], Bytes::from(vec![b'x'; n])))
        .await;
    r.assert_error(413, "RequestEntityTooLargeException");
    assert_eq!(
        r.message(),
        "6291457 byte payload is too large for the RequestResponse invocation type (limit 6291456 bytes)"
    );
}

#[tokio::test]
async fn refuses_chunked_payload_over_6mb_while_reading() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
    // Seven 1 MB chunks, no Content-Length: the limit is found while reading.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..7).map(|_| Ok(chunk.clone())).collect();
    let body = Body::from_stream(Iter(chunks.into_iter()));
    let r = h.send(invoke_req(INVOKE_F, &[], body)).await;
    r.assert_error(413, "RequestEntityTooLargeException");
    assert_eq!(
        r.message(),
        "7340032 byte payload is too large for the RequestResponse invocation type (limit 6291456 bytes)"
    );
}

#[tokio::test]
async fn validates_invocation_headers() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    h.send(invoke_req(
        INVOKE_F,
        &[("x-amz-invocation-type", "Later")],
        "{}",
    ))
    .await
    .assert_error(400, "ValidationException");
    h.send(invoke_req(
        INVOKE_F,
        &[("x-amz-log-type", "Everything")],
        "{}",
    ))
    .await
    .assert_error(400, "ValidationException");
    h.send(invoke_req(
        INVOKE_F,
        &[("x-amz-client-context", "%%%")],
        "{}",
    ))
    .await
    .assert_error(400, "InvalidParameterValueException");
    let big = "A".repeat(3584);
    h.send(invoke_req(
        INVOKE_F,
        &[("x-amz-client-context", &big)],
        "{}",
    ))
    .await
    .assert_error(400, "InvalidParameterValueException");
    h.send(invoke_req(
        "/2015-03-31/functions/f/invocations?Qualifier=3",
        &[],
        "{}",
    ))
    .await
    .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn refuses_event_payload_over_1mb_with_aws_async_message() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    let n = 1_048_577usize;
    let r = h
        .send(invoke_req(
            INVOKE_F,
            &[("x-amz-invocation-type", "Event")],
            Bytes::from(vec![b'x'; n]),
        ))
        .await;
    r.assert_error(413, "RequestEntityTooLargeException");
    assert_eq!(
        r.message(),
        "1048577 byte payload is too large for the Event invocation type (limit 1048576 bytes)"
    );
    // Chunked, without Content-Length: found while reading.
    let chunk = Bytes::from(vec![b'x'; 512 * 1024]);
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..3).map(|_| Ok(chunk.clone())).collect();
    let r = h
        .send(invoke_req(
            INVOKE_F,
            &[("x-amz-invocation-type", "Event")],
            Body::from_stream(Iter(chunks.into_iter())),
        ))
        .await;
    r.assert_error(413, "RequestEntityTooLargeException");
    assert!(r.message().contains("for the Event invocation type"));
}

#[tokio::test]
async fn event_without_a_running_queue_is_service_unavailable() {
    // The harness never starts the asynchronous dispatcher.
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    let r = h
        .send(invoke_req(
            INVOKE_F,
            &[("x-amz-invocation-type", "Event")],
            "{}",
        ))
        .await;
    r.assert_error(503, "ServiceException");
}

#[tokio::test]
async fn dry_run_checks_existence() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    let r = h
        .send(invoke_req(
            INVOKE_F,
            &[("x-amz-invocation-type", "DryRun")],
            "",
        ))
        .await;
    assert_eq!(r.status, 204);
    let r = h
        .send(invoke_req(
            "/2015-03-31/functions/nope/invocations",
            &[("x-amz-invocation-type", "DryRun")],
            "",
        ))
        .await;
    r.assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn unknown_function_is_not_found() {
    let h = Harness::new().await;
    let r = h
        .send(invoke_req(
            "/2015-03-31/functions/nope/invocations",
            &[],
            "{}",
        ))
        .await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(
        r.message(),
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"
    );
    // Deleted functions are gone from the engine too.
    h.create("f", json!({})).await;
    h.call(Method::DELETE, "/2015-03-31/functions/f", "").await;
    h.send(invoke_req(INVOKE_F, &[], "{}"))
        .await
        .assert_error(404, "ResourceNotFoundException");
}

/// Needs `python3` and a working engine.
#[tokio::test]
async fn invokes_python_function_and_reports_function_errors() {
    let h = Harness::new().await;
    let code = zip_of(&[(
        "app.py",
        "def handler(event, context):\n    print('log line from handler')\n    if event.get('fail'):\n        raise ValueError('boom')\n    return {'echo': event}\n",
    )]);
    let r = h
        .create("f", json!({"Code": {"ZipFile": b64(&code)}}))
        .await;
    assert_eq!(r.status, 201);

    let r = h
        .send(invoke_req(
            INVOKE_F,
            &[("x-amz-log-type", "Tail")],
            r#"{"a": 1}"#,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!({"echo": {"a": 1}}));
    assert_eq!(r.headers["x-amz-executed-version"], "$LATEST");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.contains_key("x-amzn-requestid"));
    assert!(r.headers.get("x-amz-function-error").is_none());
    let tail = r.headers["x-amz-log-result"].to_str().unwrap();
    let tail = base64::engine::general_purpose::STANDARD
        .decode(tail)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&tail).contains("log line from handler"),
        "{}",
        String::from_utf8_lossy(&tail)
    );

    let r = h.send(invoke_req(INVOKE_F, &[], r#"{"fail": true}"#)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-amz-function-error"], "Unhandled");
    let err = r.json();
    assert_eq!(err["errorType"], "ValueError");
    assert_eq!(err["errorMessage"], "boom");
}

/// A `Stream` over an iterator, without a stream crate.
struct Iter<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}
