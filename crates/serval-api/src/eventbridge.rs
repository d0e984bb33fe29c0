//! EventBridge (`AWSEvents.*`, JSON 1.1 on `POST /`): scheduled rules and their targets.
//!
//! Operations: PutRule, DescribeRule, ListRules, EnableRule, DisableRule, DeleteRule,
//! PutTargets, ListTargetsByRule, RemoveTargets, ListRuleNamesByTarget, TagResource,
//! UntagResource, ListTagsForResource — what `boto3.client("events")` and `aws events` need to
//! run Lambda functions on a schedule. Names, ids and lengths are checked as botocore's model
//! states them; errors use the JSON 1.1 shape (`{"__type", "message"}`, status 400, 500 for
//! `InternalException`) with AWS's wording where AWS's is known.
//!
//! Every mutation follows the crate's protocol: under [`crate::ApiState::mutations`], on a
//! blocking thread, read, check, write the store, then tell the scheduler
//! ([`serval_events::Schedules`]) the rule's whole new state.
//!
//! Where Serval differs from AWS (see also `docs/compat.md`):
//! - only the `default` event bus exists (by name or ARN); any other is `ResourceNotFound`;
//! - rules must have a `ScheduleExpression`: an `EventPattern` is refused (Serval has no
//!   PutEvents yet);
//! - targets must be Lambda functions (ARN, optionally qualified) with an optional constant
//!   `Input`; `InputPath`, `InputTransformer`, `RetryPolicy`, `DeadLetterConfig` and the
//!   service-specific parameters are refused, as is the whole request, rather than reported
//!   per entry in `FailedEntries`;
//! - `DeleteRule` with `Force` deletes a rule together with its targets (AWS only uses
//!   `Force` for managed rules and always refuses a rule with targets);
//! - `rate(...)` rules count from their creation, their last enabling or the last change of
//!   their expression; a fire's event `time` is the due time.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serval_events::schedule::{ScheduleError, ScheduleExpression};
use serval_model::{
    parse_event_bus_name, validate_events_role_arn, validate_rule_description, validate_rule_tags,
    validate_schedule_expression_len, validate_target_arn, validate_target_input, Rule, RuleName,
    RuleState, RuleTarget, TargetId, ValidationError, DEFAULT_EVENT_BUS, EVENTS_ARN_MAX_LEN,
    RULES_MAX, RULE_TARGETS_MAX,
};
use serval_store::StoreError;

use crate::body::{read_limited, BodyError};
use crate::error::{
    amz_json_empty_ok, amz_json_response, chain, parse_amz_json, AmzJsonError, AmzJsonService,
};
use crate::functions::{run_blocking, run_mutation};
use crate::ApiState;

/// `X-Amz-Target` prefix of EventBridge operations.
pub const TARGET_PREFIX: &str = "AWSEvents.";
/// Largest request body an EventBridge operation reads (100 targets of 8 KB input fit).
pub const EVENTS_REQUEST_MAX_BYTES: usize = 1024 * 1024;
/// Most items one list page holds, and the page size when `Limit` is not given.
pub const LIST_LIMIT_MAX: i64 = 100;
/// Most entries one PutTargets or RemoveTargets request holds (the API model's bound).
pub const TARGET_ENTRIES_MAX: usize = 100;

/// Target members that change what is delivered or how: Serval refuses them rather than
/// ignoring them.
const UNSUPPORTED_TARGET_MEMBERS: &[&str] = &[
    "InputPath",
    "InputTransformer",
    "KinesisParameters",
    "RunCommandParameters",
    "EcsParameters",
    "BatchParameters",
    "SqsParameters",
    "HttpParameters",
    "RedshiftDataParameters",
    "SageMakerPipelineParameters",
    "DeadLetterConfig",
    "RetryPolicy",
    "AppSyncParameters",
];

// ---------------------------------------------------------------------------------------------
// Errors.

/// EventBridge (`AWSEvents.*`) as a JSON 1.1 service.
#[derive(Debug)]
pub(crate) enum EventBridge {}

impl AmzJsonService for EventBridge {
    const LOG_NAME: &'static str = "eventbridge api";
    const SERVICE_ERROR: &'static str = "InternalException";
}

/// A failed EventBridge call, rendered as `{"__type": "<Name>", "message": "..."}`; a platform
/// failure is `InternalException` (500).
pub(crate) type EventsError = AmzJsonError<EventBridge>;

