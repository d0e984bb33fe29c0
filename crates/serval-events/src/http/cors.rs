//! CORS for HTTP triggers with a CORS configuration (Function URL `Cors`, HTTP API
//! `CorsConfiguration`): preflight requests are answered without invoking the function, and
//! every other response carries the configured `Access-Control-*` headers (replacing any the
//! function set), as AWS does.
//!
//! Matching: `AllowOrigins` entries are `*` or exact origins, compared case-insensitively
//! (scheme and host are); `AllowMethods` and `AllowHeaders` may hold `*`; header names are
//! compared case-insensitively. A `*` answer is only sent where browsers honour it: with
//! `AllowCredentials` the request's own origin, method and headers are echoed instead.
//!
//! Pure: no I/O.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue};
use serval_model::Cors;

/// Methods a browser sends cross-origin whatever `Access-Control-Allow-Methods` says
/// (Fetch's CORS-safelisted methods).
const SAFELISTED_METHODS: &[&str] = &["GET", "HEAD", "POST"];

/// Whether the request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, headers: &HeaderMap) -> bool {
    method == "OPTIONS"
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The headers of the answer to a preflight (sent with status 200 and no body):
/// `Access-Control-Allow-Origin` (the request's origin when an exact or scheme-wildcard
/// entry allows it, the literal `*` for a `*` policy, even with credentials), `-Allow-Methods`, `-Allow-Headers`, `-Max-Age`,
/// `-Allow-Credentials`, `Vary: Origin` where it matters. No CORS headers when the origin,
/// method or a requested header is not allowed.
///
/// A `*` in `AllowMethods` or `AllowHeaders` is answered with the requested method or
/// headers, which browsers accept with and without credentials (a literal `*` does not
/// cover `Authorization`, nor anything on a credentialed request).
pub fn preflight_headers(cors: &Cors, request: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let Some(origin) = allowed_origin(cors, request) else {
        return out;
    };
    let Some(method) = request
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return out;
    };
    let allow_methods = cors.allow_methods.as_deref().unwrap_or_default();
    let any_method = contains_star(allow_methods);
    let method_allowed = any_method
        || SAFELISTED_METHODS.contains(&method)
        || allow_methods
            .iter()
            .any(|m| m.trim().eq_ignore_ascii_case(method));
    if !method_allowed {
        return out;
    }
    let requested_headers = requested_headers(request);
    let allow_headers = cors.allow_headers.as_deref().unwrap_or_default();
    let any_header = contains_star(allow_headers);
    let headers_allowed = any_header
        || requested_headers.iter().all(|requested| {
            allow_headers
                .iter()
                .any(|h| h.trim().eq_ignore_ascii_case(requested))
        });
    if !headers_allowed {
        return out;
    }

    insert_origin(&mut out, &origin);
    let methods_value = if any_method {
        Some(method.to_owned())
    } else {
        joined(allow_methods)
    };
    insert_text(&mut out, ACCESS_CONTROL_ALLOW_METHODS, methods_value);
    let headers_value = if any_header {
        (!requested_headers.is_empty()).then(|| requested_headers.join(","))
    } else {
        joined(allow_headers)
    };
    insert_text(&mut out, ACCESS_CONTROL_ALLOW_HEADERS, headers_value);
    insert_text(
        &mut out,
        ACCESS_CONTROL_MAX_AGE,
        cors.max_age.map(|age| age.to_string()),
    );
    if cors.allow_credentials == Some(true) {
        out.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    out
}

/// Adds the CORS headers of a simple (non-preflight) request's response: removes any
/// `Access-Control-*` the function set, then `Access-Control-Allow-Origin`,
/// `-Expose-Headers`, `-Allow-Credentials` when the request's origin is allowed.
pub fn apply(cors: &Cors, request: &HeaderMap, response: &mut HeaderMap) {
    let theirs: Vec<_> = response
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in theirs {
        response.remove(name);
    }
    let Some(origin) = allowed_origin(cors, request) else {
        return;
    };
    insert_origin(response, &origin);
    insert_text(
        response,
        ACCESS_CONTROL_EXPOSE_HEADERS,
        joined(cors.expose_headers.as_deref().unwrap_or_default()),
    );
    if cors.allow_credentials == Some(true) {
        response.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// What `Access-Control-Allow-Origin` says for an allowed origin.
enum AllowedOrigin {
    /// `*`: any origin, no credentials.
    Any,
    /// The request's own origin (the answer then varies with `Origin`).
    Echo(HeaderValue),
}

/// The request's origin when the policy allows it.
fn allowed_origin(cors: &Cors, request: &HeaderMap) -> Option<AllowedOrigin> {
    let origin = request.get(ORIGIN)?;
    let origin_text = origin.to_str().ok()?.trim();
    if origin_text.is_empty() {
        return None;
    }
    let allow = cors.allow_origins.as_deref().unwrap_or_default();
    if contains_star(allow) {
        // The literal `*`, also with credentials: echoing the origin would let any site make
        // credentialed requests; with `*` browsers refuse those, as the policy's author
        // would expect.
        return Some(AllowedOrigin::Any);
    }
    allow
        .iter()
        .any(|allowed| {
            let allowed = allowed.trim().trim_end_matches('/');
            match allowed.strip_suffix("://*") {
                // API Gateway's scheme wildcards: `https://*` is any https origin.
                Some(scheme) => {
                    origin_text
                        .get(..scheme.len() + 3)
                        .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{scheme}://")))
                        && origin_text.len() > scheme.len() + 3
                }
                None => allowed.eq_ignore_ascii_case(origin_text),
            }
        })
        .then(|| AllowedOrigin::Echo(origin.clone()))
}

fn insert_origin(headers: &mut HeaderMap, origin: &AllowedOrigin) {
    match origin {
        AllowedOrigin::Any => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        AllowedOrigin::Echo(origin) => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            add_vary_origin(headers);
        }
    }
}

/// Adds `Origin` to `Vary` unless it is there already (or `Vary: *`).
fn add_vary_origin(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case("origin"))
        })
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

