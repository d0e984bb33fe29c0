"""Concurrency: reserved concurrency per function, the account limit of the server, and
provisioned concurrency (environments kept initialized, so no cold start), as AWS documents them."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from serval_e2e import (
    ACCOUNT,
    REGION,
    assert_aws_error,
    create_function,
    function_zip,
    invoke,
    log_tail,
    report_line,
    signed_request,
    unique_name,
    wait_for,
)

ARN_PREFIX = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
RESERVED_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"


def probe_zip(version: str = "c1") -> bytes:
    return function_zip("python-probe", {"version.txt": version})


def arn(name: str, qualifier: str | None = None) -> str:
    return ARN_PREFIX + name + (f":{qualifier}" if qualifier else "")


def error_of(exc) -> tuple[int, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def unreserved(lam) -> int:
    return lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]


def parallel_invokes(lam, name: str, payloads: list, **kwargs) -> list:
    """Starts every invoke at once (a barrier); returns per call ("ok", resp, out) or
    ("throttled", error response)."""
    gate = threading.Barrier(len(payloads))

    def one(payload):
        gate.wait(30)
        try:
            resp, out = invoke(lam, name, payload, **kwargs)
            return ("ok", resp, out)
        except lam.exceptions.TooManyRequestsException as e:
            return ("throttled", e.response)

    with ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(one, payloads))


def spans(scratch) -> list[tuple[float, float]]:
    out = []
    for p in scratch.path.iterdir():
        if p.name.startswith("span-"):
            d = json.loads(p.read_text())
            out.append((d["start"], d["end"]))
    return out


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


# ---------------------------------------------------------------------------------------------
# Reserved concurrency: the API
# ---------------------------------------------------------------------------------------------


def test_reserved_concurrency_crud_keeps_account_settings_consistent(start_server):
    srv = start_server()
    lam = srv.lambda_client()
    limit = lam.get_account_settings()["AccountLimit"]
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["UnreservedConcurrentExecutions"] == 1000

    a = create_function(lam, probe_zip(), handler="app.whoami")
    b = create_function(lam, probe_zip(), handler="app.whoami")
    assert lam.get_function_concurrency(FunctionName=a).get("ReservedConcurrentExecutions") is None
    assert "Concurrency" not in lam.get_function(FunctionName=a) or \
        lam.get_function(FunctionName=a)["Concurrency"].get("ReservedConcurrentExecutions") is None

    put = lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=100)
    assert put["ReservedConcurrentExecutions"] == 100
    assert lam.get_function_concurrency(FunctionName=a)["ReservedConcurrentExecutions"] == 100
    assert lam.get_function(FunctionName=a)["Concurrency"]["ReservedConcurrentExecutions"] == 100
    assert unreserved(lam) == 900

    lam.put_function_concurrency(FunctionName=b, ReservedConcurrentExecutions=50)
    assert unreserved(lam) == 850
    # Putting again replaces the reservation.
    lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=10)
    assert lam.get_function_concurrency(FunctionName=a)["ReservedConcurrentExecutions"] == 10
    assert unreserved(lam) == 940
    # Full ARN works as the name too.
    assert lam.get_function_concurrency(FunctionName=arn(b))["ReservedConcurrentExecutions"] == 50

    deleted = lam.delete_function_concurrency(FunctionName=a)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.get_function_concurrency(FunctionName=a).get("ReservedConcurrentExecutions") is None
    assert unreserved(lam) == 950

    # Deleting the function gives its reservation back.
    lam.delete_function(FunctionName=b)
    assert unreserved(lam) == 1000
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1000

    # Reservations must leave at least 100 unreserved.
    with pytest.raises(ClientError) as exc:
        lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=901)
    assert error_of(exc) == (400, "InvalidParameterValueException"), exc.value.response
    assert unreserved(lam) == 1000
    lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=900)
    assert unreserved(lam) == 100
    c = create_function(lam, probe_zip(), handler="app.whoami")
    with pytest.raises(ClientError) as exc:
        lam.put_function_concurrency(FunctionName=c, ReservedConcurrentExecutions=1)
    assert error_of(exc) == (400, "InvalidParameterValueException"), exc.value.response
    # 0 reserves nothing and is always allowed.
    lam.put_function_concurrency(FunctionName=c, ReservedConcurrentExecutions=0)
    assert lam.get_function_concurrency(FunctionName=c)["ReservedConcurrentExecutions"] == 0
    assert unreserved(lam) == 100

    # Reservations survive a restart.
    srv.restart()
    lam = srv.lambda_client()
    assert lam.get_function_concurrency(FunctionName=a)["ReservedConcurrentExecutions"] == 900
    assert lam.get_function_concurrency(FunctionName=c)["ReservedConcurrentExecutions"] == 0
    assert unreserved(lam) == 100


def test_reserved_concurrency_invalid_values_and_unknown_functions(lam, lam_raw):
    name = create_function(lam, probe_zip(), handler="app.whoami")
    with pytest.raises(ClientError) as exc:
        lam_raw.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=-1)
    status, code = error_of(exc)
    assert status == 400 and code in ("ValidationException", "InvalidParameterValueException"), exc.value.response
    with pytest.raises(ClientError) as exc:
        lam_raw.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5000)
    assert error_of(exc) == (400, "InvalidParameterValueException"), exc.value.response
    assert lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None

    ghost = unique_name("ghost")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_concurrency(FunctionName=ghost, ReservedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_concurrency(FunctionName=ghost)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_concurrency(FunctionName=ghost)


# ---------------------------------------------------------------------------------------------
# Reserved concurrency: throttling
# ---------------------------------------------------------------------------------------------


def test_reserved_zero_throttles_every_synchronous_invoke(server, lam, scratch):
    name = create_function(lam, probe_zip(), handler="app.record", env=scratch.env)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for i in range(5):
        with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
            lam.invoke(FunctionName=name, Payload=json.dumps({"id": f"z{i}"}).encode())
        err = exc.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert err.get("Reason") == RESERVED_REASON, err
        assert err["Error"]["Message"]
    # In AWS's error shape on the wire.
    url = f"{server.endpoint}/2015-03-31/functions/{name}/invocations"
    resp = signed_request("POST", url, b'{"id": "raw"}')
    body = assert_aws_error(resp, 429, "TooManyRequestsException")
    assert body.get("Reason") == RESERVED_REASON, body
    time.sleep(0.5)
    assert not [p for p in scratch.path.iterdir() if p.name.startswith("h-")], "a throttled invoke ran"

    # Removing the reservation lets it run again.
    lam.delete_function_concurrency(FunctionName=name)
    resp, out = invoke(lam, name, {"id": "after"})
    assert "FunctionError" not in resp, out
    assert out["handled"] == "after"


def test_reserved_two_never_runs_more_than_two_at_once(lam, scratch):
    name = create_function(lam, probe_zip(), handler="app.span", Timeout=30, env=scratch.env)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    other = create_function(lam, probe_zip(), handler="app.whoami")

    results = parallel_invokes(lam, name, [{"seconds": 2, "tag": f"p{i}"} for i in range(8)])
    ok = [r for r in results if r[0] == "ok"]
    throttled = [r for r in results if r[0] == "throttled"]
    assert len(ok) >= 2, results
    assert len(throttled) >= 1, "8 parallel invokes with a reservation of 2 were never throttled"
    for _, err in throttled:
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert err.get("Reason") == RESERVED_REASON, err
    for _, resp, out in ok:
        assert "FunctionError" not in resp, out
    measured = spans(scratch)
    assert len(measured) == len(ok)
    assert max_overlap(measured) <= 2, measured
    assert len({out["env_id"] for _, _, out in ok}) <= 2

    # A function without a reservation is not affected by the other's limit.
    resp, _ = invoke(lam, other, {})
    assert "FunctionError" not in resp

    # Sequential invokes within the reservation all run.
    for i in range(3):
        resp, out = invoke(lam, name, {"seconds": 0})
        assert "FunctionError" not in resp, out


def test_account_limit_throttles_with_concurrent_invocation_limit_exceeded(start_server, scratch):
    srv = start_server("--max-concurrency", "3")
    lam = srv.lambda_client()
    limit = lam.get_account_settings()["AccountLimit"]
    assert limit["ConcurrentExecutions"] == 3
    assert limit["UnreservedConcurrentExecutions"] == 3

    name = create_function(lam, probe_zip(), handler="app.span", Timeout=30, env=scratch.env)
    results = parallel_invokes(lam, name, [{"seconds": 2} for _ in range(6)])
    ok = [r for r in results if r[0] == "ok"]
    throttled = [r for r in results if r[0] == "throttled"]
    assert len(ok) >= 3, results
    assert throttled, "6 parallel invokes under an account limit of 3 were never throttled"
    for _, err in throttled:
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert err.get("Reason") == ACCOUNT_REASON, err
    assert max_overlap(spans(scratch)) <= 3


def test_a_reservation_is_held_for_its_function_within_the_account_limit(start_server, scratch):
    """Account limit 3, function A reserves 1: unreserved functions share the other 2, and A can
    still run while they are saturated."""
    srv = start_server("--max-concurrency", "3")
    lam = srv.lambda_client()
    a = create_function(lam, probe_zip(), handler="app.whoami")
    lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=1)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 2

    b = create_function(lam, probe_zip(), handler="app.span", Timeout=30, env=scratch.env)
    box: dict = {}

    def run_b():
        box["results"] = parallel_invokes(lam, b, [{"seconds": 3} for _ in range(3)])

    t = threading.Thread(target=run_b)
    t.start()
    try:
        wait_for(lambda: len([p for p in scratch.path.iterdir() if p.name.startswith("begin-")]) >= 2, 30,
                 what="two of B's invocations to be running")
        resp, out = invoke(lam, a, {})
        assert "FunctionError" not in resp, out
    finally:
        t.join(120)
    results = box["results"]
    ok = [r for r in results if r[0] == "ok"]
    throttled = [r for r in results if r[0] == "throttled"]
    assert len(ok) == 2, results
    assert len(throttled) == 1, results
    assert throttled[0][1].get("Reason") == ACCOUNT_REASON, throttled


# ---------------------------------------------------------------------------------------------
# Provisioned concurrency
# ---------------------------------------------------------------------------------------------


def wait_ready(lam, name: str, qualifier: str, timeout: float = 60.0) -> dict:
    def ready():
        got = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        assert got["Status"] in ("IN_PROGRESS", "READY"), got
        return got if got["Status"] == "READY" else None

    return wait_for(ready, timeout, what=f"provisioned concurrency of {name}:{qualifier} to be READY")


def assert_warm_parallel(lam, scratch, function_name: str, n: int) -> list:
    """n parallel invokes that provably overlap: none has a cold start."""
    sent_at = time.time()
    results = parallel_invokes(lam, function_name, [{"parties": n, "hold": 0.3, "max_wait": 30} for _ in range(n)],
                               LogType="Tail")
    outs = []
    for r in results:
        assert r[0] == "ok", r
        _, resp, out = r
        assert "FunctionError" not in resp, out
        tail = log_tail(resp)
        report = report_line(tail, resp["ResponseMetadata"]["RequestId"])
        assert report.group("init") is None, f"a provisioned environment had a cold start:\n{tail}"
        assert "Init Duration" not in tail, tail
        assert out["init_type"] == "provisioned-concurrency", out
        # Initialized before the invocations were sent.
        assert out["init_time"] < sent_at, (out["init_time"], sent_at)
        outs.append(out)
    assert len({o["env_id"] for o in outs}) == n, "the parallel invokes did not each get an environment"
    return outs


def test_provisioned_concurrency_on_a_version(lam, scratch):
    name = create_function(lam, probe_zip("pc"), handler="app.hold", Timeout=60, env=scratch.env)
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                 ProvisionedConcurrentExecutions=3)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["RequestedProvisionedConcurrentExecutions"] == 3
    assert put["Status"] == "IN_PROGRESS", put
    assert put["LastModified"]

    ready = wait_ready(lam, name, "1")
    assert ready["RequestedProvisionedConcurrentExecutions"] == 3
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 3
    assert ready["AvailableProvisionedConcurrentExecutions"] == 3

    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert len(listed) == 1
    assert listed[0]["FunctionArn"] == arn(name, "1")
    assert listed[0]["RequestedProvisionedConcurrentExecutions"] == 3
    assert listed[0]["Status"] == "READY"

    outs = assert_warm_parallel(lam, scratch, f"{name}:1", 3)
    assert {o["function_version"] for o in outs} == {"1"}

    # $LATEST is not provisioned: its first invocation is a cold start.
    resp, out = invoke(lam, name, {"parties": 1, "hold": 0}, LogType="Tail")
    assert "FunctionError" not in resp, out
    assert report_line(log_tail(resp), resp["ResponseMetadata"]["RequestId"]).group("init") is not None
    assert out["init_type"] == "on-demand"

    deleted = lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException) as exc:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []


def test_provisioned_concurrency_on_an_alias(lam, scratch):
    name = create_function(lam, probe_zip("pca"), handler="app.hold", Timeout=60, env=scratch.env)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live",
                                                 ProvisionedConcurrentExecutions=2)
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] == "IN_PROGRESS", put
    ready = wait_ready(lam, name, "live")
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2

    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"] for c in listed] == [arn(name, "live")]
    # The config belongs to the alias, not to the version it points at.
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")

    outs = assert_warm_parallel(lam, scratch, f"{name}:live", 2)
    assert {o["function_version"] for o in outs} == {"1"}


def test_invocations_beyond_provisioned_concurrency_start_on_demand(lam, scratch):
    name = create_function(lam, probe_zip("spill"), handler="app.hold", Timeout=60, env=scratch.env)
    lam.publish_version(FunctionName=name)
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2)
    wait_ready(lam, name, "1")
    results = parallel_invokes(lam, f"{name}:1", [{"parties": 3, "hold": 0.3, "max_wait": 30} for _ in range(3)],
                               LogType="Tail")
    kinds = []
    for r in results:
        assert r[0] == "ok", r
        _, resp, out = r
        assert "FunctionError" not in resp, out
        init = report_line(log_tail(resp), resp["ResponseMetadata"]["RequestId"]).group("init")
        kinds.append((out["init_type"], init is not None))
    assert sorted(kinds) == [("on-demand", True), ("provisioned-concurrency", False),
                             ("provisioned-concurrency", False)], kinds


def test_provisioned_concurrency_errors(lam, lam_raw):
    name = create_function(lam, probe_zip(), handler="app.whoami")
    lam.publish_version(FunctionName=name)
    with pytest.raises(ClientError) as exc:
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    assert error_of(exc) == (400, "InvalidParameterValueException"), exc.value.response
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="99", ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="nosuchalias",
                                               ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_provisioned_concurrency_config(FunctionName=unique_name("ghost"), Qualifier="1",
                                               ProvisionedConcurrentExecutions=1)
    with pytest.raises(ClientError) as exc:
        lam_raw.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                   ProvisionedConcurrentExecutions=0)
    status, code = error_of(exc)
    assert status == 400 and code in ("ValidationException", "InvalidParameterValueException"), exc.value.response

    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException) as exc:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
