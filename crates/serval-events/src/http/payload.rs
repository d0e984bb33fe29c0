//! The Lambda proxy payloads of HTTP triggers: the event a function receives for an HTTP
//! request (API Gateway payload format 2.0, used by Function URLs and HTTP APIs, and 1.0,
//! HTTP APIs only) and the HTTP response made from what the function returned.
//!
//! Pure: no I/O, no engine. Formats:
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html>
//! and <https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html>.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
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
///
/// Anything else, including no content type at all and form posts
/// (`application/x-www-form-urlencoded`), is binary: the event carries it base64-encoded.
pub fn is_text_content_type(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    if kind.is_empty() || subtype.is_empty() {
        return false;
    }
    kind == "text"
        || subtype.ends_with("+json")
        || subtype.ends_with("+xml")
        || (kind == "application"
            && matches!(subtype, "json" | "xml" | "javascript" | "x-javascript"))
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
    // Borrowed from the request wherever the text is already UTF-8: an event is built per
    // request, and most of it is the request's own header text.
    let mut cookies: Vec<Cow<'_, str>> = Vec::new();
    for value in req.headers.get_all(http::header::COOKIE) {
        match value.to_str() {
            Ok(text) => cookies.extend(
                text.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(Cow::Borrowed),
            ),
            Err(_) => cookies.extend(
                header_text(value)
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Cow::Owned(c.to_owned())),
            ),
        }
    }
    let mut headers: BTreeMap<&str, Cow<'_, str>> = BTreeMap::new();
    for name in req.headers.keys() {
        if name == http::header::COOKIE {
            continue;
        }
        let mut values = req.headers.get_all(name).iter();
        let Some(first) = values.next() else {
            continue;
        };
        let mut joined = header_text(first);
        for more in values {
            let text = joined.to_mut();
            text.push(',');
            text.push_str(&header_text(more));
        }
        headers.insert(name.as_str(), joined);
    }
    let query = parse_query(req.raw_query);
    let query_string_parameters = (!query.is_empty()).then(|| {
        query
            .into_iter()
            .map(|(k, v)| (k, v.join(",")))
            .collect::<BTreeMap<_, _>>()
    });
    let (body, is_base64_encoded) = event_body(req);
    let event = EventV2 {
        version: "2.0",
        route_key: ctx.route_key,
        raw_path: req.raw_path,
        raw_query_string: req.raw_query,
        cookies: (!cookies.is_empty()).then_some(cookies),
        headers,
        query_string_parameters,
        request_context: ContextV2 {
            account_id: ctx.account_id,
            api_id: ctx.api_id,
            domain_name: ctx.domain_name,
            domain_prefix: ctx.domain_prefix,
            http: HttpV2 {
                method: req.method,
                path: percent_decode(req.raw_path, false),
                protocol: req.protocol,
                source_ip: req.source_ip.to_string(),
                user_agent: user_agent(req.headers),
            },
            request_id: req.request_id,
            route_key: ctx.route_key,
            stage: ctx.stage,
            time: clf_time(req.time),
            time_epoch: epoch_millis(req.time),
        },
        path_parameters: ctx.path_parameters,
        stage_variables: ctx.stage_variables,
        body,
        is_base64_encoded,
    };
    let mut out = Vec::with_capacity(1024 + req.body.len() * 4 / 3);
    serde_json::to_writer(&mut out, &event)
        .expect("an event of strings and maps always serializes");
    out
}

