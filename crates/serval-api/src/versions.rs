//! Versions and aliases: PublishVersion, ListVersionsByFunction, CreateAlias, GetAlias,
//! UpdateAlias, DeleteAlias, ListAliases.
//!
//! A published version is an immutable snapshot of `$LATEST` under the next number; an alias
//! names one version and may send a share of invocations to a second one. Every mutation
//! follows the crate's protocol (`functions::mutate`): under [`crate::ApiState::mutations`],
//! read, check the preconditions, write the store and tell the engine, in one step.
//!
//! Not for: deleting a version (DeleteFunction with a qualifier, in `functions`), invoking one
//! (`invoke`), settings put on versions and aliases (`concurrency`, `event_config`).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::request::Parts;
use http::{HeaderMap, StatusCode, Uri};
use serval_model::limits::{ALIAS_ADDITIONAL_VERSIONS_MAX, LIST_MAX_ITEMS};
use serval_model::{
    validate_alias_name, validate_description, AliasConfig, FunctionConfig, FunctionName,
    Qualifier, VersionId,
};

use crate::error::{ApiError, ErrorCode};
use crate::functions::{
    blocking, check_revision, invalid_marker, json_body, mutate, new_revision_id, not_found,
    paginate, parse_max_items, qualified_not_found, query_pairs, query_value, resolve_unqualified,
    revision_mismatch, PathParam, CONTROL_REQUEST_MAX_BYTES,
};
use crate::wire::{
    hex_to_base64, AliasConfiguration, AliasRoutingConfiguration, CreateAliasRequest,
    FunctionConfiguration, ListAliasesResponse, ListVersionsByFunctionResponse,
    PublishVersionRequest, UpdateAliasRequest,
};
use crate::ApiState;

/// The caller's preconditions and overrides for a publish.
#[derive(Debug, Default)]
pub(crate) struct PublishCheck {
    /// `RevisionId`: `$LATEST`'s must match.
    pub revision_id: Option<String>,
    /// `CodeSha256` (base64): `$LATEST`'s code must have it.
    pub code_sha256: Option<String>,
    /// `Description`: replaces `$LATEST`'s in the version.
    pub description: Option<String>,
}

impl PublishCheck {
    /// No preconditions, `$LATEST`'s description (publish on create and code update).
    pub(crate) fn none() -> Self {
        Self::default()
    }
}

/// Whether `version` is a snapshot of `latest` as it is now: same code and same
/// configuration apart from what a publish changes (number, revision, last-modified time,
/// description).
pub(crate) fn same_snapshot(version: &FunctionConfig, latest: &FunctionConfig) -> bool {
    let mut v = version.clone();
    v.version.clone_from(&latest.version);
    v.revision_id.clone_from(&latest.revision_id);
    v.last_modified.clone_from(&latest.last_modified);
    v.description.clone_from(&latest.description);
    v == *latest
}

/// Publishes `$LATEST` of `name` as its next version, under the mutation lock (the caller
/// holds it): checks `check`'s preconditions, returns the newest version instead if `$LATEST`
/// has not changed since it was published (as AWS does), else stores the snapshot and
/// registers it with the engine.
pub(crate) fn publish(
    st: &ApiState,
    name: &FunctionName,
    check: PublishCheck,
) -> Result<FunctionConfig, ApiError> {
    let latest = st
        .store
        .get_function(name)?
        .ok_or_else(|| not_found(name, &st.region))?;
    check_revision(check.revision_id.as_deref(), &latest)?;
    let latest_sha = hex_to_base64(&latest.code_sha256_hex);
    if let Some(expected) = check.code_sha256.as_deref() {
        if expected != latest_sha {
            return Err(ApiError::invalid_parameter(format!(
                "CodeSHA256 ({expected}) is different from current CodeSHA256 in $LATEST ({latest_sha}). Please try again with the CodeSHA256 in $LATEST."
            )));
        }
    }
    if let Some(newest) = st.store.list_versions(name)?.pop() {
        if same_snapshot(&newest, &latest) {
            return Ok(newest);
        }
    }
    let n = st.store.next_version_number(name)?;
    let mut cfg = latest;
    cfg.version = n.to_string();
    cfg.revision_id = new_revision_id();
    if let Some(d) = check.description {
        cfg.description = d;
    }
    st.store.put_version(&cfg)?;
    st.engine.deploy_version(cfg.clone());
    tracing::info!(function = %name, version = n, "api: published version");
    Ok(cfg)
}

