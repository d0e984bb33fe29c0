"""Every row of DESIGN.md's failure table, as the synchronous caller sees it, and what is left
of the environment afterwards."""

import json
import threading

import pytest
from botocore.exceptions import ClientError

from serval_e2e import (
    SYNC_PAYLOAD_LIMIT,
    create_function,
    function_zip,
    invoke,
    log_tail,
    make_zip,
    function_process_alive,
    python_zip,
    read_json_file,
    unique_name,
    wait_for,
)


def assert_function_error(resp, out, error_type, message_part=None):
    assert resp["StatusCode"] == 200
    assert resp.get("FunctionError") == "Unhandled", (resp.get("FunctionError"), out)
    assert isinstance(out, dict), out
    assert out["errorType"] == error_type, out
    if message_part is not None:
        assert message_part in out["errorMessage"], out


def test_handler_exception_is_unhandled_error_with_python_shape(lam):
    name = create_function(lam, python_zip(), handler="app.fail")
    resp, out = invoke(lam, name, {"why": "because"})
    assert_function_error(resp, out, "ValueError")
    assert out["errorMessage"] == "deliberate failure: because"
    assert isinstance(out["stackTrace"], list) and out["stackTrace"], out
    assert any("app.py" in frame for frame in out["stackTrace"]), out["stackTrace"]
    assert out.get("requestId") == resp["ResponseMetadata"]["RequestId"]


def test_handler_exception_keeps_the_environment(lam):
    name = create_function(lam, python_zip(), handler="app.fail")
    invoke(lam, name, {})
    # The environment that raised answers the next calls warm.
    resp1, out1 = invoke(lam, name, {}, LogType="Tail")
    resp2, out2 = invoke(lam, name, {}, LogType="Tail")
    assert "Init Duration" not in log_tail(resp1)
    assert "Init Duration" not in log_tail(resp2)


def test_handler_error_is_logged(lam):
    name = create_function(lam, python_zip(), handler="app.fail")
    resp, out = invoke(lam, name, {"why": "logged"}, LogType="Tail")
    tail = log_tail(resp)
    assert "deliberate failure: logged" in tail
    assert "REPORT RequestId" in tail


def test_timeout_reports_task_timed_out_and_kills_the_environment(lam, scratch):
    name = create_function(
        lam, python_zip(), handler="app.sleep", Timeout=1, env=scratch.env
    )
    resp, out = invoke(lam, name, {"seconds": 30, "spawn_child": True}, LogType="Tail")
    rid = resp["ResponseMetadata"]["RequestId"]
    assert_function_error(resp, out, "Sandbox.Timedout")
    assert out["errorMessage"] == f"RequestId: {rid} Error: Task timed out after 1.00 seconds"
    assert "Task timed out after 1.00 seconds" in log_tail(resp)

    started = read_json_file(scratch / "started.json")
    # Nothing of that environment is left: the runtime and the child it started are gone.
    wait_for(lambda: not function_process_alive(started["process"]), 15, what="timed-out runtime to be killed")
    wait_for(lambda: not function_process_alive(started["child"]), 15, what="timed-out runtime's child to be killed")

    # The next invocation gets a fresh environment.
    (scratch / "started.json").unlink()
    resp, out = invoke(lam, name, {"seconds": 0}, LogType="Tail")
    assert "FunctionError" not in resp, out
    assert out["process"] != started["process"]
    assert "Init Duration" in log_tail(resp)


def test_timeout_message_uses_configured_timeout(lam):
    name = create_function(lam, python_zip(), handler="app.sleep", Timeout=2)
    resp, out = invoke(lam, name, {"seconds": 30})
    assert_function_error(resp, out, "Sandbox.Timedout", "Task timed out after 2.00 seconds")


