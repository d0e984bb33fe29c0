"""Function logs through the CloudWatch Logs protocol (boto3 `logs`, the AWS CLI)."""

import json
import re
import subprocess
import uuid

import pytest

from serval_e2e import (
    REPORT_RE,
    create_function,
    invoke,
    python_zip,
    run_aws,
    run_serval,
    signed_request,
    wait_for,
    wait_for_log_text,
    all_log_events,
)

# A module that prints while it is imported (init, before START) and from its handler.
TAGGED_PY = """
import sys

print("init line " + open(__file__.replace("tagged.py", "marker.txt")).read().strip())


def handler(event, context):
    print("marker " + event["marker"])
    print("stderr marker " + event["marker"], file=sys.stderr)
    return {"request_id": context.aws_request_id}
"""


@pytest.fixture(scope="module")
def logged_fn(lam, logs):
    """A function invoked twice (cold, then warm), with its logs recorded."""
    name = create_function(lam, python_zip(), handler="app.log_lines", MemorySize=192)
    r1, _ = invoke(lam, name, {"marker": "first"})
    r2, _ = invoke(lam, name, {"marker": "second"})
    rids = [r1["ResponseMetadata"]["RequestId"], r2["ResponseMetadata"]["RequestId"]]
    group = f"/aws/lambda/{name}"
    wait_for_log_text(logs, group, [f"REPORT RequestId: {rids[1]}"])
    return {"name": name, "group": group, "rids": rids}


def test_describe_log_groups_lists_the_function_group(logs, logged_fn):
    groups = logs.describe_log_groups(logGroupNamePrefix=logged_fn["group"])["logGroups"]
    assert [g["logGroupName"] for g in groups] == [logged_fn["group"]]
    g = groups[0]
    assert g["arn"].startswith(f"arn:aws:logs:us-east-1:000000000000:log-group:{logged_fn['group']}")
    assert g["creationTime"] > 0
    all_groups = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]
    assert logged_fn["group"] in [x["logGroupName"] for x in all_groups]


def test_describe_log_streams_shows_the_environment_stream(logs, logged_fn):
    streams = logs.describe_log_streams(logGroupName=logged_fn["group"])["logStreams"]
    assert len(streams) == 1, streams  # both invocations ran in one warm environment
    s = streams[0]
    assert re.match(r"^\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}$", s["logStreamName"]), s
    assert s["firstEventTimestamp"] <= s["lastEventTimestamp"]
    ordered = logs.describe_log_streams(logGroupName=logged_fn["group"], orderBy="LastEventTime", descending=True)
    assert ordered["logStreams"][0]["logStreamName"] == s["logStreamName"]


def test_get_log_events_returns_output_and_platform_lines_in_order(logs, logged_fn):
    stream = logs.describe_log_streams(logGroupName=logged_fn["group"])["logStreams"][0]["logStreamName"]
    events = logs.get_log_events(logGroupName=logged_fn["group"], logStreamName=stream, startFromHead=True)["events"]
    messages = [e["message"].rstrip("\n") for e in events]
    r1, r2 = logged_fn["rids"]
    text = "\n".join(messages)
    assert f"START RequestId: {r1} Version: $LATEST" in messages
    assert f"END RequestId: {r1}" in messages
    assert "stdout line first" in messages
    assert "stderr line first" in messages
    assert "stdout line second" in messages
    order = [text.index(x) for x in (f"START RequestId: {r1}", "stdout line first", f"END RequestId: {r1}",
                                     f"REPORT RequestId: {r1}", f"START RequestId: {r2}", "stdout line second")]
    assert order == sorted(order), text
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)


def test_report_lines_have_aws_fields_and_init_duration_only_on_cold_start(logs, logged_fn):
    events = all_log_events(logs, logged_fn["group"], filterPattern="REPORT")
    reports = {m.group("rid"): m for e in events for m in [REPORT_RE.search(e["message"])] if m}
    r1, r2 = logged_fn["rids"]
    assert set(reports) == {r1, r2}, [e["message"] for e in events]
    for m in reports.values():
        assert m.group("memory") == "192"
        assert int(m.group("billed")) >= float(m.group("duration")) - 1
        assert int(m.group("used")) > 0
    assert reports[r1].group("init") is not None, "cold start REPORT lacks Init Duration"
    assert reports[r2].group("init") is None, "warm REPORT has Init Duration"


def test_filter_log_events_matches_terms(logs, logged_fn):
    events = all_log_events(logs, logged_fn["group"], filterPattern='"stdout line second"')
    assert [e["message"].rstrip("\n") for e in events] == ["stdout line second"]
    assert events[0]["logStreamName"]
    events = all_log_events(logs, logged_fn["group"], filterPattern="START")
    assert len(events) == 2


def test_unknown_log_group_is_not_found(logs):
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.get_log_events(logGroupName="/aws/lambda/does-not-exist", logStreamName="x")


def test_aws_cli_logs_commands(server, logged_fn):
    out = run_aws(server.endpoint, "logs", "filter-log-events", "--log-group-name", logged_fn["group"]).stdout
    assert "stdout line first" in out
    assert f"REPORT RequestId: {logged_fn['rids'][0]}" in out


