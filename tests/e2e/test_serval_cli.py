"""Serval's own command line: deploy, invoke, functions, logs."""

import json
import shutil
import subprocess
import threading
import time

import pytest

from serval_e2e import (
    CLIENT_ENV,
    FUNCTIONS,
    PY_RUNTIME,
    SERVAL_BIN,
    run_serval,
    unique_name,
    wait_for,
)


@pytest.fixture
def src_dir(tmp_path):
    d = tmp_path / "src"
    shutil.copytree(FUNCTIONS / "python", d)
    (d / "version.txt").write_text("cli-1")
    return d


def deploy(server, src_dir, name, *extra):
    return run_serval(
        server.endpoint, "deploy", str(src_dir), "--name", name, "--runtime", PY_RUNTIME, "--handler", "app.echo", *extra
    )


def test_deploy_creates_then_updates_function(server, lam, src_dir):
    name = unique_name("deploy")
    deploy(server, src_dir, name, "--memory", "256", "--timeout", "12", "--env", "USER_A=1", "--env", "USER_B=two=2")
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["Runtime"] == PY_RUNTIME
    assert cfg["Handler"] == "app.echo"
    assert cfg["MemorySize"] == 256
    assert cfg["Timeout"] == 12
    assert cfg["Environment"]["Variables"] == {"USER_A": "1", "USER_B": "two=2"}
    out = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert out["version"] == "cli-1"

    (src_dir / "version.txt").write_text("cli-2")
    deploy(server, src_dir, name, "--memory", "512")
    cfg2 = lam.get_function_configuration(FunctionName=name)
    assert cfg2["CodeSha256"] != cfg["CodeSha256"]
    assert cfg2["MemorySize"] == 512
    out = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert out["version"] == "cli-2"


def test_deploy_preserves_executable_bits_for_bootstrap(server, lam, tmp_path):
    d = tmp_path / "shell"
    shutil.copytree(FUNCTIONS / "shell", d)
    name = unique_name("deploysh")
    run_serval(server.endpoint, "deploy", str(d), "--name", name, "--runtime", "provided.al2023", "--handler", "h")
    resp = lam.invoke(FunctionName=name, Payload=b"hi")
    assert "FunctionError" not in resp
    assert resp["Payload"].read().endswith(b":h:hi")


def test_invoke_prints_result_for_json_payload_and_file(server, src_dir, tmp_path):
    name = unique_name("cliinv")
    deploy(server, src_dir, name)
    proc = run_serval(server.endpoint, "invoke", name, "--payload", '{"from": "arg", "n": 42}')
    assert '"from"' in proc.stdout and '"arg"' in proc.stdout, proc.stdout
    assert "42" in proc.stdout

    payload = tmp_path / "event.json"
    payload.write_text(json.dumps({"from": "file-payload"}))
    proc = run_serval(server.endpoint, "invoke", name, "--payload", f"@{payload}")
    assert "file-payload" in proc.stdout, proc.stdout


def test_invoke_of_failing_function_exits_non_zero_with_error(server, src_dir):
    name = unique_name("clifail")
    run_serval(server.endpoint, "deploy", str(src_dir), "--name", name, "--runtime", PY_RUNTIME, "--handler", "app.fail")
    proc = run_serval(server.endpoint, "invoke", name, "--payload", '{"why": "cli-visible"}', check=False)
    assert proc.returncode != 0
    shown = proc.stdout + proc.stderr
    assert "ValueError" in shown
    assert "deliberate failure: cli-visible" in shown


def test_invoke_unknown_function_exits_non_zero(server):
    proc = run_serval(server.endpoint, "invoke", unique_name("nobody"), check=False)
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stdout + proc.stderr or "not found" in (proc.stdout + proc.stderr).lower()


def test_functions_lists_deployed_function_in_a_table(server, src_dir):
    name = unique_name("clilist")
    deploy(server, src_dir, name, "--memory", "320")
    proc = run_serval(server.endpoint, "functions")
    row = next((l for l in proc.stdout.splitlines() if name in l), None)
    assert row is not None, proc.stdout
    assert PY_RUNTIME in row
    assert "320" in row
    # --endpoint as a flag instead of the environment variable.
    proc = run_serval(None, "functions", "--endpoint", server.endpoint)
    assert name in proc.stdout


