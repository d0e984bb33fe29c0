//! API Gateway v2 (HTTP APIs) through the router, on a real store, engine and gateway: routes,
//! status codes, camelCase rendering, quick create, validation, AWS's error shape.

mod common;

use common::*;
use http::{Method, Request};
use serde_json::{json, Value};

const F_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";

/// Asserts an API Gateway v2 error: status, `x-amzn-ErrorType` and a `message` body.
fn assert_apigw_error(r: &Reply, status: u16, name: &str) -> String {
    assert_eq!(
        (r.status.as_u16(), r.error_type()),
        (status, name),
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    let j = r.json();
    j["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {j}"))
        .to_owned()
}

fn ok(r: &Reply, status: u16) -> Value {
    assert_eq!(
        r.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

async fn create_api(h: &Harness, body: Value) -> Value {
    ok(&h.json(Method::POST, "/v2/apis", body).await, 201)
}

async fn plain_api(h: &Harness) -> String {
    let api = create_api(h, json!({"name": "plain", "protocolType": "HTTP"})).await;
    api["apiId"].as_str().unwrap().to_owned()
}

async fn create_integration(h: &Harness, api: &str) -> String {
    let r = h
        .json(
            Method::POST,
            &format!("/v2/apis/{api}/integrations"),
            json!({"integrationType": "AWS_PROXY", "integrationUri": F_ARN, "payloadFormatVersion": "2.0"}),
        )
        .await;
    ok(&r, 201)["integrationId"].as_str().unwrap().to_owned()
}

async fn create_route(h: &Harness, api: &str, key: &str, integration: &str) -> Reply {
    h.json(
        Method::POST,
        &format!("/v2/apis/{api}/routes"),
        json!({"routeKey": key, "target": format!("integrations/{integration}")}),
    )
    .await
}

fn is_iso8601(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == "2026-11-25T10:00:00Z".len() && s.ends_with('Z') && s.as_bytes()[10] == b'T'
}

fn ids(list: &Value, member: &str) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[member].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn creates_gets_lists_updates_and_deletes_an_api() {
    let h = Harness::new().await;
    let api = create_api(
        &h,
        json!({"name": "shop", "protocolType": "HTTP", "description": "d", "version": "1",
               "tags": {"team": "a"}}),
    )
    .await;
    let id = api["apiId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 10);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert_eq!(
        api["apiEndpoint"],
        format!("http://{id}.execute-api.localhost:9000")
    );
    assert_eq!(api["name"], "shop");
    assert_eq!(api["protocolType"], "HTTP");
    assert_eq!(api["description"], "d");
    assert_eq!(api["version"], "1");
    assert_eq!(api["tags"], json!({"team": "a"}));
    assert_eq!(
        api["routeSelectionExpression"],
        "$request.method $request.path"
    );
    assert_eq!(
        api["apiKeySelectionExpression"],
        "$request.header.x-api-key"
    );
    assert_eq!(api["disableExecuteApiEndpoint"], false);
    assert!(is_iso8601(&api["createdDate"]), "{}", api["createdDate"]);
    assert!(api.get("corsConfiguration").is_none());

    let got = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}"), "").await,
        200,
    );
    assert_eq!(got, api);
    let list = ok(&h.call(Method::GET, "/v2/apis", "").await, 200);
    assert_eq!(ids(&list, "apiId"), [id.as_str()]);
    assert!(list.get("nextToken").is_none());

    let updated = ok(
        &h.json(
            Method::PATCH,
            &format!("/v2/apis/{id}"),
            json!({"name": "shop2", "corsConfiguration": {"allowOrigins": ["https://a.example"], "maxAge": 60},
                   "disableExecuteApiEndpoint": true}),
        )
        .await,
        200,
    );
    assert_eq!(updated["name"], "shop2");
    assert_eq!(updated["description"], "d", "absent members are kept");
    assert_eq!(
        updated["corsConfiguration"],
        json!({"allowOrigins": ["https://a.example"], "maxAge": 60})
    );
    assert_eq!(updated["disableExecuteApiEndpoint"], true);
    assert_eq!(updated["createdDate"], api["createdDate"]);
    let got = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}"), "").await,
        200,
    );
    assert_eq!(got, updated);

    // DeleteCorsConfiguration.
    let r = h
        .call(Method::DELETE, &format!("/v2/apis/{id}/cors"), "")
        .await;
    ok(&r, 204);
    let got = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}"), "").await,
        200,
    );
    assert!(got.get("corsConfiguration").is_none(), "{got}");

    let r = h.call(Method::DELETE, &format!("/v2/apis/{id}"), "").await;
    ok(&r, 204);
    assert!(r.body.is_empty());
    let r = h.call(Method::GET, &format!("/v2/apis/{id}"), "").await;
    let msg = assert_apigw_error(&r, 404, "NotFoundException");
    assert_eq!(
        msg,
        format!("Invalid API identifier specified 000000000000:{id}")
    );
    let r = h.call(Method::DELETE, &format!("/v2/apis/{id}"), "").await;
    assert_apigw_error(&r, 404, "NotFoundException");
    let list = ok(&h.call(Method::GET, "/v2/apis", "").await, 200);
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn pages_apis_with_max_results_and_next_token() {
    let h = Harness::new().await;
    let mut all = Vec::new();
    for _ in 0..5 {
        all.push(plain_api(&h).await);
    }
    all.sort();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let uri = match &token {
            Some(t) => format!("/v2/apis?maxResults=2&nextToken={t}"),
            None => "/v2/apis?maxResults=2".to_owned(),
        };
        let page = ok(&h.call(Method::GET, &uri, "").await, 200);
        let items = ids(&page, "apiId");
        assert!(items.len() <= 2);
        seen.extend(items);
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, all);
    let r = h.call(Method::GET, "/v2/apis?maxResults=0", "").await;
    assert_apigw_error(&r, 400, "BadRequestException");
}

