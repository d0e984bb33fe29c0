"""Isolation of the `linux` sandbox backend, attacked from inside by hostile functions.

Every test deploys tests/functions/hostile (one handler, `app.handler`, dispatching on
`event["action"]`) on a real `serval server --sandbox linux` and checks one thing the sandbox must
stop or bound: what a function can see and write, which identity and privileges it has, which
syscalls it gets, what it can do to /proc/1 (CVE-2019-5736) and through inherited descriptors
(CVE-2024-21626), the pids/memory/disk/CPU limits, the network namespace, the freezer, and what
a server leaves behind when it stops or is killed.

Where the linux sandbox cannot run (not root, not Linux, or the server reports
`serval sandbox: process`) every test skips with the reason. SERVAL_TEST_FORCE_SANDBOX=process
runs the same tests against `--sandbox process` (no isolation) instead of skipping; nearly all
of them must then FAIL, which shows that they test the sandbox and not something else. In that
mode flags only the linux backend has (`--network`, `--rootfs`) and flags the binary does not
know are left out, and the hostile function stops its bombs at caps and undoes what it managed
to do (it runs as root on the host there).
"""

from __future__ import annotations

import base64
import errno
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from serval_e2e import (
    FUNCTIONS,
    SERVAL_BIN,
    TEST_PYTHON,
    ServalServer,
    create_function,
    function_zip,
    invoke,
    process_alive,
    unique_name,
    wait_for,
)

FORCE = os.environ.get("SERVAL_TEST_FORCE_SANDBOX", "").strip()
if FORCE not in ("", "process"):
    raise ValueError(f"SERVAL_TEST_FORCE_SANDBOX must be empty or 'process', not {FORCE!r}")

# The identity of every linux environment (AWS's sbx_user1051 is 993:990).
SANDBOX_UID, SANDBOX_GID = 993, 990
PIDS_MAX = 1024
CPU_MB_PER_CORE = 1769
LINUX_ONLY_FLAGS = {"--network", "--rootfs"}
# cgroup v1 hierarchies the linux backend uses (cgroup v2: the unified hierarchy).
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
# Every device a linux environment may see in /dev, and those it must see.
DEV_ALLOWED = {"null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm"}
DEV_REQUIRED = {"null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr"}
DENIED_WRITE = (errno.EROFS, errno.EACCES, errno.EPERM)


