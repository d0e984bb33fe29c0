//! EventBridge's JSON 1.1 protocol (`AWSEvents.*`) through the router, on a real store and
//! engine: scheduled rules and Lambda targets as boto3's `events` client and `aws events` see
//! them, AWS's error types and messages, and a rule firing a real function through the
//! durable queue.

mod common;

use std::time::Duration;

use axum::body::Body;
use common::*;
use http::{Method, Request};
use serde_json::json;
use serval_model::{RuleName, RuleState, RULES_MAX};

const RULE_ARN_PREFIX: &str = "arn:aws:events:us-east-1:000000000000:rule/";
const FN_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:";

/// One EventBridge call through `router`.
async fn call_on(router: &axum::Router, op: &str, body: &str) -> Reply {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("host", "127.0.0.1:9000")
        .header("x-amz-target", format!("AWSEvents.{op}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(router.clone(), req)
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// One EventBridge call through the harness's router.
async fn ev(h: &Harness, op: &str, body: serde_json::Value) -> Reply {
    call_on(&h.router, op, &body.to_string()).await
}

/// Asserts a 200 and returns the JSON body (`{}` for an empty one).
fn ok(r: &Reply) -> serde_json::Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/x-amz-json-1.1");
    if r.body.is_empty() {
        json!({})
    } else {
        r.json()
    }
}

/// Asserts a JSON 1.1 error of `status` and type `ty`; returns its message.
fn err(r: &Reply, status: u16, ty: &str) -> String {
    assert_eq!(
        (r.status.as_u16(), r.error_type()),
        (status, ty),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let j = r.json();
    assert_eq!(j["__type"], ty);
    j["message"].as_str().unwrap_or_default().to_owned()
}

async fn put_rule(h: &Harness, name: &str, expr: &str) -> serde_json::Value {
    ok(&ev(
        h,
        "PutRule",
        json!({"Name": name, "ScheduleExpression": expr}),
    )
    .await)
}

fn target(id: &str, function: &str) -> serde_json::Value {
    json!({"Id": id, "Arn": format!("{FN_ARN}{function}")})
}

fn ids(list: &serde_json::Value) -> Vec<String> {
    list["Targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Id"].as_str().unwrap().to_owned())
        .collect()
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn put_describe_and_list_a_rule() {
    let h = Harness::new().await;
    let r = ev(
        &h,
        "PutRule",
        json!({
            "Name": "nightly.job-1",
            "ScheduleExpression": "cron(0 12 * * ? *)",
            "Description": "noon",
            "RoleArn": "arn:aws:iam::000000000000:role/events",
            "EventBusName": "default",
        }),
    )
    .await;
    assert_eq!(
        ok(&r),
        json!({"RuleArn": format!("{RULE_ARN_PREFIX}nightly.job-1")})
    );
    assert!(r.headers.contains_key("x-amzn-requestid"));

    let d = ok(&ev(&h, "DescribeRule", json!({"Name": "nightly.job-1"})).await);
    assert_eq!(
        d,
        json!({
            "Name": "nightly.job-1",
            "Arn": format!("{RULE_ARN_PREFIX}nightly.job-1"),
            "ScheduleExpression": "cron(0 12 * * ? *)",
            "State": "ENABLED",
            "Description": "noon",
            "RoleArn": "arn:aws:iam::000000000000:role/events",
            "EventBusName": "default",
            "CreatedBy": "000000000000",
        })
    );
    // The bus by ARN is the default bus too.
    let bus = "arn:aws:events:us-east-1:000000000000:event-bus/default";
    let d = ok(&ev(
        &h,
        "DescribeRule",
        json!({"Name": "nightly.job-1", "EventBusName": bus}),
    )
    .await);
    assert_eq!(d["Name"], "nightly.job-1");

    let list = ok(&ev(&h, "ListRules", json!({})).await);
    assert_eq!(
        list,
        json!({"Rules": [{
            "Name": "nightly.job-1",
            "Arn": format!("{RULE_ARN_PREFIX}nightly.job-1"),
            "ScheduleExpression": "cron(0 12 * * ? *)",
            "State": "ENABLED",
            "Description": "noon",
            "RoleArn": "arn:aws:iam::000000000000:role/events",
            "EventBusName": "default",
        }]})
    );
    // Stored as given.
    let stored = h
        .store
        .get_rule(&RuleName::parse("nightly.job-1").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(stored.schedule_expression, "cron(0 12 * * ? *)");
}

#[tokio::test]
async fn put_rule_replaces_the_rule_and_keeps_its_targets_and_tags() {
    let h = Harness::new().await;
    ok(&ev(
        &h,
        "PutRule",
        json!({"Name": "r", "ScheduleExpression": "rate(5 minutes)", "Description": "d",
               "Tags": [{"Key": "team", "Value": "core"}]}),
    )
    .await);
    ok(&ev(
        &h,
        "PutTargets",
        json!({"Rule": "r", "Targets": [target("t", "f")]}),
    )
    .await);
    let name = RuleName::parse("r").unwrap();
    let anchor = h.store.get_rule(&name).unwrap().unwrap().anchor_ms;
    // Omitted members are not kept; the tags of an update are ignored, as on AWS.
    ok(&ev(
        &h,
        "PutRule",
        json!({"Name": "r", "ScheduleExpression": "rate(5 minutes)", "State": "DISABLED",
               "Tags": [{"Key": "other", "Value": "x"}]}),
    )
    .await);
    let d = ok(&ev(&h, "DescribeRule", json!({"Name": "r"})).await);
    assert_eq!(d["State"], "DISABLED");
    assert!(d.get("Description").is_none(), "{d}");
    let tags = ok(&ev(
        &h,
        "ListTagsForResource",
        json!({"ResourceARN": format!("{RULE_ARN_PREFIX}r")}),
    )
    .await);
    assert_eq!(tags, json!({"Tags": [{"Key": "team", "Value": "core"}]}));
    assert_eq!(
        ids(&ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "r"})).await)),
        ["t"]
    );
    // Same expression: the rate keeps counting from creation.
    assert_eq!(h.store.get_rule(&name).unwrap().unwrap().anchor_ms, anchor);
}

#[tokio::test]
async fn put_rule_refuses_what_aws_refuses() {
    let h = Harness::new().await;
    let cases = [
        (
            json!({"ScheduleExpression": "rate(1 minute)"}),
            "ValidationException",
        ),
        (
            json!({"Name": "has space", "ScheduleExpression": "rate(1 minute)"}),
            "ValidationException",
        ),
        (
            json!({"Name": "x".repeat(65), "ScheduleExpression": "rate(1 minute)"}),
            "ValidationException",
        ),
        (
            json!({"Name": "r", "ScheduleExpression": "rate(1 minute)", "State": "ON"}),
            "ValidationException",
        ),
        (
            json!({"Name": "r", "ScheduleExpression": "rate(1 minute)",
                   "Description": "d".repeat(513)}),
            "ValidationException",
        ),
        (
            json!({"Name": "r", "ScheduleExpression": "rate(1 minute)", "RoleArn": ""}),
            "ValidationException",
        ),
        (
            json!({"Name": "r", "ScheduleExpression": "rate(1 minute)",
                   "Tags": [{"Key": "", "Value": "v"}]}),
            "ValidationException",
        ),
        (
            json!({"Name": "r", "ScheduleExpression": "rate(1 minute)",
                   "EventBusName": "orders"}),
            "ResourceNotFoundException",
        ),
        (
            json!({"Name": "r", "ScheduleExpression": "rate(1 minute)",
                   "EventBusName": "bad bus"}),
            "ValidationException",
        ),
    ];
    for (body, ty) in cases {
        err(&ev(&h, "PutRule", body.clone()).await, 400, ty);
    }
    let msg = err(
        &ev(
            &h,
            "PutRule",
            json!({"Name": "r", "ScheduleExpression": "rate(1 minute)", "EventBusName": "orders"}),
        )
        .await,
        400,
        "ResourceNotFoundException",
    );
    assert_eq!(msg, "Event bus orders does not exist.");
    let msg = err(
        &ev(
            &h,
            "PutRule",
            json!({"Name": "r", "ScheduleExpression": "rate(1 minute)", "State": "ON"}),
        )
        .await,
        400,
        "ValidationException",
    );
    assert_eq!(
        msg,
        "1 validation error detected: Value 'ON' at 'state' failed to satisfy constraint: \
         Member must satisfy enum value set: [ENABLED, DISABLED, \
         ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]"
    );
    let msg = err(
        &ev(&h, "PutRule", json!({"Name": "r"})).await,
        400,
        "ValidationException",
    );
    assert_eq!(
        msg,
        "Parameter(s) EventPattern or ScheduleExpression must be specified."
    );
    // Pattern rules are refused, with or without a schedule.
    for body in [
        json!({"Name": "r", "EventPattern": "{\"source\":[\"aws.s3\"]}"}),
        json!({"Name": "r", "EventPattern": "{}", "ScheduleExpression": "rate(1 minute)"}),
    ] {
        let msg = err(&ev(&h, "PutRule", body).await, 400, "ValidationException");
        assert!(msg.contains("EventPattern is not supported"), "{msg}");
    }
    for expr in [
        "rate(0 minutes)",
        "rate(1 minutes)",
        "rate(5 minute)",
        "cron(0 12 * * * *)",
        "cron(0 12 * * ?)",
        "every 5 minutes",
        "",
    ] {
        let msg = err(
            &ev(
                &h,
                "PutRule",
                json!({"Name": "r", "ScheduleExpression": expr}),
            )
            .await,
            400,
            "ValidationException",
        );
        assert_eq!(msg, "Parameter ScheduleExpression is not valid.", "{expr}");
    }
    let long = format!("rate({} minutes)", "1".repeat(260));
    err(
        &ev(
            &h,
            "PutRule",
            json!({"Name": "r", "ScheduleExpression": long}),
        )
        .await,
        400,
        "ValidationException",
    );
    // Nothing was stored; an invalid update leaves a rule as it was.
    assert_eq!(
        names(&ok(&ev(&h, "ListRules", json!({})).await)),
        Vec::<String>::new()
    );
    put_rule(&h, "r", "rate(1 hour)").await;
    err(
        &ev(
            &h,
            "PutRule",
            json!({"Name": "r", "ScheduleExpression": "rate(0 hours)"}),
        )
        .await,
        400,
        "ValidationException",
    );
    let d = ok(&ev(&h, "DescribeRule", json!({"Name": "r"})).await);
    assert_eq!(d["ScheduleExpression"], "rate(1 hour)");
}

#[tokio::test]
async fn list_rules_pages_by_prefix() {
    let h = Harness::new().await;
    for n in ["b-2", "a-1", "b-1", "b-3", "c"] {
        put_rule(&h, n, "rate(1 day)").await;
    }
    let all = ok(&ev(&h, "ListRules", json!({})).await);
    assert_eq!(names(&all), ["a-1", "b-1", "b-2", "b-3", "c"]);
    assert!(all.get("NextToken").is_none());

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"NamePrefix": "b-", "Limit": 2});
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = ok(&ev(&h, "ListRules", body).await);
        assert!(names(&page).len() <= 2);
        seen.extend(names(&page));
        match page.get("NextToken").and_then(|t| t.as_str()) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["b-1", "b-2", "b-3"]);

    for body in [
        json!({"Limit": 0}),
        json!({"Limit": 101}),
        json!({"NextToken": "!!"}),
        json!({"NamePrefix": "a b"}),
    ] {
        err(&ev(&h, "ListRules", body).await, 400, "ValidationException");
    }
    err(
        &ev(&h, "ListRules", json!({"EventBusName": "custom"})).await,
        400,
        "ResourceNotFoundException",
    );
    assert_eq!(
        names(&ok(&ev(&h, "ListRules", json!({"NamePrefix": "zzz"})).await)),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn enable_and_disable_a_rule() {
    let h = Harness::new().await;
    ok(&ev(
        &h,
        "PutRule",
        json!({"Name": "r", "ScheduleExpression": "rate(1 minute)", "State": "DISABLED"}),
    )
    .await);
    let name = RuleName::parse("r").unwrap();
    let created = h.store.get_rule(&name).unwrap().unwrap();
    assert_eq!(created.state, RuleState::Disabled);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = ev(&h, "EnableRule", json!({"Name": "r"})).await;
    assert_eq!(ok(&r), json!({}));
    assert!(
        r.body.is_empty(),
        "an operation without output has an empty body"
    );
    let enabled = h.store.get_rule(&name).unwrap().unwrap();
    assert_eq!(enabled.state, RuleState::Enabled);
    assert!(
        enabled.anchor_ms > created.anchor_ms,
        "a rate counts from enabling"
    );
    // Enabling an enabled rule changes nothing.
    ok(&ev(&h, "EnableRule", json!({"Name": "r"})).await);
    assert_eq!(
        h.store.get_rule(&name).unwrap().unwrap().anchor_ms,
        enabled.anchor_ms
    );
    ok(&ev(&h, "DisableRule", json!({"Name": "r"})).await);
    let d = ok(&ev(&h, "DescribeRule", json!({"Name": "r"})).await);
    assert_eq!(d["State"], "DISABLED");

    for op in ["EnableRule", "DisableRule", "DescribeRule"] {
        let msg = err(
            &ev(&h, op, json!({"Name": "ghost"})).await,
            400,
            "ResourceNotFoundException",
        );
        assert_eq!(msg, "Rule ghost does not exist on EventBus default.");
    }
    err(
        &ev(&h, "EnableRule", json!({})).await,
        400,
        "ValidationException",
    );
}

#[tokio::test]
async fn delete_rule_refuses_a_rule_with_targets_unless_forced() {
    let h = Harness::new().await;
    // Deleting a rule that does not exist succeeds, as on AWS.
    ok(&ev(&h, "DeleteRule", json!({"Name": "ghost"})).await);

    put_rule(&h, "r", "rate(1 hour)").await;
    ok(&ev(
        &h,
        "PutTargets",
        json!({"Rule": "r", "Targets": [target("t", "f")]}),
    )
    .await);
    let msg = err(
        &ev(&h, "DeleteRule", json!({"Name": "r"})).await,
        400,
        "ValidationException",
    );
    assert_eq!(msg, "Rule can't be deleted since it has targets.");
    ok(&ev(&h, "DescribeRule", json!({"Name": "r"})).await);

    ok(&ev(&h, "RemoveTargets", json!({"Rule": "r", "Ids": ["t"]})).await);
    ok(&ev(&h, "DeleteRule", json!({"Name": "r"})).await);
    err(
        &ev(&h, "DescribeRule", json!({"Name": "r"})).await,
        400,
        "ResourceNotFoundException",
    );

    // Force deletes the rule with its targets.
    put_rule(&h, "s", "rate(1 hour)").await;
    ok(&ev(
        &h,
        "PutTargets",
        json!({"Rule": "s", "Targets": [target("t", "f")]}),
    )
    .await);
    ok(&ev(&h, "DeleteRule", json!({"Name": "s", "Force": true})).await);
    let s = RuleName::parse("s").unwrap();
    assert!(h.store.get_rule(&s).unwrap().is_none());
    assert!(h.store.list_rule_targets(&s).unwrap().is_empty());
    // Created again, it starts without targets.
    put_rule(&h, "s", "rate(1 hour)").await;
    assert_eq!(
        ids(&ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "s"})).await)),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn put_list_and_remove_targets() {
    let h = Harness::new().await;
    put_rule(&h, "r", "rate(1 hour)").await;
    let r = ok(&ev(
        &h,
        "PutTargets",
        json!({"Rule": "r", "Targets": [
            target("plain", "f"),
            {"Id": "const", "Arn": format!("{FN_ARN}g:live"), "Input": "{\"n\": 7}"},
            {"Id": "v", "Arn": format!("{FN_ARN}g:3"),
             "RoleArn": "arn:aws:iam::000000000000:role/r"},
        ]}),
    )
    .await);
    assert_eq!(r, json!({"FailedEntryCount": 0, "FailedEntries": []}));
    let list = ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "r"})).await);
    assert_eq!(
        list,
        json!({"Targets": [
            {"Id": "const", "Arn": format!("{FN_ARN}g:live"), "Input": "{\"n\": 7}"},
            {"Id": "plain", "Arn": format!("{FN_ARN}f")},
            {"Id": "v", "Arn": format!("{FN_ARN}g:3"),
             "RoleArn": "arn:aws:iam::000000000000:role/r"},
        ]})
    );
    // Same id: replaced.
    ok(&ev(
        &h,
        "PutTargets",
        json!({"Rule": "r", "Targets": [{"Id": "const", "Arn": format!("{FN_ARN}f"), "Input": "[1]"}]}),
    )
    .await);
    let list = ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "r"})).await);
    assert_eq!(list["Targets"][0]["Input"], "[1]");
    assert_eq!(ids(&list).len(), 3);

    // Pages of one.
    let first = ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "r", "Limit": 1})).await);
    assert_eq!(ids(&first), ["const"]);
    let second = ok(&ev(
        &h,
        "ListTargetsByRule",
        json!({"Rule": "r", "Limit": 1, "NextToken": first["NextToken"]}),
    )
    .await);
    assert_eq!(ids(&second), ["plain"]);

    // Removing ids the rule does not have is not an error.
    let r = ok(&ev(
        &h,
        "RemoveTargets",
        json!({"Rule": "r", "Ids": ["plain", "nope"]}),
    )
    .await);
    assert_eq!(r, json!({"FailedEntryCount": 0, "FailedEntries": []}));
    assert_eq!(
        ids(&ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "r"})).await)),
        ["const", "v"]
    );

    // Which rules a function is the target of.
    put_rule(&h, "other", "rate(1 day)").await;
    ok(&ev(
        &h,
        "PutTargets",
        json!({"Rule": "other", "Targets": [target("x", "f")]}),
    )
    .await);
    let by = ok(&ev(
        &h,
        "ListRuleNamesByTarget",
        json!({"TargetArn": format!("{FN_ARN}f")}),
    )
    .await);
    assert_eq!(by, json!({"RuleNames": ["other", "r"]}));
    let by = ok(&ev(
        &h,
        "ListRuleNamesByTarget",
        json!({"TargetArn": format!("{FN_ARN}f"), "Limit": 1}),
    )
    .await);
    assert_eq!(by["RuleNames"], json!(["other"]));
    assert!(by["NextToken"].is_string());
}

#[tokio::test]
async fn put_targets_refuses_what_serval_cannot_deliver() {
    let h = Harness::new().await;
    put_rule(&h, "r", "rate(1 hour)").await;
    let put = |targets: serde_json::Value| {
        let h = &h;
        async move { ev(h, "PutTargets", json!({"Rule": "r", "Targets": targets})).await }
    };
    let msg = err(
        &put(json!([{"Id": "t", "Arn": format!("{FN_ARN}f"), "Input": "{not json"}])).await,
        400,
        "ValidationException",
    );
    assert_eq!(msg, "Input for target t is not a valid JSON text.");
    err(
        &put(json!([{"Id": "t", "Arn": format!("{FN_ARN}f"), "Input": format!("\"{}\"", "x".repeat(8200))}])).await,
        400,
        "ValidationException",
    );
    // 8192 bytes of JSON are fine.
    ok(&put(json!([{"Id": "big", "Arn": format!("{FN_ARN}f"), "Input": format!("\"{}\"", "x".repeat(8190))}])).await);
    let msg = err(
        &put(json!([{"Id": "q", "Arn": "arn:aws:sqs:us-east-1:000000000000:queue"}])).await,
        400,
        "ValidationException",
    );
    assert!(
        msg.starts_with("sqs is not a supported service for a target"),
        "{msg}"
    );
    let msg = err(
        &put(json!([{"Id": "q", "Arn": "my-function"}])).await,
        400,
        "ValidationException",
    );
    assert_eq!(
        msg,
        "Parameter my-function is not valid. Reason: Provided Arn is not in correct format."
    );
    let msg = err(
        &put(json!([{"Id": "p", "Arn": format!("{FN_ARN}f"), "InputPath": "$.detail"}])).await,
        400,
        "ValidationException",
    );
    assert!(
        msg.starts_with("InputPath is not supported by Serval"),
        "{msg}"
    );
    let msg = err(
        &put(json!([{"Id": "bad id", "Arn": format!("{FN_ARN}f")}])).await,
        400,
        "ValidationException",
    );
    assert!(msg.contains("'targets.member.id'"), "{msg}");
    err(&put(json!([])).await, 400, "ValidationException");
    err(&put(json!([{"Id": "t"}])).await, 400, "ValidationException");
    err(
        &ev(&h, "PutTargets", json!({"Rule": "r"})).await,
        400,
        "ValidationException",
    );
    let msg = err(
        &ev(
            &h,
            "PutTargets",
            json!({"Rule": "ghost", "Targets": [target("t", "f")]}),
        )
        .await,
        400,
        "ResourceNotFoundException",
    );
    assert_eq!(msg, "Rule ghost does not exist on EventBus default.");
    for op in ["ListTargetsByRule", "RemoveTargets"] {
        err(
            &ev(&h, op, json!({"Rule": "ghost", "Ids": ["t"]})).await,
            400,
            "ResourceNotFoundException",
        );
    }
    // Only the valid target from before is stored.
    assert_eq!(
        ids(&ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "r"})).await)),
        ["big"]
    );
}

#[tokio::test]
async fn a_rule_takes_at_most_five_targets() {
    let h = Harness::new().await;
    put_rule(&h, "r", "rate(1 hour)").await;
    let four: Vec<_> = (1..=4).map(|i| target(&format!("t{i}"), "f")).collect();
    ok(&ev(&h, "PutTargets", json!({"Rule": "r", "Targets": four})).await);
    // Two more would make six: refused, nothing stored.
    let msg = err(
        &ev(
            &h,
            "PutTargets",
            json!({"Rule": "r", "Targets": [target("t5", "f"), target("t6", "f")]}),
        )
        .await,
        400,
        "LimitExceededException",
    );
    assert!(msg.contains("at most 5"), "{msg}");
    assert_eq!(
        ids(&ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "r"})).await)).len(),
        4
    );
    // Replacing existing ids and adding a fifth is fine.
    ok(&ev(
        &h,
        "PutTargets",
        json!({"Rule": "r", "Targets": [target("t1", "g"), target("t5", "f")]}),
    )
    .await);
    assert_eq!(
        ids(&ok(&ev(&h, "ListTargetsByRule", json!({"Rule": "r"})).await)).len(),
        5
    );
    err(
        &ev(
            &h,
            "PutTargets",
            json!({"Rule": "r", "Targets": [target("t6", "f")]}),
        )
        .await,
        400,
        "LimitExceededException",
    );
}

#[tokio::test]
async fn the_event_bus_takes_at_most_rules_max_rules() {
    let h = Harness::new().await;
    for i in 0..RULES_MAX {
        put_rule(&h, &format!("r{i:03}"), "rate(1 hour)").await;
    }
    // One more is refused, and nothing is stored.
    let msg = err(
        &ev(
            &h,
            "PutRule",
            json!({"Name": "one-too-many", "ScheduleExpression": "rate(1 hour)"}),
        )
        .await,
        400,
        "LimitExceededException",
    );
    assert!(
        msg.starts_with("The requested resource exceeds the maximum number allowed")
            && msg.contains(&format!("at most {RULES_MAX}")),
        "{msg}"
    );
    err(
        &ev(&h, "DescribeRule", json!({"Name": "one-too-many"})).await,
        400,
        "ResourceNotFoundException",
    );
    // Updating an existing rule is always allowed.
    put_rule(&h, "r000", "rate(2 hours)").await;
    let r = ok(&ev(&h, "DescribeRule", json!({"Name": "r000"})).await);
    assert_eq!(r["ScheduleExpression"], "rate(2 hours)");
    // Deleting one makes room for a new one.
    ok(&ev(&h, "DeleteRule", json!({"Name": "r001"})).await);
    put_rule(&h, "one-too-many", "rate(1 hour)").await;
}

#[tokio::test]
async fn tags_on_rules() {
    let h = Harness::new().await;
    put_rule(&h, "r", "rate(1 hour)").await;
    let arn = format!("{RULE_ARN_PREFIX}r");
    let r = ok(&ev(
        &h,
        "TagResource",
        json!({"ResourceARN": arn, "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]}),
    )
    .await);
    assert_eq!(r, json!({}));
    ok(&ev(
        &h,
        "UntagResource",
        json!({"ResourceARN": arn, "TagKeys": ["a"]}),
    )
    .await);
    let tags = ok(&ev(&h, "ListTagsForResource", json!({"ResourceARN": arn})).await);
    assert_eq!(tags, json!({"Tags": [{"Key": "b", "Value": "2"}]}));
    err(
        &ev(
            &h,
            "ListTagsForResource",
            json!({"ResourceARN": format!("{RULE_ARN_PREFIX}ghost")}),
        )
        .await,
        400,
        "ResourceNotFoundException",
    );
}

#[tokio::test]
async fn unknown_operations_and_malformed_bodies() {
    let h = Harness::new().await;
    err(
        &ev(&h, "PutEvents", json!({"Entries": []})).await,
        400,
        "UnknownOperationException",
    );
    let r = call_on(&h.router, "PutRule", "{not json").await;
    err(&r, 400, "SerializationException");
    let r = call_on(&h.router, "ListRules", "").await;
    assert_eq!(names(&ok(&r)), Vec::<String>::new());
}

/// Needs `python3` and a working engine: a real function fired by a sped-up schedule through
/// the durable queue.
#[tokio::test]
async fn a_rate_rule_invokes_its_function_with_the_scheduled_event() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (queue, leftovers) =
        serval_store::EventQueue::open(dir.path(), serval_store::QueueLimits::default()).unwrap();
    h.engine.start_async(
        queue,
        leftovers,
        serval_engine::AsyncConfig::with_retry_base(Duration::from_millis(100)),
    );
    // A router whose scheduler runs 600 times real time: a minute every 100 ms.
    let schedules = serval_events::Schedules::start(
        h.engine.clone(),
        serval_events::ScheduleConfig {
            region: REGION.into(),
            clock_speed: 600,
        },
    );
    let router = serval_api::router(serval_api::ApiState::new(
        h.engine.clone(),
        h.store.clone(),
        REGION,
        serval_events::Gateway::new(h.engine.clone(), REGION, 9000),
        schedules,
    ));
    let out = dir.path().join("events.jsonl");
    let code = zip_of(&[(
        "app.py",
        "import json, os\n\ndef handler(event, context):\n    with open(os.environ['OUT'], 'a') as f:\n        f.write(json.dumps(event) + '\\n')\n    return 'ok'\n",
    )]);
    let r = h
        .create(
            "sched",
            json!({"Code": {"ZipFile": b64(&code)},
                   "Environment": {"Variables": {"OUT": out.to_str().unwrap()}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    let call = |op: &'static str, body: serde_json::Value| {
        let router = &router;
        async move { call_on(router, op, &body.to_string()).await }
    };
    ok(&call(
        "PutRule",
        json!({"Name": "tick", "ScheduleExpression": "rate(1 minute)"}),
    )
    .await);
    ok(&call(
        "PutTargets",
        json!({"Rule": "tick", "Targets": [
            target("plain", "sched"),
            {"Id": "const", "Arn": format!("{FN_ARN}sched"), "Input": "{\"constant\": true}"},
        ]}),
    )
    .await);

    let started = std::time::Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.iter().filter(|e| e.get("source").is_some()).count() >= 2 {
            break lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the rule did not fire twice: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let events: Vec<&serde_json::Value> =
        lines.iter().filter(|e| e.get("source").is_some()).collect();
    for e in &events {
        assert_eq!(e["version"], "0");
        assert_eq!(e["detail-type"], "Scheduled Event");
        assert_eq!(e["source"], "aws.events");
        assert_eq!(e["account"], "000000000000");
        assert_eq!(e["region"], REGION);
        assert_eq!(e["resources"], json!([format!("{RULE_ARN_PREFIX}tick")]));
        assert_eq!(e["detail"], json!({}));
        let time = e["time"].as_str().unwrap();
        assert!(time.ends_with(":00Z") && time.len() == 20, "{time}");
    }
    let mut times: Vec<&str> = events.iter().map(|e| e["time"].as_str().unwrap()).collect();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), events.len(), "a due time fired twice");
    assert!(lines.iter().any(|e| e == &json!({"constant": true})));
    assert!(h.engine.schedule_mark("tick").is_some());

    // Disabled: no fire after the ones already under way.
    ok(&call("DisableRule", json!({"Name": "tick"})).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = std::fs::read_to_string(&out).unwrap().lines().count();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        settled,
        "a disabled rule fired"
    );
}

/// The engine's entry point with a real engine: a target whose function does not exist is
/// skipped, and the mark still advances, once per due time.
#[tokio::test]
async fn enqueue_scheduled_skips_missing_functions_and_marks_once() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (queue, leftovers) =
        serval_store::EventQueue::open(dir.path(), serval_store::QueueLimits::default()).unwrap();
    // Not started yet: unavailable, nothing marked.
    let req = serval_engine::AsyncInvokeRequest {
        function: serval_model::FunctionName::parse("missing").unwrap(),
        qualifier: None,
        payload: bytes::Bytes::from_static(b"{}"),
    };
    assert!(h
        .engine
        .enqueue_scheduled(vec![req.clone()], "r", 60_000)
        .await
        .is_err());
    h.engine
        .start_async(queue, leftovers, serval_engine::AsyncConfig::default());
    let ids = h
        .engine
        .enqueue_scheduled(vec![req.clone()], "r", 60_000)
        .await
        .unwrap();
    assert_eq!(ids.map(|ids| ids.len()), Some(0));
    assert_eq!(h.engine.schedule_mark("r"), Some(60_000));
    let again = h
        .engine
        .enqueue_scheduled(vec![req], "r", 60_000)
        .await
        .unwrap();
    assert!(again.is_none());
}
