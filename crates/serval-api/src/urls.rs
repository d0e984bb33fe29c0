//! Function URL configurations: CreateFunctionUrlConfig, GetFunctionUrlConfig,
//! UpdateFunctionUrlConfig, DeleteFunctionUrlConfig, ListFunctionUrlConfigs
//! (`/2021-10-31/functions/{name}/url[s]`).

use axum::Router;

use crate::ApiState;

/// The Function URL routes.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
}
