//! Versions, aliases, and the per-function settings that sit beside a configuration: reserved
//! and provisioned concurrency, and how asynchronous invocations are retried and where their
//! results go (event-invoke config).
//!
//! For: the validated shapes these settings are stored and exchanged in. Not for: deciding
//! which version an invocation runs (the engine) or rendering them (the API).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{
    ALIAS_NAME_MAX_LEN, EVENT_AGE_SECS_DEFAULT, EVENT_AGE_SECS_MAX, EVENT_AGE_SECS_MIN,
    RETRY_ATTEMPTS_DEFAULT, RETRY_ATTEMPTS_MAX,
};
use crate::{FunctionName, ValidationError};

/// A version of a function: the mutable `$LATEST` or an immutable published number (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum VersionId {
    Latest,
    Published(u64),
}

impl VersionId {
    /// Parses `$LATEST` or a version number (`FunctionVersion` in alias requests).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s == "$LATEST" {
            return Ok(VersionId::Latest);
        }
        match s.parse::<u64>() {
            Ok(n) if n >= 1 && !s.starts_with('+') => Ok(VersionId::Published(n)),
            _ => Err(ValidationError::Constraint {
                field: "functionVersion",
                value: s.to_owned(),
                constraint: "Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)"
                    .into(),
            }),
        }
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionId::Latest => f.write_str("$LATEST"),
            VersionId::Published(n) => write!(f, "{n}"),
        }
    }
}

impl TryFrom<String> for VersionId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, ValidationError> {
        VersionId::parse(&s)
    }
}

impl From<VersionId> for String {
    fn from(v: VersionId) -> String {
        v.to_string()
    }
}

/// Checks an alias name: 1 to 128 characters of `[a-zA-Z0-9-_]`, not all digits (that would
/// read as a version).
pub fn validate_alias_name(s: &str) -> Result<(), ValidationError> {
    let ok = !s.is_empty()
        && s.len() <= ALIAS_NAME_MAX_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !s.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Constraint {
            field: "name",
            value: s.to_owned(),
            constraint: "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+) and have length between 1 and 128".into(),
        })
    }
}

/// An alias: a stable name for one version, optionally sending a share of invocations to a
/// second version (`RoutingConfig.AdditionalVersionWeights`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasConfig {
    pub function: FunctionName,
    /// Validated by [`validate_alias_name`].
    pub name: String,
    pub function_version: VersionId,
    pub description: String,
    /// At most one entry: another published version and the share (0.0 to 1.0) it gets.
    pub additional_version_weights: BTreeMap<u64, f64>,
    pub revision_id: String,
}

/// How asynchronous invocations of one function qualifier are retried and where their
/// results go (`FunctionEventInvokeConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub function: FunctionName,
    /// `$LATEST`, a version number or an alias name, as the config was put on.
    pub qualifier: String,
    /// `MaximumRetryAttempts` (0 to 2); `None` means AWS's default of 2.
    pub maximum_retry_attempts: Option<u32>,
    /// `MaximumEventAgeInSeconds` (60 to 21600); `None` means AWS's default of 6 hours.
    pub maximum_event_age_secs: Option<u32>,
    /// `DestinationConfig.OnSuccess.Destination`: a function ARN.
    pub on_success: Option<String>,
    /// `DestinationConfig.OnFailure.Destination`: a function ARN.
    pub on_failure: Option<String>,
    /// When it was last put or updated, milliseconds since the epoch.
    pub last_modified_ms: i64,
}

impl EventInvokeConfig {
    /// Retries after the first attempt.
    pub fn retries(&self) -> u32 {
        self.maximum_retry_attempts
            .unwrap_or(RETRY_ATTEMPTS_DEFAULT)
    }

    /// How old an event may get before it is given up on.
    pub fn max_event_age(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.maximum_event_age_secs
                .unwrap_or(EVENT_AGE_SECS_DEFAULT),
        ))
    }
}

/// Checks `MaximumRetryAttempts`.
pub fn validate_retry_attempts(v: i64) -> Result<u32, ValidationError> {
    if !(0..=i64::from(RETRY_ATTEMPTS_MAX)).contains(&v) {
        return Err(ValidationError::Constraint {
            field: "maximumRetryAttempts",
            value: v.to_string(),
            constraint: format!(
                "Member must have value {} {}",
                if v < 0 {
                    "greater than or equal to"
                } else {
                    "less than or equal to"
                },
                if v < 0 { 0 } else { RETRY_ATTEMPTS_MAX }
            ),
        });
    }
    Ok(v as u32)
}

/// Checks `MaximumEventAgeInSeconds`.
pub fn validate_event_age_secs(v: i64) -> Result<u32, ValidationError> {
    if v < i64::from(EVENT_AGE_SECS_MIN) || v > i64::from(EVENT_AGE_SECS_MAX) {
        let (word, bound) = if v < i64::from(EVENT_AGE_SECS_MIN) {
            ("greater than or equal to", EVENT_AGE_SECS_MIN)
        } else {
            ("less than or equal to", EVENT_AGE_SECS_MAX)
        };
        return Err(ValidationError::Constraint {
            field: "maximumEventAgeInSeconds",
            value: v.to_string(),
            constraint: format!("Member must have value {word} {bound}"),
        });
    }
    Ok(v as u32)
}

/// Provisioned concurrency asked for on a version or alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedConcurrencyConfig {
    pub function: FunctionName,
    /// A version number or an alias name (never `$LATEST`).
    pub qualifier: String,
    /// `ProvisionedConcurrentExecutions` requested (at least 1).
    pub requested: u32,
    /// `LastModified`, ISO 8601 as AWS writes it (`2019-12-31T20:28:49+0000`).
    pub last_modified: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(VersionId::parse("$LATEST").unwrap(), VersionId::Latest);
        assert_eq!(VersionId::parse("12").unwrap(), VersionId::Published(12));
        for bad in ["0", "", "x", "-1", "+3", "1.5"] {
            assert!(VersionId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(VersionId::Published(7).to_string(), "7");
    }

    #[test]
    fn validates_alias_names() {
        for good in ["live", "v1", "a-b_c", "1a"] {
            validate_alias_name(good).unwrap();
        }
        for bad in ["", "12", "a:b", "$LATEST", &"a".repeat(129)] {
            assert!(validate_alias_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validates_async_settings() {
        assert_eq!(validate_retry_attempts(0).unwrap(), 0);
        assert_eq!(validate_retry_attempts(2).unwrap(), 2);
        assert!(validate_retry_attempts(3).is_err());
        assert!(validate_retry_attempts(-1).is_err());
        assert!(validate_event_age_secs(59).is_err());
        assert!(validate_event_age_secs(21601).is_err());
        assert_eq!(validate_event_age_secs(60).unwrap(), 60);
    }

    #[test]
    fn event_invoke_defaults_are_aws_defaults() {
        let cfg = EventInvokeConfig {
            function: FunctionName::parse("f").unwrap(),
            qualifier: "$LATEST".into(),
            maximum_retry_attempts: None,
            maximum_event_age_secs: None,
            on_success: None,
            on_failure: None,
            last_modified_ms: 0,
        };
        assert_eq!(cfg.retries(), 2);
        assert_eq!(cfg.max_event_age(), Duration::from_secs(21600));
    }
}
