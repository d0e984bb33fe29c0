//! A Lambda function built with the official `lambda_runtime` crate, used by Serval's
//! end-to-end tests to check that an unmodified Runtime API client works in a
//! `provided.al2023` environment.
//!
//! It echoes the event back with what the runtime told it about the invocation. An event with
//! `"fail": true` returns an error, so the tests can check the error shape too.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    if payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err("rust handler failed on purpose".into());
    }
    Ok(json!({
        "runtime": "rust",
        "event": payload,
        "request_id": ctx.request_id,
        "function_arn": ctx.invoked_function_arn,
        "deadline_ms": ctx.deadline,
        "function_name": ctx.env_config.function_name,
        "memory_mb": ctx.env_config.memory,
        "pid": std::process::id(),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
