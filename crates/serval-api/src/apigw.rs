//! API Gateway v2 (`apigatewayv2`, REST JSON under `/v2/apis`) for HTTP APIs: APIs (with
//! quick create), integrations, routes and stages.
//!
//! The wire follows botocore's model `apigatewayv2/2018-11-29`: camelCase members, status codes
//! 201 for creates and 204 for deletes, and errors as `x-amzn-ErrorType` + `{"message"}`
//! ([`ApigwError`], this service's own error shape; the Lambda API's is not reused).
//!
//! Every mutation follows the crate's protocol: parse and validate without a lock, then under
//! [`ApiState::mutations`] (on a blocking thread) read the API, check the rules that need the
//! store (API exists, route key unique, target exists), write the store and hand the gateway
//! the API's full snapshot ([`serval_events::Gateway::set_api`]), so the gateway serves what
//! the store holds, in the store's order.
//!
//! What Serval serves of an HTTP API: `AWS_PROXY` integrations to Lambda functions (payload
//! format 1.0 or 2.0), routes without authorization, stages (`$default` at the root, named
//! ones under `/<name>/`) and CORS. Every stage serves the API's current routes and
//! integrations: there are no deployment snapshots, so CreateDeployment is accepted and does
//! nothing. WebSocket APIs, other integration types, authorizers, parameter mapping, access
//! logs and throttling settings are refused with `BadRequestException` saying so.
//!
//! Not for: serving the APIs (`serval_events::http`), route selection (`serval_events::route`).

use std::collections::BTreeMap;
use std::error::Error as StdError;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serval_events::http::random_id;
use serval_events::route::RouteKey;
use serval_model::{
    ApiIntegration, ApiRoute, ApiStage, Cors, FunctionRef, HttpApi, HttpApiSnapshot, ACCOUNT_ID,
};
use serval_store::{Store, StoreError};

use crate::body::{read_limited, BodyError};
use crate::error::{chain, ERROR_TYPE_HEADER};
use crate::functions::{run_blocking, run_mutation, CONTROL_REQUEST_MAX_BYTES};
use crate::ApiState;

/// Length of an API id.
const API_ID_LEN: usize = 10;
/// Length of an integration or route id.
const PART_ID_LEN: usize = 7;
/// Length of a deployment id.
const DEPLOYMENT_ID_LEN: usize = 6;
/// Most HTTP APIs one server keeps (AWS's regional quota per account).
const APIS_MAX: usize = 600;
/// Most routes of one API (AWS's quota).
const ROUTES_PER_API_MAX: usize = 300;
/// Most integrations of one API (AWS's quota).
const INTEGRATIONS_PER_API_MAX: usize = 300;
/// Most stages of one API (AWS's quota).
const STAGES_PER_API_MAX: usize = 10;
/// Most tags on an API or a stage.
const TAGS_MAX: usize = 50;
/// Items per page of the Get* list operations when `maxResults` is not given.
const PAGE_DEFAULT: usize = 100;
/// Most items per page, whatever `maxResults` asks.
const PAGE_MAX: usize = 500;
/// An integration's timeout when not given, and the most it may be (milliseconds).
const TIMEOUT_MS_DEFAULT: u32 = 30_000;
/// The least an integration's timeout may be (milliseconds).
const TIMEOUT_MS_MIN: u32 = 50;
/// The only route selection expression of HTTP APIs, as stored and rendered.
const ROUTE_SELECTION_EXPRESSION: &str = "$request.method $request.path";
/// The API key selection expression AWS reports for HTTP APIs.
const API_KEY_SELECTION_EXPRESSION: &str = "$request.header.x-api-key";
/// The catch-all route key and the root stage's name.
const DEFAULT: &str = "$default";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The error names API Gateway v2 answers with, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApigwErrorCode {
    /// 404: the API, integration, route or stage does not exist.
    NotFound,
    /// 400: a member has a value API Gateway (or Serval) refuses.
    BadRequest,
    /// 409: a route key or stage name is taken, or an integration is in use.
    Conflict,
    /// 500: Serval itself failed.
    Internal,
}

impl ApigwErrorCode {
    /// The name sent in `x-amzn-ErrorType`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ApigwErrorCode::NotFound => "NotFoundException",
            ApigwErrorCode::BadRequest => "BadRequestException",
            ApigwErrorCode::Conflict => "ConflictException",
            ApigwErrorCode::Internal => "InternalServerErrorException",
        }
    }

    /// The HTTP status.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            ApigwErrorCode::NotFound => StatusCode::NOT_FOUND,
            ApigwErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ApigwErrorCode::Conflict => StatusCode::CONFLICT,
            ApigwErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failed API Gateway v2 call, rendered as AWS renders them: the status, the header
/// `x-amzn-ErrorType: <Name>` (botocore takes the error code from it) and the body
/// `{"message": "..."}`.
#[derive(Debug)]
pub(crate) struct ApigwError {
    code: ApigwErrorCode,
    message: String,
    /// A platform failure's cause, logged once when the error is rendered.
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl ApigwError {
    fn new(code: ApigwErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// `BadRequestException`.
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ApigwErrorCode::BadRequest, message)
    }

    /// `ConflictException`.
    fn conflict(message: impl Into<String>) -> Self {
        Self::new(ApigwErrorCode::Conflict, message)
    }

    /// `NotFoundException` for an API, in AWS's words (`<account>:<api-id>`).
    fn api_not_found(api_id: &str) -> Self {
        Self::new(
            ApigwErrorCode::NotFound,
            format!("Invalid API identifier specified {ACCOUNT_ID}:{api_id}"),
        )
    }

    /// `NotFoundException` for an integration, route or stage, in its kind's words.
    fn part_not_found<P: ApiPart>(id: &str) -> Self {
        Self::new(ApigwErrorCode::NotFound, format!("{} {id}", P::NOT_FOUND))
    }

    /// A platform failure doing `what` (lowercase, names the object); logged at ERROR with
    /// `source` when rendered.
    fn internal(what: impl Into<String>, source: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            source: Some(Box::new(source)),
            ..Self::new(ApigwErrorCode::Internal, what)
        }
    }

    /// The error's code.
    #[cfg(test)]
    pub(crate) fn code(&self) -> ApigwErrorCode {
        self.code
    }

    /// The message sent to the caller.
    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApigwError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl IntoResponse for ApigwError {
    fn into_response(self) -> Response {
        if let Some(source) = self.source.as_deref() {
            tracing::error!(error = %chain(source), "apigw api: {}", self.message);
        }
        let body = serde_json::json!({ "message": self.message });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.code.status(), bytes).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            ERROR_TYPE_HEADER,
            HeaderValue::from_static(self.code.name()),
        );
        resp
    }
}

/// A worker task that died (a panic in `spawn_blocking`).
impl From<tokio::task::JoinError> for ApigwError {
    fn from(err: tokio::task::JoinError) -> Self {
        ApigwError::internal("a worker task failed", err)
    }
}

/// Handlers check the store's preconditions themselves under the mutation lock, so any store
/// failure left is a platform failure.
impl From<StoreError> for ApigwError {
    fn from(err: StoreError) -> Self {
        ApigwError::internal("metadata store failed", err)
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes
// ---------------------------------------------------------------------------------------------

/// `Cors` on the wire (`corsConfiguration`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireCors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expose_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age: Option<i64>,
}

impl From<&Cors> for WireCors {
    fn from(c: &Cors) -> Self {
        WireCors {
            allow_credentials: c.allow_credentials,
            allow_headers: c.allow_headers.clone(),
            allow_methods: c.allow_methods.clone(),
            allow_origins: c.allow_origins.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age: c.max_age,
        }
    }
}

/// CreateApi's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct CreateApiRequest {
    api_key_selection_expression: Option<String>,
    cors_configuration: Option<WireCors>,
    /// Quick create's integration credentials: IAM is not enforced, so ignored.
    credentials_arn: Option<String>,
    description: Option<String>,
    /// WebSocket only; ignored.
    disable_schema_validation: Option<bool>,
    disable_execute_api_endpoint: Option<bool>,
    ip_address_type: Option<String>,
    name: Option<String>,
    protocol_type: Option<String>,
    route_key: Option<String>,
    route_selection_expression: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    target: Option<String>,
    version: Option<String>,
}

/// UpdateApi's body: absent members keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct UpdateApiRequest {
    api_key_selection_expression: Option<String>,
    cors_configuration: Option<WireCors>,
    credentials_arn: Option<String>,
    description: Option<String>,
    disable_schema_validation: Option<bool>,
    disable_execute_api_endpoint: Option<bool>,
    ip_address_type: Option<String>,
    name: Option<String>,
    route_key: Option<String>,
    route_selection_expression: Option<String>,
    target: Option<String>,
    version: Option<String>,
}

/// CreateIntegration's and UpdateIntegration's body (UpdateIntegration: absent members keep
/// their value). Members Serval does not support are kept loosely typed so they can be
/// refused with a clear message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct IntegrationRequest {
    connection_id: Option<Value>,
    connection_type: Option<String>,
    content_handling_strategy: Option<Value>,
    /// IAM is not enforced, so ignored.
    credentials_arn: Option<String>,
    description: Option<String>,
    integration_method: Option<String>,
    integration_subtype: Option<Value>,
    integration_type: Option<String>,
    integration_uri: Option<String>,
    passthrough_behavior: Option<Value>,
    payload_format_version: Option<String>,
    request_parameters: Option<Value>,
    request_templates: Option<Value>,
    response_parameters: Option<Value>,
    template_selection_expression: Option<Value>,
    timeout_in_millis: Option<i64>,
    tls_config: Option<Value>,
}