/// `POST /2015-03-31/functions/{FunctionName}/versions`: 201 and the version's configuration
/// (qualified ARN).
pub async fn publish_version(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let req: PublishVersionRequest =
        json_body(&headers, body, CONTROL_REQUEST_MAX_BYTES, "PublishVersion").await?;
    if let Some(d) = &req.description {
        validate_description(d)?;
    }
    let check = PublishCheck {
        revision_id: req.revision_id,
        code_sha256: req.code_sha256,
        description: req.description,
    };
    let cfg = mutate(&state, move |st| publish(st, &name, check)).await?;
    let out = FunctionConfiguration::qualified(&cfg, &state.region, &cfg.version);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /2015-03-31/functions/{FunctionName}/versions`: `$LATEST` first, then the published
/// versions in ascending order, each under its qualified ARN; pages of at most 50.
pub async fn list_versions(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let pairs = query_pairs(&uri)?;
    let max_items = parse_max_items(&pairs, 10_000, LIST_MAX_ITEMS)?;
    let after = query_value(&pairs, "Marker")
        .filter(|m| !m.is_empty())
        .map(|m| VersionId::parse(m).map_err(|_| invalid_marker()))
        .transpose()?;
    let st = state.clone();
    let all = blocking(move || {
        let latest = st
            .store
            .get_function(&name)?
            .ok_or_else(|| not_found(&name, &st.region))?;
        let mut all = vec![latest];
        all.extend(st.store.list_versions(&name)?);
        Ok(all)
    })
    .await?;
    let (page, next_marker) = paginate(
        all,
        version_id,
        after.as_ref(),
        max_items,
        |c: &FunctionConfig| c.version.clone(),
    );
    let out = ListVersionsByFunctionResponse {
        versions: page
            .iter()
            .map(|c| FunctionConfiguration::qualified(c, &state.region, &c.version))
            .collect(),
        next_marker,
    };
    Ok(Json(out).into_response())
}

/// The version a stored configuration is (`$LATEST` sorts first).
fn version_id(cfg: &FunctionConfig) -> VersionId {
    VersionId::parse(&cfg.version).unwrap_or(VersionId::Latest)
}

/// The `{FunctionName}` and `{Name}` of an alias route, percent-decoded; malformed ones are
/// refused in AWS's error shape.
pub(crate) struct AliasPath {
    function: String,
    alias: String,
}

impl<S: Send + Sync> FromRequestParts<S> for AliasPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((function, alias))) => Ok(AliasPath { function, alias }),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::Validation,
                format!("Invalid path parameter: {}", rejection.body_text()),
            )),
        }
    }
}

/// Validates `RoutingConfig.AdditionalVersionWeights` against the alias's primary version,
/// with AWS's checks and wording in AWS's order: at most one entry, a weight from 0.0 to 1.0,
/// not the primary version, no routing when the primary is `$LATEST`, a version number.
/// Whether the version exists is checked by the caller (it needs the store). `None` or an
/// empty map is no routing.
pub(crate) fn validate_weights(
    weights: Option<&BTreeMap<String, f64>>,
    primary: VersionId,
) -> Result<BTreeMap<u64, f64>, ApiError> {
    let Some(weights) = weights else {
        return Ok(BTreeMap::new());
    };
    if weights.len() > ALIAS_ADDITIONAL_VERSIONS_MAX {
        return Err(ApiError::invalid_parameter(format!(
            "Number of items in AdditionalVersionWeights cannot be greater than {ALIAS_ADDITIONAL_VERSIONS_MAX}"
        )));
    }
    let mut out = BTreeMap::new();
    for (key, &weight) in weights {
        if !(0.0..=1.0).contains(&weight) {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{{{key}={weight}}}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]"),
            ));
        }
        if *key == primary.to_string() {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid function version {key}. Function version {key} is already included in routing configuration."
            )));
        }
        if primary == VersionId::Latest {
            return Err(ApiError::invalid_parameter(
                "$LATEST is not supported for an alias pointing to more than 1 version",
            ));
        }
        let version = match VersionId::parse(key) {
            Ok(VersionId::Published(n)) if !key.starts_with('0') => n,
            _ => return Err(ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{{{key}={weight}}}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+, Member must not be null]"),
            )),
        };
        out.insert(version, weight);
    }
    Ok(out)
}

/// Checks that the versions an alias would route to exist (the caller holds the mutation
/// lock): a missing one is `ResourceNotFoundException` `Function not found: <version ARN>`.
fn check_alias_targets(
    st: &ApiState,
    name: &FunctionName,
    primary: VersionId,
    weights: &BTreeMap<u64, f64>,
) -> Result<(), ApiError> {
    let mut versions: Vec<u64> = weights.keys().copied().collect();
    if let VersionId::Published(n) = primary {
        versions.insert(0, n);
    }
    for n in versions {
        if st.store.get_version(name, n)?.is_none() {
            return Err(qualified_not_found(
                name,
                &Qualifier::Version(n),
                &st.region,
            ));
        }
    }
    Ok(())
}

/// Parses `FunctionVersion` of an alias request.
fn parse_function_version(raw: &str) -> Result<VersionId, ApiError> {
    Ok(VersionId::parse(raw)?)
}

/// Checks an alias name from a request or a path.
fn check_alias_name(name: &str) -> Result<(), ApiError> {
    Ok(validate_alias_name(name)?)
}

/// `POST /2015-03-31/functions/{FunctionName}/aliases`: 201.
pub async fn create_alias(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let req: CreateAliasRequest =
        json_body(&headers, body, CONTROL_REQUEST_MAX_BYTES, "CreateAlias").await?;
    let alias_name = req.name.ok_or_else(|| ApiError::missing("name"))?;
    check_alias_name(&alias_name)?;
    let primary = parse_function_version(
        req.function_version
            .as_deref()
            .ok_or_else(|| ApiError::missing("functionVersion"))?,
    )?;
    let description = req.description.unwrap_or_default();
    validate_description(&description)?;
    let weights = validate_weights(
        req.routing_config
            .as_ref()
            .and_then(|r| r.additional_version_weights.as_ref()),
        primary,
    )?;
    let alias = mutate(&state, move |st| {
        let region = &st.region;
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, region));
        }
        check_alias_targets(st, &name, primary, &BTreeMap::new())?;
        if st.store.get_alias(&name, &alias_name)?.is_some() {
            return Err(ApiError::new(
                ErrorCode::ResourceConflict,
                format!("Alias already exists: {}:{alias_name}", name.arn(region)),
            ));
        }
        check_alias_targets(st, &name, VersionId::Latest, &weights)?;
        let alias = AliasConfig {
            function: name,
            name: alias_name,
            function_version: primary,
            description,
            additional_version_weights: weights,
            revision_id: new_revision_id(),
        };
        st.store.put_alias(&alias)?;
        st.engine.set_alias(&alias);
        Ok(alias)
    })
    .await?;
    tracing::info!(function = %alias.function, alias = %alias.name, version = %alias.function_version, "api: created alias");
    let out = AliasConfiguration::from_alias(&alias, &state.region);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /2015-03-31/functions/{FunctionName}/aliases/{Name}`.
pub async fn get_alias(
    State(state): State<ApiState>,
    path: AliasPath,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&path.function)?;
    check_alias_name(&path.alias)?;
    let st = state.clone();
    let alias = blocking(move || {
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, &st.region));
        }
        st.store
            .get_alias(&name, &path.alias)?
            .ok_or_else(|| crate::functions::alias_not_found(&name, &path.alias, &st.region))
    })
    .await?;
    Ok(Json(AliasConfiguration::from_alias(&alias, &state.region)).into_response())
}

