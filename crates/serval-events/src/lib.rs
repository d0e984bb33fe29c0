//! serval-events: the sources that turn outside happenings into invocations.
//!
//! - `http`: the HTTP gateway serving Function URLs and API Gateway HTTP APIs (payload
//!   formats 1.0 and 2.0, CORS, response mapping);
//! - `rules`: scheduled EventBridge rules, fired through the durable asynchronous queue;
//! - `schedule`: EventBridge schedule expressions (`rate(...)`, six-field `cron(...)`),
//!   validated with AWS's messages, with next fire times in UTC (pure);
//! - `route`: HTTP API route keys and route selection by AWS's precedence (pure).
//!
//! Not for: the control-plane wire formats (serval-api stores the configuration and tells
//! these sources) or running functions (the engine).

pub mod http;
pub mod route;
pub mod rules;
pub mod schedule;

pub use http::{Gateway, Target};
pub use rules::{ScheduleConfig, Schedules};
