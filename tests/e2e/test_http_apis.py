"""API Gateway v2 HTTP APIs as AWS documents them: the `apigatewayv2` API (boto3 and the AWS
CLI) for APIs (with quick create), AWS_PROXY integrations, routes and stages, and HTTP requests
through `http://<api-id>.execute-api.localhost:<port>/` and the path-based form
(`/_aws/execute-api/<api-id>/...`): route precedence, path parameters, payload formats 1.0 and
2.0, named stages under their prefix, binary bodies, cookies, CORS, errors.

The function is tests/functions/python-http (`app.handler`); it reports every invocation to the
test's collector as `inv-<request id>`."""

import datetime
import hashlib
import json
import os
import re
import time

import pytest
from botocore.exceptions import ClientError

from http_triggers import (
    V2_TIME_RE,
    apigw_client,
    create_http_function,
    curl,
    echoed,
    error_of,
    fn_arn,
    header_values,
    host_of,
    http,
    invocations,
    path_form,
    token_set,
    wait_reports,
)
from serval_e2e import ACCOUNT, REGION, run_aws, unique_name

API_ID_RE = re.compile(r"^[a-z0-9]{10}$")
UA = "serval-e2e-http-apis/1.0"


@pytest.fixture(scope="module")
def apigw(server):
    return apigw_client(server.endpoint)


@pytest.fixture(scope="module")
def apigw_raw(server):
    """Without client-side validation, so the server's own validation answers."""
    return apigw_client(server.endpoint, validate=False)


def endpoint_pattern(srv) -> re.Pattern:
    port = srv.endpoint.rsplit(":", 1)[1]
    return re.compile(rf"^http://([a-z0-9]{{10}})\.execute-api\.localhost:{port}$")


def assert_endpoint(srv, api: dict) -> str:
    m = endpoint_pattern(srv).match(api["ApiEndpoint"])
    assert m, f"ApiEndpoint {api['ApiEndpoint']!r} is not http://<api-id>.execute-api.localhost:<port>"
    assert m.group(1) == api["ApiId"]
    return api["ApiEndpoint"]


def integration(apigw, api_id: str, uri: str, payload: str = "2.0", **kwargs) -> str:
    resp = apigw.create_integration(
        ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=uri, PayloadFormatVersion=payload, **kwargs
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201, resp
    assert resp["IntegrationType"] == "AWS_PROXY"
    assert resp["PayloadFormatVersion"] == payload
    assert resp["IntegrationUri"] == uri
    return resp["IntegrationId"]


def route(apigw, api_id: str, key: str, integration_id: str) -> str:
    resp = apigw.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integration_id}")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201, resp
    assert resp["RouteKey"] == key
    assert resp["Target"] == f"integrations/{integration_id}"
    return resp["RouteId"]


def stage(apigw, api_id: str, name: str = "$default", **kwargs) -> dict:
    resp = apigw.create_stage(ApiId=api_id, StageName=name, AutoDeploy=True, **kwargs)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201, resp
    assert resp["StageName"] == name
    assert resp["AutoDeploy"] is True
    return resp


def make_api(apigw, name: str, routes: list[str], payload: str = "2.0", stages=("$default",), **kwargs) -> dict:
    """An HTTP API whose `routes` all go to function `name` through one integration."""
    api = apigw.create_api(Name=unique_name("api"), ProtocolType="HTTP", **kwargs)
    assert api["ResponseMetadata"]["HTTPStatusCode"] == 201, api
    iid = integration(apigw, api["ApiId"], fn_arn(name), payload)
    for key in routes:
        route(apigw, api["ApiId"], key, iid)
    for s in stages:
        stage(apigw, api["ApiId"], s)
    api["IntegrationId"] = iid
    return api


def not_found(resp) -> None:
    assert resp.status_code == 404, (resp.status_code, resp.text[:500])
    assert resp.json() == {"message": "Not Found"}


def unknown_api_status(resp) -> None:
    assert resp.status_code in (403, 404), (resp.status_code, resp.text[:500])


