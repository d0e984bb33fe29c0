"""Hostile test function for Serval's isolation suite (tests/e2e/test_isolation.py).

One handler, `app.handler`, dispatching on `event["action"]`. Each action tries something a
sandboxed function must not be able to do, or measures a limit, and reports what happened as
data (`{"ok": false, "error": "PermissionError", "errno": 13, ...}`) instead of raising, so the
test sees exactly what the kernel answered.

The same suite runs WITHOUT a sandbox when SERVAL_TEST_FORCE_SANDBOX=process (as root, on the
host), to show that it fails there. So every action that could change the host when nothing
stops it undoes what it did, runs in a forked child, or stops at a cap: a successful mount is
unmounted, a created file removed, a fork bomb stops at 1200 children, a memory bomb at 2 GiB,
the /tmp filler at 640 MiB and deletes its file.

Only modules without shared libraries of their own are imported at module level (`ctypes`
needs libffi, which the minimal `--rootfs` test root does not have).
"""

import errno
import json
import os
import platform
import select
import signal
import socket
import threading
import time

# Children of the fork bomb, kept so that the `reap` action can end them.
BOMB_CHILDREN = []
# The `ticker_*` actions' background counter (module state survives warm invocations).
TICKS = 0
TICKER = None
# The runtime's parent, recorded before the syscall probes fork (1: Serval's init in a pid
# namespace of its own).
RUNTIME_PPID = None


def handler(event, context):
    action = event.get("action")
    fn = ACTIONS.get(action)
    if fn is None:
        raise ValueError(f"unknown action {action!r}")
    return fn(event)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _outcome(fn, *args, **kwargs):
    """Runs fn; {"ok": True, "value": ...} or {"ok": False, "error": <type>, "errno": n}."""
    try:
        value = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the exception is the measurement
        return {
            "ok": False,
            "error": type(e).__name__,
            "errno": getattr(e, "errno", None),
            "message": str(e),
        }
    return {"ok": True, "value": value}


def _read_bytes(path, limit=65536):
    with open(path, "rb") as f:
        data = f.read(limit)
    return {"bytes": len(data), "head": data[:200].decode("utf-8", "replace")}


