//! Lambda control-plane handlers: create, read, list, update and delete functions (and single
//! versions), tags, account settings; and the helpers every control-plane module shares
//! (qualifier resolution, the mutation protocol, request bodies, paging).
//!
//! Each handler parses the wire request, validates it with `serval-model`, asks the store
//! (blocking, so on `spawn_blocking`) and tells the engine about the change. The store is the
//! source of truth.
//!
//! Every mutation follows one protocol ([`mutate`]): the slow part (reading the body, decoding
//! base64, hashing and unpacking the package with `put_code`) happens first, without any lock;
//! then one blocking closure, holding [`ApiState::mutations`], re-reads the current
//! configuration, checks the caller's `RevisionId` against it, builds the new configuration from
//! it (so a code update never reverts a concurrent configuration change, nor the reverse),
//! writes it and tells the engine (`deploy` / `remove`) before the lock is released. The engine
//! therefore sees changes in the store's commit order. Code uploads are also bounded in number
//! ([`ApiState::uploads`]) because each holds tens of megabytes.
//!
//! Not for: invocations (`invoke`), versions and aliases (`versions`), concurrency settings
//! (`concurrency`), event-invoke configs (`event_config`), code download (`code`), CloudWatch
//! Logs (`logs`).

use std::collections::BTreeMap;
use std::sync::PoisonError;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use http::request::Parts;
use http::{HeaderMap, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serval_model::limits::{
    EPHEMERAL_MB_DEFAULT, LIST_MAX_ITEMS, MEMORY_MB_DEFAULT, TAGS_MAX, TIMEOUT_SECS_DEFAULT,
    UNZIPPED_CODE_MAX_BYTES, ZIPPED_CODE_MAX_BYTES,
};
use serval_model::{
    validate_description, validate_ephemeral_mb, validate_memory_mb, validate_role,
    validate_timeout_secs, Architecture, EnvironmentVars, FunctionConfig, FunctionName,
    FunctionRef, FunctionState, Handler, LastUpdateStatus, PackageType, Qualifier, Runtime,
    VersionId,
};
use serval_store::{CodeInfo, StoreError};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinError;

use crate::body::{last_modified_now, read_limited, BodyError};
use crate::error::{ApiError, ErrorCode};
use crate::wire::{
    AccountLimit, AccountUsage, Concurrency, CreateFunctionRequest, EphemeralStorage,
    FunctionCodeLocation, FunctionConfiguration, GetAccountSettingsResponse, GetFunctionResponse,
    ListFunctionsResponse, ListTagsResponse, TagResourceRequest, UpdateFunctionCodeRequest,
    UpdateFunctionConfigurationRequest,
};
use crate::ApiState;

/// Largest request AWS takes for CreateFunction and UpdateFunctionCode (a 50 MB zip, base64,
/// in JSON); AWS's own figure.
pub const CODE_REQUEST_MAX_BYTES: usize = 70_167_211;
/// Largest body of the other control-plane operations.
pub const CONTROL_REQUEST_MAX_BYTES: usize = 1024 * 1024;
/// AWS's account-wide code storage quota (75 GB), reported by GetAccountSettings.
pub const TOTAL_CODE_SIZE_LIMIT: u64 = 75 * 1024 * 1024 * 1024;

/// Runs blocking store work off the reactor, for any of the crate's error types: a task that
/// dies (a panic) becomes `E`'s platform failure.
pub(crate) async fn run_blocking<T, E, F>(f: F) -> Result<T, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<JoinError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Runs one mutation on a blocking thread while holding [`ApiState::mutations`], so that
/// `f`'s read of the current state, its store write and its update of the engine, gateway or
/// scheduler form one step no other mutation interleaves with. `f` must do no slow work
/// (decode and store code before calling this). For any of the crate's error types.
pub(crate) async fn run_mutation<T, E, F>(state: &ApiState, f: F) -> Result<T, E>
where
    F: FnOnce(&ApiState) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<JoinError> + Send + 'static,
{
    let st = state.clone();
    run_blocking(move || {
        // A panic under the lock cannot leave a half-written store (it writes in transactions);
        // at worst the engine (or gateway, or scheduler) missed that one change, and the next
        // mutation of the same object hands it over again. So a poisoned lock is taken over
        // rather than failing every later mutation.
        let _serialized = st.mutations.lock().unwrap_or_else(PoisonError::into_inner);
        f(&st)
    })
    .await
}

/// [`run_blocking`] for the Lambda API's [`ApiError`], so that its callers' closures need no
/// error type spelled out.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    run_blocking(f).await
}

/// [`run_mutation`] for the Lambda API's [`ApiError`].
pub(crate) async fn mutate<T, F>(state: &ApiState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&ApiState) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    run_mutation(state, f).await
}

/// Waits for one of the [`ApiState::uploads`] permits; taken before a code upload's body is
/// read, dropped once its package is stored.
async fn upload_permit(state: &ApiState) -> Result<OwnedSemaphorePermit, ApiError> {
    state
        .uploads
        .clone()
        .acquire_owned()
        .await
        .map_err(|err| ApiError::service("failed to wait for a code upload slot", err))
}