# ---------------------------------------------------------------------------------------------
# The configuration API
# ---------------------------------------------------------------------------------------------


def test_create_get_list_delete_api(server, apigw):
    name = unique_name("api")
    api = apigw.create_api(Name=name, ProtocolType="HTTP", Description="first api")
    assert api["ResponseMetadata"]["HTTPStatusCode"] == 201
    api_id = api["ApiId"]
    assert API_ID_RE.match(api_id), api_id
    endpoint = assert_endpoint(server, api)
    assert api["Name"] == name
    assert api["ProtocolType"] == "HTTP"
    assert api["Description"] == "first api"
    assert api["RouteSelectionExpression"] == "$request.method $request.path"
    assert isinstance(api["CreatedDate"], datetime.datetime)

    got = apigw.get_api(ApiId=api_id)
    for key in ("ApiId", "ApiEndpoint", "Name", "ProtocolType", "Description", "RouteSelectionExpression", "CreatedDate"):
        assert got[key] == api[key], key
    items = apigw.get_apis()["Items"]
    assert api_id in {a["ApiId"] for a in items}
    assert next(a for a in items if a["ApiId"] == api_id)["Name"] == name

    # An API without routes or stages answers Not Found.
    not_found(http("GET", endpoint + "/anything"))

    deleted = apigw.delete_api(ApiId=api_id)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(apigw.exceptions.NotFoundException) as exc:
        apigw.get_api(ApiId=api_id)
    assert error_of(exc)[0] == 404
    assert api_id not in {a["ApiId"] for a in apigw.get_apis()["Items"]}
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.delete_api(ApiId=api_id)
    unknown_api_status(http("GET", endpoint + "/anything"))


def test_api_validation_errors(apigw, apigw_raw, lam):
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_api(ApiId="nosuchapi0")
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.create_route(ApiId="nosuchapi0", RouteKey="GET /x")
    # WebSocket APIs are not served.
    with pytest.raises(ClientError) as exc:
        apigw.create_api(Name=unique_name("ws"), ProtocolType="WEBSOCKET",
                         RouteSelectionExpression="$request.body.action")
    status, code, _ = error_of(exc)
    assert status == 400, (status, code)
    # A name is required.
    with pytest.raises(ClientError) as exc:
        apigw_raw.create_api(ProtocolType="HTTP")
    assert error_of(exc)[:2] == (400, "BadRequestException")

    name = create_http_function(lam)
    api = apigw.create_api(Name=unique_name("api"), ProtocolType="HTTP")
    api_id = api["ApiId"]
    with pytest.raises(ClientError) as exc:
        apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=fn_arn(name),
                                 PayloadFormatVersion="3.0")
    assert error_of(exc)[:2] == (400, "BadRequestException")
    iid = integration(apigw, api_id, fn_arn(name))
    for bad in ("GET items", "FETCH /items", "GET", "/items", "GET /items/{id", "GET /{proxy+}/more"):
        with pytest.raises(ClientError) as exc:
            apigw.create_route(ApiId=api_id, RouteKey=bad, Target=f"integrations/{iid}")
        assert error_of(exc)[:2] == (400, "BadRequestException"), bad
    route(apigw, api_id, "GET /items/{id}", iid)
    with pytest.raises(ClientError) as exc:
        apigw.create_route(ApiId=api_id, RouteKey="GET /items/{id}", Target=f"integrations/{iid}")
    assert error_of(exc)[:2] == (409, "ConflictException")
    assert [r["RouteKey"] for r in apigw.get_routes(ApiId=api_id)["Items"]] == ["GET /items/{id}"]
    stage(apigw, api_id, "$default")
    with pytest.raises(ClientError) as exc:
        apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    assert error_of(exc)[:2] == (409, "ConflictException")