# ---------------------------------------------------------------------------------------------
# Servers with the linux sandbox
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _server_flags() -> frozenset[str]:
    """The long options `serval server --help` lists."""
    out = subprocess.run(
        [str(SERVAL_BIN), "server", "--help"], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", out.stdout))


def sandbox_args(*flags: str) -> list[str]:
    """`--sandbox linux` and flags (pairs of option and value); when forced to the process
    backend, `--sandbox process` and only those flags the process backend and this binary take."""
    assert len(flags) % 2 == 0, flags
    if not FORCE:
        return ["--sandbox", "linux", *flags]
    out = ["--sandbox", FORCE]
    for flag, value in zip(flags[::2], flags[1::2]):
        if flag not in LINUX_ONLY_FLAGS and flag in _server_flags():
            out += [flag, value]
    return out


def _require_linux_host() -> None:
    if FORCE:
        return
    if sys.platform != "linux":
        pytest.skip(f"the linux sandbox runs only on Linux, not {sys.platform}")
    if os.geteuid() != 0:
        pytest.skip(
            f"the linux sandbox needs root; these tests run as uid {os.geteuid()} "
            "(SERVAL_TEST_FORCE_SANDBOX=process runs them against the process sandbox, to watch them fail)"
        )


@functools.lru_cache(maxsize=None)
def _auto_sandbox_line() -> str | None:
    """What a server with `--sandbox auto` reports on this machine (None if it does not start)."""
    with tempfile.TemporaryDirectory(prefix="serval-sandbox-probe-") as d:
        srv = ServalServer(Path(d) / "data", Path(d) / "logs", ["--sandbox", "auto"])
        try:
            srv.start(timeout=30)
        except RuntimeError:
            return None
        try:
            return srv.sandbox_line
        finally:
            srv.stop()


def start_sandboxed(start, *flags: str, **kwargs) -> ServalServer:
    """Starts a server through `start(*args, **kwargs)` with the linux sandbox and flags.

    Skips where the linux sandbox is unavailable: not root, or a `--sandbox auto` server on this
    machine reports `serval sandbox: process (<reason>)`. A server that was asked for linux and
    reports anything else fails the test: it would run hostile code unisolated.
    """
    _require_linux_host()
    try:
        srv = start(*sandbox_args(*flags), **kwargs)
    except RuntimeError:
        if not FORCE:
            line = _auto_sandbox_line()
            if line and line.startswith("serval sandbox: process"):
                pytest.skip(f"linux sandbox unavailable on this machine; `--sandbox auto` says: {line}")
        raise
    if not FORCE and srv.sandbox != "linux":
        srv.stop()
        pytest.fail(
            f"asked for --sandbox linux, the server reported {srv.sandbox_line!r} "
            "(expected `serval sandbox: linux (<reason>)` before the listening line)",
            pytrace=False,
        )
    return srv


def _fail_on_errors(srv: ServalServer, since=None, when="during the test") -> None:
    errors = srv.unexpected_errors(since)
    if errors:
        shown = "\n".join(errors[:20])
        pytest.fail(
            f"serval logged {len(errors)} unexpected ERROR line(s) {when} (stderr in {srv.log_dir}):\n{shown}",
            pytrace=False,
        )


def _module_server(tmp_path_factory, label: str, *flags: str, env=None):
    base = tmp_path_factory.mktemp(label)

    def start(*args, **kwargs):
        return ServalServer(base / "data", base / "logs", args, env=env).start()

    return start_sandboxed(start, *flags)


@pytest.fixture(scope="module")
def linux_server(serval_bin, tmp_path_factory):
    """`--sandbox linux` with the host's network and the default freeze grace (100 ms)."""
    srv = _module_server(tmp_path_factory, "iso-linux")
    yield srv
    srv.stop()
    _fail_on_errors(srv, when="while shared by this module")


@pytest.fixture(scope="module")
def isolated_server(serval_bin, tmp_path_factory):
    """`--sandbox linux --network none`."""
    srv = _module_server(tmp_path_factory, "iso-netnone", "--network", "none")
    yield srv
    srv.stop()
    _fail_on_errors(srv, when="while shared by this module")


@pytest.fixture(autouse=True)
def _no_unexpected_errors_in_module_servers(request):
    servers = [
        request.getfixturevalue(n) for n in ("linux_server", "isolated_server") if n in request.fixturenames
    ]
    sizes = [s.stderr_size() for s in servers]
    yield
    for srv, since in zip(servers, sizes):
        _fail_on_errors(srv, since)


@pytest.fixture(scope="module")
def lam(linux_server):
    return linux_server.lambda_client()


@pytest.fixture(scope="module")
def lam_none(isolated_server):
    return isolated_server.lambda_client()


# ---------------------------------------------------------------------------------------------
# The hostile function
# ---------------------------------------------------------------------------------------------


def deploy(lam, *, memory: int = 512, storage: int | None = None, timeout: int = 30, owner: str | None = None) -> str:
    """Deploys tests/functions/hostile under a fresh name; `owner` adds an owner.txt to the code
    (which also makes the package, and its code directory, unique)."""
    kwargs = dict(MemorySize=memory, Timeout=timeout)
    if storage is not None:
        kwargs["EphemeralStorage"] = {"Size": storage}
    extra = {"owner.txt": owner} if owner is not None else None
    return create_function(
        lam, function_zip("hostile", extra), name=unique_name("hostile"), handler="app.handler", **kwargs
    )


def act(lam, name: str, action: str, /, **fields):
    """Invokes one action; the handler itself must succeed (it reports failures as data)."""
    resp, out = invoke(lam, name, {"action": action, **fields})
    assert "FunctionError" not in resp, (action, out)
    return out


def assert_denied(outcome: dict, errors, what: str) -> None:
    """outcome is the hostile function's {"ok": ..., "error": ..., "errno": ...}."""
    assert not outcome["ok"], f"{what} worked inside the sandbox: {outcome}"
    if all(isinstance(e, int) for e in errors):
        assert outcome["errno"] in errors, f"{what}: expected errno in {[errno.errorcode[e] for e in errors]}, got {outcome}"
    else:
        assert outcome["error"] in errors, f"{what}: expected {errors}, got {outcome}"


@pytest.fixture(scope="module")
def probe(lam):
    """One hostile function on the linux server for the probes that change nothing."""
    return deploy(lam)


@pytest.fixture(scope="module")
def identity(lam, probe):
    return act(lam, probe, "identity")


@pytest.fixture(scope="module")
def syscall_results(lam, probe):
    return act(lam, probe, "syscalls")


# ---------------------------------------------------------------------------------------------
# The host's file system is out of sight, and the sandbox's own is read-only
# ---------------------------------------------------------------------------------------------


def test_file_in_a_host_temp_dir_is_invisible(lam, probe, tmp_path):
    marker = tmp_path / "host-marker.txt"
    marker.write_text("written on the host by the test\n")
    out = act(lam, probe, "read", path=str(marker))
    assert_denied(out, ["FileNotFoundError"], f"reading {marker}")


def test_server_data_dir_is_invisible(lam, probe, linux_server):
    db = linux_server.data_dir / "serval.db"
    assert db.is_file(), f"{db} should exist on the host"
    out = act(lam, probe, "read", path=str(db))
    assert_denied(out, ["FileNotFoundError"], f"reading the server's {db}")


def test_host_source_tree_is_invisible(lam, probe):
    source = FUNCTIONS / "hostile" / "app.py"
    out = act(lam, probe, "read", path=str(source))
    assert_denied(out, ["FileNotFoundError"], f"reading the host's copy of the function, {source}")


def test_home_directory_is_invisible(lam, probe):
    home = Path.home()
    files = sorted(p for p in home.iterdir() if p.is_file()) if home.is_dir() else []
    if not files:
        pytest.skip(f"no file directly in {home} to look for")
    out = act(lam, probe, "read", path=str(files[0]))
    assert_denied(out, ["FileNotFoundError"], f"reading {files[0]}")


def test_task_root_is_read_only(lam, probe):
    out = act(lam, probe, "write", path="/var/task/x")
    assert_denied(out, DENIED_WRITE, "creating /var/task/x")


def test_root_directory_is_read_only(lam, probe):
    path = f"/serval-hostile-{os.urandom(4).hex()}"
    try:
        out = act(lam, probe, "write", path=path)
    finally:
        # Without a sandbox (forced process mode, as root) the function could create it on the
        # host; it removes it itself, and so does the test.
        Path(path).unlink(missing_ok=True)
    assert_denied(out, DENIED_WRITE, f"creating {path}")


def test_opt_is_empty(lam, probe):
    out = act(lam, probe, "listdir", path="/opt")
    assert out == {"ok": True, "value": []}, out


def test_dev_holds_only_the_minimal_devices(lam, probe):
    out = act(lam, probe, "listdir", path="/dev")
    assert out["ok"], out
    extra = set(out["value"]) - DEV_ALLOWED
    assert not extra, f"/dev of a sandbox must hold only {sorted(DEV_ALLOWED)}; also has {sorted(extra)}"


def test_dev_holds_the_devices_runtimes_need(lam, probe):
    out = act(lam, probe, "listdir", path="/dev")
    assert out["ok"], out
    assert DEV_REQUIRED <= set(out["value"]), out["value"]


@pytest.mark.parametrize("entry", ["kcore", "keys", "timer_list", "sched_debug"])
def test_sensitive_proc_files_are_masked(lam, probe, entry):
    path = f"/proc/{entry}"
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this host's kernel")
    out = act(lam, probe, "read", path=path)
    leaked = out["ok"] and out["value"]["bytes"] > 0
    assert not leaked, f"{path} gave {out['value']['bytes']} bytes inside the sandbox: {out['value']['head']!r}"


def test_proc_sys_is_read_only(lam, probe):
    # Opened for writing and closed again without a byte written.
    out = act(lam, probe, "open_write", path="/proc/sys/kernel/hostname")
    assert_denied(out, DENIED_WRITE, "opening /proc/sys/kernel/hostname for writing")


def test_sysrq_trigger_is_read_only(lam, probe):
    if not os.path.exists("/proc/sysrq-trigger"):
        pytest.skip("/proc/sysrq-trigger does not exist on this host's kernel")
    out = act(lam, probe, "open_write", path="/proc/sysrq-trigger")
    assert_denied(out, DENIED_WRITE + (errno.ENOENT,), "opening /proc/sysrq-trigger for writing")


# ---------------------------------------------------------------------------------------------
# Identity and privileges
# ---------------------------------------------------------------------------------------------


def test_runs_as_the_sandbox_user(identity):
    ids = {k: identity[k] for k in ("uid", "euid", "gid", "egid")}
    assert ids == {"uid": SANDBOX_UID, "euid": SANDBOX_UID, "gid": SANDBOX_GID, "egid": SANDBOX_GID}, ids
    assert set(identity["groups"]) <= {SANDBOX_GID}, identity["groups"]


def test_has_no_capabilities(identity):
    caps = {k: v for k, v in identity["status"].items() if k.startswith("Cap")}
    nonzero = {k: v for k, v in caps.items() if v is None or int(v, 16) != 0}
    assert not nonzero, f"capability sets must all be empty: {caps}"


def test_runs_with_no_new_privs_and_a_seccomp_filter(identity):
    status = identity["status"]
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2"), status


@pytest.mark.parametrize("ns", ["pid", "mnt", "ipc", "uts"])
def test_has_its_own_namespace(identity, ns):
    host = os.readlink(f"/proc/self/ns/{ns}")
    assert identity["ns"][ns] is not None, identity["ns"]
    assert identity["ns"][ns] != host, f"the environment shares the host's {ns} namespace {host}"


def test_runtime_is_a_child_of_the_sandbox_init(identity):
    assert identity["ppid"] == 1, identity


def test_open_files_are_limited(identity):
    assert identity["nofile"] == [1024, 1024], identity["nofile"]


# ---------------------------------------------------------------------------------------------
# Processes and /proc
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def host_sentinel():
    """A host process with a unique token in its command line."""
    token = f"serval-sentinel-{os.urandom(6).hex()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", token], stdin=subprocess.DEVNULL
    )
    yield token
    proc.kill()
    proc.wait(10)


