//! A small typed client of Serval's public AWS API: the Lambda REST API `2015-03-31` and the
//! CloudWatch Logs JSON protocol, exactly as an AWS SDK speaks them (SigV4-signed, AWS error
//! shapes).
//!
//! Not for: HTTPS, retries with backoff policies, or operations the CLI does not use. The
//! benchmark's load generator builds its own raw connections (see `bench`), this client is for
//! the control-plane calls around it.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::sigv4::{uri_encode, Signer};

/// Where the CLI finds the server when neither `--endpoint` nor `SERVAL_ENDPOINT` is given.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9000";

/// The role a function gets when `deploy` is not told one.
pub const DEFAULT_ROLE: &str = "arn:aws:iam::000000000000:role/serval";

/// The largest response body the client reads (a sync invoke answers at most 6 MB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How long establishing a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Lambda's REST API version prefix.
const LAMBDA_PREFIX: &str = "/2015-03-31";

/// Header names of the Lambda Invoke operation.
pub mod headers {
    pub const INVOCATION_TYPE: &str = "x-amz-invocation-type";
    pub const LOG_TYPE: &str = "x-amz-log-type";
    pub const FUNCTION_ERROR: &str = "x-amz-function-error";
    pub const LOG_RESULT: &str = "x-amz-log-result";
    pub const ERROR_TYPE: &str = "x-amzn-errortype";
}

/// A parsed server address: plain HTTP, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` as sent in `Host`.
    authority: String,
}

/// Why an endpoint string was refused.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid endpoint {0:?}: expected http://HOST:PORT")]
    Invalid(String),
    #[error("invalid endpoint {0:?}: only plain http:// is supported")]
    Https(String),
}

impl Endpoint {
    /// Parses `http://host:port[/]` (a bare `host:port` means http).
    pub fn parse(s: &str) -> Result<Self, EndpointError> {
        let trimmed = s.trim().trim_end_matches('/');
        let rest = if let Some(rest) = trimmed.strip_prefix("http://") {
            rest
        } else if trimmed.starts_with("https://") {
            return Err(EndpointError::Https(s.to_owned()));
        } else if trimmed.contains("://") {
            return Err(EndpointError::Invalid(s.to_owned()));
        } else {
            trimmed
        };
        if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(EndpointError::Invalid(s.to_owned()));
        }
        let uri: Uri = format!("http://{rest}/")
            .parse()
            .map_err(|_| EndpointError::Invalid(s.to_owned()))?;
        let authority = uri
            .authority()
            .ok_or_else(|| EndpointError::Invalid(s.to_owned()))?;
        Ok(Self {
            authority: authority.as_str().to_owned(),
        })
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The endpoint as a URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// An error answer from the server in AWS's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// AWS's error code, e.g. `ResourceNotFoundException`.
    pub code: String,
    pub message: String,
}

impl ApiError {
    /// Reads an error response: Lambda puts the code in `x-amzn-ErrorType` and the message in
    /// `{"Type","Message"}`; the JSON protocols put `{"__type","message"}` in the body.
    pub fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |names: &[&str]| -> Option<String> {
            let obj = json.as_ref()?.as_object()?;
            names
                .iter()
                .find_map(|n| obj.get(*n)?.as_str().map(str::to_owned))
        };
        let code = headers
            .get(headers::ERROR_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| field(&["__type", "code", "Code"]))
            .map(|c| {
                // "Code:http://internal..." and "com.amazon...#Code" are both seen in the wild.
                let c = c.split(':').next().unwrap_or(&c);
                c.rsplit('#').next().unwrap_or(c).to_owned()
            })
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        let message = field(&["Message", "message", "errorMessage"])
            .or_else(|| {
                let text = String::from_utf8_lossy(body).trim().to_owned();
                (!text.is_empty() && json.is_none()).then_some(text)
            })
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("request failed")
                    .to_lowercase()
            });
        Self {
            status,
            code,
            message,
        }
    }
}

/// Why a call did not produce the answer it asked for.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached at all.
    #[error("could not connect to serval at {endpoint} (is `serval server` running? set --endpoint or SERVAL_ENDPOINT)")]
    Connect {
        endpoint: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The connection failed mid-request.
    #[error("request to serval at {endpoint} failed")]
    Transport {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered with an AWS error.
    #[error("{}: {}", .0.code, .0.message)]
    Api(ApiError),
    /// The server answered 2xx with a body the client could not read.
    #[error("malformed {operation} response from the server")]
    Decode {
        operation: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The AWS error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// Whether the server was unreachable or the connection broke (not an answer).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::Transport { .. }
        )
    }
}