/// The payload format 1.0 event (REST-API style): `version: "1.0"`, `resource`, `path`,
/// `httpMethod`, `headers` / `multiValueHeaders`, `queryStringParameters` /
/// `multiValueQueryStringParameters`, `requestContext` (with `httpMethod`, `path`,
/// `identity.sourceIp`, `identity.userAgent`, `requestTime`, `requestTimeEpoch`, `stage`,
/// `resourcePath`, `requestId`, ...), `pathParameters`, `stageVariables`, `body`,
/// `isBase64Encoded`.
///
/// As in REST APIs' proxy events, the single-value `headers` and `queryStringParameters`
/// hold the last of repeated values (the `multiValue*` members hold them all), the `Cookie`
/// header stays a header, and absent members are `null`.
pub fn event_v1(req: &RequestInfo<'_>, ctx: &ContextInfo<'_>) -> Vec<u8> {
    let mut multi_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in req.headers.keys() {
        let values = req
            .headers
            .get_all(name)
            .iter()
            .map(|v| header_text(v).into_owned())
            .collect();
        multi_headers.insert(name.as_str().to_owned(), values);
    }
    let headers = last_values(&multi_headers);
    let query = parse_query(req.raw_query);
    let (query_single, query_multi) = if query.is_empty() {
        (None, None)
    } else {
        (Some(last_values(&query)), Some(query))
    };
    let path = percent_decode(req.raw_path, false);
    let resource = ctx
        .resource_path
        .map_or_else(|| path.clone(), str::to_owned);
    let (body, is_base64_encoded) = event_body(req);
    let event = EventV1 {
        version: "1.0",
        resource: resource.clone(),
        path: path.clone(),
        http_method: req.method,
        headers,
        multi_value_headers: multi_headers,
        query_string_parameters: query_single,
        multi_value_query_string_parameters: query_multi,
        request_context: ContextV1 {
            account_id: ctx.account_id,
            api_id: ctx.api_id,
            domain_name: ctx.domain_name,
            domain_prefix: ctx.domain_prefix,
            extended_request_id: req.request_id,
            http_method: req.method,
            identity: IdentityV1 {
                access_key: None,
                account_id: None,
                caller: None,
                cognito_authentication_provider: None,
                cognito_authentication_type: None,
                cognito_identity_id: None,
                cognito_identity_pool_id: None,
                principal_org_id: None,
                source_ip: req.source_ip.to_string(),
                user: None,
                user_agent: user_agent(req.headers).into_owned(),
                user_arn: None,
            },
            path,
            protocol: req.protocol,
            request_id: req.request_id,
            request_time: clf_time(req.time),
            request_time_epoch: epoch_millis(req.time),
            resource_path: resource,
            stage: ctx.stage,
        },
        path_parameters: ctx.path_parameters,
        stage_variables: ctx.stage_variables,
        body,
        is_base64_encoded,
    };
    serde_json::to_vec(&event).expect("an event of strings and maps always serializes")
}

/// The response of a format 2.0 function (Function URLs and HTTP APIs): an object with
/// `statusCode` gives `{statusCode, headers, multiValueHeaders, cookies (→ set-cookie), body,
/// isBase64Encoded}`; any other valid JSON (an object without `statusCode`, a string, a
/// number...) is sent as it was returned, 200 `application/json`. Invalid JSON or a bad
/// `statusCode` is malformed.
///
/// A response with `statusCode` but no `content-type` header gets
/// `text/plain; charset=utf-8`, as HTTP APIs answer (AWS documents no default; this is the
/// behaviour AWS's own Lambda Test Tool replicates, `aws/aws-lambda-dotnet`,
/// `ApiGatewayResponseExtensions.cs`). A function that sets `content-type` to `null` gets
/// none.
pub fn response_v2(payload: &Bytes) -> Result<HttpResponse, MalformedResponse> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(not_json)?;
    match value {
        serde_json::Value::Object(object) if object.contains_key("statusCode") => {
            structured_response(object, true)
        }
        _ => {
            // Inferred format: the output itself is the body, byte for byte.
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(HttpResponse {
                status: StatusCode::OK,
                headers,
                // The runtime's own buffer: no copy.
                body: payload.clone(),
            })
        }
    }
}

/// The response of a format 1.0 function: must be an object with `statusCode`; `headers`,
/// `multiValueHeaders`, `body`, `isBase64Encoded`.
///
/// Without `content-type` the response gets `text/plain; charset=utf-8`, as for 2.0.
pub fn response_v1(payload: &Bytes) -> Result<HttpResponse, MalformedResponse> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(not_json)?;
    match value {
        serde_json::Value::Object(object) if object.contains_key("statusCode") => {
            structured_response(object, false)
        }
        serde_json::Value::Object(_) => Err(MalformedResponse(
            "the function's output has no statusCode".into(),
        )),
        other => Err(MalformedResponse(format!(
            "the function's output is a JSON {}, not an object with statusCode",
            json_kind(&other)
        ))),
    }
}

