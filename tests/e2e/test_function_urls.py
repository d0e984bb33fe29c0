"""Lambda Function URLs as AWS documents them: the `/2021-10-31/functions/{name}/url[s]`
configuration API (boto3 and the AWS CLI), and HTTP requests through the returned URL
(`http://<url-id>.lambda-url.<region>.localhost:<port>/`) and the path-based form
(`/_aws/lambda-url/<url-id>/...`): payload format 2.0 events, response mapping, binary bodies,
cookies, CORS, function errors.

The function is tests/functions/python-http (`app.handler`); it reports every invocation to the
test's collector as `inv-<request id>`."""

import hashlib
import json
import os
import re
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from http_triggers import (
    V2_TIME_RE,
    create_http_function,
    curl,
    echoed,
    error_of,
    fn_arn,
    header_values,
    host_of,
    http,
    http_zip,
    invocations,
    path_form,
    token_set,
    wait_reports,
)
from serval_e2e import ACCOUNT, REGION, run_aws, unique_name

ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")
UA = "serval-e2e-function-urls/1.0"


def url_pattern(server) -> re.Pattern:
    port = server.endpoint.rsplit(":", 1)[1]
    return re.compile(rf"^http://([a-z0-9]{{32}})\.lambda-url\.{REGION}\.localhost:{port}/$")


def url_id_of(server, function_url: str) -> str:
    m = url_pattern(server).match(function_url)
    assert m, f"FunctionUrl {function_url!r} is not http://<32 chars>.lambda-url.{REGION}.localhost:<port>/"
    return m.group(1)


def make_url(lam, name: str, **kwargs) -> dict:
    resp = lam.create_function_url_config(FunctionName=name, AuthType=kwargs.pop("AuthType", "NONE"), **kwargs)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201, resp
    return resp


def unknown_url_status(resp) -> None:
    assert resp.status_code in (403, 404), (resp.status_code, resp.text[:500])


# ---------------------------------------------------------------------------------------------
# The configuration API
# ---------------------------------------------------------------------------------------------


def test_create_get_update_list_delete_function_url_config(server, lam):
    name = create_http_function(lam)
    created = make_url(lam, name)
    url_id = url_id_of(server, created["FunctionUrl"])
    assert created["FunctionArn"] == fn_arn(name)
    assert created["AuthType"] == "NONE"
    assert created.get("InvokeMode", "BUFFERED") == "BUFFERED"
    assert ISO_RE.match(created["CreationTime"]), created["CreationTime"]
    assert not created.get("Cors"), created

    got = lam.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == created["FunctionUrl"]
    assert got["FunctionArn"] == fn_arn(name)
    assert got["AuthType"] == "NONE"
    assert got["CreationTime"] == created["CreationTime"]
    assert ISO_RE.match(got["LastModifiedTime"]), got["LastModifiedTime"]
    # The function's ARN names it as well.
    assert lam.get_function_url_config(FunctionName=fn_arn(name))["FunctionUrl"] == created["FunctionUrl"]

    cors = {
        "AllowOrigins": ["https://app.example.com"],
        "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["x-custom-header"],
        "ExposeHeaders": ["x-echo"],
        "MaxAge": 300,
        "AllowCredentials": True,
    }
    updated = lam.update_function_url_config(FunctionName=name, Cors=cors)
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert updated["FunctionUrl"] == created["FunctionUrl"], "an update must keep the URL"
    assert updated["AuthType"] == "NONE"
    assert updated["Cors"] == cors
    assert updated["CreationTime"] == created["CreationTime"]
    assert updated["LastModifiedTime"] >= created["CreationTime"]
    assert lam.get_function_url_config(FunctionName=name)["Cors"] == cors

    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [created["FunctionUrl"]]
    assert listed[0]["FunctionArn"] == fn_arn(name)
    assert listed[0]["AuthType"] == "NONE"
    assert listed[0]["Cors"] == cors

    # It serves requests until it is deleted.
    assert http("GET", created["FunctionUrl"]).status_code == 200
    deleted = lam.delete_function_url_config(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=name)
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []
    unknown_url_status(http("GET", created["FunctionUrl"]))
    unknown_url_status(http("GET", path_form(server.endpoint, "lambda-url", url_id, "/")))
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_url_config(FunctionName=name)


