"""Helpers for Serval's end-to-end suite: starting the real binary, clients, zips, polling.

Nothing here imitates a part of Serval: the server is the real `serval` binary and every
request goes through a real client (boto3, the AWS CLI, requests, Serval's own CLI).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import requests
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "tests" / "functions"
SERVAL_BIN = Path(os.environ.get("SERVAL_BIN", REPO / "target" / "debug" / "serval"))
RUST_BOOTSTRAP = Path(
    os.environ.get("SERVAL_TEST_RUST_BOOTSTRAP", REPO / "target" / "debug" / "bootstrap")
)
AWSLAMBDARIC_DIR = Path(
    os.environ.get("SERVAL_TEST_AWSLAMBDARIC_DIR", REPO / "tests" / ".deps" / "awslambdaric")
)
# The interpreter awslambdaric was installed for; the test function's bootstrap uses it.
TEST_PYTHON = os.environ.get("SERVAL_TEST_PYTHON", "python3")
AWS_CLI = Path(sys.executable).parent / "aws"

REGION = "us-east-1"
ACCOUNT = "000000000000"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
PY_RUNTIME = "python3.11"
NODE_RUNTIME = "nodejs20.x"
PROVIDED_RUNTIME = "provided.al2023"
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6291456

# When set (e.g. `process`), every server the suite starts gets `--sandbox <value>` unless the
# test passes its own `--sandbox`: the same suite runs against each backend.
SANDBOX_OVERRIDE = os.environ.get("SERVAL_TEST_SANDBOX", "").strip()

# Credentials and config for every client: dummy keys, no user config files.
CLIENT_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": "/nonexistent/serval-e2e-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/serval-e2e-aws-credentials",
    "AWS_PAGER": "",
    "AWS_EC2_METADATA_DISABLED": "true",
}
for _k, _v in CLIENT_ENV.items():
    os.environ[_k] = _v
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)

LISTENING_RE = re.compile(r"^serval listening on (http://\d+\.\d+\.\d+\.\d+:\d+)\s*$")
# Printed before the listening line: `serval sandbox: linux (running as root; cgroup v1; ...)`.
SANDBOX_RE = re.compile(r"^serval sandbox: (\S+)(?: \((.*)\))?\s*$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# tracing-subscriber's fmt layer: `<timestamp>  ERROR <target>: <message>`; the timestamp may be
# absent (`without_time`), and the level may be padded.
ERROR_LINE_RE = re.compile(r"^(?:\S+\s+)?ERROR\s")


def unique_name(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------------------------


class ServalServer:
    """One `serval server` process on 127.0.0.1:0 with its own data dir.

    `env` adds variables to the server's environment (e.g. SERVAL_PYTHON). SERVAL_TEST_SANDBOX
    adds `--sandbox <value>` unless `args` has its own `--sandbox`. After `start()`,
    `sandbox` is the backend the server reported on its `serval sandbox: <name> (<reason>)` line
    ("linux" or "process"; None if it printed no such line), `sandbox_line` that whole line.
    """

    def __init__(self, data_dir: Path, log_dir: Path, args: Iterable[str] = (), env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.sandbox: str | None = None
        self.sandbox_reason: str | None = None
        self.sandbox_line: str | None = None
        self.proc: subprocess.Popen | None = None
        self.endpoint: str | None = None
        self.starts = 0
        self.stderr_path: Path | None = None
        self.stderr_paths: list[Path] = []
        self.allowed_errors: list[re.Pattern] = []
        self._stdout_rest: list[str] = []

    # -- process -------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> "ServalServer":
        if not SERVAL_BIN.exists():
            raise RuntimeError(
                f"serval binary not found at {SERVAL_BIN}; build it with `cargo build` "
                "or set SERVAL_BIN"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.stderr_path = self.log_dir / f"serval-stderr-{self.starts}.log"
        self.stderr_paths.append(self.stderr_path)
        env = dict(os.environ)
        env.update(self.extra_env)
        env["NO_COLOR"] = "1"
        cmd = [
            str(SERVAL_BIN),
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        override = SANDBOX_OVERRIDE and not any(a == "--sandbox" or a.startswith("--sandbox=") for a in self.args)
        if override:
            cmd += ["--sandbox", SANDBOX_OVERRIDE]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        line_box: list[str] = []
        got_line = threading.Event()

        def read_stdout(proc=self.proc):
            assert proc.stdout is not None
            for raw in proc.stdout:
                text = raw.decode("utf-8", "replace")
                if not got_line.is_set():
                    line_box.append(text)
                    if LISTENING_RE.match(text.strip()):
                        got_line.set()
                else:
                    self._stdout_rest.append(text)
            got_line.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        got_line.wait(timeout)
        match = next((LISTENING_RE.match(l.strip()) for l in line_box if LISTENING_RE.match(l.strip())), None)
        if match is None:
            code = self.proc.poll()
            self.kill()
            raise RuntimeError(
                f"serval did not print `serval listening on http://IP:PORT` within {timeout}s "
                f"(exit code {code}); stdout: {''.join(line_box)!r}; "
                f"stderr:\n{self.stderr_text()[-4000:]}"
            )
        self.endpoint = match.group(1)
        self.sandbox = self.sandbox_reason = self.sandbox_line = None
        for line in line_box:
            sandbox = SANDBOX_RE.match(line.strip())
            if sandbox:
                self.sandbox_line = line.strip()
                self.sandbox, self.sandbox_reason = sandbox.group(1), sandbox.group(2)
        if override and SANDBOX_OVERRIDE != "auto" and self.sandbox != SANDBOX_OVERRIDE:
            self.kill()
            raise RuntimeError(
                f"SERVAL_TEST_SANDBOX={SANDBOX_OVERRIDE} but the server reported {self.sandbox_line!r}"
            )
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit; also kills anything left in its group."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._kill_group(proc.pid)
        self.proc = None
        return proc.returncode

    def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self._kill_group(proc.pid)
        self.proc = None

    @staticmethod
    def _kill_group(pgid: int) -> None:
        # The server was started in its own session; whatever it left in that process group
        # (environments of the process sandbox) was started by this test run.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def restart(self) -> "ServalServer":
        self.stop()
        return self.start()

    # -- Serval's own log ---------------------------------------------------------------------

    def stderr_text(self) -> str:
        out = []
        for p in self.stderr_paths:
            try:
                out.append(p.read_text("utf-8", "replace"))
            except FileNotFoundError:
                pass
        return "".join(out)

    def stderr_size(self) -> list[int]:
        return [p.stat().st_size if p.exists() else 0 for p in self.stderr_paths]

    def expect_error(self, pattern: str) -> None:
        """Lets a test declare an ERROR line it provokes on purpose."""
        self.allowed_errors.append(re.compile(pattern))

    def unexpected_errors(self, since: list[int] | None = None) -> list[str]:
        found = []
        for i, p in enumerate(self.stderr_paths):
            start = since[i] if since and i < len(since) else 0
            try:
                with open(p, "rb") as f:
                    f.seek(start)
                    text = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                continue
            for line in text.splitlines():
                clean = ANSI_RE.sub("", line)
                if ERROR_LINE_RE.match(clean) and not any(
                    a.search(clean) for a in self.allowed_errors
                ):
                    found.append(clean)
        return found

    # -- clients --------------------------------------------------------------------------------

    def lambda_client(self, validate: bool = True):
        return lambda_client(self.endpoint, validate=validate)

    def logs_client(self):
        return boto3.client(
            "logs",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=client_config(),
        )


def client_config(validate: bool = True) -> Config:
    # One attempt: a retried 429 or 5xx would hide what Serval answered.
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=180,
        connect_timeout=10,
        parameter_validation=validate,
    )


def lambda_client(endpoint: str, validate: bool = True):
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=client_config(validate),
    )


def signed_request(
    method: str,
    url: str,
    body: bytes | str | None = None,
    headers: dict | None = None,
    service: str = "lambda",
    timeout: float = 180,
) -> requests.Response:
    """A raw HTTP request signed with SigV4 (dummy credentials), sent with `requests`."""
    if isinstance(body, str):
        body = body.encode()
    req = botocore.awsrequest.AWSRequest(method=method, url=url, data=body or b"", headers=headers or {})
    creds = botocore.credentials.Credentials("test", "test")
    botocore.auth.SigV4Auth(creds, service, REGION).add_auth(req)
    prepared = req.prepare()
    return requests.request(
        method, prepared.url, data=body or b"", headers=dict(prepared.headers), timeout=timeout
    )


def assert_aws_error(resp: requests.Response, status: int, error_type: str | Iterable[str]) -> dict:
    """Checks AWS's error shape: status, `x-amzn-ErrorType`, JSON body with Type/Message."""
    types = {error_type} if isinstance(error_type, str) else set(error_type)
    assert resp.status_code == status, (resp.status_code, resp.text[:2000])
    header = resp.headers.get("x-amzn-ErrorType", "")
    assert header.split(":")[0] in types, (dict(resp.headers), resp.text[:2000])
    body = resp.json()
    assert body.get("Type") in ("User", "Service"), body
    message = body.get("Message", body.get("message"))
    assert isinstance(message, str) and message, body
    return body


