//! serval-api: Serval's AWS-compatible HTTP surfaces, served on one address.
//!
//! - Lambda REST API `2015-03-31` (control plane and `Invoke`), rendered exactly as botocore's
//!   model and AWS's responses spell it, errors as `x-amzn-ErrorType` + `{"Type", "Message"}`;
//! - CloudWatch Logs JSON 1.1 protocol (`POST /`, routed by `X-Amz-Target: Logs_20140328.*`);
//! - `GET /_serval/code/<sha256-hex>.zip`, where GetFunction's `Code.Location` points.
//!
//! It is thin: it parses, validates with `serval-model`, asks `serval-store` (blocking, so on
//! `spawn_blocking`) and tells `serval-engine`; the engine and the store decide. Mutations are
//! serialized by [`ApiState::mutations`] so the engine applies them in the store's order. `Invoke` is
//! the hot path and touches neither the store nor a blocking thread.
//!
//! Versions and aliases (`versions`), reserved and provisioned concurrency (`concurrency`),
//! event-invoke configs (`event_config`) and asynchronous `Invoke` follow the same pattern:
//! the API checks AWS's rules and records the setting, the engine applies it.
//!
//! Not for: SigV4 authentication (not checked yet: any credentials are accepted), event
//! sources, the console. See `docs/compat.md` for the operations and fields supported.
//!
//! Entry point: [`router`] with an [`ApiState`] (built by [`ApiState::new`]).

mod apigw;
mod body;
mod code;
mod concurrency;
pub mod error;
mod event_config;
mod eventbridge;
mod functions;
mod invoke;
mod logs;
mod logs_wire;
mod urls;
mod versions;
pub mod wire;

use std::sync::Arc;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use http::{HeaderMap, HeaderValue, Method, Uri};

pub use error::{ApiError, ErrorCode, LogsError};
pub use functions::{CODE_REQUEST_MAX_BYTES, CONTROL_REQUEST_MAX_BYTES};
pub use invoke::{
    AMZN_REQUEST_ID_HEADER, AMZ_REQUEST_ID_HEADER, CLIENT_CONTEXT_HEADER, EXECUTED_VERSION_HEADER,
    FUNCTION_ERROR_HEADER, INVOCATION_TYPE_HEADER, LOG_RESULT_HEADER, LOG_TYPE_HEADER,
};
pub use logs::TARGET_PREFIX as LOGS_TARGET_PREFIX;

/// How many CreateFunction / UpdateFunctionCode requests may hold their code in memory at once.
///
/// Each holds up to [`CODE_REQUEST_MAX_BYTES`] of JSON while it parses and then the decoded zip
/// (about 50 MB) while the store unpacks it; further uploads wait for a permit before reading
/// their body, so the control plane's upload memory stays near `4 × 120 MB` whatever the
/// number of clients.
pub const CODE_UPLOADS_MAX: usize = 4;

/// Everything the handlers need; cheap to clone (handles only). Build it with
/// [`ApiState::new`].
#[derive(Clone)]
pub struct ApiState {
    /// Runs invocations; told about every created, updated and deleted function.
    pub engine: serval_engine::Engine,
    /// Function metadata, code packages and logs; the source of truth for the control plane.
    pub store: serval_store::Store,
    /// The region reported in ARNs (`us-east-1` by default in `serval server`).
    pub region: String,
    /// Serializes every control-plane mutation (create, update code, update configuration,
    /// delete, tag, untag, publish, aliases, concurrency and event-invoke settings): the read of the current configuration, its precondition check, the
    /// store write and the matching `engine.deploy` / `engine.remove` happen as one step under
    /// it, so concurrent updates never overwrite each other and the engine applies changes in
    /// the order the store committed them. A std mutex, taken only inside `spawn_blocking`
    /// closures and never held across an `.await`; the slow part of a mutation (decoding and
    /// unpacking code) runs before it is taken.
    pub mutations: Arc<std::sync::Mutex<()>>,
    /// Bounds concurrent code uploads to [`CODE_UPLOADS_MAX`]; a permit is taken before the
    /// request body is read and released once the package is stored.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Serves Function URLs and HTTP APIs; told about every stored change to them.
    pub gateway: serval_events::Gateway,
    /// Fires scheduled rules; told about every stored change to rules and targets.
    pub schedules: serval_events::Schedules,
}

impl ApiState {
    /// State for [`router`], with a fresh mutation lock and [`CODE_UPLOADS_MAX`] upload permits.
    pub fn new(
        engine: serval_engine::Engine,
        store: serval_store::Store,
        region: impl Into<String>,
        gateway: serval_events::Gateway,
        schedules: serval_events::Schedules,
    ) -> Self {
        Self {
            engine,
            store,
            region: region.into(),
            mutations: Arc::default(),
            uploads: Arc::new(tokio::sync::Semaphore::new(CODE_UPLOADS_MAX)),
            gateway,
            schedules,
        }
    }
}

/// The header naming a JSON-protocol operation (`Logs_20140328.GetLogEvents`).
pub const TARGET_HEADER: &str = "x-amz-target";

