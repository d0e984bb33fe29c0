//! EventBridge scheduled rules as stored: a rule (name, schedule expression, state) on the
//! `default` event bus, and its targets (Lambda functions, each with an optional constant
//! `Input`), with the validators of EventBridge's API model.
//!
//! For: the shapes the API validates and stores and the scheduler fires. Not for: parsing
//! schedule expressions or computing fire times (serval-events' `schedule`), wire names
//! (PascalCase: the API renders them) or firing (serval-events' `rules`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{FunctionRef, ValidationError};

/// The only event bus Serval has; rules name it by name or by ARN.
pub const DEFAULT_EVENT_BUS: &str = "default";
/// Longest rule name and target id.
pub const RULE_NAME_MAX_LEN: usize = 64;
/// Most rules the event bus may have: AWS's default quota "Rules", the most rules an account
/// may have per event bus, which is 300 in every Region but af-south-1 and eu-south-1 (100)
/// (Amazon EventBridge User Guide, "Amazon EventBridge quotas",
/// <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html>). Every rule is a
/// timer the scheduler keeps, so this bounds what PutRule can make it hold.
pub const RULES_MAX: usize = 300;
/// Most targets one rule may have (AWS's quota).
pub const RULE_TARGETS_MAX: usize = 5;
/// Largest constant `Input` of a target, in bytes.
pub const TARGET_INPUT_MAX_BYTES: usize = 8192;
/// Longest rule `Description`.
pub const RULE_DESCRIPTION_MAX_LEN: usize = 512;
/// Longest `ScheduleExpression`.
pub const SCHEDULE_EXPRESSION_MAX_LEN: usize = 256;
/// Longest `RoleArn`, `EventBusName` (as an ARN) and target `Arn`.
pub const EVENTS_ARN_MAX_LEN: usize = 1600;
/// Most tags on one rule.
pub const RULE_TAGS_MAX: usize = 50;
/// Longest tag key and tag value.
pub const RULE_TAG_KEY_MAX_LEN: usize = 128;
pub const RULE_TAG_VALUE_MAX_LEN: usize = 256;

/// The pattern of rule names and target ids, as the API model spells it.
const NAME_PATTERN: &str = "[\\.\\-_A-Za-z0-9]+";
/// The pattern of `EventBusName`, as the API model spells it.
const EVENT_BUS_PATTERN: &str =
    "(arn:aws[\\w-]*:events:[a-z]+-[a-z]+-[\\w-]+:[0-9]{12}:event-bus\\/)?[/\\.\\-_A-Za-z0-9]+";

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

fn too_long(field: &'static str, value: &str, max: usize) -> ValidationError {
    ValidationError::Constraint {
        field,
        value: value.to_owned(),
        constraint: format!("Member must have length less than or equal to {max}"),
    }
}

fn too_short(field: &'static str, value: &str) -> ValidationError {
    ValidationError::Constraint {
        field,
        value: value.to_owned(),
        constraint: "Member must have length greater than or equal to 1".into(),
    }
}

/// Checks a rule name or target id: 1 to 64 of `[.-_A-Za-z0-9]`.
fn check_name(field: &'static str, s: &str) -> Result<(), ValidationError> {
    if s.is_empty() {
        return Err(too_short(field, s));
    }
    if s.len() > RULE_NAME_MAX_LEN {
        return Err(too_long(field, s, RULE_NAME_MAX_LEN));
    }
    if !s.chars().all(is_name_char) {
        return Err(ValidationError::Constraint {
            field,
            value: s.to_owned(),
            constraint: format!("Member must satisfy regular expression pattern: {NAME_PATTERN}"),
        });
    }
    Ok(())
}

/// A rule's name: 1 to 64 characters of `[.-_A-Za-z0-9]`, unique on its event bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleName(String);