#[tokio::test]
async fn refuses_bad_api_input() {
    let h = Harness::new().await;
    for (body, needle) in [
        (
            json!({"name": "ws", "protocolType": "WEBSOCKET", "routeSelectionExpression": "$request.body.action"}),
            "WebSocket",
        ),
        (json!({"protocolType": "HTTP"}), "name"),
        (json!({"name": "x"}), "protocolType"),
        (json!({"name": "", "protocolType": "HTTP"}), "name"),
        (
            json!({"name": "x", "protocolType": "HTTP", "nmae": "typo"}),
            "unknown field",
        ),
        (
            json!({"name": "x", "protocolType": "HTTP", "target": "https://example.com"}),
            "HTTP_PROXY",
        ),
        (
            json!({"name": "x", "protocolType": "HTTP", "routeKey": "GET /x"}),
            "target",
        ),
        (
            json!({"name": "x", "protocolType": "HTTP", "target": F_ARN, "routeKey": "GET x"}),
            "route key",
        ),
        (
            json!({"name": "x", "protocolType": "HTTP",
                   "corsConfiguration": {"allowOrigins": ["*"], "allowCredentials": true}}),
            "allow-credentials",
        ),
    ] {
        let r = h.json(Method::POST, "/v2/apis", body.clone()).await;
        let msg = assert_apigw_error(&r, 400, "BadRequestException");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let r = h.call(Method::POST, "/v2/apis", "{not json").await;
    assert_apigw_error(&r, 400, "BadRequestException");
    let list = ok(&h.call(Method::GET, "/v2/apis", "").await, 200);
    assert_eq!(list["items"], json!([]), "nothing was created");

    let id = plain_api(&h).await;
    let r = h
        .json(
            Method::PATCH,
            &format!("/v2/apis/{id}"),
            json!({"target": F_ARN}),
        )
        .await;
    let msg = assert_apigw_error(&r, 400, "BadRequestException");
    assert!(msg.contains("quick create"), "{msg}");
    let r = h
        .json(Method::PATCH, "/v2/apis/nosuchapi0", json!({"name": "x"}))
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
}

#[tokio::test]
async fn quick_create_makes_managed_integration_route_and_stage() {
    let h = Harness::new().await;
    let api = create_api(
        &h,
        json!({"name": "quick", "protocolType": "HTTP", "target": F_ARN}),
    )
    .await;
    let id = api["apiId"].as_str().unwrap();

    let integrations = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}/integrations"), "")
            .await,
        200,
    );
    let integration = &integrations["items"][0];
    assert_eq!(integrations["items"].as_array().unwrap().len(), 1);
    assert_eq!(integration["integrationType"], "AWS_PROXY");
    assert_eq!(integration["integrationUri"], F_ARN);
    assert_eq!(integration["payloadFormatVersion"], "2.0");
    assert_eq!(integration["timeoutInMillis"], 30000);
    assert_eq!(integration["connectionType"], "INTERNET");
    assert_eq!(integration["integrationMethod"], "POST");
    assert_eq!(integration["apiGatewayManaged"], true);
    let iid = integration["integrationId"].as_str().unwrap();
    assert_eq!(iid.len(), 7);

    let routes = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}/routes"), "")
            .await,
        200,
    );
    let route = &routes["items"][0];
    assert_eq!(route["routeKey"], "$default");
    assert_eq!(route["target"], format!("integrations/{iid}"));
    assert_eq!(route["authorizationType"], "NONE");
    assert_eq!(route["apiGatewayManaged"], true);
    let rid = route["routeId"].as_str().unwrap();

    // botocore sends `$default` percent-encoded.
    let stage = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}/stages/%24default"), "")
            .await,
        200,
    );
    assert_eq!(stage["stageName"], "$default");
    assert_eq!(stage["autoDeploy"], true);
    assert_eq!(stage["apiGatewayManaged"], true);
    assert!(is_iso8601(&stage["createdDate"]));
    assert!(is_iso8601(&stage["lastUpdatedDate"]));

    // Managed parts: the integration can be updated but not deleted; the route's key and the
    // stage cannot be changed directly.
    let r = h
        .call(
            Method::DELETE,
            &format!("/v2/apis/{id}/integrations/{iid}"),
            "",
        )
        .await;
    assert_apigw_error(&r, 400, "BadRequestException");
    let r = h
        .json(
            Method::PATCH,
            &format!("/v2/apis/{id}/integrations/{iid}"),
            json!({"timeoutInMillis": 5000}),
        )
        .await;
    assert_eq!(ok(&r, 200)["timeoutInMillis"], 5000);
    let r = h
        .json(
            Method::PATCH,
            &format!("/v2/apis/{id}/routes/{rid}"),
            json!({"routeKey": "GET /x"}),
        )
        .await;
    assert_apigw_error(&r, 400, "BadRequestException");
    let r = h
        .json(
            Method::PATCH,
            &format!("/v2/apis/{id}/stages/%24default"),
            json!({"description": "mine"}),
        )
        .await;
    assert_apigw_error(&r, 400, "BadRequestException");
    let r = h
        .call(
            Method::DELETE,
            &format!("/v2/apis/{id}/stages/%24default"),
            "",
        )
        .await;
    assert_apigw_error(&r, 400, "BadRequestException");

    // UpdateApi's target and routeKey change them.
    let other = "arn:aws:lambda:us-east-1:000000000000:function:g:live";
    let r = h
        .json(
            Method::PATCH,
            &format!("/v2/apis/{id}"),
            json!({"target": other, "routeKey": "ANY /{proxy+}"}),
        )
        .await;
    ok(&r, 200);
    let got = ok(
        &h.call(
            Method::GET,
            &format!("/v2/apis/{id}/integrations/{iid}"),
            "",
        )
        .await,
        200,
    );
    assert_eq!(got["integrationUri"], other);
    let got = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}/routes/{rid}"), "")
            .await,
        200,
    );
    assert_eq!(got["routeKey"], "ANY /{proxy+}");
}