/// Reads and parses a JSON request body of at most `limit` bytes; an empty body is `{}`. The
/// raw bytes are dropped on return: only the parsed request stays in memory.
pub(crate) async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    operation: &str,
) -> Result<T, ApiError> {
    let bytes = read_limited(headers, body, limit)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge { .. } => ApiError::new(
                ErrorCode::RequestEntityTooLarge,
                format!("Request must be smaller than {limit} bytes for the {operation} operation"),
            ),
            BodyError::Read { .. } => ApiError::invalid_content("Could not read the request body"),
        })?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|err| {
        ApiError::invalid_content(format!("Could not parse request body into json: {err}"))
    })
}

/// A single path parameter, percent-decoded; a malformed one is refused in AWS's error shape
/// rather than axum's plain-text rejection.
pub(crate) struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::Validation,
                format!("Invalid path parameter: {}", rejection.body_text()),
            )),
        }
    }
}

/// The query string's pairs, in order (repeated keys kept).
pub(crate) fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|err| ApiError::invalid_parameter(format!("Invalid query string: {err}")))
}

/// The value of query parameter `key`, if given.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A function named in a path: its name and the qualifier given either in the name
/// (`name:q`, a partial or full ARN with `:q`) or as `?Qualifier=`. Both may be given if they
/// agree. Whether the qualifier exists is for the caller to check ([`read_qualified`]).
pub(crate) fn resolve_function(
    raw: &str,
    query_qualifier: Option<&str>,
) -> Result<(FunctionName, Option<Qualifier>), ApiError> {
    let fref = FunctionRef::parse(raw)?;
    let query = query_qualifier.map(Qualifier::parse).transpose()?;
    let qualifier = match (fref.qualifier, query) {
        (Some(a), Some(b)) if a != b => return Err(ApiError::invalid_parameter(
            "The derived qualifier from the function name does not match the specified qualifier.",
        )),
        (a, b) => a.or(b),
    };
    Ok((fref.name, qualifier))
}

/// A function named in a path for an operation on the function itself ($LATEST or the
/// function as a whole): a qualifier other than `$LATEST` is refused with AWS's wording for
/// operations that versions and aliases do not support (PutFunctionConcurrency's).
pub(crate) fn resolve_unqualified(raw: &str) -> Result<FunctionName, ApiError> {
    match resolve_function(raw, None)? {
        (name, None | Some(Qualifier::Latest)) => Ok(name),
        (_, Some(_)) => Err(ApiError::invalid_parameter(
            "This operation is permitted on Lambda functions only. Aliases and versions do not support this operation. Please specify either a function name or an unqualified function ARN.",
        )),
    }
}

/// The ARN of `name` qualified by `qualifier` (AWS's error messages and qualified ARNs).
pub(crate) fn qualified_arn(name: &FunctionName, qualifier: &Qualifier, region: &str) -> String {
    format!("{}:{qualifier}", name.arn(region))
}

/// `ResourceNotFoundException` for a qualified function that does not exist.
pub(crate) fn qualified_not_found(
    name: &FunctionName,
    qualifier: &Qualifier,
    region: &str,
) -> ApiError {
    ApiError::function_not_found(&qualified_arn(name, qualifier, region))
}

/// Reads the configuration `qualifier` names on `name` (on a blocking thread): `None` and
/// `$LATEST` read `$LATEST`, a number the published version, anything else an alias's
/// primary version. A missing function, version or alias is `ResourceNotFoundException`
/// `Function not found: <ARN as given>`, as AWS answers GetFunction.
pub(crate) fn read_qualified(
    st: &ApiState,
    name: &FunctionName,
    qualifier: Option<&Qualifier>,
) -> Result<FunctionConfig, ApiError> {
    let region = &st.region;
    let missing = || match qualifier {
        None => not_found(name, region),
        Some(q) => qualified_not_found(name, q, region),
    };
    match qualifier {
        None | Some(Qualifier::Latest) => st.store.get_function(name)?.ok_or_else(missing),
        Some(Qualifier::Version(n)) => st.store.get_version(name, *n)?.ok_or_else(missing),
        Some(Qualifier::Alias(a)) => {
            let alias = st.store.get_alias(name, a)?.ok_or_else(missing)?;
            match alias.function_version {
                VersionId::Latest => st.store.get_function(name)?,
                VersionId::Published(n) => st.store.get_version(name, n)?,
            }
            .ok_or_else(missing)
        }
    }
}

/// Checks that a qualifier exists on an existing function, with the wording AWS uses for
/// settings put on a version or alias: an unknown alias is `Cannot find alias arn: <ARN>`, an
/// unknown version `Function not found: <ARN>`. A missing function is `Function not found`
/// with the unqualified ARN.
pub(crate) fn check_qualifier_exists(
    st: &ApiState,
    name: &FunctionName,
    qualifier: &Qualifier,
) -> Result<(), ApiError> {
    let region = &st.region;
    if st.store.get_function(name)?.is_none() {
        return Err(not_found(name, region));
    }
    let exists = match qualifier {
        Qualifier::Latest => true,
        Qualifier::Version(n) => st.store.get_version(name, *n)?.is_some(),
        Qualifier::Alias(a) => {
            if st.store.get_alias(name, a)?.is_none() {
                return Err(alias_not_found(name, a, region));
            }
            true
        }
    };
    if exists {
        Ok(())
    } else {
        Err(qualified_not_found(name, qualifier, region))
    }
}