def test_routes_are_created_listed_and_deleted(server, apigw, lam):
    name = create_http_function(lam)
    api = make_api(apigw, name, ["GET /items/{id}", "POST /items"])
    api_id, endpoint = api["ApiId"], assert_endpoint(server, api)
    routes = {r["RouteKey"]: r for r in apigw.get_routes(ApiId=api_id)["Items"]}
    assert set(routes) == {"GET /items/{id}", "POST /items"}
    assert routes["POST /items"]["Target"] == f"integrations/{api['IntegrationId']}"

    event, _ = echoed(http("POST", endpoint + "/items", data="{}", headers={"Content-Type": "application/json"}))
    assert event["routeKey"] == "POST /items"
    # A route added to an auto-deployed stage is served at once.
    route(apigw, api_id, "DELETE /items/{id}", api["IntegrationId"])
    event, _ = echoed(http("DELETE", endpoint + "/items/9"))
    assert event["routeKey"] == "DELETE /items/{id}"
    assert event["pathParameters"] == {"id": "9"}

    deleted = apigw.delete_route(ApiId=api_id, RouteId=routes["POST /items"]["RouteId"])
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert {r["RouteKey"] for r in apigw.get_routes(ApiId=api_id)["Items"]} == {"GET /items/{id}", "DELETE /items/{id}"}
    not_found(http("POST", endpoint + "/items", data="{}"))
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.delete_route(ApiId=api_id, RouteId=routes["POST /items"]["RouteId"])
    # The others still answer.
    event, _ = echoed(http("GET", endpoint + "/items/3"))
    assert event["pathParameters"] == {"id": "3"}


def test_quick_create_serves_every_path_through_default_route_and_stage(server, apigw, lam, tmp_path):
    name = create_http_function(lam)
    api = apigw.create_api(Name=unique_name("quick"), ProtocolType="HTTP", Target=fn_arn(name))
    assert api["ResponseMetadata"]["HTTPStatusCode"] == 201
    api_id = api["ApiId"]
    endpoint = assert_endpoint(server, api)
    routes = apigw.get_routes(ApiId=api_id)["Items"]
    assert [r["RouteKey"] for r in routes] == ["$default"]
    assert routes[0]["Target"].startswith("integrations/")
    # What quick create made: an AWS_PROXY integration (format 2.0) and an auto-deployed
    # $default stage.
    (integ,) = apigw.get_integrations(ApiId=api_id)["Items"]
    assert routes[0]["Target"] == f"integrations/{integ['IntegrationId']}"
    assert (integ["IntegrationType"], integ["IntegrationUri"], integ["PayloadFormatVersion"]) == \
        ("AWS_PROXY", fn_arn(name), "2.0")
    (st,) = apigw.get_stages(ApiId=api_id)["Items"]
    assert (st["StageName"], st["AutoDeploy"]) == ("$default", True)

    resp = http("POST", endpoint + "/anything/here?x=1&x=2&y=3", data="hello",
                headers={"Content-Type": "text/plain", "User-Agent": UA, "Cookie": "a=1; b=2", "X-Thing": "v"})
    event, ctx = echoed(resp)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/anything/here"
    assert event["rawQueryString"] == "x=1&x=2&y=3"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "3"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-thing"] == "v"
    assert event["body"] == "hello"
    assert event["isBase64Encoded"] is False
    assert not event.get("pathParameters")
    rc = event["requestContext"]
    assert rc["accountId"] == ACCOUNT
    assert rc["apiId"] == api_id
    assert rc["domainName"] == host_of(endpoint)
    assert rc["domainPrefix"] == api_id
    assert rc["http"] == {"method": "POST", "path": "/anything/here", "protocol": "HTTP/1.1",
                          "sourceIp": "127.0.0.1", "userAgent": UA}
    assert rc["routeKey"] == "$default"
    assert rc["stage"] == "$default"
    assert rc["requestId"]
    assert resp.headers.get("apigw-requestid") == rc["requestId"], "API Gateway names its request id"
    assert V2_TIME_RE.match(rc["time"]), rc["time"]
    assert isinstance(rc["timeEpoch"], int)
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert ctx["invoked_function_arn"] == fn_arn(name)

    # The root, the path-based form and curl reach it as well.
    event, _ = echoed(http("GET", endpoint + "/"))
    assert event["rawPath"] == "/"
    event, _ = echoed(http("GET", path_form(server.endpoint, "execute-api", api_id, "/via/path?k=v")))
    assert event["rawPath"] == "/via/path"
    assert event["queryStringParameters"] == {"k": "v"}
    assert event["requestContext"]["apiId"] == api_id
    res = curl(endpoint + "/from/curl?q=1", "-H", "X-Multi: a", "-H", "X-Multi: b", tmp=tmp_path)
    assert res.status == 200
    event = res.json()["event"]
    assert event["rawPath"] == "/from/curl"
    assert event["headers"]["x-multi"] == "a,b"


