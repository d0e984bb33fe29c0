//! CloudWatch Logs' JSON 1.1 protocol: `POST /` with `X-Amz-Target: Logs_20140328.<Op>`.
//!
//! Operations: DescribeLogGroups, DescribeLogStreams, GetLogEvents, FilterLogEvents,
//! DeleteLogGroup, PutRetentionPolicy, DeleteRetentionPolicy — what `aws logs tail` and boto3's
//! `logs` client need to read function logs. Each is answered from the store's log query API.
//! Errors use the JSON 1.1 shape (`{"__type", "message"}`); an unknown target is
//! `UnknownOperationException`.
//!
//! Not for: writing logs (functions' logs come from the engine, not from PutLogEvents), metric
//! filters, subscriptions or Logs Insights.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serval_store::{
    DescribeLogStreamsQuery, FilterLogEventsQuery, GetLogEventsQuery, LogStreamOrder,
    LOG_EVENTS_MAX_LIMIT,
};

use crate::body::{read_limited, BodyError};
use crate::error::{amz_json_empty_ok, amz_json_response, parse_amz_json, LogsError};
use crate::functions::run_blocking;
use crate::logs_wire::*;
use crate::ApiState;

/// The `X-Amz-Target` prefix of CloudWatch Logs operations.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
/// Largest request body a Logs operation reads.
pub const LOGS_REQUEST_MAX_BYTES: usize = 1024 * 1024;
/// Most items one DescribeLogGroups / DescribeLogStreams page holds (AWS's limit).
pub const DESCRIBE_MAX_LIMIT: i64 = 50;
/// The `retentionInDays` values AWS accepts.
pub const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

fn constraint(field: &str, value: impl std::fmt::Display, rule: &str) -> LogsError {
    LogsError::invalid_parameter(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {rule}"
    ))
}

/// A required request member, or AWS's "must not be null" validation error.
fn required<T>(value: Option<T>, field: &str) -> Result<T, LogsError> {
    value.ok_or_else(|| constraint(field, "null", "Member must not be null"))
}

fn check_limit(field: &str, v: Option<i64>, max: i64) -> Result<Option<usize>, LogsError> {
    match v {
        None => Ok(None),
        Some(n) if n < 1 => Err(constraint(
            field,
            n,
            "Member must have value greater than or equal to 1",
        )),
        Some(n) if n > max => Err(constraint(
            field,
            n,
            &format!("Member must have value less than or equal to {max}"),
        )),
        Some(n) => Ok(Some(n as usize)),
    }
}

/// The group a request names, by `logGroupName` or `logGroupIdentifier` (a name or an ARN).
fn group_of(name: Option<String>, identifier: Option<String>) -> Result<String, LogsError> {
    match (name, identifier) {
        (Some(_), Some(_)) => Err(LogsError::invalid_parameter(
            "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
        )),
        (Some(n), None) => Ok(n),
        (None, Some(id)) => Ok(group_from_identifier(&id)),
        (None, None) => Err(LogsError::invalid_parameter(
            "Should provide either logGroupName or logGroupIdentifier.",
        )),
    }
}

/// `arn:aws:logs:<region>:<account>:log-group:<name>[:*]` → `<name>`; anything else is a name.
fn group_from_identifier(id: &str) -> String {
    if let Some(rest) = id.strip_prefix("arn:") {
        if let Some((_, name)) = rest.split_once(":log-group:") {
            return name.strip_suffix(":*").unwrap_or(name).to_owned();
        }
    }
    id.to_owned()
}