/// The header names of `Access-Control-Request-Headers`, lower-cased.
fn requested_headers(request: &HeaderMap) -> Vec<String> {
    request
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

fn contains_star(list: &[String]) -> bool {
    list.iter().any(|item| item.trim() == "*")
}

/// The list as one header value; `None` when empty.
fn joined(list: &[String]) -> Option<String> {
    let items: Vec<&str> = list
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .collect();
    (!items.is_empty()).then(|| items.join(","))
}

/// Inserts a header built from configuration, skipping a value HTTP cannot carry.
fn insert_text(headers: &mut HeaderMap, name: http::HeaderName, value: Option<String>) {
    if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

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

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn get<'a>(map: &'a HeaderMap, name: &str) -> Option<&'a str> {
        map.get(name).map(|v| v.to_str().unwrap())
    }

    fn exact_policy() -> Cors {
        Cors {
            allow_credentials: Some(true),
            allow_headers: strings(&["Content-Type", "X-Custom"]),
            allow_methods: strings(&["GET", "PUT"]),
            allow_origins: strings(&["https://app.example.com", "http://localhost:3000"]),
            expose_headers: strings(&["x-request-id", "Date"]),
            max_age: Some(300),
        }
    }

    fn open_policy() -> Cors {
        Cors {
            allow_origins: strings(&["*"]),
            allow_methods: strings(&["*"]),
            allow_headers: strings(&["*"]),
            ..Cors::default()
        }
    }

    fn preflight(origin: &str, method: &str, requested: Option<&str>) -> HeaderMap {
        let mut pairs = vec![
            ("origin", origin),
            ("access-control-request-method", method),
        ];
        if let Some(requested) = requested {
            pairs.push(("access-control-request-headers", requested));
        }
        headers(&pairs)
    }

    #[test]
    fn recognizes_preflights() {
        let full = preflight("https://a.example", "PUT", None);
        assert!(is_preflight("OPTIONS", &full));
        assert!(!is_preflight("GET", &full));
        assert!(!is_preflight("options", &full));
        assert!(!is_preflight(
            "OPTIONS",
            &headers(&[("origin", "https://a.example")])
        ));
        assert!(!is_preflight(
            "OPTIONS",
            &headers(&[("access-control-request-method", "PUT")])
        ));
    }

    #[test]
    fn preflight_for_an_allowed_origin_echoes_it() {
        let request = preflight(
            "https://APP.example.com",
            "PUT",
            Some("x-custom, Content-Type"),
        );
        let out = preflight_headers(&exact_policy(), &request);
        assert_eq!(
            get(&out, "access-control-allow-origin"),
            Some("https://APP.example.com")
        );
        assert_eq!(get(&out, "access-control-allow-methods"), Some("GET,PUT"));
        assert_eq!(
            get(&out, "access-control-allow-headers"),
            Some("Content-Type,X-Custom")
        );
        assert_eq!(get(&out, "access-control-max-age"), Some("300"));
        assert_eq!(get(&out, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&out, "vary"), Some("Origin"));
        assert!(out.get("access-control-expose-headers").is_none());
    }

    #[test]
    fn preflight_refuses_origin_method_or_header_outside_the_policy() {
        let policy = exact_policy();
        for request in [
            preflight("https://evil.example.com", "PUT", None),
            preflight("https://app.example.com:8443", "PUT", None),
            preflight("http://app.example.com", "PUT", None),
            preflight("https://app.example.com", "DELETE", None),
            preflight(
                "https://app.example.com",
                "PUT",
                Some("x-custom, authorization"),
            ),
            headers(&[("access-control-request-method", "PUT")]),
        ] {
            assert!(
                preflight_headers(&policy, &request).is_empty(),
                "{request:?}"
            );
        }
        // Nothing is allowed without AllowOrigins.
        let no_origins = Cors {
            allow_origins: None,
            ..open_policy()
        };
        let request = preflight("https://a.example", "GET", None);
        assert!(preflight_headers(&no_origins, &request).is_empty());
    }

    #[test]
    fn safelisted_methods_need_not_be_listed() {
        let request = preflight("http://localhost:3000", "POST", Some("content-type"));
        let out = preflight_headers(&exact_policy(), &request);
        assert_eq!(
            get(&out, "access-control-allow-origin"),
            Some("http://localhost:3000")
        );
    }

    #[test]
    fn wildcard_policy_answers_star_origin_and_echoes_requests() {
        let request = preflight("https://a.example", "PATCH", Some("Authorization, X-Thing"));
        let out = preflight_headers(&open_policy(), &request);
        assert_eq!(get(&out, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&out, "access-control-allow-methods"), Some("PATCH"));
        assert_eq!(
            get(&out, "access-control-allow-headers"),
            Some("authorization,x-thing")
        );
        assert!(out.get("vary").is_none());
        assert!(out.get("access-control-allow-credentials").is_none());
        assert!(out.get("access-control-max-age").is_none());
    }

    #[test]
    fn wildcard_origin_with_credentials_is_never_echoed() {
        // Echoing would let any site make credentialed requests; `*` makes browsers refuse.
        let policy = Cors {
            allow_credentials: Some(true),
            ..open_policy()
        };
        let request = preflight("https://evil.example", "GET", None);
        let out = preflight_headers(&policy, &request);
        assert_eq!(get(&out, "access-control-allow-origin"), Some("*"));
        let mut response = HeaderMap::new();
        apply(
            &policy,
            &headers(&[("origin", "https://evil.example")]),
            &mut response,
        );
        assert_eq!(get(&response, "access-control-allow-origin"), Some("*"));
    }

    #[test]
    fn scheme_wildcards_match_any_origin_of_that_scheme() {
        let policy = Cors {
            allow_origins: Some(vec!["https://*".into()]),
            ..Cors::default()
        };
        let ok = preflight("https://app.example", "GET", None);
        assert_eq!(
            get(
                &preflight_headers(&policy, &ok),
                "access-control-allow-origin"
            ),
            Some("https://app.example")
        );
        for denied in ["http://app.example", "https://", "httpsx://a"] {
            let out = preflight_headers(&policy, &preflight(denied, "GET", None));
            assert!(out.get("access-control-allow-origin").is_none(), "{denied}");
        }
    }

    #[test]
    fn apply_replaces_the_functions_cors_headers() {
        let request = headers(&[("origin", "https://app.example.com")]);
        let mut response = headers(&[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "DELETE"),
            ("access-control-max-age", "9999"),
            ("content-type", "text/plain"),
            ("vary", "Accept-Encoding"),
        ]);
        apply(&exact_policy(), &request, &mut response);
        assert_eq!(
            get(&response, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(
            get(&response, "access-control-expose-headers"),
            Some("x-request-id,Date")
        );
        assert_eq!(
            get(&response, "access-control-allow-credentials"),
            Some("true")
        );
        assert!(response.get("access-control-allow-methods").is_none());
        assert!(response.get("access-control-max-age").is_none());
        assert_eq!(get(&response, "content-type"), Some("text/plain"));
        let vary: Vec<_> = response.get_all("vary").iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    }

    #[test]
    fn apply_strips_cors_headers_for_disallowed_or_missing_origins() {
        for request in [
            headers(&[("origin", "https://evil.example.com")]),
            HeaderMap::new(),
        ] {
            let mut response = headers(&[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
                ("x-other", "kept"),
            ]);
            apply(&exact_policy(), &request, &mut response);
            assert_eq!(response.len(), 1, "{request:?}");
            assert_eq!(get(&response, "x-other"), Some("kept"));
        }
    }

    #[test]
    fn apply_with_wildcard_origin_sends_star() {
        let request = headers(&[("origin", "https://a.example")]);
        let mut response = headers(&[("vary", "origin")]);
        apply(&open_policy(), &request, &mut response);
        assert_eq!(get(&response, "access-control-allow-origin"), Some("*"));
        assert!(response.get("access-control-expose-headers").is_none());
        assert!(response.get("access-control-allow-credentials").is_none());
        assert_eq!(response.get_all("vary").iter().count(), 1);
    }

    #[test]
    fn configured_origins_match_despite_case_and_trailing_slash() {
        let policy = Cors {
            allow_origins: strings(&["HTTPS://App.Example.com/"]),
            ..Cors::default()
        };
        let request = headers(&[("origin", "https://app.example.com")]);
        let mut response = HeaderMap::new();
        apply(&policy, &request, &mut response);
        assert_eq!(
            get(&response, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
    }
}
