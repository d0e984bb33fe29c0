"""The core flow through the AWS CLI (v1, from PyPI), unmodified, pointed at Serval."""

import base64
import hashlib
import json

import pytest

from serval_e2e import PY_RUNTIME, ROLE, python_zip, raw_payload_args, run_aws, unique_name


def test_aws_cli_create_invoke_list_get_update_delete(server, tmp_path):
    ep = server.endpoint
    name = unique_name("cli")
    code = python_zip("cli-v1")
    zip_path = tmp_path / "fn.zip"
    zip_path.write_bytes(code)

    created = json.loads(
        run_aws(
            ep, "lambda", "create-function",
            "--function-name", name,
            "--runtime", PY_RUNTIME,
            "--role", ROLE,
            "--handler", "app.echo",
            "--zip-file", f"fileb://{zip_path}",
            "--environment", "Variables={USER_FROM=cli}",
        ).stdout
    )
    assert created["FunctionName"] == name
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()

    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"via": "aws-cli"}))
    out = tmp_path / "out.json"
    meta = json.loads(
        run_aws(
            ep, "lambda", "invoke",
            "--function-name", name,
            *raw_payload_args(),
            "--payload", payload.read_text(),
            str(out),
        ).stdout
    )
    assert meta["StatusCode"] == 200
    assert meta["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in meta
    result = json.loads(out.read_bytes())
    assert result["event"] == {"via": "aws-cli"}
    assert result["user_env"] == {"USER_FROM": "cli"}
    assert result["version"] == "cli-v1"

    # --payload file:// form as well, with the log tail.
    out2 = tmp_path / "out2.json"
    meta = json.loads(
        run_aws(
            ep, "lambda", "invoke",
            "--function-name", name,
            *raw_payload_args(),
            "--payload", f"file://{payload}",
            "--log-type", "Tail",
            str(out2),
        ).stdout
    )
    tail = base64.b64decode(meta["LogResult"]).decode()
    assert "REPORT RequestId:" in tail
    assert json.loads(out2.read_bytes())["event"] == {"via": "aws-cli"}

    listed = json.loads(run_aws(ep, "lambda", "list-functions").stdout)
    assert name in [f["FunctionName"] for f in listed["Functions"]]

    got = json.loads(run_aws(ep, "lambda", "get-function", "--function-name", name).stdout)
    assert got["Configuration"]["Handler"] == "app.echo"
    assert got["Code"]["Location"]

    new_code = python_zip("cli-v2")
    zip_path.write_bytes(new_code)
    updated = json.loads(
        run_aws(ep, "lambda", "update-function-code", "--function-name", name, "--zip-file", f"fileb://{zip_path}").stdout
    )
    assert updated["CodeSha256"] == base64.b64encode(hashlib.sha256(new_code).digest()).decode()

    reconfigured = json.loads(
        run_aws(
            ep, "lambda", "update-function-configuration",
            "--function-name", name,
            "--timeout", "13",
            "--memory-size", "256",
            "--environment", "Variables={USER_FROM=cli2}",
        ).stdout
    )
    assert reconfigured["Timeout"] == 13
    assert reconfigured["MemorySize"] == 256

    run_aws(ep, "lambda", "invoke", "--function-name", name, *raw_payload_args(),
            "--payload", "{}", str(out))
    result = json.loads(out.read_bytes())
    assert result["version"] == "cli-v2"
    assert result["user_env"] == {"USER_FROM": "cli2"}
    assert result["context"]["memory_limit_in_mb"] == "256"

    run_aws(ep, "lambda", "delete-function", "--function-name", name)
    missing = run_aws(ep, "lambda", "get-function", "--function-name", name, check=False)
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


def test_aws_cli_reports_function_error(server, tmp_path):
    ep = server.endpoint
    name = unique_name("clierr")
    zip_path = tmp_path / "fn.zip"
    zip_path.write_bytes(python_zip())
    run_aws(ep, "lambda", "create-function", "--function-name", name, "--runtime", PY_RUNTIME,
            "--role", ROLE, "--handler", "app.fail", "--zip-file", f"fileb://{zip_path}")
    out = tmp_path / "out.json"
    meta = json.loads(
        run_aws(ep, "lambda", "invoke", "--function-name", name, *raw_payload_args(),
                "--payload", '{"why": "cli"}', str(out)).stdout
    )
    assert meta["StatusCode"] == 200
    assert meta["FunctionError"] == "Unhandled"
    err = json.loads(out.read_bytes())
    assert err["errorType"] == "ValueError"
    assert err["errorMessage"] == "deliberate failure: cli"


def test_aws_cli_get_account_settings(server):
    settings = json.loads(run_aws(server.endpoint, "lambda", "get-account-settings").stdout)
    assert settings["AccountLimit"]["ConcurrentExecutions"] > 0