/// `PUT /2015-03-31/functions/{FunctionName}/aliases/{Name}`: the given members replace the
/// alias's (a given `RoutingConfig`, even empty, replaces its routing); the whole result is
/// validated again, the `RevisionId` precondition checked, and a new revision stamped.
pub async fn update_alias(
    State(state): State<ApiState>,
    path: AliasPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&path.function)?;
    check_alias_name(&path.alias)?;
    let alias_name = path.alias;
    let req: UpdateAliasRequest =
        json_body(&headers, body, CONTROL_REQUEST_MAX_BYTES, "UpdateAlias").await?;
    let new_primary = req
        .function_version
        .as_deref()
        .map(parse_function_version)
        .transpose()?;
    if let Some(d) = &req.description {
        validate_description(d)?;
    }
    let alias = mutate(&state, move |st| {
        let region = &st.region;
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, region));
        }
        let current = st.store.get_alias(&name, &alias_name)?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::ResourceNotFound,
                format!("Alias not found: {}:{alias_name}", name.arn(region)),
            )
        })?;
        if let Some(expected) = req.revision_id.as_deref() {
            if expected != current.revision_id {
                return Err(revision_mismatch());
            }
        }
        let primary = new_primary.unwrap_or(current.function_version);
        let weights = match &req.routing_config {
            Some(AliasRoutingConfiguration {
                additional_version_weights,
            }) => validate_weights(additional_version_weights.as_ref(), primary)?,
            None => {
                let kept: BTreeMap<String, f64> = current
                    .additional_version_weights
                    .iter()
                    .map(|(v, w)| (v.to_string(), *w))
                    .collect();
                validate_weights(Some(&kept), primary)?
            }
        };
        check_alias_targets(st, &name, primary, &weights)?;
        if primary != current.function_version
            && st
                .store
                .get_provisioned_concurrency(&name, &alias_name)?
                .is_some()
        {
            // The alias's provisioned environments are of its version: moving it must keep
            // the rules Put checked (a published version, not provisioned directly too).
            if primary == VersionId::Latest {
                return Err(ApiError::invalid_parameter(
                    "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
                ));
            }
            if let VersionId::Published(n) = primary {
                if st
                    .store
                    .get_provisioned_concurrency(&name, &n.to_string())?
                    .is_some()
                {
                    return Err(ApiError::new(
                        ErrorCode::ResourceConflict,
                        "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version",
                    ));
                }
            }
        }
        let alias = AliasConfig {
            function_version: primary,
            description: req.description.unwrap_or(current.description),
            additional_version_weights: weights,
            revision_id: new_revision_id(),
            ..current
        };
        st.store.put_alias(&alias)?;
        st.engine.set_alias(&alias);
        Ok(alias)
    })
    .await?;
    tracing::info!(function = %alias.function, alias = %alias.name, version = %alias.function_version, "api: updated alias");
    Ok(Json(AliasConfiguration::from_alias(&alias, &state.region)).into_response())
}