/// `POST /` with a `Logs_20140328.*` target: reads the body and runs the operation.
pub async fn dispatch(
    state: ApiState,
    operation: &str,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let bytes = read_limited(&headers, body, LOGS_REQUEST_MAX_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit, .. } => LogsError::invalid_parameter(format!(
                    "Request must be smaller than {limit} bytes"
                )),
                BodyError::Read { .. } => {
                    LogsError::client("SerializationException", "Could not read the request body")
                }
            })?;
        match operation {
            "DescribeLogGroups" => describe_log_groups(state, parse_amz_json(&bytes)?).await,
            "DescribeLogStreams" => describe_log_streams(state, parse_amz_json(&bytes)?).await,
            "GetLogEvents" => get_log_events(state, parse_amz_json(&bytes)?).await,
            "FilterLogEvents" => filter_log_events(state, parse_amz_json(&bytes)?).await,
            "DeleteLogGroup" => delete_log_group(state, parse_amz_json(&bytes)?).await,
            "PutRetentionPolicy" => put_retention_policy(state, parse_amz_json(&bytes)?).await,
            "DeleteRetentionPolicy" => {
                delete_retention_policy(state, parse_amz_json(&bytes)?).await
            }
            other => Err(unknown_operation(&format!("{TARGET_PREFIX}{other}"))),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `UnknownOperationException` for a target Serval does not serve.
pub fn unknown_operation(target: &str) -> LogsError {
    LogsError::client(
        "UnknownOperationException",
        format!("Operation {target} is not supported by Serval"),
    )
}

async fn describe_log_groups(
    state: ApiState,
    req: DescribeLogGroupsRequest,
) -> Result<Response, LogsError> {
    let limit = check_limit("limit", req.limit, DESCRIBE_MAX_LIMIT)?.unwrap_or(0);
    let st = state.clone();
    let (groups, next_token) = run_blocking(move || {
        st.store
            .describe_log_groups(
                req.log_group_name_prefix.as_deref(),
                req.next_token.as_deref(),
                limit,
            )
            .map_err(LogsError::from)
    })
    .await?;
    let region = &state.region;
    let out = DescribeLogGroupsResponse {
        log_groups: groups
            .into_iter()
            .map(|g| {
                let arn = g.arn(region);
                LogGroup {
                    log_group_arn: arn.strip_suffix(":*").unwrap_or(&arn).to_owned(),
                    arn,
                    log_group_name: g.name,
                    creation_time: g.creation_time_ms,
                    retention_in_days: g.retention_in_days,
                    metric_filter_count: 0,
                    stored_bytes: g.stored_bytes,
                    log_group_class: "STANDARD",
                }
            })
            .collect(),
        next_token,
    };
    amz_json_response(&out)
}

async fn describe_log_streams(
    state: ApiState,
    req: DescribeLogStreamsRequest,
) -> Result<Response, LogsError> {
    let group = group_of(req.log_group_name, req.log_group_identifier)?;
    let limit = check_limit("limit", req.limit, DESCRIBE_MAX_LIMIT)?.unwrap_or(0);
    let order_by = match req.order_by.as_deref() {
        None | Some("LogStreamName") => LogStreamOrder::LogStreamName,
        Some("LastEventTime") => LogStreamOrder::LastEventTime,
        Some(other) => {
            return Err(constraint(
                "orderBy",
                other,
                "Member must satisfy enum value set: [LogStreamName, LastEventTime]",
            ))
        }
    };
    let query = DescribeLogStreamsQuery {
        group: group.clone(),
        prefix: req.log_stream_name_prefix,
        order_by,
        descending: req.descending.unwrap_or(false),
        next_token: req.next_token,
        limit,
    };
    let st = state.clone();
    let (streams, next_token) = run_blocking(move || {
        st.store
            .describe_log_streams(&query)
            .map_err(LogsError::from)
    })
    .await?;
    let region = &state.region;
    let out = DescribeLogStreamsResponse {
        log_streams: streams
            .into_iter()
            .map(|s| LogStream {
                arn: s.arn(region, &group),
                log_stream_name: s.name,
                creation_time: s.creation_time_ms,
                first_event_timestamp: s.first_event_timestamp_ms,
                last_event_timestamp: s.last_event_timestamp_ms,
                last_ingestion_time: s.last_ingestion_time_ms,
                stored_bytes: s.stored_bytes,
            })
            .collect(),
        next_token,
    };
    amz_json_response(&out)
}

async fn get_log_events(state: ApiState, req: GetLogEventsRequest) -> Result<Response, LogsError> {
    let group = group_of(req.log_group_name, req.log_group_identifier)?;
    let stream = required(req.log_stream_name, "logStreamName")?;
    let limit = check_limit("limit", req.limit, LOG_EVENTS_MAX_LIMIT as i64)?;
    let query = GetLogEventsQuery {
        group,
        stream,
        start_time_ms: req.start_time,
        end_time_ms: req.end_time,
        next_token: req.next_token,
        limit,
        start_from_head: req.start_from_head.unwrap_or(false),
    };
    let st = state.clone();
    let page =
        run_blocking(move || st.store.get_log_events(&query).map_err(LogsError::from)).await?;
    let out = GetLogEventsResponse {
        events: page
            .events
            .into_iter()
            .map(|e| OutputLogEvent {
                timestamp: e.timestamp_ms,
                message: e.message,
                ingestion_time: e.ingestion_time_ms,
                request_id: e.request_id,
            })
            .collect(),
        next_forward_token: page.next_forward_token,
        next_backward_token: page.next_backward_token,
    };
    amz_json_response(&out)
}

async fn filter_log_events(
    state: ApiState,
    req: FilterLogEventsRequest,
) -> Result<Response, LogsError> {
    let group = group_of(req.log_group_name, req.log_group_identifier)?;
    let limit = check_limit("limit", req.limit, LOG_EVENTS_MAX_LIMIT as i64)?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid_parameter(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    let query = FilterLogEventsQuery {
        group,
        stream_names: req.log_stream_names,
        stream_name_prefix: req.log_stream_name_prefix,
        start_time_ms: req.start_time,
        end_time_ms: req.end_time,
        filter_pattern: req.filter_pattern.filter(|p| !p.trim().is_empty()),
        next_token: req.next_token,
        limit,
    };
    let st = state.clone();
    let page =
        run_blocking(move || st.store.filter_log_events(&query).map_err(LogsError::from)).await?;
    let out = FilterLogEventsResponse {
        events: page
            .events
            .into_iter()
            .map(|e| FilteredLogEvent {
                log_stream_name: e.log_stream_name,
                timestamp: e.timestamp_ms,
                message: e.message,
                ingestion_time: e.ingestion_time_ms,
                event_id: e.event_id,
                request_id: e.request_id,
            })
            .collect(),
        searched_log_streams: Vec::new(),
        next_token: page.next_token,
    };
    amz_json_response(&out)
}

async fn delete_log_group(
    state: ApiState,
    req: DeleteLogGroupRequest,
) -> Result<Response, LogsError> {
    let group = required(req.log_group_name, "logGroupName")?;
    let st = state.clone();
    let deleted =
        run_blocking(move || st.store.delete_log_group(&group).map_err(LogsError::from)).await?;
    if !deleted {
        return Err(LogsError::group_not_found());
    }
    Ok(amz_json_empty_ok())
}

async fn put_retention_policy(
    state: ApiState,
    req: PutRetentionPolicyRequest,
) -> Result<Response, LogsError> {
    let group = required(req.log_group_name, "logGroupName")?;
    let days = required(req.retention_in_days, "retentionInDays")?;
    let days = u32::try_from(days)
        .ok()
        .filter(|d| RETENTION_DAYS.contains(d))
        .ok_or_else(|| {
            let set: Vec<String> = RETENTION_DAYS.iter().map(u32::to_string).collect();
            constraint(
                "retentionInDays",
                days,
                &format!("Member must satisfy enum value set: [{}]", set.join(", ")),
            )
        })?;
    let st = state.clone();
    run_blocking(move || {
        st.store
            .set_log_group_retention(&group, Some(days))
            .map_err(LogsError::from)
    })
    .await?;
    Ok(amz_json_empty_ok())
}

async fn delete_retention_policy(
    state: ApiState,
    req: DeleteLogGroupRequest,
) -> Result<Response, LogsError> {
    let group = required(req.log_group_name, "logGroupName")?;
    let st = state.clone();
    run_blocking(move || {
        st.store
            .set_log_group_retention(&group, None)
            .map_err(LogsError::from)
    })
    .await?;
    Ok(amz_json_empty_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_group_names_and_arns() {
        assert_eq!(
            group_from_identifier("arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/f:*"),
            "/aws/lambda/f"
        );
        assert_eq!(
            group_from_identifier("arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/f"),
            "/aws/lambda/f"
        );
        assert_eq!(group_from_identifier("/aws/lambda/f"), "/aws/lambda/f");
        assert!(group_of(None, None).is_err());
        assert!(group_of(Some("a".into()), Some("b".into())).is_err());
    }

    #[test]
    fn checks_limits() {
        assert_eq!(check_limit("limit", None, 50).unwrap(), None);
        assert_eq!(check_limit("limit", Some(50), 50).unwrap(), Some(50));
        assert!(check_limit("limit", Some(0), 50).is_err());
        assert!(check_limit("limit", Some(51), 50).is_err());
    }
}