/// AWS's `ResourceNotFoundException` for GetAlias and settings put on an unknown alias.
pub(crate) fn alias_not_found(name: &FunctionName, alias: &str, region: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ResourceNotFound,
        format!("Cannot find alias arn: {}:{alias}", name.arn(region)),
    )
}

/// Parses `MaxItems` (1 to 10000 by the schema, AWS's `ValidationException` otherwise; at
/// most `schema_max`) and caps it at `cap`, as AWS returns at most 50 per page whatever
/// `MaxItems` says.
pub(crate) fn parse_max_items(
    pairs: &[(String, String)],
    schema_max: i64,
    cap: usize,
) -> Result<usize, ApiError> {
    let Some(raw) = query_value(pairs, "MaxItems") else {
        return Ok(cap);
    };
    let n: i64 = raw.trim().parse().map_err(|_| {
        ApiError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{raw}' at 'maxItems' failed to satisfy constraint: Member must be a number"),
        )
    })?;
    if !(1..=schema_max).contains(&n) {
        return Err(ApiError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{n}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and {schema_max}"),
        ));
    }
    Ok((n as usize).min(cap))
}

/// One page of `items` (already in list order, ascending by `key`): those after the item
/// whose key is `after` (the previous page's `NextMarker`, parsed), at most `max_items`, and
/// the marker of the next page when more remain. Keys rather than positions make markers
/// survive items deleted between pages.
pub(crate) fn paginate<T, K: Ord>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    after: Option<&K>,
    max_items: usize,
    marker_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|item| after.is_none_or(|a| key(item) > *a))
        .collect();
    let next = (rest.len() > max_items).then(|| marker_of(&rest[max_items - 1]));
    rest.truncate(max_items);
    (rest, next)
}

/// `InvalidParameterValueException` for a `Marker` Serval did not hand out.
pub(crate) fn invalid_marker() -> ApiError {
    ApiError::invalid_parameter("Invalid marker value")
}

pub(crate) fn not_found(name: &FunctionName, region: &str) -> ApiError {
    ApiError::function_not_found(&name.arn(region))
}

/// Maps a store error of an operation on function `name` to AWS's wording.
pub(crate) fn store_error(err: StoreError, name: &FunctionName, region: &str) -> ApiError {
    match err {
        StoreError::NotFound { .. } => not_found(name, region),
        StoreError::AlreadyExists { .. } => already_exists(name),
        StoreError::RevisionMismatch { .. } => revision_mismatch(),
        other => other.into(),
    }
}

/// AWS's `ResourceConflictException` for a name that is taken (AWS's grammar).
fn already_exists(name: &FunctionName) -> ApiError {
    ApiError::new(
        ErrorCode::ResourceConflict,
        format!("Function already exist: {name}"),
    )
}

pub(crate) fn revision_mismatch() -> ApiError {
    ApiError::new(
        ErrorCode::PreconditionFailed,
        "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
    )
}

pub(crate) fn new_revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Decodes `ZipFile` and stores the package, on a blocking thread (hashing and unpacking a
/// large package take seconds). Takes no lock: packages are content-addressed, so storing one
/// that no function ends up using changes nothing a caller sees. The base64 text is dropped as
/// soon as it is decoded, the zip when the package is stored.
async fn store_zip(state: &ApiState, zip_b64: String) -> Result<CodeInfo, ApiError> {
    let st = state.clone();
    blocking(move || {
        let zip = base64::engine::general_purpose::STANDARD
            .decode(zip_b64.trim())
            .map_err(|_| {
                ApiError::invalid_content(
                    "Could not parse request body into json: ZipFile is not valid base64",
                )
            })?;
        drop(zip_b64);
        Ok(st.store.put_code(&zip)?)
    })
    .await
}

fn refuse_non_zip_code(
    s3_bucket: &Option<String>,
    s3_key: &Option<String>,
    image_uri: &Option<String>,
) -> Result<(), ApiError> {
    if s3_bucket.is_some() || s3_key.is_some() {
        return Err(ApiError::invalid_parameter(
            "Code from S3 (S3Bucket, S3Key) is not supported by Serval yet; upload the package as ZipFile",
        ));
    }
    if image_uri.is_some() {
        return Err(ApiError::invalid_parameter(
            "Container images (ImageUri) are not supported by Serval yet; upload the package as ZipFile",
        ));
    }
    Ok(())
}

fn parse_architectures(list: &[String]) -> Result<Architecture, ApiError> {
    match list {
        [one] => Ok(Architecture::parse(one)?),
        _ => Err(ApiError::new(
            ErrorCode::Validation,
            format!(
                "1 validation error detected: Value '[{}]' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1 and greater than or equal to 1",
                list.join(", ")
            ),
        )),
    }
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > TAGS_MAX {
        return Err(ApiError::invalid_parameter(format!(
            "The number of tags exceeds the limit of {TAGS_MAX} tags per resource"
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{k}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"),
            ));
        }
        if v.chars().count() > 256 {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{v}' at 'tags' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 256]"),
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid_parameter(format!(
                "Tag keys starting with 'aws:' are reserved for AWS use: {k}"
            )));
        }
    }
    Ok(())
}

fn environment(vars: Option<BTreeMap<String, String>>) -> Result<EnvironmentVars, ApiError> {
    Ok(EnvironmentVars::new(vars.unwrap_or_default())?)
}

