"""Serval's Python runtime: runs a Lambda handler against the Runtime API 2018-06-01.

Started by Serval as `python3 -S bootstrap.py` with a clean environment (see the crate docs);
the `bootstrap.py` stub imports this module so that its bytecode is cached in __pycache__
(compiling it costs ~4 ms per start otherwise) and calls main().
Speaks HTTP/1.1 by hand over one keep-alive TCP socket: importing http.client costs more than
the rest of start-up together. After each result the POST .../response and the next
GET .../next go out in one write (HTTP/1.1 pipelining), saving a round trip per invocation.

Start-up cost is kept low on purpose: `-S` skips `site` (and the .pth files it executes); the
interpreter's site-packages are put on sys.path by hand below, without running .pth files.
`logging` and `traceback` are imported only when the function (or an error) needs them.
"""

import sys
import os
import _socket
import json
import time

_API_PREFIX = b"/2018-06-01/runtime/"
_env = os.environ
_stdout = sys.stdout
_request_id = None  # read by the logging filter


def _die(message):
    sys.stderr.write("serval-runtime: " + message + "\n")
    sys.stderr.flush()
    os._exit(1)


# ---------------------------------------------------------------------------------------------
# sys.path: task root first (as on AWS), layers, then the interpreter's site-packages (no .pth)
# ---------------------------------------------------------------------------------------------

def _setup_path():
    task_root = _env.get("LAMBDA_TASK_ROOT") or os.getcwd()
    here = sys.path[0] if sys.path else ""
    path = [p for p in sys.path if p and p != here]
    front = [task_root]
    ver = "python%d.%d" % sys.version_info[:2]
    for p in ("/opt/python/lib/" + ver + "/site-packages", "/opt/python"):
        if os.path.isdir(p):
            front.append(p)
    back = []
    if sys.flags.no_site:
        import site  # with -S this only defines functions; site.main() is not run

        try:
            back = [p for p in site.getsitepackages() if os.path.isdir(p)]
        except Exception:
            back = []
        try:
            site.setquit()
            site.setcopyright()
            site.sethelper()
        except Exception:
            pass
    seen = set()
    new = []
    for p in front + path + back:
        if p not in seen:
            seen.add(p)
            new.append(p)
    sys.path[:] = new


# ---------------------------------------------------------------------------------------------
# the Runtime API client: one socket, hand-written HTTP/1.1
# ---------------------------------------------------------------------------------------------

class _Response(object):
    __slots__ = ("status", "headers", "body")