def _status():
    """/proc/self/status as {key: value}."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _machine():
    m = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


# ---------------------------------------------------------------------------------------------
# file system
# ---------------------------------------------------------------------------------------------


def read(event):
    return _outcome(_read_bytes, event["path"])


def listdir(event):
    return _outcome(lambda p: sorted(os.listdir(p)), event["path"])


def exists(event):
    return {p: os.path.lexists(p) for p in event["paths"]}


def write(event):
    """Creates event["path"]; removes it again if that worked (it must not have)."""
    path = event["path"]

    def attempt():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"written by a hostile function\n")
        finally:
            os.close(fd)
        os.unlink(path)
        return "created"

    return _outcome(attempt)


def open_write(event):
    """Opens event["path"] for writing and closes it without writing a byte."""

    def attempt():
        fd = os.open(event["path"], os.O_WRONLY)
        os.close(fd)
        return "opened"

    return _outcome(attempt)


def write_tmp(event):
    path = os.path.join("/tmp", event["name"])
    with open(path, "w") as f:
        f.write(event["content"])
    return {"path": path, "listing": sorted(os.listdir("/tmp"))}


def fill_tmp(event):
    """Writes 1 MiB chunks into one file in /tmp until the file system is full (or the cap)."""
    cap = int(event.get("cap_mib", 640)) << 20
    path = os.path.join("/tmp", f"fill-{os.urandom(6).hex()}")
    chunk = b"\xa5" * (1 << 20)
    written = 0
    result = {"errno": None, "error": None}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while written < cap:
            try:
                n = os.write(fd, chunk)
            except OSError as e:
                result.update(errno=e.errno, error=type(e).__name__)
                break
            written += n
    finally:
        os.close(fd)
        os.unlink(path)
    result["written"] = written
    result["capped"] = written >= cap
    return result


def rootfs_probe(event):
    return {
        "marker": _outcome(lambda: open("/etc/serval-rootfs-marker").read()),
        "usr_bin_ls": os.path.lexists("/usr/bin/ls"),
    }


# ---------------------------------------------------------------------------------------------
# identity, processes, /proc
# ---------------------------------------------------------------------------------------------


def identity(event):
    status = _status()
    ns = {}
    for name in ("pid", "mnt", "ipc", "uts", "net", "user", "cgroup"):
        r = _outcome(os.readlink, f"/proc/self/ns/{name}")
        ns[name] = r["value"] if r["ok"] else None
    import resource

    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "euid": os.geteuid(),
        "egid": os.getegid(),
        "groups": os.getgroups(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "status": {
            k: status.get(k)
            for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
        },
        "ns": ns,
        "cwd": os.getcwd(),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "machine": _machine(),
    }


def processes(event):
    """Every process this environment can see in /proc, and whether it can signal host pids."""
    procs = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = {"pid": int(entry)}
        for field in ("comm", "cmdline"):
            r = _outcome(lambda: open(f"/proc/{entry}/{field}", "rb").read())
            info[field] = r["value"].replace(b"\0", b" ").decode("utf-8", "replace").strip() if r["ok"] else None
        procs.append(info)
    kills = {str(pid): _outcome(os.kill, int(pid), 0) for pid in event.get("signal_pids", [])}
    return {"self": os.getpid(), "processes": procs, "kill": kills}


def _proc_entries(pid):
    base = f"/proc/{pid}"
    return {
        "exe": _outcome(os.readlink, f"{base}/exe"),
        "root": _outcome(lambda: sorted(os.listdir(f"{base}/root"))),
        "cwd": _outcome(lambda: sorted(os.listdir(f"{base}/cwd"))),
        "mem": _outcome(lambda: open(f"{base}/mem", "rb").close()),
        "environ": _outcome(lambda: len(open(f"{base}/environ", "rb").read())),
    }


def proc_pid(event):
    """CVE-2019-5736 and friends: what this environment can get at through /proc/<pid> of
    pid 1 and of its own parent (the same process, Serval's init, in a linux environment)."""
    pids = {"pid 1": 1, "parent": os.getppid()}
    out = {who: _proc_entries(pid) for who, pid in pids.items()}
    out["pids"] = pids
    return out


def fds(event):
    """CVE-2024-21626: what this process's descriptors, cwd and root point at."""
    entries = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue  # the descriptor listdir itself used
        info = {"fd": int(fd), "target": target}
        if target.startswith("/"):
            try:
                via_fd = os.stat(f"/proc/self/fd/{fd}")
                try:
                    by_path = os.stat(target)
                    info["same_file"] = (via_fd.st_dev, via_fd.st_ino) == (by_path.st_dev, by_path.st_ino)
                except OSError as e:
                    info["same_file"] = False
                    info["path_error"] = type(e).__name__
                info["is_dir"] = os.path.isdir(f"/proc/self/fd/{fd}")
            except FileNotFoundError:
                continue
        entries.append(info)
    return {
        "fds": entries,
        "cwd": os.readlink("/proc/self/cwd"),
        "root": os.readlink("/proc/self/root"),
        "getcwd": os.getcwd(),
    }


# ---------------------------------------------------------------------------------------------
# syscalls the seccomp filter (and the lack of capabilities) must refuse
# ---------------------------------------------------------------------------------------------

# Syscall numbers: x86_64 and the generic table (aarch64).
NR = {
    "x86_64": {
        "mount": 165, "umount2": 166, "pivot_root": 155, "ptrace": 101, "unshare": 272,
        "setns": 308, "clone": 56, "clone3": 435, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "kexec_load": 246, "bpf": 321, "keyctl": 250, "add_key": 248,
        "request_key": 249, "reboot": 169, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "open_by_handle_at": 304, "getpid": 39,
    },
    "aarch64": {
        "mount": 40, "umount2": 39, "pivot_root": 41, "ptrace": 117, "unshare": 97,
        "setns": 268, "clone": 220, "clone3": 435, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "kexec_load": 104, "bpf": 280, "keyctl": 219, "add_key": 217,
        "request_key": 218, "reboot": 142, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "open_by_handle_at": 265, "getpid": 172,
    },
}

CLONE_NEWUSER = 0x10000000
PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_DETACH = 0, 16, 17


class _Sys:
    def __init__(self):
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.nr = NR[_machine()]

    def __call__(self, name, *args):
        """(return value, errno) of the raw syscall."""
        c = self.ctypes
        conv = []
        for a in args:
            if a is None:
                conv.append(c.c_void_p(0))
            elif isinstance(a, bytes):
                conv.append(c.c_char_p(a))
            else:
                conv.append(c.c_long(a))
        c.set_errno(0)
        ret = self.libc.syscall(c.c_long(self.nr[name]), *conv)
        return ret, (c.get_errno() if ret == -1 else 0)


def _probe_mount(s):
    import tempfile

    target = tempfile.mkdtemp(prefix="mnt-")
    try:
        ret, err = s("mount", b"none", target.encode(), b"tmpfs", 0, None)
        if ret == 0:
            s("umount2", target.encode(), 0)  # it must not have worked; leave nothing behind
        return ret, err
    finally:
        os.rmdir(target)


def _probe_ptrace_attach(s):
    # pid 1 of the sandbox is Serval's init, the runtime's parent. Without a pid namespace the
    # runtime's parent is the server (and pid 1 the host's init), which a test must not stop:
    # attach to a child of our own there instead, so the attempt is as harmless as it is futile.
    victim = None
    target = 1
    if RUNTIME_PPID != 1:
        victim = os.fork()
        if victim == 0:
            time.sleep(30)
            os._exit(0)
        target = victim
    try:
        ret, err = s("ptrace", PTRACE_ATTACH, target, 0, 0)
        if ret == 0:
            os.waitpid(target, 0x40000000)  # __WALL: the attach stop
            s("ptrace", PTRACE_DETACH, target, 0, 0)
        return ret, err
    finally:
        if victim:
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)