/// `POST /2015-03-31/functions`.
pub async fn create_function(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let upload = upload_permit(&state).await?;
    let req: CreateFunctionRequest =
        json_body(&headers, body, CODE_REQUEST_MAX_BYTES, "CreateFunction").await?;
    let raw_name = req
        .function_name
        .as_deref()
        .ok_or_else(|| ApiError::missing("functionName"))?;
    let fref = FunctionRef::parse(raw_name)?;
    if fref.qualifier.is_some() {
        return Err(ApiError::invalid_parameter(format!(
            "Function name cannot include a qualifier: {raw_name}"
        )));
    }
    let name = fref.name;
    let role = req.role.ok_or_else(|| ApiError::missing("role"))?;
    validate_role(&role)?;
    if let Some(pt) = req.package_type.as_deref() {
        if pt != "Zip" {
            return Err(ApiError::invalid_parameter(format!(
                "PackageType {pt} is not supported by Serval yet; only Zip packages are"
            )));
        }
    }
    if let Some(member) = req.unsupported.first_set() {
        return Err(ApiError::invalid_parameter(format!(
            "{member} is not supported by Serval yet"
        )));
    }
    let (Some(runtime), Some(handler)) = (req.runtime.as_deref(), req.handler.as_deref()) else {
        return Err(ApiError::invalid_parameter(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
        ));
    };
    let runtime: Runtime = runtime.parse()?;
    let handler = Handler::parse(handler)?;
    let description = req.description.unwrap_or_default();
    validate_description(&description)?;
    let timeout_secs = req
        .timeout
        .map(validate_timeout_secs)
        .transpose()?
        .unwrap_or(TIMEOUT_SECS_DEFAULT);
    let memory_mb = req
        .memory_size
        .map(validate_memory_mb)
        .transpose()?
        .unwrap_or(MEMORY_MB_DEFAULT);
    let ephemeral_storage_mb = req
        .ephemeral_storage
        .map(|e| validate_ephemeral_mb(e.size))
        .transpose()?
        .unwrap_or(EPHEMERAL_MB_DEFAULT);
    let environment = environment(req.environment.and_then(|e| e.variables))?;
    let architecture = req
        .architectures
        .as_deref()
        .map(parse_architectures)
        .transpose()?
        .unwrap_or_default();
    let tags = req.tags.unwrap_or_default();
    validate_tags(&tags)?;
    let code = req.code.ok_or_else(|| ApiError::missing("code"))?;
    refuse_non_zip_code(&code.s3_bucket, &code.s3_key, &code.image_uri)?;
    let zip_b64 = code.zip_file.ok_or_else(|| {
        ApiError::invalid_parameter("Please provide a source for function code: Code.ZipFile")
    })?;

    // A cheap conflict check before hashing and unpacking the package; the store's insert
    // decides.
    let st = state.clone();
    let probe = name.clone();
    blocking(move || match st.store.get_function(&probe)? {
        Some(_) => Err(already_exists(&probe)),
        None => Ok(()),
    })
    .await?;
    let code = store_zip(&state, zip_b64).await?;
    drop(upload);

    let cfg = FunctionConfig {
        name,
        runtime,
        role,
        handler,
        description,
        timeout_secs,
        memory_mb,
        ephemeral_storage_mb,
        environment,
        architecture,
        package_type: PackageType::Zip,
        code_sha256_hex: code.sha256_hex,
        code_size: code.zip_size,
        last_modified: last_modified_now(),
        revision_id: new_revision_id(),
        version: "$LATEST".to_owned(),
        state: FunctionState::Active,
        last_update_status: LastUpdateStatus::Successful,
    };
    let publish = req.publish.unwrap_or(false);
    let cfg = mutate(&state, move |st| {
        st.store
            .create_function(&cfg, &tags)
            .map_err(|e| store_error(e, &cfg.name, &st.region))?;
        st.engine.deploy(cfg.clone());
        if publish {
            return crate::versions::publish(st, &cfg.name, crate::versions::PublishCheck::none());
        }
        Ok(cfg)
    })
    .await?;
    tracing::info!(function = %cfg.name, runtime = %cfg.runtime, version = %cfg.version, "api: created function");
    // With `Publish`, the response is version 1's configuration under the unqualified ARN
    // (LocalStack's AWS-parity provider renders CreateFunction this way).
    let out = FunctionConfiguration::from_config(&cfg, &state.region);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// The stored configuration of `name`, or 404.
async fn load(state: &ApiState, name: FunctionName) -> Result<FunctionConfig, ApiError> {
    let st = state.clone();
    blocking(move || {
        st.store
            .get_function(&name)?
            .ok_or_else(|| not_found(&name, &st.region))
    })
    .await
}

/// `GET /2015-03-31/functions/{FunctionName}`.
pub async fn get_function(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&uri)?;
    let (name, qualifier) = resolve_function(&function, query_value(&pairs, "Qualifier"))?;
    let st = state.clone();
    let q = qualifier.clone();
    let (cfg, tags, reserved) = blocking(move || {
        let cfg = read_qualified(&st, &name, q.as_ref())?;
        let tags = st
            .store
            .tags(&name)
            .map_err(|e| store_error(e, &name, &st.region))?;
        let reserved = st
            .store
            .reserved_concurrency(&name)
            .map_err(|e| store_error(e, &name, &st.region))?;
        Ok((cfg, tags, reserved))
    })
    .await?;
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    let out = GetFunctionResponse {
        configuration: configuration_as_read(&cfg, qualifier.as_ref(), &state.region),
        code: FunctionCodeLocation {
            repository_type: "S3",
            location: format!("http://{host}/_serval/code/{}.zip", cfg.code_sha256_hex),
        },
        tags: (!tags.is_empty()).then_some(tags),
        concurrency: reserved.map(|n| Concurrency {
            reserved_concurrent_executions: Some(n),
        }),
    };
    Ok(Json(out).into_response())
}

