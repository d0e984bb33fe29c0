//! The control plane's one error type, [`ApiError`], and how it renders in AWS's shapes.
//!
//! Lambda's REST-JSON protocol: status code from the error's model, header
//! `x-amzn-ErrorType: <Name>` (botocore reads the error code from it), body
//! `{"Type": "User"|"Service", "Message": "...", "message": "..."}` — AWS's documented shape
//! uses `Message`, while the service model spells the member `message` for some exceptions
//! (InvalidParameterValue, ResourceConflict, ...). Both keys carry the same text, so every SDK's
//! deserializer, keyed on either spelling, fills the exception's message.
//!
//! AWS's JSON 1.1 protocol (CloudWatch Logs, EventBridge): one error type, [`AmzJsonError`],
//! with status 400 (500 for platform failures), header `x-amzn-ErrorType: <Name>`, body
//! `{"__type": "<Name>", "message": "..."}`, content type `application/x-amz-json-1.1`; each
//! service names its platform failure ([`AmzJsonService`]) and keeps its own constructors. The
//! protocol's request parsing and answers are here too.
//!
//! Platform failures (`ServiceException`) are logged here, once, with their source chain; the
//! caller only sees a short message. Client mistakes are not logged.
//!
//! Not for: deciding which error a situation is — handlers do that, using the `From`
//! conversions below only where the mapping is unambiguous.

use std::error::Error as StdError;
use std::marker::PhantomData;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serval_model::ValidationError;
use serval_store::{CodeError, StoreError};

/// AWS's header naming the error type of a failed REST-JSON call.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// The AWS error names Serval's Lambda API renders, each with its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 404: the function, qualifier or route does not exist.
    ResourceNotFound,
    /// 409: the function already exists.
    ResourceConflict,
    /// 400: a parameter has a value AWS refuses.
    InvalidParameterValue,
    /// 400: a parameter breaks the API's schema (`1 validation error detected: ...`).
    Validation,
    /// 412: the `RevisionId` precondition failed.
    PreconditionFailed,
    /// 429: throttled; rendered with `Reason`.
    TooManyRequests,
    /// 413: the request or its payload is too large.
    RequestEntityTooLarge,
    /// 400: the request body is not the JSON the operation expects.
    InvalidRequestContent,
    /// 415: a content type the operation does not take.
    UnsupportedMediaType,
    /// 404: no operation at this method and path.
    UnknownOperation,
    /// 500: Serval itself failed.
    Service,
    /// 503 `ServiceException`: Serval cannot take the request now (shutting down, no queue);
    /// SDKs retry 503s.
    ServiceUnavailable,
    /// 404: a version or alias has no provisioned concurrency config.
    ProvisionedConcurrencyConfigNotFound,
}