impl RuleName {
    /// Validates a rule name given as PutRule's `Name`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        Self::parse_field(s, "name")
    }

    /// Validates a rule name given in request member `field` (`rule`, `namePrefix`, ...).
    pub fn parse_field(s: &str, field: &'static str) -> Result<Self, ValidationError> {
        check_name(field, s)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `arn:aws:events:<region>:<account>:rule/<name>` (rules on the default bus carry no
    /// bus segment).
    pub fn arn(&self, region: &str) -> String {
        format!(
            "arn:aws:events:{region}:{}:rule/{}",
            crate::ACCOUNT_ID,
            self.0
        )
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RuleName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<RuleName> for String {
    fn from(n: RuleName) -> String {
        n.0
    }
}

/// A target's id, unique within its rule: 1 to 64 characters of `[.-_A-Za-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TargetId(String);

impl TargetId {
    /// Validates a target id given in request member `field` (`targets.member.id`, `ids`).
    pub fn parse_field(s: &str, field: &'static str) -> Result<Self, ValidationError> {
        check_name(field, s)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TargetId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse_field(&s, "id")
    }
}

impl From<TargetId> for String {
    fn from(n: TargetId) -> String {
        n.0
    }
}

/// Whether a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleState {
    #[serde(rename = "ENABLED")]
    Enabled,
    #[serde(rename = "DISABLED")]
    Disabled,
    /// Also matches CloudTrail management events (a pattern rule's setting); a schedule
    /// fires as when `ENABLED`.
    #[serde(rename = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")]
    EnabledWithAllCloudtrailManagementEvents,
}

impl RuleState {
    /// Parses `State` as PutRule takes it.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "ENABLED" => Ok(RuleState::Enabled),
            "DISABLED" => Ok(RuleState::Disabled),
            "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" => {
                Ok(RuleState::EnabledWithAllCloudtrailManagementEvents)
            }
            _ => Err(ValidationError::Constraint {
                field: "state",
                value: s.to_owned(),
                constraint: "Member must satisfy enum value set: [ENABLED, DISABLED, \
                             ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]"
                    .into(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::Enabled => "ENABLED",
            RuleState::Disabled => "DISABLED",
            RuleState::EnabledWithAllCloudtrailManagementEvents => {
                "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
            }
        }
    }

    /// Whether a rule in this state fires.
    pub fn is_enabled(self) -> bool {
        self != RuleState::Disabled
    }
}

/// A scheduled rule on the default event bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: RuleName,
    /// `rate(...)` or `cron(...)`, as given (validated by the API before it is stored).
    pub schedule_expression: String,
    pub state: RuleState,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When a `rate(...)` schedule counts from, milliseconds since the epoch on the
    /// scheduler's clock: the rule's creation, its last enabling, or the last change of its
    /// expression. Cron schedules ignore it.
    pub anchor_ms: i64,
}

impl Rule {
    /// The rule's ARN in `region`.
    pub fn arn(&self, region: &str) -> String {
        self.name.arn(region)
    }
}

/// One target of a rule: a Lambda function invoked asynchronously when the rule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTarget {
    pub id: TargetId,
    /// The function's ARN as given, optionally qualified (checked by
    /// [`validate_target_arn`] before it is stored).
    pub arn: String,
    /// Constant JSON text sent instead of the event; `None` sends the event.
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
}

impl RuleTarget {
    /// The function (and qualifier) the target invokes.
    pub fn function(&self) -> Result<FunctionRef, ValidationError> {
        validate_target_arn(&self.arn)
    }
}

/// Checks a target `Arn`: a Lambda function ARN
/// (`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`), the only kind of
/// target Serval can invoke. Returns the function it names.
pub fn validate_target_arn(arn: &str) -> Result<FunctionRef, ValidationError> {
    let malformed = || {
        ValidationError::InvalidParameter(format!(
            "Parameter {arn} is not valid. Reason: Provided Arn is not in correct format."
        ))
    };
    if arn.is_empty() {
        return Err(too_short("arn", arn));
    }
    if arn.len() > EVENTS_ARN_MAX_LEN {
        return Err(too_long("arn", arn, EVENTS_ARN_MAX_LEN));
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, _region, _account, _resource] = parts[..] else {
        return Err(malformed());
    };
    if prefix != "arn" || !partition.starts_with("aws") || service.is_empty() {
        return Err(malformed());
    }
    if service != "lambda" {
        return Err(ValidationError::InvalidParameter(format!(
            "{service} is not a supported service for a target: Serval invokes Lambda \
             functions only."
        )));
    }
    FunctionRef::parse(arn).map_err(|_| malformed())
}

/// Checks a target's constant `Input` length (the API checks that it is JSON).
pub fn validate_target_input(input: &str) -> Result<(), ValidationError> {
    if input.len() > TARGET_INPUT_MAX_BYTES {
        return Err(too_long("input", input, TARGET_INPUT_MAX_BYTES));
    }
    Ok(())
}

/// Checks a rule `Description` (at most 512 characters).
pub fn validate_rule_description(s: &str) -> Result<(), ValidationError> {
    if s.chars().count() > RULE_DESCRIPTION_MAX_LEN {
        return Err(too_long("description", s, RULE_DESCRIPTION_MAX_LEN));
    }
    Ok(())
}

/// Checks a `ScheduleExpression`'s length (its syntax is checked by the schedule parser).
pub fn validate_schedule_expression_len(s: &str) -> Result<(), ValidationError> {
    if s.len() > SCHEDULE_EXPRESSION_MAX_LEN {
        return Err(too_long(
            "scheduleExpression",
            s,
            SCHEDULE_EXPRESSION_MAX_LEN,
        ));
    }
    Ok(())
}

/// Checks a `RoleArn` (1 to 1600 characters; not otherwise used by Serval).
pub fn validate_events_role_arn(s: &str) -> Result<(), ValidationError> {
    if s.is_empty() {
        return Err(too_short("roleArn", s));
    }
    if s.len() > EVENTS_ARN_MAX_LEN {
        return Err(too_long("roleArn", s, EVENTS_ARN_MAX_LEN));
    }
    Ok(())
}

/// Checks rule tags: at most 50, keys of 1 to 128 characters, values of at most 256.
pub fn validate_rule_tags(tags: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if tags.len() > RULE_TAGS_MAX {
        return Err(ValidationError::InvalidParameter(format!(
            "A resource may have at most {RULE_TAGS_MAX} tags."
        )));
    }
    for (key, value) in tags {
        if key.is_empty() {
            return Err(too_short("tags.member.key", key));
        }
        if key.chars().count() > RULE_TAG_KEY_MAX_LEN {
            return Err(too_long("tags.member.key", key, RULE_TAG_KEY_MAX_LEN));
        }
        if value.chars().count() > RULE_TAG_VALUE_MAX_LEN {
            return Err(too_long("tags.member.value", value, RULE_TAG_VALUE_MAX_LEN));
        }
    }
    Ok(())
}

/// Checks an `EventBusName` (a name or an event bus ARN) against the API model and returns
/// the bus name it designates; whether that bus exists is the caller's question (only
/// [`DEFAULT_EVENT_BUS`] does).
pub fn parse_event_bus_name(s: &str) -> Result<&str, ValidationError> {
    if s.is_empty() {
        return Err(too_short("eventBusName", s));
    }
    if s.len() > EVENTS_ARN_MAX_LEN {
        return Err(too_long("eventBusName", s, EVENTS_ARN_MAX_LEN));
    }
    let invalid = || ValidationError::Constraint {
        field: "eventBusName",
        value: s.to_owned(),
        constraint: format!("Member must satisfy regular expression pattern: {EVENT_BUS_PATTERN}"),
    };
    let name = match s.strip_prefix("arn:") {
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return Err(invalid());
            };
            let ok = partition.starts_with("aws")
                && service == "events"
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit());
            match resource.strip_prefix("event-bus/") {
                Some(name) if ok => name,
                _ => return Err(invalid()),
            }
        }
        None => s,
    };
    if name.is_empty() || !name.chars().all(|c| is_name_char(c) || c == '/') {
        return Err(invalid());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Qualifier;

    #[test]
    fn rule_names_follow_the_api_model() {
        for ok in ["r", "my.rule-1_x", &"a".repeat(64)] {
            assert_eq!(RuleName::parse(ok).unwrap().as_str(), ok);
        }
        let err = RuleName::parse("has space").unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 validation error detected: Value 'has space' at 'name' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"
        );
        assert!(RuleName::parse("").is_err());
        assert!(RuleName::parse(&"a".repeat(65)).is_err());
        assert!(RuleName::parse("a/b").is_err());
        let err = TargetId::parse_field("x:y", "targets.member.id").unwrap_err();
        assert!(err.to_string().contains("'targets.member.id'"), "{err}");
    }

    #[test]
    fn rule_arn_has_no_bus_segment_on_the_default_bus() {
        let name = RuleName::parse("nightly").unwrap();
        assert_eq!(
            name.arn("eu-west-1"),
            "arn:aws:events:eu-west-1:000000000000:rule/nightly"
        );
    }

    #[test]
    fn states_parse_and_render() {
        for s in [
            "ENABLED",
            "DISABLED",
            "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS",
        ] {
            assert_eq!(RuleState::parse(s).unwrap().as_str(), s);
        }
        assert!(!RuleState::Disabled.is_enabled());
        assert!(RuleState::EnabledWithAllCloudtrailManagementEvents.is_enabled());
        assert!(RuleState::parse("enabled").is_err());
    }

    #[test]
    fn targets_must_be_lambda_function_arns() {
        let f = validate_target_arn("arn:aws:lambda:us-east-1:000000000000:function:f").unwrap();
        assert_eq!((f.name.as_str(), f.qualifier), ("f", None));
        let f =
            validate_target_arn("arn:aws:lambda:us-east-1:000000000000:function:f:live").unwrap();
        assert_eq!(f.qualifier, Some(Qualifier::Alias("live".into())));
        let err = validate_target_arn("arn:aws:sqs:us-east-1:000000000000:q").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sqs is not a supported service for a target"),
            "{err}"
        );
        for bad in [
            "f",
            "not-an-arn",
            "arn:aws:lambda:us-east-1:000000000000:layer:l",
            "arn:aws:lambda:us-east-1:000000000000:function:",
            "arn:aws:lambda:us-east-1",
        ] {
            let err = validate_target_arn(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "Parameter {bad} is not valid. Reason: Provided Arn is not in correct format."
                ),
            );
        }
    }

    #[test]
    fn event_bus_names_and_arns() {
        assert_eq!(parse_event_bus_name("default").unwrap(), "default");
        assert_eq!(
            parse_event_bus_name("arn:aws:events:us-east-1:000000000000:event-bus/default")
                .unwrap(),
            "default"
        );
        assert_eq!(parse_event_bus_name("custom").unwrap(), "custom");
        for bad in [
            "",
            "a b",
            "arn:aws:events:us-east-1:000:event-bus/default",
            "arn:aws:sqs:us-east-1:000000000000:event-bus/default",
            "arn:aws:events:us-east-1:000000000000:rule/default",
        ] {
            assert!(parse_event_bus_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lengths_of_inputs_descriptions_and_tags() {
        assert!(validate_target_input(&"1".repeat(8192)).is_ok());
        assert!(validate_target_input(&"1".repeat(8193)).is_err());
        assert!(validate_rule_description(&"d".repeat(512)).is_ok());
        assert!(validate_rule_description(&"d".repeat(513)).is_err());
        assert!(validate_schedule_expression_len(&"x".repeat(257)).is_err());
        assert!(validate_events_role_arn("").is_err());
        let mut tags = BTreeMap::new();
        tags.insert("k".to_owned(), String::new());
        assert!(validate_rule_tags(&tags).is_ok());
        tags.insert(String::new(), "v".to_owned());
        assert!(validate_rule_tags(&tags).is_err());
    }
}
