"""Bad input is rejected with AWS's error code, HTTP status and boto3 exception class.

The `lam_raw` client has boto3's client-side validation turned off, so Serval's own validation
is what answers (boto3 would otherwise refuse e.g. MemorySize 127 before sending)."""

import os
import stat

import pytest
from botocore.exceptions import ClientError

from serval_e2e import (
    PY_RUNTIME,
    ROLE,
    assert_aws_error,
    make_zip,
    python_zip,
    signed_request,
    unique_name,
    zip_bomb,
)

GOOD_CODE = python_zip()


def create(lam, **overrides):
    params = dict(FunctionName=unique_name("bad"), Runtime=PY_RUNTIME, Role=ROLE, Handler="app.echo", Code={"ZipFile": GOOD_CODE})
    params.update(overrides)
    return lam.create_function(**{k: v for k, v in params.items() if v is not None})


def expect_error(lam, code, status, **overrides) -> ClientError:
    exc_class = getattr(lam.exceptions, code, ClientError)
    with pytest.raises(exc_class) as exc:
        create(lam, **overrides)
    err = exc.value.response
    assert err["Error"]["Code"] == code, err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status, err
    assert err["Error"]["Message"], err
    return exc.value


def assert_not_created(lam, name):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)


@pytest.mark.parametrize("name", ["bad name", "bad!name", "x" * 65, "fn:with:too:many:colons"])
def test_rejects_bad_function_name(lam_raw, name):
    err = expect_error(lam_raw, "ValidationException", 400, FunctionName=name)
    assert "functionName" in err.response["Error"]["Message"] or "FunctionName" in err.response["Error"]["Message"]


def test_rejects_memory_below_minimum(lam_raw):
    err = expect_error(lam_raw, "ValidationException", 400, MemorySize=127)
    assert "Member must have value greater than or equal to 128" in err.response["Error"]["Message"]


def test_rejects_memory_above_maximum(lam_raw):
    err = expect_error(lam_raw, "InvalidParameterValueException", 400, MemorySize=10241)
    assert "less than or equal to 10240" in err.response["Error"]["Message"]


def test_rejects_timeout_zero(lam_raw):
    err = expect_error(lam_raw, "ValidationException", 400, Timeout=0)
    assert "greater than or equal to 1" in err.response["Error"]["Message"]


def test_rejects_timeout_over_900(lam_raw):
    err = expect_error(lam_raw, "InvalidParameterValueException", 400, Timeout=901)
    assert "less than or equal to 900" in err.response["Error"]["Message"]


def test_rejects_ephemeral_storage_below_minimum(lam_raw):
    expect_error(lam_raw, "ValidationException", 400, EphemeralStorage={"Size": 511})


def test_rejects_ephemeral_storage_above_maximum(lam_raw):
    err = expect_error(lam_raw, "InvalidParameterValueException", 400, EphemeralStorage={"Size": 10241})
    assert "10240" in err.response["Error"]["Message"]


def test_rejects_environment_over_4_kb(lam_raw):
    err = expect_error(lam_raw, "InvalidParameterValueException", 400, Environment={"Variables": {"BIG": "x" * 4100}})
    assert "4KB" in err.response["Error"]["Message"]


def test_rejects_reserved_environment_key(lam_raw):
    err = expect_error(lam_raw, "InvalidParameterValueException", 400, Environment={"Variables": {"AWS_REGION": "eu-west-1"}})
    assert "AWS_REGION" in err.response["Error"]["Message"]
    assert "reserved" in err.response["Error"]["Message"]


def test_rejects_unknown_runtime(lam_raw):
    expect_error(lam_raw, "InvalidParameterValueException", 400, Runtime="cobol85")


def test_rejects_missing_handler(lam_raw):
    name = unique_name("nohandler")
    expect_error(lam_raw, "InvalidParameterValueException", 400, FunctionName=name, Handler=None)
    assert_not_created(lam_raw, name)


def test_rejects_missing_role(lam_raw):
    with pytest.raises(ClientError) as exc:
        create(lam_raw, Role=None)
    assert exc.value.response["Error"]["Code"] in ("ValidationException", "InvalidParameterValueException")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize("role", ["not-a-role", "arn:aws:iam::1234:role/x", "arn:aws:s3:::bucket"])
def test_rejects_bad_role(lam_raw, role):
    err = expect_error(lam_raw, "ValidationException", 400, Role=role)
    assert "role" in err.response["Error"]["Message"]


def test_rejects_duplicate_create_with_conflict(lam):
    name = unique_name("dup")
    create(lam, FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceConflictException) as exc:
        create(lam, FunctionName=name)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert exc.value.response["Error"]["Message"] == f"Function already exist: {name}"


def test_rejects_zip_entry_outside_package(lam_raw):
    name = unique_name("traversal")
    bad = make_zip({"app.py": "def echo(e, c): return e\n", "../x": "escape"})
    expect_error(lam_raw, "InvalidParameterValueException", 400, FunctionName=name, Code={"ZipFile": bad})
    assert_not_created(lam_raw, name)


def test_rejects_zip_entry_with_absolute_path(lam_raw):
    name = unique_name("abs")
    bad = make_zip({"app.py": "def echo(e, c): return e\n", "/etc/serval-e2e-owned": "x"})
    expect_error(lam_raw, "InvalidParameterValueException", 400, FunctionName=name, Code={"ZipFile": bad})
    assert_not_created(lam_raw, name)


