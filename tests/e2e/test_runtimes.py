"""Each runtime family with real handlers: Python, Node.js (CommonJS and ES modules), a bash
`bootstrap`, the official Python runtime client (awslambdaric) and the official Rust crate
(lambda_runtime)."""

import re

import pytest

from serval_e2e import (
    NODE_RUNTIME,
    PROVIDED_RUNTIME,
    PY_RUNTIME,
    TEST_PYTHON,
    awslambdaric_zip,
    create_function,
    function_zip,
    invoke,
    log_tail,
    python_zip,
    report_line,
    rust_zip,
)

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# ---------------------------------------------------------------------------------------------
# Python
# ---------------------------------------------------------------------------------------------


def test_python_context_and_environment_match_aws(lam):
    name = create_function(lam, python_zip(), handler="app.echo", MemorySize=256, Timeout=30, env={"USER_GREETING": "hi"})
    resp, out = invoke(lam, name, {"k": "v"})
    rid = resp["ResponseMetadata"]["RequestId"]
    ctx, env = out["context"], out["env"]
    assert out["event"] == {"k": "v"}
    assert ctx["function_name"] == name
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert ctx["memory_limit_in_mb"] == "256"
    assert ctx["aws_request_id"] == rid
    assert ctx["log_group_name"] == f"/aws/lambda/{name}"
    assert re.match(r"^\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}$", ctx["log_stream_name"]), ctx["log_stream_name"]
    assert 0 < ctx["remaining_time_in_millis"] <= 30000
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == ctx["log_stream_name"]
    assert env["AWS_REGION"] == "us-east-1"
    assert env["_HANDLER"] == "app.echo"
    assert env["TZ"] == ":UTC"
    assert env["AWS_LAMBDA_RUNTIME_API"]
    assert env["LAMBDA_TASK_ROOT"]
    assert out["cwd"] == env["LAMBDA_TASK_ROOT"]
    assert out["user_env"] == {"USER_GREETING": "hi"}
    assert out["has_credentials"] is True


def test_python_logging_uses_lambda_format(lam):
    name = create_function(lam, python_zip(), handler="app.log_lines")
    resp, out = invoke(lam, name, {"marker": "fmt"}, LogType="Tail")
    rid = resp["ResponseMetadata"]["RequestId"]
    tail = log_tail(resp)
    pattern = rf"^\[INFO\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{rid}\tlogger line fmt$"
    assert re.search(pattern, tail, re.M), tail
    assert re.search(r"^stdout line fmt$", tail, re.M), tail


def test_python_handler_in_subfolder(lam):
    name = create_function(lam, function_zip("python-subdir"), handler="pkg/app.handler")
    resp, out = invoke(lam, name, {"x": 1})
    assert "FunctionError" not in resp, out
    assert out["where"] == "pkg/app"
    assert out["file"] == "pkg/app.py"
    assert out["event"] == {"x": 1}


def test_python_dotted_module_handler(lam):
    name = create_function(lam, function_zip("python-subdir"), handler="pkg.app.handler")
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    assert out["where"] == "pkg/app"




