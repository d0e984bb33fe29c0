"""Python test function for Serval's end-to-end suite.

One module, many handlers (`app.<name>`), so one zip serves most tests. Handlers that the tests
observe from outside report to the test's collector, whose URL is the function's
`SERVAL_TEST_URL` environment variable (see `Scratch` in tests/e2e/serval_e2e.py): a sandboxed
function cannot see the host's files, but it can reach 127.0.0.1.

Processes are described by `_process`, never by a bare pid: in a sandbox's pid namespace the
runtime is pid 2 in every environment.
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request


def _process(pid=None):
    """A process as the test can find it from the host: its pid in its own pid namespace, that
    namespace, and its start time (clock ticks after boot), which tell apart processes that
    share a namespace-local pid (see `function_process_alive` in tests/e2e/serval_e2e.py)."""
    pid = pid or os.getpid()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return {"pid": pid, "pid_ns": os.readlink("/proc/self/ns/pid"), "start_ticks": int(fields[19])}


# Module state survives across warm invocations of one environment.
COUNTER = 0
# The runtime process, found once at cold start: one per environment.
RUNTIME = _process()

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


# No proxy from the environment: the collector is on the host's loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _collector(path=""):
    return os.environ.get("SERVAL_TEST_URL", "").rstrip("/") + "/" + path


def _report(name, data):
    """Sends `data` as JSON to the test's collector, which stores it as the file `name`; does
    nothing without SERVAL_TEST_URL."""
    if not os.environ.get("SERVAL_TEST_URL"):
        return
    req = urllib.request.Request(_collector(name), data=json.dumps(data).encode(), method="PUT")
    with _OPENER.open(req, timeout=10) as resp:
        resp.read()


def _reported():
    """The names reported to the collector so far."""
    with _OPENER.open(_collector(), timeout=10) as resp:
        return json.loads(resp.read())


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
        "process": _process(),
        "runtime": RUNTIME,
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
    return {"marker": marker, "process": _process()}


def sleep(event, context):
    """Reports its process (and a child's) then sleeps `seconds`; used for timeouts and overlap."""
    child = subprocess.Popen(["sleep", "600"]) if event.get("spawn_child") else None
    _report(
        event.get("started_file", "started.json"),
        {
            "process": _process(),
            "child": _process(child.pid) if child else None,
            "request_id": context.aws_request_id,
            "version": _package_version(),
        },
    )
    time.sleep(float(event.get("seconds", 1)))
    if child:
        child.kill()
        child.wait()
    return {"slept": event.get("seconds", 1), "process": _process(), "version": _package_version()}


def barrier(event, context):
    """Waits until `parties` invocations have all arrived, so they provably run at once."""
    parties = int(event["parties"])
    _report(f"arrived-{context.aws_request_id}", {})
    deadline = time.monotonic() + float(event.get("max_wait", 20))
    while time.monotonic() < deadline:
        if len([n for n in _reported() if n.startswith("arrived-")]) >= parties:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("barrier: not every invocation arrived; they did not run concurrently")
    time.sleep(float(event.get("hold", 0.5)))
    return {
        "process": _process(),
        "log_stream_name": context.log_stream_name,
        "request_id": context.aws_request_id,
    }


def exit3(event, context):
    """Kills the runtime process with exit status 3 (Runtime.ExitError)."""
    _report("exit.json", {"process": _process()})
    sys.stdout.flush()
    os._exit(3)


def hog(event, context):
    """Touches far more memory than MemorySize allows (Runtime.OutOfMemory)."""
    _report("hog.json", {"process": _process()})
    chunks = []
    limit_mb = int(event.get("mb", 2048))
    for _ in range(limit_mb // 16):
        chunks.append(b"\x01" * (16 << 20))  # written, so the pages are really resident
    return {"survived_mb": limit_mb}


def huge(event, context):
    """Returns a response over the 6 MB synchronous limit."""
    return {"data": "x" * int(event.get("bytes", 7 * 1024 * 1024))}


def whoami(event, context):
    """Small answer with the process and code version; for reuse and code-update checks."""
    return {"process": _process(), "version": _package_version(), "counter": COUNTER}


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
    """Sleeps `seconds`, then reports `marker` to the collector: proves the invocation ran to
    its end (e.g. after the caller hung up)."""
    _report("started-" + event["marker"], {"request_id": context.aws_request_id, "process": _process()})
    time.sleep(float(event.get("seconds", 2)))
    _report(event["marker"], {"request_id": context.aws_request_id, "process": _process()})
    print(f"marker {event['marker']} written")
    return {"marker": event["marker"]}


def exit_with_child(event, context):
    """Starts `sleep 60`, reports it and itself, then kills the runtime (Runtime.ExitError)."""
    child = subprocess.Popen(["sleep", "60"])
    _report("child.json", {"process": _process(), "child": _process(child.pid)})
    sys.stdout.flush()
    os._exit(3)
