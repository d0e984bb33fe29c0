//! Event-invoke configs: how asynchronous invocations of a function, version or alias are
//! retried and where their results go (Put/Update/Get/Delete/ListFunctionEventInvokeConfig(s)).
//!
//! Serval delivers results only to Lambda functions: destinations on SQS, SNS, EventBridge or
//! S3 are refused with `InvalidParameterValueException`. The API validates and stores a
//! config under the mutation lock and hands it to the engine's dispatcher.
//!
//! Not for: queueing or retrying events (the engine), the dead-letter queue of a function's
//! configuration (not supported).

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode, Uri};
use serval_model::limits::LIST_MAX_ITEMS;
use serval_model::{
    validate_event_age_secs, validate_retry_attempts, EventInvokeConfig, FunctionName, FunctionRef,
    Qualifier,
};

use crate::error::{ApiError, ErrorCode};
use crate::functions::{
    blocking, json_body, mutate, paginate, parse_max_items, query_pairs, query_value,
    read_qualified, resolve_function, resolve_unqualified, PathParam, CONTROL_REQUEST_MAX_BYTES,
};
use crate::wire::{
    Destination, DestinationConfig, EventInvokeConfigRequest, FunctionEventInvokeConfig,
    ListFunctionEventInvokeConfigsResponse,
};
use crate::ApiState;

/// Longest destination ARN (the model's `DestinationArn`).
const DESTINATION_MAX_LEN: usize = 350;

/// The function and qualifier (`?Qualifier=` or `name:q`; `$LATEST` when none) of a request.
fn target(function: &str, uri: &Uri) -> Result<(FunctionName, Qualifier), ApiError> {
    let pairs = query_pairs(uri)?;
    let (name, qualifier) = resolve_function(function, query_value(&pairs, "Qualifier"))?;
    Ok((name, qualifier.unwrap_or(Qualifier::Latest)))
}

/// AWS's `ResourceNotFoundException` for a qualifier without an event-invoke config.
fn config_not_found(name: &FunctionName, qualifier: &str, region: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ResourceNotFound,
        format!(
            "The function {}:{qualifier} doesn't have an EventInvokeConfig",
            name.arn(region)
        ),
    )
}

/// AWS's `ResourceNotFoundException` when Put/Update/List name a function, version or alias
/// that does not exist.
fn function_missing() -> ApiError {
    ApiError::new(ErrorCode::ResourceNotFound, "The function doesn't exist.")
}

/// Checks that the function and qualifier exist (the caller is on a blocking thread).
fn check_target(st: &ApiState, name: &FunctionName, qualifier: &Qualifier) -> Result<(), ApiError> {
    match read_qualified(st, name, Some(qualifier)) {
        Ok(_) => Ok(()),
        Err(e) if e.code() == ErrorCode::ResourceNotFound => Err(function_missing()),
        Err(e) => Err(e),
    }
}

/// Where a destination ARN points, by its syntax.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DestinationKind {
    /// A Lambda function (with an optional qualifier).
    Function(FunctionRef),
    /// SQS, SNS, EventBridge, S3 or Kafka: valid on AWS, not delivered by Serval.
    Unsupported,
    /// A well-formed ARN of a service AWS does not deliver to.
    Invalid,
}

/// Classifies a destination ARN; one that breaks the model's pattern is AWS's
/// `ValidationException` at `field`.
pub(crate) fn classify_destination(arn: &str, field: &str) -> Result<DestinationKind, ApiError> {
    let schema = || {
        ApiError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{arn}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: $|kafka://([^.]([a-zA-Z0-9\\-_.]{{0,248}}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:((eusc-)?[a-z]{{2}}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{{1}})?:(\\d{{12}})?:(.*)"),
        )
    };
    if arn.chars().count() > DESTINATION_MAX_LEN {
        return Err(ApiError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{arn}' at '{field}' failed to satisfy constraint: Member must have length less than or equal to {DESTINATION_MAX_LEN}"),
        ));
    }
    if let Some(topic) = arn.strip_prefix("kafka://") {
        return if topic.is_empty() || topic.starts_with('.') {
            Err(schema())
        } else {
            Ok(DestinationKind::Unsupported)
        };
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, _resource] = parts[..] else {
        return Err(schema());
    };
    let service_ok = !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    let partition_ok = partition.starts_with("aws")
        && partition[3..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    let region_ok = region.is_empty() || region.split('-').count() >= 3;
    let account_ok =
        account.is_empty() || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()));
    if prefix != "arn" || !partition_ok || !service_ok || !region_ok || !account_ok {
        return Err(schema());
    }
    Ok(match service {
        "lambda" => match FunctionRef::parse(arn) {
            Ok(f) => DestinationKind::Function(f),
            Err(_) => DestinationKind::Invalid,
        },
        "sqs" | "sns" | "events" | "s3" => DestinationKind::Unsupported,
        _ => DestinationKind::Invalid,
    })
}

