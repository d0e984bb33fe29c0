"""Environment lifecycle: warm reuse, concurrency, code updates, idle reaping."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from serval_e2e import (
    create_function,
    function_process_alive,
    invoke,
    log_tail,
    process_key,
    python_zip,
    read_json_file,
    report_line,
    wait_for,
)


def test_warm_reuse_keeps_module_state_and_tmp_files(lam):
    name = create_function(lam, python_zip(), handler="app.echo")
    resp1, first = invoke(lam, name, {}, LogType="Tail")
    resp2, second = invoke(lam, name, {}, LogType="Tail")
    resp3, third = invoke(lam, name, {}, LogType="Tail")
    assert first["process"] == second["process"] == third["process"]
    assert first["runtime"] == first["process"], "the handler ran outside the runtime process"
    assert [first["counter"], second["counter"], third["counter"]] == [1, 2, 3]
    assert [first["tmp_counter"], second["tmp_counter"], third["tmp_counter"]] == [1, 2, 3]
    assert first["context"]["log_stream_name"] == third["context"]["log_stream_name"]
    assert report_line(log_tail(resp1), resp1["ResponseMetadata"]["RequestId"]).group("init") is not None
    assert report_line(log_tail(resp2), resp2["ResponseMetadata"]["RequestId"]).group("init") is None
    assert report_line(log_tail(resp3), resp3["ResponseMetadata"]["RequestId"]).group("init") is None


def test_parallel_invocations_get_distinct_environments(lam, scratch):
    name = create_function(lam, python_zip(), handler="app.barrier", Timeout=60, env=scratch.env)
    parties = 4

    def one(_):
        return invoke(lam, name, {"parties": parties, "hold": 0.5, "max_wait": 40})

    with ThreadPoolExecutor(parties) as pool:
        results = list(pool.map(one, range(parties)))
    for resp, out in results:
        assert "FunctionError" not in resp, out
    processes = {process_key(out["process"]) for _, out in results}
    streams = {out["log_stream_name"] for _, out in results}
    rids = {out["request_id"] for _, out in results}
    assert len(processes) == parties
    assert len(streams) == parties
    assert len(rids) == parties

    # Afterwards those environments are warm and reused.
    resp, out = invoke(lam, name, {"parties": 1, "hold": 0})
    assert process_key(out["process"]) in processes


def test_code_update_starts_new_environment_while_in_flight_invoke_finishes_on_old(lam, scratch):
    name = create_function(lam, python_zip("old"), handler="app.sleep", Timeout=60, env=scratch.env)
    in_flight: dict = {}

    def slow():
        in_flight["resp"], in_flight["out"] = invoke(lam, name, {"seconds": 3, "started_file": "old.json"})

    t = threading.Thread(target=slow)
    t.start()
    try:
        old = read_json_file(scratch / "old.json")
        assert old["version"] == "old"
        lam.update_function_code(FunctionName=name, ZipFile=python_zip("new"))
        resp, out = invoke(lam, name, {"seconds": 0, "started_file": "new.json"})
        assert "FunctionError" not in resp, out
        assert out["version"] == "new"
        assert out["process"] != old["process"]
    finally:
        t.join(120)
    assert "FunctionError" not in in_flight["resp"], in_flight["out"]
    assert in_flight["out"]["version"] == "old"
    assert in_flight["out"]["process"] == old["process"]

    # The old environment is not handed out again.
    resp, out = invoke(lam, name, {"seconds": 0, "started_file": "again.json"})
    assert out["version"] == "new"


def test_configuration_update_starts_new_environment(lam):
    name = create_function(lam, python_zip(), handler="app.echo", env={"USER_GREETING": "a"})
    _, first = invoke(lam, name, {})
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"USER_GREETING": "b"}})
    _, second = invoke(lam, name, {})
    assert second["process"] != first["process"]
    assert second["counter"] == 1
    assert second["user_env"] == {"USER_GREETING": "b"}


def test_idle_environment_is_reaped_after_keep_alive(start_server):
    srv = start_server("--keep-alive", "1")
    lam = srv.lambda_client()
    name = create_function(lam, python_zip(), handler="app.echo")
    resp, first = invoke(lam, name, {}, LogType="Tail")
    assert report_line(log_tail(resp), resp["ResponseMetadata"]["RequestId"]).group("init") is not None

    # The idle environment's process goes away on its own once keep-alive has passed.
    assert function_process_alive(first["process"]), "the runtime is not found while warm"
    wait_for(lambda: not function_process_alive(first["process"]), 30, what="idle environment to be reaped")
    resp, second = invoke(lam, name, {}, LogType="Tail")
    assert second["process"] != first["process"]
    assert second["counter"] == 1
    assert second["tmp_counter"] == 1, "/tmp of a reaped environment leaked into the new one"
    assert report_line(log_tail(resp), resp["ResponseMetadata"]["RequestId"]).group("init") is not None


def test_environments_are_not_shared_between_functions(lam):
    a = create_function(lam, python_zip(), handler="app.echo")
    b = create_function(lam, python_zip(), handler="app.echo")
    _, out_a = invoke(lam, a, {})
    _, out_b = invoke(lam, b, {})
    assert out_a["process"] != out_b["process"]
    assert out_b["counter"] == 1
