//! Request and response bodies of the Lambda REST API `2015-03-31`, spelled as botocore's model
//! spells them.
//!
//! Requests ignore members Serval does not know, as AWS ignores members it does not model.
//! Members AWS models but Serval does not implement are kept as raw JSON so handlers can refuse
//! the ones whose absence would change how the function runs (layers, file systems, images).
//! Numbers arrive as `i64` so out-of-range values reach the model's validation and get AWS's
//! wording, instead of failing in serde.
//!
//! Not for: validation or defaults — the handlers in `functions` apply `serval-model`'s rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serval_model::FunctionConfig;

/// `CreateFunction`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateFunctionRequest {
    pub function_name: Option<String>,
    pub runtime: Option<String>,
    pub role: Option<String>,
    pub handler: Option<String>,
    pub code: Option<FunctionCode>,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    /// Publish version 1 once the function is created; the response is that version.
    pub publish: Option<bool>,
    pub package_type: Option<String>,
    pub environment: Option<Environment>,
    pub tags: Option<BTreeMap<String, String>>,
    pub architectures: Option<Vec<String>>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(flatten)]
    pub unsupported: UnsupportedMembers,
}

/// `CreateFunction`'s `Code`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FunctionCode {
    /// The zip, base64.
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    pub s3_key: Option<String>,
    pub image_uri: Option<String>,
}

/// `UpdateFunctionCode`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateFunctionCodeRequest {
    /// The zip, base64.
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    pub s3_key: Option<String>,
    pub image_uri: Option<String>,
    /// Publish a version after the update; the response is that version.
    pub publish: Option<bool>,
    /// Validate the code, change nothing.
    pub dry_run: Option<bool>,
    pub revision_id: Option<String>,
    pub architectures: Option<Vec<String>>,
}

/// `UpdateFunctionConfiguration`'s body: every member optional, absent means unchanged.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateFunctionConfigurationRequest {
    pub role: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    pub environment: Option<Environment>,
    pub runtime: Option<String>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub revision_id: Option<String>,
    #[serde(flatten)]
    pub unsupported: UnsupportedMembers,
}

/// Members AWS models that Serval cannot honour; a non-empty value is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UnsupportedMembers {
    pub layers: Option<serde_json::Value>,
    pub file_system_configs: Option<serde_json::Value>,
    pub image_config: Option<serde_json::Value>,
}

impl UnsupportedMembers {
    /// The first member set to something other than null or empty.
    pub fn first_set(&self) -> Option<&'static str> {
        let set = |v: &Option<serde_json::Value>| match v {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(serde_json::Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        [
            ("Layers", &self.layers),
            ("FileSystemConfigs", &self.file_system_configs),
            ("ImageConfig", &self.image_config),
        ]
        .into_iter()
        .find(|(_, v)| set(v))
        .map(|(name, _)| name)
    }
}

/// `Environment` in requests.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Environment {
    pub variables: Option<BTreeMap<String, String>>,
}

/// `EphemeralStorage`, in requests and responses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorage {
    pub size: i64,
}

/// `TagResource`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TagResourceRequest {
    pub tags: Option<BTreeMap<String, String>>,
}

/// `FunctionConfiguration`, as every function operation returns it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    pub runtime: String,
    pub role: String,
    pub handler: String,
    pub code_size: u64,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    /// `2019-09-24T20:54:08.943+0000`.
    pub last_modified: String,
    /// Base64 of the zip's SHA-256.
    pub code_sha256: String,
    pub version: String,
    /// Omitted when the function has no variables, as AWS omits it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentResponse>,
    pub tracing_config: TracingConfig,
    pub revision_id: String,
    pub state: &'static str,
    pub last_update_status: &'static str,
    pub package_type: &'static str,
    pub architectures: Vec<&'static str>,
    pub ephemeral_storage: EphemeralStorage,
    pub snap_start: SnapStartResponse,
    pub logging_config: LoggingConfig,
}

/// `EnvironmentResponse`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentResponse {
    pub variables: BTreeMap<String, String>,
}

/// `TracingConfigResponse`: Serval does no X-Ray tracing.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TracingConfig {
    pub mode: &'static str,
}

/// `SnapStartResponse`: never on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapStartResponse {
    pub apply_on: &'static str,
    pub optimization_status: &'static str,
}

/// `LoggingConfig`: text logs to `/aws/lambda/<name>`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingConfig {
    pub log_format: &'static str,
    pub log_group: String,
}

impl FunctionConfiguration {
    /// The wire form of a configuration read through `qualifier` (`$LATEST`, a version number or
    /// an alias name): AWS then qualifies `FunctionArn` with it, while `Version` stays the
    /// version that was read (an alias's version, for an alias).
    pub fn qualified(cfg: &FunctionConfig, region: &str, qualifier: &str) -> Self {
        let mut out = Self::from_config(cfg, region);
        out.function_arn = format!("{}:{qualifier}", cfg.name.arn(region));
        out
    }

