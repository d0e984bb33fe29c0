//! API Gateway v2 (`apigatewayv2`, REST JSON under `/v2/apis`) for HTTP APIs: APIs (with
//! quick create), integrations, routes and stages.

use axum::Router;

use crate::ApiState;

/// The `/v2/apis` routes.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
}
