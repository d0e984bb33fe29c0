"""Versions and aliases, as AWS documents them: PublishVersion snapshots, qualifiers in every
name form, aliases and their weighted routing, one pool of environments per version."""

import base64
import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from botocore.exceptions import ClientError

from serval_e2e import (
    ACCOUNT,
    PY_RUNTIME,
    REGION,
    ROLE,
    create_function,
    function_zip,
    invoke,
    log_tail,
    report_line,
    run_aws,
    unique_name,
    wait_for,
)

ARN_PREFIX = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"


def probe_zip(version: str) -> bytes:
    """tests/functions/python-probe with a version.txt naming the code version."""
    return function_zip("python-probe", {"version.txt": version})


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def arn(name: str, qualifier: str | None = None) -> str:
    return ARN_PREFIX + name + (f":{qualifier}" if qualifier else "")


def error_of(exc: pytest.ExceptionInfo) -> tuple[int, str, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"].get("Message", "")


def versions_of(lam, name: str) -> list[dict]:
    out, marker = [], None
    while True:
        params = {"FunctionName": name}
        if marker:
            params["Marker"] = marker
        page = lam.list_versions_by_function(**params)
        out.extend(page["Versions"])
        marker = page.get("NextMarker")
        if not marker:
            return out


def invoke_ok(lam, name, payload=None, **kwargs):
    resp, out = invoke(lam, name, payload if payload is not None else {}, **kwargs)
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp, out
    return resp, out


@pytest.fixture
def two_versions(lam):
    """A function with version 1 (code v1, USER_STAGE=one), version 2 (code v2, USER_STAGE=two)
    and $LATEST moved on again (code v3, USER_STAGE=three)."""
    name = create_function(lam, probe_zip("v1"), handler="app.whoami", env={"USER_STAGE": "one"})
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ZipFile=probe_zip("v2"))
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"USER_STAGE": "two"}})
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.update_function_code(FunctionName=name, ZipFile=probe_zip("v3"))
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"USER_STAGE": "three"}})
    return name


# ---------------------------------------------------------------------------------------------
# PublishVersion
# ---------------------------------------------------------------------------------------------