def test_aws_api_paths_and_headers_reach_the_function_untouched(apigw, lam):
    """An HTTP API serves every path and method its routes take: nothing of the AWS APIs that
    share the address may answer for it or add to its response (such as an `Allow` header)."""
    name = create_http_function(lam)
    api = apigw.create_api(Name=unique_name("aws-paths"), ProtocolType="HTTP", Target=fn_arn(name))
    for method, path in [("GET", "/"), ("PUT", "/"), ("GET", "/2015-03-31/functions/x/invocations"),
                         ("DELETE", "/2015-03-31/functions"), ("GET", "/v2/apis")]:
        resp = http(method, api["ApiEndpoint"] + path, data="{}",
                    headers={"Content-Type": "application/json", "X-Amz-Target": "AWSEvents.ListRules"})
        event, _ = echoed(resp)
        assert (event["requestContext"]["http"]["method"], event["rawPath"]) == (method, path)
        assert "Allow" not in resp.headers, (method, path, dict(resp.headers))


def test_aws_cli_lists_and_reads_apis(server, apigw, lam):
    ep = server.endpoint
    name = create_http_function(lam)
    api_name = unique_name("cli-api")
    created = json.loads(run_aws(ep, "apigatewayv2", "create-api", "--name", api_name,
                                 "--protocol-type", "HTTP", "--target", fn_arn(name)).stdout)
    api_id = created["ApiId"]
    assert_endpoint(server, created)
    listed = json.loads(run_aws(ep, "apigatewayv2", "get-apis").stdout)
    mine = [a for a in listed["Items"] if a["ApiId"] == api_id]
    assert len(mine) == 1 and mine[0]["Name"] == api_name, listed
    got = json.loads(run_aws(ep, "apigatewayv2", "get-api", "--api-id", api_id).stdout)
    assert got["ApiEndpoint"] == created["ApiEndpoint"]
    routes = json.loads(run_aws(ep, "apigatewayv2", "get-routes", "--api-id", api_id).stdout)
    assert [r["RouteKey"] for r in routes["Items"]] == ["$default"]
    event, _ = echoed(http("GET", created["ApiEndpoint"] + "/cli"))
    assert event["rawPath"] == "/cli"
    run_aws(ep, "apigatewayv2", "delete-api", "--api-id", api_id)
    proc = run_aws(ep, "apigatewayv2", "get-api", "--api-id", api_id, check=False)
    assert proc.returncode != 0 and "NotFoundException" in proc.stderr, proc.stderr


def test_api_survives_a_restart(start_server):
    srv = start_server()
    lam = srv.lambda_client()
    apigw = apigw_client(srv.endpoint)
    name = create_http_function(lam)
    api = make_api(apigw, name, ["GET /items/{id}"], stages=("$default", "prod"))
    api_id = api["ApiId"]
    assert http("GET", api["ApiEndpoint"] + "/items/1").status_code == 200

    srv.restart()
    apigw = apigw_client(srv.endpoint)
    got = apigw.get_api(ApiId=api_id)
    assert_endpoint(srv, got)
    assert [r["RouteKey"] for r in apigw.get_routes(ApiId=api_id)["Items"]] == ["GET /items/{id}"]
    event, _ = echoed(http("GET", got["ApiEndpoint"] + "/items/2"))
    assert event["pathParameters"] == {"id": "2"}
    event, _ = echoed(http("GET", path_form(srv.endpoint, "execute-api", api_id, "/prod/items/3")))
    assert (event["requestContext"]["stage"], event["pathParameters"]) == ("prod", {"id": "3"})