def test_logs_prints_function_lines(server, src_dir):
    name = unique_name("clilogs")
    run_serval(server.endpoint, "deploy", str(src_dir), "--name", name, "--runtime", PY_RUNTIME, "--handler", "app.log_lines")
    run_serval(server.endpoint, "invoke", name, "--payload", '{"marker": "cli-logs-1"}')

    def printed():
        out = run_serval(server.endpoint, "logs", name).stdout
        return out if "stdout line cli-logs-1" in out else None

    out = wait_for(printed, 30, what="serval logs to show the function's output")
    assert "REPORT RequestId:" in out
    assert "START RequestId:" in out


def test_logs_follow_streams_new_lines(server, src_dir):
    name = unique_name("clifollow")
    run_serval(server.endpoint, "deploy", str(src_dir), "--name", name, "--runtime", PY_RUNTIME, "--handler", "app.log_lines")
    env = dict(CLIENT_ENV, SERVAL_ENDPOINT=server.endpoint, NO_COLOR="1")
    import os

    env = dict(os.environ, **env)
    proc = subprocess.Popen([str(SERVAL_BIN), "logs", name, "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, text=True)
    seen: list[str] = []

    def reader():
        for line in proc.stdout:
            seen.append(line)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        run_serval(server.endpoint, "invoke", name, "--payload", '{"marker": "followed-1"}')
        wait_for(lambda: any("stdout line followed-1" in l for l in seen), 30, what="followed line")
        run_serval(server.endpoint, "invoke", name, "--payload", '{"marker": "followed-2"}')
        wait_for(lambda: any("stdout line followed-2" in l for l in seen), 30, what="second followed line")
        assert proc.poll() is None, "serval logs --follow exited on its own"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# A clock shim for one client process: it sees the wall clock `SERVAL_TEST_CLOCK_OFFSET_S`
# seconds ahead, as if the user ran the command that much later. Only the CLI is shifted; the
# server and the stored timestamps keep the real time.
CLOCK_SHIM_C = r"""
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long offset_s(void) {
    const char *s = getenv("SERVAL_TEST_CLOCK_OFFSET_S");
    return s ? atol(s) : 0;
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
    long rc = syscall(SYS_clock_gettime, clk, ts);
    if (rc == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset_s();
    return (int)rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0 && tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
    return rc;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
"""


@pytest.fixture(scope="module")
def clock_shim(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to build the clock shim that makes the CLI run 'later'")
    d = tmp_path_factory.mktemp("clock-shim")
    (d / "shim.c").write_text(CLOCK_SHIM_C)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(d / "shim.so"), str(d / "shim.c")],
                   check=True, capture_output=True, timeout=120)
    return d / "shim.so"


def run_serval_later(endpoint, shim, hours, *args):
    import os

    env = dict(os.environ, **CLIENT_ENV)
    env.update(NO_COLOR="1", SERVAL_ENDPOINT=endpoint, LD_PRELOAD=str(shim),
               SERVAL_TEST_CLOCK_OFFSET_S=str(int(hours * 3600)))
    proc = subprocess.run([str(SERVAL_BIN), *args], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def test_logs_without_since_prints_everything_retained(server, src_dir, clock_shim):
    name = unique_name("clilogsold")
    run_serval(server.endpoint, "deploy", str(src_dir), "--name", name, "--runtime", PY_RUNTIME, "--handler", "app.log_lines")
    run_serval(server.endpoint, "invoke", name, "--payload", '{"marker": "long-ago"}')
    wait_for(lambda: "REPORT RequestId:" in run_serval(server.endpoint, "logs", name).stdout, 30,
             what="the invocation's lines to be stored")

    # The shim works: three hours "later", the last minute holds none of those lines.
    recent = run_serval_later(server.endpoint, clock_shim, 3, "logs", name, "--since", "1m")
    assert "stdout line long-ago" not in recent, "the clock shim did not shift the CLI's clock"

    # Without --since, everything retained is shown, however long ago it was written.
    out = run_serval_later(server.endpoint, clock_shim, 3, "logs", name)
    assert "stdout line long-ago" in out, out
    assert "START RequestId:" in out and "REPORT RequestId:" in out, out