def test_proc_lists_only_the_sandbox_processes(lam, probe, host_sentinel):
    out = act(lam, probe, "processes")
    procs = out["processes"]
    seen = [p for p in procs if host_sentinel in (p["cmdline"] or "")]
    assert not seen and len(procs) <= 8, (
        f"{len(procs)} processes visible inside the sandbox, host sentinel among them: {seen}"
    )


@pytest.mark.parametrize("who", ["test-runner", "server"])
def test_cannot_signal_host_processes(lam, probe, linux_server, who):
    pid = os.getpid() if who == "test-runner" else linux_server.proc.pid
    out = act(lam, probe, "processes", signal_pids=[pid])
    assert_denied(out["kill"][str(pid)], ["ProcessLookupError"], f"kill({pid} [{who}], 0)")


def test_proc_self_exe_cannot_be_opened_for_writing(lam, probe):
    # CVE-2019-5736 overwrote the runtime's binary through /proc/self/exe. "Busy" (ETXTBSY) is
    # not protection: the binary must not be writable at all.
    out = act(lam, probe, "open_write", path="/proc/self/exe")
    assert_denied(out, DENIED_WRITE, "opening /proc/self/exe for writing")


@pytest.mark.parametrize("entry", ["exe", "root", "cwd", "mem", "environ"])
def test_sandbox_init_is_out_of_reach(lam, probe, entry):
    # pid 1 and the runtime's parent are one process, Serval's init, in a linux environment;
    # without a pid namespace the parent is the server itself.
    out = act(lam, probe, "proc_pid")
    for who in ("pid 1", "parent"):
        assert_denied(out[who][entry], ["PermissionError"], f"/proc/<{who}: {out['pids'][who]}>/{entry}")