/// CreateRoute's and UpdateRoute's body (UpdateRoute: absent members keep their value).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct RouteRequest {
    api_key_required: Option<bool>,
    authorization_scopes: Option<Value>,
    authorization_type: Option<String>,
    authorizer_id: Option<Value>,
    model_selection_expression: Option<Value>,
    operation_name: Option<String>,
    request_models: Option<Value>,
    request_parameters: Option<Value>,
    route_key: Option<String>,
    route_response_selection_expression: Option<Value>,
    target: Option<String>,
}

/// CreateStage's and UpdateStage's body (UpdateStage: absent members keep their value;
/// `stageName` and `tags` are CreateStage's only).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct StageRequest {
    access_log_settings: Option<Value>,
    auto_deploy: Option<bool>,
    client_certificate_id: Option<Value>,
    default_route_settings: Option<Value>,
    /// Every stage serves the API's current routes, so a deployment id changes nothing.
    deployment_id: Option<String>,
    description: Option<String>,
    route_settings: Option<Value>,
    stage_name: Option<String>,
    stage_variables: Option<BTreeMap<String, String>>,
    tags: Option<BTreeMap<String, String>>,
}

/// CreateDeployment's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct CreateDeploymentRequest {
    description: Option<String>,
    stage_name: Option<String>,
}

/// An API as the operations return it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiOut<'a> {
    api_endpoint: String,
    api_id: &'a str,
    api_key_selection_expression: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cors_configuration: Option<WireCors>,
    created_date: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    disable_execute_api_endpoint: bool,
    name: &'a str,
    protocol_type: &'a str,
    route_selection_expression: &'a str,
    tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
}

impl<'a> ApiOut<'a> {
    fn new(api: &'a HttpApi, state: &ApiState) -> Self {
        ApiOut {
            api_endpoint: state.gateway.api_endpoint(&api.api_id),
            api_id: &api.api_id,
            api_key_selection_expression: &api.api_key_selection_expression,
            cors_configuration: api.cors.as_ref().map(WireCors::from),
            created_date: &api.created_date,
            description: api.description.as_deref(),
            disable_execute_api_endpoint: api.disable_execute_api_endpoint,
            name: &api.name,
            protocol_type: &api.protocol_type,
            route_selection_expression: &api.route_selection_expression,
            tags: &api.tags,
            version: api.version.as_deref(),
        }
    }
}

/// An integration as the operations return it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IntegrationOut<'a> {
    api_gateway_managed: bool,
    connection_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    integration_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    integration_method: Option<&'a str>,
    integration_type: &'a str,
    integration_uri: &'a str,
    payload_format_version: &'a str,
    timeout_in_millis: u32,
}

impl<'a> From<&'a ApiIntegration> for IntegrationOut<'a> {
    fn from(i: &'a ApiIntegration) -> Self {
        IntegrationOut {
            api_gateway_managed: i.api_gateway_managed,
            connection_type: &i.connection_type,
            description: i.description.as_deref(),
            integration_id: &i.integration_id,
            integration_method: i.integration_method.as_deref(),
            integration_type: &i.integration_type,
            integration_uri: &i.integration_uri,
            payload_format_version: &i.payload_format_version,
            timeout_in_millis: i.timeout_in_millis,
        }
    }
}

/// A route as the operations return it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RouteOut<'a> {
    api_gateway_managed: bool,
    api_key_required: bool,
    authorization_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation_name: Option<&'a str>,
    route_id: &'a str,
    route_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
}

impl<'a> From<&'a ApiRoute> for RouteOut<'a> {
    fn from(r: &'a ApiRoute) -> Self {
        RouteOut {
            api_gateway_managed: r.api_gateway_managed,
            api_key_required: r.api_key_required,
            authorization_type: &r.authorization_type,
            operation_name: r.operation_name.as_deref(),
            route_id: &r.route_id,
            route_key: &r.route_key,
            target: r.target.as_deref(),
        }
    }
}

/// `defaultRouteSettings` as AWS reports it for a stage without settings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RouteSettingsOut {
    detailed_metrics_enabled: bool,
}

/// A stage as the operations return it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StageOut<'a> {
    api_gateway_managed: bool,
    auto_deploy: bool,
    created_date: &'a str,
    default_route_settings: RouteSettingsOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    last_updated_date: &'a str,
    route_settings: BTreeMap<String, Value>,
    stage_name: &'a str,
    stage_variables: &'a BTreeMap<String, String>,
    tags: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a ApiStage> for StageOut<'a> {
    fn from(s: &'a ApiStage) -> Self {
        StageOut {
            api_gateway_managed: s.api_gateway_managed,
            auto_deploy: s.auto_deploy,
            created_date: &s.created_date,
            default_route_settings: RouteSettingsOut {
                detailed_metrics_enabled: false,
            },
            description: s.description.as_deref(),
            last_updated_date: &s.last_updated_date,
            route_settings: BTreeMap::new(),
            stage_name: &s.stage_name,
            stage_variables: &s.stage_variables,
            tags: &s.tags,
        }
    }
}

/// A deployment as CreateDeployment returns it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentOut {
    auto_deployed: bool,
    created_date: String,
    deployment_id: String,
    deployment_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

/// One page of a Get* list operation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PageOut<T> {
    items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Routes, extractors and the mutation protocol
// ---------------------------------------------------------------------------------------------

/// The `/v2/apis` routes, and a refusal for the rest of `/v2`.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v2/apis", post(create_api).get(get_apis).put(unsupported))
        .route(
            "/v2/apis/{apiId}",
            get(get_api)
                .patch(update_api)
                .delete(delete_api)
                .put(unsupported),
        )
        .route("/v2/apis/{apiId}/cors", delete(delete_cors_configuration))
        .route(
            "/v2/apis/{apiId}/integrations",
            post(create_integration).get(get_parts::<ApiIntegration>),
        )
        .route(
            "/v2/apis/{apiId}/integrations/{integrationId}",
            get(get_part::<ApiIntegration>)
                .patch(update_integration)
                .delete(delete_part::<ApiIntegration>),
        )
        .route(
            "/v2/apis/{apiId}/routes",
            post(create_route).get(get_parts::<ApiRoute>),
        )
        .route(
            "/v2/apis/{apiId}/routes/{routeId}",
            get(get_part::<ApiRoute>)
                .patch(update_route)
                .delete(delete_part::<ApiRoute>),
        )
        .route(
            "/v2/apis/{apiId}/stages",
            post(create_stage).get(get_parts::<ApiStage>),
        )
        .route(
            "/v2/apis/{apiId}/stages/{stageName}",
            get(get_part::<ApiStage>)
                .patch(update_stage)
                .delete(delete_part::<ApiStage>),
        )
        .route(
            "/v2/apis/{apiId}/deployments",
            post(create_deployment).get(unsupported),
        )
        .route("/v2/{*rest}", any(unsupported))
}

/// The `{apiId}` of a route, percent-decoded.
struct ApiId(String);

impl<S: Send + Sync> FromRequestParts<S> for ApiId {
    type Rejection = ApigwError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| ApiId(id))
            .map_err(|rejection| {
                ApigwError::bad_request(format!(
                    "Invalid path parameter: {}",
                    rejection.body_text()
                ))
            })
    }
}

/// The `{apiId}` and the part's id (integration id, route id or stage name) of a route.
struct PartId(String, String);

impl<S: Send + Sync> FromRequestParts<S> for PartId {
    type Rejection = ApigwError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|Path((api, part))| PartId(api, part))
            .map_err(|rejection| {
                ApigwError::bad_request(format!(
                    "Invalid path parameter: {}",
                    rejection.body_text()
                ))
            })
    }
}

/// Reads a JSON body of at most [`CONTROL_REQUEST_MAX_BYTES`]; an empty body is `{}`.
async fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, ApigwError> {
    let bytes = read_limited(headers, body, CONTROL_REQUEST_MAX_BYTES)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge { limit, .. } => {
                ApigwError::bad_request(format!("Request body must be smaller than {limit} bytes"))
            }
            BodyError::Read { .. } => ApigwError::bad_request("Could not read the request body"),
        })?;
    parse_body(&bytes)
}

/// Parses a request body; unknown members are refused.
fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApigwError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|err| ApigwError::bad_request(format!("Invalid request body: {err}")))
}

/// The API and its parts, or `NotFoundException`.
fn load(st: &ApiState, api_id: &str) -> Result<HttpApiSnapshot, ApigwError> {
    st.store
        .http_api_snapshot(api_id)?
        .ok_or_else(|| ApigwError::api_not_found(api_id))
}

/// Hands the gateway the API as the store now holds it, read back (the caller holds the
/// mutation lock and has written the store). The change is stored, so a failed read-back does
/// not fail the call: it is logged, and the gateway keeps serving the API's previous state
/// until the API changes again or Serval restarts (start-up loads every API).
fn publish(st: &ApiState, api_id: &str) {
    match st.store.http_api_snapshot(api_id) {
        Ok(Some(snapshot)) => st.gateway.set_api(snapshot),
        Ok(None) => st.gateway.remove_api(api_id),
        Err(error) => tracing::error!(
            api = %api_id,
            error = %chain(&error),
            "failed to read back http api {api_id} for the gateway; it keeps the api's previous \
             state"
        ),
    }
}

/// A random id of `len` characters that `taken` does not hold.
fn fresh_id(
    len: usize,
    mut taken: impl FnMut(&str) -> Result<bool, ApigwError>,
) -> Result<String, ApigwError> {
    for _ in 0..16 {
        let id = random_id(len);
        if !taken(&id)? {
            return Ok(id);
        }
    }
    Err(ApigwError::internal(
        "failed to pick an unused id",
        std::io::Error::other("16 random ids in a row were taken"),
    ))
}

