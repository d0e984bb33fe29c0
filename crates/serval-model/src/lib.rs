//! Serval's domain vocabulary: validated names and identifiers, runtimes, a function's
//! configuration and AWS Lambda's limits.
//!
//! This crate does no I/O. Every other crate speaks these types; anything that crosses a crate
//! boundary as an identifier is a validated newtype here, never a bare string. Validation
//! failures carry AWS's own wording so the API layer can render them unchanged.

mod config;
mod handler;
mod http_api;
mod ids;
pub mod limits;
mod rules;
mod runtime;
mod triggers;
mod versions;

pub use config::{
    validate_description, validate_ephemeral_mb, validate_memory_mb, validate_role,
    validate_timeout_secs, Architecture, EnvironmentVars, FunctionConfig, FunctionState,
    LastUpdateStatus, PackageType,
};
pub use handler::{Handler, HandlerError};
pub use http_api::{ApiIntegration, ApiRoute, ApiStage, HttpApi, HttpApiSnapshot};
pub use ids::{EnvironmentId, FunctionName, FunctionRef, Qualifier, RequestId};
pub use rules::{
    parse_event_bus_name, validate_events_role_arn, validate_rule_description, validate_rule_tags,
    validate_schedule_expression_len, validate_target_arn, validate_target_input, Rule, RuleName,
    RuleState, RuleTarget, TargetId, DEFAULT_EVENT_BUS, EVENTS_ARN_MAX_LEN, RULES_MAX,
    RULE_TARGETS_MAX,
};
pub use runtime::{Runtime, RuntimeFamily};
pub use triggers::{validate_url_qualifier, Cors, FunctionUrlConfig, UrlAuthType, URL_ID_LEN};
pub use versions::{
    validate_alias_name, validate_event_age_secs, validate_retry_attempts, AliasConfig,
    EventInvokeConfig, ProvisionedConcurrencyConfig, VersionId,
};

/// A value that breaks one of AWS's constraints; the message is AWS's own wording, ready to be
/// sent as the `Message` of an `InvalidParameterValueException` or `ValidationException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Rendered by AWS as `ValidationException` ("1 validation error detected: ...").
    #[error("1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}")]
    Constraint {
        field: &'static str,
        value: String,
        constraint: String,
    },
    /// Rendered by AWS as `InvalidParameterValueException`.
    #[error("{0}")]
    InvalidParameter(String),
}

impl ValidationError {
    /// Whether AWS reports this as `ValidationException` rather than
    /// `InvalidParameterValueException`.
    pub fn is_schema_violation(&self) -> bool {
        matches!(self, ValidationError::Constraint { .. })
    }
}

/// The Lambda account id Serval reports in ARNs (LocalStack uses the same placeholder).
pub const ACCOUNT_ID: &str = "000000000000";