def test_a_second_url_for_the_same_function_conflicts(lam):
    name = create_http_function(lam)
    first = make_url(lam, name)
    with pytest.raises(ClientError) as exc:
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    status, code, _ = error_of(exc)
    assert (status, code) == (409, "ResourceConflictException")
    assert lam.get_function_url_config(FunctionName=name)["FunctionUrl"] == first["FunctionUrl"]


def test_every_url_id_is_distinct(server, lam):
    ids = set()
    for _ in range(3):
        name = create_http_function(lam)
        ids.add(url_id_of(server, make_url(lam, name)["FunctionUrl"]))
    assert len(ids) == 3


def test_aws_iam_auth_type_is_refused_with_a_clear_message(lam):
    name = create_http_function(lam)
    with pytest.raises(ClientError) as exc:
        lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    status, code, message = error_of(exc)
    assert status == 400, (status, code, message)
    assert "AWS_IAM" in message, message
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=name)

    # Nor can an existing NONE URL be switched to it.
    make_url(lam, name)
    with pytest.raises(ClientError) as exc:
        lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    status, code, message = error_of(exc)
    assert status == 400, (status, code, message)
    assert "AWS_IAM" in message, message
    assert lam.get_function_url_config(FunctionName=name)["AuthType"] == "NONE"


def test_validation_and_not_found_errors(lam, lam_raw):
    ghost = unique_name("ghost")
    for call in (
        lambda: lam.create_function_url_config(FunctionName=ghost, AuthType="NONE"),
        lambda: lam.get_function_url_config(FunctionName=ghost),
        lambda: lam.delete_function_url_config(FunctionName=ghost),
        lambda: lam.list_function_url_configs(FunctionName=ghost),
    ):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
            call()
        assert error_of(exc)[0] == 404

    name = create_http_function(lam)
    # No URL yet.
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_function_url_config(FunctionName=name, AuthType="NONE")
    # An auth type that does not exist.
    with pytest.raises(ClientError) as exc:
        lam_raw.create_function_url_config(FunctionName=name, AuthType="BASIC")
    status, code, _ = error_of(exc)
    assert (status, code) == (400, "ValidationException")
    # The qualifier is an alias name: not $LATEST, not a version number.
    lam.publish_version(FunctionName=name)
    for qualifier in ("$LATEST", "1"):
        with pytest.raises(ClientError) as exc:
            lam.create_function_url_config(FunctionName=name, Qualifier=qualifier, AuthType="NONE")
        status, code, message = error_of(exc)
        assert status == 400, (qualifier, status, code, message)
    # An alias that does not exist.
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_function_url_config(FunctionName=name, Qualifier="nosuchalias", AuthType="NONE")
    # None of those created anything.
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []


def test_qualifier_is_an_alias_and_its_url_runs_the_alias_version(server, lam):
    name = create_http_function(lam, version="one")
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ZipFile=http_zip("two"))
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    aliased = make_url(lam, name, Qualifier="live")
    assert aliased["FunctionArn"] == fn_arn(name, "live")
    plain = make_url(lam, name)
    assert plain["FunctionArn"] == fn_arn(name)
    assert url_id_of(server, aliased["FunctionUrl"]) != url_id_of(server, plain["FunctionUrl"])

    assert lam.get_function_url_config(FunctionName=name, Qualifier="live")["FunctionUrl"] == aliased["FunctionUrl"]
    assert lam.get_function_url_config(FunctionName=name)["FunctionUrl"] == plain["FunctionUrl"]
    listed = {c["FunctionUrl"]: c["FunctionArn"] for c in lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]}
    assert listed == {aliased["FunctionUrl"]: fn_arn(name, "live"), plain["FunctionUrl"]: fn_arn(name)}

    _, ctx = echoed(http("GET", aliased["FunctionUrl"]))
    assert ctx["function_version"] == "1"
    assert ctx["package_version"] == "one"
    assert ctx["invoked_function_arn"] == fn_arn(name, "live")
    _, ctx = echoed(http("GET", plain["FunctionUrl"]))
    assert ctx["function_version"] == "$LATEST"
    assert ctx["package_version"] == "two"

    # Moving the alias moves its URL.
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    _, ctx = echoed(http("GET", aliased["FunctionUrl"]))
    assert (ctx["function_version"], ctx["package_version"]) == ("2", "two")

    # Deleting the alias's URL leaves the other.
    lam.delete_function_url_config(FunctionName=name, Qualifier="live")
    unknown_url_status(http("GET", aliased["FunctionUrl"]))
    assert http("GET", plain["FunctionUrl"]).status_code == 200