def test_publish_version_is_an_immutable_snapshot_of_code_and_configuration(lam):
    code_v1 = probe_zip("v1")
    name = create_function(lam, code_v1, handler="app.whoami", env={"USER_STAGE": "one"},
                           Description="first", Timeout=7, MemorySize=256)
    published = lam.publish_version(FunctionName=name, Description="release one")
    assert published["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert published["Version"] == "1"
    assert published["FunctionArn"] == arn(name, "1")
    assert published["FunctionName"] == name
    assert published["CodeSha256"] == sha256_b64(code_v1)
    assert published["Description"] == "release one"
    assert published["Timeout"] == 7
    assert published["MemorySize"] == 256
    assert published["Environment"]["Variables"] == {"USER_STAGE": "one"}
    assert published["RevisionId"]

    # $LATEST moves on: new code, new configuration.
    code_v2 = probe_zip("v2")
    lam.update_function_code(FunctionName=name, ZipFile=code_v2)
    lam.update_function_configuration(FunctionName=name, Timeout=9, MemorySize=512,
                                      Environment={"Variables": {"USER_STAGE": "two"}})

    # Version 1 still runs the old code with the old configuration...
    resp, out = invoke_ok(lam, name, Qualifier="1")
    assert resp["ExecutedVersion"] == "1"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"] == "1"
    assert out["package_version"] == "v1"
    assert out["user_env"] == {"USER_STAGE": "one"}
    assert out["function_version"] == "1"
    assert out["env_version"] == "1"
    assert out["invoked_function_arn"] == arn(name, "1")
    # ...and $LATEST the new.
    resp, out = invoke_ok(lam, name)
    assert resp["ExecutedVersion"] == "$LATEST"
    assert out["package_version"] == "v2"
    assert out["user_env"] == {"USER_STAGE": "two"}
    assert out["function_version"] == "$LATEST"

    # Reading version 1 shows the snapshot.
    cfg = lam.get_function_configuration(FunctionName=name, Qualifier="1")
    assert cfg["Version"] == "1"
    assert cfg["FunctionArn"] == arn(name, "1")
    assert cfg["CodeSha256"] == sha256_b64(code_v1)
    assert cfg["Timeout"] == 7
    assert cfg["MemorySize"] == 256
    assert cfg["Environment"]["Variables"] == {"USER_STAGE": "one"}
    assert cfg["Description"] == "release one"
    full = lam.get_function(FunctionName=name, Qualifier="1")
    assert full["Configuration"]["Version"] == "1"
    assert full["Configuration"]["CodeSha256"] == sha256_b64(code_v1)
    # The version's package, not $LATEST's, is what its Code.Location serves.
    assert requests.get(full["Code"]["Location"], timeout=30).content == code_v1
    latest = lam.get_function_configuration(FunctionName=name)
    assert latest["Version"] == "$LATEST"
    assert latest["CodeSha256"] == sha256_b64(code_v2)
    assert latest["Timeout"] == 9


def test_publish_without_changes_returns_the_existing_version(lam):
    name = create_function(lam, probe_zip("same"), handler="app.whoami")
    first = lam.publish_version(FunctionName=name)
    assert first["Version"] == "1"
    again = lam.publish_version(FunctionName=name)
    assert again["Version"] == "1", "an unchanged $LATEST must not make a new version"
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST", "1"]

    # A configuration change alone is a change.
    lam.update_function_configuration(FunctionName=name, Timeout=11)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    # So is a code change.
    lam.update_function_code(FunctionName=name, ZipFile=probe_zip("other"))
    assert lam.publish_version(FunctionName=name)["Version"] == "3"
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST", "1", "2", "3"]


def test_publish_honours_code_sha256_precondition(lam):
    code = probe_zip("sha")
    name = create_function(lam, code, handler="app.whoami")
    wrong = sha256_b64(b"something else")
    with pytest.raises(ClientError) as exc:
        lam.publish_version(FunctionName=name, CodeSha256=wrong)
    status, code_name, message = error_of(exc)
    assert (status, code_name) == (400, "InvalidParameterValueException"), exc.value.response
    assert wrong in message, message
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST"], "a refused publish made a version"

    published = lam.publish_version(FunctionName=name, CodeSha256=sha256_b64(code))
    assert published["Version"] == "1"


def test_publish_honours_revision_id_precondition(lam):
    name = create_function(lam, probe_zip("rev"), handler="app.whoami")
    stale = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    current = lam.update_function_configuration(FunctionName=name, Timeout=5)["RevisionId"]
    assert stale != current
    with pytest.raises(lam.exceptions.PreconditionFailedException) as exc:
        lam.publish_version(FunctionName=name, RevisionId=stale)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST"]

    current = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    assert lam.publish_version(FunctionName=name, RevisionId=current)["Version"] == "1"


def test_publish_unknown_function_is_not_found(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.publish_version(FunctionName=unique_name("ghost"))


def test_publish_on_create_and_on_code_update(lam):
    code_v1 = probe_zip("p1")
    name = unique_name("pub")
    created = lam.create_function(FunctionName=name, Runtime=PY_RUNTIME, Role=ROLE, Handler="app.whoami",
                                  Code={"ZipFile": code_v1}, Publish=True)
    assert created["Version"] == "1"
    # As measured on AWS: CreateFunction's ARN stays unqualified, UpdateFunctionCode's is the
    # new version's.
    assert created["FunctionArn"] == arn(name)

    code_v2 = probe_zip("p2")
    updated = lam.update_function_code(FunctionName=name, ZipFile=code_v2, Publish=True)
    assert updated["Version"] == "2"
    assert updated["FunctionArn"] == arn(name, "2")
    assert updated["CodeSha256"] == sha256_b64(code_v2)

    versions = versions_of(lam, name)
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    by_version = {v["Version"]: v for v in versions}
    assert by_version["1"]["CodeSha256"] == sha256_b64(code_v1)
    assert by_version["2"]["CodeSha256"] == sha256_b64(code_v2)
    _, out = invoke_ok(lam, name, Qualifier="1")
    assert out["package_version"] == "p1"
    _, out = invoke_ok(lam, name, Qualifier="2")
    assert out["package_version"] == "p2"


def test_list_functions_shows_versions_only_with_function_version_all(lam, two_versions):
    """ListFunctions: "Set to ALL to include entries for all published versions of each
    function"; without it, one unqualified entry per function."""
    name = two_versions

    def arns(**kwargs):
        out, marker = [], None
        while True:
            page = lam.list_functions(**kwargs, **({"Marker": marker} if marker else {}))
            out += [f["FunctionArn"] for f in page["Functions"] if f["FunctionName"] == name]
            marker = page.get("NextMarker")
            if not marker:
                return out

    assert arns() == [arn(name)]
    assert sorted(arns(FunctionVersion="ALL")) == sorted([arn(name, "$LATEST"), arn(name, "1"), arn(name, "2")])


def test_list_versions_by_function(lam, two_versions):
    name = two_versions
    versions = versions_of(lam, name)
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert [v["FunctionArn"] for v in versions] == [arn(name, "$LATEST"), arn(name, "1"), arn(name, "2")]
    assert {v["Environment"]["Variables"]["USER_STAGE"] for v in versions} == {"one", "two", "three"}
    assert all(v["FunctionName"] == name for v in versions)

    # Paging with MaxItems sees every version once.
    seen, marker = [], None
    for _ in range(10):
        params = {"FunctionName": name, "MaxItems": 1}
        if marker:
            params["Marker"] = marker
        page = lam.list_versions_by_function(**params)
        assert len(page["Versions"]) <= 1
        seen.extend(v["Version"] for v in page["Versions"])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["$LATEST", "1", "2"]

    only_latest = create_function(lam, probe_zip("x"), handler="app.whoami")
    assert [v["Version"] for v in versions_of(lam, only_latest)] == ["$LATEST"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.list_versions_by_function(FunctionName=unique_name("ghost"))


# ---------------------------------------------------------------------------------------------
# Qualifiers in every name form
# ---------------------------------------------------------------------------------------------


def test_invoke_and_read_by_qualifier_in_every_name_form(lam, two_versions):
    name = two_versions
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    partial = f"{ACCOUNT}:function:{name}"
    cases = [
        # (FunctionName, Qualifier, expected version, expected invoked ARN)
        (name, "1", "1", arn(name, "1")),
        (f"{name}:1", None, "1", arn(name, "1")),
        (arn(name, "2"), None, "2", arn(name, "2")),
        (f"{partial}:2", None, "2", arn(name, "2")),
        (arn(name), "2", "2", arn(name, "2")),
        (partial, None, "$LATEST", arn(name)),
        # AWS's docs leave open whether an explicit $LATEST shows in the invoked ARN.
        (name, "$LATEST", "$LATEST", (arn(name), arn(name, "$LATEST"))),
        (f"{name}:live", None, "1", arn(name, "live")),
        (arn(name, "live"), None, "1", arn(name, "live")),
        (f"{partial}:live", None, "1", arn(name, "live")),
        (name, "live", "1", arn(name, "live")),
    ]
    code_of = {"1": "v1", "2": "v2", "$LATEST": "v3"}
    stage_of = {"1": "one", "2": "two", "$LATEST": "three"}
    for function_name, qualifier, version, invoked in cases:
        kwargs = {"Qualifier": qualifier} if qualifier else {}
        resp, out = invoke_ok(lam, function_name, **kwargs)
        what = (function_name, qualifier)
        assert resp["ExecutedVersion"] == version, what
        assert out["package_version"] == code_of[version], what
        assert out["user_env"] == {"USER_STAGE": stage_of[version]}, what
        assert out["function_version"] == version, what
        if isinstance(invoked, tuple):
            assert out["invoked_function_arn"] in invoked, what
        elif not invoked.endswith(":live"):  # aliases: test_alias_invocation_reports_the_alias_arn
            # "The ARN that's used to invoke the function. Indicates if the invoker specified a
            # version number or alias" (AWS's context object docs).
            assert out["invoked_function_arn"] == invoked, (what, out["invoked_function_arn"])

        cfg = lam.get_function_configuration(FunctionName=function_name, **kwargs)
        assert cfg["Version"] == version, what
        assert cfg["Environment"]["Variables"] == {"USER_STAGE": stage_of[version]}, what
        full = lam.get_function(FunctionName=function_name, **kwargs)
        assert full["Configuration"]["Version"] == version, what


def test_unknown_or_conflicting_qualifiers(lam, two_versions):
    name = two_versions
    for qualifier in ("99", "nosuchalias"):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
            lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert arn(name, qualifier) in exc.value.response["Error"]["Message"]
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.get_function(FunctionName=name, Qualifier=qualifier)
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.get_function_configuration(FunctionName=f"{name}:{qualifier}")
    # A qualifier in the name and a different one as Qualifier.
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=f"{name}:1", Qualifier="2", Payload=b"{}")
    status, code, _ = error_of(exc)
    assert (status, code) == (400, "InvalidParameterValueException"), exc.value.response


def test_alias_invocation_reports_the_alias_arn_to_the_function(lam, two_versions):
    """`context.invoked_function_arn` is "the ARN that's used to invoke the function. Indicates
    if the invoker specified a version number or alias" (AWS's Python context object docs);
    `function_version` is the version that ran."""
    name = two_versions
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.create_alias(FunctionName=name, Name="split", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    for function_name, qualifier, alias in [(f"{name}:live", None, "live"), (name, "live", "live"),
                                            (arn(name, "split"), None, "split")]:
        kwargs = {"Qualifier": qualifier} if qualifier else {}
        resp, out = invoke_ok(lam, function_name, **kwargs)
        assert out["function_version"] == resp["ExecutedVersion"]
        assert out["invoked_function_arn"] == arn(name, alias), (function_name, qualifier, out["invoked_function_arn"])


# ---------------------------------------------------------------------------------------------
# DeleteFunction of one version
# ---------------------------------------------------------------------------------------------


def test_delete_one_version(lam, two_versions):
    name = two_versions
    resp = lam.delete_function(FunctionName=name, Qualifier="1")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST", "2"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name, Qualifier="1")
    # The function, $LATEST and the other version live on.
    _, out = invoke_ok(lam, name, Qualifier="2")
    assert out["package_version"] == "v2"
    _, out = invoke_ok(lam, name)
    assert out["package_version"] == "v3"

    # Version numbers are never reused.
    assert lam.publish_version(FunctionName=name)["Version"] == "3"
    lam.delete_function(FunctionName=name, Qualifier="3")
    lam.update_function_configuration(FunctionName=name, Timeout=13)
    assert lam.publish_version(FunctionName=name)["Version"] == "4"


def test_latest_cannot_be_deleted_as_a_version(lam, two_versions):
    with pytest.raises(ClientError) as exc:
        lam.delete_function(FunctionName=two_versions, Qualifier="$LATEST")
    status, code, _ = error_of(exc)
    assert (status, code) == (400, "InvalidParameterValueException"), exc.value.response
    assert [v["Version"] for v in versions_of(lam, two_versions)] == ["$LATEST", "1", "2"]


def test_version_referenced_by_an_alias_cannot_be_deleted(lam, two_versions):
    name = two_versions
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceConflictException) as exc:
        lam.delete_function(FunctionName=name, Qualifier="1")
    status, _, message = error_of(exc)
    assert status == 409
    assert "prod" in message, message
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST", "1", "2"]
    _, out = invoke_ok(lam, f"{name}:prod")
    assert out["package_version"] == "v1"

    # Once the alias points elsewhere, the version can go.
    lam.update_alias(FunctionName=name, Name="prod", FunctionVersion="2")
    lam.delete_function(FunctionName=name, Qualifier="1")
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST", "2"]


def test_deleting_the_function_deletes_its_versions_and_aliases(lam, two_versions):
    name = two_versions
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    lam.delete_function(FunctionName=name)
    for qualifier in ("1", "2", "live", None):
        kwargs = {"Qualifier": qualifier} if qualifier else {}
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.get_function(FunctionName=name, **kwargs)
    # A new function of that name starts from version 1 again, without the old alias.
    create_function(lam, probe_zip("reborn"), name=name, handler="app.whoami")
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST"]
    assert lam.list_aliases(FunctionName=name)["Aliases"] == []
    assert lam.publish_version(FunctionName=name)["Version"] == "1"


# ---------------------------------------------------------------------------------------------
# Aliases
# ---------------------------------------------------------------------------------------------


def test_alias_create_get_list_update_delete(lam, two_versions):
    name = two_versions
    created = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="the live one")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == arn(name, "live")
    assert created["Name"] == "live"
    assert created["FunctionVersion"] == "1"
    assert created["Description"] == "the live one"
    assert created["RevisionId"]

    got = lam.get_alias(FunctionName=name, Name="live")
    for key in ("AliasArn", "Name", "FunctionVersion", "Description", "RevisionId"):
        assert got[key] == created[key], key

    lam.create_alias(FunctionName=name, Name="beta", FunctionVersion="2")
    lam.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")
    aliases = lam.list_aliases(FunctionName=name)["Aliases"]
    assert sorted(a["Name"] for a in aliases) == ["beta", "edge", "live"]
    assert {a["Name"]: a["FunctionVersion"] for a in aliases} == {"live": "1", "beta": "2", "edge": "$LATEST"}
    assert {a["AliasArn"] for a in aliases} == {arn(name, n) for n in ("live", "beta", "edge")}
    only_2 = lam.list_aliases(FunctionName=name, FunctionVersion="2")["Aliases"]
    assert [a["Name"] for a in only_2] == ["beta"]

    _, out = invoke_ok(lam, name, Qualifier="edge")
    assert out["package_version"] == "v3"

    # Update: moving the alias changes what it runs at once.
    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", Description="moved")
    assert updated["FunctionVersion"] == "2"
    assert updated["Description"] == "moved"
    assert updated["RevisionId"] != created["RevisionId"]
    resp, out = invoke_ok(lam, name, Qualifier="live")
    assert resp["ExecutedVersion"] == "2"
    assert out["package_version"] == "v2"

    # A stale RevisionId is refused and changes nothing.
    with pytest.raises(lam.exceptions.PreconditionFailedException) as exc:
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1", RevisionId=created["RevisionId"])
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"
    ok = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1", RevisionId=updated["RevisionId"])
    assert ok["FunctionVersion"] == "1"

    deleted = lam.delete_alias(FunctionName=name, Name="live")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName=name, Name="live")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    assert sorted(a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]) == ["beta", "edge"]


