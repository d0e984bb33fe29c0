//! The HTTP gateway: serves Function URLs and HTTP APIs on the server's own address.
//!
//! A request reaches a trigger by its `Host` (`<url-id>.lambda-url.<region>.localhost`,
//! `<api-id>.execute-api.localhost`; names under `.localhost` resolve to loopback) or, for
//! clients that cannot set `Host`, by a path prefix (`/_aws/lambda-url/<url-id>/...`,
//! `/_aws/execute-api/<api-id>/...`). [`Gateway::target`] recognizes both; [`Gateway::serve`]
//! builds the proxy event (`payload`), answers CORS (`cors`), invokes the function through
//! the engine and maps its answer back to HTTP.
//!
//! The gateway holds what it serves in memory (`set_function_url`, `set_api`): the API layer
//! stores each change, then tells the gateway, as it tells the engine about functions.

pub mod cors;
pub mod payload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serval_engine::{Engine, InvokeError, InvokeRequest, InvokeResult};
use serval_model::limits::SYNC_PAYLOAD_MAX_BYTES;
use serval_model::{
    ApiStage, Cors, FunctionName, FunctionRef, FunctionUrlConfig, HttpApi, HttpApiSnapshot,
    Qualifier, RequestId,
};

use crate::route::{RouteKey, RouteTable};
use payload::{ContextInfo, HttpResponse, RequestInfo};

/// The path prefix of the path-based forms: `/_aws/lambda-url/<id>/...`,
/// `/_aws/execute-api/<id>/...`.
pub const PATH_PREFIX: &str = "/_aws/";

/// Which trigger a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    FunctionUrl {
        url_id: String,
        /// Set for the path-based form: the prefix to strip (`/_aws/lambda-url/<id>`).
        path_prefix: Option<String>,
    },
    HttpApi {
        api_id: String,
        path_prefix: Option<String>,
    },
}

/// Serves HTTP triggers; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    region: String,
    port: u16,
    /// By URL id.
    urls: RwLock<HashMap<String, Arc<ServedUrl>>>,
    /// By API id.
    apis: RwLock<HashMap<String, Arc<ServedApi>>>,
}

/// A Function URL as served, with what each request needs computed once.
struct ServedUrl {
    config: FunctionUrlConfig,
    qualifier: Option<Qualifier>,
    /// `<url-id>.lambda-url.<region>.localhost`.
    domain_name: String,
}

/// An HTTP API as served: its routes resolved to the functions they invoke.
struct ServedApi {
    api: HttpApi,
    routes: RouteTable<Option<Arc<ServedIntegration>>>,
    /// By stage name (`$default` included).
    stages: HashMap<String, ApiStage>,
}

/// Payload format of an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    V1,
    V2,
}

/// An `AWS_PROXY` integration as served.
struct ServedIntegration {
    function: FunctionName,
    qualifier: Option<Qualifier>,
    format: Format,
    timeout: Duration,
}

/// The function an integration URI names: a function ARN (maybe qualified), or API
/// Gateway's `arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<arn>/invocations`.
pub fn integration_function(uri: &str) -> Option<FunctionRef> {
    let arn = match uri.split_once(":lambda:path/2015-03-31/functions/") {
        Some((_, rest)) => rest.strip_suffix("/invocations")?,
        None => uri,
    };
    FunctionRef::parse(arn).ok()
}

impl ServedApi {
    fn build(snapshot: HttpApiSnapshot) -> ServedApi {
        let mut integrations = HashMap::new();
        for i in snapshot.integrations {
            let Some(function) = integration_function(&i.integration_uri) else {
                tracing::warn!(api = %snapshot.api.api_id, integration = %i.integration_id, uri = %i.integration_uri, "integration names no function; its routes answer 500");
                continue;
            };
            let format = if i.payload_format_version == "1.0" {
                Format::V1
            } else {
                Format::V2
            };
            integrations.insert(
                format!("integrations/{}", i.integration_id),
                Arc::new(ServedIntegration {
                    function: function.name,
                    qualifier: function.qualifier,
                    format,
                    timeout: Duration::from_millis(u64::from(i.timeout_in_millis.max(50))),
                }),
            );
        }
        let mut routes = RouteTable::new();
        for r in snapshot.routes {
            let Ok(key) = RouteKey::parse(&r.route_key) else {
                continue;
            };
            let target = r.target.as_ref().and_then(|t| integrations.get(t)).cloned();
            routes.insert(key, target);
        }
        let stages = snapshot
            .stages
            .into_iter()
            .map(|s| (s.stage_name.clone(), s))
            .collect();
        ServedApi {
            api: snapshot.api,
            routes,
            stages,
        }
    }
}

