//! EventBridge (`AWSEvents.*`, JSON 1.1 on `POST /`): scheduled rules and their targets.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use crate::ApiState;

/// `X-Amz-Target` prefix of EventBridge operations.
pub const TARGET_PREFIX: &str = "AWSEvents.";

/// Runs one EventBridge operation.
pub(crate) async fn dispatch(
    state: ApiState,
    op: &str,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let _ = (state, op, headers, body);
    StatusCode::NOT_IMPLEMENTED.into_response()
}
