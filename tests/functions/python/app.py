"""Python test function for Serval's end-to-end suite.

One module, many handlers (`app.<name>`), so one zip serves most tests. Handlers that the tests
observe from outside write into the directory named by the function's `SERVAL_TEST_DIR`
environment variable (a temp dir of the test, on the same machine).
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
import time

# Module state survives across warm invocations of one environment.
COUNTER = 0
COLD_PID = os.getpid()

logger = logging.getLogger()
logger.setLevel(logging.INFO)

ENV_KEYS = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
    "TZ",
]


def _test_dir():
    return os.environ.get("SERVAL_TEST_DIR")


def _record(name, data):
    """Writes `data` as JSON to SERVAL_TEST_DIR/name, atomically."""
    d = _test_dir()
    if not d:
        return
    tmp = os.path.join(d, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, os.path.join(d, name))


def _package_version():
    try:
        with open(os.path.join(os.path.dirname(__file__), "version.txt")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _tmp_counter():
    # /tmp (or the TMPDIR the sandbox gives) belongs to one environment and survives its warm
    # invocations; keyed by function so functions sharing a host /tmp do not collide.
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "unknown")
    path = os.path.join(tempfile.gettempdir(), f"serval-test-counter-{name}")
    try:
        with open(path) as f:
            n = int(f.read())
    except FileNotFoundError:
        n = 0
    n += 1
    with open(path, "w") as f:
        f.write(str(n))
    return n


def _identity(context):
    """`context.identity` as AWS's runtime gives it: an object whose two fields are None
    unless the caller was a Cognito identity; reported as None if the attribute is absent."""
    if not hasattr(context, "identity"):
        return "missing"
    ident = context.identity
    if ident is None:
        return None
    return {
        "cognito_identity_id": getattr(ident, "cognito_identity_id", "missing"),
        "cognito_identity_pool_id": getattr(ident, "cognito_identity_pool_id", "missing"),
    }


def echo(event, context):
    """Returns the event, what the context says, the environment, and reuse counters."""
    global COUNTER
    COUNTER += 1
    cc = context.client_context
    client_context = None
    if cc is not None:
        client_context = {
            "custom": getattr(cc, "custom", None),
            "env": getattr(cc, "env", None),
        }
    print(f"echo handler invoked with {json.dumps(event)}")
    return {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            # AWS's runtime passes the environment's string through (`"128"`), not an int.
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "memory_limit_type": type(context.memory_limit_in_mb).__name__,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_time_in_millis": context.get_remaining_time_in_millis(),
            "client_context": client_context,
            "identity": _identity(context),
        },
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "user_env": {k: v for k, v in os.environ.items() if k.startswith("USER_")},
        "has_credentials": bool(os.environ.get("AWS_ACCESS_KEY_ID")),
        "pid": os.getpid(),
        "cold_pid": COLD_PID,
        "counter": COUNTER,
        "tmp_counter": _tmp_counter(),
        "cwd": os.getcwd(),
        "version": _package_version(),
    }


def fail(event, context):
    """Raises, so the caller gets an Unhandled function error."""
    raise ValueError(f"deliberate failure: {event.get('why', 'no reason')}")


def log_lines(event, context):
    """Prints to stdout and stderr and logs through the root logger."""
    marker = event.get("marker", "marker")
    print(f"stdout line {marker}")
    print(f"stderr line {marker}", file=sys.stderr)
    logger.info("logger line %s", marker)
    return {"marker": marker, "pid": os.getpid()}


def sleep(event, context):
    """Records its pid (and a child's) then sleeps `seconds`; used for timeouts and overlap."""
    child = subprocess.Popen(["sleep", "600"]) if event.get("spawn_child") else None
    _record(
        event.get("started_file", "started.json"),
        {
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "child_pid": child.pid if child else None,
            "request_id": context.aws_request_id,
            "version": _package_version(),
        },
    )
    time.sleep(float(event.get("seconds", 1)))
    if child:
        child.kill()
        child.wait()
    return {"slept": event.get("seconds", 1), "pid": os.getpid(), "version": _package_version()}


def barrier(event, context):
    """Waits until `parties` invocations have all arrived, so they provably run at once."""
    d = _test_dir()
    parties = int(event["parties"])
    me = os.path.join(d, f"arrived-{context.aws_request_id}")
    open(me, "w").close()
    deadline = time.monotonic() + float(event.get("max_wait", 20))
    while time.monotonic() < deadline:
        if len([n for n in os.listdir(d) if n.startswith("arrived-")]) >= parties:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("barrier: not every invocation arrived; they did not run concurrently")
    time.sleep(float(event.get("hold", 0.5)))
    return {
        "pid": os.getpid(),
        "log_stream_name": context.log_stream_name,
        "request_id": context.aws_request_id,
    }


def exit3(event, context):
    """Kills the runtime process with exit status 3 (Runtime.ExitError)."""
    _record("exit.json", {"pid": os.getpid()})
    sys.stdout.flush()
    os._exit(3)


def hog(event, context):
    """Touches far more memory than MemorySize allows (Runtime.OutOfMemory)."""
    _record("hog.json", {"pid": os.getpid()})
    chunks = []
    limit_mb = int(event.get("mb", 2048))
    for _ in range(limit_mb // 16):
        chunks.append(b"\x01" * (16 << 20))  # written, so the pages are really resident
    return {"survived_mb": limit_mb}


def huge(event, context):
    """Returns a response over the 6 MB synchronous limit."""
    return {"data": "x" * int(event.get("bytes", 7 * 1024 * 1024))}


def whoami(event, context):
    """Small answer with the pid and code version; for reuse and code-update checks."""
    return {"pid": os.getpid(), "version": _package_version(), "counter": COUNTER}


def env_probe(event, context):
    """The execution environment as the function sees it: variables and what they point at."""
    keys = ENV_KEYS + ["AWS_EXECUTION_ENV", "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_INITIALIZATION_TYPE"]
    env = {k: os.environ.get(k) for k in keys}
    task_root = env.get("LAMBDA_TASK_ROOT") or ""
    runtime_dir = env.get("LAMBDA_RUNTIME_DIR") or ""
    return {
        "env": env,
        "task_root_has_handler": os.path.isfile(os.path.join(task_root, "app.py")),
        "runtime_dir_is_dir": bool(runtime_dir) and os.path.isdir(runtime_dir),
        "log_stream_name": context.log_stream_name,
        "request_id": context.aws_request_id,
        "local_time_offset": time.localtime().tm_gmtoff,
    }


def sleep_then_mark(event, context):
    """Sleeps `seconds`, then writes `marker` into SERVAL_TEST_DIR: proves the invocation ran
    to its end (e.g. after the caller hung up)."""
    _record("started-" + event["marker"], {"request_id": context.aws_request_id, "pid": os.getpid()})
    time.sleep(float(event.get("seconds", 2)))
    _record(event["marker"], {"request_id": context.aws_request_id, "pid": os.getpid()})
    print(f"marker {event['marker']} written")
    return {"marker": event["marker"]}


def exit_with_child(event, context):
    """Starts `sleep 60`, records its pid, then kills the runtime (Runtime.ExitError)."""
    child = subprocess.Popen(["sleep", "60"])
    _record("child.json", {"pid": os.getpid(), "child_pid": child.pid})
    sys.stdout.flush()
    os._exit(3)
