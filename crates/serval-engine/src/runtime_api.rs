//! The Lambda Runtime API `2018-06-01`, served by each environment on its own loopback port.
//!
//! The engine and the runtime meet at an [`Exchange`]: the engine [`Exchange::dispatch`]es one
//! invocation at a time and awaits its [`Reply`]; the runtime's `GET .../invocation/next` long
//! poll receives it, and its `POST .../response` or `.../error` resolves the reply. The first
//! `GET .../next` marks the end of init; `POST .../init/error` reports a failed init. The
//! exchange is a small state machine behind a std mutex that is never held across an await.
//!
//! Not for: deciding what a failure means (the environment does that) or logging.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Header names of the Runtime API.
pub mod headers {
    pub const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
    pub const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
    pub const FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
    pub const TRACE_ID: &str = "lambda-runtime-trace-id";
    pub const CLIENT_CONTEXT: &str = "lambda-runtime-client-context";
    pub const COGNITO_IDENTITY: &str = "lambda-runtime-cognito-identity";
    pub const ERROR_TYPE: &str = "lambda-runtime-function-error-type";
}

/// Largest response a runtime may post (AWS's figure for the response limit).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;
/// Largest error document a runtime may post.
const MAX_ERROR_BYTES: usize = 1024 * 1024;

const PREFIX: &str = "/2018-06-01/runtime/";
/// Pause after a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// One event handed to the runtime.
#[derive(Debug)]
pub struct Invocation {
    pub request_id: HeaderValue,
    pub deadline_ms: HeaderValue,
    pub function_arn: HeaderValue,
    pub trace_id: HeaderValue,
    pub client_context: Option<HeaderValue>,
    pub cognito_identity: Option<HeaderValue>,
    pub payload: Bytes,
}

/// What the runtime answered for an invocation.
#[derive(Debug)]
pub enum Reply {
    Response(Bytes),
    Error {
        error_type: Option<String>,
        body: Bytes,
    },
    /// The runtime tried to post a response larger than [`MAX_RESPONSE_BYTES`].
    ResponseTooLarge,
}

/// How init ended, as seen by the Runtime API.
#[derive(Debug)]
pub enum InitSignal {
    /// The runtime asked for its first invocation.
    Ready,
    /// The runtime posted `/runtime/init/error`.
    Failed {
        error_type: Option<String>,
        body: Bytes,
    },
}

struct Current {
    request_id: HeaderValue,
    reply: Option<oneshot::Sender<Reply>>,
}

#[derive(Default)]
struct State {
    init: Option<oneshot::Sender<InitSignal>>,
    waiting_next: Option<oneshot::Sender<Arc<Invocation>>>,
    queued: Option<Arc<Invocation>>,
    current: Option<Current>,
}

/// Where the engine and one environment's runtime meet.
pub struct Exchange {
    state: Mutex<State>,
}

