//! Concurrency settings: reserved concurrency (PutFunctionConcurrency,
//! GetFunctionConcurrency, DeleteFunctionConcurrency) and provisioned concurrency
//! (Put/Get/Delete/ListProvisionedConcurrencyConfig(s)).
//!
//! The API checks AWS's rules under the mutation lock (the account keeps a minimum unreserved
//! pool; a function's provisioned total stays within its reservation), writes the store and
//! tells the engine, which enforces the limits and keeps the environments.
//!
//! Not for: GetAccountSettings (`functions`), throttling itself (the engine).

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode, Uri};
use serval_engine::{ProvisionedState, ProvisionedStatus};
use serval_model::limits::LIST_MAX_ITEMS;
use serval_model::{
    AliasConfig, FunctionName, ProvisionedConcurrencyConfig as StoredProvisioned, Qualifier,
    VersionId,
};

use crate::error::{ApiError, ErrorCode};
use crate::functions::{
    blocking, check_qualifier_exists, json_body, mutate, not_found, paginate, parse_max_items,
    query_pairs, query_value, resolve_function, resolve_unqualified, PathParam,
    CONTROL_REQUEST_MAX_BYTES,
};
use crate::wire::{
    Concurrency, ListProvisionedConcurrencyConfigsResponse, ProvisionedConcurrencyConfig,
    PutFunctionConcurrencyRequest, PutProvisionedConcurrencyConfigRequest,
};
use crate::ApiState;

/// Whether a reservation of `requested` for a function whose current reservation is `old`
/// keeps the account's unreserved pool (`unreserved` now) at or above `minimum`. The old
/// reservation is freed by the new one.
pub(crate) fn keeps_unreserved_minimum(
    unreserved: u32,
    old: Option<u32>,
    requested: u32,
    minimum: u32,
) -> bool {
    i64::from(unreserved) + i64::from(old.unwrap_or(0)) - i64::from(requested) >= i64::from(minimum)
}

/// `PUT /2017-10-31/functions/{FunctionName}/concurrency`: 200 and the reservation.
pub async fn put_function_concurrency(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let req: PutFunctionConcurrencyRequest = json_body(
        &headers,
        body,
        CONTROL_REQUEST_MAX_BYTES,
        "PutFunctionConcurrency",
    )
    .await?;
    let requested = req
        .reserved_concurrent_executions
        .ok_or_else(|| ApiError::missing("reservedConcurrentExecutions"))?;
    let requested = u32::try_from(requested).map_err(|_| {
        ApiError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{requested}' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0"),
        )
    })?;
    let reserved = mutate(&state, move |st| {
        // AWS names the function's `$LATEST` ARN here.
        let old = st.store.reserved_concurrency(&name).map_err(|e| match e {
            serval_store::StoreError::NotFound { .. } => ApiError::function_not_found(
                &crate::functions::qualified_arn(&name, &Qualifier::Latest, &st.region),
            ),
            other => other.into(),
        })?;
        let summary = st.engine.concurrency();
        if !keeps_unreserved_minimum(
            summary.unreserved,
            old,
            requested,
            summary.unreserved_minimum,
        ) {
            return Err(ApiError::invalid_parameter(format!(
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                summary.unreserved_minimum
            )));
        }
        let provisioned: u64 = st
            .store
            .list_provisioned_concurrency(&name)?
            .iter()
            .map(|p| u64::from(p.requested))
            .sum();
        if provisioned > u64::from(requested) {
            // AWS's wording, spaces included.
            return Err(ApiError::invalid_parameter(format!(
                " ReservedConcurrentExecutions  {requested} should not be lower than function's total provisioned concurrency [{provisioned}]."
            )));
        }
        st.store.set_reserved_concurrency(&name, Some(requested))?;
        st.engine.set_reserved_concurrency(&name, Some(requested));
        tracing::info!(function = %name, reserved = requested, "api: set reserved concurrency");
        Ok(requested)
    })
    .await?;
    Ok(Json(Concurrency {
        reserved_concurrent_executions: Some(reserved),
    })
    .into_response())
}

