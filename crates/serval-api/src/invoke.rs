//! `Invoke` (`POST /2015-03-31/functions/{FunctionName}/invocations`): the hot path.
//!
//! The payload is read once into `Bytes` (bounded by AWS's 6 MB limit, no copy when it arrives
//! in one chunk), handed to the engine as is, and the engine's `Bytes` are the response body.
//! No store access and no blocking work happen here: the engine keeps functions in memory.
//! Non-JSON payloads pass through untouched, as on AWS.
//!
//! `InvocationType: Event` hands the payload (at most 1 MB) to the engine's durable queue
//! (`Engine::enqueue`) and answers 202 once it is stored; `DryRun` only checks that the
//! function and qualifier exist (204), which for a version or alias asks the store.
//!
//! Not for: running queued events, retries and destinations (the engine's dispatcher).

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use serval_engine::{AsyncInvokeRequest, EnqueueError, InvokeError, InvokeRequest, InvokeResult};
use serval_model::limits::{ASYNC_PAYLOAD_MAX_BYTES, SYNC_PAYLOAD_MAX_BYTES};
use serval_model::{FunctionName, Qualifier};

use crate::body::{content_length, read_limited, BodyError};
use crate::error::{ApiError, ErrorCode};
use crate::functions::{
    blocking, qualified_arn, query_pairs, query_value, read_qualified, resolve_function, PathParam,
};
use crate::ApiState;

/// `RequestResponse` (default), `Event` or `DryRun`.
pub const INVOCATION_TYPE_HEADER: &str = "x-amz-invocation-type";
/// `None` (default) or `Tail`.
pub const LOG_TYPE_HEADER: &str = "x-amz-log-type";
/// Base64 JSON passed to the function as its client context.
pub const CLIENT_CONTEXT_HEADER: &str = "x-amz-client-context";
/// Base64 of the invocation's last 4 KB of log, with `Tail`.
pub const LOG_RESULT_HEADER: &str = "x-amz-log-result";
/// `Unhandled` when the function failed.
pub const FUNCTION_ERROR_HEADER: &str = "x-amz-function-error";
/// The version that ran.
pub const EXECUTED_VERSION_HEADER: &str = "x-amz-executed-version";
/// The invocation's request id (Lambda's own spelling).
pub const AMZ_REQUEST_ID_HEADER: &str = "x-amz-request-id";
/// The request id every AWS response carries.
pub const AMZN_REQUEST_ID_HEADER: &str = "x-amzn-requestid";
/// Largest `ClientContext`, base64 as sent.
pub const CLIENT_CONTEXT_MAX_BYTES: usize = 3583;

/// How the caller asked for the function to run (`X-Amz-Invocation-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

impl InvocationType {
    /// The largest payload AWS takes for this type.
    fn payload_limit(self) -> usize {
        match self {
            InvocationType::Event => ASYNC_PAYLOAD_MAX_BYTES,
            InvocationType::RequestResponse | InvocationType::DryRun => SYNC_PAYLOAD_MAX_BYTES,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            InvocationType::RequestResponse => "RequestResponse",
            InvocationType::Event => "Event",
            InvocationType::DryRun => "DryRun",
        }
    }
}

/// AWS's `RequestEntityTooLargeException` for a payload over the type's limit.
fn too_large_for(kind: InvocationType, bytes: u64) -> ApiError {
    ApiError::new(
        ErrorCode::RequestEntityTooLarge,
        format!(
            "{bytes} byte payload is too large for the {} invocation type (limit {} bytes)",
            kind.as_str(),
            kind.payload_limit()
        ),
    )
}

#[cfg(test)]
fn too_large(bytes: u64) -> ApiError {
    too_large_for(InvocationType::RequestResponse, bytes)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::invalid_parameter(format!("Header {name} is not valid text"))
            })
        })
        .transpose()
}