class _Client(object):
    def __init__(self, address):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            _die("AWS_LAMBDA_RUNTIME_API is not host:port: %r" % address)
        self.host_header = ("Host: " + address + "\r\n").encode()
        self.addr = (host.strip("[]"), int(port))
        self.family = _socket.AF_INET6 if ":" in self.addr[0] else _socket.AF_INET
        self.sock = None
        self.buf = bytearray()
        self.connect()

    def connect(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.buf = bytearray()
        try:
            s = _socket.socket(self.family, _socket.SOCK_STREAM)
            s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            s.connect(self.addr)
        except OSError as e:
            _die("cannot reach the Runtime API at %s:%d: %s" % (self.addr[0], self.addr[1], e))
        self.sock = s

    def request(self, method, path, body=None, headers=b""):
        """Bytes of one request; `path` is relative to /2018-06-01/runtime/."""
        if body is None:
            return b"".join((method, b" ", _API_PREFIX, path, b" HTTP/1.1\r\n", self.host_header, headers, b"\r\n"))
        return b"".join(
            (
                method, b" ", _API_PREFIX, path, b" HTTP/1.1\r\n", self.host_header, headers,
                b"Content-Type: application/json\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n", body,
            )
        )

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_response(self):
        """The next response on the socket, or None when the server closed the connection."""
        buf = self.buf
        try:
            while True:
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(buf) > 65536:
                    _die("malformed Runtime API response: header section too large")
                if not self._fill():
                    if buf:
                        _die("Runtime API closed the connection in the middle of a response")
                    return None
                buf = self.buf
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            status_line = head[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
                _die("malformed Runtime API response status line: %r" % head[0][:200])
            headers = {}
            for line in head[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    _die("malformed Runtime API response header: %r" % line[:200])
                headers[name.strip().lower()] = value.strip()
            length = headers.get("content-length", "0")
            if not length.isdigit():
                if "chunked" in headers.get("transfer-encoding", ""):
                    _die("Runtime API sent a chunked response; only Content-Length is supported")
                _die("malformed Runtime API Content-Length: %r" % length)
            length = int(length)
            start = end + 4
            have = len(buf) - start
            if have >= length:
                body = bytes(buf[start:start + length])
                del buf[:start + length]
            else:
                body = bytearray(length)
                view = memoryview(body)
                view[:have] = buf[start:]
                pos = have
                sock = self.sock
                while pos < length:
                    n = sock.recv_into(view[pos:])
                    if n == 0:
                        _die("Runtime API closed the connection in the middle of a response body")
                    pos += n
                view.release()
                self.buf = bytearray()
        except OSError as e:
            _die("lost the Runtime API connection: %s" % e)
        r = _Response()
        r.status = int(status_line[1])
        r.headers = headers
        r.body = body
        if headers.get("connection", "").lower() == "close":
            self.connect()
        return r

    def next_request(self):
        return self.request(b"GET", b"invocation/next")

    def get_next(self, pending=None):
        """Sends `pending` (an already built request, or nothing) plus GET /next in one write,
        reads the response to `pending`, then returns the next invocation's response."""
        data = self.next_request()
        if pending is not None:
            data = pending + data
        for attempt in (0, 1):
            if not self.send(data):
                self.connect()
                data = self.next_request() if pending is None else pending + self.next_request()
                if not self.send(data):
                    _die("cannot send to the Runtime API")
            if pending is not None:
                r = self.read_response()
                if r is None:
                    self.connect()
                    data = self.next_request()
                    pending = None
                    continue
                if r.status >= 300:
                    sys.stderr.write("serval-runtime: Runtime API rejected a result (%d): %s\n" % (r.status, bytes(r.body)[:500].decode("utf-8", "replace")))
                pending = None
            r = self.read_response()
            if r is None:
                if attempt == 0:
                    self.connect()
                    data = self.next_request()
                    continue
                _die("Runtime API closed the connection instead of sending an invocation")
            if r.status != 200:
                _die("Runtime API answered GET invocation/next with %d: %s" % (r.status, bytes(r.body)[:500].decode("utf-8", "replace")))
            return r
        _die("Runtime API closed the connection instead of sending an invocation")

    def post_and_wait(self, data):
        if not self.send(data):
            self.connect()
            if not self.send(data):
                _die("cannot send to the Runtime API")
        r = self.read_response()
        if r is not None and r.status >= 300:
            sys.stderr.write("serval-runtime: Runtime API rejected a report (%d): %s\n" % (r.status, bytes(r.body)[:500].decode("utf-8", "replace")))
        return r


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

class _Fault(Exception):
    def __init__(self, error_type, message, trace=None):
        Exception.__init__(self, message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


def _error_from_exception(exc, request_id):
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    me = __file__
    for i, f in enumerate(frames):
        if f.filename != me:
            frames = frames[i:]
            break
    else:
        frames = []
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id or "",
        "stackTrace": traceback.format_list(frames),
    }


def _error_body(error_type, message, request_id, trace=None):
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id or "", "stackTrace": trace or []}


def _log_error(err):
    """Logs an error as AWS's Python runtime does: one line, '\\r' between its parts."""
    desc = "[ERROR]"
    if err["errorType"]:
        desc += " " + err["errorType"]
    if err["errorMessage"]:
        desc += (":" if err["errorType"] else "") + " " + err["errorMessage"]
    lines = [desc, "Traceback (most recent call last):"]
    for element in err["stackTrace"]:
        for line in element.splitlines():
            stripped = line.lstrip(" ")
            lines.append("\u00a0" * (len(line) - len(stripped)) + stripped)
    _write_log("\r".join(lines).replace("\n", "\r") + "\n")


def _write_log(text):
    try:
        _stdout.write(text)
        _stdout.flush()
    except Exception:
        pass


def _flush_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _encode_json(obj):
    return json.dumps(obj, ensure_ascii=_ENSURE_ASCII, default=_json_default).encode("utf-8")


def _json_default(obj):
    if type(obj).__name__ == "Decimal":
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


_ENSURE_ASCII = _env.get("AWS_EXECUTION_ENV", "") in (
    "AWS_Lambda_python3.8",
    "AWS_Lambda_python3.9",
    "AWS_Lambda_python3.10",
    "AWS_Lambda_python3.11",
)


# ---------------------------------------------------------------------------------------------
# logging: configured the moment anything imports it, as AWS's runtime configures it
# ---------------------------------------------------------------------------------------------

def _configure_logging(logging):
    logging.Formatter.converter = time.gmtime

    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            try:
                msg = self.format(record)
                sys.stdout.write(msg)
                sys.stdout.flush()
            except Exception:
                self.handleError(record)

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _request_id or ""
            return True

    handler = LambdaLoggerHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(LambdaLoggerFilter())
    root = logging.getLogger()
    level = (_env.get("AWS_LAMBDA_LOG_LEVEL") or "").upper()
    level = {"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
    if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        root.setLevel(level)
    root.addHandler(handler)


class _LoggingHook(object):
    """A meta path finder that lets `logging` load normally, then configures it."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "logging":
            return None
        try:
            sys.meta_path.remove(cls)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_and_configure(module):
            exec_module(module)
            try:
                _configure_logging(module)
            except Exception as e:  # never break the user's import
                sys.stderr.write("serval-runtime: failed to configure logging: %s\n" % e)

        try:
            loader.exec_module = exec_and_configure
        except Exception:
            pass
        return spec


# ---------------------------------------------------------------------------------------------
# the context object
# ---------------------------------------------------------------------------------------------

class CognitoIdentity(object):
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client(object):
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")


class ClientContext(object):
    __slots__ = ("custom", "env", "client")


def _obj_from_dict(cls, d):
    if d is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, d.get(field) if isinstance(d, dict) else None)
    return obj


_FUNCTION_NAME = _env.get("AWS_LAMBDA_FUNCTION_NAME")
_FUNCTION_VERSION = _env.get("AWS_LAMBDA_FUNCTION_VERSION")
_LOG_GROUP = _env.get("AWS_LAMBDA_LOG_GROUP_NAME")
_LOG_STREAM = _env.get("AWS_LAMBDA_LOG_STREAM_NAME")
# A string, as in AWS's own Python runtime (awslambdaric reads the variable as is).
_MEMORY_MB = _env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")


class LambdaContext(object):
    __slots__ = ("aws_request_id", "invoked_function_arn", "client_context", "identity", "_deadline_ms")
    function_name = _FUNCTION_NAME
    function_version = _FUNCTION_VERSION
    memory_limit_in_mb = _MEMORY_MB
    log_group_name = _LOG_GROUP
    log_stream_name = _LOG_STREAM

    def get_remaining_time_in_millis(self):
        left = self._deadline_ms - int(time.time() * 1000)
        return left if left > 0 else 0

    def log(self, msg):
        _write_log(str(msg))

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,function_name=%s,"
            "memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s,client_context=%s,identity=%s])"
            % (
                self.aws_request_id, self.log_group_name, self.log_stream_name, self.function_name,
                self.memory_limit_in_mb, self.function_version, self.invoked_function_arn,
                self.client_context, self.identity,
            )
        )


def _make_context(request_id, headers):
    ctx = LambdaContext()
    ctx.aws_request_id = request_id
    ctx.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn")
    deadline = headers.get("lambda-runtime-deadline-ms", "")
    ctx._deadline_ms = int(deadline) if deadline.isdigit() else int(time.time() * 1000) + 3000
    raw = headers.get("lambda-runtime-client-context")
    client_context = None
    if raw:
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise _Fault("Runtime.LambdaContextUnmarshalError", "Unable to parse Client Context JSON: %s" % e)
        client_context = _obj_from_dict(ClientContext, data)
        if client_context is not None:
            client_context.client = _obj_from_dict(Client, client_context.client)
    ctx.client_context = client_context
    identity = CognitoIdentity()
    identity.cognito_identity_id = None
    identity.cognito_identity_pool_id = None
    raw = headers.get("lambda-runtime-cognito-identity")
    if raw:
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise _Fault("Runtime.LambdaContextUnmarshalError", "Unable to parse Cognito Identity JSON: %s" % e)
        if isinstance(data, dict):
            identity.cognito_identity_id = data.get("cognitoIdentityId")
            identity.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")
    ctx.identity = identity
    return ctx


# ---------------------------------------------------------------------------------------------
# loading the handler
# ---------------------------------------------------------------------------------------------

def _load_handler(handler):
    modname, sep, fname = handler.rpartition(".")
    if not sep:
        raise _Fault(
            "Runtime.MalformedHandlerName",
            "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % handler,
        )
    if not modname or not fname:
        raise _Fault("Runtime.MalformedHandlerName", "Bad handler '%s': empty module or function name" % handler)
    if modname.split(".")[0] in sys.builtin_module_names:
        raise _Fault("Runtime.BuiltInModuleConflict", "Cannot use built-in module %s as a handler module" % modname)
    import importlib

    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise _Fault("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise _Fault("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), trace)
    try:
        return getattr(module, fname)
    except AttributeError:
        raise _Fault("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))


# ---------------------------------------------------------------------------------------------
# main loop
# ---------------------------------------------------------------------------------------------

def _error_request(client, path, err):
    body = _encode_json(err)
    header = ("Lambda-Runtime-Function-Error-Type: " + err["errorType"].replace("\r", "").replace("\n", "") + "\r\n").encode("utf-8")
    return client.request(b"POST", path, body, header)


def main():
    global _request_id
    address = _env.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        _die("AWS_LAMBDA_RUNTIME_API is not set")
    _setup_path()
    sys.meta_path.insert(0, _LoggingHook)
    client = _Client(address)

    try:
        handler = _load_handler(_env.get("_HANDLER", ""))
    except Exception as e:
        if isinstance(e, _Fault):
            err = _error_body(e.error_type, e.message, "", e.trace)
        else:
            err = _error_from_exception(e, "")
        _flush_streams()
        _log_error(err)
        client.post_and_wait(_error_request(client, b"init/error", err))
        _flush_streams()
        os._exit(1)

    loads = json.loads
    environ = os.environ
    pending = None
    while True:
        r = client.get_next(pending)
        pending = None
        headers = r.headers
        request_id = headers.get("lambda-runtime-aws-request-id")
        if not request_id:
            _die("Runtime API sent an invocation without Lambda-Runtime-Aws-Request-Id")
        _request_id = request_id
        trace_id = headers.get("lambda-runtime-trace-id")
        if trace_id:
            environ["_X_AMZN_TRACE_ID"] = trace_id
        elif "_X_AMZN_TRACE_ID" in environ:
            del environ["_X_AMZN_TRACE_ID"]
        rid = request_id.encode("latin-1")
        err = None
        try:
            ctx = _make_context(request_id, headers)
            try:
                event = loads(r.body)
            except ValueError as e:
                raise _Fault("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)
            result = handler(event, ctx)
            if isinstance(result, (bytes, bytearray)):
                body = bytes(result)
            else:
                try:
                    body = _encode_json(result)
                except Exception as e:
                    raise _Fault("Runtime.MarshalError", "Unable to marshal response: %s" % e)
        except _Fault as e:
            err = _error_body(e.error_type, e.message, request_id, e.trace)
        except Exception as e:
            err = _error_from_exception(e, request_id)
        _flush_streams()
        if err is None:
            pending = client.request(b"POST", b"invocation/" + rid + b"/response", body)
        else:
            _log_error(err)
            pending = _error_request(client, b"invocation/" + rid + b"/error", err)