impl ErrorCode {
    /// The name sent in `x-amzn-ErrorType`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ResourceNotFound => "ResourceNotFoundException",
            ErrorCode::ResourceConflict => "ResourceConflictException",
            ErrorCode::InvalidParameterValue => "InvalidParameterValueException",
            ErrorCode::Validation => "ValidationException",
            ErrorCode::PreconditionFailed => "PreconditionFailedException",
            ErrorCode::TooManyRequests => "TooManyRequestsException",
            ErrorCode::RequestEntityTooLarge => "RequestEntityTooLargeException",
            ErrorCode::InvalidRequestContent => "InvalidRequestContentException",
            ErrorCode::UnsupportedMediaType => "UnsupportedMediaTypeException",
            ErrorCode::UnknownOperation => "UnknownOperationException",
            ErrorCode::Service | ErrorCode::ServiceUnavailable => "ServiceException",
            ErrorCode::ProvisionedConcurrencyConfigNotFound => {
                "ProvisionedConcurrencyConfigNotFoundException"
            }
        }
    }

    /// The HTTP status AWS uses.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ResourceNotFound
            | ErrorCode::UnknownOperation
            | ErrorCode::ProvisionedConcurrencyConfigNotFound => StatusCode::NOT_FOUND,
            ErrorCode::ResourceConflict => StatusCode::CONFLICT,
            ErrorCode::InvalidParameterValue
            | ErrorCode::Validation
            | ErrorCode::InvalidRequestContent => StatusCode::BAD_REQUEST,
            ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RequestEntityTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Service => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A failed Lambda control-plane or invoke call, rendered in AWS's REST-JSON error shape.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// `TooManyRequestsException`'s `Reason`.
    reason: Option<&'static str>,
    /// A platform failure's cause, logged when the error is rendered.
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl ApiError {
    /// An error of `code` with AWS's message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reason: None,
            source: None,
        }
    }

    /// `ResourceNotFoundException` for a function, worded as AWS words it.
    pub fn function_not_found(arn: &str) -> Self {
        Self::new(
            ErrorCode::ResourceNotFound,
            format!("Function not found: {arn}"),
        )
    }

    /// `InvalidParameterValueException`.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }

    /// `InvalidRequestContentException`.
    pub fn invalid_content(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequestContent, message)
    }

    /// `TooManyRequestsException` with AWS's `Reason`.
    pub fn too_many_requests(reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(ErrorCode::TooManyRequests, "Rate Exceeded.")
        }
    }

    /// `ValidationException` for a required member that is missing.
    pub fn missing(field: &str) -> Self {
        Self::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"),
        )
    }

    /// `ServiceException`: Serval failed doing `what` (lowercase, names the object). Logged once
    /// at ERROR, with `source`, when rendered. (A `ServiceException` built with [`ApiError::new`]
    /// has no source and is not logged: an expected condition such as shutdown.)
    pub fn service(what: impl Into<String>, source: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            source: Some(Box::new(source)),
            ..Self::new(ErrorCode::Service, what)
        }
    }

    /// `ServiceException` for a background task that died (a panic in `spawn_blocking`).
    pub fn task_failed(err: tokio::task::JoinError) -> Self {
        Self::service("a worker task failed", err)
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message sent to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Formats an error and its sources as `a: b: c`.
pub(crate) fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = self.source.as_deref() {
            tracing::error!(error = %chain(source), "api: {}", self.message);
        }
        let mut body = serde_json::Map::new();
        let kind = if self.code.status().is_server_error() {
            "Service"
        } else {
            "User"
        };
        body.insert("Type".into(), kind.into());
        body.insert("message".into(), self.message.clone().into());
        body.insert("Message".into(), self.message.into());
        if let Some(reason) = self.reason {
            body.insert("Reason".into(), reason.into());
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.code.status(), bytes).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            ERROR_TYPE_HEADER,
            HeaderValue::from_static(self.code.name()),
        );
        resp
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        ApiError::task_failed(err)
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        let code = if err.is_schema_violation() {
            ErrorCode::Validation
        } else {
            ErrorCode::InvalidParameterValue
        };
        ApiError::new(code, err.to_string())
    }
}

impl From<CodeError> for ApiError {
    fn from(err: CodeError) -> Self {
        match err {
            CodeError::TooLarge { .. } => {
                ApiError::new(ErrorCode::RequestEntityTooLarge, err.to_string())
            }
            CodeError::Io { .. } | CodeError::Database { .. } => {
                ApiError::service("failed to store code package", err)
            }
            _ => ApiError::invalid_parameter(err.to_string()),
        }
    }
}

/// Maps a store failure that has no operation-specific wording: client mistakes keep the
/// store's message under its AWS name, platform failures become `ServiceException`.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let code = match err.aws_error_type() {
            "ResourceConflictException" => ErrorCode::ResourceConflict,
            "ResourceNotFoundException" => ErrorCode::ResourceNotFound,
            "PreconditionFailedException" => ErrorCode::PreconditionFailed,
            "InvalidParameterValueException" | "InvalidParameterException" => {
                ErrorCode::InvalidParameterValue
            }
            _ => return ApiError::service("metadata store failed", err),
        };
        ApiError::new(code, err.to_string())
    }
}