def test_alias_validation_errors(lam, lam_raw, two_versions):
    name = two_versions
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    with pytest.raises(lam.exceptions.ResourceConflictException) as exc:
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"

    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_alias(FunctionName=name, Name="future", FunctionVersion="99")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_alias(FunctionName=unique_name("ghost"), Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName=name, Name="nosuch")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_alias(FunctionName=name, Name="nosuch", FunctionVersion="1")
    # Deleting an alias that does not exist is not an error on AWS (204).
    lam.delete_alias(FunctionName=name, Name="nosuch")

    # Names: not all digits (that is a version), only [a-zA-Z0-9-_], at most 128 characters.
    for bad in ("123", "a:b", "a.b", "x" * 129):
        with pytest.raises(ClientError) as exc:
            lam_raw.create_alias(FunctionName=name, Name=bad, FunctionVersion="1")
        status, code, _ = error_of(exc)
        assert status == 400 and code in ("ValidationException", "InvalidParameterValueException"), (bad, exc.value.response)

    bad_routings = [
        ("1", {"1": 0.5}),            # the alias's own version as the additional one
        ("$LATEST", {"1": 0.5}),      # routing needs a published primary version
        ("1", {"$LATEST": 0.5}),      # ... and a published additional one
        ("1", {"2": 1.5}),            # weights are 0.0 to 1.0
        ("1", {"2": -0.1}),
    ]
    for version, weights in bad_routings:
        with pytest.raises(ClientError) as exc:
            lam_raw.create_alias(FunctionName=name, Name="weighted", FunctionVersion=version,
                                 RoutingConfig={"AdditionalVersionWeights": weights})
        status, code, _ = error_of(exc)
        assert status == 400 and code in ("ValidationException", "InvalidParameterValueException"), (
            version, weights, exc.value.response)
    # A weight on a version that does not exist.
    with pytest.raises(ClientError) as exc:
        lam.create_alias(FunctionName=name, Name="weighted", FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {"99": 0.5}})
    status, code, _ = error_of(exc)
    assert status in (400, 404) and code in ("InvalidParameterValueException", "ResourceNotFoundException"), exc.value.response
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName=name, Name="weighted")

    # Only one additional version.
    lam.update_function_configuration(FunctionName=name, Timeout=14)
    assert lam.publish_version(FunctionName=name)["Version"] == "3"
    with pytest.raises(ClientError) as exc:
        lam_raw.create_alias(FunctionName=name, Name="weighted", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.2, "3": 0.2}})
    status, code, _ = error_of(exc)
    assert status == 400 and code in ("ValidationException", "InvalidParameterValueException"), exc.value.response


