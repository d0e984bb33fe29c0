"""Fixtures for Serval's end-to-end suite.

- `server`: one real `serval server` per test module (on 127.0.0.1:0, own temp data dir),
  for the bulk of tests; function names are unique per test so tests never collide.
- `start_server(*flags)`: a fresh server for a test that needs its own flags or data dir.
- Every server's stderr (Serval's tracing log) is captured to a file; a test fails if a server
  it used logged an unexpected ERROR line during the test, and again at teardown.
"""

from __future__ import annotations

import pytest

from serval_e2e import SERVAL_BIN, Scratch, ServalServer, signed_request  # noqa: F401


def _check_errors(srv: ServalServer, since=None, when="during the test"):
    errors = srv.unexpected_errors(since)
    if errors:
        shown = "\n".join(errors[:20])
        pytest.fail(
            f"serval logged {len(errors)} unexpected ERROR line(s) {when} "
            f"(stderr in {srv.log_dir}):\n{shown}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def serval_bin():
    if not SERVAL_BIN.exists():
        pytest.fail(f"serval binary not found at {SERVAL_BIN} (build it or set SERVAL_BIN)", pytrace=False)
    return SERVAL_BIN


@pytest.fixture(scope="module")
def server(serval_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("serval-shared")
    srv = ServalServer(base / "data", base / "logs")
    srv.start()
    yield srv
    srv.stop()
    _check_errors(srv, when="while shared by this module")


@pytest.fixture(autouse=True)
def _no_unexpected_server_errors(request):
    """Fails the current test if the module's shared server logged an ERROR meanwhile."""
    if "server" not in request.fixturenames:
        yield
        return
    srv: ServalServer = request.getfixturevalue("server")
    since = srv.stderr_size()
    yield
    _check_errors(srv, since)


@pytest.fixture
def start_server(serval_bin, tmp_path):
    """Factory: start_server("--max-concurrency", "1", data_dir=None, env=None) -> started
    ServalServer; `env` adds variables to the server's environment."""
    started: list[ServalServer] = []

    def start(*flags: str, data_dir=None, env=None) -> ServalServer:
        n = len(started)
        srv = ServalServer(data_dir or tmp_path / f"data-{n}", tmp_path / f"logs-{n}", flags, env=env)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()
    for srv in started:
        _check_errors(srv)


@pytest.fixture(scope="module")
def lam(server):
    return server.lambda_client()


@pytest.fixture(scope="module")
def lam_raw(server):
    """A boto3 Lambda client without client-side parameter validation, so the server's own
    validation is what answers."""
    return server.lambda_client(validate=False)


@pytest.fixture(scope="module")
def logs(server):
    return server.logs_client()


@pytest.fixture
def scratch(tmp_path):
    """Where a test's functions report to (`Scratch`): they PUT markers to `scratch.url`
    (pass `env=scratch.env`), the test reads them as files `scratch / name`."""
    s = Scratch(tmp_path / "scratch")
    yield s
    s.close()