/// `GET /2015-03-31/functions/{FunctionName}/configuration`.
pub async fn get_function_configuration(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&uri)?;
    let (name, qualifier) = resolve_function(&function, query_value(&pairs, "Qualifier"))?;
    let st = state.clone();
    let q = qualifier.clone();
    let cfg = blocking(move || read_qualified(&st, &name, q.as_ref())).await?;
    let out = configuration_as_read(&cfg, qualifier.as_ref(), &state.region);
    Ok(Json(out).into_response())
}

/// A configuration as GetFunction and GetFunctionConfiguration render it: read without a
/// qualifier, the unqualified ARN; read through one, the ARN qualified with it (the alias
/// name for an alias, while `Version` is the alias's version).
pub(crate) fn configuration_as_read(
    cfg: &FunctionConfig,
    qualifier: Option<&Qualifier>,
    region: &str,
) -> FunctionConfiguration {
    match qualifier {
        None => FunctionConfiguration::from_config(cfg, region),
        Some(q) => FunctionConfiguration::qualified(cfg, region, &q.to_string()),
    }
}

/// `GET /2015-03-31/functions/`: one page of functions in name order.
pub async fn list_functions(State(state): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let pairs = query_pairs(&uri)?;
    let max_items = parse_max_items(&pairs, 10_000, LIST_MAX_ITEMS)?;
    let marker = query_value(&pairs, "Marker")
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let all_versions = match query_value(&pairs, "FunctionVersion") {
        None => false,
        Some("ALL") => true,
        Some(v) => {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{v}' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]"),
            ));
        }
    };
    let st = state.clone();
    let (configs, next_marker) = blocking(move || {
        let (latest, next) = st
            .store
            .list_functions(marker.as_deref(), max_items)
            .map_err(|e| match e {
                StoreError::InvalidMarker { .. } => {
                    ApiError::invalid_parameter("Invalid marker value")
                }
                other => other.into(),
            })?;
        if !all_versions {
            return Ok((latest, next));
        }
        // `FunctionVersion=ALL`: each function's `$LATEST` and then its published versions
        // (a page holds up to MaxItems functions with all of their versions).
        let mut out = Vec::with_capacity(latest.len());
        for cfg in latest {
            let versions = st.store.list_versions(&cfg.name)?;
            out.push(cfg);
            out.extend(versions);
        }
        Ok((out, next))
    })
    .await?;
    let out = ListFunctionsResponse {
        functions: configs
            .iter()
            .map(|c| {
                let mut wire = FunctionConfiguration::from_config(c, &state.region);
                if all_versions {
                    wire.function_arn = format!("{}:{}", c.arn(&state.region), c.version);
                }
                wire
            })
            .collect(),
        next_marker,
    };
    Ok(Json(out).into_response())
}

/// `PUT /2015-03-31/functions/{FunctionName}/code`.
///
/// The package is decoded and stored before the mutation lock is taken; under it the current
/// configuration gets the new code (and `Architectures`, if given) and everything else it has
/// now, so a concurrent UpdateFunctionConfiguration is kept.
///
/// `DryRun: true` changes nothing a caller can see: the package is still validated by storing
/// it (`put_code`), which is harmless because packages are content-addressed (the same bytes
/// always land in the same place, and an unreferenced package is not listed anywhere), but the
/// configuration is not written and the engine is not told. The response is the configuration
/// the update would produce, with the current `RevisionId`.
pub async fn update_function_code(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let upload = upload_permit(&state).await?;
    let req: UpdateFunctionCodeRequest =
        json_body(&headers, body, CODE_REQUEST_MAX_BYTES, "UpdateFunctionCode").await?;
    refuse_non_zip_code(&req.s3_bucket, &req.s3_key, &req.image_uri)?;
    let zip_b64 = req.zip_file.ok_or_else(|| {
        ApiError::invalid_parameter("Please provide a source for function code: ZipFile")
    })?;
    let architecture = req
        .architectures
        .as_deref()
        .map(parse_architectures)
        .transpose()?;
    let dry_run = req.dry_run.unwrap_or(false);
    let publish = req.publish.unwrap_or(false);
    let expected = req.revision_id;

    // Fail a missing function or a stale precondition before the expensive part; both are
    // checked again under the lock.
    let current = load(&state, name.clone()).await?;
    check_revision(expected.as_deref(), &current)?;
    let code = store_zip(&state, zip_b64).await?;
    drop(upload);

    let with_code = move |mut cfg: FunctionConfig| {
        cfg.code_sha256_hex = code.sha256_hex;
        cfg.code_size = code.zip_size;
        if let Some(arch) = architecture {
            cfg.architecture = arch;
        }
        cfg
    };
    if dry_run {
        let cfg = with_code(current);
        return Ok(Json(FunctionConfiguration::from_config(&cfg, &state.region)).into_response());
    }
    let cfg = mutate(&state, move |st| {
        let cfg = commit_update(st, &name, expected.as_deref(), with_code)?;
        if publish {
            return crate::versions::publish(st, &name, crate::versions::PublishCheck::none());
        }
        Ok(cfg)
    })
    .await?;
    tracing::info!(function = %cfg.name, code_sha256 = %cfg.code_sha256_hex, version = %cfg.version, "api: updated function code");
    // With `Publish`, the new version's configuration under its qualified ARN.
    let out = if publish {
        FunctionConfiguration::qualified(&cfg, &state.region, &cfg.version)
    } else {
        FunctionConfiguration::from_config(&cfg, &state.region)
    };
    Ok(Json(out).into_response())
}