def test_integrations_and_stages_are_listed_read_and_deleted(server, apigw, lam):
    name = create_http_function(lam)
    api = make_api(apigw, name, ["GET /a"], stages=("$default", "dev"))
    api_id, endpoint, iid = api["ApiId"], api["ApiEndpoint"], api["IntegrationId"]
    got = apigw.get_integration(ApiId=api_id, IntegrationId=iid)
    assert (got["IntegrationType"], got["IntegrationUri"], got["PayloadFormatVersion"]) == \
        ("AWS_PROXY", fn_arn(name), "2.0")
    assert [i["IntegrationId"] for i in apigw.get_integrations(ApiId=api_id)["Items"]] == [iid]
    assert sorted(s["StageName"] for s in apigw.get_stages(ApiId=api_id)["Items"]) == ["$default", "dev"]
    assert apigw.get_stage(ApiId=api_id, StageName="dev")["AutoDeploy"] is True
    assert http("GET", endpoint + "/dev/a").status_code == 200

    assert apigw.delete_stage(ApiId=api_id, StageName="dev")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert [s["StageName"] for s in apigw.get_stages(ApiId=api_id)["Items"]] == ["$default"]
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_stage(ApiId=api_id, StageName="dev")
    not_found(http("GET", endpoint + "/dev/a"))
    assert http("GET", endpoint + "/a").status_code == 200

    (r,) = apigw.get_routes(ApiId=api_id)["Items"]
    apigw.delete_route(ApiId=api_id, RouteId=r["RouteId"])
    resp = apigw.delete_integration(ApiId=api_id, IntegrationId=iid)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert apigw.get_integrations(ApiId=api_id)["Items"] == []
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_integration(ApiId=api_id, IntegrationId=iid)
    not_found(http("GET", endpoint + "/a"))


# ---------------------------------------------------------------------------------------------
# Route selection
# ---------------------------------------------------------------------------------------------


def test_route_precedence_and_path_parameters(server, apigw, lam):
    name = create_http_function(lam)
    api = make_api(apigw, name, [
        "GET /items/special",
        "GET /items/{id}",
        "ANY /items/{rest+}",
        "GET /things/{id}",
        "ANY /things/{id}",
        "GET /users/{user}/orders/{order}",
        "ANY /{proxy+}",
        "$default",
    ])
    endpoint = assert_endpoint(server, api)
    cases = [
        # (method, path, expected routeKey, expected pathParameters)
        ("GET", "/items/special", "GET /items/special", None),
        ("GET", "/items/42", "GET /items/{id}", {"id": "42"}),
        ("POST", "/items/42", "ANY /items/{rest+}", {"rest": "42"}),
        ("GET", "/items/42/parts/7", "ANY /items/{rest+}", {"rest": "42/parts/7"}),
        ("GET", "/things/5", "GET /things/{id}", {"id": "5"}),
        ("DELETE", "/things/5", "ANY /things/{id}", {"id": "5"}),
        ("GET", "/users/u1/orders/o2", "GET /users/{user}/orders/{order}", {"user": "u1", "order": "o2"}),
        ("PATCH", "/users/u1/orders/o2", "ANY /{proxy+}", {"proxy": "users/u1/orders/o2"}),
        ("GET", "/other/deep/path", "ANY /{proxy+}", {"proxy": "other/deep/path"}),
        ("GET", "/", "$default", None),
    ]
    for method, path, key, params in cases:
        event, _ = echoed(http(method, endpoint + path))
        assert event["routeKey"] == key, (method, path, event["routeKey"])
        assert event["requestContext"]["routeKey"] == key, (method, path)
        assert (event.get("pathParameters") or None) == params, (method, path, event.get("pathParameters"))
        assert event["rawPath"] == path
        assert event["requestContext"]["http"]["method"] == method