/// Every AWS surface Serval serves, as one router, with the HTTP gateway in front: a request
/// addressed to a Function URL or an HTTP API (by `Host` or path prefix) never reaches the
/// AWS APIs. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so triggers
/// see the caller's address (`sourceIp`).
pub fn router(state: ApiState) -> Router {
    let gateway = state.gateway.clone();
    // The AWS router is the fallback of an otherwise empty router, so the gateway layer runs
    // before any route is matched (a layer on the AWS router itself would run inside each
    // matched route and inherit its `Allow` header).
    Router::new()
        .fallback_service(aws_router(state))
        .layer(middleware::from_fn_with_state(gateway, gateway_front))
}

/// Sends requests for Function URLs and HTTP APIs to the gateway, the rest on.
async fn gateway_front(
    State(gateway): State<serval_events::Gateway>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    match serval_events::Gateway::target(host, req.uri().path()) {
        Some(target) => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |c| c.0);
            gateway.serve(target, req, peer).await
        }
        None => next.run(req).await,
    }
}

/// The AWS APIs alone.
fn aws_router(state: ApiState) -> Router {
    let functions = "/2015-03-31/functions";
    Router::new()
        .route(
            functions,
            post(functions::create_function).get(functions::list_functions),
        )
        .route(
            "/2015-03-31/functions/",
            post(functions::create_function).get(functions::list_functions),
        )
        .route(
            "/2015-03-31/functions/{function}",
            get(functions::get_function).delete(functions::delete_function),
        )
        .route(
            "/2015-03-31/functions/{function}/configuration",
            get(functions::get_function_configuration)
                .put(functions::update_function_configuration),
        )
        .route(
            "/2015-03-31/functions/{function}/code",
            put(functions::update_function_code),
        )
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(invoke::invoke),
        )
        .route(
            "/2015-03-31/functions/{function}/versions",
            post(versions::publish_version).get(versions::list_versions),
        )
        .route(
            "/2015-03-31/functions/{function}/aliases",
            post(versions::create_alias).get(versions::list_aliases),
        )
        .route(
            "/2015-03-31/functions/{function}/aliases/{name}",
            get(versions::get_alias)
                .put(versions::update_alias)
                .delete(versions::delete_alias),
        )
        .route(
            "/2017-10-31/functions/{function}/concurrency",
            put(concurrency::put_function_concurrency)
                .delete(concurrency::delete_function_concurrency),
        )
        .route(
            "/2019-09-30/functions/{function}/concurrency",
            get(concurrency::get_function_concurrency),
        )
        .route(
            "/2019-09-30/functions/{function}/provisioned-concurrency",
            put(concurrency::put_provisioned_concurrency)
                .get(concurrency::get_provisioned_concurrency)
                .delete(concurrency::delete_provisioned_concurrency),
        )
        .route(
            "/2019-09-25/functions/{function}/event-invoke-config",
            put(event_config::put_event_invoke_config)
                .post(event_config::update_event_invoke_config)
                .get(event_config::get_event_invoke_config)
                .delete(event_config::delete_event_invoke_config),
        )
        .route(
            "/2019-09-25/functions/{function}/event-invoke-config/list",
            get(event_config::list_event_invoke_configs),
        )
        .route(
            "/2016-08-19/account-settings",
            get(functions::get_account_settings),
        )
        .route(
            "/2016-08-19/account-settings/",
            get(functions::get_account_settings),
        )
        .route(
            "/2017-03-31/tags/{resource}",
            get(functions::list_tags)
                .post(functions::tag_resource_handler)
                .delete(functions::untag_resource),
        )
        .route("/_serval/code/{file}", get(code::download))
        .merge(urls::routes())
        .merge(apigw::routes())
        .route("/", post(aws_json))
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
        .layer(middleware::map_response(add_request_id))
        .with_state(state)
}

/// `POST /`: the JSON protocols, routed by `X-Amz-Target`.
async fn aws_json(State(state): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    let target = headers
        .get(TARGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match target {
        Some(t) if t.starts_with(logs::TARGET_PREFIX) => {
            let op = &t[logs::TARGET_PREFIX.len()..];
            logs::dispatch(state, op, headers, body).await
        }
        Some(t) if t.starts_with(eventbridge::TARGET_PREFIX) => {
            let op = &t[eventbridge::TARGET_PREFIX.len()..];
            eventbridge::dispatch(state, op, headers, body).await
        }
        Some(t) => logs::unknown_operation(&t).into_response(),
        None => logs::unknown_operation("(no X-Amz-Target header)").into_response(),
    }
}

/// Any method and path Serval does not serve: 404 in the Lambda error shape.
async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownOperation,
        format!("Unknown operation: {method} {}", uri.path()),
    )
}

/// Gives every response the `x-amzn-RequestId` header AWS responses carry (Invoke sets its
/// own: the invocation's request id).
async fn add_request_id(mut resp: Response) -> Response {
    if !resp.headers().contains_key(AMZN_REQUEST_ID_HEADER) {
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(AMZN_REQUEST_ID_HEADER, v);
        }
    }
    resp
}