/// `GET /2019-09-30/functions/{FunctionName}/concurrency`: `{}` when nothing is reserved.
pub async fn get_function_concurrency(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let st = state.clone();
    let reserved = blocking(move || {
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, &st.region));
        }
        Ok(st.store.reserved_concurrency(&name)?)
    })
    .await?;
    Ok(Json(Concurrency {
        reserved_concurrent_executions: reserved,
    })
    .into_response())
}

/// `DELETE /2017-10-31/functions/{FunctionName}/concurrency`: 204.
pub async fn delete_function_concurrency(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    mutate(&state, move |st| {
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, &st.region));
        }
        st.store.set_reserved_concurrency(&name, None)?;
        st.engine.set_reserved_concurrency(&name, None);
        tracing::info!(function = %name, "api: removed reserved concurrency");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The function and the qualifier (required: `?Qualifier=` or `name:q`) of a provisioned
/// concurrency request; `$LATEST` is refused with `latest_message`.
fn provisioned_target(
    function: &str,
    uri: &Uri,
    latest_message: &str,
) -> Result<(FunctionName, Qualifier), ApiError> {
    let pairs = query_pairs(uri)?;
    match resolve_function(function, query_value(&pairs, "Qualifier"))? {
        (_, None) => Err(ApiError::missing("qualifier")),
        (_, Some(Qualifier::Latest)) => Err(ApiError::invalid_parameter(latest_message)),
        (name, Some(q)) => Ok((name, q)),
    }
}

/// AWS's message for provisioned concurrency read or deleted on `$LATEST`.
const LATEST_NOT_PROVISIONABLE: &str =
    "The function resource provided must be an alias or a published version.";

/// Renders a stored config with the engine's progress (`None`: not started yet).
pub(crate) fn render_provisioned(
    cfg: &StoredProvisioned,
    status: Option<ProvisionedStatus>,
    function_arn: Option<String>,
) -> ProvisionedConcurrencyConfig {
    let status = status.unwrap_or(ProvisionedStatus {
        requested: cfg.requested,
        allocated: 0,
        available: 0,
        state: ProvisionedState::InProgress,
        reason: None,
    });
    ProvisionedConcurrencyConfig {
        function_arn,
        requested_provisioned_concurrent_executions: cfg.requested,
        available_provisioned_concurrent_executions: status.available,
        allocated_provisioned_concurrent_executions: status.allocated,
        status: match status.state {
            ProvisionedState::InProgress => "IN_PROGRESS",
            ProvisionedState::Ready => "READY",
            ProvisionedState::Failed => "FAILED",
        },
        status_reason: status.reason,
        last_modified: cfg.last_modified.clone(),
    }
}

/// `LastModified` of a provisioned concurrency config: `2019-12-31T20:28:49+0000`.
fn provisioned_last_modified_now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+0000");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00+0000".to_owned())
}

/// The version a provisioned config on `qualifier` keeps environments of, if known.
fn provisioned_version(qualifier: &Qualifier, aliases: &[AliasConfig]) -> Option<VersionId> {
    match qualifier {
        Qualifier::Version(n) => Some(VersionId::Published(*n)),
        Qualifier::Alias(a) => aliases
            .iter()
            .find(|x| &x.name == a)
            .map(|x| x.function_version),
        Qualifier::Latest => Some(VersionId::Latest),
    }
}