/// Where the function's output stops being JSON (the parser's own message stays out of ours).
fn not_json(e: serde_json::Error) -> MalformedResponse {
    MalformedResponse(format!(
        "the function's output is not JSON (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// The `Content-Type` a structured response without one gets.
const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Headers a function cannot set: the server frames the response itself (the body is
/// complete bytes), so a function's `content-length` or hop-by-hop headers would contradict
/// it.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The response of an object with `statusCode`; `cookies` only in format 2.0.
fn structured_response(
    mut object: serde_json::Map<String, serde_json::Value>,
    with_cookies: bool,
) -> Result<HttpResponse, MalformedResponse> {
    use serde_json::Value;

    let status = match object.get("statusCode") {
        Some(Value::Number(n)) => n
            .as_u64()
            // 1xx are not final answers (hyper would turn 101 into a protocol switch).
            .filter(|code| (200..=599).contains(code))
            .and_then(|code| u16::try_from(code).ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| MalformedResponse(format!("statusCode {n} is not an HTTP status")))?,
        other => {
            return Err(MalformedResponse(format!(
                "statusCode is a JSON {}, not an integer",
                other.map_or("nothing", json_kind)
            )))
        }
    };

    let mut headers = HeaderMap::new();
    // Whether the function named a content type, even as `null` (which asks for none).
    let mut content_type_named = false;
    // `multiValueHeaders` win over `headers` for the same name, as AWS merges them.
    let mut multi_names = Vec::new();
    match object.get("multiValueHeaders") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, values) in map {
                let name = name.to_ascii_lowercase();
                content_type_named |= name == "content-type";
                multi_names.push(name.clone());
                match values {
                    Value::Null => {}
                    Value::Array(values) => {
                        for value in values {
                            if let Some(text) = scalar_text(value, &name)? {
                                append_header(&mut headers, &name, &text);
                            }
                        }
                    }
                    other => {
                        return Err(MalformedResponse(format!(
                            "multiValueHeaders.{name} is a JSON {}, not an array",
                            json_kind(other)
                        )))
                    }
                }
            }
        }
        Some(other) => {
            return Err(MalformedResponse(format!(
                "multiValueHeaders is a JSON {}, not an object",
                json_kind(other)
            )))
        }
    }
    match object.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let name = name.to_ascii_lowercase();
                content_type_named |= name == "content-type";
                if multi_names.contains(&name) {
                    continue;
                }
                if let Some(text) = scalar_text(value, &name)? {
                    append_header(&mut headers, &name, &text);
                }
            }
        }
        Some(other) => {
            return Err(MalformedResponse(format!(
                "headers is a JSON {}, not an object",
                json_kind(other)
            )))
        }
    }
    if with_cookies {
        match object.get("cookies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(cookies)) => {
                for cookie in cookies {
                    match cookie {
                        Value::String(cookie) => append_header(&mut headers, "set-cookie", cookie),
                        other => {
                            return Err(MalformedResponse(format!(
                                "a cookie is a JSON {}, not a string",
                                json_kind(other)
                            )))
                        }
                    }
                }
            }
            Some(other) => {
                return Err(MalformedResponse(format!(
                    "cookies is a JSON {}, not an array",
                    json_kind(other)
                )))
            }
        }
    }
    for name in FRAMING_HEADERS {
        headers.remove(*name);
    }
    if !content_type_named {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(DEFAULT_CONTENT_TYPE),
        );
    }

    let is_base64_encoded = match object.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(MalformedResponse(format!(
                "isBase64Encoded is a JSON {}, not a boolean",
                json_kind(other)
            )))
        }
    };
    let body = match object.remove("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(body)) if is_base64_encoded => BASE64
            .decode(body.trim())
            .map(Bytes::from)
            .map_err(|_| MalformedResponse("body is not valid base64".into()))?,
        Some(Value::String(body)) => Bytes::from(body),
        Some(other) => {
            return Err(MalformedResponse(format!(
                "body is a JSON {}, not a string",
                json_kind(&other)
            )))
        }
    };

    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Standard base64 that accepts a body with or without padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// A header value given as a JSON string, number or boolean; `None` for `null`.
fn scalar_text(value: &serde_json::Value, name: &str) -> Result<Option<String>, MalformedResponse> {
    use serde_json::Value;
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(MalformedResponse(format!(
            "header {name} is a JSON {}, not a string",
            json_kind(other)
        ))),
    }
}

/// Appends a header, skipping a name or value HTTP cannot carry (a function's mistake must
/// not fail the whole response).
fn append_header(headers: &mut HeaderMap, name: &str, value: &str) {
    let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
        return;
    };
    let Ok(value) = HeaderValue::from_str(value) else {
        return;
    };
    headers.append(name, value);
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The event's `body` and `isBase64Encoded`: no body when empty; base64 unless the content
/// type is text and the bytes are UTF-8.
fn event_body<'a>(req: &RequestInfo<'a>) -> (Option<Cow<'a, str>>, bool) {
    if req.body.is_empty() {
        return (None, false);
    }
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if is_text_content_type(content_type) {
        if let Ok(text) = std::str::from_utf8(req.body) {
            return (Some(Cow::Borrowed(text)), false);
        }
    }
    (
        Some(Cow::Owned(
            base64::engine::general_purpose::STANDARD.encode(req.body),
        )),
        true,
    )
}

/// A header value as text; bytes outside UTF-8 are replaced rather than dropped.
fn header_text(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

fn user_agent(headers: &HeaderMap) -> Cow<'_, str> {
    headers
        .get(http::header::USER_AGENT)
        .map(header_text)
        .unwrap_or_default()
}