# ---------------------------------------------------------------------------------------------
# Inherited descriptors and working directory (CVE-2024-21626)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def descriptors(lam, probe):
    return act(lam, probe, "fds")


def test_working_directory_is_the_task_root(descriptors):
    assert descriptors["cwd"] == "/var/task", descriptors


def test_no_descriptor_reaches_outside_the_sandbox(descriptors):
    outside = [
        d for d in descriptors["fds"]
        if d["fd"] >= 3 and d["target"].startswith("/") and (not d.get("same_file") or d.get("is_dir"))
    ]
    assert not outside, f"descriptors that lead out of the sandbox's file system: {outside}"


def test_no_descriptor_names_the_data_dir(descriptors, linux_server):
    data = str(linux_server.data_dir)
    named = [
        t for t in [descriptors["cwd"], descriptors["root"], *(d["target"] for d in descriptors["fds"])]
        if data in t
    ]
    assert not named, f"the environment holds paths in the server's data dir {data}: {named}"


# ---------------------------------------------------------------------------------------------
# Syscalls
# ---------------------------------------------------------------------------------------------

REFUSED_SYSCALLS = [
    "mount", "umount2", "pivot_root", "ptrace_attach_pid1", "ptrace_traceme", "unshare_newuser",
    "clone_newuser", "setns", "init_module", "finit_module", "delete_module", "kexec_load", "bpf",
    "keyctl", "add_key", "request_key", "reboot", "perf_event_open", "userfaultfd",
    "io_uring_setup", "open_by_handle_at", "i386_int80_getpid", "x32_getpid",
]


