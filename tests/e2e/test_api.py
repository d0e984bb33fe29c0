"""Every Lambda control-plane operation Serval supports, through boto3."""

import base64
import hashlib
import re
import time

import pytest
import requests
from botocore.exceptions import ClientError

from serval_e2e import (
    ACCOUNT,
    PY_RUNTIME,
    REGION,
    ROLE,
    create_function,
    invoke,
    python_zip,
    unique_name,
    wait_for_log_text,
)

LAST_MODIFIED_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def function_arn(name):
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def test_create_function_returns_full_configuration(lam):
    code = python_zip("v1")
    name = unique_name("create")
    resp = lam.create_function(
        FunctionName=name,
        Runtime=PY_RUNTIME,
        Role=ROLE,
        Handler="app.echo",
        Code={"ZipFile": code},
        Description="created by the e2e suite",
        Timeout=7,
        MemorySize=256,
        Environment={"Variables": {"USER_A": "1"}},
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["FunctionName"] == name
    assert resp["FunctionArn"] == function_arn(name)
    assert resp["Runtime"] == PY_RUNTIME
    assert resp["Handler"] == "app.echo"
    assert resp["CodeSize"] == len(code)
    assert resp["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()
    assert resp["Timeout"] == 7
    assert resp["MemorySize"] == 256
    assert resp["Version"] == "$LATEST"
    assert resp["Environment"] == {"Variables": {"USER_A": "1"}}
    assert resp["State"] == "Active"
    assert resp["RevisionId"]


def test_get_function_reports_every_field_and_downloads_exact_zip(lam):
    code = python_zip("get")
    name = create_function(
        lam,
        code,
        Description="get me",
        Timeout=9,
        MemorySize=192,
        env={"USER_X": "y"},
        EphemeralStorage={"Size": 1024},
        Architectures=["x86_64"],
    )
    resp = lam.get_function(FunctionName=name)
    cfg = resp["Configuration"]
    assert cfg["FunctionName"] == name
    assert cfg["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert cfg["Runtime"] == PY_RUNTIME
    assert cfg["Role"] == ROLE
    assert cfg["Handler"] == "app.echo"
    assert cfg["CodeSize"] == len(code)
    assert cfg["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()
    assert cfg["Description"] == "get me"
    assert cfg["Timeout"] == 9
    assert cfg["MemorySize"] == 192
    assert LAST_MODIFIED_RE.match(cfg["LastModified"]), cfg["LastModified"]
    assert cfg["Version"] == "$LATEST"
    assert cfg["Environment"] == {"Variables": {"USER_X": "y"}}
    assert cfg["EphemeralStorage"] == {"Size": 1024}
    assert cfg["State"] == "Active"
    assert cfg["LastUpdateStatus"] == "Successful"
    assert re.match(r"^[0-9a-f-]{36}$", cfg["RevisionId"]), cfg["RevisionId"]
    assert cfg["PackageType"] == "Zip"
    assert cfg["Architectures"] == ["x86_64"]

    location = resp["Code"]["Location"]
    assert resp["Code"]["RepositoryType"] == "S3"
    assert location.endswith(f"/_serval/code/{hashlib.sha256(code).hexdigest()}.zip"), location
    downloaded = requests.get(location, timeout=30)
    assert downloaded.status_code == 200
    assert downloaded.content == code


def test_get_function_configuration_matches_get_function(lam):
    name = create_function(lam, python_zip(), Timeout=4)
    full = lam.get_function(FunctionName=name)["Configuration"]
    cfg = lam.get_function_configuration(FunctionName=name)
    cfg.pop("ResponseMetadata")
    assert cfg == full


def test_get_function_accepts_arn_and_qualifier(lam):
    name = create_function(lam, python_zip())
    by_arn = lam.get_function(FunctionName=function_arn(name))
    assert by_arn["Configuration"]["FunctionName"] == name
    qualified = lam.get_function(FunctionName=name, Qualifier="$LATEST")
    assert qualified["Configuration"]["Version"] == "$LATEST"


def test_defaults_apply_when_create_omits_settings(lam):
    name = create_function(lam, python_zip())
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["Timeout"] == 3
    assert cfg["MemorySize"] == 128
    assert cfg["EphemeralStorage"] == {"Size": 512}
    assert cfg["Architectures"] == ["x86_64"]
    assert cfg["PackageType"] == "Zip"


def test_list_functions_pages_with_max_items_and_marker(start_server):
    srv = start_server()
    lam = srv.lambda_client()
    names = sorted(create_function(lam, python_zip(), name=f"page-{i}-{unique_name()}") for i in range(5))

    seen, marker, pages = [], None, 0
    while True:
        params = {"MaxItems": 2}
        if marker:
            params["Marker"] = marker
        page = lam.list_functions(**params)
        pages += 1
        assert len(page["Functions"]) <= 2
        seen.extend(f["FunctionName"] for f in page["Functions"])
        marker = page.get("NextMarker")
        if not marker:
            break
        assert pages < 10, "ListFunctions never stopped paging"
    assert pages == 3
    assert sorted(seen) == names
    assert len(seen) == len(set(seen)), "a function was listed twice"

    everything = lam.list_functions()
    assert sorted(f["FunctionName"] for f in everything["Functions"]) == names
    assert "NextMarker" not in everything or not everything["NextMarker"]
    some = everything["Functions"][0]
    assert some["FunctionArn"] == function_arn(some["FunctionName"])
    assert some["Runtime"] == PY_RUNTIME


def test_list_functions_paginator_yields_every_function(start_server):
    srv = start_server()
    lam = srv.lambda_client()
    names = {create_function(lam, python_zip()) for _ in range(5)}
    paginator = lam.get_paginator("list_functions")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3
    listed = [f["FunctionName"] for p in pages for f in p["Functions"]]
    assert sorted(listed) == sorted(names)
    limited = paginator.paginate(PaginationConfig={"MaxItems": 3, "PageSize": 2}).build_full_result()
    assert len(limited["Functions"]) == 3
    assert limited.get("NextToken")


def test_update_function_code_runs_new_code_and_changes_revision(lam):
    name = create_function(lam, python_zip("v1"), handler="app.whoami")
    _, out = invoke(lam, name)
    assert out["version"] == "v1"
    before = lam.get_function_configuration(FunctionName=name)

    new_code = python_zip("v2")
    resp = lam.update_function_code(FunctionName=name, ZipFile=new_code)
    assert resp["CodeSha256"] == base64.b64encode(hashlib.sha256(new_code).digest()).decode()
    assert resp["CodeSize"] == len(new_code)
    assert resp["RevisionId"] != before["RevisionId"]
    assert resp["LastUpdateStatus"] == "Successful"

    _, out = invoke(lam, name)
    assert out["version"] == "v2"
    got = lam.get_function(FunctionName=name)
    assert requests.get(got["Code"]["Location"], timeout=30).content == new_code


def test_update_function_code_with_stale_revision_is_precondition_failed(lam):
    name = create_function(lam, python_zip("v1"), handler="app.whoami")
    with pytest.raises(lam.exceptions.PreconditionFailedException) as exc:
        lam.update_function_code(FunctionName=name, ZipFile=python_zip("v2"), RevisionId="00000000-0000-0000-0000-000000000000")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    _, out = invoke(lam, name)
    assert out["version"] == "v1"


def test_update_function_configuration_takes_effect_on_next_invoke(lam):
    name = create_function(lam, python_zip(), env={"USER_GREETING": "hello"}, Timeout=3, MemorySize=128)
    _, out = invoke(lam, name)
    assert out["user_env"] == {"USER_GREETING": "hello"}
    assert out["context"]["memory_limit_in_mb"] == "128"
    rev = lam.get_function_configuration(FunctionName=name)["RevisionId"]

    resp = lam.update_function_configuration(
        FunctionName=name,
        Environment={"Variables": {"USER_GREETING": "bonjour", "USER_NEW": "1"}},
        Timeout=11,
        MemorySize=256,
        Description="updated",
        RevisionId=rev,
    )
    assert resp["Timeout"] == 11
    assert resp["MemorySize"] == 256
    assert resp["Description"] == "updated"
    assert resp["RevisionId"] != rev

    _, out = invoke(lam, name)
    assert out["user_env"] == {"USER_GREETING": "bonjour", "USER_NEW": "1"}
    assert out["context"]["memory_limit_in_mb"] == "256"
    assert out["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    # Remaining time is counted from the new 11 s timeout.
    assert 3000 < out["context"]["remaining_time_in_millis"] <= 11000


def test_update_function_configuration_with_stale_revision_is_precondition_failed(lam):
    name = create_function(lam, python_zip(), Timeout=3)
    with pytest.raises(lam.exceptions.PreconditionFailedException) as exc:
        lam.update_function_configuration(FunctionName=name, Timeout=5, RevisionId="not-the-revision")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert exc.value.response["Error"]["Code"] == "PreconditionFailedException"
    assert lam.get_function_configuration(FunctionName=name)["Timeout"] == 3


def test_update_function_configuration_can_change_handler_and_runtime_settings(lam):
    name = create_function(lam, python_zip("h"), handler="app.echo")
    lam.update_function_configuration(FunctionName=name, Handler="app.whoami")
    _, out = invoke(lam, name)
    assert set(out) == {"process", "version", "counter"}


def test_delete_function_then_every_operation_is_not_found(lam):
    name = create_function(lam, python_zip())
    resp = lam.delete_function(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
        lam.get_function(FunctionName=name)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Payload=b"{}")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_function_configuration(FunctionName=name, Timeout=5)
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert name not in names


def test_delete_then_recreate_same_name_runs_new_code(lam):
    name = create_function(lam, python_zip("first"), handler="app.whoami")
    assert invoke(lam, name)[1]["version"] == "first"
    lam.delete_function(FunctionName=name)
    create_function(lam, python_zip("second"), name=name, handler="app.whoami")
    assert invoke(lam, name)[1]["version"] == "second"


def test_invoke_returns_handler_result(lam):
    name = create_function(lam, python_zip())
    resp, out = invoke(lam, name, {"hello": "world"})
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert out["event"] == {"hello": "world"}


def test_get_account_settings_reports_limits_and_usage(lam):
    before = lam.get_account_settings()
    limit = before["AccountLimit"]
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["CodeSizeZipped"] == 50 * 1024 * 1024
    assert limit["CodeSizeUnzipped"] == 250 * 1024 * 1024
    code = python_zip("acct")
    create_function(lam, code)
    after = lam.get_account_settings()
    assert after["AccountUsage"]["FunctionCount"] == before["AccountUsage"]["FunctionCount"] + 1
    assert after["AccountUsage"]["TotalCodeSize"] >= len(code)


def test_account_settings_report_the_configured_concurrency_limit(start_server):
    srv = start_server("--max-concurrency", "7")
    limit = srv.lambda_client().get_account_settings()["AccountLimit"]
    assert limit["ConcurrentExecutions"] == 7


def test_tags_can_be_set_listed_and_removed(lam):
    name = create_function(lam, python_zip(), Tags={"team": "serval", "env": "test"})
    arn = function_arn(name)
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "serval", "env": "test"}
    lam.tag_resource(Resource=arn, Tags={"env": "prod", "owner": "qa"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "serval", "env": "prod", "owner": "qa"}
    lam.untag_resource(Resource=arn, TagKeys=["team", "owner"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"env": "prod"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"env": "prod"}


def test_tagging_unknown_function_is_not_found(lam):
    arn = function_arn(unique_name("ghost"))
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.tag_resource(Resource=arn, Tags={"a": "b"})
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.list_tags(Resource=arn)


def test_functions_code_and_logs_survive_server_restart(start_server, tmp_path):
    data = tmp_path / "persistent"
    srv = start_server(data_dir=data)
    lam = srv.lambda_client()
    code = python_zip("persist")
    name = create_function(lam, code, handler="app.log_lines", env={"USER_KEEP": "1"}, Tags={"k": "v"})
    resp, out = invoke(lam, name, {"marker": "before-restart"})
    assert out["marker"] == "before-restart"
    wait_for_log_text(srv.logs_client(), f"/aws/lambda/{name}", ["stdout line before-restart"])
    before = lam.get_function(FunctionName=name)

    srv.restart()
    lam = srv.lambda_client()
    after = lam.get_function(FunctionName=name)
    for key in ("CodeSha256", "CodeSize", "RevisionId", "LastModified", "Environment", "Handler", "Runtime"):
        assert after["Configuration"][key] == before["Configuration"][key], key
    assert after["Tags"] == {"k": "v"}
    assert requests.get(after["Code"]["Location"], timeout=30).content == code
    resp, out = invoke(lam, name, {"marker": "after-restart"})
    assert out["marker"] == "after-restart"
    text = wait_for_log_text(srv.logs_client(), f"/aws/lambda/{name}", ["stdout line before-restart", "stdout line after-restart"])
    assert text.count("REPORT RequestId:") >= 2


def test_unknown_function_is_not_found_with_aws_message(lam):
    name = unique_name("missing")
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
        lam.get_function(FunctionName=name)
    msg = exc.value.response["Error"]["Message"]
    assert msg == f"Function not found: {function_arn(name)}"


# ---------------------------------------------------------------------------------------------
# Concurrent control-plane updates
# ---------------------------------------------------------------------------------------------


def _retry_conflicts(call, attempts=200):
    """AWS may answer an update racing another with 409 ResourceConflictException ("an update
    is in progress"); a client retries. Any other error fails the test."""
    for _ in range(attempts):
        try:
            return call()
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceConflictException":
                raise
            time.sleep(0.05)
    raise AssertionError("update kept conflicting")


def _assert_consistent(lam, name, shas_to_version):
    fn = lam.get_function(FunctionName=name)
    cfg = fn["Configuration"]
    assert cfg["CodeSha256"] in shas_to_version, cfg["CodeSha256"]
    zipped = requests.get(fn["Code"]["Location"], timeout=60).content
    assert base64.b64encode(hashlib.sha256(zipped).digest()).decode() == cfg["CodeSha256"], \
        "Code.Location serves other code than CodeSha256 names"
    resp, out = invoke(lam, name, {})
    assert "FunctionError" not in resp, out
    assert out["version"] == shas_to_version[cfg["CodeSha256"]], (out, cfg["CodeSha256"])
    return cfg, out


def test_concurrent_updates_leave_a_consistent_function(lam):
    from concurrent.futures import ThreadPoolExecutor

    zips = {i: python_zip(f"code-{i}") for i in range(10)}
    shas = {base64.b64encode(hashlib.sha256(z).digest()).decode(): f"code-{i}" for i, z in zips.items()}
    name = create_function(lam, python_zip("initial"), handler="app.whoami", Description="initial")
    shas[lam.get_function_configuration(FunctionName=name)["CodeSha256"]] = "initial"

    def update(i):
        if i % 2:
            return _retry_conflicts(lambda: lam.update_function_code(FunctionName=name, ZipFile=zips[i]))
        return _retry_conflicts(lambda: lam.update_function_configuration(FunctionName=name, Description=str(i)))

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(update, range(10)))
    revisions = [r["RevisionId"] for r in results]
    assert len(set(revisions)) == len(revisions), "two updates produced the same RevisionId"

    cfg, _ = _assert_consistent(lam, name, shas)
    assert cfg["Description"] in {str(i) for i in range(0, 10, 2)}, cfg["Description"]
    # The code written last by the code updates is one of the odd ones, not the initial code:
    # a configuration update must not put an older code hash back.
    assert shas[cfg["CodeSha256"]] in {f"code-{i}" for i in range(1, 10, 2)}, cfg["CodeSha256"]


def test_interleaved_updates_of_code_and_configuration_lose_nothing(lam):
    import threading

    rounds = 12
    zips = [python_zip(f"seq-{i}") for i in range(rounds)]
    shas = {base64.b64encode(hashlib.sha256(z).digest()).decode(): f"seq-{i}" for i, z in enumerate(zips)}
    name = create_function(lam, python_zip("initial"), handler="app.whoami", Description="initial")
    shas[lam.get_function_configuration(FunctionName=name)["CodeSha256"]] = "initial"
    errors = []
    go = threading.Barrier(2)

    def configs():
        go.wait()
        try:
            for i in range(rounds):
                _retry_conflicts(lambda: lam.update_function_configuration(FunctionName=name, Description=f"desc-{i}"))
        except Exception as e:  # reported below
            errors.append(e)

    def codes():
        go.wait()
        try:
            for i in range(rounds):
                _retry_conflicts(lambda: lam.update_function_code(FunctionName=name, ZipFile=zips[i]))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=configs), threading.Thread(target=codes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors

    cfg, out = _assert_consistent(lam, name, shas)
    assert cfg["Description"] == f"desc-{rounds - 1}", "a configuration update was lost"
    assert out["version"] == f"seq-{rounds - 1}", "a code update was lost"
    assert shas[cfg["CodeSha256"]] == f"seq-{rounds - 1}"
