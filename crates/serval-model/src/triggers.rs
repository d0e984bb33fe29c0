//! HTTP triggers' stored shapes: a function's URL configuration and the CORS policy shared by
//! Function URLs and HTTP APIs.
//!
//! For: what is stored and exchanged between the API (which validates and renders) and the
//! gateway (which serves requests). Not for: wire names (PascalCase for Lambda, camelCase for
//! API Gateway: the API renders them) or serving (serval-events).

use serde::{Deserialize, Serialize};

use crate::{FunctionName, ValidationError};

/// Length of a Function URL's id (`<url-id>.lambda-url.<region>...`), as on AWS.
pub const URL_ID_LEN: usize = 32;

/// Who may call a Function URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UrlAuthType {
    /// Anyone who can reach the server.
    #[serde(rename = "NONE")]
    None,
    /// SigV4-signed requests of allowed principals (refused until Serval has access control).
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

impl UrlAuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            UrlAuthType::None => "NONE",
            UrlAuthType::AwsIam => "AWS_IAM",
        }
    }
}

/// Cross-origin resource sharing settings (Function URL `Cors`, HTTP API
/// `CorsConfiguration`). `None` members were not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    /// Seconds a browser may cache a preflight answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

/// A function's URL: one per function (unqualified) or per alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionUrlConfig {
    pub function: FunctionName,
    /// The alias the URL invokes; `None` for the unqualified function (`$LATEST`).
    pub qualifier: Option<String>,
    /// 32 lowercase letters and digits, unique across the server.
    pub url_id: String,
    pub auth_type: UrlAuthType,
    pub cors: Option<Cors>,
    /// `BUFFERED` or `RESPONSE_STREAM` (streamed responses are sent buffered).
    pub invoke_mode: String,
    /// ISO 8601 with milliseconds, as Lambda renders `CreationTime`.
    pub creation_time: String,
    pub last_modified_time: String,
}

/// Checks a Function URL `Qualifier`: an alias name (1–128 of `[0-9a-zA-Z-_]`, not all
/// digits; `$LATEST` and version numbers are refused, as on AWS).
pub fn validate_url_qualifier(q: &str) -> Result<(), ValidationError> {
    let ok = !q.is_empty()
        && q.len() <= 128
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !q.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Constraint {
            field: "qualifier",
            value: q.to_owned(),
            constraint:
                "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
                    .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_qualifiers_are_alias_names() {
        for ok in ["live", "v2-beta", "a_b", "1a"] {
            assert!(validate_url_qualifier(ok).is_ok(), "{ok}");
        }
        for bad in ["", "$LATEST", "3", "a b", &"x".repeat(129)] {
            assert!(validate_url_qualifier(bad).is_err(), "{bad}");
        }
    }
}