/// `PUT /2019-09-30/functions/{FunctionName}/provisioned-concurrency?Qualifier=`: 202.
pub async fn put_provisioned_concurrency(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, qualifier) = provisioned_target(
        &function,
        &uri,
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
    )?;
    let req: PutProvisionedConcurrencyConfigRequest = json_body(
        &headers,
        body,
        CONTROL_REQUEST_MAX_BYTES,
        "PutProvisionedConcurrencyConfig",
    )
    .await?;
    let requested = req
        .provisioned_concurrent_executions
        .ok_or_else(|| ApiError::missing("provisionedConcurrentExecutions"))?;
    let requested = u32::try_from(requested)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{requested}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1"),
            )
        })?;
    let cfg = mutate(&state, move |st| {
        check_qualifier_exists(st, &name, &qualifier)?;
        let q = qualifier.to_string();
        let others: Vec<StoredProvisioned> = st
            .store
            .list_provisioned_concurrency(&name)?
            .into_iter()
            .filter(|p| p.qualifier != q)
            .collect();
        let aliases = st.store.list_aliases(&name)?;
        // A version is provisioned either directly or through aliases, not both (AWS).
        let target = provisioned_version(&qualifier, &aliases);
        if target == Some(VersionId::Latest) {
            // An alias of `$LATEST`: AWS refuses it as it refuses `$LATEST` itself.
            return Err(ApiError::invalid_parameter(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
            ));
        }
        for other in &others {
            let Ok(other_q) = Qualifier::parse(&other.qualifier) else {
                continue;
            };
            if provisioned_version(&other_q, &aliases) != target {
                continue;
            }
            let message = match (&qualifier, &other_q) {
                (Qualifier::Alias(_), Qualifier::Version(_)) => {
                    "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
                }
                (Qualifier::Version(_), Qualifier::Alias(_)) => {
                    "Version is pointed by a Provisioned Concurrency alias"
                }
                _ => continue,
            };
            return Err(ApiError::new(ErrorCode::ResourceConflict, message));
        }
        if let Some(reserved) = st.store.reserved_concurrency(&name)? {
            let total: u64 = others.iter().map(|p| u64::from(p.requested)).sum::<u64>()
                + u64::from(requested);
            if total > u64::from(reserved) {
                return Err(ApiError::invalid_parameter(
                    "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function",
                ));
            }
        } else {
            // Without a reservation, the account's provisioned environments all come out of
            // the unreserved pool, which keeps its minimum (AWS's rule; it also bounds how
            // many environments a caller can have Serval keep).
            let account: u64 = st
                .store
                .all_provisioned_concurrency()?
                .iter()
                .filter(|p| !(p.function == name && p.qualifier == q))
                .map(|p| u64::from(p.requested))
                .sum::<u64>()
                + u64::from(requested);
            let summary = st.engine.concurrency();
            let room = summary.unreserved.saturating_sub(summary.unreserved_minimum);
            if account > u64::from(room) {
                return Err(ApiError::invalid_parameter(format!(
                    "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [{}].",
                    summary.unreserved
                )));
            }
        }
        let cfg = StoredProvisioned {
            function: name.clone(),
            qualifier: q,
            requested,
            last_modified: provisioned_last_modified_now(),
        };
        st.store.put_provisioned_concurrency(&cfg)?;
        st.engine
            .set_provisioned_concurrency(&name, &cfg.qualifier, requested);
        tracing::info!(function = %name, qualifier = %cfg.qualifier, requested, "api: set provisioned concurrency");
        Ok(cfg)
    })
    .await?;
    // As on AWS, the answer to a put is always `IN_PROGRESS`: the environments are being
    // made; GetProvisionedConcurrencyConfig reports their progress.
    let out = render_provisioned(&cfg, None, None);
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}

/// `GET /2019-09-30/functions/{FunctionName}/provisioned-concurrency`: one config
/// (`?Qualifier=`), or every config of the function with `?List=ALL`.
pub async fn get_provisioned_concurrency(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&uri)?;
    if query_value(&pairs, "List").is_some() {
        return list_provisioned_concurrency(state, &function, &pairs).await;
    }
    let (name, qualifier) = provisioned_target(&function, &uri, LATEST_NOT_PROVISIONABLE)?;
    let st = state.clone();
    let (cfg, status) = blocking(move || {
        check_qualifier_exists(&st, &name, &qualifier)?;
        let q = qualifier.to_string();
        let cfg = st
            .store
            .get_provisioned_concurrency(&name, &q)?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ProvisionedConcurrencyConfigNotFound,
                    "No Provisioned Concurrency Config found for this function",
                )
            })?;
        let status = st.engine.provisioned_status(&name, &q);
        Ok((cfg, status))
    })
    .await?;
    Ok(Json(render_provisioned(&cfg, status, None)).into_response())
}