def _probe_clone_newuser(s):
    ret, err = s("clone", CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
    if ret == 0:
        os._exit(0)  # the new child: it must not exist, but if it does it leaves at once
    if ret > 0:
        os.waitpid(ret, 0)
    return ret, err


def _probe_setns(s):
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        return s("setns", fd, 0)  # joining the namespace it is already in: changes nothing
    finally:
        os.close(fd)


def _probe_finit_module(s):
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        return s("finit_module", fd, b"", 0)
    finally:
        os.close(fd)


def _probe_userfaultfd(s):
    ret, err = s("userfaultfd", os.O_CLOEXEC)
    if ret >= 0:
        os.close(ret)
    return ret, err


def _probe_int80(s):
    """getpid through the 32-bit entry point (int 0x80); the filter must refuse any i386 call."""
    import mmap

    c = s.ctypes
    code = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"  # mov eax, 20 (i386 getpid); int 0x80; ret
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = c.addressof(c.c_char.from_buffer(buf))
    ret = c.CFUNCTYPE(c.c_int)(addr)()
    # The raw entry point returns -errno itself.
    return (ret, 0) if ret >= 0 else (-1, -ret)


# name -> probe(sys) -> (ret, errno). Each runs in a forked child of its own: whatever it changes
# (a user namespace, a tracer) dies with that child, and a filter that kills instead of
# answering is reported as the signal.
PROBES = {
    "mount": _probe_mount,
    "umount2": lambda s: s("umount2", b"/nonexistent-serval-probe", 0),
    "pivot_root": lambda s: s("pivot_root", b"/nonexistent-serval-a", b"/nonexistent-serval-b"),
    "ptrace_attach_pid1": _probe_ptrace_attach,
    "ptrace_traceme": lambda s: s("ptrace", PTRACE_TRACEME, 0, 0, 0),
    "unshare_newuser": lambda s: s("unshare", CLONE_NEWUSER),
    "clone_newuser": _probe_clone_newuser,
    "setns": _probe_setns,
    "clone3": lambda s: s("clone3", None, 0),
    "init_module": lambda s: s("init_module", None, 0, b""),
    "finit_module": _probe_finit_module,
    "delete_module": lambda s: s("delete_module", b"serval_no_such_module", os.O_NONBLOCK),
    # An unknown flag bit: past the permission check this is EINVAL, never an unload.
    "kexec_load": lambda s: s("kexec_load", 0, 0, None, 0x8000),
    "bpf": lambda s: s("bpf", 0x7FFF, None, 0),
    "keyctl": lambda s: s("keyctl", 0, -1, 0),  # KEYCTL_GET_KEYRING_ID, thread keyring, no create
    "add_key": lambda s: s("add_key", None, None, None, 0, 0),
    "request_key": lambda s: s("request_key", None, None, None, 0),
    "reboot": lambda s: s("reboot", 0, 0, 0, None),  # bad magic: EINVAL when permitted
    "perf_event_open": lambda s: s("perf_event_open", None, 0, -1, -1, 0),
    "userfaultfd": _probe_userfaultfd,
    "io_uring_setup": lambda s: s("io_uring_setup", 1, None),
    "open_by_handle_at": lambda s: s("open_by_handle_at", -1, None, 0),
}
X86_64_PROBES = {
    "i386_int80_getpid": _probe_int80,
    "x32_getpid": lambda s: s_x32(s),
}


def s_x32(s):
    c = s.ctypes
    c.set_errno(0)
    ret = s.libc.syscall(c.c_long(0x40000000 | s.nr["getpid"]))
    return ret, (c.get_errno() if ret == -1 else 0)


def _in_child(fn, timeout=10.0):
    """Runs fn() in a forked child; returns its JSON-able result, or how the child died."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = {"result": fn()}
        except BaseException as e:  # noqa: BLE001
            out = {"exception": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            break
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if chunks:
        return json.loads(b"".join(chunks))
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status)}


def syscalls(event):
    global RUNTIME_PPID
    RUNTIME_PPID = os.getppid()
    s = _Sys()
    probes = dict(PROBES)
    if _machine() == "x86_64":
        probes.update(X86_64_PROBES)
    out = {}
    for name, probe in probes.items():
        res = _in_child(lambda: list(probe(s)))
        if "result" in res:
            ret, err = res["result"]
            out[name] = {"ret": ret, "errno": err, "errname": errno.errorcode.get(err)}
        else:
            out[name] = res
    return out


def setuid_exec(event):
    """Runs a setuid-root program and reads its effective uid while it runs.

    The program's stdout and stderr are a pipe that is already full, so its first write blocks
    and it stays alive, with its credentials in /proc/<pid>/status, until the pipe is closed.
    """
    import subprocess

    candidates = event.get("programs") or [["/usr/bin/mount", "--version"], ["/usr/bin/su", "--version"]]
    argv = next((a for a in candidates if os.path.exists(a[0]) and os.stat(a[0]).st_mode & 0o4000), None)
    if argv is None:
        return {"error": "no setuid program found", "candidates": candidates}
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=w, close_fds=True)
    os.close(w)
    name = os.path.basename(argv[0])
    uid_line = gid_line = state = None
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                status = open(f"/proc/{proc.pid}/status").read()
            except OSError:
                break
            fields = dict(l.split(":", 1) for l in status.splitlines() if ":" in l)
            state = fields.get("State", "").strip()
            if fields.get("Name", "").strip() == name[:15] and state.startswith("S"):
                time.sleep(0.1)  # blocked writing: exec (and its credentials) is complete
                status = open(f"/proc/{proc.pid}/status").read()
                fields = dict(l.split(":", 1) for l in status.splitlines() if ":" in l)
                uid_line, gid_line = fields["Uid"].split(), fields["Gid"].split()
                break
            if proc.poll() is not None:
                break
            time.sleep(0.01)
    finally:
        os.close(r)  # its write now fails with EPIPE and it exits
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return {
        "argv": argv,
        "uid": [int(x) for x in uid_line] if uid_line else None,  # real, effective, saved, fs
        "gid": [int(x) for x in gid_line] if gid_line else None,
        "state": state,
        "returncode": proc.returncode,
        "my_uid": os.getuid(),
    }


# ---------------------------------------------------------------------------------------------
# resources
# ---------------------------------------------------------------------------------------------


def fork_bomb(event):
    """Forks children that sleep until fork fails (or the cap); the children stay alive."""
    cap = int(event.get("cap", 1200))
    sleep_s = str(int(event.get("child_seconds", 60)))
    error = None
    started = time.monotonic()
    while len(BOMB_CHILDREN) < cap:
        try:
            pid = os.fork()
        except OSError as e:
            error = {"error": type(e).__name__, "errno": e.errno}
            break
        if pid == 0:
            try:
                # exec keeps each child's memory small (a forked Python copies ~1 MB).
                os.execv("/usr/bin/sleep", ["sleep", sleep_s])
            finally:
                time.sleep(float(sleep_s))
                os._exit(0)
        BOMB_CHILDREN.append(pid)
    return {"forked": len(BOMB_CHILDREN), "failure": error, "seconds": time.monotonic() - started}


def reap(event):
    for pid in BOMB_CHILDREN:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    reaped = 0
    for pid in BOMB_CHILDREN:
        try:
            os.waitpid(pid, 0)
            reaped += 1
        except OSError:
            pass
    BOMB_CHILDREN.clear()
    return {"reaped": reaped}


def spawn(event):
    """Starts a few short-lived processes: fails if this environment cannot create any."""
    n = int(event.get("count", 5))
    started = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        started.append(pid)
    codes = [os.WEXITSTATUS(os.waitpid(pid, 0)[1]) for pid in started]
    return {"spawned": len(started), "codes": codes}


def memory_bomb(event):
    """Allocates and touches 16 MiB blocks until killed (or the cap)."""
    cap = int(event.get("cap_mib", 2048))
    blocks = []
    while len(blocks) * 16 < cap:
        blocks.append(b"\x01" * (16 << 20))
    return {"allocated_mib": len(blocks) * 16}


def cpu_share(event):
    """Burns CPU for `seconds` of wall time; returns CPU seconds used per wall second."""
    seconds = float(event.get("seconds", 2.0))
    w0, c0 = time.monotonic(), time.process_time()
    x = 0
    while time.monotonic() - w0 < seconds:
        for i in range(10000):
            x += i * i
    wall, cpu = time.monotonic() - w0, time.process_time() - c0
    return {"share": cpu / wall, "cpu": cpu, "wall": wall}


def sleep(event):
    time.sleep(float(event.get("seconds", 1)))
    return {"slept": event.get("seconds", 1), "pid": os.getpid()}


def _tick():
    global TICKS
    while True:
        time.sleep(0.01)
        TICKS += 1


def ticker_start(event):
    global TICKER
    if TICKER is None:
        TICKER = threading.Thread(target=_tick, daemon=True)
        TICKER.start()
    return {"ticks": TICKS}


def ticker_read(event):
    return {"ticks": TICKS}


# ---------------------------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------------------------


def connect(event):
    def attempt():
        with socket.create_connection((event["host"], int(event["port"])), timeout=float(event.get("timeout", 3))):
            return "connected"

    return _outcome(attempt)


def interfaces(event):
    with open("/proc/net/dev") as f:
        lines = f.read().splitlines()[2:]
    return sorted(l.split(":", 1)[0].strip() for l in lines if ":" in l)


ACTIONS = {
    "read": read,
    "listdir": listdir,
    "exists": exists,
    "write": write,
    "open_write": open_write,
    "write_tmp": write_tmp,
    "fill_tmp": fill_tmp,
    "rootfs_probe": rootfs_probe,
    "identity": identity,
    "processes": processes,
    "proc_pid": proc_pid,
    "fds": fds,
    "syscalls": syscalls,
    "setuid_exec": setuid_exec,
    "fork_bomb": fork_bomb,
    "reap": reap,
    "spawn": spawn,
    "memory_bomb": memory_bomb,
    "cpu_share": cpu_share,
    "sleep": sleep,
    "ticker_start": ticker_start,
    "ticker_read": ticker_read,
    "connect": connect,
    "interfaces": interfaces,
}
