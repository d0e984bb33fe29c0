//! Function URL configurations: CreateFunctionUrlConfig, GetFunctionUrlConfig,
//! UpdateFunctionUrlConfig, DeleteFunctionUrlConfig, ListFunctionUrlConfigs
//! (`/2021-10-31/functions/{name}/url[s]`).
//!
//! A URL belongs to the unqualified function or to one alias (`Qualifier`). Each mutation
//! follows the crate's protocol (`functions::mutate`): under the mutation lock, check, write
//! the store, then tell the gateway, which serves the URL from then on. Only `AuthType: NONE`
//! is served: `AWS_IAM` needs access control Serval does not have yet, so it is refused
//! rather than silently left open.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serval_model::{
    validate_url_qualifier, Cors, FunctionName, FunctionUrlConfig, Qualifier, UrlAuthType,
    URL_ID_LEN,
};

use crate::error::{ApiError, ErrorCode};
use crate::functions::{
    blocking, invalid_marker, json_body, mutate, not_found, paginate, parse_max_items, query_pairs,
    query_value, resolve_function, PathParam, CONTROL_REQUEST_MAX_BYTES,
};
use crate::ApiState;

/// Most URL configurations per ListFunctionUrlConfigs page (AWS's `MaxItems` maximum).
const LIST_MAX_ITEMS: usize = 50;

/// The Function URL routes.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/2021-10-31/functions/{function}/url",
            get(get_url)
                .post(create_url)
                .put(update_url)
                .delete(delete_url),
        )
        .route("/2021-10-31/functions/{function}/urls", get(list_urls))
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (botocore's `lambda` model, PascalCase).

#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
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

impl From<WireCors> for Cors {
    fn from(w: WireCors) -> Cors {
        Cors {
            allow_credentials: w.allow_credentials,
            allow_headers: w.allow_headers,
            allow_methods: w.allow_methods,
            allow_origins: w.allow_origins,
            expose_headers: w.expose_headers,
            max_age: w.max_age,
        }
    }
}

impl From<&Cors> for WireCors {
    fn from(c: &Cors) -> WireCors {
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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UrlRequest {
    #[serde(default)]
    auth_type: Option<String>,
    #[serde(default)]
    cors: Option<WireCors>,
    #[serde(default)]
    invoke_mode: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireUrlConfig {
    function_url: String,
    function_arn: String,
    auth_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cors: Option<WireCors>,
    creation_time: String,
    /// Not in CreateFunctionUrlConfig's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified_time: Option<String>,
    invoke_mode: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListResponse {
    function_url_configs: Vec<WireUrlConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

fn render(st: &ApiState, cfg: &FunctionUrlConfig, with_last_modified: bool) -> WireUrlConfig {
    WireUrlConfig {
        function_url: st.gateway.function_url(&cfg.url_id),
        function_arn: function_arn(&cfg.function, cfg.qualifier.as_deref(), &st.region),
        auth_type: cfg.auth_type.as_str(),
        cors: cfg.cors.as_ref().map(WireCors::from),
        creation_time: cfg.creation_time.clone(),
        last_modified_time: with_last_modified.then(|| cfg.last_modified_time.clone()),
        invoke_mode: cfg.invoke_mode.clone(),
    }
}

fn function_arn(name: &FunctionName, qualifier: Option<&str>, region: &str) -> String {
    match qualifier {
        Some(q) => format!("{}:{q}", name.arn(region)),
        None => name.arn(region),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// The function and alias a URL operation names (`name`, `name:alias`, an ARN, or
/// `?Qualifier=`); `$LATEST` and version numbers are refused as AWS's pattern does.
fn target(function: &str, uri: &Uri) -> Result<(FunctionName, Option<String>), ApiError> {
    let pairs = query_pairs(uri)?;
    let (name, qualifier) = resolve_function(function, query_value(&pairs, "Qualifier"))?;
    let qualifier = match qualifier {
        None => None,
        Some(Qualifier::Alias(a)) => Some(a),
        Some(other) => {
            // `$LATEST` and version numbers: AWS's pattern refuses them.
            validate_url_qualifier(&other.to_string())?;
            None
        }
    };
    Ok((name, qualifier))
}

fn parse_auth_type(raw: &str) -> Result<UrlAuthType, ApiError> {
    match raw {
        "NONE" => Ok(UrlAuthType::None),
        "AWS_IAM" => Err(ApiError::invalid_parameter(
            "AuthType AWS_IAM is not supported by Serval yet: it has no IAM access control to check callers against. Use AuthType NONE (anyone who can reach the server may call the URL).",
        )),
        other => Err(ApiError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{other}' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]"),
        )),
    }
}

fn parse_invoke_mode(raw: &str) -> Result<String, ApiError> {
    match raw {
        "BUFFERED" => Ok(raw.to_owned()),
        "RESPONSE_STREAM" => Err(ApiError::invalid_parameter(
            "InvokeMode RESPONSE_STREAM is not supported by Serval yet; use BUFFERED.",
        )),
        other => Err(ApiError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{other}' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]"),
        )),
    }
}

fn constraint(field: &str, value: impl std::fmt::Display, rule: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Validation,
        format!("1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {rule}"),
    )
}

/// Checks `Cors` against botocore's model: at most 100 headers (each up to 1,024 characters)
/// and origins (each 1 to 253), at most 6 methods (each up to 6 characters), `MaxAge` 0 to
/// 86,400.
fn validate_cors(c: &WireCors) -> Result<(), ApiError> {
    let list =
        |field: &str, items: &Option<Vec<String>>, max: usize, min_len: usize, max_len: usize| {
            let Some(items) = items else { return Ok(()) };
            if items.len() > max {
                return Err(constraint(
                    field,
                    format!("{items:?}"),
                    &format!("Member must have length less than or equal to {max}"),
                ));
            }
            for item in items {
                if item.len() < min_len || item.len() > max_len {
                    return Err(constraint(
                        field,
                        item,
                        &format!("Member must have length between {min_len} and {max_len}"),
                    ));
                }
            }
            Ok(())
        };
    list("cors.allowHeaders", &c.allow_headers, 100, 0, 1024)?;
    list("cors.exposeHeaders", &c.expose_headers, 100, 0, 1024)?;
    list("cors.allowOrigins", &c.allow_origins, 100, 1, 253)?;
    list("cors.allowMethods", &c.allow_methods, 6, 0, 6)?;
    if let Some(methods) = &c.allow_methods {
        const METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"];
        if let Some(bad) = methods
            .iter()
            .find(|m| !METHODS.contains(&m.to_ascii_uppercase().as_str()))
        {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid method in Cors.AllowMethods: {bad}. Allowed: GET, PUT, HEAD, POST, PATCH, DELETE, *"
            )));
        }
    }
    if let Some(age) = c.max_age {
        if !(0..=86_400).contains(&age) {
            return Err(constraint(
                "cors.maxAge",
                age,
                "Member must have value between 0 and 86400",
            ));
        }
    }
    Ok(())
}

/// Lambda's timestamp for `CreationTime` / `LastModifiedTime`
/// (`2026-11-25T10:00:00.123456Z`).
fn now_timestamp() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned())
}