impl Exchange {
    /// A new exchange and the receiver that learns how init ended.
    pub fn new() -> (Arc<Self>, oneshot::Receiver<InitSignal>) {
        let (tx, rx) = oneshot::channel();
        let state = State {
            init: Some(tx),
            ..State::default()
        };
        (
            Arc::new(Self {
                state: Mutex::new(state),
            }),
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself stays consistent
        // because every critical section is a few field moves.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands an invocation to the runtime; the returned receiver yields its reply.
    pub fn dispatch(&self, invocation: Invocation) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let invocation = Arc::new(invocation);
        let mut st = self.lock();
        st.current = Some(Current {
            request_id: invocation.request_id.clone(),
            reply: Some(tx),
        });
        match st.waiting_next.take() {
            Some(waiter) => {
                if let Err(inv) = waiter.send(invocation) {
                    st.queued = Some(inv);
                }
            }
            None => st.queued = Some(invocation),
        }
        rx
    }

    /// `GET .../invocation/next`: the next invocation now, or a receiver to wait on.
    fn next(&self) -> Result<Arc<Invocation>, oneshot::Receiver<Arc<Invocation>>> {
        let mut st = self.lock();
        if let Some(init) = st.init.take() {
            let _ = init.send(InitSignal::Ready);
        }
        if let Some(inv) = st.queued.take() {
            return Ok(inv);
        }
        let (tx, rx) = oneshot::channel();
        st.waiting_next = Some(tx);
        Err(rx)
    }

    /// Resolves the current invocation if `request_id` names it.
    fn complete(&self, request_id: &str, reply: Reply) -> bool {
        let sender = {
            let mut st = self.lock();
            match st.current.as_mut() {
                Some(c) if c.request_id.as_bytes() == request_id.as_bytes() => c.reply.take(),
                _ => None,
            }
        };
        match sender {
            Some(s) => {
                let _ = s.send(reply);
                true
            }
            None => false,
        }
    }

    fn init_error(&self, error_type: Option<String>, body: Bytes) -> bool {
        match self.lock().init.take() {
            Some(init) => init.send(InitSignal::Failed { error_type, body }).is_ok(),
            None => false,
        }
    }
}

/// Serves the Runtime API for one exchange on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, exchange: Arc<Exchange>, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, typically: back off rather than spin.
                    tracing::debug!(%error, "runtime api accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let exchange = exchange.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let exchange = exchange.clone();
                async move { Ok::<_, Infallible>(route(&exchange, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .pipeline_flush(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = conn => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "runtime api connection ended");
                    }
                }
            }
        });
    }
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn accepted() -> Response<Body> {
    respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn invalid_request_id() -> Response<Body> {
    respond(
        StatusCode::BAD_REQUEST,
        r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
    )
}

fn error_type(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(headers::ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Why a runtime's request body could not be read.
enum BodyError {
    TooLarge,
    /// The connection broke mid-body (the runtime died, most likely).
    Broken,
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Broken),
    }
}

fn broken_body() -> Response<Body> {
    respond(
        StatusCode::BAD_REQUEST,
        r#"{"errorMessage":"could not read the request body","errorType":"InvalidRequest"}"#,
    )
}

async fn route(exchange: &Exchange, req: Request<Incoming>) -> Response<Body> {
    let Some(path) = req.uri().path().strip_prefix(PREFIX) else {
        return respond(
            StatusCode::NOT_FOUND,
            r#"{"errorMessage":"not found","errorType":"NotFound"}"#,
        );
    };
    let method = req.method().clone();
    if method == Method::GET && path == "invocation/next" {
        let invocation = match exchange.next() {
            Ok(inv) => inv,
            Err(rx) => match rx.await {
                Ok(inv) => inv,
                // The environment is going away; the connection will be closed.
                Err(_) => {
                    return respond(
                        StatusCode::GONE,
                        r#"{"errorMessage":"environment shutting down","errorType":"ShuttingDown"}"#,
                    )
                }
            },
        };
        return next_response(&invocation);
    }
    if method == Method::POST && path == "init/error" {
        let error_type = error_type(&req);
        let body = read_body(req.into_body(), MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        exchange.init_error(error_type, body);
        return accepted();
    }
    if method == Method::POST {
        if let Some(rest) = path.strip_prefix("invocation/") {
            if let Some(id) = rest.strip_suffix("/response") {
                let id = id.to_owned();
                let reply = match read_body(req.into_body(), MAX_RESPONSE_BYTES).await {
                    Ok(body) => Reply::Response(body),
                    Err(BodyError::TooLarge) => Reply::ResponseTooLarge,
                    // The invocation stays open; the process's exit or the deadline ends it.
                    Err(BodyError::Broken) => return broken_body(),
                };
                let too_large = matches!(reply, Reply::ResponseTooLarge);
                if !exchange.complete(&id, reply) {
                    return invalid_request_id();
                }
                if too_large {
                    return respond(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        r#"{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}"#,
                    );
                }
                return accepted();
            }
            if let Some(id) = rest.strip_suffix("/error") {
                let id = id.to_owned();
                let error_type = error_type(&req);
                let body = read_body(req.into_body(), MAX_ERROR_BYTES)
                    .await
                    .unwrap_or_default();
                if !exchange.complete(&id, Reply::Error { error_type, body }) {
                    return invalid_request_id();
                }
                return accepted();
            }
        }
    }
    respond(
        StatusCode::NOT_FOUND,
        r#"{"errorMessage":"unknown runtime api route","errorType":"NotFound"}"#,
    )
}

fn next_response(inv: &Invocation) -> Response<Body> {
    let mut r = Response::new(Full::new(inv.payload.clone()));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(headers::REQUEST_ID, inv.request_id.clone());
    h.insert(headers::DEADLINE_MS, inv.deadline_ms.clone());
    h.insert(headers::FUNCTION_ARN, inv.function_arn.clone());
    h.insert(headers::TRACE_ID, inv.trace_id.clone());
    if let Some(cc) = &inv.client_context {
        h.insert(headers::CLIENT_CONTEXT, cc.clone());
    }
    if let Some(ci) = &inv.cognito_identity {
        h.insert(headers::COGNITO_IDENTITY, ci.clone());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(id: &'static str) -> Invocation {
        Invocation {
            request_id: HeaderValue::from_static(id),
            deadline_ms: HeaderValue::from_static("1"),
            function_arn: HeaderValue::from_static("arn"),
            trace_id: HeaderValue::from_static("t"),
            client_context: None,
            cognito_identity: None,
            payload: Bytes::from_static(b"{}"),
        }
    }

    #[tokio::test]
    async fn first_next_signals_ready_and_waits_for_dispatch() {
        let (ex, init) = Exchange::new();
        let rx = ex.next().expect_err("nothing queued yet");
        assert!(matches!(init.await.unwrap(), InitSignal::Ready));
        let reply = ex.dispatch(invocation("a"));
        let inv = rx.await.unwrap();
        assert_eq!(inv.request_id, "a");
        assert!(ex.complete("a", Reply::Response(Bytes::from_static(b"1"))));
        assert!(matches!(reply.await.unwrap(), Reply::Response(b) if b == "1"));
    }

    #[tokio::test]
    async fn dispatch_before_next_is_queued() {
        let (ex, _init) = Exchange::new();
        let _reply = ex.dispatch(invocation("q"));
        let inv = ex.next().expect("queued invocation is returned at once");
        assert_eq!(inv.request_id, "q");
    }

    #[tokio::test]
    async fn rejects_replies_for_unknown_or_finished_requests() {
        let (ex, _init) = Exchange::new();
        let _reply = ex.dispatch(invocation("r"));
        assert!(!ex.complete("other", Reply::Response(Bytes::new())));
        assert!(ex.complete("r", Reply::Response(Bytes::new())));
        assert!(
            !ex.complete("r", Reply::Response(Bytes::new())),
            "second reply refused"
        );
    }

    #[tokio::test]
    async fn init_error_reported_once_and_only_before_ready() {
        let (ex, init) = Exchange::new();
        assert!(ex.init_error(
            Some("Runtime.ImportModuleError".into()),
            Bytes::from_static(b"{}")
        ));
        assert!(
            matches!(init.await.unwrap(), InitSignal::Failed { error_type: Some(t), .. } if t == "Runtime.ImportModuleError")
        );
        let (ex, _init) = Exchange::new();
        let _ = ex.next();
        assert!(!ex.init_error(None, Bytes::new()), "init already finished");
    }

    #[tokio::test]
    async fn dropped_long_poll_does_not_lose_the_invocation() {
        let (ex, _init) = Exchange::new();
        drop(ex.next().expect_err("waits"));
        let _reply = ex.dispatch(invocation("kept"));
        assert_eq!(ex.next().expect("requeued").request_id, "kept");
    }
}