# ---------------------------------------------------------------------------------------------
# Weighted routing
# ---------------------------------------------------------------------------------------------


def test_weighted_alias_splits_invocations_by_weight(lam, two_versions):
    name = two_versions
    weight = 0.3
    alias = lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": weight}})
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": weight}
    got = lam.get_alias(FunctionName=name, Name="canary")
    assert got["RoutingConfig"]["AdditionalVersionWeights"] == {"2": weight}

    n = 400

    def one(_):
        return invoke_ok(lam, f"{name}:canary")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(n)))
    counts = {"1": 0, "2": 0}
    for resp, out in results:
        executed = resp["ExecutedVersion"]
        assert executed in counts, executed
        counts[executed] += 1
        # The header tells the truth about what ran.
        assert out["function_version"] == executed
        assert out["package_version"] == {"1": "v1", "2": "v2"}[executed]
    expected = n * weight
    sd = math.sqrt(n * weight * (1 - weight))  # binomial: ~9.2 for 400 at 0.3
    assert abs(counts["2"] - expected) <= 4.5 * sd, (counts, expected, sd)

    # Weight 0: everything goes to the primary; moving the weight moves the traffic.
    lam.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {"2": 0.0}})
    executed = {invoke_ok(lam, name, Qualifier="canary")[0]["ExecutedVersion"] for _ in range(30)}
    assert executed == {"1"}
    lam.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
    executed = {invoke_ok(lam, name, Qualifier="canary")[0]["ExecutedVersion"] for _ in range(30)}
    assert executed == {"2"}
    # Removing the routing config sends everything to FunctionVersion again.
    lam.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {}})
    assert not lam.get_alias(FunctionName=name, Name="canary").get("RoutingConfig", {}).get("AdditionalVersionWeights")
    executed = {invoke_ok(lam, name, Qualifier="canary")[0]["ExecutedVersion"] for _ in range(30)}
    assert executed == {"1"}