def test_unmatched_request_is_404_and_function_error_is_500(server, apigw, lam, scratch):
    name = create_http_function(lam, scratch)
    api = make_api(apigw, name, ["GET /items/{id}", "POST /fail/{mode}"])
    endpoint = assert_endpoint(server, api)
    not_found(http("GET", endpoint + "/nothing/here"))
    not_found(http("POST", endpoint + "/items/1", data="{}"))
    not_found(http("GET", endpoint + "/items/1/2"))
    not_found(http("GET", path_form(server.endpoint, "execute-api", api["ApiId"], "/nothing")))
    assert invocations(scratch) == [], "a request without a route ran the function"

    resp = http("POST", endpoint + "/fail/error", data="{}")
    assert resp.status_code == 500, (resp.status_code, resp.text[:500])
    assert resp.json() == {"message": "Internal Server Error"}
    resp = http("GET", endpoint + "/items/1?mode=error")
    assert resp.status_code == 500
    assert resp.json() == {"message": "Internal Server Error"}
    # Unknown API ids, both forms.
    port = server.endpoint.rsplit(":", 1)[1]
    unknown_api_status(http("GET", f"http://zz9nosuchz.execute-api.localhost:{port}/items/1"))
    unknown_api_status(http("GET", path_form(server.endpoint, "execute-api", "zz9nosuchz", "/items/1")))


def test_malformed_response_gives_500_and_integration_timeout_503(server, apigw, lam, scratch):
    name = create_http_function(lam, scratch, Timeout=30)
    api = apigw.create_api(Name=unique_name("slow"), ProtocolType="HTTP")
    api_id = api["ApiId"]
    iid = integration(apigw, api_id, fn_arn(name), TimeoutInMillis=1000)
    route(apigw, api_id, "ANY /{proxy+}", iid)
    stage(apigw, api_id)
    endpoint = api["ApiEndpoint"]

    resp = http("GET", endpoint + "/x/malformed")
    assert resp.status_code == 500, (resp.status_code, resp.text[:500])
    assert resp.json() == {"message": "Internal Server Error"}

    # The integration's timeout (1 s) ends the request with 503; the function was invoked.
    resp = http("GET", endpoint + "/slow/sleep?seconds=4")
    assert resp.status_code == 503, (resp.status_code, resp.text[:500])
    assert resp.json() == {"message": "Service Unavailable"}
    wait_reports(scratch, "inv-", 1, where=lambda r: r["mode"] == "sleep")


def test_disabled_execute_api_endpoint_is_forbidden(server, apigw, lam):
    name = create_http_function(lam)
    api = apigw.create_api(Name=unique_name("off"), ProtocolType="HTTP", Target=fn_arn(name),
                           DisableExecuteApiEndpoint=True)
    assert api.get("DisableExecuteApiEndpoint") is True
    resp = http("GET", api["ApiEndpoint"] + "/anything")
    assert resp.status_code == 403, (resp.status_code, resp.text[:500])
    resp = http("GET", path_form(server.endpoint, "execute-api", api["ApiId"], "/anything"))
    assert resp.status_code == 403, (resp.status_code, resp.text[:500])


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