/// Fails with `PreconditionFailedException` unless `expected` (when given) is `cfg`'s
/// `RevisionId`.
pub(crate) fn check_revision(expected: Option<&str>, cfg: &FunctionConfig) -> Result<(), ApiError> {
    match expected {
        Some(r) if r != cfg.revision_id => Err(revision_mismatch()),
        _ => Ok(()),
    }
}

/// The update step of a mutation, run under [`ApiState::mutations`]: reads the current
/// configuration of `name`, checks the caller's `RevisionId`, applies `change` to it, stamps a
/// new revision, writes it (compare-and-set against the revision just read) and deploys it.
fn commit_update(
    st: &ApiState,
    name: &FunctionName,
    expected: Option<&str>,
    change: impl FnOnce(FunctionConfig) -> FunctionConfig,
) -> Result<FunctionConfig, ApiError> {
    let current = st
        .store
        .get_function(name)?
        .ok_or_else(|| not_found(name, &st.region))?;
    check_revision(expected, &current)?;
    let read_revision = current.revision_id.clone();
    let mut cfg = change(current);
    cfg.last_modified = last_modified_now();
    cfg.revision_id = new_revision_id();
    st.store
        .update_function(&cfg, Some(&read_revision))
        .map_err(|e| store_error(e, name, &st.region))?;
    st.engine.deploy(cfg.clone());
    Ok(cfg)
}

/// The members of an UpdateFunctionConfiguration request, validated; `None` keeps the current
/// value.
#[derive(Debug, Default)]
struct ConfigurationUpdate {
    role: Option<String>,
    runtime: Option<Runtime>,
    handler: Option<Handler>,
    description: Option<String>,
    timeout_secs: Option<u32>,
    memory_mb: Option<u32>,
    ephemeral_storage_mb: Option<u32>,
    environment: Option<EnvironmentVars>,
}

impl ConfigurationUpdate {
    /// Validates the request's members (`serval-model`'s rules, AWS's error types).
    fn from_request(req: UpdateFunctionConfigurationRequest) -> Result<Self, ApiError> {
        if let Some(member) = req.unsupported.first_set() {
            return Err(ApiError::invalid_parameter(format!(
                "{member} is not supported by Serval yet"
            )));
        }
        if let Some(role) = &req.role {
            validate_role(role)?;
        }
        if let Some(d) = &req.description {
            validate_description(d)?;
        }
        Ok(Self {
            role: req.role,
            runtime: req.runtime.as_deref().map(str::parse).transpose()?,
            handler: req.handler.as_deref().map(Handler::parse).transpose()?,
            description: req.description,
            timeout_secs: req.timeout.map(validate_timeout_secs).transpose()?,
            memory_mb: req.memory_size.map(validate_memory_mb).transpose()?,
            ephemeral_storage_mb: req
                .ephemeral_storage
                .map(|e: EphemeralStorage| validate_ephemeral_mb(e.size))
                .transpose()?,
            environment: req
                .environment
                .map(|e| environment(e.variables))
                .transpose()?,
        })
    }

    /// `cfg` with the given members replaced.
    fn apply(self, mut cfg: FunctionConfig) -> FunctionConfig {
        if let Some(v) = self.role {
            cfg.role = v;
        }
        if let Some(v) = self.runtime {
            cfg.runtime = v;
        }
        if let Some(v) = self.handler {
            cfg.handler = v;
        }
        if let Some(v) = self.description {
            cfg.description = v;
        }
        if let Some(v) = self.timeout_secs {
            cfg.timeout_secs = v;
        }
        if let Some(v) = self.memory_mb {
            cfg.memory_mb = v;
        }
        if let Some(v) = self.ephemeral_storage_mb {
            cfg.ephemeral_storage_mb = v;
        }
        if let Some(v) = self.environment {
            cfg.environment = v;
        }
        cfg
    }
}

/// `PUT /2015-03-31/functions/{FunctionName}/configuration`: the given members replace the
/// current ones under the mutation lock; the code (and any other member) stays as it is now.
pub async fn update_function_configuration(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let mut req: UpdateFunctionConfigurationRequest = json_body(
        &headers,
        body,
        CONTROL_REQUEST_MAX_BYTES,
        "UpdateFunctionConfiguration",
    )
    .await?;
    let expected = req.revision_id.take();
    let update = ConfigurationUpdate::from_request(req)?;
    let cfg = mutate(&state, move |st| {
        commit_update(st, &name, expected.as_deref(), |cfg| update.apply(cfg))
    })
    .await?;
    tracing::info!(function = %cfg.name, "api: updated function configuration");
    Ok(Json(FunctionConfiguration::from_config(&cfg, &state.region)).into_response())
}