#[tokio::test]
async fn quick_create_takes_a_route_key() {
    let h = Harness::new().await;
    let api = create_api(
        &h,
        json!({"name": "q", "protocolType": "HTTP", "routeKey": "GET /hello",
               "target": format!("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{F_ARN}/invocations")}),
    )
    .await;
    let id = api["apiId"].as_str().unwrap();
    let routes = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}/routes"), "")
            .await,
        200,
    );
    assert_eq!(ids(&routes, "routeKey"), ["GET /hello"]);
}

#[tokio::test]
async fn integrations_are_created_read_updated_and_deleted() {
    let h = Harness::new().await;
    let api = plain_api(&h).await;
    let base = format!("/v2/apis/{api}/integrations");
    let uri = format!(
        "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{F_ARN}:live/invocations"
    );
    let created = ok(
        &h.json(
            Method::POST,
            &base,
            json!({"integrationType": "AWS_PROXY", "integrationUri": uri, "payloadFormatVersion": "1.0",
                   "timeoutInMillis": 1000, "description": "v1", "credentialsArn": "arn:aws:iam::000000000000:role/r"}),
        )
        .await,
        201,
    );
    let iid = created["integrationId"].as_str().unwrap().to_owned();
    assert_eq!(created["integrationUri"], uri);
    assert_eq!(created["payloadFormatVersion"], "1.0");
    assert_eq!(created["timeoutInMillis"], 1000);
    assert_eq!(created["description"], "v1");
    assert_eq!(created["apiGatewayManaged"], false);

    let got = ok(
        &h.call(Method::GET, &format!("{base}/{iid}"), "").await,
        200,
    );
    assert_eq!(got, created);
    let second = create_integration(&h, &api).await;
    let list = ok(&h.call(Method::GET, &base, "").await, 200);
    let mut expected = vec![iid.clone(), second.clone()];
    expected.sort();
    assert_eq!(ids(&list, "integrationId"), expected);

    let updated = ok(
        &h.json(
            Method::PATCH,
            &format!("{base}/{iid}"),
            json!({"payloadFormatVersion": "2.0", "integrationUri": F_ARN}),
        )
        .await,
        200,
    );
    assert_eq!(updated["payloadFormatVersion"], "2.0");
    assert_eq!(updated["integrationUri"], F_ARN);
    assert_eq!(updated["timeoutInMillis"], 1000, "absent members are kept");

    // In use by a route: ConflictException, as AWS.
    let route = ok(&create_route(&h, &api, "GET /x", &iid).await, 201);
    let r = h.call(Method::DELETE, &format!("{base}/{iid}"), "").await;
    let msg = assert_apigw_error(&r, 409, "ConflictException");
    assert!(msg.contains(route["routeId"].as_str().unwrap()), "{msg}");

    let r = h
        .call(Method::DELETE, &format!("{base}/{second}"), "")
        .await;
    ok(&r, 204);
    let r = h.call(Method::GET, &format!("{base}/{second}"), "").await;
    let msg = assert_apigw_error(&r, 404, "NotFoundException");
    assert!(msg.contains(&second), "{msg}");
    let r = h
        .call(Method::DELETE, &format!("{base}/{second}"), "")
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
}