/// Now, as API Gateway v2 renders `createdDate` (`2026-11-25T10:00:00Z`).
fn now_iso8601() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

/// Anything under `/v2` Serval does not serve: `BadRequestException` naming what is missing.
async fn unsupported(method: Method, uri: Uri) -> ApigwError {
    let path = uri.path();
    let what = if path.contains("/authorizers") {
        "Authorizers are not supported by Serval: routes take authorizationType NONE only"
    } else if path.contains("/deployments") {
        "Serval keeps no deployments: every stage serves the API's current routes and integrations, and CreateDeployment is accepted as a no-op"
    } else if path.starts_with("/v2/tags") {
        "Tagging operations are not supported by Serval yet; give tags to CreateApi or CreateStage"
    } else if method == Method::PUT && path.starts_with("/v2/apis") {
        "Importing OpenAPI definitions is not supported by Serval; build the API with CreateApi, CreateIntegration, CreateRoute and CreateStage"
    } else {
        "This API Gateway operation is not supported by Serval: it serves HTTP APIs with Lambda proxy integrations, routes, stages and CORS"
    };
    ApigwError::bad_request(format!("{what} ({method} {path})"))
}

// ---------------------------------------------------------------------------------------------
// Validation (pure)
// ---------------------------------------------------------------------------------------------

/// A required member, or `BadRequestException`.
fn required<T>(value: Option<T>, member: &str) -> Result<T, ApigwError> {
    value.ok_or_else(|| ApigwError::bad_request(format!("Invalid input: {member} is required")))
}

/// Checks a string member's length in characters.
fn check_len(member: &str, value: &str, min: usize, max: usize) -> Result<(), ApigwError> {
    let n = value.chars().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(ApigwError::bad_request(format!(
            "Invalid {member}: it must be {min} to {max} characters long"
        )))
    }
}

fn check_name(name: &str) -> Result<(), ApigwError> {
    check_len("name", name, 1, 128)
}

fn check_description(description: Option<&str>) -> Result<(), ApigwError> {
    description.map_or(Ok(()), |d| check_len("description", d, 0, 1024))
}

fn check_version(version: Option<&str>) -> Result<(), ApigwError> {
    version.map_or(Ok(()), |v| check_len("version", v, 1, 64))
}

/// `protocolType`: `HTTP`; WebSocket APIs are refused.
fn check_protocol(protocol: &str) -> Result<(), ApigwError> {
    match protocol {
        "HTTP" => Ok(()),
        "WEBSOCKET" => Err(ApigwError::bad_request(
            "WebSocket APIs are not supported by Serval; use protocolType HTTP",
        )),
        _ => Err(ApigwError::bad_request(
            "Invalid protocol specified. Must be one of [HTTP, WEBSOCKET]",
        )),
    }
}

/// `routeSelectionExpression`: HTTP APIs take only `${request.method} ${request.path}`
/// (either spelling).
fn check_route_selection_expression(expr: &str) -> Result<(), ApigwError> {
    match expr {
        ROUTE_SELECTION_EXPRESSION | "${request.method} ${request.path}" => Ok(()),
        _ => Err(ApigwError::bad_request(format!(
            "Invalid routeSelectionExpression {expr}: HTTP APIs take only ${{request.method}} ${{request.path}}"
        ))),
    }
}

/// `ipAddressType`: the model's values, accepted and not kept (Serval listens where it is
/// told to).
fn check_ip_address_type(value: Option<&str>) -> Result<(), ApigwError> {
    match value {
        None | Some("ipv4" | "dualstack") => Ok(()),
        Some(other) => Err(ApigwError::bad_request(format!(
            "Invalid ipAddressType {other}: must be one of [ipv4, dualstack]"
        ))),
    }
}

/// Refuses a member Serval does not support, unless it is absent, null or empty.
fn refuse_if_set(value: &Option<Value>, message: &str) -> Result<(), ApigwError> {
    let set = match value {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    if set {
        Err(ApigwError::bad_request(message))
    } else {
        Ok(())
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ApigwError> {
    if tags.len() > TAGS_MAX {
        return Err(ApigwError::bad_request(format!(
            "Invalid tags: at most {TAGS_MAX} tags per resource"
        )));
    }
    for (k, v) in tags {
        check_len("tag key", k, 1, 128)?;
        check_len("tag value", v, 0, 256)?;
    }
    Ok(())
}

/// The HTTP methods a CORS configuration may allow, in any case (`*` allows all).
const CORS_METHODS: &[&str] = &[
    "*", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
];

/// Checks a `corsConfiguration` with AWS's rules and converts it to the stored shape.
fn check_cors(cors: &WireCors) -> Result<Cors, ApigwError> {
    if let Some(max_age) = cors.max_age {
        if !(-1..=86_400).contains(&max_age) {
            return Err(ApigwError::bad_request(format!(
                "Invalid maxAge {max_age}: must be between -1 and 86400"
            )));
        }
    }
    for method in cors.allow_methods.iter().flatten() {
        if !CORS_METHODS.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return Err(ApigwError::bad_request(format!(
                "Invalid allowMethods: {method} is not an HTTP method"
            )));
        }
    }
    let lists = [
        &cors.allow_headers,
        &cors.allow_methods,
        &cors.allow_origins,
        &cors.expose_headers,
    ];
    if lists
        .iter()
        .any(|l| l.iter().flatten().any(|v| v.is_empty()))
    {
        return Err(ApigwError::bad_request(
            "Invalid corsConfiguration: values must not be empty",
        ));
    }
    let any_origin = cors.allow_origins.iter().flatten().any(|o| o == "*");
    if cors.allow_credentials == Some(true) && any_origin {
        return Err(ApigwError::bad_request(
            "allow-credentials is not supported if 'allow-origin' is *",
        ));
    }
    Ok(Cors {
        allow_credentials: cors.allow_credentials,
        allow_headers: cors.allow_headers.clone(),
        allow_methods: cors.allow_methods.clone(),
        allow_origins: cors.allow_origins.clone(),
        expose_headers: cors.expose_headers.clone(),
        max_age: cors.max_age,
    })
}

/// Checks a Lambda target: a function ARN (optionally qualified) or API Gateway's invocation
/// URI `arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function-arn>/invocations`.
/// HTTP URLs (HTTP_PROXY) and other ARNs are refused.
fn check_function_uri(uri: &str) -> Result<FunctionRef, ApigwError> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Err(ApigwError::bad_request(format!(
            "HTTP_PROXY integrations are not supported by Serval: {uri} is a URL; give a Lambda function ARN"
        )));
    }
    let invalid = || {
        ApigwError::bad_request(format!(
            "Invalid integration URI specified {uri}: give a Lambda function ARN or arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function-arn>/invocations"
        ))
    };
    check_len("integrationUri", uri, 1, 2048)?;
    let arn = match uri.strip_prefix("arn:aws:apigateway:") {
        Some(rest) => rest
            .split_once(':')
            .and_then(|(_region, rest)| rest.strip_prefix("lambda:path/2015-03-31/functions/"))
            .and_then(|rest| rest.strip_suffix("/invocations"))
            .ok_or_else(invalid)?,
        None => uri,
    };
    if !arn.starts_with("arn:") {
        return Err(invalid());
    }
    FunctionRef::parse(arn).map_err(|_| invalid())
}

/// `integrationType`: `AWS_PROXY` only.
fn check_integration_type(kind: &str) -> Result<(), ApigwError> {
    match kind {
        "AWS_PROXY" => Ok(()),
        "AWS" | "HTTP" | "MOCK" | "HTTP_PROXY" => Err(ApigwError::bad_request(format!(
            "{kind} integrations are not supported by Serval: integrationType must be AWS_PROXY with a Lambda function"
        ))),
        _ => Err(ApigwError::bad_request(format!(
            "Invalid integrationType {kind}: must be one of [AWS, HTTP, MOCK, HTTP_PROXY, AWS_PROXY]"
        ))),
    }
}

fn check_payload_format_version(version: &str) -> Result<(), ApigwError> {
    match version {
        "1.0" | "2.0" => Ok(()),
        _ => Err(ApigwError::bad_request(format!(
            "Invalid payloadFormatVersion {version}: Lambda proxy integrations take 1.0 or 2.0"
        ))),
    }
}

fn check_timeout_ms(ms: i64) -> Result<u32, ApigwError> {
    match u32::try_from(ms) {
        Ok(ms) if (TIMEOUT_MS_MIN..=TIMEOUT_MS_DEFAULT).contains(&ms) => Ok(ms),
        _ => Err(ApigwError::bad_request(format!(
            "Invalid timeoutInMillis {ms}: must be between {TIMEOUT_MS_MIN} and {TIMEOUT_MS_DEFAULT} for HTTP APIs"
        ))),
    }
}

/// `connectionType`: `INTERNET` (the default); VPC links are refused.
fn check_connection_type(value: &str) -> Result<(), ApigwError> {
    match value {
        "INTERNET" => Ok(()),
        "VPC_LINK" => Err(ApigwError::bad_request(
            "VPC links are not supported by Serval: connectionType must be INTERNET",
        )),
        _ => Err(ApigwError::bad_request(format!(
            "Invalid connectionType {value}: must be one of [INTERNET, VPC_LINK]"
        ))),
    }
}