def test_deleting_an_alias_removes_its_url(lam):
    name = create_http_function(lam)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="beta", FunctionVersion="1")
    url = make_url(lam, name, Qualifier="beta")["FunctionUrl"]
    _, ctx = echoed(http("GET", url))
    assert ctx["invoked_function_arn"] == fn_arn(name, "beta")
    lam.delete_alias(FunctionName=name, Name="beta")
    unknown_url_status(http("GET", url))
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []
    # A new alias of the same name starts without a URL.
    lam.create_alias(FunctionName=name, Name="beta", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=name, Qualifier="beta")


def test_aws_cli_manages_a_function_url(server, lam):
    ep = server.endpoint
    name = create_http_function(lam)
    cors = {"AllowOrigins": ["https://cli.example.com"], "AllowMethods": ["GET"]}
    created = json.loads(
        run_aws(
            ep, "lambda", "create-function-url-config",
            "--function-name", name,
            "--auth-type", "NONE",
            "--cors", json.dumps(cors),
        ).stdout
    )
    url_id_of(server, created["FunctionUrl"])
    assert created["FunctionArn"] == fn_arn(name)
    assert created["AuthType"] == "NONE"
    assert created["Cors"]["AllowOrigins"] == ["https://cli.example.com"]

    got = json.loads(run_aws(ep, "lambda", "get-function-url-config", "--function-name", name).stdout)
    assert got["FunctionUrl"] == created["FunctionUrl"]
    listed = json.loads(run_aws(ep, "lambda", "list-function-url-configs", "--function-name", name).stdout)
    assert [c["FunctionUrl"] for c in listed["FunctionUrlConfigs"]] == [created["FunctionUrl"]]

    event, _ = echoed(http("GET", created["FunctionUrl"] + "cli/path?via=cli"))
    assert event["rawPath"] == "/cli/path"
    assert event["queryStringParameters"] == {"via": "cli"}

    run_aws(ep, "lambda", "delete-function-url-config", "--function-name", name)
    proc = run_aws(ep, "lambda", "get-function-url-config", "--function-name", name, check=False)
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr, proc.stderr