/// The JSON 1.1 content type of CloudWatch Logs and EventBridge requests and responses.
pub const AMZ_JSON_1_1: &str = "application/x-amz-json-1.1";

/// A service that speaks AWS's JSON 1.1 protocol: what its errors do not share with the
/// other such services' errors.
pub trait AmzJsonService: std::fmt::Debug + 'static {
    /// Names the service in Serval's log when a platform failure is rendered.
    const LOG_NAME: &'static str;
    /// The AWS error type of a platform failure (status 500).
    const SERVICE_ERROR: &'static str;
}

/// CloudWatch Logs (`Logs_20140328.*`).
#[derive(Debug)]
pub enum CloudWatchLogs {}

impl AmzJsonService for CloudWatchLogs {
    const LOG_NAME: &'static str = "logs api";
    const SERVICE_ERROR: &'static str = "ServiceUnavailableException";
}

/// A failed call of a JSON 1.1 service `S`, rendered as `{"__type": "<Name>", "message": "..."}`
/// with the name in `x-amzn-ErrorType` too. Each service adds its own constructors and its own
/// mapping of store failures.
#[derive(Debug)]
pub struct AmzJsonError<S> {
    type_name: &'static str,
    status: StatusCode,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
    service: PhantomData<S>,
}

/// A failed CloudWatch Logs call.
pub type LogsError = AmzJsonError<CloudWatchLogs>;

impl<S: AmzJsonService> AmzJsonError<S> {
    /// A client error (status 400) of AWS type `type_name`.
    pub fn client(type_name: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_name,
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            source: None,
            service: PhantomData,
        }
    }

    /// The service's platform failure ([`AmzJsonService::SERVICE_ERROR`], status 500): Serval
    /// failed doing `what`. Logged once at ERROR, with `source`, when rendered.
    pub fn service(what: impl Into<String>, source: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            type_name: S::SERVICE_ERROR,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: what.into(),
            source: Some(Box::new(source)),
            service: PhantomData,
        }
    }

    /// The AWS error type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The message sent to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<S> std::fmt::Display for AmzJsonError<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.type_name, self.message)
    }
}

impl<S: AmzJsonService> StdError for AmzJsonError<S> {}

impl<S: AmzJsonService> IntoResponse for AmzJsonError<S> {
    fn into_response(self) -> Response {
        if let Some(source) = self.source.as_deref() {
            tracing::error!(error = %chain(source), "{}: {}", S::LOG_NAME, self.message);
        }
        let body = serde_json::json!({ "__type": self.type_name, "message": self.message });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.status, bytes).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON_1_1));
        headers.insert(ERROR_TYPE_HEADER, HeaderValue::from_static(self.type_name));
        resp
    }
}

/// A worker task that died (a panic in `spawn_blocking`).
impl<S: AmzJsonService> From<tokio::task::JoinError> for AmzJsonError<S> {
    fn from(err: tokio::task::JoinError) -> Self {
        Self::service("a worker task failed", err)
    }
}

/// A JSON 1.1 request body that is not the JSON its operation takes: every JSON 1.1 service
/// answers it with `SerializationException`.
#[derive(Debug)]
pub(crate) struct MalformedBody(serde_json::Error);

impl<S: AmzJsonService> From<MalformedBody> for AmzJsonError<S> {
    fn from(err: MalformedBody) -> Self {
        Self::client(
            "SerializationException",
            format!("Could not parse request body: {}", err.0),
        )
    }
}

/// Parses a JSON 1.1 request body; a blank body is `{}`.
pub(crate) fn parse_amz_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MalformedBody> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(MalformedBody)
}

/// A JSON 1.1 answer: 200 with `value` as its body.
pub(crate) fn amz_json_response<S: AmzJsonService, T: Serialize>(
    value: &T,
) -> Result<Response, AmzJsonError<S>> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| AmzJsonError::service("failed to encode response", e))?;
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON_1_1));
    Ok(resp)
}

