"""Invoke's request and response semantics, as AWS documents them."""

import base64
import json
import re

import pytest
from botocore.exceptions import ClientError

from serval_e2e import (
    PROVIDED_RUNTIME,
    SYNC_PAYLOAD_LIMIT,
    assert_aws_error,
    create_function,
    function_zip,
    invoke,
    log_tail,
    python_zip,
    read_json_file,
    report_line,
    signed_request,
    unique_name,
)


@pytest.fixture(scope="module")
def echo_fn(lam):
    return create_function(lam, python_zip(), handler="app.echo", env={"USER_GREETING": "hi"})


@pytest.fixture(scope="module")
def logging_fn(lam):
    return create_function(lam, python_zip(), handler="app.log_lines")


def test_tail_log_result_has_output_and_start_end_report(lam, logging_fn):
    resp, out = invoke(lam, logging_fn, {"marker": "tail-1"}, LogType="Tail")
    rid = resp["ResponseMetadata"]["RequestId"]
    tail = log_tail(resp)
    assert "stdout line tail-1" in tail
    assert "stderr line tail-1" in tail
    assert re.search(rf"START RequestId: {rid} Version: \$LATEST", tail), tail
    assert re.search(rf"END RequestId: {rid}", tail), tail
    report = report_line(tail, rid)
    assert report.group("memory") == "128"
    assert float(report.group("duration")) >= 0
    assert int(report.group("billed")) >= 1
    assert int(report.group("used")) > 0
    # START before output before END before REPORT.
    assert tail.index("START RequestId") < tail.index("stdout line tail-1") < tail.index("END RequestId") < tail.index("REPORT RequestId")


def test_tail_is_limited_to_last_4_kb(lam):
    name = create_function(lam, python_zip(), handler="app.log_lines")
    # A lot of output: the tail still ends with the REPORT line and stays within 4 KB.
    resp, _ = invoke(lam, name, {"marker": "m" * 6000}, LogType="Tail")
    raw = base64.b64decode(resp["LogResult"])
    assert len(raw) <= 4096
    assert b"REPORT RequestId:" in raw


def test_no_log_result_without_tail(lam, echo_fn):
    resp, _ = invoke(lam, echo_fn, {})
    assert "LogResult" not in resp


def test_executed_version_header_is_latest(lam, echo_fn):
    resp, _ = invoke(lam, echo_fn, {})
    assert resp["ExecutedVersion"] == "$LATEST"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"] == "$LATEST"


def test_response_request_id_is_the_invocation_request_id(lam, echo_fn):
    resp, out = invoke(lam, echo_fn, {})
    assert resp["ResponseMetadata"]["RequestId"] == out["context"]["aws_request_id"]
    assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", out["context"]["aws_request_id"])


def test_client_context_reaches_the_function(lam, echo_fn):
    cc = {"custom": {"tenant": "acme"}, "env": {"locale": "fr"}, "client": {"app_title": "t"}}
    resp, out = invoke(lam, echo_fn, {}, ClientContext=base64.b64encode(json.dumps(cc).encode()).decode())
    assert out["context"]["client_context"]["custom"] == {"tenant": "acme"}
    assert out["context"]["client_context"]["env"] == {"locale": "fr"}


def test_dry_run_validates_without_running(lam, scratch):
    name = create_function(lam, python_zip(), handler="app.sleep", env=scratch.env)
    resp = lam.invoke(FunctionName=name, InvocationType="DryRun", Payload=b'{"seconds": 0}')
    assert resp["StatusCode"] == 204
    assert resp["Payload"].read() == b""
    assert not (scratch / "started.json").exists(), "DryRun ran the function"


def test_dry_run_of_unknown_function_is_not_found(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=unique_name("nope"), InvocationType="DryRun")


def test_event_invocation_is_accepted_or_refused_in_aws_shape(server, lam, scratch):
    """Until asynchronous invocation lands, Event must be refused clearly (a 4xx in AWS's error
    shape), never half-run; once it lands, 202 and the function runs."""
    name = create_function(lam, python_zip(), handler="app.sleep", env=scratch.env)
    url = f"{server.endpoint}/2015-03-31/functions/{name}/invocations"
    resp = signed_request("POST", url, b'{"seconds": 0}', headers={"X-Amz-Invocation-Type": "Event"})
    if resp.status_code == 202:
        assert resp.content == b""
        read_json_file(scratch / "started.json")
        return
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    body = resp.json()
    assert resp.headers.get("x-amzn-ErrorType"), dict(resp.headers)
    assert body.get("Type") == "User"
    assert body.get("Message")
    assert resp.headers["x-amzn-ErrorType"].split(":")[0].endswith("Exception")
    assert not (scratch / "started.json").exists()


def test_non_json_payload_passes_through_to_provided_runtime(lam):
    name = create_function(lam, function_zip("shell"), runtime=PROVIDED_RUNTIME, handler="whatever.handler")
    resp, out = invoke(lam, name, raw=b"plain text, not JSON \x01")
    assert "FunctionError" not in resp, out
    rid = resp["ResponseMetadata"]["RequestId"]
    assert out == f"shell:{rid}:whatever.handler:plain text, not JSON \x01".encode()