/// A request's destinations, validated: `Some(None)` clears one, `None` leaves it as is.
#[derive(Debug, Default)]
struct Destinations {
    on_success: Option<Option<String>>,
    on_failure: Option<Option<String>>,
}

/// Validates the syntax of a request's `DestinationConfig` and refuses destinations Serval
/// does not deliver to; whether a destination function exists is checked under the lock.
fn parse_destinations(cfg: Option<&DestinationConfig>) -> Result<Destinations, ApiError> {
    let Some(cfg) = cfg else {
        return Ok(Destinations::default());
    };
    let member = |d: &Option<Destination>| {
        d.as_ref()
            .map(|d| d.destination.clone().filter(|s| !s.is_empty()))
    };
    let out = Destinations {
        on_success: member(&cfg.on_success),
        on_failure: member(&cfg.on_failure),
    };
    let mut invalid = false;
    for (arn, field) in [
        (&out.on_success, "destinationConfig.onSuccess.destination"),
        (&out.on_failure, "destinationConfig.onFailure.destination"),
    ] {
        let Some(Some(arn)) = arn else { continue };
        match classify_destination(arn, field)? {
            DestinationKind::Function(_) => {}
            DestinationKind::Unsupported => {
                return Err(ApiError::invalid_parameter(format!(
                    "Serval supports only Lambda function destinations for asynchronous invocation; {arn} is not a function ARN"
                )))
            }
            DestinationKind::Invalid => invalid = true,
        }
    }
    if invalid {
        let part = |name: &str, d: &Option<Option<String>>| match d {
            Some(Some(arn)) => format!("{name}(destination={arn})"),
            _ => "null".to_owned(),
        };
        return Err(ApiError::invalid_parameter(format!(
            "The provided destination config DestinationConfig(onSuccess={}, onFailure={}) is invalid.",
            part("OnSuccess", &out.on_success),
            part("OnFailure", &out.on_failure)
        )));
    }
    Ok(out)
}

/// Checks that destination functions exist and are not the function itself (AWS's rules);
/// the caller holds the mutation lock.
fn check_destination_functions(
    st: &ApiState,
    name: &FunctionName,
    destinations: &Destinations,
) -> Result<(), ApiError> {
    for arn in [&destinations.on_success, &destinations.on_failure]
        .into_iter()
        .filter_map(|d| d.as_ref().and_then(|d| d.as_deref()))
    {
        let Ok(fref) = FunctionRef::parse(arn) else {
            continue;
        };
        if &fref.name == name {
            return Err(ApiError::invalid_parameter(
                "You can't specify the function as a destination for itself.",
            ));
        }
        if read_qualified(st, &fref.name, fref.qualifier.as_ref()).is_err() {
            return Err(ApiError::invalid_parameter(format!(
                "The destination ARN {arn} is invalid."
            )));
        }
    }
    Ok(())
}

/// A Put or Update request, validated.
struct Settings {
    retries: Option<u32>,
    max_age_secs: Option<u32>,
    destinations: Destinations,
}

impl Settings {
    fn from_request(req: EventInvokeConfigRequest) -> Result<Self, ApiError> {
        if req.maximum_retry_attempts.is_none()
            && req.maximum_event_age_in_seconds.is_none()
            && req.destination_config.is_none()
        {
            return Err(ApiError::invalid_parameter(
                "You must specify at least one of error handling or destination setting.",
            ));
        }
        Ok(Settings {
            retries: req
                .maximum_retry_attempts
                .map(validate_retry_attempts)
                .transpose()?,
            max_age_secs: req
                .maximum_event_age_in_seconds
                .map(validate_event_age_secs)
                .transpose()?,
            destinations: parse_destinations(req.destination_config.as_ref())?,
        })
    }

    /// `current` with the given members changed (UpdateFunctionEventInvokeConfig).
    fn merge_into(self, mut current: EventInvokeConfig) -> EventInvokeConfig {
        if let Some(v) = self.retries {
            current.maximum_retry_attempts = Some(v);
        }
        if let Some(v) = self.max_age_secs {
            current.maximum_event_age_secs = Some(v);
        }
        if let Some(d) = self.destinations.on_success {
            current.on_success = d;
        }
        if let Some(d) = self.destinations.on_failure {
            current.on_failure = d;
        }
        current.last_modified_ms = now_ms();
        current
    }