# ---------------------------------------------------------------------------------------------
# Environments per version
# ---------------------------------------------------------------------------------------------


def test_each_version_has_its_own_environments(lam, two_versions):
    name = two_versions
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    seen = {}
    for qualifier in ("1", "2", "$LATEST"):
        _, first = invoke_ok(lam, name, Qualifier=qualifier)
        _, second = invoke_ok(lam, name, Qualifier=qualifier)
        # Warm reuse within one version: same environment, module state carried over.
        assert first["env_id"] == second["env_id"], qualifier
        assert second["counter"] == first["counter"] + 1, qualifier
        seen[qualifier] = second
    env_ids = {v["env_id"] for v in seen.values()}
    assert len(env_ids) == 3, "versions shared an environment"
    assert seen["1"]["counter"] == seen["2"]["counter"] == seen["$LATEST"]["counter"] == 2

    # The alias runs version 1, in version 1's warm environment.
    resp, out = invoke_ok(lam, name, Qualifier="live")
    assert resp["ExecutedVersion"] == "1"
    assert out["env_id"] == seen["1"]["env_id"]
    assert out["counter"] == 3

    # Updating $LATEST leaves the published versions' warm environments alone.
    lam.update_function_configuration(FunctionName=name, Timeout=15)
    _, out = invoke_ok(lam, name, Qualifier="2")
    assert out["env_id"] == seen["2"]["env_id"]
    _, out = invoke_ok(lam, name)
    assert out["env_id"] != seen["$LATEST"]["env_id"]