impl Gateway {
    /// A gateway with nothing to serve yet; `port` is the server's, for the URLs it reports.
    pub fn new(engine: Engine, region: impl Into<String>, port: u16) -> Gateway {
        Gateway {
            inner: Arc::new(Inner {
                engine,
                region: region.into(),
                port,
                urls: RwLock::default(),
                apis: RwLock::default(),
            }),
        }
    }

    /// `http://<url-id>.lambda-url.<region>.localhost:<port>/`, a Function URL's `FunctionUrl`.
    pub fn function_url(&self, url_id: &str) -> String {
        format!(
            "http://{url_id}.lambda-url.{}.localhost:{}/",
            self.inner.region, self.inner.port
        )
    }

    /// `http://<api-id>.execute-api.localhost:<port>`, an HTTP API's `ApiEndpoint`.
    pub fn api_endpoint(&self, api_id: &str) -> String {
        format!("http://{api_id}.execute-api.localhost:{}", self.inner.port)
    }

    /// Serves (or re-configures) a Function URL.
    pub fn set_function_url(&self, config: FunctionUrlConfig) {
        let served = ServedUrl {
            qualifier: config
                .qualifier
                .as_deref()
                .map(|a| Qualifier::Alias(a.to_owned())),
            domain_name: format!(
                "{}.lambda-url.{}.localhost",
                config.url_id, self.inner.region
            ),
            config,
        };
        write(&self.inner.urls).insert(served.config.url_id.clone(), Arc::new(served));
    }

    /// Stops serving a Function URL.
    pub fn remove_function_url(&self, url_id: &str) {
        write(&self.inner.urls).remove(url_id);
    }

    /// Serves an HTTP API as `snapshot` says, replacing what was served for it.
    pub fn set_api(&self, snapshot: HttpApiSnapshot) {
        let id = snapshot.api.api_id.clone();
        let served = Arc::new(ServedApi::build(snapshot));
        write(&self.inner.apis).insert(id, served);
    }

    /// Stops serving an HTTP API.
    pub fn remove_api(&self, api_id: &str) {
        write(&self.inner.apis).remove(api_id);
    }

    /// The trigger a request is addressed to, from its `Host` header and path; `None` for
    /// the AWS APIs.
    pub fn target(host: Option<&str>, path: &str) -> Option<Target> {
        // A trigger's own host name wins: its paths are the function's, `/_aws/...` included.
        if let Some(target) = host.and_then(host_target) {
            return Some(target);
        }
        let rest = path.strip_prefix(PATH_PREFIX)?;
        let (kind, rest) = rest.split_once('/')?;
        let id = rest.split('/').next().unwrap_or(rest);
        if id.is_empty() {
            return None;
        }
        let path_prefix = Some(format!("{PATH_PREFIX}{kind}/{id}"));
        match kind {
            "lambda-url" => Some(Target::FunctionUrl {
                url_id: id.to_ascii_lowercase(),
                path_prefix,
            }),
            "execute-api" => Some(Target::HttpApi {
                api_id: id.to_ascii_lowercase(),
                path_prefix,
            }),
            _ => None,
        }
    }

