"""Scheduled EventBridge rules as AWS documents them: PutRule with rate and cron expressions
(invalid ones refused with AWS's ValidationException), DescribeRule, ListRules, EnableRule,
DisableRule, DeleteRule, PutTargets / ListTargetsByRule / RemoveTargets with Lambda targets, and
the rules firing: each due time invokes every target once, asynchronously, with AWS's
`Scheduled Event` (or the target's constant `Input`); a disabled rule does not fire; rules
survive a restart and due times missed while the server was down are not replayed.

The servers run with `--schedule-clock-speed 60`: the scheduler's clock runs 60 times faster
than real time, so `rate(1 minute)` fires about once a second. Nothing here asserts on speed:
waits poll with generous bounds. The target is tests/functions/python-http's `app.scheduled`,
which reports every event it receives to the test's collector as `sched-<random>`."""

import json
import time

import pytest
from botocore.exceptions import ClientError

from http_triggers import (
    ISO_SECONDS_RE,
    UUID_RE,
    create_http_function,
    error_of,
    events_client,
    fn_arn,
    http_zip,
    reports,
    wait_reports,
)
from serval_e2e import ACCOUNT, REGION, ServalServer, run_aws, unique_name

CLOCK_SPEED = 60
SPEED_FLAGS = ("--schedule-clock-speed", str(CLOCK_SPEED))
AWS_MESSAGE = "Parameter ScheduleExpression is not valid."


@pytest.fixture(scope="module")
def server(serval_bin, tmp_path_factory):
    """This module's shared server, with the scheduler's clock sped up. (It replaces
    conftest's `server`, so `lam`, `lam_raw` and the ERROR-line check use it.)"""
    base = tmp_path_factory.mktemp("serval-schedules")
    srv = ServalServer(base / "data", base / "logs", SPEED_FLAGS)
    srv.start()
    yield srv
    srv.stop()
    errors = srv.unexpected_errors()
    if errors:
        pytest.fail("serval logged unexpected ERROR lines:\n" + "\n".join(errors[:20]), pytrace=False)


@pytest.fixture(scope="module")
def events(server):
    return events_client(server.endpoint)