# ---------------------------------------------------------------------------------------------
# Zips
# ---------------------------------------------------------------------------------------------

FileSpec = "str | bytes | tuple[str | bytes, int]"


def make_zip(files: dict, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """Builds a zip in memory from {path: content} or {path: (content, mode)}.

    A mode with S_IFLNK makes a symlink whose content is the target. Files named `bootstrap`
    default to 0755, everything else to 0644.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for path, spec in files.items():
            if isinstance(spec, tuple):
                content, mode = spec
            else:
                content = spec
                mode = 0o755 if path.rsplit("/", 1)[-1] == "bootstrap" else 0o644
            if isinstance(content, str):
                content = content.encode()
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = compression
            if not stat.S_IFMT(mode):
                mode |= stat.S_IFREG
            info.external_attr = (mode & 0xFFFF) << 16
            info.create_system = 3  # unix, so the mode is honoured
            zf.writestr(info, content)
    return buf.getvalue()


def dir_files(root: Path, prefix: str = "") -> dict:
    """{zip path: (bytes, mode)} for every file under root, keeping executable bits."""
    out = {}
    root = Path(root)
    for p in sorted(root.rglob("*")):
        if p.is_dir() or "__pycache__" in p.parts:
            continue
        rel = prefix + p.relative_to(root).as_posix()
        mode = p.stat().st_mode & 0o777
        if p.name == "bootstrap":
            mode |= 0o755
        out[rel] = (p.read_bytes(), mode)
    return out


def function_zip(name: str, extra: dict | None = None) -> bytes:
    """Zips tests/functions/<name>, plus extra {path: content} entries."""
    files = dir_files(FUNCTIONS / name)
    files.update(extra or {})
    return make_zip(files)


def python_zip(version: str | None = None, extra: dict | None = None) -> bytes:
    files = {}
    if version is not None:
        files["version.txt"] = version
    files.update(extra or {})
    return function_zip("python", files)


def awslambdaric_zip() -> bytes:
    if not (AWSLAMBDARIC_DIR / "awslambdaric").is_dir():
        raise RuntimeError(
            f"awslambdaric is not installed at {AWSLAMBDARIC_DIR}; run scripts/test once"
        )
    files = dir_files(AWSLAMBDARIC_DIR)
    files = {k: v for k, v in files.items() if not k.startswith(".serval-requirements")}
    files.update(dir_files(FUNCTIONS / "awslambdaric"))
    return make_zip(files)


def rust_zip() -> bytes:
    if not RUST_BOOTSTRAP.exists():
        raise RuntimeError(
            f"{RUST_BOOTSTRAP} missing; build it with `cargo build -p serval-test-rust-hello`"
        )
    return make_zip({"bootstrap": (RUST_BOOTSTRAP.read_bytes(), 0o755)})


def zip_bomb(unzipped_bytes: int = 260 * 1024 * 1024) -> bytes:
    """One highly compressible entry, streamed into the zip so memory stays small."""
    buf = io.BytesIO()
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("app.py", "w", force_zip64=True) as f:
            written = 0
            while written < unzipped_bytes:
                f.write(chunk)
                written += len(chunk)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Functions and invocations
# ---------------------------------------------------------------------------------------------


def create_function(
    lam,
    zip_bytes: bytes,
    *,
    name: str | None = None,
    runtime: str = PY_RUNTIME,
    handler: str = "app.echo",
    env: dict | None = None,
    **kwargs,
) -> str:
    name = name or unique_name()
    params = dict(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": zip_bytes},
        **kwargs,
    )
    if env is not None:
        params["Environment"] = {"Variables": env}
    resp = lam.create_function(**params)
    assert resp["FunctionName"] == name
    return name


def invoke(lam, name: str, payload=None, raw: bytes | None = None, **kwargs):
    """Invokes and returns (response, decoded payload: JSON if it parses, else bytes)."""
    body = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
    resp = lam.invoke(FunctionName=name, Payload=body, **kwargs)
    data = resp["Payload"].read()
    try:
        decoded = json.loads(data) if data else None
    except ValueError:
        decoded = data
    return resp, decoded


def log_tail(resp) -> str:
    return base64.b64decode(resp["LogResult"]).decode("utf-8", "replace")


REPORT_RE = re.compile(
    r"REPORT RequestId: (?P<rid>[0-9a-f-]{36})\s+"
    r"Duration: (?P<duration>\d+(?:\.\d+)?) ms\s+"
    r"Billed Duration: (?P<billed>\d+) ms\s+"
    r"Memory Size: (?P<memory>\d+) MB\s+"
    r"Max Memory Used: (?P<used>\d+) MB"
    r"(?:\s+Init Duration: (?P<init>\d+(?:\.\d+)?) ms)?"
)


def report_line(text: str, request_id: str) -> re.Match:
    for m in REPORT_RE.finditer(text):
        if m.group("rid") == request_id:
            return m
    raise AssertionError(f"no REPORT line for {request_id} in:\n{text}")


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Polls until predicate() is truthy; returns its value. Never asserts on speed, only on
    the outcome within a generous bound."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def all_log_events(logs, group: str, **kwargs) -> list[dict]:
    events, token = [], None
    while True:
        params = dict(logGroupName=group, **kwargs)
        if token:
            params["nextToken"] = token
        page = logs.filter_log_events(**params)
        events.extend(page.get("events", []))
        new = page.get("nextToken")
        if not new or new == token:
            return events
        token = new


def wait_for_log_text(logs, group: str, needles: Iterable[str], timeout: float = 30.0) -> str:
    """Waits until every needle appears in the group's events; returns all messages joined."""
    needles = list(needles)

    def check():
        try:
            text = "".join(e["message"] if e["message"].endswith("\n") else e["message"] + "\n" for e in all_log_events(logs, group))
        except logs.exceptions.ResourceNotFoundException:
            return None
        return text if all(n in text for n in needles) else None

    return wait_for(check, timeout, what=f"{needles} in log group {group}")


def process_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a zombie has exited already)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def read_json_file(path: Path, timeout: float = 30.0) -> dict:
    def load():
        try:
            return json.loads(Path(path).read_text())
        except (FileNotFoundError, ValueError):
            return None

    return wait_for(load, timeout, what=f"{path}")