    /// Serves one request to `target`.
    pub async fn serve(
        &self,
        target: Target,
        req: Request<Body>,
        peer: SocketAddr,
    ) -> Response<Body> {
        match target {
            Target::FunctionUrl {
                url_id,
                path_prefix,
            } => {
                self.serve_url(&url_id, path_prefix.as_deref(), req, peer)
                    .await
            }
            Target::HttpApi {
                api_id,
                path_prefix,
            } => {
                self.serve_api(&api_id, path_prefix.as_deref(), req, peer)
                    .await
            }
        }
    }

    async fn serve_url(
        &self,
        url_id: &str,
        path_prefix: Option<&str>,
        req: Request<Body>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let Some(served) = read(&self.inner.urls).get(url_id).cloned() else {
            return simple(StatusCode::FORBIDDEN, r#"{"Message":"Forbidden"}"#);
        };
        let cfg = &served.config;
        let (mut parts, body) = req.into_parts();
        // In place: the event shows AWS's `x-forwarded-*`; no copy of the headers.
        add_forwarded(&mut parts.headers, peer, self.inner.port);
        let method = parts.method.as_str();
        if let Some(cors) = &cfg.cors {
            if cors::is_preflight(method, &parts.headers) {
                return preflight(StatusCode::OK, cors, &parts.headers);
            }
        }
        let Some(body) = read_body(body).await else {
            return too_large(
                r#"{"Message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}"#,
            );
        };
        let request_id = RequestId::new();
        let raw_path = strip_prefix(parts.uri.path(), path_prefix);
        let info = RequestInfo {
            method,
            raw_path,
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
            source_ip: peer.ip(),
            protocol: protocol(parts.version),
            request_id: request_id.as_str(),
            time: time::OffsetDateTime::now_utc(),
        };
        let ctx = ContextInfo {
            account_id: serval_model::ACCOUNT_ID,
            api_id: url_id,
            domain_name: &served.domain_name,
            domain_prefix: url_id,
            route_key: "$default",
            stage: "$default",
            resource_path: None,
            path_parameters: None,
            stage_variables: None,
        };
        let event = payload::event_v2(&info, &ctx);
        drop(body);
        if event.len() > SYNC_PAYLOAD_MAX_BYTES {
            return too_large(
                r#"{"Message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}"#,
            );
        }
        let invoke = InvokeRequest {
            function: cfg.function.clone(),
            qualifier: served.qualifier.clone(),
            request_id: Some(request_id.clone()),
            payload: Bytes::from(event),
            client_context: None,
            log_tail: false,
        };
        let outcome = self.inner.engine.invoke(invoke).await;
        let mut resp = answer(outcome, Format::V2, &URL_ANSWERS, url_id);
        if let Some(cors) = &cfg.cors {
            cors::apply(cors, &parts.headers, resp.headers_mut());
        }
        if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
            resp.headers_mut()
                .insert(HeaderName::from_static("x-amzn-requestid"), v);
        }
        resp
    }

