"""Python test function for the versions, concurrency and asynchronous-invocation suites.

Every handler reports what it saw to the test's collector (`SERVAL_TEST_URL`, see `Scratch` in
tests/e2e/serval_e2e.py) under a marker name that is unique per call, so a test can count how
many times something ran (retries, duplicates after a crash) and when.
"""

import json
import os
import time
import urllib.request
import uuid

# Module state: one value per environment (a cold start makes a new one).
ENV_ID = uuid.uuid4().hex
# When this environment ran its init (module import): before any invocation it serves.
INIT_TIME = time.time()
COUNTER = 0
INIT_TYPE = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _package_version():
    try:
        with open(os.path.join(os.path.dirname(__file__), "version.txt")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _report(name, data):
    url = os.environ.get("SERVAL_TEST_URL", "").rstrip("/")
    if not url:
        return
    req = urllib.request.Request(f"{url}/{name}", data=json.dumps(data).encode(), method="PUT")
    for attempt in range(5):
        try:
            with _OPENER.open(req, timeout=10) as resp:
                resp.read()
            return
        except OSError:
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


def _seen(event, context):
    global COUNTER
    COUNTER += 1
    return {
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "env_version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
        "package_version": _package_version(),
        "env_id": ENV_ID,
        "pid": os.getpid(),
        "counter": COUNTER,
        "init_type": INIT_TYPE,
        "init_time": INIT_TIME,
        "user_env": {k: v for k, v in os.environ.items() if k.startswith("USER_")},
        "time": time.time(),
        # A large event is only measured: a marker holds at most 1 MB.
        "event": event if len(json.dumps(event)) < 65536 else None,
        "event_bytes": len(json.dumps(event)),
    }


def record(event, context):
    """Reports `<tag>-<event id>-<random>` (one marker per call, so duplicates show), optionally
    after sleeping `seconds`; returns what it saw."""
    seconds = float(event.get("seconds", 0)) if isinstance(event, dict) else 0
    if seconds:
        time.sleep(seconds)
    seen = _seen(event, context)
    tag = event.get("tag", "h") if isinstance(event, dict) else "h"
    ident = event.get("id", "noid") if isinstance(event, dict) else "noid"
    _report(f"{tag}-{ident}-{uuid.uuid4().hex[:8]}", seen)
    return {"handled": ident, "request_id": context.aws_request_id, "env_id": ENV_ID,
            "package_version": _package_version()}


def fail(event, context):
    """Reports an attempt (`attempt-<request id>-<random>`), then raises."""
    seen = _seen(event, context)
    _report(f"attempt-{context.aws_request_id}-{uuid.uuid4().hex[:8]}", seen)
    raise RuntimeError(f"deliberate failure of {event.get('id', 'noid')}")


def destination(event, context):
    """A destination function: stores the invocation record it receives."""
    rid = "none"
    if isinstance(event, dict):
        rid = (event.get("requestContext") or {}).get("requestId", "none")
    _report(f"dest-{rid}-{uuid.uuid4().hex[:8]}", {"record": event, "seen_by": context.aws_request_id})
    return {"stored": rid}


def span(event, context):
    """Reports when it started and ended (`span-<request id>`), sleeping `seconds` in
    between: the test computes how many ran at once from the spans."""
    start = time.time()
    _report(f"begin-{context.aws_request_id}", {"start": start, "env_id": ENV_ID})
    time.sleep(float(event.get("seconds", 1)))
    end = time.time()
    _report(f"span-{context.aws_request_id}", {"start": start, "end": end, "env_id": ENV_ID,
                                                "tag": event.get("tag")})
    return {"start": start, "end": end, "env_id": ENV_ID}


def whoami(event, context):
    """Answers with what it saw, reports nothing."""
    return _seen(event, context)


def hold(event, context):
    """Reports arrival, then waits until `parties` calls arrived (or `max_wait`), then holds
    `hold` seconds: parallel calls provably overlap."""
    seen = _seen(event, context)
    _report(f"arrived-{context.aws_request_id}", seen)
    url = os.environ.get("SERVAL_TEST_URL", "").rstrip("/")
    parties = int(event.get("parties", 1))
    deadline = time.monotonic() + float(event.get("max_wait", 20))
    while time.monotonic() < deadline:
        with _OPENER.open(url + "/", timeout=10) as resp:
            names = json.loads(resp.read())
        if len([n for n in names if n.startswith("arrived-")]) >= parties:
            break
        time.sleep(0.05)
    time.sleep(float(event.get("hold", 0.3)))
    return seen