# ---------------------------------------------------------------------------------------------
# What test functions report back
# ---------------------------------------------------------------------------------------------

# A marker's name: one path segment, no `..`, not hidden (the collector's temp files are).
MARKER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
MAX_MARKER_BYTES = 1 << 20


class Scratch:
    """A directory the test reads, filled by its functions through an HTTP collector.

    A sandboxed function sees none of the host's files, so functions do not write here: they
    PUT `<url>/<name>` (tests/functions/python/app.py's `_report`), and the collector stores
    the body as `<dir>/<name>`, atomically (a temp file, then a rename), so `scratch / name`
    and `read_json_file(scratch / name)` work as with a shared directory. `GET <url>/` lists
    the names stored so far (as JSON). The collector listens on 127.0.0.1, which a function
    reaches with the host's network (`--network host`, the default) or without a sandbox.
    Functions find the URL in SERVAL_TEST_URL: pass `env=scratch.env` to create_function.
    """

    def __init__(self, path: Path):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        root = self.path

        class Collector(BaseHTTPRequestHandler):
            def _name(self) -> str | None:
                name = self.path.lstrip("/")
                if not MARKER_NAME_RE.match(name) or ".." in name:
                    self.send_error(400, "bad marker name")
                    return None
                return name

            def do_PUT(self):
                name = self._name()
                if name is None:
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_MARKER_BYTES:
                    self.send_error(413, "marker too large")
                    return
                body = self.rfile.read(length)
                tmp = root / f".{name}.{uuid.uuid4().hex}.tmp"
                tmp.write_bytes(body)
                os.replace(tmp, root / name)
                self.send_response(204)
                self.end_headers()

            def do_GET(self):
                if self.path != "/":
                    self.send_error(404)
                    return
                names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
                body = json.dumps(names).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet: pytest's output is for failures
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict:
        """The function environment variables that point a test function at this collector."""
        return {"SERVAL_TEST_URL": self.url}

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