    async fn serve_api(
        &self,
        api_id: &str,
        path_prefix: Option<&str>,
        req: Request<Body>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let Some(api) = read(&self.inner.apis).get(api_id).cloned() else {
            return not_found();
        };
        let (mut parts, body) = req.into_parts();
        // In place: the event shows AWS's `x-forwarded-*`; no copy of the headers.
        add_forwarded(&mut parts.headers, peer, self.inner.port);
        let method = parts.method.as_str();
        let apigw_id = apigw_request_id();
        let mut resp = self
            .serve_api_inner(&api, path_prefix, &parts, body, peer, &apigw_id)
            .await;
        if let Some(cors) = &api.api.cors {
            if !cors::is_preflight(method, &parts.headers) {
                cors::apply(cors, &parts.headers, resp.headers_mut());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&apigw_id) {
            resp.headers_mut()
                .insert(HeaderName::from_static("apigw-requestid"), v);
        }
        resp
    }

    async fn serve_api_inner(
        &self,
        api: &ServedApi,
        path_prefix: Option<&str>,
        parts: &http::request::Parts,
        body: Body,
        peer: SocketAddr,
        apigw_id: &str,
    ) -> Response<Body> {
        let method = parts.method.as_str();
        if api.api.disable_execute_api_endpoint {
            return simple(StatusCode::FORBIDDEN, r#"{"message":"Forbidden"}"#);
        }
        if let Some(cors) = &api.api.cors {
            if cors::is_preflight(method, &parts.headers) {
                return preflight(StatusCode::NO_CONTENT, cors, &parts.headers);
            }
        }
        let raw_path = strip_prefix(parts.uri.path(), path_prefix);
        // A named stage serves under `/<stage>/`; `$default` at the root.
        let (stage, route_path) = match stage_of(api, raw_path) {
            Some(found) => found,
            None => return not_found(),
        };
        let Some(matched) = api.routes.select(method, route_path) else {
            return not_found();
        };
        let Some(integration) = matched.value.clone() else {
            return not_found();
        };
        let Some(body) = read_body(body).await else {
            return too_large(r#"{"message":"Request Entity Too Large"}"#);
        };
        let domain_name = format!("{}.execute-api.localhost", api.api.api_id);
        let info = RequestInfo {
            method,
            raw_path,
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
            source_ip: peer.ip(),
            protocol: protocol(parts.version),
            request_id: apigw_id,
            time: time::OffsetDateTime::now_utc(),
        };
        let route_key = matched.route_key.as_str();
        let resource_path = route_key.split_once(' ').map(|(_, p)| p);
        let path_parameters =
            (!matched.path_parameters.is_empty()).then_some(&matched.path_parameters);
        let stage_variables = (!stage.stage_variables.is_empty()).then_some(&stage.stage_variables);
        let ctx = ContextInfo {
            account_id: serval_model::ACCOUNT_ID,
            api_id: &api.api.api_id,
            domain_name: &domain_name,
            domain_prefix: &api.api.api_id,
            route_key,
            stage: &stage.stage_name,
            resource_path,
            path_parameters,
            stage_variables,
        };
        let event = match integration.format {
            Format::V1 => payload::event_v1(&info, &ctx),
            Format::V2 => payload::event_v2(&info, &ctx),
        };
        drop(body);
        if event.len() > SYNC_PAYLOAD_MAX_BYTES {
            return too_large(r#"{"message":"Request Entity Too Large"}"#);
        }
        let invoke = InvokeRequest {
            function: integration.function.clone(),
            qualifier: integration.qualifier.clone(),
            request_id: None,
            payload: Bytes::from(event),
            client_context: None,
            log_tail: false,
        };
        // The integration's timeout ends the request, not the invocation: `Engine::invoke`
        // finishes an invocation whose caller stopped waiting, and its environment goes back
        // to the pool as usual.
        let outcome =
            match tokio::time::timeout(integration.timeout, self.inner.engine.invoke(invoke)).await
            {
                Ok(outcome) => outcome,
                Err(_) => {
                    return simple(
                        StatusCode::SERVICE_UNAVAILABLE,
                        r#"{"message":"Service Unavailable"}"#,
                    )
                }
            };
        answer(outcome, integration.format, &API_ANSWERS, &api.api.api_id)
    }
}

/// How a trigger answers what did not become the function's own response.
struct Answers {
    /// For logs: `function URL`, `HTTP API`.
    trigger: &'static str,
    /// A function error, or an answer the payload format cannot map.
    failed: fn() -> Response<Body>,
    throttled: &'static str,
    unavailable: &'static str,
}

/// A Function URL's: 502 for failures, Lambda's own wording otherwise.
const URL_ANSWERS: Answers = Answers {
    trigger: "function URL",
    failed: bad_gateway,
    throttled: r#"{"Message":"Rate Exceeded."}"#,
    unavailable: r#"{"Message":"Service Unavailable"}"#,
};

/// An HTTP API's: 500 for failures, API Gateway's wording.
const API_ANSWERS: Answers = Answers {
    trigger: "HTTP API",
    failed: internal_error,
    throttled: r#"{"message":"Too Many Requests"}"#,
    unavailable: r#"{"message":"Service Unavailable"}"#,
};

/// The HTTP response to an invocation's outcome: the function's answer mapped by `format`, or
/// the trigger's own answer when there is none to map. `id` (URL or API id) is for logs.
fn answer(
    outcome: Result<serval_engine::InvokeOutcome, InvokeError>,
    format: Format,
    answers: &Answers,
    id: &str,
) -> Response<Body> {
    match outcome {
        Ok(outcome) => match outcome.result {
            InvokeResult::Success(bytes) => {
                let mapped = match format {
                    Format::V1 => payload::response_v1(&bytes),
                    Format::V2 => payload::response_v2(&bytes),
                };
                mapped.map_or_else(
                    |e| {
                        tracing::info!(trigger = answers.trigger, id, request_id = %outcome.request_id, error = %e, "malformed Lambda proxy response");
                        (answers.failed)()
                    },
                    into_response,
                )
            }
            InvokeResult::FunctionError(_) => (answers.failed)(),
        },
        Err(InvokeError::TooManyRequests { .. }) => {
            simple(StatusCode::TOO_MANY_REQUESTS, answers.throttled)
        }
        Err(InvokeError::ShuttingDown) => {
            simple(StatusCode::SERVICE_UNAVAILABLE, answers.unavailable)
        }
        Err(e) => {
            tracing::warn!(trigger = answers.trigger, id, error = %e, "invocation failed");
            (answers.failed)()
        }
    }
}

/// The stage a request path is for and the path routes are matched against: a named stage
/// when the first segment names one, else `$default` (if the API has it).
fn stage_of<'a>(api: &'a ServedApi, raw_path: &'a str) -> Option<(&'a ApiStage, &'a str)> {
    let rest = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let first = rest.split('/').next().unwrap_or("");
    if !first.is_empty() && first != "$default" {
        if let Some(stage) = api.stages.get(first) {
            let route_path = &rest[first.len()..];
            let route_path = if route_path.is_empty() {
                "/"
            } else {
                route_path
            };
            return Some((stage, route_path));
        }
    }
    api.stages.get("$default").map(|s| (s, raw_path))
}

/// The trigger a `Host` names (`<id>.lambda-url.<region>.localhost`,
/// `<id>.execute-api[.<region>].localhost`, any case, with or without a port); `None` for any
/// other host, without allocating (every AWS API request passes here).
fn host_target(host: &str) -> Option<Target> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    const SUFFIX: &str = ".localhost";
    let cut = name.len().checked_sub(SUFFIX.len())?;
    if !name.is_char_boundary(cut) || !name[cut..].eq_ignore_ascii_case(SUFFIX) {
        return None;
    }
    let mut labels = name[..cut].split('.');
    let id = labels.next().filter(|id| !id.is_empty())?;
    let kind = labels.next()?;
    let rest: [Option<&str>; 2] = [labels.next(), labels.next()];
    if kind.eq_ignore_ascii_case("lambda-url") {
        // Exactly one more label: the region.
        if let [Some(region), None] = rest {
            if !region.is_empty() {
                return Some(Target::FunctionUrl {
                    url_id: id.to_ascii_lowercase(),
                    path_prefix: None,
                });
            }
        }
    } else if kind.eq_ignore_ascii_case("execute-api") {
        if let [None, None] | [Some(_), None] = rest {
            return Some(Target::HttpApi {
                api_id: id.to_ascii_lowercase(),
                path_prefix: None,
            });
        }
    }
    None
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Writers replace whole entries: a panic cannot leave one half-written.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request path after a path-based prefix (`/` if nothing is left).
fn strip_prefix<'a>(path: &'a str, prefix: Option<&str>) -> &'a str {
    let rest = match prefix {
        Some(p) => path.get(p.len()..).unwrap_or(""),
        None => path,
    };
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}

/// Adds the `x-forwarded-*` headers AWS's front ends add (appending the caller to an
/// existing `x-forwarded-for`).
fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, port: u16) {
    let ip = peer.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    headers.insert(
        HeaderName::from_static("x-forwarded-port"),
        HeaderValue::from(port),
    );
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// The body, or `None` when it is larger than a synchronous invocation may be.
async fn read_body(body: Body) -> Option<Bytes> {
    let limited = http_body_util::Limited::new(body, SYNC_PAYLOAD_MAX_BYTES);
    limited.collect().await.ok().map(|c| c.to_bytes())
}

/// An id like API Gateway's (`JhuBQjGNoAMEJmQ=`): 16 random letters and digits.
fn apigw_request_id() -> String {
    random_id(16)
}

fn into_response(r: HttpResponse) -> Response<Body> {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() = r.status;
    *resp.headers_mut() = r.headers;
    resp
}

fn simple(status: StatusCode, json: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(json));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A Function URL's answer to a failed invocation or a response it cannot map.
fn bad_gateway() -> Response<Body> {
    let mut resp = Response::new(Body::from("Internal Server Error"));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// An HTTP API's answer to a failed invocation or a response it cannot map.
fn internal_error() -> Response<Body> {
    simple(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"message":"Internal Server Error"}"#,
    )
}

fn not_found() -> Response<Body> {
    simple(StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#)
}

fn too_large(json: &'static str) -> Response<Body> {
    simple(StatusCode::PAYLOAD_TOO_LARGE, json)
}

fn preflight(status: StatusCode, cors: &Cors, request: &HeaderMap) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    *resp.headers_mut() = cors::preflight_headers(cors, request);
    resp
}

/// A random id of `len` lowercase letters and digits (URL ids, API, route and integration
/// ids).
pub fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(id: &str, prefix: Option<&str>) -> Option<Target> {
        Some(Target::FunctionUrl {
            url_id: id.into(),
            path_prefix: prefix.map(str::to_owned),
        })
    }

    fn api(id: &str, prefix: Option<&str>) -> Option<Target> {
        Some(Target::HttpApi {
            api_id: id.into(),
            path_prefix: prefix.map(str::to_owned),
        })
    }

    #[test]
    fn recognizes_trigger_hosts() {
        let t = Gateway::target;
        assert_eq!(
            t(Some("abc.lambda-url.us-east-1.localhost:9000"), "/x"),
            url("abc", None)
        );
        assert_eq!(
            t(Some("ABC.Lambda-Url.us-east-1.localhost"), "/"),
            url("abc", None)
        );
        assert_eq!(
            t(Some("q1w2e3.execute-api.localhost:80"), "/"),
            api("q1w2e3", None)
        );
        assert_eq!(
            t(Some("q1w2e3.execute-api.eu-west-1.localhost"), "/"),
            api("q1w2e3", None)
        );
        for aws in [
            "127.0.0.1:9000",
            "localhost:9000",
            "lambda-url.us-east-1.localhost",
            "abc.lambda-url.us-east-1.on.aws",
            "x.execute-api.amazonaws.com",
        ] {
            assert_eq!(t(Some(aws), "/2015-03-31/functions"), None, "{aws}");
        }
        assert_eq!(t(None, "/2015-03-31/functions"), None);
    }

    #[test]
    fn recognizes_path_based_forms() {
        let t = Gateway::target;
        assert_eq!(
            t(Some("127.0.0.1:9000"), "/_aws/lambda-url/abc/items/1"),
            url("abc", Some("/_aws/lambda-url/abc"))
        );
        assert_eq!(
            t(None, "/_aws/execute-api/q1w2e3"),
            api("q1w2e3", Some("/_aws/execute-api/q1w2e3"))
        );
        assert_eq!(t(None, "/_aws/execute-api/"), None);
        assert_eq!(t(None, "/_aws/other/abc"), None);
        assert_eq!(t(None, "/_aws"), None);
        // A trigger's host wins: `/_aws/...` is then a path of the function.
        assert_eq!(
            t(
                Some("abc.lambda-url.us-east-1.localhost"),
                "/_aws/execute-api/x/y"
            ),
            url("abc", None)
        );
        assert_eq!(t(Some("x.lambda-url.a.b.localhost"), "/"), None);
        assert_eq!(t(Some("é.localhost"), "/"), None);
    }
}