def test_named_stage_is_served_under_its_prefix(server, apigw, lam):
    name = create_http_function(lam)
    api = make_api(apigw, name, ["GET /items/{id}"], stages=())
    api_id, endpoint = api["ApiId"], assert_endpoint(server, api)
    stage(apigw, api_id, "dev", StageVariables={"color": "blue", "tier": "dev"})

    event, _ = echoed(http("GET", endpoint + "/dev/items/42?v=1"))
    assert event["requestContext"]["stage"] == "dev"
    assert event["stageVariables"] == {"color": "blue", "tier": "dev"}
    assert event["routeKey"] == "GET /items/{id}"
    assert event["pathParameters"] == {"id": "42"}
    assert event["rawPath"] == "/dev/items/42", "AWS keeps a named stage's prefix in rawPath"
    assert event["rawQueryString"] == "v=1"
    event, _ = echoed(http("GET", path_form(server.endpoint, "execute-api", api_id, "/dev/items/43")))
    assert (event["requestContext"]["stage"], event["pathParameters"]) == ("dev", {"id": "43"})

    # Without a $default stage nothing is served at the root.
    not_found(http("GET", endpoint + "/items/42"))
    not_found(http("GET", endpoint + "/prod/items/42"))
    # Adding $default serves the root as well; the named stage keeps its prefix.
    stage(apigw, api_id, "$default")
    event, _ = echoed(http("GET", endpoint + "/items/44"))
    assert event["requestContext"]["stage"] == "$default"
    assert not event.get("stageVariables"), "$default has no stage variables"
    assert event["rawPath"] == "/items/44"
    assert event["pathParameters"] == {"id": "44"}
    event, _ = echoed(http("GET", endpoint + "/dev/items/45"))
    assert event["requestContext"]["stage"] == "dev"


# ---------------------------------------------------------------------------------------------
# Payload format 1.0
# ---------------------------------------------------------------------------------------------


def test_payload_format_1_event_and_response(server, apigw, lam):
    name = create_http_function(lam)
    # The invocation URI form that CloudFormation, CDK and Terraform write.
    uri = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{fn_arn(name)}/invocations"
    api = apigw.create_api(Name=unique_name("v1"), ProtocolType="HTTP")
    api_id = api["ApiId"]
    iid = integration(apigw, api_id, uri, "1.0")
    route(apigw, api_id, "GET /items/{id}", iid)
    route(apigw, api_id, "POST /items/{id}", iid)
    stage(apigw, api_id)
    endpoint = api["ApiEndpoint"]

    resp = http("GET", endpoint + "/items/42?a=1&a=2&b=3",
                headers={"X-Custom": "v1-header", "User-Agent": UA})
    event, ctx = echoed(resp)
    assert event["version"] == "1.0"
    assert event["resource"] == "/items/{id}"
    assert event["path"] == "/items/42"
    assert event["httpMethod"] == "GET"
    headers = {k.lower(): v for k, v in event["headers"].items()}
    assert headers["x-custom"] == "v1-header"
    multi = {k.lower(): v for k, v in event["multiValueHeaders"].items()}
    assert multi["x-custom"] == ["v1-header"]
    assert event["queryStringParameters"]["b"] == "3"
    assert event["queryStringParameters"]["a"] in ("1", "2")
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["3"]}
    assert event["pathParameters"] == {"id": "42"}
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    rc = event["requestContext"]
    assert rc["accountId"] == ACCOUNT
    assert rc["apiId"] == api_id
    assert rc["httpMethod"] == "GET"
    assert rc["path"] == "/items/42"
    assert rc["resourcePath"] == "/items/{id}"
    assert rc["stage"] == "$default"
    assert rc["identity"]["sourceIp"] == "127.0.0.1"
    assert rc["identity"]["userAgent"] == UA
    assert rc["requestId"]
    assert isinstance(rc["requestTimeEpoch"], int)
    assert ctx["invoked_function_arn"] == fn_arn(name)

    resp = http("POST", endpoint + "/items/7", data='{"k": 1}', headers={"Content-Type": "application/json"})
    event, _ = echoed(resp)
    assert event["httpMethod"] == "POST"
    assert event["body"] == '{"k": 1}'
    assert event["isBase64Encoded"] is False

    # A format 1.0 response: status, headers and multiValueHeaders.
    resp = http("GET", endpoint + "/items/1?mode=v1custom")
    assert resp.status_code == 202, (resp.status_code, resp.text)
    assert resp.text == "v1 body"
    assert resp.headers["X-Custom"] == "one"
    multi = header_values(resp, "x-multi")
    assert sorted(v.strip() for joined in multi for v in joined.split(",")) == ["first", "second"], multi
    # Errors map as for 2.0.
    resp = http("GET", endpoint + "/items/1?mode=error")
    assert resp.status_code == 500
    assert resp.json() == {"message": "Internal Server Error"}