    /// A whole new config (PutFunctionEventInvokeConfig): absent members are unset.
    fn into_config(self, name: FunctionName, qualifier: String) -> EventInvokeConfig {
        EventInvokeConfig {
            function: name,
            qualifier,
            maximum_retry_attempts: self.retries,
            maximum_event_age_secs: self.max_age_secs,
            on_success: self.destinations.on_success.flatten(),
            on_failure: self.destinations.on_failure.flatten(),
            last_modified_ms: now_ms(),
        }
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Put (`replace: true`) or Update one config.
async fn write_config(
    state: ApiState,
    function: String,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    replace: bool,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&function, &uri)?;
    let operation = if replace {
        "PutFunctionEventInvokeConfig"
    } else {
        "UpdateFunctionEventInvokeConfig"
    };
    let req: EventInvokeConfigRequest =
        json_body(&headers, body, CONTROL_REQUEST_MAX_BYTES, operation).await?;
    let settings = Settings::from_request(req)?;
    let cfg = mutate(&state, move |st| {
        check_target(st, &name, &qualifier)?;
        let q = qualifier.to_string();
        let cfg = if replace {
            check_destination_functions(st, &name, &settings.destinations)?;
            settings.into_config(name.clone(), q)
        } else {
            let current = st
                .store
                .get_event_invoke_config(&name, &q)?
                .ok_or_else(|| config_not_found(&name, &q, &st.region))?;
            check_destination_functions(st, &name, &settings.destinations)?;
            settings.merge_into(current)
        };
        st.store.put_event_invoke_config(&cfg)?;
        st.engine.set_event_invoke_config(cfg.clone());
        tracing::info!(function = %name, qualifier = %cfg.qualifier, "api: set event invoke config");
        Ok(cfg)
    })
    .await?;
    Ok(Json(FunctionEventInvokeConfig::from_config(&cfg, &state.region)).into_response())
}

/// `PUT /2019-09-25/functions/{FunctionName}/event-invoke-config`: replaces the config;
/// absent members are unset.
pub async fn put_event_invoke_config(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    write_config(state, function, uri, headers, body, true).await
}

/// `POST /2019-09-25/functions/{FunctionName}/event-invoke-config`: changes only the given
/// members (`OnSuccess` and `OnFailure` each count as one) of an existing config.
pub async fn update_event_invoke_config(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    write_config(state, function, uri, headers, body, false).await
}

/// `GET /2019-09-25/functions/{FunctionName}/event-invoke-config`.
pub async fn get_event_invoke_config(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&function, &uri)?;
    let st = state.clone();
    let cfg = blocking(move || {
        let q = qualifier.to_string();
        st.store
            .get_event_invoke_config(&name, &q)?
            .ok_or_else(|| config_not_found(&name, &q, &st.region))
    })
    .await?;
    Ok(Json(FunctionEventInvokeConfig::from_config(&cfg, &state.region)).into_response())
}