/// Checks `ClientContext` (at most 3583 bytes, base64 of a JSON object) and returns the
/// object re-serialized as compact JSON: one line, so that it fits the runtime's
/// `Lambda-Runtime-Client-Context` header even when the caller pretty-printed it.
fn client_context_json(raw: &str) -> Result<String, ApiError> {
    if raw.len() > CLIENT_CONTEXT_MAX_BYTES {
        return Err(ApiError::invalid_parameter(format!(
            "Client context must be at most {CLIENT_CONTEXT_MAX_BYTES} bytes when base64-encoded"
        )));
    }
    let invalid = || {
        ApiError::invalid_parameter("Client context must be a valid Base64-encoded JSON object.")
    };
    let json = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| invalid())?;
    match serde_json::from_slice::<serde_json::Value>(&json) {
        Ok(value @ serde_json::Value::Object(_)) => serde_json::to_string(&value)
            .map(|json| ascii_json(&json))
            .map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

/// `json` with every non-ASCII character written as a `\uXXXX` escape (UTF-16, surrogate
/// pairs above U+FFFF). Equivalent JSON, but a valid HTTP header value: the runtime receives
/// the client context in `Lambda-Runtime-Client-Context`, and a header carries only ASCII.
/// Non-ASCII can only occur inside JSON strings, where such escapes are always allowed.
fn ascii_json(json: &str) -> String {
    if json.is_ascii() {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// `POST /2015-03-31/functions/{FunctionName}/invocations`.
pub async fn invoke(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let qualifier = match uri.query() {
        None => None,
        Some(_) => {
            let pairs = query_pairs(&uri)?;
            query_value(&pairs, "Qualifier").map(str::to_owned)
        }
    };
    let (name, qualifier) = resolve_function(&function, qualifier.as_deref())?;
    let kind = match header_str(&headers, INVOCATION_TYPE_HEADER)? {
        None | Some("RequestResponse") => InvocationType::RequestResponse,
        Some("DryRun") => InvocationType::DryRun,
        Some("Event") => InvocationType::Event,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"),
            ))
        }
    };
    let log_tail = match header_str(&headers, LOG_TYPE_HEADER)? {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{other}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [Tail, None]"),
            ))
        }
    };
    let client_context = header_str(&headers, CLIENT_CONTEXT_HEADER)?
        .filter(|c| !c.is_empty())
        .map(client_context_json)
        .transpose()?;
    let limit = kind.payload_limit();
    if let Some(n) = content_length(&headers) {
        if n > limit as u64 {
            return Err(too_large_for(kind, n));
        }
    }
    if kind == InvocationType::DryRun {
        return dry_run(&state, name, qualifier).await;
    }
    let payload = read_limited(&headers, body, limit)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge { received, .. } => too_large_for(kind, received),
            BodyError::Read { .. } => {
                ApiError::invalid_content("Could not read the request payload")
            }
        })?;
    // As on AWS, an invocation without a payload receives an empty JSON object.
    let payload = if payload.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        payload
    };
    if kind == InvocationType::Event {
        return enqueue(&state, name, qualifier, payload).await;
    }
    let outcome = state
        .engine
        .invoke(InvokeRequest {
            qualifier,
            request_id: None,
            function: name,
            payload,
            client_context,
            log_tail,
        })
        .await
        .map_err(|err| invoke_error(err, &state.region))?;

    let (body, function_error) = match outcome.result {
        InvokeResult::Success(bytes) => (bytes, false),
        InvokeResult::FunctionError(diag) => (diag.body, true),
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = HeaderValue::from_str(outcome.request_id.as_str()) {
        h.insert(AMZ_REQUEST_ID_HEADER, id.clone());
        h.insert(AMZN_REQUEST_ID_HEADER, id);
    }
    if let Ok(v) = HeaderValue::from_str(&outcome.executed_version) {
        h.insert(EXECUTED_VERSION_HEADER, v);
    }
    if function_error {
        h.insert(FUNCTION_ERROR_HEADER, HeaderValue::from_static("Unhandled"));
    }
    if let Some(tail) = outcome.log_tail {
        if let Ok(v) = HeaderValue::from_str(&tail) {
            h.insert(LOG_RESULT_HEADER, v);
        }
    }
    Ok(resp)
}

