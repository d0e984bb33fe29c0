"""Python test function for the HTTP-trigger and schedule suites (Function URLs, HTTP APIs,
EventBridge rules).

`app.handler` is the target of Function URLs and HTTP API routes. It picks what to do from the
request's `mode` query parameter, or else from the last segment of the path (`/x/error`):

- `echo` (default): a `{statusCode: 200, headers, body}` response whose body is JSON
  `{"event": <the event received>, "context": <what the context says>}`;
- `custom`: status `status` (default 201), headers `Content-Type: text/plain` and
  `X-Custom: custom-value`, two cookies, body `custom body`;
- `binary`: echoes the request body's bytes back base64-encoded (`isBase64Encoded: true`,
  `application/octet-stream`), with what it received in `x-received-*` headers;
- `string`: returns a bare string; `object`: a bare JSON object (no `statusCode`);
- `error`: raises;
- `v1custom`: a payload format 1.0 response with `multiValueHeaders`;
- `malformed`: an object whose `statusCode` is not a number (no HTTP response can be made);
- `sleep`: sleeps `seconds` (default 3), then echoes.

Every invocation of `handler` is reported to the test's collector (`SERVAL_TEST_URL`, see
`Scratch` in tests/e2e/serval_e2e.py) as `inv-<request id>`, so a test can tell whether the
function ran at all (a CORS preflight must not run it).

`app.scheduled` is the target of EventBridge rules: it reports each event it receives as
`sched-<random>`, with the time it ran.
"""

import base64
import hashlib
import json
import os
import time
import urllib.request
import uuid

MODES = {"echo", "custom", "binary", "string", "object", "error", "v1custom", "malformed", "sleep"}

# No proxy from the environment: the collector is on the host's loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _package_version():
    try:
        with open(os.path.join(os.path.dirname(__file__), "version.txt")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _report(name, data):
    """Sends `data` as JSON to the test's collector as the file `name`; nothing without
    SERVAL_TEST_URL."""
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


def _context(context):
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "aws_request_id": context.aws_request_id,
        "package_version": _package_version(),
    }


def _query(event):
    return event.get("queryStringParameters") or {}


def _path(event):
    # Format 2.0 has rawPath, format 1.0 path.
    return event.get("rawPath") or event.get("path") or "/"


def _mode(event):
    mode = _query(event).get("mode")
    if mode:
        return mode
    last = _path(event).rstrip("/").rsplit("/", 1)[-1]
    return last if last in MODES else "echo"


def _body_bytes(event):
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode()


def handler(event, context):
    if not isinstance(event, dict):
        event = {"not_a_dict": event}
    mode = _mode(event)
    _report(f"inv-{context.aws_request_id}", {"mode": mode, "event": event, "context": _context(context)})
    if mode == "error":
        raise RuntimeError("deliberate failure for an HTTP trigger")
    if mode == "string":
        return "hello from a bare string"
    if mode == "object":
        return {"bare": True, "mode": "object", "numbers": [1, 2, 3]}
    if mode == "custom":
        status = int(_query(event).get("status", "201"))
        return {
            "statusCode": status,
            "headers": {"Content-Type": "text/plain", "X-Custom": "custom-value"},
            "cookies": ["session=abc123; Path=/; HttpOnly", "theme=dark; Max-Age=3600"],
            "body": "custom body",
            "isBase64Encoded": False,
        }
    if mode == "binary":
        raw = _body_bytes(event)
        return {
            "statusCode": 200,
            "headers": {
                "Content-Type": "application/octet-stream",
                "X-Received-Sha256": hashlib.sha256(raw).hexdigest(),
                "X-Received-Base64": "true" if event.get("isBase64Encoded") else "false",
                "X-Received-Length": str(len(raw)),
            },
            "body": base64.b64encode(raw).decode(),
            "isBase64Encoded": True,
        }
    if mode == "malformed":
        return {"statusCode": "teapot", "body": "no status"}
    if mode == "sleep":
        time.sleep(float(_query(event).get("seconds", "3")))
    if mode == "v1custom":
        return {
            "statusCode": 202,
            "headers": {"Content-Type": "text/plain", "X-Custom": "one"},
            "multiValueHeaders": {"X-Multi": ["first", "second"]},
            "body": "v1 body",
            "isBase64Encoded": False,
        }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Echo": "yes"},
        "body": json.dumps({"event": event, "context": _context(context)}),
    }


def scheduled(event, context):
    """Reports the event a rule delivered (`sched-<random>`); returns nothing of interest."""
    _report(
        f"sched-{uuid.uuid4().hex}",
        {"event": event, "received_at": time.time(), "context": _context(context)},
    )
    return {"ok": True}
