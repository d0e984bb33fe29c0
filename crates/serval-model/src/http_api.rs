//! API Gateway v2 HTTP APIs as stored: the API, its integrations, routes and stages.
//!
//! For: the shapes the API layer validates and stores and the gateway serves. Not for: wire
//! names (camelCase: the API renders them), route-key parsing or selection (serval-events).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Cors;

/// An HTTP API (`ProtocolType: HTTP`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpApi {
    /// 10 lowercase letters and digits, unique across the server.
    pub api_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Always `HTTP` (WebSocket APIs are refused).
    pub protocol_type: String,
    /// `$request.method $request.path`, the only one HTTP APIs take.
    pub route_selection_expression: String,
    /// `$request.header.x-api-key`.
    pub api_key_selection_expression: String,
    #[serde(default)]
    pub cors: Option<Cors>,
    /// ISO 8601 (`2026-11-25T10:00:00Z`).
    pub created_date: String,
    #[serde(default)]
    pub disable_execute_api_endpoint: bool,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// How a route reaches a function: an `AWS_PROXY` integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiIntegration {
    /// 7 lowercase letters and digits, unique within the API.
    pub integration_id: String,
    /// Always `AWS_PROXY`.
    pub integration_type: String,
    /// The function: its ARN (optionally qualified), or API Gateway's invocation URI
    /// `arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function-arn>/invocations`.
    pub integration_uri: String,
    /// `1.0` or `2.0`.
    pub payload_format_version: String,
    /// 50 to 30,000; the request gets 503 after it (the invocation itself runs on).
    pub timeout_in_millis: u32,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub integration_method: Option<String>,
    /// `INTERNET`.
    pub connection_type: String,
    /// Whether Serval created it for a quick-create API (`apiGatewayManaged`).
    #[serde(default)]
    pub api_gateway_managed: bool,
}

/// A route: a route key and, usually, an integration target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRoute {
    /// 7 lowercase letters and digits, unique within the API.
    pub route_id: String,
    /// `$default` or `METHOD /path` (validated by `serval_events::route::RouteKey::parse`).
    pub route_key: String,
    /// `integrations/<integration-id>`; a request matching a route without one gets 404.
    #[serde(default)]
    pub target: Option<String>,
    /// `NONE` (authorizers are not supported).
    pub authorization_type: String,
    #[serde(default)]
    pub api_key_required: bool,
    #[serde(default)]
    pub operation_name: Option<String>,
    #[serde(default)]
    pub api_gateway_managed: bool,
}

/// A stage: `$default` serves at the root, a named stage under `/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiStage {
    pub stage_name: String,
    #[serde(default)]
    pub auto_deploy: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub stage_variables: BTreeMap<String, String>,
    pub created_date: String,
    pub last_updated_date: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub api_gateway_managed: bool,
}

/// Everything the gateway needs to serve one API, as one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpApiSnapshot {
    pub api: HttpApi,
    pub integrations: Vec<ApiIntegration>,
    pub routes: Vec<ApiRoute>,
    pub stages: Vec<ApiStage>,
}