/// The query's parameters in order of first appearance, keys and values decoded (`+` is a
/// space, as API Gateway decodes them); a key without `=` has an empty value.
fn parse_query(raw: &str) -> BTreeMap<String, Vec<String>> {
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key, true);
        if key.is_empty() {
            continue;
        }
        params
            .entry(key)
            .or_default()
            .push(percent_decode(value, true));
    }
    params
}

fn last_values(multi: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, String> {
    multi
        .iter()
        .filter_map(|(k, v)| v.last().map(|last| (k.clone(), last.clone())))
        .collect()
}

/// Decodes `%XX` escapes (a `%` not followed by two hex digits stays as it is) and, for
/// query strings, `+` as a space; bytes that do not form UTF-8 become U+FFFD.
fn percent_decode(input: &str, plus_as_space: bool) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escaped = bytes
                    .get(i + 1)
                    .and_then(|&h| hex(h))
                    .zip(bytes.get(i + 2).and_then(|&l| hex(l)));
                if let Some((high, low)) = escaped {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `12/Mar/2020:19:03:58 +0000`: the time in UTC, as API Gateway writes `time` and
/// `requestTime`.
fn clf_time(time: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let utc = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        utc.day(),
        MONTHS[usize::from(u8::from(utc.month())) - 1],
        utc.year(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

fn epoch_millis(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventV2<'a> {
    version: &'static str,
    route_key: &'a str,
    raw_path: &'a str,
    raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookies: Option<Vec<Cow<'a, str>>>,
    headers: BTreeMap<&'a str, Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<BTreeMap<String, String>>,
    request_context: ContextV2<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_parameters: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage_variables: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContextV2<'a> {
    account_id: &'a str,
    api_id: &'a str,
    domain_name: &'a str,
    domain_prefix: &'a str,
    http: HttpV2<'a>,
    request_id: &'a str,
    route_key: &'a str,
    stage: &'a str,
    time: String,
    time_epoch: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpV2<'a> {
    method: &'a str,
    path: String,
    protocol: &'a str,
    source_ip: String,
    user_agent: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventV1<'a> {
    version: &'static str,
    resource: String,
    path: String,
    http_method: &'a str,
    headers: BTreeMap<String, String>,
    multi_value_headers: BTreeMap<String, Vec<String>>,
    query_string_parameters: Option<BTreeMap<String, String>>,
    multi_value_query_string_parameters: Option<BTreeMap<String, Vec<String>>>,
    request_context: ContextV1<'a>,
    path_parameters: Option<&'a BTreeMap<String, String>>,
    stage_variables: Option<&'a BTreeMap<String, String>>,
    body: Option<Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContextV1<'a> {
    account_id: &'a str,
    api_id: &'a str,
    domain_name: &'a str,
    domain_prefix: &'a str,
    extended_request_id: &'a str,
    http_method: &'a str,
    identity: IdentityV1,
    path: String,
    protocol: &'a str,
    request_id: &'a str,
    request_time: String,
    request_time_epoch: i64,
    resource_path: String,
    stage: &'a str,
}

/// `requestContext.identity`: only the caller's address and agent are known without IAM.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IdentityV1 {
    access_key: Option<String>,
    account_id: Option<String>,
    caller: Option<String>,
    cognito_authentication_provider: Option<String>,
    cognito_authentication_type: Option<String>,
    cognito_identity_id: Option<String>,
    cognito_identity_pool_id: Option<String>,
    principal_org_id: Option<String>,
    source_ip: String,
    user: Option<String>,
    user_agent: String,
    user_arn: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use base64::engine::general_purpose::STANDARD;
    use serde_json::{json, Value};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// 2020-03-12T19:03:58.390Z.
    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_584_039_838_390_000_000).unwrap()
    }

    fn request<'a>(
        method: &'a str,
        raw_path: &'a str,
        raw_query: &'a str,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> RequestInfo<'a> {
        RequestInfo {
            method,
            raw_path,
            raw_query,
            headers,
            body,
            source_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
            protocol: "HTTP/1.1",
            request_id: "req-1",
            time: at(),
        }
    }

    fn url_context() -> ContextInfo<'static> {
        ContextInfo {
            account_id: "123456789012",
            api_id: "abc123",
            domain_name: "abc123.lambda-url.us-east-1.localhost",
            domain_prefix: "abc123",
            route_key: "$default",
            stage: "$default",
            resource_path: None,
            path_parameters: None,
            stage_variables: None,
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("the event is JSON")
    }

    #[test]
    fn text_content_types_are_text_and_others_binary() {
        for text in [
            "text/plain",
            "text/html; charset=utf-8",
            "TEXT/CSV",
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/xml",
            "application/javascript",
            "application/x-javascript",
            "application/ld+json",
            "application/vnd.api+json",
            "image/svg+xml",
            "application/atom+xml ; q=1",
        ] {
            assert!(is_text_content_type(Some(text)), "{text}");
        }
        for binary in [
            "application/octet-stream",
            "image/png",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/pdf",
            "json",
            "",
            "/",
            "text",
        ] {
            assert!(!is_text_content_type(Some(binary)), "{binary}");
        }
        assert!(!is_text_content_type(None));
    }

    #[test]
    fn v2_event_has_aws_shape() {
        let h = headers(&[
            ("Content-Type", "application/json"),
            ("User-Agent", "curl/8.0"),
            ("X-Multi", "a"),
            ("x-multi", "b"),
            ("Cookie", "c1=v1; c2=v2"),
            ("cookie", "c3=v3;;  "),
        ]);
        let req = request(
            "POST",
            "/my/p%20ath",
            "p1=v1&p1=v2&p2=a%20b+c&flag",
            &h,
            br#"{"k":1}"#,
        );
        let event = parse(&event_v2(&req, &url_context()));
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "$default");
        assert_eq!(event["rawPath"], "/my/p%20ath");
        assert_eq!(event["rawQueryString"], "p1=v1&p1=v2&p2=a%20b+c&flag");
        assert_eq!(event["cookies"], json!(["c1=v1", "c2=v2", "c3=v3"]));
        assert_eq!(
            event["headers"],
            json!({
                "content-type": "application/json",
                "user-agent": "curl/8.0",
                "x-multi": "a,b",
            })
        );
        assert_eq!(
            event["queryStringParameters"],
            json!({"p1": "v1,v2", "p2": "a b c", "flag": ""})
        );
        assert_eq!(
            event["requestContext"],
            json!({
                "accountId": "123456789012",
                "apiId": "abc123",
                "domainName": "abc123.lambda-url.us-east-1.localhost",
                "domainPrefix": "abc123",
                "http": {
                    "method": "POST",
                    "path": "/my/p ath",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.7",
                    "userAgent": "curl/8.0",
                },
                "requestId": "req-1",
                "routeKey": "$default",
                "stage": "$default",
                "time": "12/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1_584_039_838_390_i64,
            })
        );
        assert_eq!(event["body"], r#"{"k":1}"#);
        assert_eq!(event["isBase64Encoded"], false);
        let object = event.as_object().unwrap();
        assert!(!object.contains_key("pathParameters"));
        assert!(!object.contains_key("stageVariables"));
    }

    #[test]
    fn v2_event_omits_what_is_absent() {
        let h = headers(&[("host", "x")]);
        let req = request("GET", "/", "", &h, b"");
        let event = parse(&event_v2(&req, &url_context()));
        let object = event.as_object().unwrap();
        for absent in [
            "cookies",
            "queryStringParameters",
            "body",
            "pathParameters",
            "stageVariables",
        ] {
            assert!(!object.contains_key(absent), "{absent}");
        }
        assert_eq!(event["rawQueryString"], "");
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["headers"], json!({"host": "x"}));
        assert_eq!(event["requestContext"]["http"]["userAgent"], "");
    }

    #[test]
    fn v2_event_carries_route_stage_and_parameters() {
        let params = BTreeMap::from([("id".to_owned(), "42".to_owned())]);
        let vars = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
        let ctx = ContextInfo {
            api_id: "q1w2e3",
            domain_name: "q1w2e3.execute-api.localhost",
            domain_prefix: "q1w2e3",
            route_key: "GET /items/{id}",
            stage: "dev",
            resource_path: Some("/items/{id}"),
            path_parameters: Some(&params),
            stage_variables: Some(&vars),
            ..url_context()
        };
        let h = HeaderMap::new();
        let req = request("GET", "/dev/items/42", "", &h, b"");
        let event = parse(&event_v2(&req, &ctx));
        assert_eq!(event["routeKey"], "GET /items/{id}");
        assert_eq!(event["requestContext"]["routeKey"], "GET /items/{id}");
        assert_eq!(event["requestContext"]["stage"], "dev");
        assert_eq!(event["requestContext"]["http"]["path"], "/dev/items/42");
        assert_eq!(event["pathParameters"], json!({"id": "42"}));
        assert_eq!(event["stageVariables"], json!({"env": "dev"}));
    }

    #[test]
    fn v2_event_base64_encodes_binary_bodies() {
        let png = [0x89, b'P', b'N', b'G', 0, 0xff];
        for (content_type, body) in [
            (Some("image/png"), &png[..]),
            (None, b"plain words" as &[u8]),
            (Some("application/x-www-form-urlencoded"), b"a=1&b=2"),
            // Declared text but not UTF-8.
            (Some("text/plain"), &[0xff, 0xfe, b'a'][..]),
        ] {
            let h = match content_type {
                Some(ct) => headers(&[("content-type", ct)]),
                None => HeaderMap::new(),
            };
            let req = request("POST", "/", "", &h, body);
            let event = parse(&event_v2(&req, &url_context()));
            assert_eq!(event["isBase64Encoded"], true, "{content_type:?}");
            let decoded = STANDARD.decode(event["body"].as_str().unwrap()).unwrap();
            assert_eq!(decoded, body, "{content_type:?}");
        }
        let h = headers(&[("content-type", "text/plain; charset=utf-8")]);
        let req = request("POST", "/", "", &h, "héllo".as_bytes());
        let event = parse(&event_v2(&req, &url_context()));
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["body"], "héllo");
    }

    #[test]
    fn query_decoding_keeps_broken_escapes_and_decodes_utf8() {
        let h = HeaderMap::new();
        let req = request(
            "GET",
            "/caf%C3%A9",
            "q=100%25&bad=%zz%4&u=%E2%9C%93&&=x",
            &h,
            b"",
        );
        let event = parse(&event_v2(&req, &url_context()));
        assert_eq!(
            event["queryStringParameters"],
            json!({"q": "100%", "bad": "%zz%4", "u": "✓"})
        );
        assert_eq!(event["requestContext"]["http"]["path"], "/café");
        // `+` is a space in queries only.
        assert_eq!(percent_decode("/a+b", false), "/a+b");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
    }

    #[test]
    fn v1_event_has_rest_shape() {
        let params = BTreeMap::from([("id".to_owned(), "7".to_owned())]);
        let ctx = ContextInfo {
            route_key: "GET /items/{id}",
            stage: "dev",
            resource_path: Some("/items/{id}"),
            path_parameters: Some(&params),
            ..url_context()
        };
        let h = headers(&[
            ("User-Agent", "ua"),
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("cookie", "c=1"),
        ]);
        let req = request("GET", "/dev/items/7", "k=1&k=2&s=x+y", &h, b"");
        let event = parse(&event_v1(&req, &ctx));
        assert_eq!(event["version"], "1.0");
        assert_eq!(event["resource"], "/items/{id}");
        assert_eq!(event["path"], "/dev/items/7");
        assert_eq!(event["httpMethod"], "GET");
        assert_eq!(
            event["headers"],
            json!({"user-agent": "ua", "x-multi": "b", "cookie": "c=1"})
        );
        assert_eq!(
            event["multiValueHeaders"],
            json!({"user-agent": ["ua"], "x-multi": ["a", "b"], "cookie": ["c=1"]})
        );
        assert_eq!(
            event["queryStringParameters"],
            json!({"k": "2", "s": "x y"})
        );
        assert_eq!(
            event["multiValueQueryStringParameters"],
            json!({"k": ["1", "2"], "s": ["x y"]})
        );
        assert_eq!(event["pathParameters"], json!({"id": "7"}));
        assert_eq!(event["stageVariables"], Value::Null);
        assert_eq!(event["body"], Value::Null);
        assert_eq!(event["isBase64Encoded"], false);
        let rc = &event["requestContext"];
        assert_eq!(rc["accountId"], "123456789012");
        assert_eq!(rc["apiId"], "abc123");
        assert_eq!(rc["httpMethod"], "GET");
        assert_eq!(rc["path"], "/dev/items/7");
        assert_eq!(rc["protocol"], "HTTP/1.1");
        assert_eq!(rc["requestId"], "req-1");
        assert_eq!(rc["extendedRequestId"], "req-1");
        assert_eq!(rc["requestTime"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(rc["requestTimeEpoch"], 1_584_039_838_390_i64);
        assert_eq!(rc["resourcePath"], "/items/{id}");
        assert_eq!(rc["stage"], "dev");
        assert_eq!(rc["identity"]["sourceIp"], "203.0.113.7");
        assert_eq!(rc["identity"]["userAgent"], "ua");
        assert_eq!(rc["identity"]["userArn"], Value::Null);
    }

    #[test]
    fn v1_event_for_default_route_uses_path_and_nulls() {
        let h = headers(&[("content-type", "application/octet-stream")]);
        let req = request("PUT", "/any/wh%2Fere", "", &h, &[1, 2, 3]);
        let event = parse(&event_v1(&req, &url_context()));
        assert_eq!(event["resource"], "/any/wh/ere");
        assert_eq!(event["requestContext"]["resourcePath"], "/any/wh/ere");
        assert_eq!(event["queryStringParameters"], Value::Null);
        assert_eq!(event["multiValueQueryStringParameters"], Value::Null);
        assert_eq!(event["pathParameters"], Value::Null);
        assert_eq!(event["stageVariables"], Value::Null);
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], STANDARD.encode([1, 2, 3]));
    }

    #[test]
    fn time_is_written_in_utc() {
        let local = at().to_offset(time::UtcOffset::from_hms(5, 30, 0).unwrap());
        assert_eq!(clf_time(local), "12/Mar/2020:19:03:58 +0000");
        let jan = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(clf_time(jan), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(epoch_millis(jan), 0);
    }

    fn header_values(response: &HttpResponse, name: &str) -> Vec<String> {
        response
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn v2_output_without_status_code_is_sent_as_is() {
        for output in [
            &br#""Hello, world!""#[..],
            br#"{"message": "Hello, world!"}"#,
            b"42",
            b"null",
            b"[1, 2]",
            b"  {\"statusCodeX\": 1}\n",
        ] {
            let response = response_v2(&Bytes::copy_from_slice(output)).unwrap();
            assert_eq!(response.status, StatusCode::OK);
            assert_eq!(
                header_values(&response, "content-type"),
                ["application/json"]
            );
            assert_eq!(response.headers.len(), 1);
            assert_eq!(&response.body[..], output);
        }
    }

    #[test]
    fn v2_structured_output_maps_headers_cookies_and_body() {
        let output = json!({
            "statusCode": 201,
            "headers": {
                "Content-Type": "application/json",
                "My-Custom-Header": "Custom Value",
                "X-Number": 5,
                "X-Bool": true,
                "X-Null": null,
            },
            "multiValueHeaders": {"X-Multi": ["a", "b"]},
            "cookies": ["c1=v1; Max-Age=60", "c2=v2"],
            "body": "{\"message\":\"hi\"}",
            "isBase64Encoded": false,
        });
        let response = response_v2(&Bytes::copy_from_slice(output.to_string().as_bytes())).unwrap();
        assert_eq!(response.status, StatusCode::CREATED);
        assert_eq!(
            header_values(&response, "content-type"),
            ["application/json"]
        );
        assert_eq!(
            header_values(&response, "my-custom-header"),
            ["Custom Value"]
        );
        assert_eq!(header_values(&response, "x-number"), ["5"]);
        assert_eq!(header_values(&response, "x-bool"), ["true"]);
        assert!(response.headers.get("x-null").is_none());
        assert_eq!(header_values(&response, "x-multi"), ["a", "b"]);
        assert_eq!(
            header_values(&response, "set-cookie"),
            ["c1=v1; Max-Age=60", "c2=v2"]
        );
        assert_eq!(&response.body[..], br#"{"message":"hi"}"#);
    }

    #[test]
    fn multi_value_headers_win_over_headers_of_the_same_name() {
        let output = json!({
            "statusCode": 200,
            "headers": {"X-A": "single", "X-B": "only"},
            "multiValueHeaders": {"x-a": ["m1", "m2"]},
        });
        for response in [
            response_v2(&Bytes::copy_from_slice(output.to_string().as_bytes())).unwrap(),
            response_v1(&Bytes::copy_from_slice(output.to_string().as_bytes())).unwrap(),
        ] {
            assert_eq!(header_values(&response, "x-a"), ["m1", "m2"]);
            assert_eq!(header_values(&response, "x-b"), ["only"]);
        }
    }

    #[test]
    fn structured_output_decodes_base64_bodies() {
        let bytes = [0u8, 159, 146, 150, 255];
        let output = json!({
            "statusCode": 200,
            "headers": {"content-type": "image/png"},
            "body": STANDARD.encode(bytes),
            "isBase64Encoded": true,
        });
        let response = response_v2(&Bytes::copy_from_slice(output.to_string().as_bytes())).unwrap();
        assert_eq!(&response.body[..], &bytes);
        let response = response_v1(&Bytes::copy_from_slice(output.to_string().as_bytes())).unwrap();
        assert_eq!(&response.body[..], &bytes);
        // Unpadded base64 is accepted too.
        let output = json!({"statusCode": 200, "body": "aGk", "isBase64Encoded": true});
        assert_eq!(
            &response_v2(&Bytes::copy_from_slice(output.to_string().as_bytes()))
                .unwrap()
                .body[..],
            b"hi"
        );
    }

    #[test]
    fn structured_output_without_content_type_gets_text_plain() {
        let response = response_v2(&Bytes::copy_from_slice(br#"{"statusCode": 204}"#)).unwrap();
        assert_eq!(response.status, StatusCode::NO_CONTENT);
        assert_eq!(
            header_values(&response, "content-type"),
            ["text/plain; charset=utf-8"]
        );
        assert!(response.body.is_empty());
        let response = response_v1(&Bytes::copy_from_slice(
            br#"{"statusCode": 200, "body": "x"}"#,
        ))
        .unwrap();
        assert_eq!(
            header_values(&response, "content-type"),
            ["text/plain; charset=utf-8"]
        );
        // An explicit null asks for no content type at all.
        let response = response_v2(&Bytes::copy_from_slice(
            br#"{"statusCode": 200, "headers": {"Content-Type": null}}"#,
        ))
        .unwrap();
        assert!(response.headers.get("content-type").is_none());
    }

    #[test]
    fn function_cannot_set_framing_or_invalid_headers() {
        let output = json!({
            "statusCode": 200,
            "headers": {
                "Content-Length": "999",
                "Transfer-Encoding": "chunked",
                "Connection": "close",
                "Bad Name": "x",
                "X-Bad-Value": "a\nb",
                "X-Good": "ok",
            },
            "body": "hello",
        });
        let response = response_v2(&Bytes::copy_from_slice(output.to_string().as_bytes())).unwrap();
        for dropped in [
            "content-length",
            "transfer-encoding",
            "connection",
            "x-bad-value",
        ] {
            assert!(response.headers.get(dropped).is_none(), "{dropped}");
        }
        assert_eq!(header_values(&response, "x-good"), ["ok"]);
        assert_eq!(&response.body[..], b"hello");
    }

    #[test]
    fn v1_ignores_cookies_member() {
        let response = response_v1(&Bytes::copy_from_slice(
            br#"{"statusCode": 200, "cookies": ["a=b"]}"#,
        ))
        .unwrap();
        assert!(response.headers.get("set-cookie").is_none());
    }

    #[test]
    fn malformed_outputs_are_refused() {
        for output in [
            &b""[..],
            b"not json",
            b"{\"statusCode\": 200",
            br#"{"statusCode": "200"}"#,
            br#"{"statusCode": null}"#,
            br#"{"statusCode": 99}"#,
            br#"{"statusCode": 600}"#,
            br#"{"statusCode": 101}"#,
            br#"{"statusCode": -1}"#,
            br#"{"statusCode": 200.5}"#,
            br#"{"statusCode": 200, "body": {"a": 1}}"#,
            br#"{"statusCode": 200, "body": "%%%", "isBase64Encoded": true}"#,
            br#"{"statusCode": 200, "isBase64Encoded": "yes"}"#,
            br#"{"statusCode": 200, "headers": ["a"]}"#,
            br#"{"statusCode": 200, "headers": {"x": ["a"]}}"#,
            br#"{"statusCode": 200, "multiValueHeaders": {"x": "a"}}"#,
            br#"{"statusCode": 200, "cookies": "a=b"}"#,
            br#"{"statusCode": 200, "cookies": [1]}"#,
        ] {
            assert!(
                response_v2(&Bytes::copy_from_slice(output)).is_err(),
                "v2: {}",
                String::from_utf8_lossy(output)
            );
        }
        for output in [
            &b"\"Hello\""[..],
            b"{}",
            br#"{"body": "x"}"#,
            b"[]",
            b"null",
            br#"{"statusCode": "ok"}"#,
            br#"{"statusCode": 1000}"#,
        ] {
            assert!(
                response_v1(&Bytes::copy_from_slice(output)).is_err(),
                "v1: {}",
                String::from_utf8_lossy(output)
            );
        }
    }

    /// The gateway's own work per request, without the network or the function: building a
    /// typical browser GET's 2.0 event and mapping a typical `{statusCode, headers, body}`
    /// answer. Prints ns per request; asserts nothing about speed.
    #[test]
    #[ignore = "benchmark: cargo test -p serval-events --release --lib bench_payload -- --ignored --nocapture"]
    fn bench_payload_round_trip() {
        let headers = headers(&[
            (
                "host",
                "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.localhost:9000",
            ),
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0",
            ),
            (
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
            ("accept-language", "en-US,en;q=0.5"),
            ("accept-encoding", "gzip, deflate"),
            ("cookie", "session=abc123; theme=dark"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-port", "9000"),
        ]);
        let answer = Bytes::from_static(
            br#"{"statusCode":200,"headers":{"content-type":"text/html"},"body":"<h1>Hello</h1>"}"#,
        );
        let run = |n: u32| {
            let started = std::time::Instant::now();
            let mut bytes = 0;
            for _ in 0..n {
                let req = request("GET", "/items/42", "q=serval&page=2", &headers, b"");
                let event = event_v2(&req, &url_context());
                bytes += event.len();
                let resp = response_v2(&answer).unwrap();
                bytes += resp.body.len();
            }
            (started.elapsed(), bytes)
        };
        run(10_000);
        for _ in 0..3 {
            let n = 200_000;
            let (elapsed, bytes) = run(n);
            println!(
                "event_v2 + response_v2: {:.0} ns per request ({} bytes per event and body)",
                elapsed.as_nanos() as f64 / f64::from(n),
                bytes / n as usize
            );
        }
    }
}
