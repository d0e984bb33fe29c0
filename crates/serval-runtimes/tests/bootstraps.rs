//! Serval's Python and Node.js bootstraps against a fake Runtime API, started exactly as the
//! engine starts them (clean environment, one pipe for stdout and stderr, cwd = task root).
//! Tests whose interpreter is missing print why and pass.

mod support;

use std::time::Duration;

use serde_json::Value;
use serval_model::Runtime;
use support::{available, Env, Report};

const SECS: Duration = Duration::from_secs(20);

fn error_parts(r: &Report) -> (Option<String>, Value) {
    match r {
        Report::Error { error_type, .. } | Report::InitError { error_type, .. } => {
            (error_type.clone(), r.json())
        }
        Report::Response { body, .. } => {
            panic!("expected an error, got {}", String::from_utf8_lossy(body))
        }
    }
}

fn response_json(r: &Report) -> Value {
    match r {
        Report::Response { .. } => r.json(),
        other => panic!("expected a response, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------------ python

const PY_APP: &str = r#"
import json, logging, os, sys

def handler(event, context):
    print("got", json.dumps(event))
    return {
        "event": event,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "client_custom": context.client_context.custom if context.client_context else None,
        "client_app": context.client_context.client.app_title if context.client_context and context.client_context.client else None,
        "identity_id": context.identity.cognito_identity_id if context.identity else None,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "path0": sys.path[0],
        "cwd": os.getcwd(),
    }

def boom(event, context):
    raise ValueError("boom")

def unserializable(event, context):
    return {"s": {1, 2}}

def log(event, context):
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger().info("hello %s", "logging")
    logging.getLogger("child").debug("hidden")
    print("printed", flush=False)
    return None
"#;

#[test]
fn python_returns_result_with_context_and_event() {
    if !available(
        Runtime::Python312,
        "python_returns_result_with_context_and_event",
    ) {
        return;
    }
    let env = Env::start(Runtime::Python312, "app.handler", &[("app.py", PY_APP)]);
    let r = env.invoke_with(
        r#"{"x": [1, 2, "é"]}"#,
        &[
            (
                "Lambda-Runtime-Client-Context",
                r#"{"custom":{"k":"v"},"env":{},"client":{"app_title":"t"}}"#,
            ),
            (
                "Lambda-Runtime-Cognito-Identity",
                r#"{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool"}"#,
            ),
        ],
    );
    let v = response_json(&r);
    let Report::Response { request_id, .. } = &r else {
        unreachable!()
    };
    assert_eq!(v["event"], serde_json::json!({"x": [1, 2, "é"]}));
    assert_eq!(v["aws_request_id"], request_id.as_str());
    assert_eq!(v["function_name"], "fn");
    assert_eq!(v["function_version"], "$LATEST");
    assert_eq!(
        v["memory_limit_in_mb"], "256",
        "a string, as in AWS's runtime"
    );
    assert_eq!(v["log_group_name"], "/aws/lambda/fn");
    assert!(v["invoked_function_arn"]
        .as_str()
        .unwrap()
        .ends_with(":function:fn"));
    let remaining = v["remaining"].as_i64().unwrap();
    assert!(remaining > 0 && remaining <= 3000, "{remaining}");
    assert_eq!(v["client_custom"], serde_json::json!({"k": "v"}));
    assert_eq!(v["client_app"], "t");
    assert_eq!(v["identity_id"], "id-1");
    assert!(v["trace"].as_str().unwrap().starts_with("Root=1-"));
    assert_eq!(v["cwd"], v["path0"]);
    // several invocations on one connection, each result pipelined with the next GET
    for i in 0..5 {
        let v = response_json(&env.invoke(&format!("{i}")));
        assert_eq!(v["event"], i);
    }
    assert!(
        env.api.stats().pipelined_reads >= 5,
        "{:?}",
        env.api.stats()
    );
    assert!(env.wait_log("got 4", SECS).is_some(), "{}", env.log_text());
}

#[test]
fn python_reports_exceptions_as_aws_does() {
    if !available(Runtime::Python311, "python_reports_exceptions_as_aws_does") {
        return;
    }
    let env = Env::start(Runtime::Python311, "app.boom", &[("app.py", PY_APP)]);
    let r = env.invoke("{}");
    let (ty, v) = error_parts(&r);
    assert_eq!(ty.as_deref(), Some("ValueError"));
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["errorMessage"], "boom");
    assert!(v["requestId"].as_str().unwrap().starts_with("req-"));
    let trace = v["stackTrace"].as_array().unwrap();
    assert_eq!(trace.len(), 1, "{trace:?}");
    assert!(
        trace[0].as_str().unwrap().contains("app.py\", line"),
        "{trace:?}"
    );
    assert!(
        trace[0].as_str().unwrap().contains("raise ValueError"),
        "{trace:?}"
    );
    let line = env
        .wait_log("[ERROR] ValueError: boom", SECS)
        .expect("error logged");
    assert!(
        line.contains("\rTraceback (most recent call last):\r"),
        "{line:?}"
    );
    // the environment survives a function error
    assert!(matches!(env.invoke("{}"), Report::Error { .. }));
}

#[test]
fn python_rejects_non_json_payload_and_unserializable_result() {
    if !available(Runtime::Python312, "python_rejects_non_json_payload") {
        return;
    }
    let env = Env::start(Runtime::Python312, "app.handler", &[("app.py", PY_APP)]);
    let (ty, v) = error_parts(&env.invoke("not json"));
    assert_eq!(ty.as_deref(), Some("Runtime.UnmarshalError"));
    assert!(v["errorMessage"]
        .as_str()
        .unwrap()
        .starts_with("Unable to unmarshal input: Expecting value"));
    assert_eq!(response_json(&env.invoke("null"))["event"], Value::Null);

    let env = Env::start(
        Runtime::Python312,
        "app.unserializable",
        &[("app.py", PY_APP)],
    );
    let (ty, v) = error_parts(&env.invoke("{}"));
    assert_eq!(ty.as_deref(), Some("Runtime.MarshalError"));
    assert!(v["errorMessage"]
        .as_str()
        .unwrap()
        .contains("Object of type set is not JSON serializable"));
}

#[test]
fn python_reports_init_errors_and_exits() {
    if !available(Runtime::Python312, "python_reports_init_errors_and_exits") {
        return;
    }
    let cases = [
        (
            "missing.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing': No module named 'missing'",
        ),
        (
            "app.nope",
            "Runtime.HandlerNotFound",
            "Handler 'nope' missing on module 'app'",
        ),
        (
            "app",
            "Runtime.MalformedHandlerName",
            "Bad handler 'app': not enough values to unpack (expected 2, got 1)",
        ),
        (
            "broken.handler",
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module 'broken'",
        ),
    ];
    for (handler, ty, msg) in cases {
        let mut env = Env::start(
            Runtime::Python312,
            handler,
            &[("app.py", PY_APP), ("broken.py", "def x(:\n")],
        );
        let r = env.api.wait_init_error(SECS).expect("init error");
        let (got_ty, v) = error_parts(&r);
        assert_eq!(got_ty.as_deref(), Some(ty), "{handler}");
        assert_eq!(v["errorType"], ty);
        assert!(v["errorMessage"].as_str().unwrap().starts_with(msg), "{v}");
        assert_eq!(v["requestId"], "");
        let status = env.wait_exit(SECS).expect("exits after init error");
        assert!(!status.success());
    }
}

#[test]
fn python_resolves_nested_modules_with_task_root_first() {
    if !available(Runtime::Python312, "python_resolves_nested_modules") {
        return;
    }
    let files = [
        ("src/sub/mod.py", "def fn(e, c):\n    return 'folder'\n"),
        ("pkg/__init__.py", ""),
        ("pkg/inner.py", "def fn(e, c):\n    return 'package'\n"),
        // shadows the standard library's module, as a package's own copy would on AWS
        (
            "json_helpers.py",
            "import json\ndef fn(e, c):\n    return json.__name__\n",
        ),
    ];
    for (handler, want) in [
        ("src/sub/mod.fn", "folder"),
        ("pkg.inner.fn", "package"),
        ("json_helpers.fn", "json"),
    ] {
        let env = Env::start(Runtime::Python312, handler, &files);
        assert_eq!(response_json(&env.invoke("{}")), want, "{handler}");
    }
}

#[test]
fn python_configures_logging_like_aws() {
    if !available(Runtime::Python312, "python_configures_logging_like_aws") {
        return;
    }
    let env = Env::start(Runtime::Python312, "app.log", &[("app.py", PY_APP)]);
    let r = env.invoke("{}");
    assert_eq!(response_json(&r), Value::Null);
    let Report::Response { request_id, .. } = &r else {
        unreachable!()
    };
    let line = env.wait_log("hello logging", SECS).expect("log line");
    let parts: Vec<&str> = line.split('\t').collect();
    assert_eq!(parts.len(), 4, "{line:?}");
    assert_eq!(parts[0], "[INFO]");
    assert!(parts[1].ends_with('Z') && parts[1].len() == 24, "{line:?}");
    assert_eq!(parts[2], request_id);
    assert_eq!(parts[3], "hello logging");
    assert!(env.wait_log("printed", SECS).is_some());
    assert!(!env.log_text().contains("hidden"));
}

#[test]
fn runtime_exits_non_zero_when_api_is_unreachable() {
    for runtime in [Runtime::Python312, Runtime::Nodejs20] {
        if !available(runtime, "runtime_exits_non_zero_when_api_is_unreachable") {
            continue;
        }
        let task = tempfile::tempdir().unwrap();
        std::fs::write(task.path().join("app.py"), PY_APP).unwrap();
        std::fs::write(
            task.path().join("app.js"),
            "exports.handler = async () => 1;",
        )
        .unwrap();
        // a port nobody listens on
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (mut child, log, _) = support::spawn(
            runtime,
            "app.handler",
            task.path(),
            &format!("127.0.0.1:{port}"),
            &[],
        );
        let status = child.wait().unwrap();
        assert!(!status.success(), "{runtime}");
        std::thread::sleep(Duration::from_millis(50));
        let log = log.lock().unwrap().join("\n");
        assert!(log.contains("Runtime API"), "{runtime}: {log}");
    }
}

// ------------------------------------------------------------------------------------ node

const NODE_CJS: &str = r#"
exports.handler = async (event, context) => {
  console.log('got', JSON.stringify(event));
  console.error('to stderr');
  return {
    event,
    awsRequestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext,
    identity: context.identity,
    waits: context.callbackWaitsForEmptyEventLoop,
  };
};
exports.sync = (event) => ({ sync: event });
exports.callback = (event, context, callback) => {
  setTimeout(() => callback(null, { cb: event }), 5);
};
exports.callbackError = (event, context, callback) => callback(new TypeError('bad cb'));
exports.boom = async () => { throw new Error('boom'); };
exports.reject = async () => { Promise.reject(new Error('nobody catches me')); await new Promise((r) => setTimeout(r, 200)); return 1; };
exports.obj = { nested: { fn: async () => 'nested' } };
exports.circular = async () => { const a = {}; a.a = a; return a; };
"#;

#[test]
fn node_commonjs_async_sync_callback_and_nested_handlers() {
    if !available(Runtime::Nodejs20, "node_commonjs_handlers") {
        return;
    }
    let files = [("index.js", NODE_CJS)];
    let env = Env::start(Runtime::Nodejs20, "index.handler", &files);
    let r = env.invoke_with(
        r#"{"a":1}"#,
        &[
            ("Lambda-Runtime-Client-Context", r#"{"custom":{"k":"v"}}"#),
            (
                "Lambda-Runtime-Cognito-Identity",
                r#"{"cognitoIdentityId":"id-1"}"#,
            ),
        ],
    );
    let v = response_json(&r);
    let Report::Response { request_id, .. } = &r else {
        unreachable!()
    };
    assert_eq!(v["event"], serde_json::json!({"a": 1}));
    assert_eq!(v["awsRequestId"], request_id.as_str());
    assert_eq!(v["functionName"], "fn");
    assert_eq!(v["functionVersion"], "$LATEST");
    assert_eq!(v["memoryLimitInMB"], "256");
    assert_eq!(v["logStreamName"], "2024/01/01/[$LATEST]abcdef");
    let remaining = v["remaining"].as_i64().unwrap();
    assert!(remaining > 0 && remaining <= 3000);
    assert_eq!(v["clientContext"]["custom"]["k"], "v");
    assert_eq!(v["identity"]["cognitoIdentityId"], "id-1");
    assert_eq!(v["waits"], true);
    let line = env
        .wait_log("\tINFO\tgot {\"a\":1}", SECS)
        .expect("console.log line");
    let parts: Vec<&str> = line.split('\t').collect();
    assert!(parts[0].ends_with('Z') && parts[0].len() == 24, "{line:?}");
    assert_eq!(parts[1], request_id);
    assert!(env.wait_log("\tERROR\tto stderr", SECS).is_some());
    for i in 0..5 {
        assert_eq!(response_json(&env.invoke(&i.to_string()))["event"], i);
    }
    assert!(
        env.api.stats().pipelined_reads >= 5,
        "{:?}",
        env.api.stats()
    );

    for (handler, want) in [
        ("index.sync", serde_json::json!({"sync": 7})),
        ("index.callback", serde_json::json!({"cb": 7})),
        ("index.obj.nested.fn", serde_json::json!("nested")),
    ] {
        let env = Env::start(Runtime::Nodejs20, handler, &files);
        assert_eq!(response_json(&env.invoke("7")), want, "{handler}");
        assert_eq!(response_json(&env.invoke("7")), want, "{handler} again");
    }
}

#[test]
fn node_loads_es_modules() {
    if !available(Runtime::Nodejs20, "node_loads_es_modules") {
        return;
    }
    let mjs = "export const handler = async (e) => ({ esm: e });";
    let env = Env::start(Runtime::Nodejs20, "app.handler", &[("app.mjs", mjs)]);
    assert_eq!(
        response_json(&env.invoke("1")),
        serde_json::json!({"esm": 1})
    );
    let env = Env::start(
        Runtime::Nodejs22,
        "src/app.handler",
        &[
            ("src/app.js", mjs),
            ("package.json", r#"{"type":"module"}"#),
        ],
    );
    assert_eq!(
        response_json(&env.invoke("2")),
        serde_json::json!({"esm": 2})
    );
    let env = Env::start(
        Runtime::Nodejs18,
        "lib.handler",
        &[(
            "lib.cjs",
            "module.exports.handler = async (e) => ({ cjs: e });",
        )],
    );
    assert_eq!(
        response_json(&env.invoke("3")),
        serde_json::json!({"cjs": 3})
    );
}

#[test]
fn node_reports_errors_as_aws_does() {
    if !available(Runtime::Nodejs20, "node_reports_errors_as_aws_does") {
        return;
    }
    let files = [("index.js", NODE_CJS)];
    let env = Env::start(Runtime::Nodejs20, "index.boom", &files);
    let (ty, v) = error_parts(&env.invoke("{}"));
    assert_eq!(ty.as_deref(), Some("Error"));
    assert_eq!(v["errorType"], "Error");
    assert_eq!(v["errorMessage"], "boom");
    let trace = v["trace"].as_array().unwrap();
    assert_eq!(trace[0], "Error: boom");
    assert!(trace[1].as_str().unwrap().contains("index.js"), "{trace:?}");
    assert!(env.wait_log("\tERROR\tInvoke Error \t{", SECS).is_some());
    // still serving after a function error; non-JSON payloads are rejected
    let (ty, v) = error_parts(&env.invoke("nope"));
    assert_eq!(ty.as_deref(), Some("Runtime.UnmarshalError"));
    assert!(v["errorMessage"]
        .as_str()
        .unwrap()
        .starts_with("Unable to unmarshal input:"));

    let env = Env::start(Runtime::Nodejs20, "index.callbackError", &files);
    let (ty, v) = error_parts(&env.invoke("{}"));
    assert_eq!(ty.as_deref(), Some("TypeError"));
    assert_eq!(v["errorMessage"], "bad cb");

    let env = Env::start(Runtime::Nodejs20, "index.circular", &files);
    let (ty, _) = error_parts(&env.invoke("{}"));
    assert_eq!(ty.as_deref(), Some("Runtime.MarshalError"));

    let mut env = Env::start(Runtime::Nodejs20, "index.reject", &files);
    let (ty, v) = error_parts(&env.invoke("{}"));
    assert_eq!(ty.as_deref(), Some("Runtime.UnhandledPromiseRejection"));
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("nobody catches me"),
        "{v}"
    );
    assert!(!env.wait_exit(SECS).expect("exits").success());
}

#[test]
fn node_reports_init_errors_and_exits() {
    if !available(Runtime::Nodejs20, "node_reports_init_errors_and_exits") {
        return;
    }
    let cases = [
        (
            "missing.handler",
            "Runtime.ImportModuleError",
            "Error: Cannot find module 'missing'",
        ),
        (
            "index.nope",
            "Runtime.HandlerNotFound",
            "index.nope is undefined or not exported",
        ),
        ("index", "Runtime.MalformedHandlerName", "Bad handler index"),
        (
            "broken.handler",
            "Runtime.UserCodeSyntaxError",
            "SyntaxError: ",
        ),
    ];
    for (handler, ty, msg) in cases {
        let mut env = Env::start(
            Runtime::Nodejs20,
            handler,
            &[
                ("index.js", NODE_CJS),
                ("broken.js", "exports.handler = (;"),
            ],
        );
        let r = env.api.wait_init_error(SECS).expect("init error");
        let (got_ty, v) = error_parts(&r);
        assert_eq!(got_ty.as_deref(), Some(ty), "{handler}: {v}");
        assert!(
            v["errorMessage"].as_str().unwrap().starts_with(msg),
            "{handler}: {v}"
        );
        assert!(!env.wait_exit(SECS).expect("exits").success());
    }
}
