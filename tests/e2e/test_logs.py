"""Function logs through the CloudWatch Logs protocol (boto3 `logs`, the AWS CLI)."""

import re
import subprocess

import pytest

from serval_e2e import (
    REPORT_RE,
    create_function,
    invoke,
    python_zip,
    run_aws,
    wait_for,
    wait_for_log_text,
    all_log_events,
)


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
