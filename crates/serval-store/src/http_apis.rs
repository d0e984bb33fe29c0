//! HTTP APIs (`http_apis`) and their integrations, routes and stages (`http_api_parts`).