/// `DELETE /2015-03-31/functions/{FunctionName}`: 204. The store and the engine change
/// together, under the mutation lock.
///
/// Without a qualifier the function goes with every version, alias and setting (the store
/// cascades; the engine forgets it all). With a version number only that version goes, with
/// the settings put on it; as measured on AWS, a version that does not exist is no error, a
/// version an alias routes to is `ResourceConflictException`, `$LATEST` and aliases are
/// `InvalidParameterValueException`.
pub async fn delete_function(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&uri)?;
    let (name, qualifier) = resolve_function(&function, query_value(&pairs, "Qualifier"))?;
    match qualifier {
        None => {
            let name = mutate(&state, move |st| {
                let urls = st.store.list_function_urls(&name)?;
                let existed = st.store.delete_function(&name)?;
                // Its URLs went with it (the store cascades): stop serving them.
                for url in urls {
                    st.gateway.remove_function_url(&url.url_id);
                }
                // Also when it did not exist: the engine then agrees with the store either way.
                st.engine.remove(&name);
                if existed {
                    Ok(name)
                } else {
                    Err(not_found(&name, &st.region))
                }
            })
            .await?;
            tracing::info!(function = %name, "api: deleted function");
        }
        Some(Qualifier::Latest) => {
            return Err(ApiError::invalid_parameter(
                "$LATEST version cannot be deleted without deleting the function.",
            ))
        }
        Some(Qualifier::Alias(_)) => {
            return Err(ApiError::invalid_parameter(
                "Deletion of aliases is not currently supported.",
            ))
        }
        Some(Qualifier::Version(n)) => {
            let deleted = mutate(&state, move |st| delete_version(st, &name, n)).await?;
            if let Some(name) = deleted {
                tracing::info!(function = %name, version = n, "api: deleted function version");
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes published version `n` of `name` under the mutation lock; `Some(name)` if it
/// existed.
fn delete_version(
    st: &ApiState,
    name: &FunctionName,
    n: u64,
) -> Result<Option<FunctionName>, ApiError> {
    if st.store.get_function(name)?.is_none() {
        return Err(not_found(name, &st.region));
    }
    let referencing: Vec<String> = st
        .store
        .list_aliases(name)?
        .into_iter()
        .filter(|a| alias_references(a, n))
        .map(|a| a.name)
        .collect();
    if !referencing.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ResourceConflict,
            format!(
                "Unable to delete version because the following aliases reference it: [{}]",
                referencing.join(", ")
            ),
        ));
    }
    if !st.store.delete_version(name, n)? {
        return Ok(None);
    }
    // The store deleted the settings put on the version with it.
    let qualifier = n.to_string();
    st.engine.remove_provisioned_concurrency(name, &qualifier);
    st.engine.remove_event_invoke_config(name, &qualifier);
    st.engine.remove_version(name, n);
    Ok(Some(name.clone()))
}

/// Whether alias `a` routes any invocation to published version `n` (as its primary version
/// or in its weights).
pub(crate) fn alias_references(a: &serval_model::AliasConfig, n: u64) -> bool {
    a.function_version == VersionId::Published(n) || a.additional_version_weights.contains_key(&n)
}

/// The function a tagging ARN names. AWS's pattern requires a full function ARN; qualified
/// ARNs are refused as AWS refuses tagging versions and aliases.
fn tag_resource(raw: &str) -> Result<FunctionName, ApiError> {
    if !raw.starts_with("arn:") {
        return Err(ApiError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{raw}' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:[a-z]{{2}}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{{1}}:\\d{{12}}:(function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?|code-signing-config:csc-[a-z0-9]{{17}}|event-source-mapping:[0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{12}})"),
        ));
    }
    let fref = FunctionRef::parse(raw)?;
    if fref.qualifier.is_some() {
        return Err(ApiError::invalid_parameter(format!(
            "Tags are not supported for resource {raw}: tag the unqualified function ARN"
        )));
    }
    Ok(fref.name)
}

/// `GET /2017-03-31/tags/{ARN}`.
pub async fn list_tags(
    State(state): State<ApiState>,
    PathParam(resource): PathParam,
) -> Result<Response, ApiError> {
    let name = tag_resource(&resource)?;
    let st = state.clone();
    let tags = blocking(move || {
        st.store
            .tags(&name)
            .map_err(|e| store_error(e, &name, &st.region))
    })
    .await?;
    Ok(Json(ListTagsResponse { tags }).into_response())
}