def test_payload_over_6_mb_is_request_entity_too_large(lam, echo_fn):
    body = json.dumps({"data": "x" * SYNC_PAYLOAD_LIMIT}).encode()
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=echo_fn, Payload=body)
    err = exc.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert err["Error"]["Code"] == "RequestEntityTooLargeException"
    assert err["Error"]["Message"] == (
        f"{len(body)} byte payload is too large for the RequestResponse invocation type (limit 6291456 bytes)"
    )


def test_payload_of_exactly_6_mb_is_accepted(lam):
    name = create_function(lam, python_zip(), handler="app.whoami", MemorySize=512)
    overhead = len(json.dumps({"data": ""}))
    body = json.dumps({"data": "x" * (SYNC_PAYLOAD_LIMIT - overhead)}).encode()
    assert len(body) == SYNC_PAYLOAD_LIMIT
    resp, out = invoke(lam, name, raw=body)
    assert "FunctionError" not in resp, out
    assert "process" in out


def test_payload_over_6_mb_raw_http_has_aws_error_shape(server, echo_fn):
    url = f"{server.endpoint}/2015-03-31/functions/{echo_fn}/invocations"
    resp = signed_request("POST", url, b'"' + b"y" * (SYNC_PAYLOAD_LIMIT + 10) + b'"')
    body = assert_aws_error(resp, 413, "RequestEntityTooLargeException")
    assert "limit 6291456 bytes" in body["Message"]


def test_invoke_unknown_function_raw_http_is_404_in_aws_shape(server):
    url = f"{server.endpoint}/2015-03-31/functions/{unique_name('ghost')}/invocations"
    assert_aws_error(signed_request("POST", url, b"{}"), 404, "ResourceNotFoundException")


def test_invoke_unknown_qualifier_is_not_found(lam, echo_fn):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=echo_fn, Qualifier="42", Payload=b"{}")


def test_invoke_with_latest_qualifier_and_full_arn(lam, echo_fn):
    resp, out = invoke(lam, echo_fn, {"q": 1}, Qualifier="$LATEST")
    assert out["event"] == {"q": 1}
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{echo_fn}"
    resp, out = invoke(lam, arn, {"q": 2})
    assert out["event"] == {"q": 2}
    assert out["context"]["invoked_function_arn"] == arn


def test_empty_payload_is_an_empty_event(lam, echo_fn):
    resp = lam.invoke(FunctionName=echo_fn)
    out = json.loads(resp["Payload"].read())
    assert out["event"] in ({}, None)


def _send_invoke_and_hang_up(endpoint: str, name: str, payload: bytes, hold: float, abort: bool) -> bytes:
    """Sends a SigV4-signed Invoke over a plain socket, waits `hold` seconds, then closes the
    connection without reading the answer (a FIN, or an RST when `abort`). Returns whatever
    bytes had arrived by then."""
    import socket
    import struct
    import time
    from urllib.parse import urlsplit

    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    url = f"{endpoint}/2015-03-31/functions/{name}/invocations"
    req = botocore.awsrequest.AWSRequest(method="POST", url=url, data=payload, headers={"Content-Type": "application/json"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials("test", "test"), "lambda", "us-east-1").add_auth(req)
    prepared = req.prepare()
    parts = urlsplit(url)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(payload)}"]
    head += [f"{k}: {v}" for k, v in prepared.headers.items() if k.lower() not in ("host", "content-length")]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(raw)
    time.sleep(hold)
    sock.setblocking(False)
    try:
        got = sock.recv(65536)
    except BlockingIOError:
        got = b""
    if abort:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return got


@pytest.mark.parametrize("abort", [False, True], ids=["fin", "rst"])
def test_client_disconnect_does_not_cancel_the_invocation(server, lam, logs, scratch, abort):
    """AWS runs a synchronous invocation to its end even when the caller hangs up."""
    name = create_function(lam, python_zip(), handler="app.sleep_then_mark", Timeout=30,
                           env=scratch.env)
    payload = json.dumps({"marker": "done.json", "seconds": 2}).encode()
    early = _send_invoke_and_hang_up(server.endpoint, name, payload, hold=0.3, abort=abort)
    assert b"HTTP/1.1" not in early, f"answered before the function finished: {early[:500]!r}"

    started = read_json_file(scratch / "started-done.json")
    done = read_json_file(scratch / "done.json", timeout=30)
    rid = started["request_id"]
    assert done["request_id"] == rid, "the invocation that finished is not the one that started"

    from serval_e2e import wait_for_log_text

    text = wait_for_log_text(logs, f"/aws/lambda/{name}",
                             [f"END RequestId: {rid}", f"REPORT RequestId: {rid}", "marker done.json written"])
    report_line(text, rid)

    # The environment came back to the pool and answers the next caller, warm.
    resp, out = invoke(lam, name, {"marker": "again.json", "seconds": 0}, LogType="Tail")
    assert "FunctionError" not in resp, out
    assert out == {"marker": "again.json"}
    assert report_line(log_tail(resp), resp["ResponseMetadata"]["RequestId"]).group("init") is None