# ---------------------------------------------------------------------------------------------
# Responses, binary bodies, cookies
# ---------------------------------------------------------------------------------------------


def test_responses_binary_round_trip_and_cookies(server, apigw, lam):
    name = create_http_function(lam)
    api = apigw.create_api(Name=unique_name("bin"), ProtocolType="HTTP", Target=fn_arn(name))
    endpoint = assert_endpoint(server, api)

    for target in (endpoint + "/upload?mode=binary",
                   path_form(server.endpoint, "execute-api", api["ApiId"], "/upload/binary")):
        data = os.urandom(32 * 1024) + bytes(range(256))
        resp = http("PUT", target, data=data, headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 200, resp.text[:500]
        assert resp.headers["X-Received-Base64"] == "true"
        assert resp.headers["X-Received-Sha256"] == hashlib.sha256(data).hexdigest()
        assert resp.content == data

    resp = http("GET", endpoint + "/c?mode=custom&status=201")
    assert resp.status_code == 201
    assert resp.headers["X-Custom"] == "custom-value"
    assert resp.text == "custom body"
    assert sorted(header_values(resp, "set-cookie")) == ["session=abc123; Path=/; HttpOnly", "theme=dark; Max-Age=3600"]

    resp = http("GET", endpoint + "/s/string")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == "hello from a bare string"
    resp = http("GET", endpoint + "/o/object")
    assert resp.status_code == 200
    assert resp.json() == {"bare": True, "mode": "object", "numbers": [1, 2, 3]}


# ---------------------------------------------------------------------------------------------
# CORS
# ---------------------------------------------------------------------------------------------


def test_cors_preflight_and_response_headers(server, apigw, lam, scratch):
    name = create_http_function(lam, scratch)
    origin = "https://web.example.com"
    cors = {
        "AllowOrigins": [origin],
        "AllowMethods": ["GET", "PUT"],
        "AllowHeaders": ["x-api-thing"],
        "ExposeHeaders": ["x-echo"],
        "MaxAge": 120,
        "AllowCredentials": True,
    }
    api = apigw.create_api(Name=unique_name("cors"), ProtocolType="HTTP", Target=fn_arn(name),
                           CorsConfiguration=cors)
    assert api["CorsConfiguration"] == cors
    assert apigw.get_api(ApiId=api["ApiId"])["CorsConfiguration"] == cors
    endpoint = assert_endpoint(server, api)

    resp = http("OPTIONS", endpoint + "/items/1", headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-api-thing"})
    assert 200 <= resp.status_code < 300, (resp.status_code, resp.text)
    assert resp.headers.get("Access-Control-Allow-Origin") == origin
    assert "put" in token_set(resp.headers.get("Access-Control-Allow-Methods"))
    assert "x-api-thing" in token_set(resp.headers.get("Access-Control-Allow-Headers"))
    assert resp.headers.get("Access-Control-Max-Age") == "120"
    assert resp.headers.get("Access-Control-Allow-Credentials") == "true"

    resp = http("GET", endpoint + "/items/1", headers={"Origin": origin})
    assert resp.status_code == 200
    assert resp.headers.get("Access-Control-Allow-Origin") == origin
    assert "x-echo" in token_set(resp.headers.get("Access-Control-Expose-Headers"))
    wait_reports(scratch, "inv-", 1)
    time.sleep(1)
    runs = invocations(scratch)
    assert [r["event"]["requestContext"]["http"]["method"] for r in runs] == ["GET"], \
        "the preflight must be answered without invoking the function"

    resp = http("GET", endpoint + "/items/1", headers={"Origin": "https://elsewhere.example.net"})
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