/// Checks that the function (and alias) exist, under the mutation lock.
fn check_exists(
    st: &ApiState,
    name: &FunctionName,
    qualifier: Option<&str>,
) -> Result<(), ApiError> {
    if st.store.get_function(name)?.is_none() {
        return Err(not_found(name, &st.region));
    }
    if let Some(alias) = qualifier {
        if st.store.get_alias(name, alias)?.is_none() {
            return Err(ApiError::function_not_found(&function_arn(
                name,
                Some(alias),
                &st.region,
            )));
        }
    }
    Ok(())
}

/// AWS's answer when the function (or alias) has no URL.
fn no_url() -> ApiError {
    ApiError::new(
        ErrorCode::ResourceNotFound,
        "The resource you requested does not exist.",
    )
}

// ---------------------------------------------------------------------------------------------
// Handlers.

/// `POST /2021-10-31/functions/{FunctionName}/url`: 201 and the new configuration.
async fn create_url(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&function, &uri)?;
    let req: UrlRequest = json_body(
        &headers,
        body,
        CONTROL_REQUEST_MAX_BYTES,
        "CreateFunctionUrlConfig",
    )
    .await?;
    let auth_type = parse_auth_type(
        req.auth_type
            .as_deref()
            .ok_or_else(|| ApiError::missing("authType"))?,
    )?;
    let invoke_mode = parse_invoke_mode(req.invoke_mode.as_deref().unwrap_or("BUFFERED"))?;
    if let Some(c) = &req.cors {
        validate_cors(c)?;
    }
    let cfg = mutate(&state, move |st| {
        check_exists(st, &name, qualifier.as_deref())?;
        if st.store.get_function_url(&name, qualifier.as_deref())?.is_some() {
            return Err(ApiError::new(
                ErrorCode::ResourceConflict,
                format!(
                    "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
                    function_arn(&name, qualifier.as_deref(), &st.region)
                ),
            ));
        }
        let now = now_timestamp();
        let cfg = FunctionUrlConfig {
            function: name,
            qualifier,
            url_id: serval_events::http::random_id(URL_ID_LEN),
            auth_type,
            cors: req.cors.map(Cors::from),
            invoke_mode,
            creation_time: now.clone(),
            last_modified_time: now,
        };
        st.store.put_function_url(&cfg)?;
        st.gateway.set_function_url(cfg.clone());
        Ok(cfg)
    })
    .await?;
    tracing::info!(function = %cfg.function, url_id = %cfg.url_id, "api: created function URL");
    Ok((StatusCode::CREATED, Json(render(&state, &cfg, false))).into_response())
}