@pytest.mark.parametrize("name", REFUSED_SYSCALLS)
def test_syscall_is_refused_with_eperm(syscall_results, name):
    if name not in syscall_results:
        pytest.skip(f"{name} is not probed on this architecture")
    got = syscall_results[name]
    assert got.get("ret") == -1 and got.get("errno") == errno.EPERM, f"{name}: expected EPERM, got {got}"


def test_clone3_is_refused_with_enosys(syscall_results):
    # ENOSYS, so that libc falls back to clone, whose flags the filter can inspect.
    got = syscall_results["clone3"]
    assert got.get("ret") == -1 and got.get("errno") == errno.ENOSYS, f"clone3: expected ENOSYS, got {got}"


def test_setuid_program_does_not_gain_root(lam, probe):
    out = act(lam, probe, "setuid_exec")
    assert out.get("uid"), f"could not watch a setuid program run: {out}"
    real, effective, saved, fs = out["uid"]
    assert effective == SANDBOX_UID, f"{out['argv'][0]} ran with effective uid {effective}: {out}"


# ---------------------------------------------------------------------------------------------
# Resource limits
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fork_bomb(lam):
    """A fork bomb that has run into its limit; its children stay alive (sleeping) until the
    module ends."""
    name = deploy(lam, memory=1769, timeout=60)
    result = act(lam, name, "fork_bomb", cap=PIDS_MAX + 176, child_seconds=60)
    yield result
    try:
        invoke(lam, name, {"action": "reap"})
    except Exception:  # noqa: BLE001 - best effort; the server's stop ends them anyway
        pass


def test_fork_bomb_runs_into_the_pids_limit(fork_bomb):
    assert fork_bomb["failure"] is not None, f"forked {fork_bomb['forked']} processes without a failure"
    assert fork_bomb["failure"]["error"] == "BlockingIOError", fork_bomb
    assert fork_bomb["forked"] <= PIDS_MAX, fork_bomb


def test_other_function_starts_processes_during_a_fork_bomb(lam, fork_bomb):
    other = deploy(lam)
    out = act(lam, other, "spawn", count=5)
    assert out == {"spawned": 5, "codes": [7] * 5}, out


@pytest.fixture(scope="module")
def memory_bomb(lam):
    name = deploy(lam, memory=128)
    return invoke(lam, name, {"action": "memory_bomb", "cap_mib": 2048})


def test_memory_bomb_is_out_of_memory(memory_bomb):
    resp, out = memory_bomb
    assert resp.get("FunctionError") == "Unhandled", (resp.get("FunctionError"), out)
    assert isinstance(out, dict) and out.get("errorType") == "Runtime.OutOfMemory", out


def test_other_function_answers_after_a_memory_bomb(lam, memory_bomb):
    other = deploy(lam)
    out = act(lam, other, "spawn", count=1)
    assert out["spawned"] == 1, out


def test_filling_tmp_stops_at_the_ephemeral_storage_size(lam):
    # /tmp is RAM-backed for now and counts toward the memory limit: memory >= storage + 256.
    name = deploy(lam, memory=1024, storage=512)
    out = act(lam, name, "fill_tmp", cap_mib=640)
    mib = out["written"] / (1 << 20)
    assert out["errno"] == errno.ENOSPC and abs(mib - 512) <= 4, (
        f"expected ENOSPC after ~512 MiB, got errno {out['errno']} after {mib:.1f} MiB: {out}"
    )


