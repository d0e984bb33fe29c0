//! The CloudWatch Logs JSON 1.1 protocol through the router, on a real store: shapes, paging,
//! filtering and errors as boto3's `logs` client and `aws logs tail` see them.

mod common;

use common::*;
use http::Method;
use serde_json::json;
use serval_store::LogEvent;

const GROUP: &str = "/aws/lambda/f";
const STREAM: &str = "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef";
/// The request id the seeded invocation's lines carry.
const RID: &str = "c0ffee00-1234-4567-89ab-0123456789ab";

/// A fixed recent instant (an hour ago, rounded down to the hour) for test events: old
/// enough to be in the past, recent enough that log retention keeps them.
fn base_ms() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        (now / 3_600_000 - 1) * 3_600_000
    })
}

fn seed(h: &Harness) {
    let rid: std::sync::Arc<str> = RID.into();
    let events: Vec<LogEvent> = [
        format!("START RequestId: {RID}"),
        "hello world".to_owned(),
        format!("END RequestId: {RID}"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, message)| LogEvent {
        timestamp_ms: base_ms() + i as i64,
        message,
        request_id: Some(rid.clone()),
    })
    .collect();
    h.store.append_log_events(GROUP, STREAM, &events).unwrap();
    h.store
        .append_log_events(
            "/aws/lambda/g",
            "s",
            &[LogEvent {
                timestamp_ms: base_ms(),
                message: "other".into(),
                request_id: None,
            }],
        )
        .unwrap();
}

fn assert_logs_error(r: &Reply, ty: &str) {
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/x-amz-json-1.1");
    let j = r.json();
    assert_eq!(j["__type"], ty, "{j}");
    assert!(j["message"].is_string(), "{j}");
}