/// `ListProvisionedConcurrencyConfigs`: in qualifier order, each with its qualified ARN;
/// pages of at most 50.
async fn list_provisioned_concurrency(
    state: ApiState,
    function: &str,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    if let Some(v) = query_value(pairs, "List") {
        if v != "ALL" {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{v}' at 'list' failed to satisfy constraint: Member must satisfy enum value set: [ALL]"),
            ));
        }
    }
    let name = resolve_unqualified(function)?;
    let max_items = parse_max_items(pairs, 50, LIST_MAX_ITEMS)?;
    let after = query_value(pairs, "Marker")
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let st = state.clone();
    let configs = blocking(move || {
        if st.store.get_function(&name)?.is_none() {
            return Err(not_found(&name, &st.region));
        }
        let mut configs = st.store.list_provisioned_concurrency(&name)?;
        configs.sort_by(|a, b| a.qualifier.cmp(&b.qualifier));
        Ok(configs
            .into_iter()
            .map(|c| {
                let status = st.engine.provisioned_status(&name, &c.qualifier);
                (c, status)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let (page, next_marker) = paginate(
        configs,
        |(c, _)| c.qualifier.clone(),
        after.as_ref(),
        max_items,
        |(c, _)| c.qualifier.clone(),
    );
    let out = ListProvisionedConcurrencyConfigsResponse {
        provisioned_concurrency_configs: page
            .into_iter()
            .map(|(c, status)| {
                let arn = format!("{}:{}", c.function.arn(&state.region), c.qualifier);
                render_provisioned(&c, status, Some(arn))
            })
            .collect(),
        next_marker,
    };
    Ok(Json(out).into_response())
}

/// `DELETE /2019-09-30/functions/{FunctionName}/provisioned-concurrency?Qualifier=`: 204,
/// also when the version or alias has no config (AWS's delete is idempotent).
pub async fn delete_provisioned_concurrency(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (name, qualifier) = provisioned_target(&function, &uri, LATEST_NOT_PROVISIONABLE)?;
    mutate(&state, move |st| {
        check_qualifier_exists(st, &name, &qualifier)?;
        let q = qualifier.to_string();
        if st.store.delete_provisioned_concurrency(&name, &q)? {
            st.engine.remove_provisioned_concurrency(&name, &q);
            tracing::info!(function = %name, qualifier = %q, "api: removed provisioned concurrency");
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_old_reservation_as_freed() {
        // Limit 1000, minimum 100: 900 may be reserved in all.
        assert!(keeps_unreserved_minimum(1000, None, 900, 100));
        assert!(!keeps_unreserved_minimum(1000, None, 901, 100));
        // This function already holds 500 (unreserved is 500): it may grow to 900, not 901.
        assert!(keeps_unreserved_minimum(500, Some(500), 900, 100));
        assert!(!keeps_unreserved_minimum(500, Some(500), 901, 100));
        assert!(keeps_unreserved_minimum(100, None, 0, 100));
        assert!(!keeps_unreserved_minimum(50, None, 0, 100));
    }

    #[test]
    fn renders_provisioned_status_and_defaults_to_in_progress() {
        let cfg = StoredProvisioned {
            function: FunctionName::parse("f").unwrap(),
            qualifier: "live".into(),
            requested: 3,
            last_modified: "2024-01-01T00:00:00+0000".into(),
        };
        let out = serde_json::to_value(render_provisioned(&cfg, None, None)).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "RequestedProvisionedConcurrentExecutions": 3,
                "AvailableProvisionedConcurrentExecutions": 0,
                "AllocatedProvisionedConcurrentExecutions": 0,
                "Status": "IN_PROGRESS",
                "LastModified": "2024-01-01T00:00:00+0000"
            })
        );
        let failed = ProvisionedStatus {
            requested: 3,
            allocated: 1,
            available: 1,
            state: ProvisionedState::Failed,
            reason: Some("init failed".into()),
        };
        let out = serde_json::to_value(render_provisioned(
            &cfg,
            Some(failed),
            Some("arn:x:live".into()),
        ))
        .unwrap();
        assert_eq!(out["Status"], "FAILED");
        assert_eq!(out["StatusReason"], "init failed");
        assert_eq!(out["FunctionArn"], "arn:x:live");
        assert_eq!(out["AllocatedProvisionedConcurrentExecutions"], 1);
    }

    #[test]
    fn formats_provisioned_last_modified_without_fraction() {
        let lm = provisioned_last_modified_now();
        assert_eq!(lm.len(), "2019-12-31T20:28:49+0000".len(), "{lm}");
        assert!(lm.ends_with("+0000"), "{lm}");
    }
}