@pytest.mark.parametrize(
    "memory,low,high",
    [
        pytest.param(128, 0.03, 0.15, id="128MB-throttled"),
        # A whole core, less what a parallel worker's CPU-heavy test (the fork bomb: a core of
        # its own) takes from it on a 2-core machine: 0.45 was seen there. Still 2x the bound
        # above and 4x the 128 MB share.
        pytest.param(CPU_MB_PER_CORE, 0.3, None, id="1769MB-control"),
    ],
)
def test_cpu_share_follows_memory_size(lam, memory, low, high):
    name = deploy(lam, memory=memory)
    out = act(lam, name, "cpu_share", seconds=2.0)
    expected = memory / CPU_MB_PER_CORE
    ok = out["share"] >= low and (high is None or out["share"] <= high)
    assert ok, f"CPU share {out['share']:.3f} at {memory} MB (expected ~{expected:.3f}, bounds {low}..{high}): {out}"


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def host_listener():
    """A TCP port on the host's 127.0.0.1 that accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def test_network_none_cannot_reach_the_hosts_loopback(lam_none, host_listener):
    name = deploy(lam_none)
    out = act(lam_none, name, "connect", host="127.0.0.1", port=host_listener)
    assert_denied(out, ["ConnectionRefusedError"], f"connecting to the host's 127.0.0.1:{host_listener}")


def test_network_host_reaches_the_hosts_loopback(lam, host_listener):
    # Control for the test above: the same function on a --network host server connects.
    name = deploy(lam)
    out = act(lam, name, "connect", host="127.0.0.1", port=host_listener)
    assert out == {"ok": True, "value": "connected"}, out


def test_network_none_has_only_loopback(lam_none):
    name = deploy(lam_none)
    assert act(lam_none, name, "interfaces") == ["lo"]


def test_network_none_runtime_api_is_inside_the_namespace(lam_none):
    name = deploy(lam_none)
    assert act(lam_none, name, "identity")["runtime_api"] == "127.0.0.1:9001"


# ---------------------------------------------------------------------------------------------
# Functions are isolated from each other
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_functions(lam):
    """A and B, each with its own owner.txt (so their code packages differ); A has written a
    secret into its /tmp."""
    a_owner, b_owner = f"A-{os.urandom(4).hex()}", f"B-{os.urandom(4).hex()}"
    a, b = deploy(lam, owner=a_owner), deploy(lam, owner=b_owner)
    secret = f"secret-{os.urandom(4).hex()}"
    act(lam, a, "write_tmp", name=secret, content="for A's eyes only")
    sha = lam.get_function(FunctionName=a)["Configuration"]["CodeSha256"]
    yield {"a": a, "b": b, "a_owner": a_owner, "b_owner": b_owner, "secret": secret,
           "a_sha_hex": base64.b64decode(sha).hex()}
    # Without a sandbox (forced process mode) A wrote it into the host's /tmp.
    Path("/tmp", secret).unlink(missing_ok=True)


def test_function_cannot_read_another_functions_tmp(lam, two_functions):
    out = act(lam, two_functions["b"], "read", path=f"/tmp/{two_functions['secret']}")
    assert_denied(out, ["FileNotFoundError"], "B reading A's /tmp file")


def test_new_environment_starts_with_an_empty_tmp(lam, two_functions):
    out = act(lam, two_functions["b"], "listdir", path="/tmp")
    assert out == {"ok": True, "value": []}, out


def test_function_cannot_read_another_functions_code_dir(lam, linux_server, two_functions):
    a_code = linux_server.data_dir / "code" / two_functions["a_sha_hex"]
    assert (a_code / "owner.txt").read_text() == two_functions["a_owner"], f"A's code is not at {a_code}"
    out = act(lam, two_functions["b"], "read", path=str(a_code / "owner.txt"))
    assert_denied(out, ["FileNotFoundError"], f"B reading A's code at {a_code}")


def test_task_root_holds_only_the_functions_own_code(lam, two_functions):
    out = act(lam, two_functions["b"], "read", path="/var/task/owner.txt")
    assert out["ok"] and out["value"]["head"] == two_functions["b_owner"], out


# ---------------------------------------------------------------------------------------------
# Freezer
# ---------------------------------------------------------------------------------------------


def _ticks_while_idle(lam, idle_seconds: float = 1.5) -> int:
    name = deploy(lam, memory=512)
    before = act(lam, name, "ticker_start")["ticks"]
    time.sleep(idle_seconds)
    return act(lam, name, "ticker_read")["ticks"] - before


def test_idle_environment_is_frozen(lam):
    # A thread ticking every 10 ms; frozen 100 ms (the default grace) after the invocation.
    ticks = _ticks_while_idle(lam)
    assert ticks < 40, f"{ticks} ticks in 1.5 s idle: the environment kept running"


def test_environment_runs_within_the_freeze_grace(start_server):
    # Control for the test above: with a grace longer than the idle time it keeps ticking.
    srv = start_sandboxed(start_server, "--freeze-grace-ms", "100000")
    ticks = _ticks_while_idle(srv.lambda_client())
    assert ticks >= 100, f"only {ticks} ticks in 1.5 s idle with a 100 s freeze grace"


# ---------------------------------------------------------------------------------------------
# What a server leaves behind: cgroups, processes, mounts
# ---------------------------------------------------------------------------------------------


def cgroup_hierarchies() -> list[tuple[Path, str, frozenset[str] | None]]:
    """Every mounted cgroup hierarchy: (mount point, its root inside the hierarchy, its v1
    controllers, or None for v2)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if tail[0] == "cgroup2":
            out.append((Path(fields[4]), fields[3], None))
        elif tail[0] == "cgroup":
            out.append((Path(fields[4]), fields[3], frozenset(tail[2].split(","))))
    return out