def test_memory_limit_exceeded_is_out_of_memory_and_environment_destroyed(lam, scratch):
    name = create_function(
        lam, python_zip(), handler="app.hog", MemorySize=128, Timeout=60, env=scratch.env
    )
    resp, out = invoke(lam, name, {"mb": 2048})
    rid = resp["ResponseMetadata"]["RequestId"]
    assert_function_error(resp, out, "Runtime.OutOfMemory")
    assert out["errorMessage"].startswith(f"RequestId: {rid} Error: Runtime exited with error:"), out
    hog = read_json_file(scratch / "hog.json")
    wait_for(lambda: not function_process_alive(hog["process"]), 15, what="OOM-killed runtime to be gone")

    lam.update_function_configuration(FunctionName=name, Handler="app.whoami")
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    assert out["process"] != hog["process"]


def test_runtime_exit_is_exit_error_and_environment_destroyed(lam, scratch):
    name = create_function(lam, python_zip(), handler="app.exit3", env=scratch.env)
    resp, out = invoke(lam, name, {})
    rid = resp["ResponseMetadata"]["RequestId"]
    assert_function_error(resp, out, "Runtime.ExitError")
    assert out["errorMessage"] == f"RequestId: {rid} Error: Runtime exited with error: exit status 3"
    first = read_json_file(scratch / "exit.json")
    wait_for(lambda: not function_process_alive(first["process"]), 15, what="exited runtime to be reaped")

    (scratch / "exit.json").unlink()
    resp, out = invoke(lam, name, {})
    assert_function_error(resp, out, "Runtime.ExitError")
    second = read_json_file(scratch / "exit.json")
    assert second["process"] != first["process"], "a dead environment was reused"


def test_import_error_is_init_failure_every_time_until_code_is_fixed(lam):
    name = create_function(lam, function_zip("python-import-error"), handler="app.handler")
    for _ in range(2):
        resp, out = invoke(lam, name, {}, LogType="Tail")
        assert_function_error(resp, out, "Runtime.ImportModuleError", "Unable to import module 'app'")
        assert "serval_module_that_does_not_exist" in out["errorMessage"]
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'fixed'\n"}))
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    assert out == "fixed"


def test_missing_handler_function_is_handler_not_found(lam):
    name = create_function(lam, python_zip(), handler="app.no_such_handler")
    resp, out = invoke(lam, name, {})
    assert_function_error(resp, out, "Runtime.HandlerNotFound", "no_such_handler")


def test_missing_handler_module_is_import_error(lam):
    name = create_function(lam, python_zip(), handler="nomodule.handler")
    resp, out = invoke(lam, name, {})
    assert_function_error(resp, out, "Runtime.ImportModuleError", "nomodule")


def test_provided_runtime_without_bootstrap_is_invalid_entrypoint(lam):
    from serval_e2e import PROVIDED_RUNTIME

    name = create_function(lam, make_zip({"README": "no bootstrap here"}), runtime=PROVIDED_RUNTIME, handler="x")
    resp, out = invoke(lam, name, {})
    assert_function_error(resp, out, "Runtime.InvalidEntrypoint")


def test_response_over_6_mb_is_response_size_too_large(lam):
    name = create_function(lam, python_zip(), handler="app.huge", MemorySize=512)
    resp, out = invoke(lam, name, {"bytes": 7 * 1024 * 1024})
    assert_function_error(resp, out, "Function.ResponseSizeTooLarge")
    assert out["errorMessage"] == "Response payload size exceeded maximum allowed payload size (6291556 bytes)."


def test_response_just_under_6_mb_is_returned(lam):
    name = create_function(lam, python_zip(), handler="app.huge", MemorySize=512)
    resp, out = invoke(lam, name, {"bytes": 6 * 1024 * 1024 - 100})
    assert "FunctionError" not in resp
    assert len(out["data"]) == 6 * 1024 * 1024 - 100


