"""Helpers shared by the HTTP-trigger and schedule suites (test_function_urls.py,
test_http_apis.py, test_schedules.py): the python-http test function, clients for API Gateway
v2 and EventBridge, curl, and reading what the function reported.

Names under `.localhost` resolve to loopback (RFC 6761): curl does so itself, but this
machine's resolver (glibc, `files dns`) does not, so importing this module teaches urllib3
(hence `requests`) the same rule, for `.localhost` names only. A request to the `FunctionUrl` or
`ApiEndpoint` Serval returned then goes to 127.0.0.1 with that URL's own `Host` header, exactly
as from a machine whose resolver follows the RFC.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import requests
import urllib3.util.connection as _u3conn

from serval_e2e import (
    ACCOUNT,
    CLIENT_ENV,
    REGION,
    client_config,
    create_function,
    function_zip,
    wait_for,
)

# ---------------------------------------------------------------------------------------------
# `.localhost` names resolve to loopback
# ---------------------------------------------------------------------------------------------

_original_create_connection = _u3conn.create_connection


def _create_connection(address, *args, **kwargs):
    host, port = address
    if isinstance(host, str) and (host.lower().rstrip(".").endswith(".localhost")):
        host = "127.0.0.1"
    return _original_create_connection((host, port), *args, **kwargs)


if getattr(_u3conn.create_connection, "__name__", "") != "_create_connection":
    _u3conn.create_connection = _create_connection

# ---------------------------------------------------------------------------------------------
# Names, ARNs, functions
# ---------------------------------------------------------------------------------------------

FUNCTION_ARN_PREFIX = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# requestContext.time of payload format 2.0: `12/Mar/2020:19:03:58 +0000`.
V2_TIME_RE = re.compile(r"^\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000$")
ISO_SECONDS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def fn_arn(name: str, qualifier: str | None = None) -> str:
    return FUNCTION_ARN_PREFIX + name + (f":{qualifier}" if qualifier else "")


def http_zip(version: str | None = None) -> bytes:
    """tests/functions/python-http, with a version.txt when `version` is given."""
    return function_zip("python-http", {"version.txt": version} if version is not None else {})


def create_http_function(lam, scratch=None, version: str | None = None, handler: str = "app.handler", **kwargs) -> str:
    """A python-http function reporting to `scratch` (if given); returns its name."""
    env = dict(scratch.env) if scratch is not None else None
    return create_function(lam, http_zip(version), handler=handler, env=env, **kwargs)


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------


def apigw_client(endpoint: str, validate: bool = True):
    return boto3.client(
        "apigatewayv2",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=client_config(validate),
    )


def events_client(endpoint: str, validate: bool = True):
    return boto3.client(
        "events",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=client_config(validate),
    )


def error_of(exc) -> tuple[int, str, str]:
    """(HTTP status, error code, message) of a botocore ClientError (a pytest ExceptionInfo)."""
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"].get("Message", "")


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def http(method: str, url: str, **kwargs) -> requests.Response:
    """One request with `requests`, no proxy from the environment, no redirects followed."""
    kwargs.setdefault("timeout", 120)
    kwargs.setdefault("allow_redirects", False)
    with requests.Session() as s:
        s.trust_env = False
        return s.request(method, url, **kwargs)


def echoed(resp: requests.Response) -> tuple[dict, dict]:
    """(event, context) from the python-http function's default `echo` answer."""
    assert resp.status_code == 200, (resp.status_code, dict(resp.headers), resp.text[:2000])
    data = resp.json()
    return data["event"], data["context"]


def header_values(resp: requests.Response, name: str) -> list[str]:
    """Every value of a response header, one per header line (urllib3 keeps repeats apart)."""
    return list(resp.raw.headers.getlist(name))


def token_set(value: str | None) -> set[str]:
    """A comma-separated header value as a set of lower-case tokens."""
    if not value:
        return set()
    return {t.strip().lower() for t in value.split(",") if t.strip()}


def path_form(endpoint: str, kind: str, ident: str, path: str = "/") -> str:
    """The path-based form on the server's own address: `<endpoint>/_aws/<kind>/<id><path>`."""
    return f"{endpoint}/_aws/{kind}/{ident}{path}"


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


class CurlResult:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


def curl(url: str, *args: str, tmp: Path, timeout: float = 120) -> CurlResult:
    """Runs `curl -sS <args> <url>` (no proxy), returning status, response headers and body."""
    head = tmp / "curl-headers.txt"
    body = tmp / "curl-body.bin"
    cmd = ["curl", "-sS", "--noproxy", "*", "-D", str(head), "-o", str(body), "-w", "%{http_code}", *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=dict(CLIENT_ENV, PATH="/usr/bin:/bin:/usr/local/bin"))
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}"
    headers = []
    for line in head.read_text("latin-1").splitlines():
        if ":" in line and not line.startswith("HTTP/"):
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return CurlResult(int(proc.stdout.strip()[-3:]), headers, body.read_bytes())


# ---------------------------------------------------------------------------------------------
# What the function reported
# ---------------------------------------------------------------------------------------------


def reports(scratch, prefix: str) -> list[dict]:
    """Every report whose name starts with `prefix`, parsed (half-written ones skipped)."""
    out = []
    for p in sorted(scratch.path.iterdir()):
        if p.name.startswith(prefix):
            try:
                out.append(json.loads(p.read_text()))
            except ValueError:
                pass
    return out


def invocations(scratch) -> list[dict]:
    """What python-http's `handler` reported, one per invocation."""
    return reports(scratch, "inv-")


def wait_reports(scratch, prefix: str, count: int, timeout: float = 60.0, where=None) -> list[dict]:
    """Waits until at least `count` reports `prefix*` (those for which `where` holds) exist."""
    def enough():
        found = [r for r in reports(scratch, prefix) if where is None or where(r)]
        return found if len(found) >= count else None

    return wait_for(enough, timeout, interval=0.2, what=f"{count} report(s) {prefix}*")