/// The subset of Lambda's `FunctionConfiguration` the CLI shows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: Option<String>,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub code_size: Option<u64>,
    pub code_sha256: Option<String>,
    pub memory_size: Option<u32>,
    pub timeout: Option<u32>,
    pub last_modified: Option<String>,
    pub version: Option<String>,
    pub state: Option<String>,
    pub state_reason: Option<String>,
    pub last_update_status: Option<String>,
    pub last_update_status_reason: Option<String>,
}

impl FunctionConfiguration {
    /// Whether the function can be invoked and updated now (not `Pending`, no update in
    /// progress). A server that reports neither field is taken as ready.
    pub fn is_ready(&self) -> bool {
        self.state.as_deref() != Some("Pending")
            && self.last_update_status.as_deref() != Some("InProgress")
    }

    /// Why the function failed to become ready, if it did.
    pub fn failure(&self) -> Option<String> {
        if self.state.as_deref() == Some("Failed") {
            return Some(self.state_reason.clone().unwrap_or_default());
        }
        if self.last_update_status.as_deref() == Some("Failed") {
            return Some(self.last_update_status_reason.clone().unwrap_or_default());
        }
        None
    }
}

/// `GetFunction`'s answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GetFunctionOutput {
    pub configuration: FunctionConfiguration,
}

/// `ListFunctions`' answer, one page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListFunctionsOutput {
    pub functions: Vec<FunctionConfiguration>,
    pub next_marker: Option<String>,
}

/// Environment variables of a function.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    pub variables: BTreeMap<String, String>,
}

/// `CreateFunction`'s request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFunctionInput {
    pub function_name: String,
    pub runtime: String,
    pub role: String,
    pub handler: String,
    pub code: FunctionCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
}

/// A code package inline, base64 of the zip.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionCode {
    pub zip_file: String,
}

impl FunctionCode {
    pub fn from_zip(zip: &[u8]) -> Self {
        Self {
            zip_file: base64::engine::general_purpose::STANDARD.encode(zip),
        }
    }
}

/// `UpdateFunctionConfiguration`'s request; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateFunctionConfigurationInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
}

/// A synchronous invocation's answer.
#[derive(Debug, Clone)]
pub struct InvokeOutput {
    /// `X-Amz-Function-Error`: set when the function failed.
    pub function_error: Option<String>,
    /// `X-Amz-Log-Result`: base64 of the log tail, when asked for.
    pub log_result: Option<String>,
    pub payload: Bytes,
}

/// `FilterLogEvents`' request.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterLogEventsInput {
    pub log_group_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One log event as `FilterLogEvents` returns it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilteredLogEvent {
    pub log_stream_name: Option<String>,
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: Option<i64>,
    pub event_id: Option<String>,
    /// Serval's extension: the invocation that produced the line, if any.
    pub request_id: Option<String>,
}

/// `FilterLogEvents`' answer, one page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterLogEventsOutput {
    pub events: Vec<FilteredLogEvent>,
    pub next_token: Option<String>,
}

type HttpClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A cloneable client of one Serval server (a keep-alive connection pool inside).
#[derive(Clone)]
pub struct Client {
    http: HttpClient,
    endpoint: Endpoint,
    signer: Signer,
}

/// Which AWS service a request is signed for.
#[derive(Debug, Clone, Copy)]
enum Service {
    Lambda,
    Logs,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Service::Lambda => "lambda",
            Service::Logs => "logs",
        }
    }
}