    /// The wire form of a configuration with the unqualified `FunctionArn`, as AWS renders
    /// `$LATEST` read without a qualifier.
    pub fn from_config(cfg: &FunctionConfig, region: &str) -> Self {
        let state = match cfg.state {
            serval_model::FunctionState::Active => "Active",
            serval_model::FunctionState::Pending => "Pending",
            serval_model::FunctionState::Inactive => "Inactive",
            serval_model::FunctionState::Failed => "Failed",
        };
        let last_update_status = match cfg.last_update_status {
            serval_model::LastUpdateStatus::Successful => "Successful",
            serval_model::LastUpdateStatus::InProgress => "InProgress",
            serval_model::LastUpdateStatus::Failed => "Failed",
        };
        let package_type = match cfg.package_type {
            serval_model::PackageType::Zip => "Zip",
        };
        FunctionConfiguration {
            function_name: cfg.name.to_string(),
            function_arn: cfg.arn(region),
            runtime: cfg.runtime.as_str().to_owned(),
            role: cfg.role.clone(),
            handler: cfg.handler.to_string(),
            code_size: cfg.code_size,
            description: cfg.description.clone(),
            timeout: cfg.timeout_secs,
            memory_size: cfg.memory_mb,
            last_modified: cfg.last_modified.clone(),
            code_sha256: hex_to_base64(&cfg.code_sha256_hex),
            version: cfg.version.clone(),
            environment: (!cfg.environment.is_empty()).then(|| EnvironmentResponse {
                variables: cfg.environment.as_map().clone(),
            }),
            tracing_config: TracingConfig {
                mode: "PassThrough",
            },
            revision_id: cfg.revision_id.clone(),
            state,
            last_update_status,
            package_type,
            architectures: vec![cfg.architecture.as_str()],
            ephemeral_storage: EphemeralStorage {
                size: i64::from(cfg.ephemeral_storage_mb),
            },
            snap_start: SnapStartResponse {
                apply_on: "None",
                optimization_status: "Off",
            },
            logging_config: LoggingConfig {
                log_format: "Text",
                log_group: format!("/aws/lambda/{}", cfg.name),
            },
        }
    }
}

/// `GetFunction`'s response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetFunctionResponse {
    pub configuration: FunctionConfiguration,
    pub code: FunctionCodeLocation,
    /// Omitted when the function has no tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// The function's reserved concurrency; omitted when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
}

/// `Concurrency` (PutFunctionConcurrency's response, GetFunction's member) and
/// `GetFunctionConcurrencyResponse` (empty when none is reserved).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Concurrency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrent_executions: Option<u32>,
}

/// `PutFunctionConcurrency`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutFunctionConcurrencyRequest {
    pub reserved_concurrent_executions: Option<i64>,
}

/// `PublishVersion`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PublishVersionRequest {
    /// Base64 SHA-256 the caller expects `$LATEST`'s code to have.
    pub code_sha256: Option<String>,
    pub description: Option<String>,
    pub revision_id: Option<String>,
}

/// `ListVersionsByFunction`'s response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListVersionsByFunctionResponse {
    pub versions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `AliasRoutingConfiguration`, in requests and responses.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AliasRoutingConfiguration {
    /// Version number (as text) → share of invocations, 0.0 to 1.0.
    pub additional_version_weights: Option<BTreeMap<String, f64>>,
}

/// `CreateAlias`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateAliasRequest {
    pub name: Option<String>,
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<AliasRoutingConfiguration>,
}

/// `UpdateAlias`'s body: absent members keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateAliasRequest {
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<AliasRoutingConfiguration>,
    pub revision_id: Option<String>,
}

/// `AliasConfiguration`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasConfiguration {
    pub alias_arn: String,
    pub name: String,
    pub function_version: String,
    pub description: String,
    /// Omitted when the alias routes to one version only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_config: Option<AliasRoutingConfiguration>,
    pub revision_id: String,
}

impl AliasConfiguration {
    /// The wire form of a stored alias.
    pub fn from_alias(alias: &serval_model::AliasConfig, region: &str) -> Self {
        let weights: BTreeMap<String, f64> = alias
            .additional_version_weights
            .iter()
            .map(|(v, w)| (v.to_string(), *w))
            .collect();
        AliasConfiguration {
            alias_arn: format!("{}:{}", alias.function.arn(region), alias.name),
            name: alias.name.clone(),
            function_version: alias.function_version.to_string(),
            description: alias.description.clone(),
            routing_config: (!weights.is_empty()).then_some(AliasRoutingConfiguration {
                additional_version_weights: Some(weights),
            }),
            revision_id: alias.revision_id.clone(),
        }
    }
}

