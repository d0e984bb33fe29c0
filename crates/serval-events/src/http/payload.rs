//! The Lambda proxy payloads of HTTP triggers: the event a function receives for an HTTP
//! request (API Gateway payload format 2.0, used by Function URLs and HTTP APIs, and 1.0,
//! HTTP APIs only) and the HTTP response made from what the function returned.
//!
//! Pure: no I/O, no engine. Formats:
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html>
//! and <https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html>.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use time::OffsetDateTime;

/// The request as received, after the gateway removed any path-based prefix
/// (`/_aws/lambda-url/<id>`).
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// `GET`, `POST`...
    pub method: &'a str,
    /// The path as received (percent-encoding kept), starting with `/`; for an HTTP API it
    /// still holds a named stage's prefix (`/dev/items/1`), as on AWS.
    pub raw_path: &'a str,
    /// The query string without `?` (empty if none), as received.
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: IpAddr,
    /// `HTTP/1.1`.
    pub protocol: &'a str,
    /// The invocation's request id (Function URLs) or API Gateway's request id.
    pub request_id: &'a str,
    /// When the request arrived.
    pub time: OffsetDateTime,
}

/// What the trigger adds around the request.
#[derive(Debug, Clone, Copy)]
pub struct ContextInfo<'a> {
    pub account_id: &'a str,
    /// The URL id of a Function URL, the API id of an HTTP API.
    pub api_id: &'a str,
    /// The `Host` the request was addressed to, without port (`<id>.lambda-url.<region>.localhost`);
    /// for the path-based form, the name the host-based form would have.
    pub domain_name: &'a str,
    /// The first label of `domain_name`.
    pub domain_prefix: &'a str,
    /// `$default` for Function URLs; the selected route's key for HTTP APIs.
    pub route_key: &'a str,
    /// `$default` or the stage's name.
    pub stage: &'a str,
    /// The route's path with variables (`/items/{id}`), for format 1.0's `resource`; `None`
    /// for `$default` routes and Function URLs.
    pub resource_path: Option<&'a str>,
    /// `None` for Function URLs and routes without variables.
    pub path_parameters: Option<&'a BTreeMap<String, String>>,
    /// `None` when the stage has none.
    pub stage_variables: Option<&'a BTreeMap<String, String>>,
}

/// The HTTP response to send back.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    /// Header names lower-case; `set-cookie` may repeat.
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The function returned something the format cannot turn into a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Lambda proxy response: {0}")]
pub struct MalformedResponse(pub String);

/// Whether a request or response body of this `Content-Type` is passed as text (not
/// base64): `text/*`, JSON, XML, JavaScript and their `+json` / `+xml` kinds.
pub fn is_text_content_type(content_type: Option<&str>) -> bool {
    let _ = content_type;
    todo!()
}

/// The payload format 2.0 event: `version`, `routeKey`, `rawPath`, `rawQueryString`,
/// `cookies` (from `Cookie`, split on `; `; absent without cookies), `headers` (names
/// lower-cased, repeated values comma-joined, no `cookie`), `queryStringParameters`
/// (decoded, repeated values comma-joined; absent without a query), `requestContext`
/// (`accountId`, `apiId`, `domainName`, `domainPrefix`, `http{method, path, protocol,
/// sourceIp, userAgent}`, `requestId`, `routeKey`, `stage`, `time` as
/// `12/Mar/2020:19:03:58 +0000`, `timeEpoch` in ms), `pathParameters`, `stageVariables`,
/// `body` (absent when empty; base64 unless text) and `isBase64Encoded`.
pub fn event_v2(req: &RequestInfo<'_>, ctx: &ContextInfo<'_>) -> Vec<u8> {
    let _ = (req, ctx);
    todo!()
}

/// The payload format 1.0 event (REST-API style): `version: "1.0"`, `resource`, `path`,
/// `httpMethod`, `headers` / `multiValueHeaders`, `queryStringParameters` /
/// `multiValueQueryStringParameters`, `requestContext` (with `httpMethod`, `path`,
/// `identity.sourceIp`, `identity.userAgent`, `requestTime`, `requestTimeEpoch`, `stage`,
/// `resourcePath`, `requestId`, ...), `pathParameters`, `stageVariables`, `body`,
/// `isBase64Encoded`.
pub fn event_v1(req: &RequestInfo<'_>, ctx: &ContextInfo<'_>) -> Vec<u8> {
    let _ = (req, ctx);
    todo!()
}

/// The response of a format 2.0 function (Function URLs and HTTP APIs): an object with
/// `statusCode` gives `{statusCode, headers, multiValueHeaders, cookies (→ set-cookie), body,
/// isBase64Encoded}`; any other valid JSON (an object without `statusCode`, a string, a
/// number...) is sent as it was returned, 200 `application/json`. Invalid JSON or a bad
/// `statusCode` is malformed.
pub fn response_v2(payload: &[u8]) -> Result<HttpResponse, MalformedResponse> {
    let _ = payload;
    todo!()
}

/// The response of a format 1.0 function: must be an object with `statusCode`; `headers`,
/// `multiValueHeaders`, `body`, `isBase64Encoded`.
pub fn response_v1(payload: &[u8]) -> Result<HttpResponse, MalformedResponse> {
    let _ = payload;
    todo!()
}