/// Refuses the integration members Serval does not support.
fn refuse_unsupported_integration_members(req: &IntegrationRequest) -> Result<(), ApigwError> {
    refuse_if_set(
        &req.connection_id,
        "VPC links are not supported by Serval: connectionId cannot be set",
    )?;
    refuse_if_set(
        &req.integration_subtype,
        "AWS service integrations are not supported by Serval: integrationSubtype cannot be set",
    )?;
    for (value, member) in [
        (&req.content_handling_strategy, "contentHandlingStrategy"),
        (&req.passthrough_behavior, "passthroughBehavior"),
        (
            &req.template_selection_expression,
            "templateSelectionExpression",
        ),
        (&req.request_templates, "requestTemplates"),
    ] {
        refuse_if_set(
            value,
            &format!("{member} is supported only for WebSocket APIs"),
        )?;
    }
    for (value, member) in [
        (&req.request_parameters, "requestParameters"),
        (&req.response_parameters, "responseParameters"),
    ] {
        refuse_if_set(
            value,
            &format!("Parameter mapping is not supported by Serval: {member} cannot be set"),
        )?;
    }
    refuse_if_set(
        &req.tls_config,
        "tlsConfig applies to private integrations, which Serval does not support",
    )
}

/// Parses a route `target`: `integrations/<integration-id>`.
fn parse_target(target: &str) -> Result<&str, ApigwError> {
    match target.strip_prefix("integrations/") {
        Some(id) if !id.is_empty() && !id.contains('/') => Ok(id),
        _ => Err(ApigwError::bad_request(format!(
            "Invalid target {target}: must be integrations/<integration-id>"
        ))),
    }
}

/// Validates a route key (`$default`, `GET /items/{id}`, `ANY /{proxy+}`).
fn check_route_key(key: &str) -> Result<(), ApigwError> {
    RouteKey::parse(key)
        .map(|_| ())
        .map_err(|err| ApigwError::bad_request(err.to_string()))
}

/// One segment of a route key's path, for conflict checks.
#[derive(Debug, PartialEq, Eq)]
enum KeySegment<'a> {
    Literal(&'a str),
    Variable(&'a str),
    Greedy(&'a str),
}

/// The path segments of a parsed, non-`$default` route key.
fn key_segments(key: &str) -> Vec<KeySegment<'_>> {
    let Some((_, path)) = key.split_once(' ') else {
        return Vec::new();
    };
    path.trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(name) => KeySegment::Greedy(name),
                    None => KeySegment::Variable(name),
                },
                None => KeySegment::Literal(s),
            },
        )
        .collect()
}

/// Whether two route keys name different variables at the same place of the same path
/// (`/users/{id}` and `/users/{userId}/posts`), which AWS refuses.
fn conflicting_variables(a: &str, b: &str) -> bool {
    for pair in key_segments(a).iter().zip(key_segments(b).iter()) {
        match pair {
            (KeySegment::Literal(x), KeySegment::Literal(y)) if x == y => {}
            (KeySegment::Variable(x), KeySegment::Variable(y))
            | (KeySegment::Greedy(x), KeySegment::Greedy(y)) => {
                if x != y {
                    return true;
                }
            }
            _ => return false,
        }
    }
    false
}

/// Checks that `key` may join `routes` (leaving out the route `except`, being updated): no
/// route has the same key, none a conflicting variable.
fn check_route_key_free(
    key: &str,
    routes: &[ApiRoute],
    except: Option<&str>,
) -> Result<(), ApigwError> {
    for other in routes
        .iter()
        .filter(|r| Some(r.route_id.as_str()) != except)
    {
        if other.route_key == key {
            return Err(ApigwError::conflict(format!(
                "Route with key {key} already exists for this API"
            )));
        }
        if conflicting_variables(key, &other.route_key) {
            return Err(ApigwError::conflict(format!(
                "The provided route key \"{key}\" has a conflicting variable on the same hierarchical level as \"{}\"",
                other.route_key
            )));
        }
    }
    Ok(())
}

/// `authorizationType`: `NONE` only.
fn check_authorization_type(value: &str) -> Result<(), ApigwError> {
    match value {
        "NONE" => Ok(()),
        "AWS_IAM" | "CUSTOM" | "JWT" => Err(ApigwError::bad_request(format!(
            "Authorizers are not supported by Serval: authorizationType must be NONE, not {value}"
        ))),
        _ => Err(ApigwError::bad_request(format!(
            "Invalid authorizationType {value}: must be one of [NONE, AWS_IAM, CUSTOM, JWT]"
        ))),
    }
}

/// Refuses the route members Serval does not support.
fn refuse_unsupported_route_members(req: &RouteRequest) -> Result<(), ApigwError> {
    if let Some(kind) = &req.authorization_type {
        check_authorization_type(kind)?;
    }
    refuse_if_set(
        &req.authorizer_id,
        "Authorizers are not supported by Serval: authorizerId cannot be set",
    )?;
    refuse_if_set(
        &req.authorization_scopes,
        "Authorizers are not supported by Serval: authorizationScopes cannot be set",
    )?;
    if req.api_key_required == Some(true) {
        return Err(ApigwError::bad_request(
            "apiKeyRequired is supported only for WebSocket APIs",
        ));
    }
    for (value, member) in [
        (&req.model_selection_expression, "modelSelectionExpression"),
        (&req.request_models, "requestModels"),
        (
            &req.route_response_selection_expression,
            "routeResponseSelectionExpression",
        ),
    ] {
        refuse_if_set(
            value,
            &format!("{member} is supported only for WebSocket APIs"),
        )?;
    }
    refuse_if_set(
        &req.request_parameters,
        "Request parameter validation is not supported by Serval: requestParameters cannot be set",
    )?;
    if let Some(name) = &req.operation_name {
        check_len("operationName", name, 1, 64)?;
    }
    Ok(())
}

/// A stage name: `$default`, or 1 to 128 of `[A-Za-z0-9_-]`.
fn check_stage_name(name: &str) -> Result<(), ApigwError> {
    let ok = name == DEFAULT
        || (!name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if ok {
        Ok(())
    } else {
        Err(ApigwError::bad_request(format!(
            "Invalid stage name {name}: a stage name is $default or 1 to 128 of a-zA-Z0-9_-"
        )))
    }
}

/// Stage variables: names of 1 to 128 of `[A-Za-z0-9_]`, values of at most 2048 of
/// `[A-Za-z0-9-._~:/?#&=,]`.
fn check_stage_variables(vars: &BTreeMap<String, String>) -> Result<(), ApigwError> {
    for (name, value) in vars {
        if name.is_empty()
            || name.len() > 128
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ApigwError::bad_request(format!(
                "Invalid stage variable name {name}: 1 to 128 of a-zA-Z0-9_"
            )));
        }
        let value_ok = value.len() <= 2048
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~:/?#&=,".contains(c));
        if !value_ok {
            return Err(ApigwError::bad_request(format!(
                "Invalid value for stage variable {name}: at most 2048 of a-zA-Z0-9-._~:/?#&=,"
            )));
        }
    }
    Ok(())
}

/// Refuses the stage members Serval does not support.
fn refuse_unsupported_stage_members(req: &StageRequest) -> Result<(), ApigwError> {
    refuse_if_set(
        &req.access_log_settings,
        "Access logs are not supported by Serval: accessLogSettings cannot be set",
    )?;
    refuse_if_set(
        &req.client_certificate_id,
        "Client certificates are not supported by Serval: clientCertificateId cannot be set",
    )?;
    refuse_if_set(
        &req.default_route_settings,
        "Route settings (throttling, metrics, logging) are not supported by Serval: defaultRouteSettings cannot be set",
    )?;
    refuse_if_set(
        &req.route_settings,
        "Route settings (throttling, metrics, logging) are not supported by Serval: routeSettings cannot be set",
    )?;
    check_description(req.description.as_deref())?;
    if let Some(vars) = &req.stage_variables {
        check_stage_variables(vars)?;
    }
    if let Some(tags) = &req.tags {
        check_tags(tags)?;
    }
    Ok(())
}

/// `maxResults` and `nextToken` of a Get* list operation.
#[derive(Debug, PartialEq, Eq)]
struct PageQuery {
    max_results: usize,
    /// The id of the last item of the previous page.
    after: Option<String>,
}

fn page_query(uri: &Uri) -> Result<PageQuery, ApigwError> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|err| ApigwError::bad_request(format!("Invalid query string: {err}")))?;
    let value = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let max_results = match value("maxResults") {
        None => PAGE_DEFAULT,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n.min(PAGE_MAX),
            _ => {
                return Err(ApigwError::bad_request(format!(
                    "Invalid maxResults {raw}: must be a positive integer"
                )))
            }
        },
    };
    let after = value("nextToken")
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok(PageQuery { max_results, after })
}

/// One page of `items` (sorted by `id`): those after `query.after`, at most
/// `query.max_results`, and the token of the next page when more remain. Tokens are ids, so
/// a page survives items deleted between calls.
fn page<T>(items: Vec<T>, id: impl Fn(&T) -> &str, query: &PageQuery) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|item| query.after.as_deref().is_none_or(|a| id(item) > a))
        .collect();
    let next =
        (rest.len() > query.max_results).then(|| id(&rest[query.max_results - 1]).to_owned());
    rest.truncate(query.max_results);
    (rest, next)
}

// ---------------------------------------------------------------------------------------------
// APIs
// ---------------------------------------------------------------------------------------------

/// What quick create (`target`) adds to a new API.
struct QuickCreate {
    target: String,
    route_key: String,
}