/// `ListAliases`' response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesResponse {
    pub aliases: Vec<AliasConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `PutProvisionedConcurrencyConfig`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutProvisionedConcurrencyConfigRequest {
    pub provisioned_concurrent_executions: Option<i64>,
}

/// `GetProvisionedConcurrencyConfigResponse`, `PutProvisionedConcurrencyConfigResponse` and
/// (with `FunctionArn`) `ProvisionedConcurrencyConfigListItem`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvisionedConcurrencyConfig {
    /// Only in list items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    pub requested_provisioned_concurrent_executions: u32,
    pub available_provisioned_concurrent_executions: u32,
    pub allocated_provisioned_concurrent_executions: u32,
    /// `IN_PROGRESS`, `READY` or `FAILED`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub last_modified: String,
}

/// `ListProvisionedConcurrencyConfigs`' response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListProvisionedConcurrencyConfigsResponse {
    pub provisioned_concurrency_configs: Vec<ProvisionedConcurrencyConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `OnSuccess` / `OnFailure`: `Destination` omitted when unset.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Destination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// `DestinationConfig`: in requests either member may be absent; in responses AWS renders
/// both, empty when unset.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DestinationConfig {
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
}

/// The body of `PutFunctionEventInvokeConfig` and `UpdateFunctionEventInvokeConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EventInvokeConfigRequest {
    pub maximum_retry_attempts: Option<i64>,
    pub maximum_event_age_in_seconds: Option<i64>,
    pub destination_config: Option<DestinationConfig>,
}

/// `FunctionEventInvokeConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionEventInvokeConfig {
    /// Seconds since the epoch, fractional: the model's `timestamp` in REST-JSON.
    pub last_modified: f64,
    /// Qualified with the config's qualifier (`$LATEST` when none was given).
    pub function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<u32>,
    pub destination_config: DestinationConfig,
}

impl FunctionEventInvokeConfig {
    /// The wire form of a stored config.
    pub fn from_config(cfg: &serval_model::EventInvokeConfig, region: &str) -> Self {
        let dest = |d: &Option<String>| {
            Some(Destination {
                destination: d.clone(),
            })
        };
        FunctionEventInvokeConfig {
            last_modified: cfg.last_modified_ms as f64 / 1000.0,
            function_arn: format!("{}:{}", cfg.function.arn(region), cfg.qualifier),
            maximum_retry_attempts: cfg.maximum_retry_attempts,
            maximum_event_age_in_seconds: cfg.maximum_event_age_secs,
            destination_config: DestinationConfig {
                on_success: dest(&cfg.on_success),
                on_failure: dest(&cfg.on_failure),
            },
        }
    }
}

/// `ListFunctionEventInvokeConfigs`' response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionEventInvokeConfigsResponse {
    pub function_event_invoke_configs: Vec<FunctionEventInvokeConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `FunctionCodeLocation`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionCodeLocation {
    pub repository_type: &'static str,
    pub location: String,
}

/// `ListFunctions`' response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionsResponse {
    pub functions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `ListTags`' response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsResponse {
    pub tags: BTreeMap<String, String>,
}

/// `GetAccountSettings`' response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAccountSettingsResponse {
    pub account_limit: AccountLimit,
    pub account_usage: AccountUsage,
}

/// `AccountLimit`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountLimit {
    pub total_code_size: u64,
    pub code_size_unzipped: u64,
    pub code_size_zipped: u64,
    pub concurrent_executions: u32,
    pub unreserved_concurrent_executions: u32,
}

/// `AccountUsage`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountUsage {
    pub total_code_size: u64,
    pub function_count: u64,
}

/// Base64 of the bytes a hex string spells (the stored SHA-256 → AWS's `CodeSha256`). A
/// malformed hex string (a corrupt record) yields what decodes before the first bad digit.
pub fn hex_to_base64(hex: &str) -> String {
    use base64::Engine as _;
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes: Vec<u8> = hex
        .as_bytes()
        .chunks_exact(2)
        .map_while(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_hex_digest_to_base64() {
        // SHA-256 of the empty string.
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            hex_to_base64(hex),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn ignores_unknown_members_and_spots_unsupported_ones() {
        let req: CreateFunctionRequest = serde_json::from_str(
            r#"{"FunctionName":"f","Whatever":1,"Layers":[],"VpcConfig":{"SubnetIds":["s"]}}"#,
        )
        .unwrap();
        assert_eq!(req.function_name.as_deref(), Some("f"));
        assert_eq!(req.unsupported.first_set(), None);
        let req: CreateFunctionRequest =
            serde_json::from_str(r#"{"Layers":["arn:aws:lambda:x"]}"#).unwrap();
        assert_eq!(req.unsupported.first_set(), Some("Layers"));
    }
}