def test_unknown_function_is_resource_not_found(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
        lam.invoke(FunctionName=unique_name("unknown"), Payload=b"{}")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_payload_over_6_mb_is_413(lam):
    name = create_function(lam, python_zip())
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, Payload=b'"' + b"z" * SYNC_PAYLOAD_LIMIT + b'"')
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert exc.value.response["Error"]["Code"] == "RequestEntityTooLargeException"


def test_concurrency_exhausted_is_429_too_many_requests(start_server, scratch):
    srv = start_server("--max-concurrency", "1")
    lam = srv.lambda_client()
    name = create_function(lam, python_zip(), handler="app.sleep", Timeout=60, env=scratch.env)
    first: dict = {}

    def run_first():
        first["resp"], first["out"] = invoke(lam, name, {"seconds": 3})

    t = threading.Thread(target=run_first)
    t.start()
    try:
        # The first invocation is running (it wrote its marker) and holds the only slot.
        read_json_file(scratch / "started.json")
        with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
            lam.invoke(FunctionName=name, Payload=b'{"seconds": 0}')
        err = exc.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert err.get("Reason") == "ConcurrentInvocationLimitExceeded", err
        assert err["Error"]["Message"]
    finally:
        t.join(120)
    assert "FunctionError" not in first["resp"], first["out"]
    assert first["out"]["slept"] == 3

    # The slot is free again.
    resp, out = invoke(lam, name, {"seconds": 0})
    assert "FunctionError" not in resp, out


# A `bootstrap` that is executable but that the kernel refuses to exec: AWS answers with an
# init failure (`Runtime.InvalidEntrypoint`, e.g. "fork/exec /var/task/bootstrap: exec format
# error"), never with a service error, and Serval has nothing to log at ERROR about it.
UNEXECUTABLE_BOOTSTRAPS = {
    # ENOENT from execve: the interpreter named in the shebang does not exist.
    "missing-interpreter": b"#!/nonexistent/interpreter\necho never runs\n",
    # ENOEXEC: a text file without a shebang; no shell fallback as execvp would do.
    "text-without-shebang": b"garbage \x01\x02\x03 not a program\n\xff\xfe nothing to run here\n",
    # ENOEXEC: the ELF magic without a valid header.
    "truncated-elf": b"\x7fELF" + b"\x00" * 12,
}


@pytest.mark.parametrize("kind", sorted(UNEXECUTABLE_BOOTSTRAPS))
def test_unexecutable_bootstrap_is_invalid_entrypoint_not_a_service_error(server, lam, kind):
    from serval_e2e import PROVIDED_RUNTIME

    zip_bytes = make_zip({"bootstrap": (UNEXECUTABLE_BOOTSTRAPS[kind], 0o755)})
    name = create_function(lam, zip_bytes, runtime=PROVIDED_RUNTIME, handler="x")
    since = server.stderr_size()
    for _ in range(2):  # the environment is not kept: the second invoke fails the same way
        resp, out = invoke(lam, name, {})
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200, out
        assert_function_error(resp, out, "Runtime.InvalidEntrypoint")
        assert out.get("errorMessage"), out
    errors = server.unexpected_errors(since)
    assert not errors, f"an unexecutable bootstrap is the function's failure, not Serval's: {errors}"


def test_crashed_runtime_leaves_no_child_process_behind(lam, scratch):
    name = create_function(lam, python_zip(), handler="app.exit_with_child", env=scratch.env)
    resp, out = invoke(lam, name, {})
    rid = resp["ResponseMetadata"]["RequestId"]
    assert_function_error(resp, out, "Runtime.ExitError")
    assert out["errorMessage"] == f"RequestId: {rid} Error: Runtime exited with error: exit status 3"
    rec = read_json_file(scratch / "child.json")
    wait_for(lambda: not function_process_alive(rec["process"]), 15, what="crashed runtime to be reaped")
    wait_for(lambda: not function_process_alive(rec["child"]), 15, what="the crashed runtime's `sleep 60` child to be killed")
