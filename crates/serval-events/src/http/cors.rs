//! CORS for HTTP triggers with a CORS configuration (Function URL `Cors`, HTTP API
//! `CorsConfiguration`): preflight requests are answered without invoking the function, and
//! every other response carries the configured `Access-Control-*` headers (replacing any the
//! function set), as AWS does.
//!
//! Pure: no I/O.

use http::HeaderMap;
use serval_model::Cors;

/// Whether the request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, headers: &HeaderMap) -> bool {
    let _ = (method, headers);
    todo!()
}

/// The headers of the answer to a preflight (sent with status 200 and no body):
/// `Access-Control-Allow-Origin` (the request's origin when allowed, `*` for a `*` policy
/// without credentials), `-Allow-Methods`, `-Allow-Headers`, `-Max-Age`,
/// `-Allow-Credentials`, `Vary: Origin` where it matters. No CORS headers when the origin,
/// method or a requested header is not allowed.
pub fn preflight_headers(cors: &Cors, request: &HeaderMap) -> HeaderMap {
    let _ = (cors, request);
    todo!()
}

/// Adds the CORS headers of a simple (non-preflight) request's response: removes any
/// `Access-Control-*` the function set, then `Access-Control-Allow-Origin`,
/// `-Expose-Headers`, `-Allow-Credentials` when the request's origin is allowed.
pub fn apply(cors: &Cors, request: &HeaderMap, response: &mut HeaderMap) {
    let _ = (cors, request, response);
    todo!()
}
