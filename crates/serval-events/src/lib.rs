//! serval-events: the sources that turn outside happenings into invocations.
//!
//! For now, the pure parts the triggers are built on: EventBridge schedule expressions
//! (`schedule`: `rate(...)` and AWS's six-field `cron(...)`, validated with AWS's messages, next
//! fire times in UTC) and the route selection of API Gateway HTTP APIs (`route`). Neither does
//! I/O; the triggers that use them (Function URLs, HTTP APIs, scheduled rules) come with the
//! HTTP-trigger issue.
//!
//! Not for: invoking functions (the engine) or the wire formats of the AWS APIs (serval-api).

pub mod route;
pub mod schedule;
