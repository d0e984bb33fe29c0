"""The `serval server` process itself: what it does with its data directory."""

import os
import subprocess

from serval_e2e import SERVAL_BIN, create_function, invoke, python_zip


def test_second_server_on_the_same_data_dir_refuses_to_start(start_server, tmp_path):
    data = tmp_path / "shared-data"
    first = start_server(data_dir=data)
    lam = first.lambda_client()
    name = create_function(lam, python_zip(), handler="app.whoami")
    _, before = invoke(lam, name, {})

    env = dict(os.environ, NO_COLOR="1")
    try:
        second = subprocess.run(
            [str(SERVAL_BIN), "server", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, env=env,
        )
    except subprocess.TimeoutExpired as e:
        # It kept running: two servers would share one store. (subprocess.run killed it.)
        raise AssertionError(
            f"a second server on {data} started instead of refusing; stdout: {e.stdout!r}"
        ) from None
    assert second.returncode != 0, (second.returncode, second.stdout, second.stderr)
    assert "serval listening on" not in second.stdout, second.stdout
    message = second.stderr.lower()
    assert str(data) in second.stderr or "data dir" in message or "data-dir" in message, second.stderr
    assert any(w in message for w in ("in use", "already", "locked", "another")), second.stderr
    assert "panicked" not in message, second.stderr

    # The first server did not notice and keeps working with its state.
    assert first.proc.poll() is None, "the first server exited"
    _, after = invoke(lam, name, {})
    assert after["process"] == before["process"], "the first server lost its warm environment"
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    other = create_function(lam, python_zip(), handler="app.whoami")
    resp, _ = invoke(lam, other, {})
    assert "FunctionError" not in resp