#[tokio::test]
async fn refuses_bad_integrations() {
    let h = Harness::new().await;
    let api = plain_api(&h).await;
    let base = format!("/v2/apis/{api}/integrations");
    let good = json!({"integrationType": "AWS_PROXY", "integrationUri": F_ARN, "payloadFormatVersion": "2.0"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    for (body, needle) in [
        (
            with("integrationType", json!("HTTP_PROXY")),
            "not supported",
        ),
        (with("integrationType", json!("MOCK")), "not supported"),
        (
            with("integrationUri", json!("https://example.com")),
            "HTTP_PROXY",
        ),
        (with("integrationUri", json!("f")), "integration URI"),
        (
            with("payloadFormatVersion", json!("3.0")),
            "payloadFormatVersion",
        ),
        (with("timeoutInMillis", json!(30001)), "timeoutInMillis"),
        (with("timeoutInMillis", json!(49)), "timeoutInMillis"),
        (with("connectionType", json!("VPC_LINK")), "VPC"),
        (
            with("requestParameters", json!({"overwrite:path": "/x"})),
            "Parameter mapping",
        ),
        (
            with("requestTemplates", json!({"application/json": "{}"})),
            "WebSocket",
        ),
        (without("payloadFormatVersion"), "payloadFormatVersion"),
        (without("integrationUri"), "integrationUri"),
        (without("integrationType"), "integrationType"),
    ] {
        let r = h.json(Method::POST, &base, body.clone()).await;
        let msg = assert_apigw_error(&r, 400, "BadRequestException");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let r = h
        .json(
            Method::POST,
            "/v2/apis/nosuchapi0/integrations",
            good.clone(),
        )
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
    let r = h
        .call(Method::GET, "/v2/apis/nosuchapi0/integrations", "")
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
    let r = h
        .json(
            Method::PATCH,
            &format!("{base}/nosuchi"),
            json!({"timeoutInMillis": 100}),
        )
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
}

#[tokio::test]
async fn routes_are_created_read_updated_and_deleted() {
    let h = Harness::new().await;
    let api = plain_api(&h).await;
    let iid = create_integration(&h, &api).await;
    let base = format!("/v2/apis/{api}/routes");
    let created = ok(&create_route(&h, &api, "GET /items/{id}", &iid).await, 201);
    let rid = created["routeId"].as_str().unwrap().to_owned();
    assert_eq!(rid.len(), 7);
    assert_eq!(created["routeKey"], "GET /items/{id}");
    assert_eq!(created["target"], format!("integrations/{iid}"));
    assert_eq!(created["authorizationType"], "NONE");
    assert_eq!(created["apiKeyRequired"], false);
    assert_eq!(created["apiGatewayManaged"], false);
    let got = ok(
        &h.call(Method::GET, &format!("{base}/{rid}"), "").await,
        200,
    );
    assert_eq!(got, created);

    // A route without a target, then given one; another key.
    let bare = ok(
        &h.json(Method::POST, &base, json!({"routeKey": "$default"}))
            .await,
        201,
    );
    assert!(bare.get("target").is_none(), "{bare}");
    let bare_id = bare["routeId"].as_str().unwrap();
    let updated = ok(
        &h.json(
            Method::PATCH,
            &format!("{base}/{bare_id}"),
            json!({"target": format!("integrations/{iid}"), "operationName": "catchAll"}),
        )
        .await,
        200,
    );
    assert_eq!(updated["target"], format!("integrations/{iid}"));
    assert_eq!(updated["operationName"], "catchAll");
    assert_eq!(updated["routeKey"], "$default");
    let updated = ok(
        &h.json(
            Method::PATCH,
            &format!("{base}/{rid}"),
            json!({"routeKey": "PUT /items/{id}"}),
        )
        .await,
        200,
    );
    assert_eq!(updated["routeKey"], "PUT /items/{id}");
    // An empty target removes it.
    let updated = ok(
        &h.json(
            Method::PATCH,
            &format!("{base}/{rid}"),
            json!({"target": ""}),
        )
        .await,
        200,
    );
    assert!(updated.get("target").is_none(), "{updated}");

    let list = ok(&h.call(Method::GET, &base, "").await, 200);
    let mut keys = ids(&list, "routeKey");
    keys.sort();
    assert_eq!(keys, ["$default", "PUT /items/{id}"]);

    let r = h.call(Method::DELETE, &format!("{base}/{rid}"), "").await;
    ok(&r, 204);
    let r = h.call(Method::GET, &format!("{base}/{rid}"), "").await;
    let msg = assert_apigw_error(&r, 404, "NotFoundException");
    assert_eq!(msg, format!("Invalid Route identifier specified {rid}"));
    let r = h.call(Method::DELETE, &format!("{base}/{rid}"), "").await;
    assert_apigw_error(&r, 404, "NotFoundException");
}

#[tokio::test]
async fn refuses_conflicting_and_bad_routes() {
    let h = Harness::new().await;
    let api = plain_api(&h).await;
    let iid = create_integration(&h, &api).await;
    let base = format!("/v2/apis/{api}/routes");
    ok(&create_route(&h, &api, "GET /items/{id}", &iid).await, 201);
    let other = ok(&create_route(&h, &api, "POST /items", &iid).await, 201);

    let r = create_route(&h, &api, "GET /items/{id}", &iid).await;
    let msg = assert_apigw_error(&r, 409, "ConflictException");
    assert!(msg.contains("GET /items/{id}"), "{msg}");
    let r = create_route(&h, &api, "GET /items/{itemId}", &iid).await;
    let msg = assert_apigw_error(&r, 409, "ConflictException");
    assert!(msg.contains("conflicting variable"), "{msg}");
    // Updating another route onto a taken key.
    let r = h
        .json(
            Method::PATCH,
            &format!("{base}/{}", other["routeId"].as_str().unwrap()),
            json!({"routeKey": "GET /items/{id}"}),
        )
        .await;
    assert_apigw_error(&r, 409, "ConflictException");

    for (body, needle) in [
        (json!({"routeKey": "GET items"}), "route key"),
        (json!({"routeKey": "FETCH /x"}), "method"),
        (json!({"routeKey": "GET /{proxy+}/more"}), "greedy"),
        (json!({}), "routeKey"),
        (
            json!({"routeKey": "GET /a", "target": "nowhere"}),
            "integrations/",
        ),
        (
            json!({"routeKey": "GET /a", "target": "integrations/nosuchi"}),
            "does not exist",
        ),
        (
            json!({"routeKey": "GET /a", "authorizationType": "JWT", "authorizerId": "abc"}),
            "Authorizers",
        ),
        (
            json!({"routeKey": "GET /a", "apiKeyRequired": true}),
            "WebSocket",
        ),
    ] {
        let r = h.json(Method::POST, &base, body.clone()).await;
        let msg = assert_apigw_error(&r, 400, "BadRequestException");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let r = h
        .json(
            Method::POST,
            "/v2/apis/nosuchapi0/routes",
            json!({"routeKey": "GET /x"}),
        )
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
    let keys = ids(&ok(&h.call(Method::GET, &base, "").await, 200), "routeKey");
    assert_eq!(keys.len(), 2, "{keys:?}");
}

#[tokio::test]
async fn stages_are_created_read_updated_and_deleted() {
    let h = Harness::new().await;
    let api = plain_api(&h).await;
    let base = format!("/v2/apis/{api}/stages");
    let created = ok(
        &h.json(
            Method::POST,
            &base,
            json!({"stageName": "dev", "autoDeploy": true, "description": "d",
                   "stageVariables": {"color": "blue", "url": "https://x.example/a"}, "tags": {"t": "1"}}),
        )
        .await,
        201,
    );
    assert_eq!(created["stageName"], "dev");
    assert_eq!(created["autoDeploy"], true);
    assert_eq!(created["description"], "d");
    assert_eq!(
        created["stageVariables"],
        json!({"color": "blue", "url": "https://x.example/a"})
    );
    assert_eq!(created["tags"], json!({"t": "1"}));
    assert_eq!(created["apiGatewayManaged"], false);
    assert!(is_iso8601(&created["createdDate"]));
    let got = ok(&h.call(Method::GET, &format!("{base}/dev"), "").await, 200);
    assert_eq!(got, created);

    let default = ok(
        &h.json(Method::POST, &base, json!({"stageName": "$default"}))
            .await,
        201,
    );
    assert_eq!(default["autoDeploy"], false, "autoDeploy defaults to false");
    let list = ok(&h.call(Method::GET, &base, "").await, 200);
    assert_eq!(ids(&list, "stageName"), ["$default", "dev"]);

    let r = h
        .json(Method::POST, &base, json!({"stageName": "dev"}))
        .await;
    assert_apigw_error(&r, 409, "ConflictException");

    // A given stageVariables map replaces the stage's.
    let updated = ok(
        &h.json(
            Method::PATCH,
            &format!("{base}/dev"),
            json!({"stageVariables": {"tier": "2"}, "autoDeploy": false}),
        )
        .await,
        200,
    );
    assert_eq!(updated["stageVariables"], json!({"tier": "2"}));
    assert_eq!(updated["autoDeploy"], false);
    assert_eq!(updated["description"], "d");
    assert_eq!(updated["createdDate"], created["createdDate"]);

    let r = h
        .call(Method::DELETE, &format!("{base}/%24default"), "")
        .await;
    ok(&r, 204);
    let r = h.call(Method::GET, &format!("{base}/%24default"), "").await;
    assert_apigw_error(&r, 404, "NotFoundException");
    let list = ok(&h.call(Method::GET, &base, "").await, 200);
    assert_eq!(ids(&list, "stageName"), ["dev"]);
}

#[tokio::test]
async fn refuses_bad_stages() {
    let h = Harness::new().await;
    let api = plain_api(&h).await;
    let base = format!("/v2/apis/{api}/stages");
    for (body, needle) in [
        (json!({"stageName": "has space"}), "stage name"),
        (json!({"stageName": "$latest"}), "stage name"),
        (json!({}), "stageName"),
        (
            json!({"stageName": "s", "stageVariables": {"bad-name": "v"}}),
            "stage variable",
        ),
        (
            json!({"stageName": "s", "accessLogSettings": {"destinationArn": "arn:x", "format": "$context.requestId"}}),
            "Access logs",
        ),
        (
            json!({"stageName": "s", "defaultRouteSettings": {"throttlingBurstLimit": 5}}),
            "Route settings",
        ),
    ] {
        let r = h.json(Method::POST, &base, body.clone()).await;
        let msg = assert_apigw_error(&r, 400, "BadRequestException");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let r = h
        .json(
            Method::POST,
            "/v2/apis/nosuchapi0/stages",
            json!({"stageName": "s"}),
        )
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
    let r = h
        .json(
            Method::PATCH,
            &format!("{base}/nosuch"),
            json!({"description": "x"}),
        )
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
}

#[tokio::test]
async fn deleting_an_api_removes_its_parts() {
    let h = Harness::new().await;
    let api = create_api(
        &h,
        json!({"name": "quick", "protocolType": "HTTP", "target": F_ARN}),
    )
    .await;
    let id = api["apiId"].as_str().unwrap();
    assert!(h.store.http_api_snapshot(id).unwrap().is_some());
    ok(
        &h.call(Method::DELETE, &format!("/v2/apis/{id}"), "").await,
        204,
    );
    assert_eq!(h.store.http_api_snapshot(id).unwrap(), None);
    assert_eq!(h.store.list_api_routes(id).unwrap(), []);
    let r = h
        .call(Method::GET, &format!("/v2/apis/{id}/routes"), "")
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
}

#[tokio::test]
async fn refuses_operations_serval_does_not_serve() {
    let h = Harness::new().await;
    let api = plain_api(&h).await;
    for (method, uri, needle) in [
        (
            Method::POST,
            format!("/v2/apis/{api}/authorizers"),
            "Authorizers",
        ),
        (
            Method::GET,
            format!("/v2/apis/{api}/deployments"),
            "deployments",
        ),
        (
            Method::POST,
            "/v2/tags/arn%3Aaws%3Aapigateway%3Aus-east-1%3A%3A%2Fapis%2Fx".to_owned(),
            "Tagging",
        ),
        (Method::PUT, "/v2/apis".to_owned(), "OpenAPI"),
        (Method::GET, "/v2/domainnames".to_owned(), "not supported"),
    ] {
        let r = h.json(method.clone(), &uri, json!({})).await;
        let msg = assert_apigw_error(&r, 400, "BadRequestException");
        assert!(msg.contains(needle), "{method} {uri}: {msg}");
    }
    // CreateDeployment is accepted: every stage serves the current routes already.
    let dep = ok(
        &h.json(
            Method::POST,
            &format!("/v2/apis/{api}/deployments"),
            json!({"description": "release"}),
        )
        .await,
        201,
    );
    assert_eq!(dep["deploymentStatus"], "DEPLOYED");
    assert_eq!(dep["description"], "release");
    assert!(dep["deploymentId"].as_str().is_some());
    let r = h
        .json(
            Method::POST,
            &format!("/v2/apis/{api}/deployments"),
            json!({"stageName": "nosuch"}),
        )
        .await;
    assert_apigw_error(&r, 404, "NotFoundException");
}

#[tokio::test]
async fn gateway_serves_what_the_api_configures() {
    let h = Harness::new().await;
    ok(&h.create("f", json!({})).await, 201);
    let api = create_api(
        &h,
        json!({"name": "live", "protocolType": "HTTP", "target": F_ARN}),
    )
    .await;
    let id = api["apiId"].as_str().unwrap();
    let get = |path: &str| {
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", format!("{id}.execute-api.localhost:9000"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let r = h.send(get("/hello/world?x=1")).await;
    let event = ok(&r, 200);
    assert_eq!(event["rawPath"], "/hello/world");
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["requestContext"]["apiId"], id);

    // A new route is served at once (the stage auto-deploys; Serval serves current routes).
    let routes = ok(
        &h.call(Method::GET, &format!("/v2/apis/{id}/routes"), "")
            .await,
        200,
    );
    let target = routes["items"][0]["target"].as_str().unwrap().to_owned();
    let r = h
        .json(
            Method::POST,
            &format!("/v2/apis/{id}/routes"),
            json!({"routeKey": "GET /items/{id}", "target": target}),
        )
        .await;
    ok(&r, 201);
    let event = ok(&h.send(get("/items/7")).await, 200);
    assert_eq!(event["routeKey"], "GET /items/{id}");
    assert_eq!(event["pathParameters"], json!({"id": "7"}));

    ok(
        &h.call(Method::DELETE, &format!("/v2/apis/{id}"), "").await,
        204,
    );
    let r = h.send(get("/hello")).await;
    assert!(
        matches!(r.status.as_u16(), 403 | 404),
        "deleted API still served: {}",
        r.status
    );
}