# ---------------------------------------------------------------------------------------------
# Node.js
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler,style",
    [("index.syncCallback", "sync-callback"), ("index.callback", "callback"), ("index.asyncHandler", "async")],
)
def test_node_commonjs_handler_styles(lam, handler, style):
    name = create_function(lam, function_zip("node-cjs"), runtime=NODE_RUNTIME, handler=handler, env={"USER_GREETING": "hej"})
    resp, out = invoke(lam, name, {"n": 1})
    assert "FunctionError" not in resp, out
    rid = resp["ResponseMetadata"]["RequestId"]
    assert out["style"] == style
    assert out["event"] == {"n": 1}
    assert out["requestId"] == rid
    assert out["functionName"] == name
    assert out["functionVersion"] == "$LATEST"
    assert out["invokedFunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert out["memoryLimitInMB"] == "128"
    assert out["logGroupName"] == f"/aws/lambda/{name}"
    assert 0 < out["remaining"] <= 3000
    assert out["userEnv"] == "hej"
    # Warm reuse keeps module state in Node too.
    _, again = invoke(lam, name, {})
    assert again["process"] == out["process"]
    assert again["counter"] == out["counter"] + 1


def test_node_console_log_reaches_the_log(lam):
    name = create_function(lam, function_zip("node-cjs"), runtime=NODE_RUNTIME, handler="index.asyncHandler")
    resp, out = invoke(lam, name, {}, LogType="Tail")
    rid = resp["ResponseMetadata"]["RequestId"]
    tail = log_tail(resp)
    # Node's console.log in Lambda: `<timestamp>\t<request id>\tINFO\t<message>`.
    assert re.search(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{rid}\tINFO\tnode async handler ran", tail), tail


def test_node_es_module_handler(lam):
    name = create_function(lam, function_zip("node-esm"), runtime=NODE_RUNTIME, handler="index.handler")
    resp, out = invoke(lam, name, {"esm": True})
    assert "FunctionError" not in resp, out
    assert out["style"] == "esm"
    assert out["event"] == {"esm": True}
    assert out["moduleUrl"].startswith("file://") and out["moduleUrl"].endswith("/index.mjs"), out
    assert out["requestId"] == resp["ResponseMetadata"]["RequestId"]


def test_node_thrown_error_has_node_error_shape(lam):
    name = create_function(lam, function_zip("node-cjs"), runtime=NODE_RUNTIME, handler="index.throws")
    resp, out = invoke(lam, name, {"why": "shape"})
    assert resp.get("FunctionError") == "Unhandled"
    assert out["errorType"] == "TypeError"
    assert out["errorMessage"] == "node failure: shape"
    assert isinstance(out["trace"], list) and out["trace"]
    assert out["trace"][0].startswith("TypeError: node failure: shape")


def test_node_callback_error(lam):
    name = create_function(lam, function_zip("node-cjs"), runtime=NODE_RUNTIME, handler="index.callbackError")
    resp, out = invoke(lam, name, {})
    assert resp.get("FunctionError") == "Unhandled"
    assert out["errorType"] == "Error"
    assert out["errorMessage"] == "callback failure"


def test_node_missing_handler_is_handler_not_found(lam):
    name = create_function(lam, function_zip("node-cjs"), runtime=NODE_RUNTIME, handler="index.nope")
    resp, out = invoke(lam, name, {})
    assert resp.get("FunctionError") == "Unhandled"
    assert out["errorType"] == "Runtime.HandlerNotFound"


# ---------------------------------------------------------------------------------------------
# provided.al2023: a bash bootstrap, awslambdaric, lambda_runtime
# ---------------------------------------------------------------------------------------------


def test_bash_bootstrap_speaks_the_runtime_api(lam):
    name = create_function(lam, function_zip("shell"), runtime=PROVIDED_RUNTIME, handler="my.handler")
    resp, out = invoke(lam, name, {"a": 1}, LogType="Tail")
    assert "FunctionError" not in resp, out
    rid = resp["ResponseMetadata"]["RequestId"]
    assert out == f'shell:{rid}:my.handler:{{"a": 1}}'.encode()
    tail = log_tail(resp)
    assert f"shell got request {rid} deadline" in tail
    # Warm: the same bootstrap loop answers the next event.
    resp2, out2 = invoke(lam, name, {"b": 2}, LogType="Tail")
    assert out2 == f'shell:{resp2["ResponseMetadata"]["RequestId"]}:my.handler:{{"b": 2}}'.encode()
    assert "shell bootstrap starting" not in log_tail(resp2)


def test_bash_bootstrap_error_route(lam):
    name = create_function(lam, function_zip("shell"), runtime=PROVIDED_RUNTIME, handler="h")
    resp, out = invoke(lam, name, raw=b"fail")
    assert resp.get("FunctionError") == "Unhandled"
    assert out == {"errorMessage": "shell asked to fail", "errorType": "Shell.Failed"}
    # The runtime keeps going after reporting an error.
    resp, out = invoke(lam, name, raw=b"ok")
    assert "FunctionError" not in resp


def test_awslambdaric_runs_under_provided_runtime(lam):
    name = create_function(
        lam, awslambdaric_zip(), runtime=PROVIDED_RUNTIME, handler="app.handler",
        env={"SERVAL_TEST_PYTHON": TEST_PYTHON}, Timeout=30,
    )
    resp, out = invoke(lam, name, {"ric": True}, LogType="Tail")
    assert "FunctionError" not in resp, out
    assert out["runtime"] == "awslambdaric"
    assert out["event"] == {"ric": True}
    assert out["request_id"] == resp["ResponseMetadata"]["RequestId"]
    assert out["function_name"] == name
    assert "awslambdaric handler ran" in log_tail(resp)

    resp, err = invoke(lam, name, {"fail": True})
    assert resp.get("FunctionError") == "Unhandled"
    assert err["errorType"] == "RuntimeError"
    assert err["errorMessage"] == "awslambdaric handler failed on purpose"


def test_rust_lambda_runtime_function(lam):
    name = create_function(lam, rust_zip(), runtime=PROVIDED_RUNTIME, handler="bootstrap", MemorySize=256)
    resp, out = invoke(lam, name, {"from": "rust-test"})
    assert "FunctionError" not in resp, out
    rid = resp["ResponseMetadata"]["RequestId"]
    assert out["runtime"] == "rust"
    assert out["event"] == {"from": "rust-test"}
    assert out["request_id"] == rid
    assert out["function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert out["function_name"] == name
    assert out["memory_mb"] == 256
    assert out["deadline_ms"] > 0

    # Warm reuse: the second call has no init. (Not the pid it reports: in a sandbox's pid
    # namespace the runtime has the same pid in every environment.)
    resp, again = invoke(lam, name, {}, LogType="Tail")
    assert "FunctionError" not in resp, again
    assert report_line(log_tail(resp), resp["ResponseMetadata"]["RequestId"]).group("init") is None

    resp, err = invoke(lam, name, {"fail": True})
    assert resp.get("FunctionError") == "Unhandled"
    assert "rust handler failed on purpose" in err["errorMessage"]
    assert err["errorType"]


# ---------------------------------------------------------------------------------------------
# Every runtime identifier, the context's types and the environment as AWS sets them
# ---------------------------------------------------------------------------------------------

ALL_RUNTIMES = [
    "python3.9", "python3.10", "python3.11", "python3.12", "python3.13",
    "nodejs18.x", "nodejs20.x", "nodejs22.x",
    "provided", "provided.al2", "provided.al2023",
]


@pytest.mark.parametrize("runtime", ALL_RUNTIMES)
def test_every_runtime_identifier_runs_a_trivial_function(lam, runtime):
    if runtime.startswith("python"):
        zip_bytes, handler = python_zip(), "app.env_probe"
    elif runtime.startswith("nodejs"):
        zip_bytes, handler = function_zip("node-cjs"), "index.envProbe"
    else:
        zip_bytes, handler = function_zip("shell"), "trivial.handler"
    name = create_function(lam, zip_bytes, runtime=runtime, handler=handler)
    assert lam.get_function_configuration(FunctionName=name)["Runtime"] == runtime
    resp, out = invoke(lam, name, {"rt": runtime})
    assert "FunctionError" not in resp, out
    rid = resp["ResponseMetadata"]["RequestId"]
    if runtime.startswith(("python", "nodejs")):
        # AWS_EXECUTION_ENV names the managed runtime, as AWS sets it.
        assert out["env"]["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{runtime}", out["env"]
        assert out.get("request_id", out.get("requestId")) == rid
    else:
        assert out == f'shell:{rid}:trivial.handler:{{"rt": "{runtime}"}}'.encode()


def test_python_context_memory_limit_is_a_string(lam):
    name = create_function(lam, python_zip(), handler="app.echo", MemorySize=384)
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    # awslambdaric: memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] — a str.
    assert out["context"]["memory_limit_type"] == "str", out["context"]
    assert out["context"]["memory_limit_in_mb"] == "384"


def test_node_context_memory_limit_is_a_string(lam):
    name = create_function(lam, function_zip("node-cjs"), runtime=NODE_RUNTIME, handler="index.asyncHandler", MemorySize=384)
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    assert out["memoryLimitType"] == "string", out
    assert out["memoryLimitInMB"] == "384"


def test_python_environment_variables_match_aws(lam, logs):
    name = create_function(lam, python_zip(), runtime="python3.12", handler="app.env_probe", MemorySize=320)
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    env = out["env"]
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["TZ"] == ":UTC"
    assert out["local_time_offset"] == 0, "TZ=:UTC must make local time UTC"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "320"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["LAMBDA_RUNTIME_DIR"], env
    assert out["runtime_dir_is_dir"], f"LAMBDA_RUNTIME_DIR={env['LAMBDA_RUNTIME_DIR']!r} is not a directory"
    assert env["LAMBDA_TASK_ROOT"], env
    assert out["task_root_has_handler"], f"LAMBDA_TASK_ROOT={env['LAMBDA_TASK_ROOT']!r} lacks app.py"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == out["log_stream_name"]

    # The stream the environment was told is the stream its lines are stored in.
    rid = resp["ResponseMetadata"]["RequestId"]
    from serval_e2e import all_log_events, wait_for

    def start_event():
        try:
            evs = all_log_events(logs, f"/aws/lambda/{name}", filterPattern=f'"START RequestId: {rid}"')
        except logs.exceptions.ResourceNotFoundException:
            return None  # the group appears with its first stored line
        return evs[0] if evs else None

    event = wait_for(start_event, 30, what="the START line of the invocation")
    assert event["logStreamName"] == env["AWS_LAMBDA_LOG_STREAM_NAME"]


def test_node_environment_variables_match_aws(lam):
    name = create_function(lam, function_zip("node-cjs"), runtime="nodejs22.x", handler="index.envProbe", MemorySize=256)
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    env = out["env"]
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_nodejs22.x"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["TZ"] == ":UTC"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["LAMBDA_TASK_ROOT"] and env["LAMBDA_RUNTIME_DIR"]
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == out["logStreamName"]
    assert env["_HANDLER"] == "index.envProbe"


def test_python_identity_and_pretty_printed_client_context(lam):
    import base64
    import json

    name = create_function(lam, python_zip(), handler="app.echo")
    # Without a Cognito caller, AWS's context.identity is an object with both fields None.
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    assert out["context"]["identity"] == {"cognito_identity_id": None, "cognito_identity_pool_id": None}
    assert out["context"]["client_context"] is None

    # A ClientContext as the mobile SDKs send it may be pretty-printed: newlines and all.
    cc = {"client": {"installation_id": "i-1", "app_title": "t"}, "custom": {"tenant": "acme", "nested": {"a": [1, 2]}},
          "env": {"locale": "fr"}}
    pretty = json.dumps(cc, indent=4)
    assert "\n" in pretty
    resp, out = invoke(lam, name, {}, ClientContext=base64.b64encode(pretty.encode()).decode())
    assert "FunctionError" not in resp, out
    assert out["context"]["client_context"] == {"custom": cc["custom"], "env": cc["env"]}


def test_node_pretty_printed_client_context(lam):
    import base64
    import json

    name = create_function(lam, function_zip("node-cjs"), runtime=NODE_RUNTIME, handler="index.asyncHandler")
    cc = {"custom": {"tenant": "acme"}, "env": {"locale": "de"}}
    resp, out = invoke(lam, name, {}, ClientContext=base64.b64encode(json.dumps(cc, indent=2).encode()).decode())
    assert "FunctionError" not in resp, out
    assert out["clientContext"]["custom"] == {"tenant": "acme"}
    assert out["clientContext"]["env"] == {"locale": "de"}


# Node.js init failures, as AWS's runtime (aws-lambda-nodejs-runtime-interface-client,
# UserFunction.js) classifies them: a SyntaxError while loading → Runtime.UserCodeSyntaxError;
# MODULE_NOT_FOUND → Runtime.ImportModuleError; nothing exported under the name →
# Runtime.HandlerNotFound ("<handler> is undefined or not exported").
NODE_INIT_FAILURES = {
    "missing-module": ({"index.js": "exports.handler = async () => 1;\n"}, "missing.handler",
                       "Runtime.ImportModuleError", "Cannot find module"),
    "missing-required-module": ({"index.js": "require('serval-no-such-package');\nexports.handler = async () => 1;\n"},
                                "index.handler", "Runtime.ImportModuleError", "serval-no-such-package"),
    "not-exported": ({"index.js": "const handler = async () => 1;\nmodule.exports = { other: handler };\n"},
                     "index.handler", "Runtime.HandlerNotFound", "index.handler is undefined or not exported"),
    "not-a-function": ({"index.js": "exports.handler = 42;\n"}, "index.handler",
                       "Runtime.HandlerNotFound", "index.handler is not a function"),
    "syntax-error-cjs": ({"index.js": "exports.handler = async (event) => { return ;;; ) };\n"}, "index.handler",
                         "Runtime.UserCodeSyntaxError", "SyntaxError"),
    "syntax-error-esm": ({"index.mjs": "export const handler = async (event) => { return (; };\n"}, "index.handler",
                         "Runtime.UserCodeSyntaxError", "SyntaxError"),
}


@pytest.mark.parametrize("case", sorted(NODE_INIT_FAILURES))
def test_node_init_failures_have_aws_error_types(lam, case):
    from serval_e2e import make_zip

    files, handler, error_type, message_part = NODE_INIT_FAILURES[case]
    name = create_function(lam, make_zip(files), runtime=NODE_RUNTIME, handler=handler)
    for _ in range(2):  # an init failure is not cached: the next invoke tries again
        resp, out = invoke(lam, name, {})
        assert resp["StatusCode"] == 200
        assert resp.get("FunctionError") == "Unhandled", out
        assert out["errorType"] == error_type, out
        assert message_part in out["errorMessage"], out