def test_rejects_symlink_pointing_outside_package(lam_raw):
    name = unique_name("symlink")
    bad = make_zip({"app.py": "def echo(e, c): return e\n", "leak": ("/etc/passwd", stat.S_IFLNK | 0o777)})
    expect_error(lam_raw, "InvalidParameterValueException", 400, FunctionName=name, Code={"ZipFile": bad})
    assert_not_created(lam_raw, name)


def test_rejects_relative_symlink_escaping_package(lam_raw):
    name = unique_name("symlink2")
    bad = make_zip({"app.py": "def echo(e, c): return e\n", "sub/leak": ("../../../etc/passwd", stat.S_IFLNK | 0o777)})
    expect_error(lam_raw, "InvalidParameterValueException", 400, FunctionName=name, Code={"ZipFile": bad})


def test_accepts_symlink_inside_package(lam):
    name = unique_name("symlink-ok")
    ok = make_zip({"real.py": "def echo(e, c):\n    return 'via link'\n", "app.py": ("real.py", stat.S_IFLNK | 0o777)})
    create(lam, FunctionName=name, Code={"ZipFile": ok})
    out = lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()
    assert out == b'"via link"'


def test_rejects_corrupt_zip(lam_raw):
    name = unique_name("corrupt")
    expect_error(lam_raw, "InvalidParameterValueException", 400, FunctionName=name, Code={"ZipFile": b"PK\x03\x04 this is not a zip"})
    assert_not_created(lam_raw, name)
    truncated = GOOD_CODE[: len(GOOD_CODE) // 2]
    expect_error(lam_raw, "InvalidParameterValueException", 400, Code={"ZipFile": truncated})


def test_rejects_corrupt_zip_on_update(lam_raw):
    name = unique_name("corrupt-update")
    create(lam_raw, FunctionName=name)
    with pytest.raises(lam_raw.exceptions.InvalidParameterValueException):
        lam_raw.update_function_code(FunctionName=name, ZipFile=b"not a zip at all")
    assert lam_raw.get_function_configuration(FunctionName=name)["CodeSize"] == len(GOOD_CODE)


@pytest.mark.slow
def test_rejects_zip_bomb_over_250_mb_unzipped(lam_raw):
    bomb = zip_bomb(260 * 1024 * 1024)
    assert len(bomb) < 2 * 1024 * 1024
    name = unique_name("bomb")
    err = expect_error(lam_raw, "InvalidParameterValueException", 400, FunctionName=name, Code={"ZipFile": bomb})
    assert "262144000" in err.response["Error"]["Message"] or "250" in err.response["Error"]["Message"]
    assert_not_created(lam_raw, name)


@pytest.mark.slow
def test_rejects_zipped_package_over_50_mb(lam_raw):
    import zipfile

    big = make_zip({"app.py": "def echo(e, c): return e\n", "blob.bin": os.urandom(51 * 1024 * 1024)}, compression=zipfile.ZIP_STORED)
    assert len(big) > 50 * 1024 * 1024
    name = unique_name("big")
    with pytest.raises(ClientError) as exc:
        create(lam_raw, FunctionName=name, Code={"ZipFile": big})
    err = exc.value.response
    code = err["Error"]["Code"]
    assert code in ("RequestEntityTooLargeException", "InvalidParameterValueException"), err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == (413 if code == "RequestEntityTooLargeException" else 400)
    assert_not_created(lam_raw, name)


def test_rejects_malformed_json_body(server):
    resp = signed_request("POST", f"{server.endpoint}/2015-03-31/functions", b'{"FunctionName": "x", ', headers={"Content-Type": "application/json"})
    assert_aws_error(resp, 400, ("InvalidRequestContentException", "SerializationException", "ValidationException"))


def test_rejects_wrong_json_types(server):
    body = b'{"FunctionName": "typed", "Runtime": "python3.11", "Role": "%s", "Handler": "app.echo", "MemorySize": "lots", "Code": {"ZipFile": ""}}' % ROLE.encode()
    resp = signed_request("POST", f"{server.endpoint}/2015-03-31/functions", body, headers={"Content-Type": "application/json"})
    assert_aws_error(resp, 400, ("InvalidRequestContentException", "SerializationException", "ValidationException", "InvalidParameterValueException"))


def test_rejects_invalid_revision_format_on_update(lam_raw):
    name = unique_name("rev")
    create(lam_raw, FunctionName=name)
    with pytest.raises(lam_raw.exceptions.PreconditionFailedException):
        lam_raw.update_function_configuration(FunctionName=name, Description="x", RevisionId="stale")


def test_rejects_invalid_client_context(lam):
    name = unique_name("cc")
    create(lam, FunctionName=name)
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, Payload=b"{}", ClientContext="%%% not base64 %%%")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert exc.value.response["Error"]["Code"] in ("InvalidRequestContentException", "InvalidParameterValueException")


def test_rejects_unknown_invocation_type(server):
    name = unique_name("invtype")
    from serval_e2e import lambda_client

    create(lambda_client(server.endpoint), FunctionName=name)
    resp = signed_request("POST", f"{server.endpoint}/2015-03-31/functions/{name}/invocations", b"{}",
                          headers={"X-Amz-Invocation-Type": "Sometimes"})
    assert_aws_error(resp, 400, ("InvalidParameterValueException", "ValidationException"))