def test_deleting_the_function_removes_its_url(server, lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    assert http("GET", url).status_code == 200
    lam.delete_function(FunctionName=name)
    unknown_url_status(http("GET", url))
    # A new function of the same name does not inherit the old URL.
    create_http_function(lam, name=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=name)
    unknown_url_status(http("GET", url))


def test_url_survives_a_restart(start_server):
    srv = start_server()
    lam = srv.lambda_client()
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    url_id = url_id_of(srv, url)
    assert http("GET", url).status_code == 200

    srv.restart()
    lam = srv.lambda_client()
    after = lam.get_function_url_config(FunctionName=name)["FunctionUrl"]
    # Same id; the port is the new server's.
    assert url_id_of(srv, after) == url_id
    event, _ = echoed(http("GET", after + "again"))
    assert event["rawPath"] == "/again"
    event, _ = echoed(http("GET", path_form(srv.endpoint, "lambda-url", url_id, "/again")))
    assert event["rawPath"] == "/again"


# ---------------------------------------------------------------------------------------------
# Requests: payload format 2.0
# ---------------------------------------------------------------------------------------------


def test_host_based_request_gets_a_payload_format_2_event(server, lam, scratch):
    name = create_http_function(lam, scratch)
    url = make_url(lam, name)["FunctionUrl"]
    url_id = url_id_of(server, url)
    body = json.dumps({"hello": "world", "n": 1})
    before = int(time.time() * 1000)
    resp = http(
        "POST",
        url + "some/path/here?b=2&a=1&a=3&q=hello%20world",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Custom-Header": "Value-Kept",
            "User-Agent": UA,
            "Cookie": "c1=v1; c2=v2",
        },
    )
    after = int(time.time() * 1000)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Echo"] == "yes"
    event, ctx = echoed(resp)

    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path/here"
    assert event["rawQueryString"] == "b=2&a=1&a=3&q=hello%20world"
    assert event["queryStringParameters"] == {"a": "1,3", "b": "2", "q": "hello world"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    headers = event["headers"]
    assert all(k == k.lower() for k in headers), list(headers)
    assert "cookie" not in headers, "cookies go to `cookies`, not `headers`"
    assert headers["x-custom-header"] == "Value-Kept"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == UA
    assert event["body"] == body
    assert event["isBase64Encoded"] is False
    assert not event.get("pathParameters")
    assert not event.get("stageVariables")

    rc = event["requestContext"]
    assert rc["accountId"] == ACCOUNT
    assert rc["apiId"] == url_id
    assert rc["domainName"] == host_of(url)
    assert rc["domainPrefix"] == url_id
    assert rc["http"] == {
        "method": "POST",
        "path": "/some/path/here",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": UA,
    }
    assert rc["routeKey"] == "$default"
    assert rc["stage"] == "$default"
    assert rc["requestId"] == ctx["aws_request_id"], "requestId is the invocation's request id"
    assert V2_TIME_RE.match(rc["time"]), rc["time"]
    assert isinstance(rc["timeEpoch"], int)
    # The request's own time, in milliseconds (a sanity bound, not a speed check).
    assert before - 60_000 <= rc["timeEpoch"] <= after + 60_000, (before, rc["timeEpoch"], after)

    # The x-forwarded-* headers AWS's front end adds.
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == server.endpoint.rsplit(":", 1)[1]

    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == fn_arn(name)
    # The response names the invocation too.
    assert resp.headers.get("x-amzn-RequestId") == ctx["aws_request_id"]
    # The function ran once, under that request id.
    (seen,) = wait_reports(scratch, "inv-", 1)
    assert seen["context"]["aws_request_id"] == ctx["aws_request_id"]


def test_get_without_query_body_or_cookies(server, lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    event, _ = echoed(http("GET", url))
    assert event["rawPath"] == "/"
    assert event["rawQueryString"] == ""
    assert event["requestContext"]["http"]["method"] == "GET"
    assert not event.get("queryStringParameters"), "absent without a query"
    assert not event.get("cookies"), "absent without cookies"
    assert not event.get("body"), "absent without a body"
    assert event["isBase64Encoded"] is False


def test_path_based_form_reaches_the_same_url(server, lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    url_id = url_id_of(server, url)

    resp = http("PUT", path_form(server.endpoint, "lambda-url", url_id, "/items/7?x=1&x=2"),
                data="plain text", headers={"Content-Type": "text/plain", "Cookie": "k=v"})
    event, _ = echoed(resp)
    assert event["rawPath"] == "/items/7", "the /_aws/lambda-url/<id> prefix is not part of the path"
    assert event["requestContext"]["http"]["path"] == "/items/7"
    assert event["requestContext"]["http"]["method"] == "PUT"
    assert event["rawQueryString"] == "x=1&x=2"
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["cookies"] == ["k=v"]
    assert event["body"] == "plain text"
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["apiId"] == url_id
    assert event["requestContext"]["domainPrefix"] == url_id

    # The root, with and without the trailing slash.
    for suffix in ("", "/"):
        event, _ = echoed(http("GET", path_form(server.endpoint, "lambda-url", url_id, suffix)))
        assert event["rawPath"] == "/", suffix

    # Upper-case letters in the id name the same URL (host names are case-insensitive).
    upper = url.replace(url_id, url_id.upper())
    assert http("GET", upper).status_code == 200


# Paths and methods the AWS APIs on the same address also serve (or refuse).
AWS_LOOKING = [
    ("GET", "/"),
    ("PUT", "/"),
    ("POST", "/"),
    ("GET", "/2015-03-31/functions/x/invocations"),
    ("POST", "/2015-03-31/functions"),
    ("DELETE", "/2015-03-31/functions"),
    ("GET", "/2021-10-31/functions/x/url"),
]


def test_aws_api_paths_and_headers_reach_the_function_untouched(lam):
    """A Function URL serves every path and method: nothing of the AWS APIs that share the
    address may answer for it or add to its response (such as an `Allow` header)."""
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    for method, path in AWS_LOOKING:
        resp = http(method, url + path.lstrip("/"), data="{}",
                    headers={"Content-Type": "application/json", "X-Amz-Target": "AWSEvents.ListRules"})
        event, _ = echoed(resp)
        assert (event["requestContext"]["http"]["method"], event["rawPath"]) == (method, path)
        assert event["headers"]["x-amz-target"] == "AWSEvents.ListRules"
        assert "Allow" not in resp.headers, (method, path, dict(resp.headers))


def test_curl_reaches_the_returned_url(server, lam, tmp_path):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    res = curl(
        url + "curl/path?tag=a&tag=b",
        "-X", "POST",
        "-H", "Content-Type: application/json",
        "-H", "X-Multi: one",
        "-H", "X-Multi: two",
        "-A", "curl-e2e",
        "--cookie", "sid=42; lang=en",
        "--data-binary", '{"from": "curl"}',
        tmp=tmp_path,
    )
    assert res.status == 200, res.body[:1000]
    event = res.json()["event"]
    assert event["rawPath"] == "/curl/path"
    assert event["queryStringParameters"] == {"tag": "a,b"}
    assert event["headers"]["x-multi"] == "one,two", "repeated headers are comma-joined"
    assert event["cookies"] == ["sid=42", "lang=en"]
    assert event["requestContext"]["http"]["userAgent"] == "curl-e2e"
    assert json.loads(event["body"]) == {"from": "curl"}

    # A custom answer through curl: status, headers and one Set-Cookie line per cookie.
    res = curl(url + "?mode=custom&status=202", tmp=tmp_path)
    assert res.status == 202
    assert res.header("x-custom") == ["custom-value"]
    assert sorted(res.header("set-cookie")) == ["session=abc123; Path=/; HttpOnly", "theme=dark; Max-Age=3600"]
    assert res.body == b"custom body"


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------


def test_custom_status_headers_and_cookies(server, lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    for status in (201, 404, 418):
        resp = http("GET", url + f"?mode=custom&status={status}")
        assert resp.status_code == status, (status, resp.text)
        assert resp.headers["X-Custom"] == "custom-value"
        assert resp.headers["Content-Type"] == "text/plain"
        assert resp.text == "custom body"
        assert sorted(header_values(resp, "set-cookie")) == [
            "session=abc123; Path=/; HttpOnly",
            "theme=dark; Max-Age=3600",
        ], "each cookie is its own Set-Cookie header"
        assert resp.cookies.get("session") == "abc123"
        assert resp.cookies.get("theme") == "dark"
    # The mode can come from the path too.
    resp = http("GET", path_form(server.endpoint, "lambda-url", url_id_of(server, url), "/x/custom"))
    assert resp.status_code == 201


def test_bare_string_and_bare_object_are_sent_as_200_json(lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    resp = http("GET", url + "?mode=string")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == "hello from a bare string"
    resp = http("GET", url + "object")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {"bare": True, "mode": "object", "numbers": [1, 2, 3]}


def test_binary_body_round_trip(server, lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    for target in (url + "?mode=binary",
                   path_form(server.endpoint, "lambda-url", url_id_of(server, url), "/upload/binary")):
        data = os.urandom(64 * 1024) + b"\x00\xff\xfe" + bytes(range(256))
        resp = http("POST", target, data=data, headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 200, resp.text[:500]
        assert resp.headers["X-Received-Base64"] == "true", "a binary body reaches the function base64-encoded"
        assert resp.headers["X-Received-Length"] == str(len(data))
        assert resp.headers["X-Received-Sha256"] == hashlib.sha256(data).hexdigest()
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.content == data, "isBase64Encoded responses are decoded to the same bytes"


def test_function_error_gives_502(server, lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    resp = http("GET", url + "?mode=error")
    assert resp.status_code == 502, (resp.status_code, resp.text[:500])
    resp = http("POST", path_form(server.endpoint, "lambda-url", url_id_of(server, url), "/boom/error"), data="x")
    assert resp.status_code == 502, (resp.status_code, resp.text[:500])
    # The environment lives on: the next request succeeds.
    assert http("GET", url).status_code == 200


def test_malformed_function_response_gives_502(lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    resp = http("GET", url + "?mode=malformed")
    assert resp.status_code == 502, (resp.status_code, resp.text[:500])


def test_request_body_over_the_invoke_limit_is_413_and_not_invoked(lam, scratch):
    name = create_http_function(lam, scratch)
    url = make_url(lam, name)["FunctionUrl"]
    big = b"x" * (6 * 1024 * 1024 + 1024)
    resp = http("POST", url, data=big, headers={"Content-Type": "text/plain"})
    assert resp.status_code == 413, (resp.status_code, resp.text[:500])
    # A body that fits still works, and was the only invocation.
    event, _ = echoed(http("POST", url, data="small", headers={"Content-Type": "text/plain"}))
    assert event["body"] == "small"
    wait_reports(scratch, "inv-", 1)
    time.sleep(0.5)
    assert len(invocations(scratch)) == 1


def test_throttled_function_gives_429(lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    resp = http("GET", url)
    assert resp.status_code == 429, (resp.status_code, resp.text[:500])
    lam.delete_function_concurrency(FunctionName=name)
    assert http("GET", url).status_code == 200


def test_unknown_url_id_is_refused(server):
    port = server.endpoint.rsplit(":", 1)[1]
    ghost = uuid.uuid4().hex  # 32 lowercase hex characters, like a real id
    unknown_url_status(http("GET", f"http://{ghost}.lambda-url.{REGION}.localhost:{port}/"))
    unknown_url_status(http("POST", path_form(server.endpoint, "lambda-url", ghost, "/x"), data="{}"))
    # The AWS APIs on the same address are untouched.
    resp = http("GET", f"{server.endpoint}/_aws/lambda-url/")
    assert resp.status_code != 200


# ---------------------------------------------------------------------------------------------
# CORS
# ---------------------------------------------------------------------------------------------

CORS = {
    "AllowOrigins": ["https://app.example.com"],
    "AllowMethods": ["GET", "POST"],
    "AllowHeaders": ["x-custom-header"],
    "ExposeHeaders": ["x-echo"],
    "MaxAge": 600,
    "AllowCredentials": True,
}


def preflight(url: str, origin: str, method: str = "POST", headers: str | None = "x-custom-header"):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return http("OPTIONS", url, headers=h)


def test_cors_preflight_is_answered_without_invoking_the_function(server, lam, scratch):
    name = create_http_function(lam, scratch)
    url = make_url(lam, name, Cors=CORS)["FunctionUrl"]
    origin = "https://app.example.com"

    resp = preflight(url + "any/path", origin)
    assert 200 <= resp.status_code < 300, (resp.status_code, resp.text)
    assert resp.headers.get("Access-Control-Allow-Origin") == origin
    assert "post" in token_set(resp.headers.get("Access-Control-Allow-Methods"))
    assert "x-custom-header" in token_set(resp.headers.get("Access-Control-Allow-Headers"))
    assert resp.headers.get("Access-Control-Max-Age") == "600"
    assert resp.headers.get("Access-Control-Allow-Credentials") == "true"
    # The path-based form too.
    resp = preflight(path_form(server.endpoint, "lambda-url", url_id_of(server, url), "/p"), origin)
    assert resp.headers.get("Access-Control-Allow-Origin") == origin

    # A normal request carries the CORS headers of the response...
    resp = http("GET", url, headers={"Origin": origin})
    assert resp.status_code == 200
    assert resp.headers.get("Access-Control-Allow-Origin") == origin
    assert "x-echo" in token_set(resp.headers.get("Access-Control-Expose-Headers"))
    assert resp.headers.get("Access-Control-Allow-Credentials") == "true"
    # ...and it, unlike the preflights, ran the function: exactly one invocation in all.
    wait_reports(scratch, "inv-", 1)
    time.sleep(1)
    runs = invocations(scratch)
    assert len(runs) == 1, [r["event"]["requestContext"]["http"]["method"] for r in runs]
    assert runs[0]["event"]["requestContext"]["http"]["method"] == "GET"

    # An origin the policy does not allow gets no CORS headers.
    other = "https://evil.example.net"
    resp = preflight(url, other)
    assert "Access-Control-Allow-Origin" not in resp.headers, dict(resp.headers)
    resp = http("GET", url, headers={"Origin": other})
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers, dict(resp.headers)


def test_cors_wildcard_origin_and_cors_set_by_update(lam):
    name = create_http_function(lam)
    url = make_url(lam, name)["FunctionUrl"]
    # No CORS configuration: no CORS headers.
    resp = http("GET", url, headers={"Origin": "https://site.example.org"})
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers

    lam.update_function_url_config(FunctionName=name, Cors={"AllowOrigins": ["*"], "AllowMethods": ["*"]})
    resp = http("GET", url, headers={"Origin": "https://site.example.org"})
    assert resp.status_code == 200
    assert resp.headers.get("Access-Control-Allow-Origin") in ("*", "https://site.example.org")
    resp = preflight(url, "https://other.example.org", method="DELETE", headers=None)
    assert 200 <= resp.status_code < 300
    assert resp.headers.get("Access-Control-Allow-Origin") in ("*", "https://other.example.org")
    methods = token_set(resp.headers.get("Access-Control-Allow-Methods"))
    assert "delete" in methods or "*" in methods, methods