def serval_groups(server_pid: int) -> list[tuple[Path, frozenset[str] | None]]:
    """Where a running server keeps its environments' groups in each hierarchy:
    `<mount>/<the server's own group>/serval/<pid>`, with that hierarchy's v1 controllers."""
    lines = [l.split(":", 2) for l in Path(f"/proc/{server_pid}/cgroup").read_text().splitlines()]
    out = {}
    for mount, root, ctrls in cgroup_hierarchies():
        for hid, names, path in lines:
            wanted = set(names.split(",")) - {""}
            if ctrls is None:
                matches = hid == "0" and not wanted
            else:
                matches = bool(wanted) and wanted <= ctrls
            if not matches:
                continue
            if root != "/" and (path == root or path.startswith(root + "/")):
                path = path[len(root):]
            out[mount] = (mount / path.lstrip("/") / "serval" / str(server_pid), ctrls)
    return list(out.values())


def used_groups(groups) -> list[Path]:
    """The groups the backend must use: those of the memory, cpu, pids and freezer hierarchies
    when all four are v1, else the unified (v2) one."""
    v1 = {c: g for g, ctrls in groups if ctrls for c in V1_CONTROLLERS if c in ctrls}
    if len(v1) == len(V1_CONTROLLERS):
        return sorted(set(v1.values()))
    return [g for g, ctrls in groups if ctrls is None]


def env_groups(group: Path) -> list[Path]:
    try:
        return sorted(p for p in group.iterdir() if p.is_dir() and p.name.startswith("env-"))
    except FileNotFoundError:
        return []