/// `GET /2021-10-31/functions/{FunctionName}/url`.
async fn get_url(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&function, &uri)?;
    let st = state.clone();
    let cfg = blocking(move || {
        check_exists(&st, &name, qualifier.as_deref())?;
        st.store
            .get_function_url(&name, qualifier.as_deref())?
            .ok_or_else(no_url)
    })
    .await?;
    Ok(Json(render(&state, &cfg, true)).into_response())
}

/// `PUT /2021-10-31/functions/{FunctionName}/url`: changes what is given (`Cors` as a whole).
async fn update_url(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&function, &uri)?;
    let req: UrlRequest = json_body(
        &headers,
        body,
        CONTROL_REQUEST_MAX_BYTES,
        "UpdateFunctionUrlConfig",
    )
    .await?;
    let auth_type = req.auth_type.as_deref().map(parse_auth_type).transpose()?;
    let invoke_mode = req
        .invoke_mode
        .as_deref()
        .map(parse_invoke_mode)
        .transpose()?;
    if let Some(c) = &req.cors {
        validate_cors(c)?;
    }
    let cfg = mutate(&state, move |st| {
        check_exists(st, &name, qualifier.as_deref())?;
        let mut cfg = st
            .store
            .get_function_url(&name, qualifier.as_deref())?
            .ok_or_else(no_url)?;
        if let Some(a) = auth_type {
            cfg.auth_type = a;
        }
        if let Some(m) = invoke_mode {
            cfg.invoke_mode = m;
        }
        if let Some(c) = req.cors {
            cfg.cors = Some(c.into());
        }
        cfg.last_modified_time = now_timestamp();
        st.store.put_function_url(&cfg)?;
        st.gateway.set_function_url(cfg.clone());
        Ok(cfg)
    })
    .await?;
    tracing::info!(function = %cfg.function, url_id = %cfg.url_id, "api: updated function URL");
    Ok(Json(render(&state, &cfg, true)).into_response())
}

/// `DELETE /2021-10-31/functions/{FunctionName}/url`: 204; the URL stops answering at once.
async fn delete_url(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&function, &uri)?;
    let cfg = mutate(&state, move |st| {
        check_exists(st, &name, qualifier.as_deref())?;
        let cfg = st
            .store
            .delete_function_url(&name, qualifier.as_deref())?
            .ok_or_else(no_url)?;
        st.gateway.remove_function_url(&cfg.url_id);
        Ok(cfg)
    })
    .await?;
    tracing::info!(function = %cfg.function, url_id = %cfg.url_id, "api: deleted function URL");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /2021-10-31/functions/{FunctionName}/urls`: the function's URLs, pages of at most 50.
async fn list_urls(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&uri)?;
    let (name, qualifier) = resolve_function(&function, None)?;
    if qualifier.is_some_and(|q| q != Qualifier::Latest) {
        return Err(ApiError::invalid_parameter(
            "This operation is permitted on Lambda functions only. Aliases and versions do not support this operation. Please specify either a function name or an unqualified function ARN.",
        ));
    }
    let max_items = parse_max_items(&pairs, 50, LIST_MAX_ITEMS)?;
    let after = query_value(&pairs, "Marker").map(str::to_owned);
    let st = state.clone();
    let urls = blocking(move || {
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, &st.region));
        }
        Ok(st.store.list_function_urls(&name)?)
    })
    .await?;
    // Markers are URL ids in list order (by qualifier); an unknown one is refused.
    let key = |u: &FunctionUrlConfig| u.qualifier.clone().unwrap_or_default();
    let after_key = match &after {
        None => None,
        Some(m) => Some(
            urls.iter()
                .find(|u| &u.url_id == m)
                .map(key)
                .ok_or_else(invalid_marker)?,
        ),
    };
    let (page, next_marker) = paginate(urls, key, after_key.as_ref(), max_items, |u| {
        u.url_id.clone()
    });
    let out = ListResponse {
        function_url_configs: page.iter().map(|u| render(&state, u, true)).collect(),
        next_marker,
    };
    Ok(Json(out).into_response())
}
