//! A function's configuration as Serval stores and runs it, with AWS's validation rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::*;
use crate::{FunctionName, Handler, Runtime, ValidationError};

/// Instruction set a function is built for; Serval runs whatever the host runs, and reports
/// what the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Architecture {
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "x86_64" => Ok(Architecture::X86_64),
            "arm64" => Ok(Architecture::Arm64),
            _ => Err(ValidationError::Constraint {
                field: "architectures",
                value: format!("[{s}]"),
                constraint: "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]".into(),
            }),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }
}

/// Only zip packages exist in Serval for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PackageType {
    #[default]
    Zip,
}

/// AWS's `State` of a function. Serval's set-up is synchronous, so a stored function is `Active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FunctionState {
    #[default]
    Active,
    Pending,
    Inactive,
    Failed,
}

/// AWS's `LastUpdateStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LastUpdateStatus {
    #[default]
    Successful,
    InProgress,
    Failed,
}

/// Environment variables a user sets on a function, validated against AWS's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct EnvironmentVars(BTreeMap<String, String>);

/// Variables Lambda sets itself and refuses to let a function override.
const RESERVED_VARIABLES: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

impl EnvironmentVars {
    /// Validates names (`[a-zA-Z]([a-zA-Z0-9_])+`), reserved names and the 4 KB total.
    pub fn new(vars: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        for key in vars.keys() {
            let mut chars = key.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
            let rest_ok = key.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !first_ok || !rest_ok {
                return Err(ValidationError::Constraint {
                    field: "environment.variables",
                    value: "[sensitive]".into(),
                    constraint: format!("Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+ (key '{key}')"),
                });
            }
        }
        let reserved: Vec<&str> = vars
            .keys()
            .filter(|k| RESERVED_VARIABLES.contains(&k.as_str()))
            .map(String::as_str)
            .collect();
        if !reserved.is_empty() {
            return Err(ValidationError::InvalidParameter(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
                reserved.join(", ")
            )));
        }
        let size: usize = vars.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > ENVIRONMENT_MAX_BYTES {
            return Err(ValidationError::InvalidParameter(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {size} bytes"
            )));
        }
        Ok(Self(vars))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// Everything Serval knows about one function version: what the API reports and what the
/// engine needs to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    pub name: FunctionName,
    pub runtime: Runtime,
    pub role: String,
    pub handler: Handler,
    pub description: String,
    pub timeout_secs: u32,
    pub memory_mb: u32,
    pub ephemeral_storage_mb: u32,
    pub environment: EnvironmentVars,
    pub architecture: Architecture,
    pub package_type: PackageType,
    /// Hex SHA-256 of the zip as uploaded; the code store's key.
    pub code_sha256_hex: String,
    /// Size of the zip in bytes.
    pub code_size: u64,
    /// `2019-09-24T20:54:08.943+0000`, AWS's format.
    pub last_modified: String,
    /// Changes on every update; a UUID as AWS uses.
    pub revision_id: String,
    /// `$LATEST` or a published version number.
    pub version: String,
    pub state: FunctionState,
    pub last_update_status: LastUpdateStatus,
}

/// Checks `MemorySize` against 128–10240 MB.
pub fn validate_memory_mb(v: i64) -> Result<u32, ValidationError> {
    range_check("memorySize", "MemorySize", v, MEMORY_MB_MIN, MEMORY_MB_MAX)
}

/// Checks `Timeout` against 1–900 s.
pub fn validate_timeout_secs(v: i64) -> Result<u32, ValidationError> {
    range_check("timeout", "Timeout", v, TIMEOUT_SECS_MIN, TIMEOUT_SECS_MAX)
}

/// Checks `EphemeralStorage.Size` against 512–10240 MB.
pub fn validate_ephemeral_mb(v: i64) -> Result<u32, ValidationError> {
    range_check(
        "ephemeralStorage.size",
        "EphemeralStorage.Size",
        v,
        EPHEMERAL_MB_MIN,
        EPHEMERAL_MB_MAX,
    )
}

/// Checks `Description` length.
pub fn validate_description(v: &str) -> Result<(), ValidationError> {
    if v.chars().count() > DESCRIPTION_MAX_LEN {
        return Err(ValidationError::Constraint {
            field: "description",
            value: v.to_owned(),
            constraint: format!(
                "Member must have length less than or equal to {DESCRIPTION_MAX_LEN}"
            ),
        });
    }
    Ok(())
}

/// Checks the execution role's ARN shape (`arn:aws:iam::123456789012:role/name`).
pub fn validate_role(v: &str) -> Result<(), ValidationError> {
    let ok = v
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":iam::"))
        .is_some_and(|(partition, rest)| {
            partition.starts_with("aws")
                && rest.split_once(":role/").is_some_and(|(account, name)| {
                    account.len() == 12
                        && account.chars().all(|c| c.is_ascii_digit())
                        && !name.is_empty()
                })
        });
    if !ok {
        return Err(ValidationError::Constraint {
            field: "role",
            value: v.to_owned(),
            constraint: "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+".into(),
        });
    }
    Ok(())
}

fn range_check(
    field: &'static str,
    aws_name: &str,
    v: i64,
    min: u32,
    max: u32,
) -> Result<u32, ValidationError> {
    if v < i64::from(min) {
        return Err(ValidationError::Constraint {
            field,
            value: v.to_string(),
            constraint: format!("Member must have value greater than or equal to {min}"),
        });
    }
    if v > i64::from(max) {
        return Err(ValidationError::InvalidParameter(format!(
            "'{aws_name}' value failed to satisfy constraint: Member must have value less than or equal to {max}"
        )));
    }
    Ok(v as u32)
}

impl FunctionConfig {
    /// The function's unqualified ARN.
    pub fn arn(&self, region: &str) -> String {
        self.name.arn(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforces_numeric_limits() {
        assert_eq!(validate_memory_mb(128).unwrap(), 128);
        assert_eq!(validate_memory_mb(10240).unwrap(), 10240);
        assert!(validate_memory_mb(127).unwrap_err().is_schema_violation());
        let err = validate_memory_mb(10241).unwrap_err();
        assert!(!err.is_schema_violation());
        assert!(err.to_string().contains("less than or equal to 10240"));
        assert!(validate_timeout_secs(0).is_err());
        assert!(validate_timeout_secs(901).is_err());
        assert!(validate_timeout_secs(900).is_ok());
        assert!(validate_ephemeral_mb(511).is_err());
        assert!(validate_ephemeral_mb(10241).is_err());
    }

    #[test]
    fn rejects_oversized_reserved_and_malformed_environment() {
        let mut m = BTreeMap::new();
        m.insert("BIG".to_string(), "x".repeat(4097));
        assert!(EnvironmentVars::new(m)
            .unwrap_err()
            .to_string()
            .contains("4KB"));
        let mut m = BTreeMap::new();
        m.insert("AWS_REGION".to_string(), "x".into());
        assert!(EnvironmentVars::new(m)
            .unwrap_err()
            .to_string()
            .contains("AWS_REGION"));
        let mut m = BTreeMap::new();
        m.insert("1BAD".to_string(), "x".into());
        assert!(EnvironmentVars::new(m).is_err());
        let mut m = BTreeMap::new();
        m.insert("GOOD_1".to_string(), "x".into());
        assert!(EnvironmentVars::new(m).is_ok());
    }

    #[test]
    fn checks_role_arn_shape() {
        assert!(validate_role("arn:aws:iam::123456789012:role/lambda-role").is_ok());
        assert!(validate_role("role").is_err());
        assert!(validate_role("arn:aws:iam::1234:role/x").is_err());
    }
}
