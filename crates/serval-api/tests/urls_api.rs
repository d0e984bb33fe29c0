//! Function URL configurations through the router, on a real store and engine: CRUD,
//! validation with AWS's error types, cascades, and requests served through the URL.

mod common;

use axum::body::Body;
use common::*;
use http::{Method, Request};
use serde_json::json;

const URL: &str = "/2021-10-31/functions/f/url";

async fn create_url(h: &Harness, uri: &str, body: serde_json::Value) -> Reply {
    h.json(Method::POST, uri, body).await
}

/// A request to the Function URL whose `FunctionUrl` is `url`, by its host name.
async fn via_url(h: &Harness, url: &str, method: Method, path: &str, body: &'static [u8]) -> Reply {
    let host = url
        .strip_prefix("http://")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("user-agent", "urls-test")
        .header("cookie", "a=1; b=2")
        .header("content-type", "application/octet-stream")
        .body(Body::from(body))
        .unwrap();
    h.send(req).await
}

#[tokio::test]
async fn creates_gets_updates_lists_and_deletes_a_url() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    let r = create_url(
        &h,
        URL,
        json!({"AuthType": "NONE", "Cors": {"AllowOrigins": ["https://example.com"], "MaxAge": 60}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = r.json();
    let url = created["FunctionUrl"].as_str().unwrap().to_owned();
    let id = url
        .strip_prefix("http://")
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert!(
        url.ends_with(".lambda-url.us-east-1.localhost:9000/"),
        "{url}"
    );
    assert_eq!(
        created["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:f"
    );
    assert_eq!(created["AuthType"], "NONE");
    assert_eq!(created["InvokeMode"], "BUFFERED");
    assert_eq!(
        created["Cors"]["AllowOrigins"],
        json!(["https://example.com"])
    );
    assert!(created.get("LastModifiedTime").is_none());

    // A second URL for the same function is a conflict.
    let again = create_url(&h, URL, json!({"AuthType": "NONE"})).await;
    again.assert_error(409, "ResourceConflictException");

    let got = h.call(Method::GET, URL, "").await;
    assert_eq!(got.status, 200);
    let got = got.json();
    assert_eq!(got["FunctionUrl"], url);
    assert!(got["LastModifiedTime"].is_string());

    let updated = h
        .json(Method::PUT, URL, json!({"Cors": {"AllowOrigins": ["*"]}}))
        .await;
    assert_eq!(
        updated.status,
        200,
        "{}",
        String::from_utf8_lossy(&updated.body)
    );
    let updated = updated.json();
    assert_eq!(updated["Cors"], json!({"AllowOrigins": ["*"]}));
    assert_eq!(updated["FunctionUrl"], url);
    assert_eq!(updated["CreationTime"], created["CreationTime"]);

    let list = h
        .call(Method::GET, "/2021-10-31/functions/f/urls", "")
        .await
        .json();
    assert_eq!(list["FunctionUrlConfigs"].as_array().unwrap().len(), 1);
    assert_eq!(list["FunctionUrlConfigs"][0]["FunctionUrl"], url);

    let deleted = h.call(Method::DELETE, URL, "").await;
    assert_eq!(deleted.status, 204);
    h.call(Method::GET, URL, "")
        .await
        .assert_error(404, "ResourceNotFoundException");
    h.call(Method::DELETE, URL, "")
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn refuses_bad_input_with_aws_errors() {
    let h = Harness::new().await;
    create_url(
        &h,
        "/2021-10-31/functions/nope/url",
        json!({"AuthType": "NONE"}),
    )
    .await
    .assert_error(404, "ResourceNotFoundException");
    h.create("f", json!({})).await;
    create_url(&h, URL, json!({}))
        .await
        .assert_error(400, "ValidationException");
    create_url(&h, URL, json!({"AuthType": "OPEN"}))
        .await
        .assert_error(400, "ValidationException");
    let iam = create_url(&h, URL, json!({"AuthType": "AWS_IAM"})).await;
    iam.assert_error(400, "InvalidParameterValueException");
    assert!(iam.message().contains("AWS_IAM"), "{}", iam.message());
    create_url(
        &h,
        URL,
        json!({"AuthType": "NONE", "InvokeMode": "SOMETIMES"}),
    )
    .await
    .assert_error(400, "ValidationException");
    create_url(
        &h,
        URL,
        json!({"AuthType": "NONE", "Cors": {"MaxAge": 100000}}),
    )
    .await
    .assert_error(400, "ValidationException");
    create_url(
        &h,
        URL,
        json!({"AuthType": "NONE", "Cors": {"AllowMethods": ["FETCH"]}}),
    )
    .await
    .assert_error(400, "InvalidParameterValueException");
    // Versions and $LATEST are not URL qualifiers; an unknown alias is not found.
    for q in ["1", "%24LATEST"] {
        create_url(
            &h,
            &format!("{URL}?Qualifier={q}"),
            json!({"AuthType": "NONE"}),
        )
        .await
        .assert_error(400, "ValidationException");
    }
    create_url(
        &h,
        &format!("{URL}?Qualifier=live"),
        json!({"AuthType": "NONE"}),
    )
    .await
    .assert_error(404, "ResourceNotFoundException");
    h.call(Method::POST, URL, "{not json")
        .await
        .assert_error(400, "InvalidRequestContentException");
    // Nothing was stored by the refused calls.
    let list = h
        .call(Method::GET, "/2021-10-31/functions/f/urls", "")
        .await
        .json();
    assert_eq!(list["FunctionUrlConfigs"], json!([]));
}

#[tokio::test]
async fn an_alias_url_goes_with_its_alias_and_all_go_with_the_function() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    let v = h
        .json(Method::POST, "/2015-03-31/functions/f/versions", json!({}))
        .await;
    assert_eq!(v.status, 201);
    let a = h
        .json(
            Method::POST,
            "/2015-03-31/functions/f/aliases",
            json!({"Name": "live", "FunctionVersion": "1"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let r = create_url(
        &h,
        &format!("{URL}?Qualifier=live"),
        json!({"AuthType": "NONE"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:f:live"
    );
    let alias_url = r.json()["FunctionUrl"].as_str().unwrap().to_owned();
    let r = create_url(&h, URL, json!({"AuthType": "NONE"})).await;
    let plain_url = r.json()["FunctionUrl"].as_str().unwrap().to_owned();
    assert_ne!(alias_url, plain_url);

    // Served until its alias is deleted.
    assert_eq!(
        via_url(&h, &alias_url, Method::GET, "/", b"").await.status,
        200
    );
    let d = h
        .call(Method::DELETE, "/2015-03-31/functions/f/aliases/live", "")
        .await;
    assert_eq!(d.status, 204);
    assert_eq!(
        via_url(&h, &alias_url, Method::GET, "/", b"").await.status,
        403
    );
    h.call(Method::GET, &format!("{URL}?Qualifier=live"), "")
        .await
        .assert_error(404, "ResourceNotFoundException");

    assert_eq!(
        via_url(&h, &plain_url, Method::GET, "/", b"").await.status,
        200
    );
    let d = h.call(Method::DELETE, "/2015-03-31/functions/f", "").await;
    assert_eq!(d.status, 204);
    assert_eq!(
        via_url(&h, &plain_url, Method::GET, "/", b"").await.status,
        403
    );
}

#[tokio::test]
async fn serves_requests_as_payload_format_2_events() {
    let h = Harness::new().await;
    // The function answers with the event it received (any JSON → a 200 application/json).
    h.create("f", json!({})).await;
    let url = create_url(&h, URL, json!({"AuthType": "NONE"}))
        .await
        .json()["FunctionUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = via_url(
        &h,
        &url,
        Method::POST,
        "/a/b%20c?x=1&x=2&y=z",
        b"\x00\xffbin",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.contains_key("x-amzn-requestid"));
    let event = r.json();
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["rawPath"], "/a/b%20c");
    assert_eq!(event["rawQueryString"], "x=1&x=2&y=z");
    assert_eq!(
        event["queryStringParameters"],
        json!({"x": "1,2", "y": "z"})
    );
    assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(event["headers"]["user-agent"], "urls-test");
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    assert_eq!(event["requestContext"]["http"]["userAgent"], "urls-test");
    assert_eq!(
        event["requestContext"]["requestId"],
        r.headers["x-amzn-requestid"].to_str().unwrap()
    );
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], b64(b"\x00\xffbin"));

    // The path-based form reaches the same URL.
    let id = url
        .strip_prefix("http://")
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let r = h
        .call(Method::GET, &format!("/_aws/lambda-url/{id}/p?q=1"), "")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["rawPath"], "/p");
    assert_eq!(r.json()["rawQueryString"], "q=1");

    // An unknown URL id is forbidden, as on AWS.
    let r = h
        .call(
            Method::GET,
            "/_aws/lambda-url/0123456789abcdef0123456789abcdef/",
            "",
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn a_function_error_is_a_502() {
    let h = Harness::new().await;
    let zip = python_zip("raise ValueError('boom')");
    h.create("f", json!({"Code": {"ZipFile": b64(&zip)}})).await;
    let url = create_url(&h, URL, json!({"AuthType": "NONE"}))
        .await
        .json()["FunctionUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = via_url(&h, &url, Method::GET, "/", b"").await;
    assert_eq!(r.status, 502);
}