impl EventsError {
    fn validation(message: impl Into<String>) -> Self {
        Self::client("ValidationException", message)
    }

    fn rule_not_found(name: &RuleName) -> Self {
        Self::client(
            "ResourceNotFoundException",
            format!("Rule {name} does not exist on EventBus {DEFAULT_EVENT_BUS}."),
        )
    }
}

impl From<ValidationError> for EventsError {
    fn from(err: ValidationError) -> Self {
        EventsError::validation(err.to_string())
    }
}

impl From<StoreError> for EventsError {
    fn from(err: StoreError) -> Self {
        EventsError::service("rule store failed", err)
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (botocore's model: PascalCase). Requests ignore members Serval does not know,
// as AWS does; numbers arrive as i64 so out-of-range values get AWS's wording.

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TagWire {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TagOut {
    key: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PutRuleRequest {
    name: Option<String>,
    schedule_expression: Option<String>,
    event_pattern: Option<String>,
    state: Option<String>,
    description: Option<String>,
    role_arn: Option<String>,
    tags: Option<Vec<TagWire>>,
    event_bus_name: Option<String>,
}

/// DescribeRule, EnableRule, DisableRule and DeleteRule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RuleRequest {
    name: Option<String>,
    event_bus_name: Option<String>,
    force: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListRulesRequest {
    name_prefix: Option<String>,
    event_bus_name: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TargetWire {
    id: Option<String>,
    arn: Option<String>,
    input: Option<String>,
    role_arn: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PutTargetsRequest {
    rule: Option<String>,
    event_bus_name: Option<String>,
    targets: Option<Vec<TargetWire>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListTargetsByRuleRequest {
    rule: Option<String>,
    event_bus_name: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RemoveTargetsRequest {
    rule: Option<String>,
    event_bus_name: Option<String>,
    ids: Option<Vec<String>>,
    force: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListRuleNamesByTargetRequest {
    target_arn: Option<String>,
    event_bus_name: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TagResourceRequest {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<Vec<TagWire>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UntagResourceRequest {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    #[serde(rename = "TagKeys")]
    tag_keys: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListTagsForResourceRequest {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
}

/// A rule as DescribeRule and ListRules render it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RuleOut {
    name: String,
    arn: String,
    schedule_expression: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    event_bus_name: &'static str,
    /// DescribeRule only.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TargetOut {
    id: String,
    arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
}

fn rule_out(rule: Rule, region: &str, describe: bool) -> RuleOut {
    RuleOut {
        arn: rule.arn(region),
        name: rule.name.to_string(),
        schedule_expression: rule.schedule_expression,
        state: rule.state.as_str(),
        description: rule.description,
        role_arn: rule.role_arn,
        event_bus_name: DEFAULT_EVENT_BUS,
        created_by: describe.then_some(serval_model::ACCOUNT_ID),
    }
}

fn target_out(t: RuleTarget) -> TargetOut {
    TargetOut {
        id: t.id.to_string(),
        arn: t.arn,
        input: t.input,
        role_arn: t.role_arn,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, EventsError> {
    serde_json::to_value(value).map_err(|e| EventsError::service("failed to encode response", e))
}

/// A required request member, or AWS's "must not be null" validation error.
fn required<T>(value: Option<T>, field: &str) -> Result<T, EventsError> {
    value.ok_or_else(|| {
        EventsError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: \
             Member must not be null"
        ))
    })
}

fn constraint(field: &str, value: impl std::fmt::Display, rule: &str) -> EventsError {
    EventsError::validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: \
         {rule}"
    ))
}

/// Checks the number of entries of a list member.
fn check_entries(field: &str, len: usize, max: usize) -> Result<(), EventsError> {
    if len == 0 {
        return Err(constraint(
            field,
            "[]",
            "Member must have length greater than or equal to 1",
        ));
    }
    if len > max {
        return Err(constraint(
            field,
            format!("[{len} entries]"),
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// A list page size: `Limit` if given (1 to 100), else 100.
fn page_size(limit: Option<i64>) -> Result<usize, EventsError> {
    match limit {
        None => Ok(LIST_LIMIT_MAX as usize),
        Some(n) if n < 1 => Err(constraint(
            "limit",
            n,
            "Member must have value greater than or equal to 1",
        )),
        Some(n) if n > LIST_LIMIT_MAX => Err(constraint(
            "limit",
            n,
            &format!("Member must have value less than or equal to {LIST_LIMIT_MAX}"),
        )),
        Some(n) => Ok(n as usize),
    }
}

/// The `NextToken` of a page that ended at `last` (a rule name or target id).
fn next_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

/// Where a `NextToken` says the next page starts (after this name or id).
fn token_position(token: Option<String>) -> Result<Option<String>, EventsError> {
    let Some(token) = token else {
        return Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|s| !s.is_empty())
        .map(Some)
        .ok_or_else(|| EventsError::validation("The NextToken provided is invalid."))
}

/// Checks `EventBusName`: only the default bus exists.
fn check_bus(bus: Option<&str>) -> Result<(), EventsError> {
    let Some(bus) = bus else {
        return Ok(());
    };
    let name = parse_event_bus_name(bus)?;
    if name != DEFAULT_EVENT_BUS {
        return Err(EventsError::client(
            "ResourceNotFoundException",
            format!("Event bus {name} does not exist."),
        ));
    }
    Ok(())
}

fn tags_map(tags: Vec<TagWire>, into: &mut BTreeMap<String, String>) -> Result<(), EventsError> {
    for tag in tags {
        let key = required(tag.key, "tags.member.key")?;
        let value = required(tag.value, "tags.member.value")?;
        into.insert(key, value);
    }
    validate_rule_tags(into)?;
    Ok(())
}

/// The rule a `ResourceARN` names: `arn:aws:events:<region>:<account>:rule/<name>`.
fn rule_of_arn(arn: &str) -> Result<RuleName, EventsError> {
    let not_found = || {
        EventsError::client(
            "ResourceNotFoundException",
            format!("Resource {arn} does not exist."),
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, _, _, resource] = parts[..] else {
        return Err(EventsError::validation(format!(
            "Parameter {arn} is not valid. Reason: Provided Arn is not in correct format."
        )));
    };
    if prefix != "arn" || !partition.starts_with("aws") || service != "events" {
        return Err(not_found());
    }
    let name = resource.strip_prefix("rule/").ok_or_else(not_found)?;
    // `rule/<bus>/<name>` is a rule on another bus, which cannot exist.
    RuleName::parse_field(name, "resourceARN").map_err(|_| not_found())
}

/// Reads a rule that must exist.
fn existing_rule(state: &ApiState, name: &RuleName) -> Result<Rule, EventsError> {
    state
        .store
        .get_rule(name)?
        .ok_or_else(|| EventsError::rule_not_found(name))
}

/// Tells the scheduler a rule's stored state, with its targets read back (the caller holds the
/// mutation lock and has written the store). The change is stored, so a failed read-back does
/// not fail the call: it is logged, and the scheduler keeps the rule's previous state until the
/// rule changes again or Serval restarts (start-up loads every rule).
fn reschedule(state: &ApiState, rule: Rule) {
    match state.store.list_rule_targets(&rule.name) {
        Ok(targets) => state.schedules.put_rule(rule, targets),
        Err(error) => tracing::error!(
            rule = %rule.name,
            error = %chain(&error),
            "failed to read back rule {} for the scheduler; it keeps the rule's previous state",
            rule.name
        ),
    }
}

/// Milliseconds since the epoch on the scheduler's clock (rate anchors).
fn schedule_now_ms(state: &ApiState) -> i64 {
    i64::try_from(state.schedules.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

/// Runs one EventBridge operation.
pub(crate) async fn dispatch(
    state: ApiState,
    op: &str,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let bytes = read_limited(&headers, body, EVENTS_REQUEST_MAX_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit, .. } => {
                    EventsError::validation(format!("Request must be smaller than {limit} bytes"))
                }
                BodyError::Read { .. } => {
                    EventsError::client("SerializationException", "Could not read the request body")
                }
            })?;
        match op {
            "PutRule" => put_rule(state, parse_amz_json(&bytes)?).await,
            "DescribeRule" => describe_rule(state, parse_amz_json(&bytes)?).await,
            "ListRules" => list_rules(state, parse_amz_json(&bytes)?).await,
            "EnableRule" => set_state(state, parse_amz_json(&bytes)?, RuleState::Enabled).await,
            "DisableRule" => set_state(state, parse_amz_json(&bytes)?, RuleState::Disabled).await,
            "DeleteRule" => delete_rule(state, parse_amz_json(&bytes)?).await,
            "PutTargets" => put_targets(state, parse_amz_json(&bytes)?).await,
            "ListTargetsByRule" => list_targets(state, parse_amz_json(&bytes)?).await,
            "RemoveTargets" => remove_targets(state, parse_amz_json(&bytes)?).await,
            "ListRuleNamesByTarget" => {
                list_rule_names_by_target(state, parse_amz_json(&bytes)?).await
            }
            "TagResource" => tag_resource(state, parse_amz_json(&bytes)?).await,
            "UntagResource" => untag_resource(state, parse_amz_json(&bytes)?).await,
            "ListTagsForResource" => list_tags(state, parse_amz_json(&bytes)?).await,
            other => Err(EventsError::client(
                "UnknownOperationException",
                format!("Operation {TARGET_PREFIX}{other} is not supported by Serval"),
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

// ---------------------------------------------------------------------------------------------
// Rules.

async fn put_rule(state: ApiState, req: PutRuleRequest) -> Result<Response, EventsError> {
    let name = RuleName::parse(&required(req.name, "name")?)?;
    check_bus(req.event_bus_name.as_deref())?;
    let expression = match (req.schedule_expression, req.event_pattern) {
        (None, None) => {
            return Err(EventsError::validation(
                "Parameter(s) EventPattern or ScheduleExpression must be specified.",
            ))
        }
        (_, Some(_)) => {
            return Err(EventsError::validation(
                "EventPattern is not supported by Serval: rules run on a ScheduleExpression \
                 only (there is no PutEvents to match events from)",
            ))
        }
        (Some(expression), None) => expression,
    };
    validate_schedule_expression_len(&expression)?;
    if let Err(error) = ScheduleExpression::parse(&expression) {
        tracing::debug!(rule = %name, %error, "PutRule: invalid schedule expression");
        return Err(EventsError::validation(ScheduleError::AWS_MESSAGE));
    }
    let rule_state = match req.state.as_deref() {
        None => RuleState::Enabled,
        Some(s) => RuleState::parse(s)?,
    };
    if let Some(d) = &req.description {
        validate_rule_description(d)?;
    }
    if let Some(r) = &req.role_arn {
        validate_events_role_arn(r)?;
    }
    let mut tags = BTreeMap::new();
    tags_map(req.tags.unwrap_or_default(), &mut tags)?;
    let description = req.description;
    let role_arn = req.role_arn;
    let arn = run_mutation(&state, move |st| -> Result<_, EventsError> {
        let existing = st.store.get_rule(&name)?;
        let now_ms = schedule_now_ms(st);
        let (anchor_ms, tags) = match existing {
            // AWS ignores the tags of a PutRule that updates a rule.
            Some(old) => {
                let restarts = old.schedule_expression != expression
                    || (!old.state.is_enabled() && rule_state.is_enabled());
                (if restarts { now_ms } else { old.anchor_ms }, old.tags)
            }
            None => {
                let rules = st.store.count_rules()?;
                if rules >= RULES_MAX {
                    return Err(EventsError::client(
                        "LimitExceededException",
                        format!(
                            "The requested resource exceeds the maximum number allowed: event \
                             bus {DEFAULT_EVENT_BUS} would have {} rules, and an event bus may \
                             have at most {RULES_MAX}.",
                            rules + 1
                        ),
                    ));
                }
                (now_ms, tags)
            }
        };
        let rule = Rule {
            name,
            schedule_expression: expression,
            state: rule_state,
            description,
            role_arn,
            tags,
            anchor_ms,
        };
        st.store.put_rule(&rule)?;
        let arn = rule.arn(&st.region);
        reschedule(st, rule);
        Ok(arn)
    })
    .await?;
    amz_json_response(&serde_json::json!({ "RuleArn": arn }))
}

async fn describe_rule(state: ApiState, req: RuleRequest) -> Result<Response, EventsError> {
    let name = RuleName::parse(&required(req.name, "name")?)?;
    check_bus(req.event_bus_name.as_deref())?;
    let st = state.clone();
    let rule = run_blocking(move || existing_rule(&st, &name)).await?;
    amz_json_response(&to_json(&rule_out(rule, &state.region, true))?)
}

async fn list_rules(state: ApiState, req: ListRulesRequest) -> Result<Response, EventsError> {
    let prefix = req
        .name_prefix
        .map(|p| RuleName::parse_field(&p, "namePrefix").map(String::from))
        .transpose()?;
    check_bus(req.event_bus_name.as_deref())?;
    let limit = page_size(req.limit)?;
    let after = token_position(req.next_token)?;
    let st = state.clone();
    let mut rules = run_blocking(move || {
        st.store
            .list_rules(prefix.as_deref(), after.as_deref(), limit + 1)
            .map_err(EventsError::from)
    })
    .await?;
    let next = if rules.len() > limit {
        rules.truncate(limit);
        rules.last().map(|r| next_token(r.name.as_str()))
    } else {
        None
    };
    let rules: Vec<RuleOut> = rules
        .into_iter()
        .map(|r| rule_out(r, &state.region, false))
        .collect();
    let mut out = serde_json::json!({ "Rules": to_json(&rules)? });
    if let Some(token) = next {
        out["NextToken"] = token.into();
    }
    amz_json_response(&out)
}

async fn set_state(
    state: ApiState,
    req: RuleRequest,
    to: RuleState,
) -> Result<Response, EventsError> {
    let name = RuleName::parse(&required(req.name, "name")?)?;
    check_bus(req.event_bus_name.as_deref())?;
    run_mutation(&state, move |st| -> Result<_, EventsError> {
        let mut rule = existing_rule(st, &name)?;
        if rule.state == to {
            return Ok(());
        }
        if to.is_enabled() && !rule.state.is_enabled() {
            // A rate counts from when the rule was enabled.
            rule.anchor_ms = schedule_now_ms(st);
        }
        rule.state = to;
        st.store.put_rule(&rule)?;
        reschedule(st, rule);
        Ok(())
    })
    .await?;
    Ok(amz_json_empty_ok())
}

async fn delete_rule(state: ApiState, req: RuleRequest) -> Result<Response, EventsError> {
    let name = RuleName::parse(&required(req.name, "name")?)?;
    check_bus(req.event_bus_name.as_deref())?;
    let force = req.force.unwrap_or(false);
    run_mutation(&state, move |st| {
        // Deleting a rule that does not exist succeeds, as on AWS.
        if st.store.get_rule(&name)?.is_none() {
            return Ok(());
        }
        if !force && !st.store.list_rule_targets(&name)?.is_empty() {
            return Err(EventsError::validation(
                "Rule can't be deleted since it has targets.",
            ));
        }
        st.store.delete_rule(&name)?;
        st.schedules.remove_rule(&name);
        Ok(())
    })
    .await?;
    Ok(amz_json_empty_ok())
}

// ---------------------------------------------------------------------------------------------
// Targets.

/// Validates one PutTargets entry.
fn target_of(wire: TargetWire) -> Result<RuleTarget, EventsError> {
    let id = TargetId::parse_field(
        &required(wire.id, "targets.member.id")?,
        "targets.member.id",
    )?;
    if let Some(member) = UNSUPPORTED_TARGET_MEMBERS
        .iter()
        .find(|m| wire.other.get(**m).is_some_and(|v| !v.is_null()))
    {
        return Err(EventsError::validation(format!(
            "{member} is not supported by Serval (target {id}): targets take Id, Arn, Input and \
             RoleArn"
        )));
    }
    let arn = required(wire.arn, "targets.member.arn")?;
    validate_target_arn(&arn)?;
    if let Some(input) = &wire.input {
        validate_target_input(input)?;
        if serde_json::from_str::<serde::de::IgnoredAny>(input).is_err() {
            return Err(EventsError::validation(format!(
                "Input for target {id} is not a valid JSON text."
            )));
        }
    }
    if let Some(r) = &wire.role_arn {
        validate_events_role_arn(r)?;
    }
    Ok(RuleTarget {
        id,
        arn,
        input: wire.input,
        role_arn: wire.role_arn,
    })
}

fn no_failures() -> Result<Response, EventsError> {
    amz_json_response(&serde_json::json!({ "FailedEntryCount": 0, "FailedEntries": [] }))
}

async fn put_targets(state: ApiState, req: PutTargetsRequest) -> Result<Response, EventsError> {
    let rule = RuleName::parse_field(&required(req.rule, "rule")?, "rule")?;
    check_bus(req.event_bus_name.as_deref())?;
    let wires = required(req.targets, "targets")?;
    check_entries("targets", wires.len(), TARGET_ENTRIES_MAX)?;
    // By id: a later entry with the same id replaces an earlier one.
    let mut targets: BTreeMap<TargetId, RuleTarget> = BTreeMap::new();
    for wire in wires {
        let target = target_of(wire)?;
        targets.insert(target.id.clone(), target);
    }
    let targets: Vec<RuleTarget> = targets.into_values().collect();
    run_mutation(&state, move |st| {
        let stored = existing_rule(st, &rule)?;
        let existing = st.store.list_rule_targets(&rule)?;
        let added = targets
            .iter()
            .filter(|t| !existing.iter().any(|e| e.id == t.id))
            .count();
        if existing.len() + added > RULE_TARGETS_MAX {
            return Err(EventsError::client(
                "LimitExceededException",
                format!(
                    "The requested resource exceeds the maximum number allowed: rule {rule} \
                     would have {} targets, and a rule may have at most {RULE_TARGETS_MAX}.",
                    existing.len() + added
                ),
            ));
        }
        if !st.store.put_rule_targets(&rule, &targets)? {
            return Err(EventsError::rule_not_found(&rule));
        }
        reschedule(st, stored);
        Ok(())
    })
    .await?;
    no_failures()
}

async fn list_targets(
    state: ApiState,
    req: ListTargetsByRuleRequest,
) -> Result<Response, EventsError> {
    let rule = RuleName::parse_field(&required(req.rule, "rule")?, "rule")?;
    check_bus(req.event_bus_name.as_deref())?;
    let limit = page_size(req.limit)?;
    let after = token_position(req.next_token)?;
    let st = state.clone();
    let targets = run_blocking(move || {
        existing_rule(&st, &rule)?;
        st.store.list_rule_targets(&rule).map_err(EventsError::from)
    })
    .await?;
    let mut page: Vec<RuleTarget> = targets
        .into_iter()
        .filter(|t| after.as_deref().is_none_or(|a| t.id.as_str() > a))
        .take(limit + 1)
        .collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|t| next_token(t.id.as_str()))
    } else {
        None
    };
    let page: Vec<TargetOut> = page.into_iter().map(target_out).collect();
    let mut out = serde_json::json!({ "Targets": to_json(&page)? });
    if let Some(token) = next {
        out["NextToken"] = token.into();
    }
    amz_json_response(&out)
}

async fn remove_targets(
    state: ApiState,
    req: RemoveTargetsRequest,
) -> Result<Response, EventsError> {
    let rule = RuleName::parse_field(&required(req.rule, "rule")?, "rule")?;
    check_bus(req.event_bus_name.as_deref())?;
    let _ = req.force; // no managed rules in Serval
    let ids = required(req.ids, "ids")?;
    check_entries("ids", ids.len(), TARGET_ENTRIES_MAX)?;
    let ids = ids
        .iter()
        .map(|id| TargetId::parse_field(id, "ids.member"))
        .collect::<Result<Vec<_>, _>>()?;
    run_mutation(&state, move |st| -> Result<_, EventsError> {
        let stored = existing_rule(st, &rule)?;
        st.store.remove_rule_targets(&rule, &ids)?;
        reschedule(st, stored);
        Ok(())
    })
    .await?;
    no_failures()
}

async fn list_rule_names_by_target(
    state: ApiState,
    req: ListRuleNamesByTargetRequest,
) -> Result<Response, EventsError> {
    let target_arn = required(req.target_arn, "targetArn")?;
    if target_arn.is_empty() || target_arn.len() > EVENTS_ARN_MAX_LEN {
        return Err(constraint(
            "targetArn",
            &target_arn,
            "Member must have length between 1 and 1600",
        ));
    }
    check_bus(req.event_bus_name.as_deref())?;
    let limit = page_size(req.limit)?;
    let after = token_position(req.next_token)?;
    let st = state.clone();
    let all = run_blocking(move || st.store.all_rules().map_err(EventsError::from)).await?;
    let mut names: Vec<String> = all
        .into_iter()
        .filter(|(rule, targets)| {
            after.as_deref().is_none_or(|a| rule.name.as_str() > a)
                && targets.iter().any(|t| t.arn == target_arn)
        })
        .map(|(rule, _)| rule.name.to_string())
        .take(limit + 1)
        .collect();
    let next = if names.len() > limit {
        names.truncate(limit);
        names.last().map(|n| next_token(n))
    } else {
        None
    };
    let mut out = serde_json::json!({ "RuleNames": names });
    if let Some(token) = next {
        out["NextToken"] = token.into();
    }
    amz_json_response(&out)
}

// ---------------------------------------------------------------------------------------------
// Tags.

async fn tag_resource(state: ApiState, req: TagResourceRequest) -> Result<Response, EventsError> {
    let name = rule_of_arn(&required(req.resource_arn, "resourceARN")?)?;
    let tags = required(req.tags, "tags")?;
    run_mutation(&state, move |st| -> Result<_, EventsError> {
        let mut rule = existing_rule(st, &name)?;
        tags_map(tags, &mut rule.tags)?;
        st.store.put_rule(&rule)?;
        Ok(())
    })
    .await?;
    amz_json_response(&serde_json::json!({}))
}

async fn untag_resource(
    state: ApiState,
    req: UntagResourceRequest,
) -> Result<Response, EventsError> {
    let name = rule_of_arn(&required(req.resource_arn, "resourceARN")?)?;
    let keys = required(req.tag_keys, "tagKeys")?;
    run_mutation(&state, move |st| -> Result<_, EventsError> {
        let mut rule = existing_rule(st, &name)?;
        for key in &keys {
            rule.tags.remove(key);
        }
        st.store.put_rule(&rule)?;
        Ok(())
    })
    .await?;
    amz_json_response(&serde_json::json!({}))
}

async fn list_tags(
    state: ApiState,
    req: ListTagsForResourceRequest,
) -> Result<Response, EventsError> {
    let name = rule_of_arn(&required(req.resource_arn, "resourceARN")?)?;
    let st = state.clone();
    let rule = run_blocking(move || existing_rule(&st, &name)).await?;
    let tags: Vec<TagOut> = rule
        .tags
        .into_iter()
        .map(|(key, value)| TagOut { key, value })
        .collect();
    amz_json_response(&serde_json::json!({ "Tags": to_json(&tags)? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = next_token("my.rule-1");
        assert_eq!(
            token_position(Some(token)).unwrap().as_deref(),
            Some("my.rule-1")
        );
        assert_eq!(token_position(None).unwrap(), None);
        for bad in ["!!!", ""] {
            let err = token_position(Some(bad.into())).unwrap_err();
            assert_eq!(err.type_name(), "ValidationException");
        }
    }

    #[test]
    fn only_the_default_bus_exists() {
        assert!(check_bus(None).is_ok());
        assert!(check_bus(Some("default")).is_ok());
        assert!(check_bus(Some(
            "arn:aws:events:us-east-1:000000000000:event-bus/default"
        ))
        .is_ok());
        let err = check_bus(Some("orders")).unwrap_err();
        assert_eq!(
            (err.type_name(), err.message()),
            (
                "ResourceNotFoundException",
                "Event bus orders does not exist."
            )
        );
        assert_eq!(
            check_bus(Some("bad bus")).unwrap_err().type_name(),
            "ValidationException"
        );
    }

    #[test]
    fn resource_arns_name_rules() {
        assert_eq!(
            rule_of_arn("arn:aws:events:us-east-1:000000000000:rule/r1")
                .unwrap()
                .as_str(),
            "r1"
        );
        for bad in [
            "arn:aws:events:us-east-1:000000000000:rule/bus/r1",
            "arn:aws:events:us-east-1:000000000000:event-bus/default",
            "arn:aws:lambda:us-east-1:000000000000:function:f",
        ] {
            assert_eq!(
                rule_of_arn(bad).unwrap_err().type_name(),
                "ResourceNotFoundException",
                "{bad}"
            );
        }
        assert_eq!(
            rule_of_arn("nope").unwrap_err().type_name(),
            "ValidationException"
        );
    }

    #[test]
    fn platform_failures_are_internal_exceptions() {
        let err = EventsError::service("rule store failed", std::io::Error::other("disk full"));
        assert_eq!(
            (err.type_name(), err.message()),
            ("InternalException", "rule store failed")
        );
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None).unwrap(), 100);
        assert_eq!(page_size(Some(1)).unwrap(), 1);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(101)).is_err());
    }
}