def test_aws_cli_logs_tail(server, request):
    probe = run_aws(server.endpoint, "logs", "tail", "help", check=False)
    if "Invalid choice" in probe.stderr or "invalid choice" in probe.stderr:
        pytest.skip("`aws logs tail` exists only in AWS CLI v2; the suite uses v1 from PyPI")
    logged_fn = request.getfixturevalue("logged_fn")
    out = run_aws(server.endpoint, "logs", "tail", logged_fn["group"], "--since", "1h").stdout
    assert "stdout line first" in out


@pytest.fixture(scope="module")
def tagged_fn(lam, logs):
    """A function whose init and handler print unique markers, invoked twice (cold, warm)."""
    tag = uuid.uuid4().hex
    code = python_zip(extra={"tagged.py": TAGGED_PY, "marker.txt": tag})
    name = create_function(lam, code, handler="tagged.handler")
    markers = [f"{tag}-1", f"{tag}-2"]
    rids = []
    for marker in markers:
        resp, out = invoke(lam, name, {"marker": marker})
        assert "FunctionError" not in resp, out
        rid = resp["ResponseMetadata"]["RequestId"]
        assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == rid
        assert out["request_id"] == rid
        rids.append(rid)
    group = f"/aws/lambda/{name}"
    wait_for_log_text(logs, group, [f"REPORT RequestId: {rids[1]}"])
    return {"name": name, "group": group, "tag": tag, "markers": markers, "rids": rids}


def raw_logs(server, operation: str, body: dict) -> dict:
    """A Logs call whose JSON answer is returned as sent: botocore keeps only the members its
    model knows, so Serval's `requestId` extension is visible only here."""
    resp = signed_request("POST", server.endpoint + "/", json.dumps(body), service="logs", headers={
        "X-Amz-Target": f"Logs_20140328.{operation}",
        "Content-Type": "application/x-amz-json-1.1",
    })
    assert resp.status_code == 200, resp.text
    return resp.json()


def raw_filter(server, **body) -> list[dict]:
    events, token = [], None
    while True:
        page = raw_logs(server, "FilterLogEvents", dict(body, **({"nextToken": token} if token else {})))
        events.extend(page["events"])
        if not page.get("nextToken") or page["nextToken"] == token:
            return events
        token = page["nextToken"]


def test_filter_by_request_id_returns_the_invocations_own_lines(server, logs, tagged_fn):
    for marker, rid in zip(tagged_fn["markers"], tagged_fn["rids"]):
        wanted = {f"marker {marker}", f"stderr marker {marker}", f"START RequestId: {rid} Version: $LATEST",
                  f"END RequestId: {rid}"}
        # boto3 parses the answer (it drops the unmodelled `requestId` member).
        messages = {e["message"].rstrip("\n") for e in all_log_events(logs, tagged_fn["group"], filterPattern=rid)}
        assert wanted <= messages, messages
        # As sent: only this invocation's lines, each tagged with its request id.
        events = raw_filter(server, logGroupName=tagged_fn["group"], filterPattern=rid)
        assert {e["message"].rstrip("\n") for e in events} == messages
        assert all(e.get("requestId") == rid for e in events), events
        assert not any(other in e["message"] for e in events for other in tagged_fn["markers"] if other != marker)


def test_init_output_of_a_cold_start_belongs_to_the_triggering_request(logs, tagged_fn):
    cold, warm = tagged_fn["rids"]
    init_line = f"init line {tagged_fn['tag']}"
    events = all_log_events(logs, tagged_fn["group"], filterPattern=cold)
    assert init_line in [e["message"].rstrip("\n") for e in events]
    assert init_line not in [e["message"].rstrip("\n") for e in all_log_events(logs, tagged_fn["group"], filterPattern=warm)]


def test_get_log_events_carries_request_ids(server, logs, tagged_fn):
    stream = logs.describe_log_streams(logGroupName=tagged_fn["group"])["logStreams"][0]["logStreamName"]
    events = raw_logs(server, "GetLogEvents", {"logGroupName": tagged_fn["group"], "logStreamName": stream,
                                              "startFromHead": True})["events"]
    tagged = {e["message"].rstrip("\n"): e.get("requestId") for e in events}
    for marker, rid in zip(tagged_fn["markers"], tagged_fn["rids"]):
        assert tagged[f"marker {marker}"] == rid, events
    reports = [e for e in events if e["message"].startswith("REPORT RequestId: ")]
    assert [e.get("requestId") for e in reports] == tagged_fn["rids"]
    # boto3 still parses the same answer.
    parsed = logs.get_log_events(logGroupName=tagged_fn["group"], logStreamName=stream, startFromHead=True)["events"]
    assert [e["message"] for e in parsed] == [e["message"] for e in events]


def test_aws_cli_parses_events_with_request_ids(server, tagged_fn):
    out = run_aws(server.endpoint, "logs", "filter-log-events", "--log-group-name", tagged_fn["group"],
                  "--filter-pattern", tagged_fn["rids"][0]).stdout
    assert f"marker {tagged_fn['markers'][0]}" in out


def test_serval_logs_shows_the_request_id_on_printed_lines(server, tagged_fn):
    out = run_serval(server.endpoint, "logs", tagged_fn["name"]).stdout
    for marker, rid in zip(tagged_fn["markers"], tagged_fn["rids"]):
        line = next((l for l in out.splitlines() if l.endswith(f" marker {marker}") and "stderr" not in l), None)
        assert line is not None, out
        assert re.match(rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z {rid} marker {marker}$", line), line