def env_pids(groups: list[Path]) -> set[int]:
    pids = set()
    for group in groups:
        for env in env_groups(group):
            try:
                pids.update(int(x) for x in (env / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
    return pids


def run_environments(srv: ServalServer, count: int = 3, busy: bool = False):
    """Starts `count` idle environments (and one busy in a long invocation if `busy`); returns
    (every serval/<pid> group of the server, the groups it must use, the environments' pids)."""
    lam = srv.lambda_client()
    for _ in range(count):
        act(lam, deploy(lam), "spawn", count=1)
    if busy:
        sleeper = deploy(lam, timeout=60)

        def invoke_long():
            try:
                invoke(lam, sleeper, {"action": "sleep", "seconds": 30})
            except Exception:  # noqa: BLE001 - the server is killed under it
                pass

        threading.Thread(target=invoke_long, daemon=True).start()
    groups = serval_groups(srv.proc.pid)
    used = used_groups(groups)
    expected = count + (1 if busy else 0)
    assert used, f"no cgroup hierarchy for the linux backend among {groups}"
    missing = [str(g) for g in used if not g.is_dir()]
    assert not missing, f"the server made no serval/<pid> group at {missing}"
    wait_for(
        lambda: all(len(env_groups(g)) >= expected for g in used), 10,
        what=f"{expected} env-* groups under each of {[str(g) for g in used]}",
    )
    pids = env_pids(used)
    assert len(pids) >= expected, f"environment groups hold only pids {pids}"
    time.sleep(0.5)  # the idle environments are frozen by now (grace 100 ms)
    return [g for g, _ in groups], used, pids


def _wait_gone(pids: set[int], timeout: float = 10.0) -> list[int]:
    """Waits for pids to end; returns those still alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process_alive(p) for p in pids):
        time.sleep(0.1)
    return sorted(p for p in pids if process_alive(p))


def _kill9(srv: ServalServer) -> None:
    """SIGKILL to the server alone (not its process group, which would hide leaks)."""
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(30)


def test_sigterm_leaves_no_environment_groups_or_processes(start_server):
    srv = start_sandboxed(start_server)
    groups, _, pids = run_environments(srv)
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(30)
    # Removing its groups is part of the server's shutdown: they must be gone when it exits.
    left = [str(g) for g in groups if g.exists()]
    alive = _wait_gone(pids)
    assert not left and not alive, f"after SIGTERM the server left groups {left} and processes {alive}"


def test_kill9_of_the_server_ends_its_environments(start_server):
    srv = start_sandboxed(start_server)
    _, _, pids = run_environments(srv, busy=True)
    _kill9(srv)
    # PR_SET_PDEATHSIG on each sandbox's pid 1; frozen environments must die as well.
    alive = _wait_gone(pids)
    assert not alive, f"environment processes {alive} outlived the server's kill -9"


def test_restart_after_kill9_removes_stale_groups_and_their_processes(start_server):
    first = start_sandboxed(start_server)
    groups, used, pids = run_environments(first)
    _kill9(first)
    # A process still inside the dead server's groups, which the next server must kill.
    squatter = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        for group in used:
            (env_groups(group)[0] / "cgroup.procs").write_text(str(squatter.pid))
        start_sandboxed(start_server, data_dir=first.data_dir)
        alive = _wait_gone(pids | {squatter.pid})
        left = [str(g) for g in groups if g.exists()]
        assert not left and not alive, (
            f"the new server left the dead server's groups {left} and processes {alive} "
            f"(squatter {squatter.pid})"
        )
    finally:
        squatter.kill()
        squatter.wait(10)


def mount_table() -> set[tuple[str, ...]]:
    """The host's mounts as (root, mount point, fs type, source), without their ids."""
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        out.add((fields[3], fields[4], tail[0], tail[1] if len(tail) > 1 else ""))
    return out


def test_servers_leave_no_mounts_on_the_host(start_server):
    before = mount_table()
    host = start_sandboxed(start_server)
    none = start_sandboxed(start_server, "--network", "none")
    for srv in (host, none):
        lam = srv.lambda_client()
        for _ in range(2):
            act(lam, deploy(lam), "identity")
    during = mount_table() - before
    host.stop()
    none.stop()
    after = mount_table() - before
    assert not during and not after, f"new mounts on the host: while running {sorted(during)}, after {sorted(after)}"


# ---------------------------------------------------------------------------------------------
# --rootfs
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _interpreter() -> str:
    """The real path of the interpreter the test functions run with."""
    out = subprocess.run(
        [TEST_PYTHON, "-c", "import os, sys; print(os.path.realpath(sys.executable))"],
        capture_output=True, text=True, timeout=60, check=True, stdin=subprocess.DEVNULL,
    )
    return out.stdout.strip()


def build_minimal_rootfs(root: Path, python: str, marker: str) -> None:
    """etc/serval-rootfs-marker and the shared libraries `python` needs (with the dynamic
    loader), each at its own path; nothing else (no usr/bin)."""
    ldd = subprocess.run(["ldd", python], capture_output=True, text=True, timeout=60, check=True)
    libs = []
    for line in ldd.stdout.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    assert any("ld-linux" in l or "/ld-" in l for l in libs), ldd.stdout
    for lib in libs:
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.realpath(lib), dest)
        dest.chmod(0o755)
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "serval-rootfs-marker").write_text(marker)
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        d.chmod(0o755)


@pytest.fixture(scope="module")
def rootfs_probe(serval_bin, tmp_path_factory):
    """What a function sees on a server with `--rootfs` pointing at a minimal root."""
    _require_linux_host()
    base = tmp_path_factory.mktemp("iso-rootfs")
    root = base / "rootfs"
    marker = f"serval rootfs {os.urandom(4).hex()}\n"
    python = _interpreter()
    build_minimal_rootfs(root, python, marker)
    srv = _module_server(tmp_path_factory, "iso-rootfs-server", "--rootfs", str(root), env={"SERVAL_PYTHON": python})
    try:
        lam = srv.lambda_client()
        yield marker, act(lam, deploy(lam), "rootfs_probe")
    finally:
        srv.stop()
    _fail_on_errors(srv)


def test_rootfs_is_the_functions_root(rootfs_probe):
    marker, out = rootfs_probe
    assert out["marker"] == {"ok": True, "value": marker}, out


def test_rootfs_replaces_the_hosts_usr(rootfs_probe):
    _, out = rootfs_probe
    assert out["usr_bin_ls"] is False, f"/usr/bin/ls exists in an environment whose --rootfs has no usr/: {out}"