# ---------------------------------------------------------------------------------------------
# The AWS CLI
# ---------------------------------------------------------------------------------------------


def test_aws_cli_publish_version_create_alias_and_invoke(server, lam, tmp_path):
    ep = server.endpoint
    code = probe_zip("cli1")
    name = create_function(lam, code, handler="app.whoami")
    published = json.loads(run_aws(ep, "lambda", "publish-version", "--function-name", name,
                                   "--description", "from the cli").stdout)
    assert published["Version"] == "1"
    assert published["FunctionArn"] == arn(name, "1")
    assert published["Description"] == "from the cli"
    assert published["CodeSha256"] == sha256_b64(code)

    lam.update_function_code(FunctionName=name, ZipFile=probe_zip("cli2"))
    published = json.loads(run_aws(ep, "lambda", "publish-version", "--function-name", name,
                                   "--code-sha256", sha256_b64(probe_zip("cli2"))).stdout)
    assert published["Version"] == "2"
    wrong = run_aws(ep, "lambda", "publish-version", "--function-name", name,
                    "--code-sha256", sha256_b64(b"nope"), check=False)
    assert wrong.returncode != 0
    assert "InvalidParameterValueException" in wrong.stderr, wrong.stderr

    alias = json.loads(run_aws(ep, "lambda", "create-alias", "--function-name", name, "--name", "live",
                               "--function-version", "1",
                               "--routing-config", "AdditionalVersionWeights={2=0.5}").stdout)
    assert alias["AliasArn"] == arn(name, "live")
    assert alias["FunctionVersion"] == "1"
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}
    got = json.loads(run_aws(ep, "lambda", "get-alias", "--function-name", name, "--name", "live").stdout)
    assert got["RevisionId"] == alias["RevisionId"]

    versions = json.loads(run_aws(ep, "lambda", "list-versions-by-function", "--function-name", name).stdout)
    assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "1", "2"]

    out = tmp_path / "out.json"
    meta = json.loads(run_aws(ep, "lambda", "invoke", "--function-name", name, "--qualifier", "1", str(out)).stdout)
    assert meta["StatusCode"] == 200
    assert meta["ExecutedVersion"] == "1"
    assert json.loads(out.read_text())["package_version"] == "cli1"
    meta = json.loads(run_aws(ep, "lambda", "invoke", "--function-name", f"{name}:live", str(out)).stdout)
    assert meta["ExecutedVersion"] in ("1", "2")
    assert json.loads(out.read_text())["package_version"] == {"1": "cli1", "2": "cli2"}[meta["ExecutedVersion"]]

    run_aws(ep, "lambda", "delete-alias", "--function-name", name, "--name", "live")
    run_aws(ep, "lambda", "delete-function", "--function-name", name, "--qualifier", "1")
    versions = json.loads(run_aws(ep, "lambda", "list-versions-by-function", "--function-name", name).stdout)
    assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "2"]