def process_key(proc: dict) -> tuple:
    """A hashable form of a test function's `process` record, for sets."""
    return (proc["pid_ns"], proc["pid"], proc["start_ticks"])


def function_process_alive(proc: dict) -> bool:
    """True while the process a test function described in a `process` record runs (and is no
    zombie).

    The record is what the process saw of itself (tests/functions/python/app.py's `_process`):
    its pid in its own pid namespace, that namespace (`pid:[inode]`) and its start time in
    clock ticks after boot. Under the `linux` sandbox the pid is namespace-local (the runtime is
    pid 2 in every environment), so the host process is the one in that namespace whose
    innermost pid (`NSpid`) and start time match; without a sandbox the namespace is ours and
    the pid is the host's. The start time keeps a reused pid or namespace number from passing
    for the same process.
    """
    same_ns = proc["pid_ns"] == os.readlink("/proc/self/ns/pid")
    candidates = [str(proc["pid"])] if same_ns else [d for d in os.listdir("/proc") if d.isdigit()]
    for host_pid in candidates:
        try:
            if os.readlink(f"/proc/{host_pid}/ns/pid") != proc["pid_ns"]:
                continue
            with open(f"/proc/{host_pid}/status") as f:
                nspid = next(line.split()[-1] for line in f if line.startswith("NSpid:"))
            if int(nspid) != proc["pid"]:
                continue
            with open(f"/proc/{host_pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError, StopIteration):
            continue
        if int(fields[19]) == proc["start_ticks"] and fields[0] not in ("Z", "X"):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Command-line clients
# ---------------------------------------------------------------------------------------------


def run_aws(endpoint: str, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, **CLIENT_ENV)
    cmd = [str(AWS_CLI), "--endpoint-url", endpoint, "--region", REGION, "--output", "json", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


_AWS_CLI_MAJOR: list[int] = []


def aws_cli_major() -> int:
    if not _AWS_CLI_MAJOR:
        out = subprocess.run([str(AWS_CLI), "--version"], capture_output=True, text=True, timeout=60)
        m = re.search(r"aws-cli/(\d+)\.", out.stdout + out.stderr)
        _AWS_CLI_MAJOR.append(int(m.group(1)) if m else 1)
    return _AWS_CLI_MAJOR[0]


def raw_payload_args() -> list[str]:
    """`--cli-binary-format raw-in-base64-out` where the CLI has it (v2); v1 has no such option
    and already takes `--payload` as raw bytes."""
    return ["--cli-binary-format", "raw-in-base64-out"] if aws_cli_major() >= 2 else []


def run_serval(endpoint: str | None, *args: str, check: bool = True, timeout: float = 180, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **CLIENT_ENV)
    env["NO_COLOR"] = "1"
    if endpoint:
        env["SERVAL_ENDPOINT"] = endpoint
    cmd = [str(SERVAL_BIN), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc
