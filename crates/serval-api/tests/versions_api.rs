//! Versions, aliases, concurrency settings and event-invoke configs through the router, on a
//! real store and engine: routes, validation, AWS's error types and messages, rendering.

mod common;

use common::*;
use http::Method;
use serde_json::json;
use sha2::Digest;

const ARN_F: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";
const F: &str = "/2015-03-31/functions/f";

async fn publish(h: &Harness, body: serde_json::Value) -> Reply {
    h.json(Method::POST, &format!("{F}/versions"), body).await
}

async fn set_memory(h: &Harness, mb: u32) {
    let r = h
        .json(
            Method::PUT,
            &format!("{F}/configuration"),
            json!({ "MemorySize": mb }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

async fn reserved(h: &Harness) -> serde_json::Value {
    h.call(Method::GET, "/2019-09-30/functions/f/concurrency", "")
        .await
        .json()
}

fn versions_of(list: &serde_json::Value) -> Vec<String> {
    list["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn publishes_versions_and_skips_unchanged_latest() {
    let h = Harness::new().await;
    let latest = h.create("f", json!({"Description": "d0"})).await.json();
    let r = publish(&h, json!({})).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v1 = r.json();
    assert_eq!(v1["Version"], "1");
    assert_eq!(v1["FunctionArn"], format!("{ARN_F}:1"));
    assert_eq!(v1["Description"], "d0");
    assert_eq!(v1["CodeSha256"], latest["CodeSha256"]);
    assert_ne!(v1["RevisionId"], latest["RevisionId"]);

    // Nothing changed since version 1: AWS returns it again, whatever the description.
    let again = publish(&h, json!({"Description": "other"})).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json()["Version"], "1");
    assert_eq!(again.json()["RevisionId"], v1["RevisionId"]);

    set_memory(&h, 256).await;
    let v2 = publish(&h, json!({"Description": "release 2"}))
        .await
        .json();
    assert_eq!(v2["Version"], "2");
    assert_eq!(v2["Description"], "release 2");
    assert_eq!(v2["MemorySize"], 256);

    // The published versions keep their snapshot.
    let c1 = h
        .call(Method::GET, &format!("{F}/configuration?Qualifier=1"), "")
        .await
        .json();
    assert_eq!(c1["MemorySize"], 128);
    assert_eq!(c1["Version"], "1");
    assert_eq!(c1["FunctionArn"], format!("{ARN_F}:1"));
    let g2 = h.call(Method::GET, &format!("{F}:2"), "").await.json();
    assert_eq!(g2["Configuration"]["Version"], "2");
    assert_eq!(g2["Configuration"]["FunctionArn"], format!("{ARN_F}:2"));
    let unqualified = h.call(Method::GET, F, "").await.json();
    assert_eq!(unqualified["Configuration"]["FunctionArn"], ARN_F);
    assert_eq!(unqualified["Configuration"]["Version"], "$LATEST");
    let latest_q = h
        .call(Method::GET, &format!("{F}?Qualifier=%24LATEST"), "")
        .await
        .json();
    assert_eq!(
        latest_q["Configuration"]["FunctionArn"],
        format!("{ARN_F}:$LATEST")
    );

    let r = h
        .call(Method::GET, &format!("{F}/configuration?Qualifier=9"), "")
        .await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(r.message(), format!("Function not found: {ARN_F}:9"));
    h.json(
        Method::POST,
        "/2015-03-31/functions/nope/versions",
        json!({}),
    )
    .await
    .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn publish_honours_code_sha256_and_revision_id() {
    let h = Harness::new().await;
    let latest = h.create("f", json!({})).await.json();
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let r = publish(&h, json!({ "CodeSha256": wrong })).await;
    r.assert_error(400, "InvalidParameterValueException");
    assert_eq!(
        r.message(),
        format!(
            "CodeSHA256 ({wrong}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
            latest["CodeSha256"].as_str().unwrap()
        )
    );
    publish(
        &h,
        json!({"RevisionId": "00000000-0000-0000-0000-000000000000"}),
    )
    .await
    .assert_error(412, "PreconditionFailedException");
    let ok = publish(
        &h,
        json!({"CodeSha256": latest["CodeSha256"], "RevisionId": latest["RevisionId"]}),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", String::from_utf8_lossy(&ok.body));
    publish(&h, json!({"Description": "x".repeat(257)}))
        .await
        .assert_error(400, "ValidationException");
}

#[tokio::test]
async fn publishes_on_create_and_code_update() {
    let h = Harness::new().await;
    let c = h.create("f", json!({"Publish": true})).await;
    assert_eq!(c.status, 201);
    assert_eq!(c.json()["Version"], "1");
    let zip2 = python_zip("return {'v': 2}");
    let r = h
        .json(
            Method::PUT,
            &format!("{F}/code"),
            json!({"ZipFile": b64(&zip2), "Publish": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v2 = r.json();
    assert_eq!(v2["Version"], "2");
    assert_eq!(v2["FunctionArn"], format!("{ARN_F}:2"));
    assert_eq!(v2["CodeSha256"], b64(&sha2::Sha256::digest(&zip2)));
    // Code and configuration updates stay on $LATEST.
    h.json(
        Method::PUT,
        &format!("{F}:1/configuration"),
        json!({"MemorySize": 256}),
    )
    .await
    .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn lists_versions_latest_first_in_pages() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    publish(&h, json!({})).await;
    set_memory(&h, 256).await;
    publish(&h, json!({})).await;
    let all = h.call(Method::GET, &format!("{F}/versions"), "").await;
    assert_eq!(all.status, 200);
    let all = all.json();
    assert_eq!(versions_of(&all), ["$LATEST", "1", "2"]);
    assert_eq!(
        all["Versions"][0]["FunctionArn"],
        format!("{ARN_F}:$LATEST")
    );
    assert!(all.get("NextMarker").is_none(), "{all}");

    let p1 = h
        .call(Method::GET, &format!("{F}/versions?MaxItems=2"), "")
        .await
        .json();
    assert_eq!(versions_of(&p1), ["$LATEST", "1"]);
    let marker = p1["NextMarker"].as_str().unwrap();
    let p2 = h
        .call(
            Method::GET,
            &format!("{F}/versions?MaxItems=2&Marker={marker}"),
            "",
        )
        .await
        .json();
    assert_eq!(versions_of(&p2), ["2"]);
    h.call(Method::GET, &format!("{F}/versions?MaxItems=0"), "")
        .await
        .assert_error(400, "ValidationException");
    h.call(Method::GET, "/2015-03-31/functions/nope/versions", "")
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn creates_reads_updates_and_deletes_aliases() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    publish(&h, json!({})).await;
    set_memory(&h, 256).await;
    publish(&h, json!({})).await;

    let r = h
        .json(
            Method::POST,
            &format!("{F}/aliases"),
            json!({"Name": "live", "FunctionVersion": "1", "Description": "prod"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let live = r.json();
    assert_eq!(live["AliasArn"], format!("{ARN_F}:live"));
    assert_eq!(live["Name"], "live");
    assert_eq!(live["FunctionVersion"], "1");
    assert_eq!(live["Description"], "prod");
    assert!(live.get("RoutingConfig").is_none(), "{live}");
    assert_eq!(live["RevisionId"].as_str().unwrap().len(), 36);

    let dup = h
        .json(
            Method::POST,
            &format!("{F}/aliases"),
            json!({"Name": "live", "FunctionVersion": "2"}),
        )
        .await;
    dup.assert_error(409, "ResourceConflictException");
    assert_eq!(dup.message(), format!("Alias already exists: {ARN_F}:live"));

    // Read through the alias: its version, under the alias's ARN.
    let c = h
        .call(
            Method::GET,
            &format!("{F}/configuration?Qualifier=live"),
            "",
        )
        .await
        .json();
    assert_eq!(c["Version"], "1");
    assert_eq!(c["FunctionArn"], format!("{ARN_F}:live"));
    let r = h
        .call(
            Method::GET,
            &format!("{F}/configuration?Qualifier=nope"),
            "",
        )
        .await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(r.message(), format!("Function not found: {ARN_F}:nope"));

    let got = h.call(Method::GET, &format!("{F}/aliases/live"), "").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), live);
    let missing = h.call(Method::GET, &format!("{F}/aliases/nope"), "").await;
    missing.assert_error(404, "ResourceNotFoundException");
    assert_eq!(
        missing.message(),
        format!("Cannot find alias arn: {ARN_F}:nope")
    );

    let r = h
        .json(
            Method::PUT,
            &format!("{F}/aliases/live"),
            json!({"RoutingConfig": {"AdditionalVersionWeights": {"2": 0.25}},
                   "RevisionId": live["RevisionId"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let updated = r.json();
    assert_eq!(
        updated["RoutingConfig"],
        json!({"AdditionalVersionWeights": {"2": 0.25}})
    );
    assert_eq!(updated["Description"], "prod", "kept when absent");
    assert_ne!(updated["RevisionId"], live["RevisionId"]);
    h.json(
        Method::PUT,
        &format!("{F}/aliases/live"),
        json!({"Description": "x", "RevisionId": live["RevisionId"]}),
    )
    .await
    .assert_error(412, "PreconditionFailedException");
    let r = h
        .json(
            Method::PUT,
            &format!("{F}/aliases/nope"),
            json!({"Description": "x"}),
        )
        .await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(r.message(), format!("Alias not found: {ARN_F}:nope"));

    h.json(
        Method::POST,
        &format!("{F}/aliases"),
        json!({"Name": "edge", "FunctionVersion": "$LATEST"}),
    )
    .await;
    let all = h
        .call(Method::GET, &format!("{F}/aliases"), "")
        .await
        .json();
    let names: Vec<&str> = all["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["edge", "live"]);
    let only_latest = h
        .call(
            Method::GET,
            &format!("{F}/aliases?FunctionVersion=%24LATEST"),
            "",
        )
        .await
        .json();
    assert_eq!(only_latest["Aliases"].as_array().unwrap().len(), 1);
    let p1 = h
        .call(Method::GET, &format!("{F}/aliases?MaxItems=1"), "")
        .await
        .json();
    assert_eq!(p1["Aliases"][0]["Name"], "edge");
    let marker = p1["NextMarker"].as_str().unwrap();
    let p2 = h
        .call(
            Method::GET,
            &format!("{F}/aliases?MaxItems=1&Marker={marker}"),
            "",
        )
        .await
        .json();
    assert_eq!(p2["Aliases"][0]["Name"], "live");

    let r = h
        .call(Method::DELETE, &format!("{F}/aliases/edge"), "")
        .await;
    assert_eq!(r.status, 204);
    // Deleting an alias that does not exist is no error on AWS.
    let r = h
        .call(Method::DELETE, &format!("{F}/aliases/edge"), "")
        .await;
    assert_eq!(r.status, 204);
    h.call(Method::GET, &format!("{F}/aliases/edge"), "")
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn validates_aliases_as_aws_does() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    publish(&h, json!({})).await;
    let cases: Vec<(serde_json::Value, u16, &str, &str)> = vec![
        (
            json!({"FunctionVersion": "1"}),
            400,
            "ValidationException",
            "Value null at 'name'",
        ),
        (
            json!({"Name": "123", "FunctionVersion": "1"}),
            400,
            "ValidationException",
            "at 'name'",
        ),
        (
            json!({"Name": "a"}),
            400,
            "ValidationException",
            "Value null at 'functionVersion'",
        ),
        (
            json!({"Name": "a", "FunctionVersion": "one"}),
            400,
            "ValidationException",
            "at 'functionVersion'",
        ),
        (
            json!({"Name": "a", "FunctionVersion": "7"}),
            404,
            "ResourceNotFoundException",
            "Function not found: arn:aws:lambda:us-east-1:000000000000:function:f:7",
        ),
        (
            json!({"Name": "a", "FunctionVersion": "1",
                   "RoutingConfig": {"AdditionalVersionWeights": {"7": 0.5}}}),
            404,
            "ResourceNotFoundException",
            "function:f:7",
        ),
        (
            json!({"Name": "a", "FunctionVersion": "1",
                   "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}),
            400,
            "InvalidParameterValueException",
            "is already included in routing configuration",
        ),
        (
            json!({"Name": "a", "FunctionVersion": "$LATEST",
                   "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}),
            400,
            "InvalidParameterValueException",
            "$LATEST is not supported for an alias pointing to more than 1 version",
        ),
        (
            json!({"Name": "a", "FunctionVersion": "1",
                   "RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}}}),
            400,
            "ValidationException",
            "routingConfig.additionalVersionWeights",
        ),
    ];
    for (i, (body, status, ty, fragment)) in cases.into_iter().enumerate() {
        let r = h.json(Method::POST, &format!("{F}/aliases"), body).await;
        r.assert_error(status, ty);
        assert!(
            r.message().contains(fragment),
            "case {i}: {:?} lacks {fragment:?}",
            r.message()
        );
    }
    h.json(
        Method::POST,
        "/2015-03-31/functions/nope/aliases",
        json!({"Name": "a", "FunctionVersion": "1"}),
    )
    .await
    .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn deletes_one_version_unless_an_alias_routes_to_it() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    for mb in [256, 512, 1024] {
        publish(&h, json!({})).await;
        set_memory(&h, mb).await;
    }
    // Versions 1, 2, 3; live → 1 with 10% to 2.
    h.json(
        Method::POST,
        &format!("{F}/aliases"),
        json!({"Name": "live", "FunctionVersion": "1",
               "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}}}),
    )
    .await;
    for v in ["1", "2"] {
        let r = h
            .call(Method::DELETE, &format!("{F}?Qualifier={v}"), "")
            .await;
        r.assert_error(409, "ResourceConflictException");
        assert_eq!(
            r.message(),
            "Unable to delete version because the following aliases reference it: [live]"
        );
    }
    let r = h.call(Method::DELETE, &format!("{F}:3"), "").await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let list = h
        .call(Method::GET, &format!("{F}/versions"), "")
        .await
        .json();
    assert_eq!(versions_of(&list), ["$LATEST", "1", "2"]);
    h.call(Method::GET, &format!("{F}:3"), "")
        .await
        .assert_error(404, "ResourceNotFoundException");
    // A version that does not exist: AWS answers 204.
    let r = h
        .call(Method::DELETE, &format!("{F}?Qualifier=9"), "")
        .await;
    assert_eq!(r.status, 204);
    let r = h
        .call(Method::DELETE, &format!("{F}?Qualifier=live"), "")
        .await;
    r.assert_error(400, "InvalidParameterValueException");
    assert_eq!(
        r.message(),
        "Deletion of aliases is not currently supported."
    );
    h.call(Method::DELETE, &format!("{F}?Qualifier=%24LATEST"), "")
        .await
        .assert_error(400, "InvalidParameterValueException");
    h.call(Method::DELETE, "/2015-03-31/functions/nope?Qualifier=1", "")
        .await
        .assert_error(404, "ResourceNotFoundException");

    // Version numbers are never reused.
    h.call(Method::DELETE, &format!("{F}/aliases/live"), "")
        .await;
    set_memory(&h, 2048).await;
    assert_eq!(publish(&h, json!({})).await.json()["Version"], "4");

    // Without a qualifier everything goes.
    assert_eq!(h.call(Method::DELETE, F, "").await.status, 204);
    h.call(Method::GET, &format!("{F}/versions"), "")
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn reserves_concurrency_within_the_account_minimum() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    assert_eq!(reserved(&h).await, json!({}));
    let r = h
        .json(
            Method::PUT,
            "/2017-10-31/functions/f/concurrency",
            json!({"ReservedConcurrentExecutions": 10}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!({"ReservedConcurrentExecutions": 10}));
    assert_eq!(
        reserved(&h).await,
        json!({"ReservedConcurrentExecutions": 10})
    );
    let g = h.call(Method::GET, F, "").await.json();
    assert_eq!(
        g["Concurrency"],
        json!({"ReservedConcurrentExecutions": 10})
    );
    let s = h
        .call(Method::GET, "/2016-08-19/account-settings/", "")
        .await
        .json();
    assert_eq!(s["AccountLimit"]["ConcurrentExecutions"], 1000);
    assert_eq!(s["AccountLimit"]["UnreservedConcurrentExecutions"], 990);

    // The old reservation counts as freed: 900 leaves exactly the minimum of 100.
    let r = h
        .json(
            Method::PUT,
            "/2017-10-31/functions/f/concurrency",
            json!({"ReservedConcurrentExecutions": 900}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = h
        .json(
            Method::PUT,
            "/2017-10-31/functions/f/concurrency",
            json!({"ReservedConcurrentExecutions": 901}),
        )
        .await;
    r.assert_error(400, "InvalidParameterValueException");
    assert_eq!(
        r.message(),
        "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."
    );
    h.json(
        Method::PUT,
        "/2017-10-31/functions/f/concurrency",
        json!({"ReservedConcurrentExecutions": -1}),
    )
    .await
    .assert_error(400, "ValidationException");
    h.json(
        Method::PUT,
        "/2017-10-31/functions/f/concurrency",
        json!({}),
    )
    .await
    .assert_error(400, "ValidationException");
    h.json(
        Method::PUT,
        "/2017-10-31/functions/f%3A1/concurrency",
        json!({"ReservedConcurrentExecutions": 1}),
    )
    .await
    .assert_error(400, "InvalidParameterValueException");
    h.json(
        Method::PUT,
        "/2017-10-31/functions/nope/concurrency",
        json!({"ReservedConcurrentExecutions": 1}),
    )
    .await
    .assert_error(404, "ResourceNotFoundException");

    let r = h
        .call(Method::DELETE, "/2017-10-31/functions/f/concurrency", "")
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(reserved(&h).await, json!({}));
    let g = h.call(Method::GET, F, "").await.json();
    assert!(g.get("Concurrency").is_none(), "{g}");
}

#[tokio::test]
async fn configures_provisioned_concurrency_on_versions_and_aliases() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    publish(&h, json!({})).await;
    h.json(
        Method::POST,
        &format!("{F}/aliases"),
        json!({"Name": "live", "FunctionVersion": "1"}),
    )
    .await;
    let pc = "/2019-09-30/functions/f/provisioned-concurrency";
    let r = h
        .json(
            Method::PUT,
            &format!("{pc}?Qualifier=%24LATEST"),
            json!({"ProvisionedConcurrentExecutions": 1}),
        )
        .await;
    r.assert_error(400, "InvalidParameterValueException");
    assert_eq!(
        r.message(),
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
    );
    h.json(
        Method::PUT,
        pc,
        json!({"ProvisionedConcurrentExecutions": 1}),
    )
    .await
    .assert_error(400, "ValidationException");
    let r = h
        .json(
            Method::PUT,
            &format!("{pc}?Qualifier=9"),
            json!({"ProvisionedConcurrentExecutions": 1}),
        )
        .await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(r.message(), format!("Function not found: {ARN_F}:9"));
    let r = h
        .json(
            Method::PUT,
            &format!("{pc}?Qualifier=nope"),
            json!({"ProvisionedConcurrentExecutions": 1}),
        )
        .await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(r.message(), format!("Cannot find alias arn: {ARN_F}:nope"));
    h.json(
        Method::PUT,
        &format!("{pc}?Qualifier=live"),
        json!({"ProvisionedConcurrentExecutions": 0}),
    )
    .await
    .assert_error(400, "ValidationException");

    // An alias of `$LATEST` is refused like `$LATEST`.
    h.json(
        Method::POST,
        &format!("{F}/aliases"),
        json!({"Name": "edge", "FunctionVersion": "$LATEST"}),
    )
    .await;
    let r = h
        .json(
            Method::PUT,
            &format!("{pc}?Qualifier=edge"),
            json!({"ProvisionedConcurrentExecutions": 1}),
        )
        .await;
    r.assert_error(400, "InvalidParameterValueException");
    // Without a reservation, provisioned environments come out of the unreserved pool and
    // leave its minimum: a caller cannot have Serval keep millions of them.
    let r = h
        .json(
            Method::PUT,
            &format!("{pc}?Qualifier=live"),
            json!({"ProvisionedConcurrentExecutions": 4_000_000_000u64}),
        )
        .await;
    r.assert_error(400, "InvalidParameterValueException");
    assert!(
        r.message().contains("unreserved concurrency"),
        "{}",
        r.message()
    );

    let r = h
        .call(Method::GET, &format!("{pc}?Qualifier=live"), "")
        .await;
    r.assert_error(404, "ProvisionedConcurrencyConfigNotFoundException");
    assert_eq!(
        r.message(),
        "No Provisioned Concurrency Config found for this function"
    );

    h.json(
        Method::PUT,
        "/2017-10-31/functions/f/concurrency",
        json!({"ReservedConcurrentExecutions": 2}),
    )
    .await;
    let r = h
        .json(
            Method::PUT,
            &format!("{pc}?Qualifier=live"),
            json!({"ProvisionedConcurrentExecutions": 3}),
        )
        .await;
    r.assert_error(400, "InvalidParameterValueException");
    assert_eq!(
        r.message(),
        "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function"
    );

    let r = h
        .json(
            Method::PUT,
            &format!("{pc}?Qualifier=live"),
            json!({"ProvisionedConcurrentExecutions": 2}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let put = r.json();
    assert_eq!(put["RequestedProvisionedConcurrentExecutions"], 2);
    assert!(
        ["IN_PROGRESS", "READY", "FAILED"].contains(&put["Status"].as_str().unwrap()),
        "{put}"
    );
    assert!(put["LastModified"].as_str().unwrap().ends_with("+0000"));
    // The reservation may not drop below what is provisioned.
    let r = h
        .json(
            Method::PUT,
            "/2017-10-31/functions/f/concurrency",
            json!({"ReservedConcurrentExecutions": 1}),
        )
        .await;
    r.assert_error(400, "InvalidParameterValueException");
    assert!(r
        .message()
        .contains("should not be lower than function's total provisioned concurrency [2]"));
    // A version provisioned through an alias cannot be provisioned directly too.
    h.json(
        Method::PUT,
        &format!("{pc}?Qualifier=1"),
        json!({"ProvisionedConcurrentExecutions": 1}),
    )
    .await
    .assert_error(409, "ResourceConflictException");
    // Nor can the provisioned alias move to `$LATEST`.
    h.json(
        Method::PUT,
        &format!("{F}/aliases/live"),
        json!({"FunctionVersion": "$LATEST"}),
    )
    .await
    .assert_error(400, "InvalidParameterValueException");

    let got = h
        .call(Method::GET, &format!("{pc}?Qualifier=live"), "")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["RequestedProvisionedConcurrentExecutions"], 2);
    let list = h.call(Method::GET, &format!("{pc}?List=ALL"), "").await;
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(
        list["ProvisionedConcurrencyConfigs"][0]["FunctionArn"],
        format!("{ARN_F}:live")
    );

    let r = h
        .call(Method::DELETE, &format!("{pc}?Qualifier=live"), "")
        .await;
    assert_eq!(r.status, 204);
    h.call(Method::GET, &format!("{pc}?Qualifier=live"), "")
        .await
        .assert_error(404, "ProvisionedConcurrencyConfigNotFoundException");
    let list = h
        .call(Method::GET, &format!("{pc}?List=ALL"), "")
        .await
        .json();
    assert_eq!(list["ProvisionedConcurrencyConfigs"], json!([]));
}

#[tokio::test]
async fn puts_updates_and_deletes_event_invoke_configs() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    h.create("dest", json!({})).await;
    let eic = "/2019-09-25/functions/f/event-invoke-config";
    let dest = "arn:aws:lambda:us-east-1:000000000000:function:dest";

    let r = h.call(Method::GET, eic, "").await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(
        r.message(),
        format!("The function {ARN_F}:$LATEST doesn't have an EventInvokeConfig")
    );
    h.json(Method::POST, eic, json!({"MaximumRetryAttempts": 1}))
        .await
        .assert_error(404, "ResourceNotFoundException");

    let r = h
        .json(
            Method::PUT,
            eic,
            json!({"MaximumRetryAttempts": 1,
                   "DestinationConfig": {"OnFailure": {"Destination": dest}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let put = r.json();
    assert_eq!(put["FunctionArn"], format!("{ARN_F}:$LATEST"));
    assert_eq!(put["MaximumRetryAttempts"], 1);
    assert!(put.get("MaximumEventAgeInSeconds").is_none(), "{put}");
    assert_eq!(
        put["DestinationConfig"],
        json!({"OnSuccess": {}, "OnFailure": {"Destination": dest}})
    );
    assert!(put["LastModified"].as_f64().unwrap() > 1.6e9, "{put}");

    // Update changes only what it names.
    let up = h
        .json(Method::POST, eic, json!({"MaximumEventAgeInSeconds": 120}))
        .await
        .json();
    assert_eq!(up["MaximumRetryAttempts"], 1);
    assert_eq!(up["MaximumEventAgeInSeconds"], 120);
    assert_eq!(up["DestinationConfig"]["OnFailure"]["Destination"], dest);
    // Put replaces: absent members are unset.
    let replaced = h
        .json(Method::PUT, eic, json!({"MaximumEventAgeInSeconds": 60}))
        .await
        .json();
    assert!(replaced.get("MaximumRetryAttempts").is_none(), "{replaced}");
    assert_eq!(
        replaced["DestinationConfig"],
        json!({"OnSuccess": {}, "OnFailure": {}})
    );
    assert_eq!(h.call(Method::GET, eic, "").await.json(), replaced);

    for (body, status, ty, fragment) in [
        (
            json!({}),
            400,
            "InvalidParameterValueException",
            "at least one",
        ),
        (
            json!({"MaximumRetryAttempts": 3}),
            400,
            "ValidationException",
            "maximumRetryAttempts",
        ),
        (
            json!({"MaximumEventAgeInSeconds": 59}),
            400,
            "ValidationException",
            "maximumEventAgeInSeconds",
        ),
        (
            json!({"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}}}),
            400,
            "InvalidParameterValueException",
            "only Lambda function destinations",
        ),
        (
            json!({"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:lambda:us-east-1:000000000000:function:ghost"}}}),
            400,
            "InvalidParameterValueException",
            "The destination ARN arn:aws:lambda:us-east-1:000000000000:function:ghost is invalid.",
        ),
        (
            json!({"DestinationConfig": {"OnSuccess": {"Destination": ARN_F}}}),
            400,
            "InvalidParameterValueException",
            "destination for itself",
        ),
        (
            json!({"DestinationConfig": {"OnSuccess": {"Destination": "nonsense"}}}),
            400,
            "ValidationException",
            "destinationConfig.onSuccess.destination",
        ),
    ] {
        let r = h.json(Method::PUT, eic, body.clone()).await;
        r.assert_error(status, ty);
        assert!(r.message().contains(fragment), "{body}: {}", r.message());
    }

    // On a version, and the qualifier must exist.
    publish(&h, json!({})).await;
    let v1 = h
        .json(
            Method::PUT,
            &format!("{eic}?Qualifier=1"),
            json!({"MaximumRetryAttempts": 0}),
        )
        .await;
    assert_eq!(v1.status, 200, "{}", String::from_utf8_lossy(&v1.body));
    assert_eq!(v1.json()["FunctionArn"], format!("{ARN_F}:1"));
    let r = h
        .json(
            Method::PUT,
            &format!("{eic}?Qualifier=9"),
            json!({"MaximumRetryAttempts": 0}),
        )
        .await;
    r.assert_error(404, "ResourceNotFoundException");
    assert_eq!(r.message(), "The function doesn't exist.");

    let list = h.call(Method::GET, &format!("{eic}/list"), "").await;
    assert_eq!(list.status, 200);
    let arns: Vec<String> = list.json()["FunctionEventInvokeConfigs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["FunctionArn"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(arns, [format!("{ARN_F}:$LATEST"), format!("{ARN_F}:1")]);
    let p1 = h
        .call(Method::GET, &format!("{eic}/list?MaxItems=1"), "")
        .await
        .json();
    assert_eq!(
        p1["FunctionEventInvokeConfigs"].as_array().unwrap().len(),
        1
    );
    assert!(p1["NextMarker"].is_string(), "{p1}");

    // Deleting the version takes its config with it.
    assert_eq!(
        h.call(Method::DELETE, &format!("{F}:1"), "").await.status,
        204
    );
    let r = h.call(Method::DELETE, eic, "").await;
    assert_eq!(r.status, 204);
    h.call(Method::DELETE, eic, "")
        .await
        .assert_error(404, "ResourceNotFoundException");
    let list = h.call(Method::GET, &format!("{eic}/list"), "").await.json();
    assert_eq!(list["FunctionEventInvokeConfigs"], json!([]));
}

#[tokio::test]
async fn dry_run_checks_versions_and_aliases() {
    let h = Harness::new().await;
    h.create("f", json!({})).await;
    publish(&h, json!({})).await;
    h.json(
        Method::POST,
        &format!("{F}/aliases"),
        json!({"Name": "live", "FunctionVersion": "1"}),
    )
    .await;
    for (q, status) in [("1", 204), ("live", 204), ("2", 404), ("nope", 404)] {
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(format!("{F}/invocations?Qualifier={q}"))
            .header("x-amz-invocation-type", "DryRun")
            .body(axum::body::Body::empty())
            .unwrap();
        let r = h.send(req).await;
        assert_eq!(r.status.as_u16(), status, "{q}");
    }
}