@pytest.fixture
def rules(events):
    """Names of rules a test creates; at teardown their targets are removed and they are
    deleted, so no rule keeps firing into a function whose test is over."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            ids = [t["Id"] for t in events.list_targets_by_rule(Rule=name).get("Targets", [])]
            if ids:
                events.remove_targets(Rule=name, Ids=ids)
            events.delete_rule(Name=name)
        except ClientError:
            pass


def rule_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"


def new_rule(events, rules: list, expression: str = "rate(1 minute)", state: str = "ENABLED", **kwargs) -> str:
    name = unique_name("rule")
    resp = events.put_rule(Name=name, ScheduleExpression=expression, State=state, **kwargs)
    assert resp["RuleArn"] == rule_arn(name)
    rules.append(name)
    return name


def add_target(events, rule: str, target_id: str, function: str, constant: dict | None = None) -> None:
    target = {"Id": target_id, "Arn": fn_arn(function)}
    if constant is not None:
        target["Input"] = json.dumps(constant)
    resp = events.put_targets(Rule=rule, Targets=[target])
    assert resp["FailedEntryCount"] == 0, resp
    assert resp.get("FailedEntries", []) == []


def scheduled_fn(lam, scratch) -> str:
    return create_http_function(lam, scratch, handler="app.scheduled")


def from_rule(rule: str):
    arn = rule_arn(rule)
    return lambda r: isinstance(r["event"], dict) and r["event"].get("resources") == [arn]


def count(scratch, where) -> int:
    return len([r for r in reports(scratch, "sched-") if where(r)])


def assert_stopped(scratch, control, watched, what: str) -> None:
    """Checks that the events `watched` selects have stopped, while the `control` rule keeps
    firing into the same function: first lets the control fire three more times (so events
    already on their way when the change was made arrive, however loaded the machine), then
    three more, during which no `watched` event may arrive."""
    for _ in range(2):
        settled = count(scratch, watched)
        base = count(scratch, control)
        wait_reports(scratch, "sched-", base + 3, timeout=90, where=control)
    assert count(scratch, watched) == settled, what


def assert_scheduled_event(event: dict, rule: str) -> None:
    assert event["version"] == "0", event
    assert UUID_RE.match(event["id"]), event
    assert event["detail-type"] == "Scheduled Event", event
    assert event["source"] == "aws.events", event
    assert event["account"] == ACCOUNT, event
    assert ISO_SECONDS_RE.match(event["time"]), event
    assert event["region"] == REGION, event
    assert event["resources"] == [rule_arn(rule)], event
    assert event["detail"] == {}, event


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


def test_put_describe_list_enable_disable_delete_rule(events, rules):
    name = new_rule(events, rules, "rate(5 minutes)", Description="every five minutes")
    d = events.describe_rule(Name=name)
    assert d["Name"] == name
    assert d["Arn"] == rule_arn(name)
    assert d["ScheduleExpression"] == "rate(5 minutes)"
    assert d["State"] == "ENABLED"
    assert d["Description"] == "every five minutes"
    assert d.get("EventBusName", "default") == "default"

    listed = events.list_rules(NamePrefix=name)["Rules"]
    assert [r["Name"] for r in listed] == [name]
    assert listed[0]["Arn"] == rule_arn(name)
    assert listed[0]["ScheduleExpression"] == "rate(5 minutes)"
    assert listed[0]["State"] == "ENABLED"
    # Every page together lists it too.
    seen, token = [], None
    while True:
        page = events.list_rules(**({"NextToken": token} if token else {}))
        seen.extend(r["Name"] for r in page["Rules"])
        token = page.get("NextToken")
        if not token:
            break
    assert name in seen

    events.disable_rule(Name=name)
    assert events.describe_rule(Name=name)["State"] == "DISABLED"
    assert events.list_rules(NamePrefix=name)["Rules"][0]["State"] == "DISABLED"
    events.enable_rule(Name=name)
    assert events.describe_rule(Name=name)["State"] == "ENABLED"

    # PutRule on an existing name replaces it, keeping its ARN.
    again = events.put_rule(Name=name, ScheduleExpression="cron(0 12 * * ? *)", State="DISABLED")
    assert again["RuleArn"] == rule_arn(name)
    d = events.describe_rule(Name=name)
    assert (d["ScheduleExpression"], d["State"]) == ("cron(0 12 * * ? *)", "DISABLED")
    assert len(events.list_rules(NamePrefix=name)["Rules"]) == 1

    events.delete_rule(Name=name)
    with pytest.raises(events.exceptions.ResourceNotFoundException) as exc:
        events.describe_rule(Name=name)
    assert error_of(exc)[0] == 400  # EventBridge answers every client error with 400
    assert events.list_rules(NamePrefix=name)["Rules"] == []


def test_unknown_rule_is_not_found(events, lam):
    ghost = unique_name("ghost")
    for call in (
        lambda: events.describe_rule(Name=ghost),
        lambda: events.enable_rule(Name=ghost),
        lambda: events.disable_rule(Name=ghost),
        lambda: events.list_targets_by_rule(Rule=ghost),
        lambda: events.put_targets(Rule=ghost, Targets=[{"Id": "t", "Arn": fn_arn("whatever")}]),
    ):
        with pytest.raises(events.exceptions.ResourceNotFoundException):
            call()


@pytest.mark.parametrize("expression", [
    "rate(1 minute)",
    "rate(2 minutes)",
    "rate(1 hour)",
    "rate(12 hours)",
    "rate(1 day)",
    "cron(0 12 * * ? *)",
    "cron(0/15 * * * ? *)",
    "cron(0 18 ? * MON-FRI *)",
    "cron(15 10 L * ? 2030)",
])
def test_valid_expressions_are_accepted(events, rules, expression):
    name = new_rule(events, rules, expression, state="DISABLED")
    assert events.describe_rule(Name=name)["ScheduleExpression"] == expression


INVALID = [
    "rate(0 minutes)",
    "rate(1 minutes)",      # 1 takes the singular
    "rate(5 minute)",       # more than 1 takes the plural
    "rate(5 fortnights)",
    "rate(-5 minutes)",
    "rate(five minutes)",
    "rate()",
    "rate(5)",
    "cron(0 12 * * * *)",   # day-of-month and day-of-week both given
    "cron(0 12 ? * ? *)",   # neither given
    "cron(0 12 * * ?)",     # five fields
    "cron(61 12 * * ? *)",
    "cron(0 25 * * ? *)",
    "every 5 minutes",
    "at(2030-01-01T00:00:00)",
]


def test_invalid_expressions_are_rejected_with_a_validation_exception(events, rules):
    for expression in INVALID:
        name = unique_name("bad")
        with pytest.raises(ClientError) as exc:
            events.put_rule(Name=name, ScheduleExpression=expression)
        status, code, message = error_of(exc)
        assert (status, code) == (400, "ValidationException"), (expression, status, code, message)
        assert message == AWS_MESSAGE, (expression, message)
        with pytest.raises(events.exceptions.ResourceNotFoundException):
            events.describe_rule(Name=name)

    # An invalid update leaves the rule as it was.
    name = new_rule(events, rules, "rate(1 hour)", state="DISABLED")
    with pytest.raises(ClientError) as exc:
        events.put_rule(Name=name, ScheduleExpression="rate(0 hours)", State="DISABLED")
    assert error_of(exc)[1] == "ValidationException"
    assert events.describe_rule(Name=name)["ScheduleExpression"] == "rate(1 hour)"


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------


def test_put_list_remove_targets(events, rules, lam):
    fn = create_http_function(lam, handler="app.scheduled")
    name = new_rule(events, rules, "rate(1 hour)", state="DISABLED")
    constant = {"job": "nightly", "n": 7}
    resp = events.put_targets(Rule=name, Targets=[
        {"Id": "plain", "Arn": fn_arn(fn)},
        {"Id": "const", "Arn": fn_arn(fn), "Input": json.dumps(constant)},
    ])
    assert resp["FailedEntryCount"] == 0, resp
    assert resp.get("FailedEntries", []) == []
    targets = {t["Id"]: t for t in events.list_targets_by_rule(Rule=name)["Targets"]}
    assert set(targets) == {"plain", "const"}
    assert targets["plain"]["Arn"] == fn_arn(fn)
    assert "Input" not in targets["plain"]
    assert json.loads(targets["const"]["Input"]) == constant

    # Putting a target with an existing id replaces it.
    events.put_targets(Rule=name, Targets=[{"Id": "const", "Arn": fn_arn(fn), "Input": '{"n": 8}'}])
    targets = {t["Id"]: t for t in events.list_targets_by_rule(Rule=name)["Targets"]}
    assert len(targets) == 2
    assert json.loads(targets["const"]["Input"]) == {"n": 8}

    # A rule with targets cannot be deleted (AWS: remove them first).
    with pytest.raises(ClientError) as exc:
        events.delete_rule(Name=name)
    assert error_of(exc)[1] == "ValidationException"
    assert events.describe_rule(Name=name)["Name"] == name

    resp = events.remove_targets(Rule=name, Ids=["const"])
    assert resp["FailedEntryCount"] == 0, resp
    assert [t["Id"] for t in events.list_targets_by_rule(Rule=name)["Targets"]] == ["plain"]
    events.remove_targets(Rule=name, Ids=["plain"])
    assert events.list_targets_by_rule(Rule=name)["Targets"] == []
    events.delete_rule(Name=name)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name=name)


def test_aws_cli_manages_rules_and_targets(server, events, rules, lam):
    ep = server.endpoint
    fn = create_http_function(lam, handler="app.scheduled")
    name = unique_name("cli-rule")
    rules.append(name)
    out = json.loads(run_aws(ep, "events", "put-rule", "--name", name,
                             "--schedule-expression", "rate(1 hour)", "--state", "DISABLED").stdout)
    assert out["RuleArn"] == rule_arn(name)
    listed = json.loads(run_aws(ep, "events", "list-rules", "--name-prefix", name).stdout)
    assert [(r["Name"], r["ScheduleExpression"], r["State"]) for r in listed["Rules"]] == \
        [(name, "rate(1 hour)", "DISABLED")]
    described = json.loads(run_aws(ep, "events", "describe-rule", "--name", name).stdout)
    assert described["Arn"] == rule_arn(name)
    out = json.loads(run_aws(ep, "events", "put-targets", "--rule", name,
                             "--targets", f"Id=one,Arn={fn_arn(fn)}").stdout)
    assert out["FailedEntryCount"] == 0
    targets = json.loads(run_aws(ep, "events", "list-targets-by-rule", "--rule", name).stdout)["Targets"]
    assert [(t["Id"], t["Arn"]) for t in targets] == [("one", fn_arn(fn))]
    run_aws(ep, "events", "remove-targets", "--rule", name, "--ids", "one")
    run_aws(ep, "events", "delete-rule", "--name", name)
    listed = json.loads(run_aws(ep, "events", "list-rules", "--name-prefix", name).stdout)
    assert listed["Rules"] == []
    bad = run_aws(ep, "events", "put-rule", "--name", name, "--schedule-expression", "rate(1 minutes)", check=False)
    assert bad.returncode != 0 and "ValidationException" in bad.stderr, bad.stderr


# ---------------------------------------------------------------------------------------------
# Firing
# ---------------------------------------------------------------------------------------------


def test_rate_rule_invokes_its_function_with_the_scheduled_event(events, rules, lam, scratch):
    fn = scheduled_fn(lam, scratch)
    name = new_rule(events, rules, "rate(1 minute)")
    add_target(events, name, "fn", fn)
    got = wait_reports(scratch, "sched-", 3, timeout=90)
    for r in got:
        assert_scheduled_event(r["event"], name)
        assert r["context"]["function_name"] == fn
        assert r["context"]["function_version"] == "$LATEST"
    got = reports(scratch, "sched-")
    ids = [r["event"]["id"] for r in got]
    assert len(set(ids)) == len(ids), "every firing is its own event"
    times = [r["event"]["time"] for r in got]
    assert len(set(times)) == len(times), f"a due time fired twice: {sorted(times)}"
    request_ids = [r["context"]["aws_request_id"] for r in got]
    assert len(set(request_ids)) == len(request_ids)


def test_cron_rule_fires_at_its_utc_times(events, rules, lam, scratch):
    fn = scheduled_fn(lam, scratch)
    name = new_rule(events, rules, "cron(0/2 * * * ? *)")  # every even minute
    add_target(events, name, "fn", fn)
    got = wait_reports(scratch, "sched-", 2, timeout=90)
    for r in got:
        assert_scheduled_event(r["event"], name)
        t = r["event"]["time"]
        assert t.endswith(":00Z") and int(t[14:16]) % 2 == 0, f"{t} is not a time of cron(0/2 * * * ? *)"
    times = sorted(r["event"]["time"] for r in reports(scratch, "sched-"))
    assert len(set(times)) == len(times), times


def test_target_with_an_alias_arn_runs_the_alias_version(events, rules, lam, scratch):
    fn = create_http_function(lam, scratch, version="one", handler="app.scheduled")
    assert lam.publish_version(FunctionName=fn)["Version"] == "1"
    lam.update_function_code(FunctionName=fn, ZipFile=http_zip("two"))
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    name = new_rule(events, rules, "rate(1 minute)")
    resp = events.put_targets(Rule=name, Targets=[{"Id": "alias", "Arn": fn_arn(fn, "live")}])
    assert resp["FailedEntryCount"] == 0, resp
    assert events.list_targets_by_rule(Rule=name)["Targets"][0]["Arn"] == fn_arn(fn, "live")
    got = wait_reports(scratch, "sched-", 2, timeout=90)
    for r in got:
        assert_scheduled_event(r["event"], name)
        assert r["context"]["function_version"] == "1"
        assert r["context"]["package_version"] == "one"
        assert r["context"]["invoked_function_arn"] == fn_arn(fn, "live")


def test_constant_input_replaces_the_scheduled_event_for_its_target(events, rules, lam, scratch):
    fn = scheduled_fn(lam, scratch)
    name = new_rule(events, rules, "rate(1 minute)")
    constant = {"job": "nightly-report", "n": 7, "nested": {"list": [1, "two", None], "flag": True}}
    add_target(events, name, "with-input", fn, constant)
    add_target(events, name, "plain", fn)
    is_constant = lambda r: r["event"] == constant  # noqa: E731
    wait_reports(scratch, "sched-", 2, timeout=90, where=is_constant)
    plain = wait_reports(scratch, "sched-", 2, timeout=90, where=from_rule(name))
    for r in plain:
        assert_scheduled_event(r["event"], name)
    others = [r for r in reports(scratch, "sched-") if not is_constant(r) and not from_rule(name)(r)]
    assert others == [], "every event is either the constant input or the Scheduled Event"


def test_disabled_rule_does_not_fire_until_enabled(events, rules, lam, scratch):
    fn = scheduled_fn(lam, scratch)
    control = new_rule(events, rules, "rate(1 minute)")
    add_target(events, control, "c", fn)
    off = new_rule(events, rules, "rate(1 minute)", state="DISABLED")
    add_target(events, off, "o", fn)

    # While the control rule fires three times, the disabled one fires never.
    wait_reports(scratch, "sched-", 3, timeout=90, where=from_rule(control))
    assert count(scratch, from_rule(off)) == 0

    events.enable_rule(Name=off)
    wait_reports(scratch, "sched-", 2, timeout=90, where=from_rule(off))

    events.disable_rule(Name=off)
    assert_stopped(scratch, from_rule(control), from_rule(off), "a disabled rule fired")


def test_removing_targets_and_deleting_the_rule_stop_invocations(events, rules, lam, scratch):
    fn = scheduled_fn(lam, scratch)
    control = new_rule(events, rules, "rate(1 minute)")
    add_target(events, control, "c", fn)
    name = new_rule(events, rules, "rate(1 minute)")
    add_target(events, name, "a", fn, {"target": "a"})
    add_target(events, name, "b", fn, {"target": "b"})
    is_a = lambda r: r["event"] == {"target": "a"}  # noqa: E731
    is_b = lambda r: r["event"] == {"target": "b"}  # noqa: E731
    wait_reports(scratch, "sched-", 2, timeout=90, where=is_a)
    wait_reports(scratch, "sched-", 2, timeout=90, where=is_b)

    events.remove_targets(Rule=name, Ids=["a"])
    # The rule's other target keeps firing; the removed one does not.
    assert_stopped(scratch, is_b, is_a, "a removed target was invoked")

    events.remove_targets(Rule=name, Ids=["b"])
    events.delete_rule(Name=name)
    assert_stopped(scratch, from_rule(control), is_b, "a deleted rule fired")


def test_rule_survives_a_restart_and_never_fires_a_due_time_twice(start_server, scratch):
    """The rule and its targets are stored; after a restart they fire again. The sped-up clock
    starts again from real time, behind the due times the first run already fired: a rule
    that did not remember its last due time would fire those again."""
    srv = start_server(*SPEED_FLAGS)
    lam = srv.lambda_client()
    ev = events_client(srv.endpoint)
    fn = scheduled_fn(lam, scratch)
    name = unique_name("rule")
    ev.put_rule(Name=name, ScheduleExpression="rate(1 minute)", State="ENABLED")
    add_target(ev, name, "fn", fn)
    wait_reports(scratch, "sched-", 2, timeout=90)

    srv.stop()
    time.sleep(2)  # lets an event already on its way arrive
    before = reports(scratch, "sched-")
    srv.start()
    restarted_at = time.time()

    ev = events_client(srv.endpoint)
    d = ev.describe_rule(Name=name)
    assert (d["Arn"], d["ScheduleExpression"], d["State"]) == (rule_arn(name), "rate(1 minute)", "ENABLED")
    assert [(t["Id"], t["Arn"]) for t in ev.list_targets_by_rule(Rule=name)["Targets"]] == [("fn", fn_arn(fn))]

    after = lambda r: r["received_at"] > restarted_at  # noqa: E731
    wait_reports(scratch, "sched-", 3, timeout=120, where=after)
    everything = reports(scratch, "sched-")
    assert len(everything) >= len(before) + 3
    for r in everything:
        assert_scheduled_event(r["event"], name)
    times = [r["event"]["time"] for r in everything]
    assert len(set(times)) == len(times), f"a due time fired twice across the restart: {sorted(times)}"
    last_before = max(r["event"]["time"] for r in before)
    assert all(r["event"]["time"] > last_before for r in everything if r not in before), \
        "after the restart the rule fired a due time earlier than one it had already fired"

    ev.remove_targets(Rule=name, Ids=["fn"])
    ev.delete_rule(Name=name)


def test_due_times_missed_while_down_are_not_replayed(start_server, scratch, tmp_path):
    """A due time that passes while the server is down is skipped, not fired late.

    Every run of the scheduler's clock starts from real time, so a due time can only be
    missed if real time passes it: the rule is made on a real-time server (no
    `--schedule-clock-speed`), which is stopped before the rule's first due time, the next
    minute boundary B. Once B has passed the server comes back with the sped-up clock, whose
    next due time (B + 1 minute) comes about a second later. The events must then carry B + 1
    minute, B + 2 minutes..., never B. (Waits for B: up to a minute of real time.)"""
    data = tmp_path / "data-missed"
    srv = start_server(data_dir=data)
    lam = srv.lambda_client()
    ev = events_client(srv.endpoint)
    fn = scheduled_fn(lam, scratch)
    # At least 5 s before the boundary, so the real-time server cannot fire B before it stops.
    while time.gmtime().tm_sec >= 55:
        time.sleep(0.2)
    name = unique_name("rule")
    ev.put_rule(Name=name, ScheduleExpression="rate(1 minute)", State="ENABLED")
    add_target(ev, name, "fn", fn)
    made_at = time.time()
    srv.stop()
    boundary = (int(made_at) // 60 + 1) * 60
    assert time.time() < boundary, "the server ran past the first due time"
    missed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(boundary))

    while time.time() < boundary + 1.5:
        time.sleep(0.2)
    assert reports(scratch, "sched-") == [], "the rule fired before its first due time"
    srv2 = start_server(*SPEED_FLAGS, data_dir=data)
    got = wait_reports(scratch, "sched-", 3, timeout=120)
    for r in got:
        assert_scheduled_event(r["event"], name)
    times = sorted(r["event"]["time"] for r in reports(scratch, "sched-"))
    assert missed not in times, f"the due time {missed}, missed while the server was down, was fired: {times}"
    assert all(t > missed for t in times), (missed, times)
    assert len(set(times)) == len(times), times

    ev = events_client(srv2.endpoint)
    ev.remove_targets(Rule=name, Ids=["fn"])
    ev.delete_rule(Name=name)