/// `DryRun`: 204 if the function and qualifier exist. `$LATEST` is answered from the engine's
/// registry; a version or alias is read from the store.
async fn dry_run(
    state: &ApiState,
    name: FunctionName,
    qualifier: Option<Qualifier>,
) -> Result<Response, ApiError> {
    match qualifier {
        None | Some(Qualifier::Latest) => {
            if state.engine.has_function(&name) {
                Ok(StatusCode::NO_CONTENT.into_response())
            } else {
                Err(ApiError::function_not_found(&match qualifier {
                    Some(q) => qualified_arn(&name, &q, &state.region),
                    None => name.arn(&state.region),
                }))
            }
        }
        Some(q) => {
            let st = state.clone();
            blocking(move || read_qualified(&st, &name, Some(&q)).map(|_| ())).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// `Event`: hands the payload to the engine's durable queue; 202 with an empty body and the
/// event's request id in `x-amzn-RequestId` once it is stored.
async fn enqueue(
    state: &ApiState,
    name: FunctionName,
    qualifier: Option<Qualifier>,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let request_id = state
        .engine
        .enqueue(AsyncInvokeRequest {
            function: name,
            qualifier,
            payload,
        })
        .await
        .map_err(|err| enqueue_error(err, &state.region))?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    if let Ok(id) = HeaderValue::from_str(request_id.as_str()) {
        resp.headers_mut().insert(AMZN_REQUEST_ID_HEADER, id);
    }
    Ok(resp)
}

/// Maps a refused asynchronous invocation to AWS's error.
fn enqueue_error(err: EnqueueError, region: &str) -> ApiError {
    match err {
        EnqueueError::FunctionNotFound {
            function,
            qualifier,
        } => ApiError::function_not_found(&match qualifier {
            Some(q) => qualified_arn(&function, &q, region),
            None => function.arn(region),
        }),
        EnqueueError::Full(source) => {
            tracing::warn!(error = %crate::error::chain(&source), "api: asynchronous event queue is full");
            ApiError::too_many_requests("CallerRateLimitExceeded")
        }
        EnqueueError::Unavailable => ApiError::new(
            ErrorCode::ServiceUnavailable,
            "Serval does not accept asynchronous invocations now (shutting down or no event queue)",
        ),
        err @ EnqueueError::Store(_) => {
            ApiError::service("failed to store the asynchronous event", err)
        }
    }
}

/// Maps an engine refusal to AWS's error; platform failures become `ServiceException` with a
/// short message for the caller and the engine's error as the source, whose chain is logged
/// once when rendered.
fn invoke_error(err: InvokeError, region: &str) -> ApiError {
    match err {
        InvokeError::FunctionNotFound {
            function,
            qualifier,
        } => ApiError::function_not_found(&match qualifier {
            Some(q) => format!("{}:{q}", function.arn(region)),
            None => function.arn(region),
        }),
        InvokeError::TooManyRequests { reason, .. } => ApiError::too_many_requests(reason),
        InvokeError::ShuttingDown => ApiError::new(
            ErrorCode::Service,
            "Serval is shutting down and accepts no new invocations",
        ),
        other @ (InvokeError::Sandbox { .. } | InvokeError::Setup { .. }) => ApiError::service(
            "An error occurred during the invocation: the execution environment could not be created",
            other,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_context_with_non_ascii_text_becomes_an_ascii_header() {
        let raw = base64::engine::general_purpose::STANDARD
            .encode("{\"custom\": {\"name\": \"Zoë 🐈\"}}".as_bytes());
        let json = client_context_json(&raw).unwrap();
        assert!(json.is_ascii(), "{json}");
        assert!(http::HeaderValue::from_str(&json).is_ok());
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["custom"]["name"], "Zoë 🐈");
    }

    #[test]
    fn checks_client_context_shape_and_size() {
        let ok = base64::engine::general_purpose::STANDARD.encode(br#"{"custom":{"a":1}}"#);
        assert_eq!(client_context_json(&ok).unwrap(), r#"{"custom":{"a":1}}"#);
        assert!(client_context_json("not base64!").is_err());
        let not_object = base64::engine::general_purpose::STANDARD.encode(b"[1]");
        assert!(client_context_json(&not_object).is_err());
        let big = "A".repeat(CLIENT_CONTEXT_MAX_BYTES + 1);
        assert!(client_context_json(&big)
            .unwrap_err()
            .message()
            .contains("3583"));
    }

    #[test]
    fn compacts_pretty_printed_client_context_to_one_line() {
        let pretty = "{\n  \"client\": {\n    \"app_title\": \"demo\"\n  },\n  \"custom\": {\n    \"a\": [1, 2]\n  }\n}\n";
        let raw = base64::engine::general_purpose::STANDARD.encode(pretty);
        let json = client_context_json(&raw).unwrap();
        assert!(!json.contains('\n') && !json.contains('\r'), "{json}");
        assert_eq!(
            json,
            r#"{"client":{"app_title":"demo"},"custom":{"a":[1,2]}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed,
            serde_json::from_str::<serde_json::Value>(pretty).unwrap()
        );
    }

    #[test]
    fn platform_failure_gets_short_message_and_keeps_engine_error_as_source() {
        let err = invoke_error(
            InvokeError::Setup {
                function: serval_model::FunctionName::parse("f").unwrap(),
                source: std::io::Error::other("no space left on device"),
            },
            "us-east-1",
        );
        assert_eq!(err.code(), ErrorCode::Service);
        assert_eq!(
            err.message(),
            "An error occurred during the invocation: the execution environment could not be created"
        );
        let source = std::error::Error::source(&err).expect("engine error kept as source");
        assert!(crate::error::chain(source).contains("no space left on device"));
    }

    #[test]
    fn maps_refused_events_to_aws_errors() {
        let f = serval_model::FunctionName::parse("f").unwrap();
        let err = enqueue_error(
            EnqueueError::FunctionNotFound {
                function: f.clone(),
                qualifier: Some(Qualifier::Alias("live".into())),
            },
            "us-east-1",
        );
        assert_eq!(err.code(), ErrorCode::ResourceNotFound);
        assert_eq!(
            err.message(),
            "Function not found: arn:aws:lambda:us-east-1:000000000000:function:f:live"
        );
        let err = enqueue_error(EnqueueError::Unavailable, "us-east-1");
        assert_eq!(err.code(), ErrorCode::ServiceUnavailable);
        assert_eq!(err.code().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code().name(), "ServiceException");
    }

    #[test]
    fn formats_async_payload_limit_message_like_aws() {
        assert_eq!(
            too_large_for(InvocationType::Event, 1_048_577).message(),
            "1048577 byte payload is too large for the Event invocation type (limit 1048576 bytes)"
        );
    }

    #[test]
    fn formats_payload_limit_message_like_aws() {
        assert_eq!(
            too_large(6_291_457).message(),
            "6291457 byte payload is too large for the RequestResponse invocation type (limit 6291456 bytes)"
        );
    }
}