/// `POST /2017-03-31/tags/{ARN}`: 204.
pub async fn tag_resource_handler(
    State(state): State<ApiState>,
    PathParam(resource): PathParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = tag_resource(&resource)?;
    let req: TagResourceRequest =
        json_body(&headers, body, CONTROL_REQUEST_MAX_BYTES, "TagResource").await?;
    let tags = req.tags.ok_or_else(|| ApiError::missing("tags"))?;
    validate_tags(&tags)?;
    // Under the lock, so the count check and the write see the same tags.
    mutate(&state, move |st| {
        let region = &st.region;
        let current = st
            .store
            .tags(&name)
            .map_err(|e| store_error(e, &name, region))?;
        let total = current
            .keys()
            .chain(tags.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if total > TAGS_MAX {
            return Err(ApiError::invalid_parameter(format!(
                "The number of tags exceeds the limit of {TAGS_MAX} tags per resource"
            )));
        }
        st.store
            .tag(&name, &tags)
            .map_err(|e| store_error(e, &name, region))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /2017-03-31/tags/{ARN}?tagKeys=a&tagKeys=b`: 204.
pub async fn untag_resource(
    State(state): State<ApiState>,
    PathParam(resource): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = tag_resource(&resource)?;
    let pairs = query_pairs(&uri)?;
    let keys: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    if keys.is_empty() {
        return Err(ApiError::missing("tagKeys"));
    }
    mutate(&state, move |st| {
        st.store
            .untag(&name, &keys)
            .map_err(|e| store_error(e, &name, &st.region))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /2016-08-19/account-settings/`.
pub async fn get_account_settings(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let st = state.clone();
    let (functions, versions) =
        blocking(move || Ok((st.store.all_functions()?, st.store.all_versions()?))).await?;
    // As on AWS, every published version's package counts too.
    let total_code_size: u64 = functions
        .iter()
        .chain(versions.iter())
        .map(|f| f.code_size)
        .sum();
    let concurrency = state.engine.concurrency();
    let out = GetAccountSettingsResponse {
        account_limit: AccountLimit {
            total_code_size: TOTAL_CODE_SIZE_LIMIT,
            code_size_unzipped: UNZIPPED_CODE_MAX_BYTES,
            code_size_zipped: ZIPPED_CODE_MAX_BYTES,
            concurrent_executions: concurrency.account_limit,
            unreserved_concurrent_executions: concurrency.unreserved,
        },
        account_usage: AccountUsage {
            total_code_size,
            function_count: functions.len() as u64,
        },
    };
    Ok(Json(out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_arns_and_qualifiers() {
        let name = |raw: &str, q: Option<&str>| {
            let (n, q) = resolve_function(raw, q).unwrap();
            (n.as_str().to_owned(), q)
        };
        assert_eq!(name("f", None), ("f".to_owned(), None));
        assert_eq!(
            name("arn:aws:lambda:us-east-1:000000000000:function:f", None),
            ("f".to_owned(), None)
        );
        assert_eq!(
            name("000000000000:function:f:$LATEST", None),
            ("f".to_owned(), Some(Qualifier::Latest))
        );
        assert_eq!(name("f", Some("7")).1, Some(Qualifier::Version(7)));
        assert_eq!(
            name(
                "arn:aws:lambda:us-east-1:000000000000:function:f:live",
                None
            )
            .1,
            Some(Qualifier::Alias("live".into()))
        );
        // The same qualifier twice is fine; two different ones are not.
        assert_eq!(
            name("f:live", Some("live")).1,
            Some(Qualifier::Alias("live".into()))
        );
        let err = resolve_function("f:1", Some("2")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterValue);
        let err = resolve_function("bad name", None).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Validation);
        let err = resolve_function("f", Some("a.b")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Validation);
    }

    #[test]
    fn unqualified_operations_accept_latest_only() {
        assert_eq!(resolve_unqualified("f").unwrap().as_str(), "f");
        assert_eq!(resolve_unqualified("f:$LATEST").unwrap().as_str(), "f");
        for raw in ["f:1", "f:live"] {
            let err = resolve_unqualified(raw).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidParameterValue);
            assert!(err
                .message()
                .starts_with("This operation is permitted on Lambda functions only."));
        }
    }

    #[test]
    fn parses_max_items_against_the_schema_and_caps_pages() {
        let q = |v: &str| vec![("MaxItems".to_owned(), v.to_owned())];
        assert_eq!(parse_max_items(&[], 10_000, 50).unwrap(), 50);
        assert_eq!(parse_max_items(&q("7"), 10_000, 50).unwrap(), 7);
        assert_eq!(parse_max_items(&q("10000"), 10_000, 50).unwrap(), 50);
        for bad in ["0", "51", "x"] {
            let err = parse_max_items(&q(bad), 50, 50).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Validation, "{bad}");
        }
    }

    #[test]
    fn aliases_reference_primary_and_weighted_versions() {
        let alias = serval_model::AliasConfig {
            function: FunctionName::parse("f").unwrap(),
            name: "live".into(),
            function_version: VersionId::Published(2),
            description: String::new(),
            additional_version_weights: BTreeMap::from([(3, 0.1)]),
            revision_id: "r".into(),
        };
        assert!(alias_references(&alias, 2));
        assert!(alias_references(&alias, 3));
        assert!(!alias_references(&alias, 1));
    }

    #[test]
    fn validates_tag_limits() {
        let many: BTreeMap<String, String> =
            (0..51).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert_eq!(
            validate_tags(&many).unwrap_err().code(),
            ErrorCode::InvalidParameterValue
        );
        let mut long = BTreeMap::new();
        long.insert("k".repeat(129), "v".to_owned());
        assert_eq!(
            validate_tags(&long).unwrap_err().code(),
            ErrorCode::Validation
        );
        let mut reserved = BTreeMap::new();
        reserved.insert("aws:x".to_owned(), "v".to_owned());
        assert!(validate_tags(&reserved).is_err());
    }
}