/// `POST /v2/apis`: 201 and the API. With `target` (a Lambda function ARN), quick create: an
/// `AWS_PROXY` integration (payload format 2.0), a route (`routeKey`, `$default` by default)
/// targeting it and a `$default` stage with autoDeploy, all `apiGatewayManaged`.
async fn create_api(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: CreateApiRequest = json_body(&headers, body).await?;
    check_protocol(&required(req.protocol_type, "protocolType")?)?;
    let name = required(req.name, "name")?;
    check_name(&name)?;
    check_description(req.description.as_deref())?;
    check_version(req.version.as_deref())?;
    check_ip_address_type(req.ip_address_type.as_deref())?;
    if let Some(expr) = &req.route_selection_expression {
        check_route_selection_expression(expr)?;
    }
    let cors = req
        .cors_configuration
        .as_ref()
        .map(check_cors)
        .transpose()?;
    let tags = req.tags.unwrap_or_default();
    check_tags(&tags)?;
    let quick = match (req.target, req.route_key) {
        (Some(target), route_key) => {
            check_function_uri(&target)?;
            let route_key = route_key.unwrap_or_else(|| DEFAULT.to_owned());
            check_route_key(&route_key)?;
            Some(QuickCreate { target, route_key })
        }
        (None, Some(_)) => {
            return Err(ApigwError::bad_request(
                "routeKey is part of quick create and needs a target",
            ))
        }
        (None, None) => None,
    };
    let _ = (req.credentials_arn, req.disable_schema_validation);
    let api_key_selection_expression = req
        .api_key_selection_expression
        .unwrap_or_else(|| API_KEY_SELECTION_EXPRESSION.to_owned());
    let api = run_mutation(&state, move |st| -> Result<_, ApigwError> {
        if st.store.list_http_apis()?.len() >= APIS_MAX {
            return Err(ApigwError::bad_request(format!(
                "Maximum number of APIs ({APIS_MAX}) has been reached; delete one first"
            )));
        }
        let api_id = fresh_id(API_ID_LEN, |id| Ok(st.store.get_http_api(id)?.is_some()))?;
        let now = now_iso8601();
        let api = HttpApi {
            api_id: api_id.clone(),
            name,
            description: req.description,
            protocol_type: "HTTP".into(),
            route_selection_expression: ROUTE_SELECTION_EXPRESSION.into(),
            api_key_selection_expression,
            cors,
            created_date: now.clone(),
            disable_execute_api_endpoint: req.disable_execute_api_endpoint.unwrap_or(false),
            version: req.version,
            tags,
        };
        match quick {
            None => st.store.put_http_api(&api)?,
            Some(quick) => {
                let integration_id = random_id(PART_ID_LEN);
                let snapshot = HttpApiSnapshot {
                    api: api.clone(),
                    integrations: vec![ApiIntegration {
                        integration_id: integration_id.clone(),
                        integration_type: "AWS_PROXY".into(),
                        integration_uri: quick.target,
                        payload_format_version: "2.0".into(),
                        timeout_in_millis: TIMEOUT_MS_DEFAULT,
                        description: None,
                        integration_method: Some("POST".into()),
                        connection_type: "INTERNET".into(),
                        api_gateway_managed: true,
                    }],
                    routes: vec![ApiRoute {
                        route_id: random_id(PART_ID_LEN),
                        route_key: quick.route_key,
                        target: Some(format!("integrations/{integration_id}")),
                        authorization_type: "NONE".into(),
                        api_key_required: false,
                        operation_name: None,
                        api_gateway_managed: true,
                    }],
                    stages: vec![ApiStage {
                        stage_name: DEFAULT.into(),
                        auto_deploy: true,
                        description: None,
                        stage_variables: BTreeMap::new(),
                        created_date: now.clone(),
                        last_updated_date: now,
                        tags: BTreeMap::new(),
                        api_gateway_managed: true,
                    }],
                };
                st.store.put_http_api_snapshot(&snapshot)?;
            }
        }
        publish(st, &api_id);
        Ok(api)
    })
    .await?;
    tracing::info!(api = %api.api_id, "apigw: created http api");
    Ok(json_response(
        StatusCode::CREATED,
        &ApiOut::new(&api, &state),
    ))
}

/// `GET /v2/apis/{apiId}`.
async fn get_api(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
) -> Result<Response, ApigwError> {
    let st = state.clone();
    let api = run_blocking(move || {
        st.store
            .get_http_api(&api_id)?
            .ok_or_else(|| ApigwError::api_not_found(&api_id))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &ApiOut::new(&api, &state)))
}

/// `GET /v2/apis`: by API id, in pages.
async fn get_apis(State(state): State<ApiState>, uri: Uri) -> Result<Response, ApigwError> {
    let query = page_query(&uri)?;
    let st = state.clone();
    let apis = run_blocking(move || st.store.list_http_apis().map_err(ApigwError::from)).await?;
    let (items, next_token) = page(apis, |a| &a.api_id, &query);
    let items = items.iter().map(|a| ApiOut::new(a, &state)).collect();
    Ok(json_response(
        StatusCode::OK,
        &PageOut { items, next_token },
    ))
}

/// `PATCH /v2/apis/{apiId}`: the given members replace the API's. `target` and `routeKey`
/// change the integration and route quick create made.
async fn update_api(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: UpdateApiRequest = json_body(&headers, body).await?;
    if let Some(name) = &req.name {
        check_name(name)?;
    }
    check_description(req.description.as_deref())?;
    check_version(req.version.as_deref())?;
    check_ip_address_type(req.ip_address_type.as_deref())?;
    if let Some(expr) = &req.route_selection_expression {
        check_route_selection_expression(expr)?;
    }
    let cors = req
        .cors_configuration
        .as_ref()
        .map(check_cors)
        .transpose()?;
    if let Some(target) = &req.target {
        check_function_uri(target)?;
    }
    if let Some(key) = &req.route_key {
        check_route_key(key)?;
    }
    let _ = (req.credentials_arn, req.disable_schema_validation);
    let api = run_mutation(&state, move |st| -> Result<_, ApigwError> {
        let mut snapshot = load(st, &api_id)?;
        let api = &mut snapshot.api;
        if let Some(name) = req.name {
            api.name = name;
        }
        if let Some(description) = req.description {
            api.description = Some(description);
        }
        if let Some(version) = req.version {
            api.version = Some(version);
        }
        if let Some(cors) = cors {
            api.cors = Some(cors);
        }
        if let Some(disable) = req.disable_execute_api_endpoint {
            api.disable_execute_api_endpoint = disable;
        }
        if let Some(expr) = req.api_key_selection_expression {
            api.api_key_selection_expression = expr;
        }
        if req.target.is_none() && req.route_key.is_none() {
            st.store.put_http_api(&snapshot.api)?;
        } else {
            apply_quick_create_update(&mut snapshot, req.target, req.route_key)?;
            st.store.put_http_api_snapshot(&snapshot)?;
        }
        publish(st, &api_id);
        Ok(snapshot.api)
    })
    .await?;
    tracing::info!(api = %api.api_id, "apigw: updated http api");
    Ok(json_response(StatusCode::OK, &ApiOut::new(&api, &state)))
}

/// UpdateApi's `target` and `routeKey`: they change the integration and the route quick
/// create made, which must exist.
fn apply_quick_create_update(
    snapshot: &mut HttpApiSnapshot,
    target: Option<String>,
    route_key: Option<String>,
) -> Result<(), ApigwError> {
    let not_quick = || {
        ApigwError::bad_request(
            "target and routeKey update the integration and route made by quick create, and this API has none",
        )
    };
    if let Some(target) = target {
        let integration = snapshot
            .integrations
            .iter_mut()
            .find(|i| i.api_gateway_managed)
            .ok_or_else(not_quick)?;
        integration.integration_uri = target;
    }
    if let Some(key) = route_key {
        let route_id = snapshot
            .routes
            .iter()
            .find(|r| r.api_gateway_managed)
            .map(|r| r.route_id.clone())
            .ok_or_else(not_quick)?;
        check_route_key_free(&key, &snapshot.routes, Some(&route_id))?;
        if let Some(route) = snapshot.routes.iter_mut().find(|r| r.route_id == route_id) {
            route.route_key = key;
        }
    }
    Ok(())
}

