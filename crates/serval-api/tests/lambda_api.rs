//! The Lambda REST API `2015-03-31` control plane through the router, on a real store and
//! engine: shapes, status codes, AWS error types and messages.

mod common;

use common::*;
use http::Method;
use serde_json::json;
use sha2::Digest;

const ARN_F: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";

#[tokio::test]
async fn creates_function_with_aws_configuration_shape() {
    let h = Harness::new().await;
    let zip = python_zip("return event");
    let r = h
        .create(
            "f",
            json!({
                "Code": {"ZipFile": b64(&zip)},
                "Description": "demo",
                "Timeout": 10,
                "MemorySize": 256,
                "Environment": {"Variables": {"GREETING": "hi"}},
                "Architectures": ["arm64"],
                "EphemeralStorage": {"Size": 1024},
                "Tags": {"team": "core"},
                "TracingConfig": {"Mode": "PassThrough"},
                "SomethingAwsDoesNotModel": true
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.headers.contains_key("x-amzn-requestid"));
    let c = r.json();
    assert_eq!(c["FunctionName"], "f");
    assert_eq!(c["FunctionArn"], ARN_F);
    assert_eq!(c["Runtime"], "python3.12");
    assert_eq!(c["Role"], ROLE);
    assert_eq!(c["Handler"], "app.handler");
    assert_eq!(c["CodeSize"], zip.len() as u64);
    assert_eq!(c["Description"], "demo");
    assert_eq!(c["Timeout"], 10);
    assert_eq!(c["MemorySize"], 256);
    assert_eq!(c["CodeSha256"], b64(&sha2::Sha256::digest(&zip)));
    assert_eq!(c["Version"], "$LATEST");
    assert_eq!(c["Environment"], json!({"Variables": {"GREETING": "hi"}}));
    assert_eq!(c["TracingConfig"], json!({"Mode": "PassThrough"}));
    assert_eq!(c["State"], "Active");
    assert_eq!(c["LastUpdateStatus"], "Successful");
    assert_eq!(c["PackageType"], "Zip");
    assert_eq!(c["Architectures"], json!(["arm64"]));
    assert_eq!(c["EphemeralStorage"], json!({"Size": 1024}));
    assert_eq!(
        c["SnapStart"],
        json!({"ApplyOn": "None", "OptimizationStatus": "Off"})
    );
    assert_eq!(
        c["LoggingConfig"],
        json!({"LogFormat": "Text", "LogGroup": "/aws/lambda/f"})
    );
    let lm = c["LastModified"].as_str().unwrap();
    assert_eq!(lm.len(), "2019-09-24T20:54:08.943+0000".len(), "{lm}");
    assert!(lm.ends_with("+0000") && lm.as_bytes()[19] == b'.', "{lm}");
    assert_eq!(c["RevisionId"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn applies_defaults_and_omits_empty_environment() {
    let h = Harness::new().await;
    let c = h.create("f", json!({})).await.json();
    assert_eq!(c["Timeout"], 3);
    assert_eq!(c["MemorySize"], 128);
    assert_eq!(c["EphemeralStorage"]["Size"], 512);
    assert_eq!(c["Architectures"], json!(["x86_64"]));
    assert_eq!(c["Description"], "");
    assert!(c.get("Environment").is_none(), "{c}");
}

#[tokio::test]
async fn gets_function_by_name_partial_and_full_arn() {
    let h = Harness::new().await;
    let zip = python_zip("return event");
    h.create(
        "f",
        json!({"Code": {"ZipFile": b64(&zip)}, "Tags": {"a": "1"}}),
    )
    .await;
    let r = h.call(Method::GET, "/2015-03-31/functions/f", "").await;
    assert_eq!(r.status, 200);
    let g = r.json();
    assert_eq!(g["Configuration"]["FunctionName"], "f");
    assert_eq!(g["Code"]["RepositoryType"], "S3");
    assert_eq!(g["Tags"], json!({"a": "1"}));
    let hex = format!("{:x}", sha2::Sha256::digest(&zip));
    let location = g["Code"]["Location"].as_str().unwrap();
    assert_eq!(
        location,
        format!("http://127.0.0.1:9000/_serval/code/{hex}.zip")
    );

    // The code location serves the zip as uploaded.
    let path = location.strip_prefix("http://127.0.0.1:9000").unwrap();
    let dl = h.call(Method::GET, path, "").await;
    assert_eq!(dl.status, 200);
    assert_eq!(dl.headers["content-type"], "application/zip");
    assert_eq!(&dl.body[..], &zip[..]);
    let missing = h
        .call(
            Method::GET,
            &format!("/_serval/code/{}.zip", "0".repeat(64)),
            "",
        )
        .await;
    missing.assert_error(404, "ResourceNotFoundException");
    h.call(Method::GET, "/_serval/code/..%2Fserval.db", "")
        .await
        .assert_error(404, "ResourceNotFoundException");

    for id in [
        encode(ARN_F),
        encode("000000000000:function:f"),
        encode("f:$LATEST"),
    ] {
        let r = h
            .call(
                Method::GET,
                &format!("/2015-03-31/functions/{id}/configuration"),
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{id}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["FunctionName"], "f");
    }
    let r = h
        .call(
            Method::GET,
            "/2015-03-31/functions/f?Qualifier=%24LATEST",
            "",
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn unknown_function_or_qualifier_is_resource_not_found() {
    let h = Harness::new().await;
    let r = h.call(Method::GET, "/2015-03-31/functions/nope", "").await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(
        r.message(),
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"
    );
    assert_eq!(r.json()["Type"], "User");
    h.create("f", json!({})).await;
    let r = h
        .call(
            Method::GET,
            "/2015-03-31/functions/f/configuration?Qualifier=1",
            "",
        )
        .await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(r.message(), format!("Function not found: {ARN_F}:1"));
    h.call(Method::GET, "/2015-03-31/functions/f%3Alive", "")
        .await
        .assert_error(404, "ResourceNotFoundException");
    h.call(Method::GET, "/2015-03-31/functions/bad%20name", "")
        .await
        .assert_error(400, "ValidationException");
    // Not UTF-8 once percent-decoded: still AWS's error shape, not axum's plain text.
    h.call(Method::GET, "/2015-03-31/functions/%FF", "")
        .await
        .assert_error(400, "ValidationException");
}

#[tokio::test]
async fn refuses_duplicate_function() {
    let h = Harness::new().await;
    assert_eq!(h.create("f", json!({})).await.status, 201);
    let r = h.create("f", json!({})).await;
    r.assert_error(409, "ResourceConflictException");
    assert_eq!(r.message(), "Function already exist: f");
}

#[tokio::test]
async fn rejects_invalid_create_requests_with_aws_error_types() {
    let h = Harness::new().await;
    let cases: Vec<(serde_json::Value, u16, &str, &str)> = vec![
        (
            json!({"Role": null}),
            400,
            "ValidationException",
            "Member must not be null",
        ),
        (
            json!({"Role": "role"}),
            400,
            "ValidationException",
            "regular expression",
        ),
        (
            json!({"Runtime": "cobol85"}),
            400,
            "InvalidParameterValueException",
            "enum value set",
        ),
        (
            json!({"Runtime": null}),
            400,
            "InvalidParameterValueException",
            "Runtime and Handler are mandatory",
        ),
        (
            json!({"Handler": null}),
            400,
            "InvalidParameterValueException",
            "Runtime and Handler are mandatory",
        ),
        (
            json!({"Handler": "has space"}),
            400,
            "ValidationException",
            "handler",
        ),
        (
            json!({"MemorySize": 127}),
            400,
            "ValidationException",
            "greater than or equal to 128",
        ),
        (
            json!({"MemorySize": 10241}),
            400,
            "InvalidParameterValueException",
            "less than or equal to 10240",
        ),
        (json!({"Timeout": 0}), 400, "ValidationException", "timeout"),
        (
            json!({"Timeout": 901}),
            400,
            "InvalidParameterValueException",
            "900",
        ),
        (
            json!({"EphemeralStorage": {"Size": 511}}),
            400,
            "ValidationException",
            "512",
        ),
        (
            json!({"Description": "x".repeat(257)}),
            400,
            "ValidationException",
            "256",
        ),
        (
            json!({"Environment": {"Variables": {"AWS_REGION": "x"}}}),
            400,
            "InvalidParameterValueException",
            "reserved keys",
        ),
        (
            json!({"Environment": {"Variables": {"1BAD": "x"}}}),
            400,
            "ValidationException",
            "environment",
        ),
        (
            json!({"Environment": {"Variables": {"BIG": "x".repeat(5000)}}}),
            400,
            "InvalidParameterValueException",
            "4KB",
        ),
        (
            json!({"Architectures": ["sparc"]}),
            400,
            "ValidationException",
            "x86_64, arm64",
        ),
        (
            json!({"Architectures": ["x86_64", "arm64"]}),
            400,
            "ValidationException",
            "architectures",
        ),
        (
            json!({"FunctionName": "bad.name"}),
            400,
            "ValidationException",
            "functionName",
        ),
        (
            json!({"FunctionName": "f:1"}),
            400,
            "InvalidParameterValueException",
            "qualifier",
        ),
        (
            json!({"Layers": ["arn:aws:lambda:us-east-1:000000000000:layer:x:1"]}),
            400,
            "InvalidParameterValueException",
            "Layers",
        ),
        (
            json!({"PackageType": "Image"}),
            400,
            "InvalidParameterValueException",
            "Image",
        ),
        (
            json!({"Code": {"S3Bucket": "b", "S3Key": "k"}}),
            400,
            "InvalidParameterValueException",
            "S3",
        ),
        (
            json!({"Code": {}}),
            400,
            "InvalidParameterValueException",
            "ZipFile",
        ),
        (
            json!({"Code": {"ZipFile": "!!not base64!!"}}),
            400,
            "InvalidRequestContentException",
            "base64",
        ),
        (
            json!({"Code": {"ZipFile": b64(b"not a zip")}}),
            400,
            "InvalidParameterValueException",
            "Could not unzip",
        ),
        (
            json!({"Tags": {"aws:reserved": "x"}}),
            400,
            "InvalidParameterValueException",
            "aws:",
        ),
    ];
    for (i, (extra, status, ty, fragment)) in cases.into_iter().enumerate() {
        let name = format!("f{i}");
        let mut body = json!({
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": { "ZipFile": b64(&python_zip("return 1")) },
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let r = h
            .json(Method::POST, "/2015-03-31/functions", body.clone())
            .await;
        r.assert_error(status, ty);
        assert!(
            r.message().contains(fragment),
            "case {i} {extra}: message {:?} lacks {fragment:?}",
            r.message()
        );
    }
    // Nothing was created by the refused requests.
    let list = h
        .call(Method::GET, "/2015-03-31/functions/", "")
        .await
        .json();
    assert_eq!(list["Functions"], json!([]));
}

#[tokio::test]
async fn malformed_json_is_invalid_request_content() {
    let h = Harness::new().await;
    let r = h
        .call(Method::POST, "/2015-03-31/functions", "{\"FunctionName\": ")
        .await;
    r.assert_error(400, "InvalidRequestContentException");
    assert!(r
        .message()
        .starts_with("Could not parse request body into json"));
    h.call(
        Method::POST,
        "/2015-03-31/functions",
        "{\"Timeout\": \"ten\"}",
    )
    .await
    .assert_error(400, "InvalidRequestContentException");
    h.create("f", json!({})).await;
    h.call(Method::PUT, "/2015-03-31/functions/f/configuration", "[1,2")
        .await
        .assert_error(400, "InvalidRequestContentException");
}

#[tokio::test]
async fn oversized_create_request_is_request_entity_too_large() {
    let h = Harness::new().await;
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("/2015-03-31/functions")
        .header(
            "content-length",
            (serval_api::CODE_REQUEST_MAX_BYTES + 1).to_string(),
        )
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let r = h.send(req).await;
    r.assert_error(413, "RequestEntityTooLargeException");
    assert_eq!(
        r.message(),
        "Request must be smaller than 70167211 bytes for the CreateFunction operation"
    );
}

#[tokio::test]
async fn lists_functions_in_pages() {
    let h = Harness::new().await;
    for name in ["c", "a", "b"] {
        assert_eq!(h.create(name, json!({})).await.status, 201);
    }
    let p1 = h
        .call(Method::GET, "/2015-03-31/functions/?MaxItems=2", "")
        .await;
    assert_eq!(p1.status, 200);
    let p1 = p1.json();
    let names: Vec<&str> = p1["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FunctionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let marker = p1["NextMarker"].as_str().unwrap();
    let p2 = h
        .call(
            Method::GET,
            &format!("/2015-03-31/functions?MaxItems=2&Marker={marker}"),
            "",
        )
        .await
        .json();
    assert_eq!(p2["Functions"].as_array().unwrap().len(), 1);
    assert_eq!(p2["Functions"][0]["FunctionName"], "c");
    assert!(p2.get("NextMarker").is_none(), "{p2}");
    // AWS returns at most 50 per page whatever MaxItems says.
    let all = h
        .call(Method::GET, "/2015-03-31/functions/?MaxItems=10000", "")
        .await;
    assert_eq!(all.json()["Functions"].as_array().unwrap().len(), 3);
    h.call(Method::GET, "/2015-03-31/functions/?MaxItems=0", "")
        .await
        .assert_error(400, "ValidationException");
    h.call(Method::GET, "/2015-03-31/functions/?MaxItems=x", "")
        .await
        .assert_error(400, "ValidationException");
    h.call(Method::GET, "/2015-03-31/functions/?Marker=%25%25bogus", "")
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn updates_configuration_with_revision_precondition() {
    let h = Harness::new().await;
    let created = h
        .create("f", json!({"Environment": {"Variables": {"AA": "1"}}}))
        .await
        .json();
    let rev0 = created["RevisionId"].as_str().unwrap().to_owned();
    let r = h
        .json(
            Method::PUT,
            "/2015-03-31/functions/f/configuration",
            json!({"MemorySize": 512, "Timeout": 30, "Description": "d", "RevisionId": rev0,
                   "Handler": "app.other", "Runtime": "python3.13", "EphemeralStorage": {"Size": 2048}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let c = r.json();
    assert_eq!(c["MemorySize"], 512);
    assert_eq!(c["Timeout"], 30);
    assert_eq!(c["Description"], "d");
    assert_eq!(c["Handler"], "app.other");
    assert_eq!(c["Runtime"], "python3.13");
    assert_eq!(c["EphemeralStorage"]["Size"], 2048);
    assert_eq!(
        c["Environment"]["Variables"]["AA"], "1",
        "unchanged when absent"
    );
    assert_ne!(c["RevisionId"], rev0.as_str());

    // The old revision no longer matches.
    let r = h
        .json(
            Method::PUT,
            "/2015-03-31/functions/f/configuration",
            json!({"MemorySize": 1024, "RevisionId": rev0}),
        )
        .await;
    r.assert_error(412, "PreconditionFailedException");

    // Clearing the variables removes Environment from the configuration.
    let c = h
        .json(
            Method::PUT,
            "/2015-03-31/functions/f/configuration",
            json!({"Environment": {"Variables": {}}}),
        )
        .await
        .json();
    assert!(c.get("Environment").is_none(), "{c}");
    let stored = h
        .call(Method::GET, "/2015-03-31/functions/f/configuration", "")
        .await
        .json();
    assert_eq!(stored["MemorySize"], 512);

    for (body, status, ty) in [
        (json!({"MemorySize": 64}), 400, "ValidationException"),
        (
            json!({"Timeout": 1000}),
            400,
            "InvalidParameterValueException",
        ),
        (json!({"Role": "nope"}), 400, "ValidationException"),
        (
            json!({"Runtime": "java21"}),
            400,
            "InvalidParameterValueException",
        ),
        (
            json!({"Environment": {"Variables": {"AWS_LAMBDA_FUNCTION_NAME": "x"}}}),
            400,
            "InvalidParameterValueException",
        ),
    ] {
        h.json(Method::PUT, "/2015-03-31/functions/f/configuration", body)
            .await
            .assert_error(status, ty);
    }
    h.json(
        Method::PUT,
        "/2015-03-31/functions/nope/configuration",
        json!({"MemorySize": 256}),
    )
    .await
    .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn updates_code_with_dry_run_and_revision_precondition() {
    let h = Harness::new().await;
    let c0 = h.create("f", json!({})).await.json();
    let zip2 = python_zip("return {'v': 2}");
    let sha2 = b64(&sha2::Sha256::digest(&zip2));

    let dry = h
        .json(
            Method::PUT,
            "/2015-03-31/functions/f/code",
            json!({"ZipFile": b64(&zip2), "DryRun": true}),
        )
        .await;
    assert_eq!(dry.status, 200);
    assert_eq!(dry.json()["CodeSha256"], sha2.as_str());
    let still = h
        .call(Method::GET, "/2015-03-31/functions/f/configuration", "")
        .await
        .json();
    assert_eq!(still["CodeSha256"], c0["CodeSha256"]);
    assert_eq!(still["RevisionId"], c0["RevisionId"]);

    h.json(
        Method::PUT,
        "/2015-03-31/functions/f/code",
        json!({"ZipFile": b64(&zip2), "RevisionId": "00000000-0000-0000-0000-000000000000"}),
    )
    .await
    .assert_error(412, "PreconditionFailedException");

    let r = h
        .json(
            Method::PUT,
            "/2015-03-31/functions/f/code",
            json!({"ZipFile": b64(&zip2), "RevisionId": c0["RevisionId"], "Publish": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let c1 = r.json();
    assert_eq!(c1["CodeSha256"], sha2.as_str());
    assert_eq!(c1["CodeSize"], zip2.len() as u64);
    assert_ne!(c1["RevisionId"], c0["RevisionId"]);

    h.json(
        Method::PUT,
        "/2015-03-31/functions/f/code",
        json!({"ZipFile": b64(b"PK\x03\x04garbage")}),
    )
    .await
    .assert_error(400, "InvalidParameterValueException");
    h.json(Method::PUT, "/2015-03-31/functions/f/code", json!({}))
        .await
        .assert_error(400, "InvalidParameterValueException");
    h.json(
        Method::PUT,
        "/2015-03-31/functions/nope/code",
        json!({"ZipFile": b64(&zip2)}),
    )
    .await
    .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn deletes_function() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    h.call(
        Method::DELETE,
        "/2015-03-31/functions/f?Qualifier=%24LATEST",
        "",
    )
    .await
    .assert_error(400, "InvalidParameterValueException");
    let r = h.call(Method::DELETE, "/2015-03-31/functions/f", "").await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    h.call(Method::GET, "/2015-03-31/functions/f", "")
        .await
        .assert_error(404, "ResourceNotFoundException");
    h.call(Method::DELETE, "/2015-03-31/functions/f", "")
        .await
        .assert_error(404, "ResourceNotFoundException");
    // The name can be used again.
    assert_eq!(h.create("f", json!({})).await.status, 201);
}

#[tokio::test]
async fn tags_untags_and_lists_tags_by_arn() {
    let h = Harness::new().await;
    h.create("f", json!({"Tags": {"a": "1"}})).await;
    let path = format!("/2017-03-31/tags/{}", encode(ARN_F));
    let r = h.call(Method::GET, &path, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"Tags": {"a": "1"}}));

    let r = h
        .json(Method::POST, &path, json!({"Tags": {"b": "2", "c": "3"}}))
        .await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let r = h
        .call(Method::DELETE, &format!("{path}?tagKeys=a&tagKeys=c"), "")
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        h.call(Method::GET, &path, "").await.json(),
        json!({"Tags": {"b": "2"}})
    );
    let many: serde_json::Map<String, serde_json::Value> =
        (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
    h.json(Method::POST, &path, json!({ "Tags": many }))
        .await
        .assert_error(400, "InvalidParameterValueException");

    h.call(Method::GET, "/2017-03-31/tags/f", "")
        .await
        .assert_error(400, "ValidationException");
    h.call(
        Method::GET,
        &format!(
            "/2017-03-31/tags/{}",
            encode("arn:aws:lambda:us-east-1:000000000000:function:nope")
        ),
        "",
    )
    .await
    .assert_error(404, "ResourceNotFoundException");
    h.json(Method::POST, &path, json!({}))
        .await
        .assert_error(400, "ValidationException");
}

#[tokio::test]
async fn reports_account_settings() {
    let h = Harness::new().await;
    let a = h.create("a", json!({})).await.json();
    let b = h.create("b", json!({})).await.json();
    for uri in [
        "/2016-08-19/account-settings/",
        "/2016-08-19/account-settings",
    ] {
        let r = h.call(Method::GET, uri, "").await;
        assert_eq!(r.status, 200);
        let s = r.json();
        assert_eq!(s["AccountLimit"]["CodeSizeUnzipped"], 262_144_000);
        assert_eq!(s["AccountLimit"]["CodeSizeZipped"], 52_428_800);
        assert_eq!(s["AccountLimit"]["ConcurrentExecutions"], 1000);
        assert_eq!(s["AccountLimit"]["UnreservedConcurrentExecutions"], 1000);
        assert!(s["AccountLimit"]["TotalCodeSize"].as_u64().unwrap() > 0);
        assert_eq!(s["AccountUsage"]["FunctionCount"], 2);
        assert_eq!(
            s["AccountUsage"]["TotalCodeSize"],
            a["CodeSize"].as_u64().unwrap() + b["CodeSize"].as_u64().unwrap()
        );
    }
}

#[tokio::test]
async fn unknown_route_and_method_get_aws_shaped_404() {
    let h = Harness::new().await;
    let r = h.call(Method::GET, "/2015-03-31/nothing", "").await;
    r.assert_error(404, "UnknownOperationException");
    assert!(r.headers.contains_key("x-amzn-requestid"));
    h.call(Method::PATCH, "/2015-03-31/functions/f", "")
        .await
        .assert_error(404, "UnknownOperationException");
}