# ---------------------------------------------------------------------------------------------
# Persistence
# ---------------------------------------------------------------------------------------------


def test_versions_aliases_and_their_settings_survive_a_restart(start_server, tmp_path):
    srv = start_server(data_dir=tmp_path / "persist")
    lam = srv.lambda_client()
    name = create_function(lam, probe_zip("v1"), handler="app.whoami", env={"USER_STAGE": "one"})
    dest = create_function(lam, probe_zip("d"), handler="app.destination")
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=probe_zip("v2"))
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=probe_zip("v3"))
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="kept",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="live", MaximumRetryAttempts=1,
                                         MaximumEventAgeInSeconds=120,
                                         DestinationConfig={"OnFailure": {"Destination": arn(dest)}})
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    before_alias = lam.get_alias(FunctionName=name, Name="live")

    srv.restart()
    lam = srv.lambda_client()
    assert [v["Version"] for v in versions_of(lam, name)] == ["$LATEST", "1", "2"]
    alias = lam.get_alias(FunctionName=name, Name="live")
    for key in ("AliasArn", "FunctionVersion", "Description", "RevisionId", "RoutingConfig"):
        assert alias[key] == before_alias[key], key
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 7
    cfg = lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")
    assert cfg["FunctionArn"] == arn(name, "live")
    assert cfg["MaximumRetryAttempts"] == 1
    assert cfg["MaximumEventAgeInSeconds"] == 120
    assert cfg["DestinationConfig"]["OnFailure"]["Destination"] == arn(dest)
    _, out = invoke_ok(lam, name, Qualifier="2")
    assert out["package_version"] == "v2"
    _, out = invoke_ok(lam, name)
    assert out["package_version"] == "v3"

    # Provisioned concurrency is set up again after the restart and serves warm.
    wait_for(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")["Status"] == "READY",
             60, what="provisioned concurrency READY after restart")
    resp, out = invoke_ok(lam, name, Qualifier="1", LogType="Tail")
    assert out["package_version"] == "v1"
    assert out["user_env"] == {"USER_STAGE": "one"}
    assert out["init_type"] == "provisioned-concurrency"
    assert report_line(log_tail(resp), resp["ResponseMetadata"]["RequestId"]).group("init") is None