/// 200 with an empty body: what AWS's JSON 1.1 services send for operations without output.
pub(crate) fn amz_json_empty_ok() -> Response {
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON_1_1));
    resp
}

impl LogsError {
    /// `InvalidParameterException`.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::client("InvalidParameterException", message)
    }

    /// `ResourceNotFoundException` for a log group.
    pub fn group_not_found() -> Self {
        Self::client(
            "ResourceNotFoundException",
            "The specified log group does not exist.",
        )
    }
}

impl From<StoreError> for LogsError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::LogGroupNotFound { .. } | StoreError::LogStreamNotFound { .. } => {
                LogsError::client("ResourceNotFoundException", err.to_string())
            }
            StoreError::NotFound { .. } => {
                LogsError::client("ResourceNotFoundException", err.to_string())
            }
            StoreError::InvalidToken { .. }
            | StoreError::InvalidFilterPattern { .. }
            | StoreError::InvalidParameter { .. }
            | StoreError::InvalidMarker { .. } => LogsError::invalid_parameter(err.to_string()),
            _ => LogsError::service("log store failed", err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(resp: Response) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn renders_lambda_error_shape_with_modeled_message_key() {
        let (status, headers, body) =
            render(ApiError::function_not_found("arn:x").into_response()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[ERROR_TYPE_HEADER], "ResourceNotFoundException");
        assert_eq!(body["Type"], "User");
        assert_eq!(body["Message"], "Function not found: arn:x");

        let (status, _, body) = render(
            ApiError::new(ErrorCode::ResourceConflict, "Function already exist: f").into_response(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["message"], "Function already exist: f");
        assert_eq!(body["Message"], "Function already exist: f");
    }

    #[tokio::test]
    async fn renders_throttle_reason_and_service_type() {
        let (status, _, body) = render(
            ApiError::too_many_requests("ConcurrentInvocationLimitExceeded").into_response(),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["Reason"], "ConcurrentInvocationLimitExceeded");
        let io = std::io::Error::other("disk full");
        let (status, headers, body) =
            render(ApiError::service("failed to write", io).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(headers[ERROR_TYPE_HEADER], "ServiceException");
        assert_eq!(body["Type"], "Service");
        assert_eq!(body["Message"], "failed to write");
    }

    #[test]
    fn maps_validation_errors_by_kind() {
        let schema = serval_model::validate_memory_mb(1).unwrap_err();
        assert_eq!(ApiError::from(schema).code(), ErrorCode::Validation);
        let param = serval_model::validate_memory_mb(1_000_000).unwrap_err();
        assert_eq!(
            ApiError::from(param).code(),
            ErrorCode::InvalidParameterValue
        );
    }

    #[tokio::test]
    async fn renders_json_1_1_logs_errors() {
        let (status, headers, body) = render(LogsError::group_not_found().into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CONTENT_TYPE], AMZ_JSON_1_1);
        assert_eq!(body["__type"], "ResourceNotFoundException");
        assert_eq!(body["message"], "The specified log group does not exist.");
    }

    #[tokio::test]
    async fn renders_json_1_1_service_failures_and_malformed_bodies() {
        let io = std::io::Error::other("disk full");
        let (status, headers, body) =
            render(LogsError::service("log store failed", io).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(headers[ERROR_TYPE_HEADER], "ServiceUnavailableException");
        assert_eq!(body["message"], "log store failed");

        let malformed = parse_amz_json::<serde_json::Value>(b"{").unwrap_err();
        let (status, headers, body) = render(LogsError::from(malformed).into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CONTENT_TYPE], AMZ_JSON_1_1);
        assert_eq!(body["__type"], "SerializationException");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .starts_with("Could not parse request body: "));
        assert_eq!(
            parse_amz_json::<serde_json::Value>(b" \n").unwrap(),
            serde_json::json!({})
        );
    }
}