/// `DELETE /2015-03-31/functions/{FunctionName}/aliases/{Name}`: 204, also when the alias
/// does not exist (as AWS answers). The settings put on the alias go with it.
pub async fn delete_alias(
    State(state): State<ApiState>,
    path: AliasPath,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&path.function)?;
    check_alias_name(&path.alias)?;
    let alias_name = path.alias;
    let deleted = mutate(&state, move |st| {
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, &st.region));
        }
        let url = st.store.get_function_url(&name, Some(&alias_name))?;
        if !st.store.delete_alias(&name, &alias_name)? {
            return Ok(None);
        }
        if let Some(url) = url {
            st.gateway.remove_function_url(&url.url_id);
        }
        // The store deleted the settings put on the alias with it.
        st.engine.remove_provisioned_concurrency(&name, &alias_name);
        st.engine.remove_event_invoke_config(&name, &alias_name);
        st.engine.remove_alias(&name, &alias_name);
        Ok(Some((name, alias_name)))
    })
    .await?;
    if let Some((name, alias)) = deleted {
        tracing::info!(function = %name, alias = %alias, "api: deleted alias");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /2015-03-31/functions/{FunctionName}/aliases`: in name order, optionally only those
/// routing to `FunctionVersion`; pages of at most 50.
pub async fn list_aliases(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let pairs = query_pairs(&uri)?;
    let max_items = parse_max_items(&pairs, 10_000, LIST_MAX_ITEMS)?;
    let filter = query_value(&pairs, "FunctionVersion")
        .map(parse_function_version)
        .transpose()?;
    let after = query_value(&pairs, "Marker")
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let st = state.clone();
    let aliases = blocking(move || {
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, &st.region));
        }
        Ok(st.store.list_aliases(&name)?)
    })
    .await?;
    let aliases: Vec<AliasConfig> = aliases
        .into_iter()
        .filter(|a| filter.is_none_or(|v| a.function_version == v))
        .collect();
    let (page, next_marker) = paginate(
        aliases,
        |a: &AliasConfig| a.name.clone(),
        after.as_ref(),
        max_items,
        |a| a.name.clone(),
    );
    let out = ListAliasesResponse {
        aliases: page
            .iter()
            .map(|a| AliasConfiguration::from_alias(a, &state.region))
            .collect(),
        next_marker,
    };
    Ok(Json(out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn accepts_one_weighted_published_version() {
        let w = validate_weights(Some(&weights(&[("2", 0.25)])), VersionId::Published(1)).unwrap();
        assert_eq!(w, BTreeMap::from([(2, 0.25)]));
        assert!(validate_weights(None, VersionId::Latest)
            .unwrap()
            .is_empty());
        assert!(validate_weights(Some(&BTreeMap::new()), VersionId::Latest)
            .unwrap()
            .is_empty());
        for edge in [0.0, 1.0] {
            assert!(
                validate_weights(Some(&weights(&[("2", edge)])), VersionId::Published(1)).is_ok()
            );
        }
    }

    #[test]
    fn refuses_weights_as_aws_does() {
        let v1 = VersionId::Published(1);
        let cases: Vec<(BTreeMap<String, f64>, VersionId, ErrorCode, &str)> = vec![
            (
                weights(&[("2", 0.1), ("3", 0.1)]),
                v1,
                ErrorCode::InvalidParameterValue,
                "Number of items in AdditionalVersionWeights cannot be greater than 1",
            ),
            (
                weights(&[("2", 1.5)]),
                v1,
                ErrorCode::Validation,
                "Member must have value less than or equal to 1.0",
            ),
            (
                weights(&[("2", -0.1)]),
                v1,
                ErrorCode::Validation,
                "greater than or equal to 0.0",
            ),
            (
                weights(&[("1", 0.5)]),
                v1,
                ErrorCode::InvalidParameterValue,
                "Invalid function version 1. Function version 1 is already included in routing configuration.",
            ),
            (
                weights(&[("2", 0.5)]),
                VersionId::Latest,
                ErrorCode::InvalidParameterValue,
                "$LATEST is not supported for an alias pointing to more than 1 version",
            ),
            (
                weights(&[("live", 0.5)]),
                v1,
                ErrorCode::Validation,
                "Member must satisfy regular expression pattern: [0-9]+",
            ),
            (
                weights(&[("$LATEST", 0.5)]),
                v1,
                ErrorCode::Validation,
                "Map keys must satisfy constraint",
            ),
        ];
        for (w, primary, code, fragment) in cases {
            let err = validate_weights(Some(&w), primary).unwrap_err();
            assert_eq!(err.code(), code, "{w:?}: {}", err.message());
            assert!(err.message().contains(fragment), "{w:?}: {}", err.message());
        }
        let nan = weights(&[("2", f64::NAN)]);
        assert_eq!(
            validate_weights(Some(&nan), v1).unwrap_err().code(),
            ErrorCode::Validation
        );
    }

    #[test]
    fn unchanged_latest_is_the_same_snapshot_whatever_the_description() {
        let latest: FunctionConfig = serde_json::from_value(serde_json::json!({
            "name": "f", "runtime": "python3.12", "role": "arn:aws:iam::123456789012:role/r",
            "handler": "app.handler", "description": "d", "timeout_secs": 3, "memory_mb": 128,
            "ephemeral_storage_mb": 512, "environment": {}, "architecture": "x86_64",
            "package_type": "Zip", "code_sha256_hex": "ab", "code_size": 1,
            "last_modified": "2024-01-01T00:00:00.000+0000", "revision_id": "r1",
            "version": "$LATEST", "state": "Active", "last_update_status": "Successful"
        }))
        .expect("a valid stored configuration");
        let mut v1 = latest.clone();
        v1.version = "1".into();
        v1.revision_id = "r2".into();
        v1.description = "release".into();
        v1.last_modified = "2024-02-01T00:00:00.000+0000".into();
        assert!(same_snapshot(&v1, &latest));
        let mut changed = latest.clone();
        changed.memory_mb = 256;
        assert!(!same_snapshot(&v1, &changed));
        let mut new_code = latest.clone();
        new_code.code_sha256_hex = "cd".into();
        assert!(!same_snapshot(&v1, &new_code));
    }

    #[test]
    fn pages_versions_after_the_marker_key() {
        let ids = vec![
            VersionId::Latest,
            VersionId::Published(1),
            VersionId::Published(3),
            VersionId::Published(4),
        ];
        let (p1, m1) = paginate(ids.clone(), |v| *v, None, 2, |v| v.to_string());
        assert_eq!(p1, [VersionId::Latest, VersionId::Published(1)]);
        assert_eq!(m1.as_deref(), Some("1"));
        // Version 2 was deleted between pages: the marker still places the next page.
        let after = VersionId::parse(&m1.unwrap()).unwrap();
        let (p2, m2) = paginate(ids, |v| *v, Some(&after), 2, |v| v.to_string());
        assert_eq!(p2, [VersionId::Published(3), VersionId::Published(4)]);
        assert_eq!(m2, None);
    }
}