#[tokio::test]
async fn describes_log_groups_with_prefix_and_paging() {
    let h = Harness::new().await;
    seed(&h);
    let r = h.logs("DescribeLogGroups", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/x-amz-json-1.1");
    let groups = r.json()["logGroups"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 2);
    let g = &groups[0];
    assert_eq!(g["logGroupName"], GROUP);
    assert_eq!(
        g["arn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/f:*"
    );
    assert_eq!(
        g["logGroupArn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/f"
    );
    assert!(g["creationTime"].as_i64().unwrap() > 0);
    assert!(g["storedBytes"].as_u64().unwrap() > 0);
    assert!(g.get("retentionInDays").is_none());

    let r = h
        .logs(
            "DescribeLogGroups",
            json!({"logGroupNamePrefix": "/aws/lambda/g"}),
        )
        .await
        .json();
    assert_eq!(r["logGroups"].as_array().unwrap().len(), 1);

    let p1 = h
        .logs("DescribeLogGroups", json!({"limit": 1}))
        .await
        .json();
    assert_eq!(p1["logGroups"].as_array().unwrap().len(), 1);
    let token = p1["nextToken"].as_str().unwrap();
    let p2 = h
        .logs("DescribeLogGroups", json!({"limit": 1, "nextToken": token}))
        .await
        .json();
    assert_eq!(p2["logGroups"][0]["logGroupName"], "/aws/lambda/g");

    assert_logs_error(
        &h.logs("DescribeLogGroups", json!({"limit": 0})).await,
        "InvalidParameterException",
    );
    assert_logs_error(
        &h.logs("DescribeLogGroups", json!({"limit": 51})).await,
        "InvalidParameterException",
    );
}

#[tokio::test]
async fn describes_streams_and_gets_events() {
    let h = Harness::new().await;
    seed(&h);
    let r = h
        .logs(
            "DescribeLogStreams",
            json!({"logGroupName": GROUP, "orderBy": "LastEventTime", "descending": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = &r.json()["logStreams"][0];
    assert_eq!(s["logStreamName"], STREAM);
    assert_eq!(s["firstEventTimestamp"], base_ms());
    assert_eq!(s["lastEventTimestamp"], base_ms() + 2);
    assert!(s["arn"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":log-stream:{STREAM}")));

    let r = h
        .logs(
            "GetLogEvents",
            json!({"logGroupName": GROUP, "logStreamName": STREAM, "startFromHead": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let page = r.json();
    let messages: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            format!("START RequestId: {RID}"),
            "hello world".to_owned(),
            format!("END RequestId: {RID}")
        ]
    );
    assert!(page["events"][0]["ingestionTime"].as_i64().unwrap() > 0);
    // Serval's extension: each event names the invocation that produced it.
    for e in page["events"].as_array().unwrap() {
        assert_eq!(e["requestId"], RID, "{e}");
    }
    assert!(page["nextForwardToken"].as_str().unwrap().starts_with("f/"));
    assert!(page["nextBackwardToken"]
        .as_str()
        .unwrap()
        .starts_with("b/"));

    // By ARN identifier too.
    let r = h
        .logs(
            "GetLogEvents",
            json!({"logGroupIdentifier": "arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/f",
                   "logStreamName": STREAM, "limit": 1, "startFromHead": true}),
        )
        .await
        .json();
    assert_eq!(r["events"].as_array().unwrap().len(), 1);

    assert_logs_error(
        &h.logs(
            "DescribeLogStreams",
            json!({"logGroupName": "/aws/lambda/none"}),
        )
        .await,
        "ResourceNotFoundException",
    );
    assert_logs_error(
        &h.logs(
            "GetLogEvents",
            json!({"logGroupName": GROUP, "logStreamName": "nope"}),
        )
        .await,
        "ResourceNotFoundException",
    );
    assert_logs_error(
        &h.logs("GetLogEvents", json!({"logGroupName": GROUP})).await,
        "InvalidParameterException",
    );
    assert_logs_error(
        &h.logs("DescribeLogStreams", json!({})).await,
        "InvalidParameterException",
    );
    assert_logs_error(
        &h.logs(
            "DescribeLogStreams",
            json!({"logGroupName": GROUP, "orderBy": "Size"}),
        )
        .await,
        "InvalidParameterException",
    );
}

#[tokio::test]
async fn filters_events_by_pattern() {
    let h = Harness::new().await;
    seed(&h);
    let r = h
        .logs(
            "FilterLogEvents",
            json!({"logGroupName": GROUP, "filterPattern": "hello"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    let events = j["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["message"], "hello world");
    assert_eq!(events[0]["logStreamName"], STREAM);
    assert!(events[0]["eventId"].is_string());
    assert_eq!(events[0]["requestId"], RID);
    assert_eq!(j["searchedLogStreams"], json!([]));

    // A request id as the pattern finds the invocation's own lines, not only START/END.
    let by_id = h
        .logs(
            "FilterLogEvents",
            json!({"logGroupName": GROUP, "filterPattern": RID}),
        )
        .await
        .json();
    let messages: Vec<&str> = by_id["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 3, "{by_id}");
    assert!(messages.contains(&"hello world"), "{by_id}");

    // A line of no invocation has no `requestId` member at all.
    let other = h
        .logs("FilterLogEvents", json!({"logGroupName": "/aws/lambda/g"}))
        .await
        .json();
    let e = &other["events"][0];
    assert_eq!(e["message"], "other");
    assert!(e.get("requestId").is_none(), "{e}");
    let other = h
        .logs(
            "GetLogEvents",
            json!({"logGroupName": "/aws/lambda/g", "logStreamName": "s"}),
        )
        .await
        .json();
    assert!(other["events"][0].get("requestId").is_none(), "{other}");

    let all = h
        .logs(
            "FilterLogEvents",
            json!({"logGroupName": GROUP, "startTime": base_ms() + 1}),
        )
        .await
        .json();
    assert_eq!(all["events"].as_array().unwrap().len(), 2);

    assert_logs_error(
        &h.logs(
            "FilterLogEvents",
            json!({"logGroupName": GROUP, "logStreamNames": [STREAM], "logStreamNamePrefix": "2024"}),
        )
        .await,
        "InvalidParameterException",
    );
    assert_logs_error(
        &h.logs("FilterLogEvents", json!({"logGroupName": "/nope"}))
            .await,
        "ResourceNotFoundException",
    );
}

#[tokio::test]
async fn deletes_log_group_and_sets_retention() {
    let h = Harness::new().await;
    seed(&h);
    let r = h
        .logs(
            "PutRetentionPolicy",
            json!({"logGroupName": GROUP, "retentionInDays": 7}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let g = h
        .logs("DescribeLogGroups", json!({"logGroupNamePrefix": GROUP}))
        .await
        .json();
    assert_eq!(g["logGroups"][0]["retentionInDays"], 7);
    assert_logs_error(
        &h.logs(
            "PutRetentionPolicy",
            json!({"logGroupName": GROUP, "retentionInDays": 2}),
        )
        .await,
        "InvalidParameterException",
    );
    assert_eq!(
        h.logs("DeleteRetentionPolicy", json!({"logGroupName": GROUP}))
            .await
            .status,
        200
    );

    let r = h
        .logs("DeleteLogGroup", json!({"logGroupName": GROUP}))
        .await;
    assert_eq!(r.status, 200);
    assert_logs_error(
        &h.logs("DeleteLogGroup", json!({"logGroupName": GROUP}))
            .await,
        "ResourceNotFoundException",
    );
    assert_eq!(
        h.logs("DeleteLogGroup", json!({"logGroupName": GROUP}))
            .await
            .json()["message"],
        "The specified log group does not exist."
    );
    assert_logs_error(
        &h.logs("DescribeLogStreams", json!({"logGroupName": GROUP}))
            .await,
        "ResourceNotFoundException",
    );
    assert_logs_error(
        &h.logs(
            "PutRetentionPolicy",
            json!({"logGroupName": GROUP, "retentionInDays": 7}),
        )
        .await,
        "ResourceNotFoundException",
    );
}

#[tokio::test]
async fn unknown_target_and_malformed_json_are_refused() {
    let h = Harness::new().await;
    assert_logs_error(
        &h.logs("PutLogEvents", json!({})).await,
        "UnknownOperationException",
    );
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("x-amz-target", "DynamoDB_20120810.ListTables")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    assert_logs_error(&h.send(req).await, "UnknownOperationException");
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("/")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    assert_logs_error(&h.send(req).await, "UnknownOperationException");
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("x-amz-target", "Logs_20140328.DescribeLogGroups")
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    assert_logs_error(&h.send(req).await, "SerializationException");
}