/// A raw answer: status, headers, whole body.
struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Client {
    /// A client of `endpoint`, signing with credentials from the environment.
    pub fn new(endpoint: Endpoint) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            http,
            endpoint,
            signer: Signer::from_env(),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn send(
        &self,
        service: Service,
        method: Method,
        path_and_query: &str,
        extra_headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<RawResponse, ClientError> {
        let uri: Uri = format!("{}{}", self.endpoint.url(), path_and_query)
            .parse()
            .expect("the endpoint and an encoded path form a valid URI");
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(self.endpoint.authority()).expect("an authority is ASCII"),
        );
        for (name, value) in extra_headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        self.signer.sign(
            service.signing_name(),
            &method,
            &uri,
            &mut headers,
            &body,
            time::OffsetDateTime::now_utc(),
        );
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;

        let response = self.http.request(request).await.map_err(|source| {
            if source.is_connect() {
                ClientError::Connect {
                    endpoint: self.endpoint.url(),
                    source,
                }
            } else {
                ClientError::Transport {
                    endpoint: self.endpoint.url(),
                    source: Box::new(source),
                }
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|source| ClientError::Transport {
                endpoint: self.endpoint.url(),
                source,
            })?
            .to_bytes();
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn lambda<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let mut extra = Vec::new();
        if body.is_some() {
            extra.push(("content-type", "application/json".to_owned()));
        }
        let response = self
            .send(
                Service::Lambda,
                method,
                &format!("{LAMBDA_PREFIX}{path_and_query}"),
                &extra,
                Bytes::from(body.unwrap_or_default()),
            )
            .await?;
        decode(operation, response)
    }

    /// `CreateFunctionUrlConfig` with `AuthType: NONE` on the unqualified function; returns
    /// the URL (`http://<url-id>.lambda-url.<region>.localhost:<port>/`).
    pub async fn create_function_url(&self, name: &str) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Out {
            function_url: String,
        }
        let path = format!("/2021-10-31/functions/{}/url", uri_encode(name));
        let response = self
            .send(
                Service::Lambda,
                Method::POST,
                &path,
                &[("content-type", "application/json".to_owned())],
                Bytes::from_static(br#"{"AuthType":"NONE"}"#),
            )
            .await?;
        let out: Out = decode("CreateFunctionUrlConfig", response)?;
        Ok(out.function_url)
    }

    /// `GetFunction`; `None` when the function does not exist.
    pub async fn get_function(&self, name: &str) -> Result<Option<GetFunctionOutput>, ClientError> {
        let path = format!("/functions/{}", uri_encode(name));
        match self.lambda("GetFunction", Method::GET, &path, None).await {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `CreateFunction`.
    pub async fn create_function(
        &self,
        input: &CreateFunctionInput,
    ) -> Result<FunctionConfiguration, ClientError> {
        let body = serde_json::to_vec(input).expect("a request serializes");
        self.lambda("CreateFunction", Method::POST, "/functions", Some(body))
            .await
    }

    /// `UpdateFunctionCode` with an inline zip.
    pub async fn update_function_code(
        &self,
        name: &str,
        zip: &[u8],
    ) -> Result<FunctionConfiguration, ClientError> {
        let body = serde_json::to_vec(&FunctionCode::from_zip(zip)).expect("a request serializes");
        let path = format!("/functions/{}/code", uri_encode(name));
        self.lambda("UpdateFunctionCode", Method::PUT, &path, Some(body))
            .await
    }

    /// `UpdateFunctionConfiguration`.
    pub async fn update_function_configuration(
        &self,
        name: &str,
        input: &UpdateFunctionConfigurationInput,
    ) -> Result<FunctionConfiguration, ClientError> {
        let body = serde_json::to_vec(input).expect("a request serializes");
        let path = format!("/functions/{}/configuration", uri_encode(name));
        self.lambda(
            "UpdateFunctionConfiguration",
            Method::PUT,
            &path,
            Some(body),
        )
        .await
    }

    /// `DeleteFunction`.
    pub async fn delete_function(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/functions/{}", uri_encode(name));
        let response = self
            .send(
                Service::Lambda,
                Method::DELETE,
                &format!("{LAMBDA_PREFIX}{path}"),
                &[],
                Bytes::new(),
            )
            .await?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(ClientError::Api(ApiError::from_response(
                response.status,
                &response.headers,
                &response.body,
            )))
        }
    }

    /// `PutFunctionConcurrency`: reserves `reserved` concurrent executions (0 throttles the
    /// function).
    pub async fn put_function_concurrency(
        &self,
        name: &str,
        reserved: u32,
    ) -> Result<(), ClientError> {
        let path = format!("/2017-10-31/functions/{}/concurrency", uri_encode(name));
        let body =
            serde_json::to_vec(&serde_json::json!({ "ReservedConcurrentExecutions": reserved }))
                .expect("a request serializes");
        let response = self
            .send(
                Service::Lambda,
                Method::PUT,
                &path,
                &[("content-type", "application/json".to_owned())],
                Bytes::from(body),
            )
            .await?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(ClientError::Api(ApiError::from_response(
                response.status,
                &response.headers,
                &response.body,
            )))
        }
    }

    /// `ListFunctions`, one page.
    pub async fn list_functions(
        &self,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<ListFunctionsOutput, ClientError> {
        let mut query = Vec::new();
        if let Some(marker) = marker {
            query.push(format!("Marker={}", uri_encode(marker)));
        }
        if let Some(max) = max_items {
            query.push(format!("MaxItems={max}"));
        }
        let path = if query.is_empty() {
            "/functions".to_owned()
        } else {
            format!("/functions?{}", query.join("&"))
        };
        self.lambda("ListFunctions", Method::GET, &path, None).await
    }

    /// A synchronous (`RequestResponse`) `Invoke`. A function's failure is data in the output
    /// (`function_error`), not an error.
    pub async fn invoke(
        &self,
        name: &str,
        payload: Bytes,
        log_tail: bool,
    ) -> Result<InvokeOutput, ClientError> {
        let path = format!("{LAMBDA_PREFIX}/functions/{}/invocations", uri_encode(name));
        let mut extra = vec![(headers::INVOCATION_TYPE, "RequestResponse".to_owned())];
        if log_tail {
            extra.push((headers::LOG_TYPE, "Tail".to_owned()));
        }
        let response = self
            .send(Service::Lambda, Method::POST, &path, &extra, payload)
            .await?;
        if !response.status.is_success() {
            return Err(ClientError::Api(ApiError::from_response(
                response.status,
                &response.headers,
                &response.body,
            )));
        }
        let header = |name: &str| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(InvokeOutput {
            function_error: header(headers::FUNCTION_ERROR),
            log_result: header(headers::LOG_RESULT),
            payload: response.body,
        })
    }

    /// CloudWatch Logs `FilterLogEvents`, one page.
    pub async fn filter_log_events(
        &self,
        input: &FilterLogEventsInput,
    ) -> Result<FilterLogEventsOutput, ClientError> {
        let body = serde_json::to_vec(input).expect("a request serializes");
        let extra = [
            ("content-type", "application/x-amz-json-1.1".to_owned()),
            ("x-amz-target", "Logs_20140328.FilterLogEvents".to_owned()),
        ];
        let response = self
            .send(Service::Logs, Method::POST, "/", &extra, Bytes::from(body))
            .await?;
        decode("FilterLogEvents", response)
    }
}

fn decode<T: DeserializeOwned>(
    operation: &'static str,
    response: RawResponse,
) -> Result<T, ClientError> {
    if !response.status.is_success() {
        return Err(ClientError::Api(ApiError::from_response(
            response.status,
            &response.headers,
            &response.body,
        )));
    }
    let body: &[u8] = if response.body.is_empty() {
        b"{}"
    } else {
        &response.body
    };
    serde_json::from_slice(body).map_err(|source| ClientError::Decode { operation, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:9000/")
                .unwrap()
                .authority(),
            "127.0.0.1:9000"
        );
        assert_eq!(
            Endpoint::parse("localhost:9001").unwrap().url(),
            "http://localhost:9001"
        );
        assert!(matches!(
            Endpoint::parse("https://x:1"),
            Err(EndpointError::Https(_))
        ));
        assert!(Endpoint::parse("http://x:1/path").is_err());
        assert!(Endpoint::parse("").is_err());
    }

    #[test]
    fn reads_lambda_error_shape() {
        let mut headers = HeaderMap::new();
        headers.insert(
            headers::ERROR_TYPE,
            HeaderValue::from_static("ResourceNotFoundException"),
        );
        let e = ApiError::from_response(
            StatusCode::NOT_FOUND,
            &headers,
            br#"{"Type":"User","Message":"Function not found: arn:x"}"#,
        );
        assert_eq!(e.code, "ResourceNotFoundException");
        assert_eq!(e.message, "Function not found: arn:x");
    }

    #[test]
    fn reads_json_protocol_error_shape() {
        let e = ApiError::from_response(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"__type":"com.amazonaws.logs#ResourceNotFoundException","message":"no group"}"#,
        );
        assert_eq!(e.code, "ResourceNotFoundException");
        assert_eq!(e.message, "no group");
    }

    #[test]
    fn error_without_body_names_the_status() {
        let e = ApiError::from_response(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"");
        assert_eq!(e.code, "HTTP 502");
        assert_eq!(e.message, "bad gateway");
    }

    #[test]
    fn function_configuration_tolerates_missing_fields() {
        let f: FunctionConfiguration =
            serde_json::from_str(r#"{"FunctionName":"f","MemorySize":128,"Extra":1}"#).unwrap();
        assert_eq!(f.function_name, "f");
        assert_eq!(f.memory_size, Some(128));
        assert!(f.is_ready());
    }
}