/// `DELETE /2019-09-25/functions/{FunctionName}/event-invoke-config`: 204; 404 when there
/// is no config.
pub async fn delete_event_invoke_config(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&function, &uri)?;
    mutate(&state, move |st| {
        let q = qualifier.to_string();
        if !st.store.delete_event_invoke_config(&name, &q)? {
            return Err(config_not_found(&name, &q, &st.region));
        }
        st.engine.remove_event_invoke_config(&name, &q);
        tracing::info!(function = %name, qualifier = %q, "api: removed event invoke config");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /2019-09-25/functions/{FunctionName}/event-invoke-config/list`: in qualifier order;
/// pages of at most 50.
pub async fn list_event_invoke_configs(
    State(state): State<ApiState>,
    PathParam(function): PathParam,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = resolve_unqualified(&function)?;
    let pairs = query_pairs(&uri)?;
    let max_items = parse_max_items(&pairs, 50, LIST_MAX_ITEMS)?;
    let after = query_value(&pairs, "Marker")
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let st = state.clone();
    let mut configs = blocking(move || {
        if st.store.get_function(&name)?.is_none() {
            return Err(function_missing());
        }
        Ok(st.store.list_event_invoke_configs(&name)?)
    })
    .await?;
    configs.sort_by(|a, b| a.qualifier.cmp(&b.qualifier));
    let (page, next_marker) = paginate(
        configs,
        |c: &EventInvokeConfig| c.qualifier.clone(),
        after.as_ref(),
        max_items,
        |c| c.qualifier.clone(),
    );
    let out = ListFunctionEventInvokeConfigsResponse {
        function_event_invoke_configs: page
            .iter()
            .map(|c| FunctionEventInvokeConfig::from_config(c, &state.region))
            .collect(),
        next_marker,
    };
    Ok(Json(out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELD: &str = "destinationConfig.onFailure.destination";

    #[test]
    fn classifies_destination_arns() {
        let f = classify_destination(
            "arn:aws:lambda:us-east-1:000000000000:function:d:live",
            FIELD,
        )
        .unwrap();
        let DestinationKind::Function(f) = f else {
            panic!("{f:?}")
        };
        assert_eq!(f.name.as_str(), "d");
        assert_eq!(f.qualifier, Some(Qualifier::Alias("live".into())));
        for arn in [
            "arn:aws:sqs:us-east-1:000000000000:q",
            "arn:aws:sns:us-east-1:000000000000:t",
            "arn:aws:events:us-east-1:000000000000:event-bus/default",
            "arn:aws:s3:::bucket",
            "kafka://topic",
        ] {
            assert_eq!(
                classify_destination(arn, FIELD).unwrap(),
                DestinationKind::Unsupported,
                "{arn}"
            );
        }
        assert_eq!(
            classify_destination("arn:aws:dynamodb:us-east-1:000000000000:table/t", FIELD).unwrap(),
            DestinationKind::Invalid
        );
        assert_eq!(
            classify_destination("arn:aws:lambda:us-east-1:000000000000:layer:l:1", FIELD).unwrap(),
            DestinationKind::Invalid
        );
        for bad in [
            "not-an-arn",
            "arn:aws:lambda",
            "arn:gcp:sqs:us-east-1:000000000000:q",
        ] {
            let err = classify_destination(bad, FIELD).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Validation, "{bad}");
            assert!(err.message().contains(FIELD), "{}", err.message());
        }
    }

    #[test]
    fn refuses_destinations_serval_does_not_deliver_to() {
        let cfg = DestinationConfig {
            on_success: None,
            on_failure: Some(Destination {
                destination: Some("arn:aws:sqs:us-east-1:000000000000:q".into()),
            }),
        };
        let err = parse_destinations(Some(&cfg)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterValue);
        assert!(err.message().contains("only Lambda function destinations"));
        let cfg = DestinationConfig {
            on_success: Some(Destination {
                destination: Some("arn:aws:dynamodb:us-east-1:000000000000:table/t".into()),
            }),
            on_failure: None,
        };
        assert_eq!(
            parse_destinations(Some(&cfg)).unwrap_err().message(),
            "The provided destination config DestinationConfig(onSuccess=OnSuccess(destination=arn:aws:dynamodb:us-east-1:000000000000:table/t), onFailure=null) is invalid."
        );
    }

    #[test]
    fn update_changes_only_given_members() {
        let current = EventInvokeConfig {
            function: FunctionName::parse("f").unwrap(),
            qualifier: "$LATEST".into(),
            maximum_retry_attempts: Some(1),
            maximum_event_age_secs: Some(600),
            on_success: Some("arn:aws:lambda:us-east-1:000000000000:function:ok".into()),
            on_failure: Some("arn:aws:lambda:us-east-1:000000000000:function:ko".into()),
            last_modified_ms: 0,
        };
        let req: EventInvokeConfigRequest = serde_json::from_value(serde_json::json!({
            "MaximumRetryAttempts": 0,
            "DestinationConfig": {"OnFailure": {}}
        }))
        .unwrap();
        let merged = Settings::from_request(req)
            .unwrap()
            .merge_into(current.clone());
        assert_eq!(merged.maximum_retry_attempts, Some(0));
        assert_eq!(merged.maximum_event_age_secs, Some(600));
        assert_eq!(merged.on_success, current.on_success);
        assert_eq!(merged.on_failure, None);
        assert!(merged.last_modified_ms > 0);

        let empty: EventInvokeConfigRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(
            Settings::from_request(empty).err().unwrap().message(),
            "You must specify at least one of error handling or destination setting."
        );
    }

    #[test]
    fn renders_event_invoke_config_like_aws() {
        let cfg = EventInvokeConfig {
            function: FunctionName::parse("f").unwrap(),
            qualifier: "$LATEST".into(),
            maximum_retry_attempts: Some(1),
            maximum_event_age_secs: None,
            on_success: None,
            on_failure: Some("arn:aws:lambda:us-east-1:000000000000:function:d".into()),
            last_modified_ms: 1_700_000_000_123,
        };
        let out = serde_json::to_value(FunctionEventInvokeConfig::from_config(&cfg, "us-east-1"))
            .unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "LastModified": 1_700_000_000.123,
                "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
                "MaximumRetryAttempts": 1,
                "DestinationConfig": {
                    "OnSuccess": {},
                    "OnFailure": {"Destination": "arn:aws:lambda:us-east-1:000000000000:function:d"}
                }
            })
        );
    }
}