/// `DELETE /v2/apis/{apiId}`: 204; its integrations, routes and stages go with it.
async fn delete_api(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
) -> Result<Response, ApigwError> {
    let id = api_id.clone();
    run_mutation(&state, move |st| -> Result<_, ApigwError> {
        if !st.store.delete_http_api(&id)? {
            return Err(ApigwError::api_not_found(&id));
        }
        st.gateway.remove_api(&id);
        Ok(())
    })
    .await?;
    tracing::info!(api = %api_id, "apigw: deleted http api");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v2/apis/{apiId}/cors`: 204; the API answers no CORS any more.
async fn delete_cors_configuration(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
) -> Result<Response, ApigwError> {
    run_mutation(&state, move |st| -> Result<_, ApigwError> {
        let mut api = load(st, &api_id)?.api;
        api.cors = None;
        st.store.put_http_api(&api)?;
        publish(st, &api_id);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Integrations, routes and stages: what the three kinds share
// ---------------------------------------------------------------------------------------------

/// An integration, a route or a stage, as the operations the three kinds share need it: its id,
/// its place in a snapshot, its store calls, AWS's wording for it and its wire shape.
trait ApiPart: Clone + Send + Sync + 'static {
    /// The part as the operations return it.
    type Out<'a>: Serialize + From<&'a Self>
    where
        Self: 'a;
    /// `NotFoundException`'s message up to the id, in AWS's words.
    const NOT_FOUND: &'static str;
    /// The kind in "Maximum number of <kind> for this API".
    const PLURAL: &'static str;
    /// Most parts of this kind in one API.
    const MAX: usize;
    /// `BadRequestException`'s message for deleting the part quick create made.
    const MANAGED_DELETE: &'static str;

    /// The id within the API: an integration or route id, a stage name.
    fn id(&self) -> &str;
    /// Whether quick create made the part (`apiGatewayManaged`).
    fn managed(&self) -> bool;
    /// The API's parts of this kind, by id.
    fn of(snapshot: &HttpApiSnapshot) -> &[Self];
    fn put(&self, store: &Store, api_id: &str) -> Result<(), StoreError>;
    fn delete(store: &Store, api_id: &str, id: &str) -> Result<bool, StoreError>;
    /// Refuses to delete a part the API still uses (the part quick create made is refused
    /// before this is asked).
    fn check_unused(&self, _snapshot: &HttpApiSnapshot) -> Result<(), ApigwError> {
        Ok(())
    }
}

impl ApiPart for ApiIntegration {
    type Out<'a> = IntegrationOut<'a>;
    const NOT_FOUND: &'static str = "Invalid Integration identifier specified";
    const PLURAL: &'static str = "Integrations";
    const MAX: usize = INTEGRATIONS_PER_API_MAX;
    const MANAGED_DELETE: &'static str = "Cannot delete an Integration managed by API Gateway (made by quick create); update it with UpdateApi target, or delete the API";

    fn id(&self) -> &str {
        &self.integration_id
    }
    fn managed(&self) -> bool {
        self.api_gateway_managed
    }
    fn of(snapshot: &HttpApiSnapshot) -> &[Self] {
        &snapshot.integrations
    }
    fn put(&self, store: &Store, api_id: &str) -> Result<(), StoreError> {
        store.put_api_integration(api_id, self)
    }
    fn delete(store: &Store, api_id: &str, id: &str) -> Result<bool, StoreError> {
        store.delete_api_integration(api_id, id)
    }
    /// Refused while routes target it (`ConflictException`, as AWS).
    fn check_unused(&self, snapshot: &HttpApiSnapshot) -> Result<(), ApigwError> {
        let target = format!("integrations/{}", self.integration_id);
        let users: Vec<&str> = snapshot
            .routes
            .iter()
            .filter(|r| r.target.as_deref() == Some(target.as_str()))
            .map(|r| r.route_id.as_str())
            .collect();
        if users.is_empty() {
            Ok(())
        } else {
            Err(ApigwError::conflict(format!(
                "Cannot delete Integration because it is referenced by the following Routes with Ids: [{}]",
                users.join(", ")
            )))
        }
    }
}

impl ApiPart for ApiRoute {
    type Out<'a> = RouteOut<'a>;
    const NOT_FOUND: &'static str = "Invalid Route identifier specified";
    const PLURAL: &'static str = "Routes";
    const MAX: usize = ROUTES_PER_API_MAX;
    const MANAGED_DELETE: &'static str =
        "Cannot delete a Route managed by API Gateway (made by quick create); delete the API";

    fn id(&self) -> &str {
        &self.route_id
    }
    fn managed(&self) -> bool {
        self.api_gateway_managed
    }
    fn of(snapshot: &HttpApiSnapshot) -> &[Self] {
        &snapshot.routes
    }
    fn put(&self, store: &Store, api_id: &str) -> Result<(), StoreError> {
        store.put_api_route(api_id, self)
    }
    fn delete(store: &Store, api_id: &str, id: &str) -> Result<bool, StoreError> {
        store.delete_api_route(api_id, id)
    }
}

impl ApiPart for ApiStage {
    type Out<'a> = StageOut<'a>;
    const NOT_FOUND: &'static str = "Invalid stage identifier specified";
    const PLURAL: &'static str = "Stages";
    const MAX: usize = STAGES_PER_API_MAX;
    const MANAGED_DELETE: &'static str =
        "Cannot delete a Stage managed by API Gateway (made by quick create); delete the API";

    fn id(&self) -> &str {
        &self.stage_name
    }
    fn managed(&self) -> bool {
        self.api_gateway_managed
    }
    fn of(snapshot: &HttpApiSnapshot) -> &[Self] {
        &snapshot.stages
    }
    fn put(&self, store: &Store, api_id: &str) -> Result<(), StoreError> {
        store.put_api_stage(api_id, self)
    }
    fn delete(store: &Store, api_id: &str, id: &str) -> Result<bool, StoreError> {
        store.delete_api_stage(api_id, id)
    }
}

/// The API's part `id`, or `NotFoundException` in its kind's words.
fn find<'s, P: ApiPart>(snapshot: &'s HttpApiSnapshot, id: &str) -> Result<&'s P, ApigwError> {
    P::of(snapshot)
        .iter()
        .find(|p| p.id() == id)
        .ok_or_else(|| ApigwError::part_not_found::<P>(id))
}

/// A part as the operations return it, with `status`.
fn part_response<P: ApiPart>(status: StatusCode, part: &P) -> Response {
    json_response(status, &P::Out::from(part))
}

/// `BadRequestException` when the API has as many parts of this kind as it may.
fn check_room<P: ApiPart>(snapshot: &HttpApiSnapshot) -> Result<(), ApigwError> {
    if P::of(snapshot).len() >= P::MAX {
        return Err(ApigwError::bad_request(format!(
            "Maximum number of {} for this API ({}) has been reached",
            P::PLURAL,
            P::MAX
        )));
    }
    Ok(())
}

/// A random part id the API's parts of this kind do not use.
fn fresh_part_id<P: ApiPart>(snapshot: &HttpApiSnapshot) -> Result<String, ApigwError> {
    fresh_id(PART_ID_LEN, |id| {
        Ok(P::of(snapshot).iter().any(|p| p.id() == id))
    })
}

/// CreateIntegration, CreateRoute and CreateStage once the request is checked: under the
/// mutation lock, the part `make` builds from the API as it is (checking what needs it),
/// stored and published; 201 and the part.
async fn create_part<P: ApiPart>(
    state: &ApiState,
    api_id: String,
    make: impl FnOnce(&HttpApiSnapshot) -> Result<P, ApigwError> + Send + 'static,
) -> Result<Response, ApigwError> {
    let part = run_mutation(state, move |st| -> Result<_, ApigwError> {
        let part = make(&load(st, &api_id)?)?;
        part.put(&st.store, &api_id)?;
        publish(st, &api_id);
        Ok(part)
    })
    .await?;
    Ok(part_response(StatusCode::CREATED, &part))
}

/// `GET /v2/apis/{apiId}/{integrations|routes|stages}/{id}`.
async fn get_part<P: ApiPart>(
    State(state): State<ApiState>,
    PartId(api_id, id): PartId,
) -> Result<Response, ApigwError> {
    let part = run_blocking(move || find::<P>(&load(&state, &api_id)?, &id).cloned()).await?;
    Ok(part_response(StatusCode::OK, &part))
}

/// `GET /v2/apis/{apiId}/{integrations|routes|stages}`: by id (a stage's is its name), in
/// pages.
async fn get_parts<P: ApiPart>(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
    uri: Uri,
) -> Result<Response, ApigwError> {
    let query = page_query(&uri)?;
    let all = run_blocking(move || load(&state, &api_id).map(|api| P::of(&api).to_vec())).await?;
    let (items, next_token) = page(all, P::id, &query);
    let items: Vec<P::Out<'_>> = items.iter().map(P::Out::from).collect();
    // Bound before returning: the page borrows `items`, which a tail expression's temporaries
    // would outlive.
    let resp = json_response(StatusCode::OK, &PageOut { items, next_token });
    Ok(resp)
}

/// UpdateIntegration, UpdateRoute and UpdateStage once the request is checked: under the
/// mutation lock, the part (or `NotFoundException`) changed by `apply`, which sees the API as
/// it is, stored and published; 200 and the part.
async fn update_part<P: ApiPart>(
    state: &ApiState,
    api_id: String,
    id: String,
    apply: impl FnOnce(&HttpApiSnapshot, &mut P) -> Result<(), ApigwError> + Send + 'static,
) -> Result<Response, ApigwError> {
    let part = run_mutation(state, move |st| -> Result<_, ApigwError> {
        let snapshot = load(st, &api_id)?;
        let mut part = find::<P>(&snapshot, &id)?.clone();
        apply(&snapshot, &mut part)?;
        part.put(&st.store, &api_id)?;
        publish(st, &api_id);
        Ok(part)
    })
    .await?;
    Ok(part_response(StatusCode::OK, &part))
}

/// `DELETE /v2/apis/{apiId}/{integrations|routes|stages}/{id}`: 204. The part quick create
/// made stays, and so does one the API still uses ([`ApiPart::check_unused`]).
async fn delete_part<P: ApiPart>(
    State(state): State<ApiState>,
    PartId(api_id, id): PartId,
) -> Result<Response, ApigwError> {
    run_mutation(&state, move |st| -> Result<_, ApigwError> {
        let snapshot = load(st, &api_id)?;
        let part = find::<P>(&snapshot, &id)?;
        if part.managed() {
            return Err(ApigwError::bad_request(P::MANAGED_DELETE));
        }
        part.check_unused(&snapshot)?;
        P::delete(&st.store, &api_id, &id)?;
        publish(st, &api_id);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Integrations
// ---------------------------------------------------------------------------------------------

/// `POST /v2/apis/{apiId}/integrations`: 201. `AWS_PROXY` to a Lambda function only.
async fn create_integration(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: IntegrationRequest = json_body(&headers, body).await?;
    check_integration_type(&required(req.integration_type.clone(), "integrationType")?)?;
    refuse_unsupported_integration_members(&req)?;
    let uri = required(req.integration_uri, "integrationUri")?;
    check_function_uri(&uri)?;
    let payload_format_version = required(req.payload_format_version, "payloadFormatVersion")?;
    check_payload_format_version(&payload_format_version)?;
    let timeout_in_millis = req
        .timeout_in_millis
        .map(check_timeout_ms)
        .transpose()?
        .unwrap_or(TIMEOUT_MS_DEFAULT);
    let connection_type = req.connection_type.unwrap_or_else(|| "INTERNET".to_owned());
    check_connection_type(&connection_type)?;
    check_description(req.description.as_deref())?;
    if let Some(method) = &req.integration_method {
        check_len("integrationMethod", method, 1, 64)?;
    }
    create_part(&state, api_id, move |snapshot| {
        check_room::<ApiIntegration>(snapshot)?;
        Ok(ApiIntegration {
            integration_id: fresh_part_id::<ApiIntegration>(snapshot)?,
            integration_type: "AWS_PROXY".into(),
            integration_uri: uri,
            payload_format_version,
            timeout_in_millis,
            description: req.description,
            integration_method: Some(req.integration_method.unwrap_or_else(|| "POST".into())),
            connection_type,
            api_gateway_managed: false,
        })
    })
    .await
}

/// `PATCH /v2/apis/{apiId}/integrations/{integrationId}`: the given members replace the
/// integration's.
async fn update_integration(
    State(state): State<ApiState>,
    PartId(api_id, integration_id): PartId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: IntegrationRequest = json_body(&headers, body).await?;
    if let Some(kind) = &req.integration_type {
        check_integration_type(kind)?;
    }
    refuse_unsupported_integration_members(&req)?;
    if let Some(uri) = &req.integration_uri {
        check_function_uri(uri)?;
    }
    if let Some(v) = &req.payload_format_version {
        check_payload_format_version(v)?;
    }
    let timeout = req.timeout_in_millis.map(check_timeout_ms).transpose()?;
    if let Some(c) = &req.connection_type {
        check_connection_type(c)?;
    }
    check_description(req.description.as_deref())?;
    if let Some(method) = &req.integration_method {
        check_len("integrationMethod", method, 1, 64)?;
    }
    update_part(
        &state,
        api_id,
        integration_id,
        move |_, integration: &mut ApiIntegration| {
            if let Some(uri) = req.integration_uri {
                integration.integration_uri = uri;
            }
            if let Some(v) = req.payload_format_version {
                integration.payload_format_version = v;
            }
            if let Some(ms) = timeout {
                integration.timeout_in_millis = ms;
            }
            if let Some(d) = req.description {
                integration.description = Some(d);
            }
            if let Some(m) = req.integration_method {
                integration.integration_method = Some(m);
            }
            Ok(())
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// Checks a route's `target` against the API's integrations: `integrations/<id>` of one that
/// exists.
fn check_target_exists(target: &str, snapshot: &HttpApiSnapshot) -> Result<(), ApigwError> {
    let id = parse_target(target)?;
    if snapshot.integrations.iter().any(|i| i.integration_id == id) {
        Ok(())
    } else {
        Err(ApigwError::bad_request(format!(
            "Invalid target {target}: integration {id} does not exist in API {}",
            snapshot.api.api_id
        )))
    }
}

/// `POST /v2/apis/{apiId}/routes`: 201. The route key must be new to the API
/// (`ConflictException`), the target an existing integration.
async fn create_route(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: RouteRequest = json_body(&headers, body).await?;
    let route_key = required(req.route_key.clone(), "routeKey")?;
    check_route_key(&route_key)?;
    refuse_unsupported_route_members(&req)?;
    if let Some(target) = &req.target {
        parse_target(target)?;
    }
    create_part(&state, api_id, move |snapshot| {
        check_room::<ApiRoute>(snapshot)?;
        check_route_key_free(&route_key, &snapshot.routes, None)?;
        if let Some(target) = &req.target {
            check_target_exists(target, snapshot)?;
        }
        Ok(ApiRoute {
            route_id: fresh_part_id::<ApiRoute>(snapshot)?,
            route_key,
            target: req.target,
            authorization_type: "NONE".into(),
            api_key_required: false,
            operation_name: req.operation_name,
            api_gateway_managed: false,
        })
    })
    .await
}

/// `PATCH /v2/apis/{apiId}/routes/{routeId}`: the given members replace the route's; an empty
/// `target` removes it. The key of the route quick create made cannot change here (UpdateApi
/// `routeKey` does that).
async fn update_route(
    State(state): State<ApiState>,
    PartId(api_id, route_id): PartId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: RouteRequest = json_body(&headers, body).await?;
    if let Some(key) = &req.route_key {
        check_route_key(key)?;
    }
    refuse_unsupported_route_members(&req)?;
    if let Some(target) = req.target.as_deref().filter(|t| !t.is_empty()) {
        parse_target(target)?;
    }
    update_part(
        &state,
        api_id,
        route_id,
        move |snapshot, route: &mut ApiRoute| {
            if let Some(key) = req.route_key {
                if key != route.route_key {
                    if route.api_gateway_managed {
                        return Err(ApigwError::bad_request(
                            "The route key of a route managed by API Gateway (made by quick create) cannot be modified here; use UpdateApi routeKey",
                        ));
                    }
                    check_route_key_free(&key, &snapshot.routes, Some(&route.route_id))?;
                    route.route_key = key;
                }
            }
            match req.target {
                Some(target) if target.is_empty() => route.target = None,
                Some(target) => {
                    check_target_exists(&target, snapshot)?;
                    route.target = Some(target);
                }
                None => {}
            }
            if let Some(name) = req.operation_name {
                route.operation_name = Some(name);
            }
            Ok(())
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Stages and deployments
// ---------------------------------------------------------------------------------------------

/// `POST /v2/apis/{apiId}/stages`: 201. A name already used is `ConflictException`.
async fn create_stage(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: StageRequest = json_body(&headers, body).await?;
    let stage_name = required(req.stage_name.clone(), "stageName")?;
    check_stage_name(&stage_name)?;
    refuse_unsupported_stage_members(&req)?;
    create_part(&state, api_id, move |snapshot| {
        if snapshot.stages.iter().any(|s| s.stage_name == stage_name) {
            return Err(ApigwError::conflict(format!(
                "Stage {stage_name} already exists"
            )));
        }
        check_room::<ApiStage>(snapshot)?;
        let now = now_iso8601();
        Ok(ApiStage {
            stage_name,
            auto_deploy: req.auto_deploy.unwrap_or(false),
            description: req.description,
            stage_variables: req.stage_variables.unwrap_or_default(),
            created_date: now.clone(),
            last_updated_date: now,
            tags: req.tags.unwrap_or_default(),
            api_gateway_managed: false,
        })
    })
    .await
}

/// `PATCH /v2/apis/{apiId}/stages/{stageName}`: the given members replace the stage's (a
/// given `stageVariables` map replaces the whole map). The stage quick create made cannot be
/// modified, as on AWS.
async fn update_stage(
    State(state): State<ApiState>,
    PartId(api_id, stage_name): PartId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: StageRequest = json_body(&headers, body).await?;
    if req.stage_name.is_some() || req.tags.is_some() {
        return Err(ApigwError::bad_request(
            "Invalid request body: stageName and tags cannot be given to UpdateStage",
        ));
    }
    refuse_unsupported_stage_members(&req)?;
    update_part(
        &state,
        api_id,
        stage_name,
        move |_, stage: &mut ApiStage| {
            if stage.api_gateway_managed {
                return Err(ApigwError::bad_request(
                    "Cannot modify a Stage managed by API Gateway (made by quick create)",
                ));
            }
            if let Some(auto_deploy) = req.auto_deploy {
                stage.auto_deploy = auto_deploy;
            }
            if let Some(d) = req.description {
                stage.description = Some(d);
            }
            if let Some(vars) = req.stage_variables {
                stage.stage_variables = vars;
            }
            stage.last_updated_date = now_iso8601();
            Ok(())
        },
    )
    .await
}

/// `POST /v2/apis/{apiId}/deployments`: 201, a no-op. Every stage already serves the API's
/// current routes and integrations, which is what a deployment would make it do; the
/// deployment is not kept.
async fn create_deployment(
    State(state): State<ApiState>,
    ApiId(api_id): ApiId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApigwError> {
    let req: CreateDeploymentRequest = json_body(&headers, body).await?;
    check_description(req.description.as_deref())?;
    let stage_name = req.stage_name;
    let st = state.clone();
    run_blocking(move || {
        let snapshot = load(&st, &api_id)?;
        if let Some(name) = &stage_name {
            if !snapshot.stages.iter().any(|s| &s.stage_name == name) {
                return Err(ApigwError::part_not_found::<ApiStage>(name));
            }
        }
        Ok(())
    })
    .await?;
    let out = DeploymentOut {
        auto_deployed: false,
        created_date: now_iso8601(),
        deployment_id: random_id(DEPLOYMENT_ID_LEN),
        deployment_status: "DEPLOYED",
        description: req.description,
    };
    Ok(json_response(StatusCode::CREATED, &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn bad(result: Result<impl std::fmt::Debug, ApigwError>) -> String {
        let err = result.expect_err("should be refused");
        assert_eq!(err.code(), ApigwErrorCode::BadRequest, "{err}");
        err.message().to_owned()
    }

    fn route(id: &str, key: &str) -> ApiRoute {
        ApiRoute {
            route_id: id.into(),
            route_key: key.into(),
            target: None,
            authorization_type: "NONE".into(),
            api_key_required: false,
            operation_name: None,
            api_gateway_managed: false,
        }
    }

    #[tokio::test]
    async fn renders_api_gateway_error_shape() {
        let resp = ApigwError::api_not_found("abc").into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[ERROR_TYPE_HEADER], "NotFoundException");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"message": "Invalid API identifier specified 000000000000:abc"})
        );
        let conflict = ApigwError::conflict("x").into_response();
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        assert_eq!(conflict.headers()[ERROR_TYPE_HEADER], "ConflictException");
        let bad = ApigwError::bad_request("x").into_response();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(bad.headers()[ERROR_TYPE_HEADER], "BadRequestException");
    }

    #[test]
    fn accepts_lambda_function_uris() {
        for uri in [
            "arn:aws:lambda:us-east-1:000000000000:function:f",
            "arn:aws:lambda:us-east-1:000000000000:function:f:live",
            "arn:aws:lambda:eu-west-1:123456789012:function:my-fn:3",
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f/invocations",
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f:live/invocations",
        ] {
            check_function_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
        }
        let f = check_function_uri(
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f:live/invocations",
        )
        .unwrap();
        assert_eq!(f.name.as_str(), "f");
        assert_eq!(
            f.qualifier,
            Some(serval_model::Qualifier::Alias("live".into()))
        );
    }

    #[test]
    fn refuses_other_integration_uris() {
        assert!(bad(check_function_uri("https://example.com/x")).contains("HTTP_PROXY"));
        for uri in [
            "f",
            "000000000000:function:f",
            "arn:aws:sqs:us-east-1:000000000000:q",
            "arn:aws:lambda:us-east-1:000000000000:function:bad name",
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f",
            "arn:aws:apigateway:us-east-1:s3:path/bucket/key",
            "",
        ] {
            bad(check_function_uri(uri));
        }
    }

    #[test]
    fn checks_integration_members() {
        check_integration_type("AWS_PROXY").unwrap();
        assert!(bad(check_integration_type("HTTP_PROXY")).contains("not supported by Serval"));
        assert!(bad(check_integration_type("FOO")).contains("Invalid integrationType"));
        check_payload_format_version("1.0").unwrap();
        check_payload_format_version("2.0").unwrap();
        bad(check_payload_format_version("3.0"));
        assert_eq!(check_timeout_ms(50).unwrap(), 50);
        assert_eq!(check_timeout_ms(30_000).unwrap(), 30_000);
        bad(check_timeout_ms(49));
        bad(check_timeout_ms(30_001));
        bad(check_timeout_ms(-1));
        check_connection_type("INTERNET").unwrap();
        assert!(bad(check_connection_type("VPC_LINK")).contains("VPC links"));
        let req: IntegrationRequest =
            parse_body(br#"{"requestParameters": {"append:header.x": "y"}}"#).unwrap();
        assert!(bad(refuse_unsupported_integration_members(&req)).contains("Parameter mapping"));
        let req: IntegrationRequest = parse_body(br#"{"requestParameters": {}}"#).unwrap();
        refuse_unsupported_integration_members(&req).unwrap();
    }

    #[test]
    fn refuses_unknown_members() {
        let err =
            parse_body::<IntegrationRequest>(br#"{"integrationTyp": "AWS_PROXY"}"#).unwrap_err();
        assert!(err.message().contains("unknown field"), "{err}");
        let empty: RouteRequest = parse_body(b"  ").unwrap();
        assert!(empty.route_key.is_none());
    }

    #[test]
    fn checks_api_members() {
        check_protocol("HTTP").unwrap();
        assert!(bad(check_protocol("WEBSOCKET")).contains("WebSocket APIs are not supported"));
        bad(check_protocol("REST"));
        check_route_selection_expression("$request.method $request.path").unwrap();
        check_route_selection_expression("${request.method} ${request.path}").unwrap();
        bad(check_route_selection_expression("$request.body.action"));
        check_name("x").unwrap();
        bad(check_name(""));
        bad(check_name(&"n".repeat(129)));
        check_description(Some("")).unwrap();
        bad(check_description(Some(&"d".repeat(1025))));
        bad(check_version(Some("")));
        bad(check_ip_address_type(Some("ipv6")));
        let mut tags = BTreeMap::new();
        for i in 0..=TAGS_MAX {
            tags.insert(format!("k{i}"), "v".into());
        }
        bad(check_tags(&tags));
    }

    #[test]
    fn checks_cors() {
        let cors = WireCors {
            allow_origins: Some(vec!["https://example.com".into()]),
            allow_methods: Some(vec!["GET".into(), "*".into(), "post".into()]),
            allow_credentials: Some(true),
            max_age: Some(300),
            ..WireCors::default()
        };
        let stored = check_cors(&cors).unwrap();
        assert_eq!(stored.max_age, Some(300));
        assert_eq!(WireCors::from(&stored), cors);
        let star = WireCors {
            allow_origins: Some(vec!["*".into()]),
            ..cors.clone()
        };
        assert!(bad(check_cors(&star)).contains("allow-credentials"));
        bad(check_cors(&WireCors {
            max_age: Some(86_401),
            ..WireCors::default()
        }));
        bad(check_cors(&WireCors {
            allow_methods: Some(vec!["FETCH".into()]),
            ..WireCors::default()
        }));
    }

    #[test]
    fn checks_route_keys_and_targets() {
        for key in ["$default", "GET /items/{id}", "ANY /{proxy+}", "POST /"] {
            check_route_key(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        for key in [
            "GET",
            "FETCH /x",
            "GET items",
            "GET /{proxy+}/x",
            "$connect",
        ] {
            bad(check_route_key(key));
        }
        assert_eq!(parse_target("integrations/abc1234").unwrap(), "abc1234");
        bad(parse_target("abc1234"));
        bad(parse_target("integrations/"));
        bad(parse_target("integrations/a/b"));
    }

    #[test]
    fn finds_route_key_conflicts() {
        let routes = [
            route("r1", "GET /items/{id}"),
            route("r2", "$default"),
            route("r3", "ANY /files/{path+}"),
        ];
        for (key, conflict) in [
            ("GET /items/{id}", true),
            ("$default", true),
            ("POST /items/{id}", false),
            ("GET /items/{itemId}", true),
            ("DELETE /items/{itemId}/parts", true),
            ("GET /items/{id}/parts", false),
            ("GET /items", false),
            ("GET /items/special", false),
            ("GET /files/{rest+}", true),
            ("GET /other/{x}", false),
        ] {
            let result = check_route_key_free(key, &routes, None);
            assert_eq!(result.is_err(), conflict, "{key}: {result:?}");
            if let Err(err) = result {
                assert_eq!(err.code(), ApigwErrorCode::Conflict);
            }
        }
        // A route may keep its own key.
        check_route_key_free("GET /items/{id}", &routes, Some("r1")).unwrap();
        check_route_key_free("GET /items/{other}", &routes, Some("r1")).unwrap();
    }

    #[test]
    fn checks_stages() {
        for name in ["$default", "prod", "v1_beta-2", &"s".repeat(128)] {
            check_stage_name(name).unwrap();
        }
        for name in ["", "has space", "$latest", "a/b", &"s".repeat(129)] {
            bad(check_stage_name(name));
        }
        let vars = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        check_stage_variables(&vars("url", "https://x.example/a?b=c&d=e,f")).unwrap();
        bad(check_stage_variables(&vars("bad-name", "v")));
        bad(check_stage_variables(&vars("v", "has space")));
        check_stage_variables(&vars("v", "")).unwrap();
        bad(check_stage_variables(&vars("v", &"x".repeat(2049))));
        let req: StageRequest =
            parse_body(br#"{"accessLogSettings": {"destinationArn": "arn:x"}}"#).unwrap();
        assert!(bad(refuse_unsupported_stage_members(&req)).contains("Access logs"));
    }

    #[test]
    fn refuses_authorizers_and_websocket_route_members() {
        let req: RouteRequest = parse_body(br#"{"authorizationType": "JWT"}"#).unwrap();
        assert!(bad(refuse_unsupported_route_members(&req)).contains("Authorizers"));
        let req: RouteRequest = parse_body(br#"{"authorizerId": "abc"}"#).unwrap();
        bad(refuse_unsupported_route_members(&req));
        let req: RouteRequest = parse_body(br#"{"apiKeyRequired": true}"#).unwrap();
        bad(refuse_unsupported_route_members(&req));
        let req: RouteRequest =
            parse_body(br#"{"authorizationType": "NONE", "apiKeyRequired": false}"#).unwrap();
        refuse_unsupported_route_members(&req).unwrap();
    }

    #[test]
    fn pages_by_id() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let q = |max: usize, after: Option<&str>| PageQuery {
            max_results: max,
            after: after.map(str::to_owned),
        };
        let (p1, next) = page(items.clone(), |s| s, &q(2, None));
        assert_eq!(
            (p1, next.as_deref()),
            (vec!["a".into(), "b".into()], Some("b"))
        );
        let (p2, next) = page(items.clone(), |s| s, &q(2, Some("b")));
        assert_eq!(
            (p2, next.as_deref()),
            (vec!["c".into(), "d".into()], Some("d"))
        );
        let (p3, next) = page(items.clone(), |s| s, &q(2, Some("d")));
        assert_eq!((p3, next), (vec!["e".to_owned()], None));
        let (all, next) = page(items, |s| s, &q(5, None));
        assert_eq!((all.len(), next), (5, None));
    }

    #[test]
    fn parses_page_query() {
        let uri: Uri = "/v2/apis?maxResults=2&nextToken=abc".parse().unwrap();
        assert_eq!(
            page_query(&uri).unwrap(),
            PageQuery {
                max_results: 2,
                after: Some("abc".into())
            }
        );
        let uri: Uri = "/v2/apis".parse().unwrap();
        assert_eq!(page_query(&uri).unwrap().max_results, PAGE_DEFAULT);
        let uri: Uri = "/v2/apis?maxResults=100000".parse().unwrap();
        assert_eq!(page_query(&uri).unwrap().max_results, PAGE_MAX);
        for bad_max in ["0", "-1", "x"] {
            let uri: Uri = format!("/v2/apis?maxResults={bad_max}").parse().unwrap();
            bad(page_query(&uri));
        }
    }

    #[test]
    fn formats_iso8601_dates() {
        let now = now_iso8601();
        assert_eq!(now.len(), "2026-11-25T10:00:00Z".len(), "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}
