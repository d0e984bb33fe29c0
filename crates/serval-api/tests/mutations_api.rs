//! Concurrent control-plane mutations through the router, on a real store and engine: no
//! update is lost, the engine agrees with the store, and `DryRun` changes nothing.

mod common;

use std::sync::Arc;

use common::*;
use http::Method;
use serde_json::{json, Value};
use serval_model::FunctionName;
use sha2::Digest;

const INVOKE_F: &str = "/2015-03-31/functions/f/invocations";

/// A python package whose handler returns `marker`, padded so that unpacking it takes a
/// moment (a wider window for a racing configuration update).
fn marked_zip(marker: usize) -> Vec<u8> {
    let padding = format!("{marker:08}\n").repeat(32 * 1024);
    zip_of(&[
        (
            "app.py",
            &format!("def handler(event, context):\n    return {marker}\n"),
        ),
        ("padding.txt", &padding),
    ])
}

fn sha_b64(zip: &[u8]) -> String {
    b64(&sha2::Sha256::digest(zip))
}

async fn update_description(h: &Harness, description: String) -> Reply {
    h.json(
        Method::PUT,
        "/2015-03-31/functions/f/configuration",
        json!({ "Description": description }),
    )
    .await
}

async fn update_code(h: &Harness, zip: &[u8]) -> Reply {
    h.json(
        Method::PUT,
        "/2015-03-31/functions/f/code",
        json!({ "ZipFile": b64(zip) }),
    )
    .await
}

async fn stored(h: &Harness) -> Value {
    let r = h
        .call(Method::GET, "/2015-03-31/functions/f/configuration", "")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Needs `python3` (the final check invokes the function).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_code_and_configuration_updates_never_lose_a_write() {
    let h = Arc::new(Harness::new().await);
    let created = h
        .create("f", json!({"Code": {"ZipFile": b64(&marked_zip(0))}}))
        .await;
    assert_eq!(created.status, 201);

    // Rounds of one code update racing one configuration update: both must survive.
    for round in 1..=10 {
        let zip = marked_zip(round);
        let code = {
            let (h, zip) = (h.clone(), zip.clone());
            tokio::spawn(async move { update_code(&h, &zip).await })
        };
        let config = {
            let h = h.clone();
            tokio::spawn(async move { update_description(&h, format!("r{round}")).await })
        };
        let (code, config) = (code.await.unwrap(), config.await.unwrap());
        assert_eq!(code.status, 200, "{}", String::from_utf8_lossy(&code.body));
        assert_eq!(
            config.status,
            200,
            "{}",
            String::from_utf8_lossy(&config.body)
        );
        let now = stored(&h).await;
        assert_eq!(now["Description"], format!("r{round}"), "round {round}");
        assert_eq!(now["CodeSha256"], sha_b64(&zip), "round {round}");
    }

    // Twenty updates at once, alternating kinds.
    let mut tasks = Vec::new();
    for i in 0..20usize {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                (i, update_description(&h, format!("d{i}")).await)
            } else {
                (i, update_code(&h, &marked_zip(100 + i)).await)
            }
        }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.status, 200, "{i}: {}", String::from_utf8_lossy(&r.body));
        replies.push((i, r.json()));
    }
    let fin = stored(&h).await;
    let mut revisions: Vec<&str> = replies
        .iter()
        .map(|(_, j)| j["RevisionId"].as_str().unwrap())
        .collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 20, "every write got its own revision");
    // The stored configuration is exactly what the last write reported...
    let last: Vec<_> = replies
        .iter()
        .filter(|(_, j)| j["RevisionId"] == fin["RevisionId"])
        .collect();
    assert_eq!(last.len(), 1, "{fin}");
    assert_eq!(last[0].1, fin);
    // ...and carries the last description and the last code, each written by one of the racers.
    let description = fin["Description"].as_str().unwrap();
    let code_marker = replies
        .iter()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(i, _)| 100 + i)
        .find(|m| fin["CodeSha256"] == sha_b64(&marked_zip(*m)))
        .expect("stored code is one of the uploads");
    assert!(
        replies
            .iter()
            .any(|(i, _)| i % 2 == 0 && description == format!("d{i}")),
        "{description}"
    );
    // The engine runs what the store holds.
    let r = h.call(Method::POST, INVOKE_F, "{}").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!(code_marker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_and_delete_leave_engine_matching_store() {
    let h = Arc::new(Harness::new().await);
    let names: Vec<String> = (0..6).map(|i| format!("race{i}")).collect();
    for _round in 0..4 {
        let mut tasks = Vec::new();
        for name in &names {
            for k in 0..6 {
                let (h, name) = (h.clone(), name.clone());
                tasks.push(tokio::spawn(async move {
                    let r = if k % 2 == 0 {
                        h.create(&name, json!({})).await
                    } else {
                        h.call(Method::DELETE, &format!("/2015-03-31/functions/{name}"), "")
                            .await
                    };
                    assert!(
                        [201, 204, 404, 409].contains(&r.status.as_u16()),
                        "{}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        for name in &names {
            let fname = FunctionName::parse(name).unwrap();
            let in_store = h.store.get_function(&fname).unwrap().is_some();
            assert_eq!(h.engine.has_function(&fname), in_store, "{name}");
        }
    }
}

/// Needs `python3`.
#[tokio::test]
async fn dry_run_code_update_changes_neither_store_nor_engine() {
    let h = Harness::new().await;
    let before = h
        .create("f", json!({"Code": {"ZipFile": b64(&marked_zip(1))}}))
        .await
        .json();
    let dry = h
        .json(
            Method::PUT,
            "/2015-03-31/functions/f/code",
            json!({ "ZipFile": b64(&marked_zip(2)), "DryRun": true }),
        )
        .await;
    assert_eq!(dry.status, 200, "{}", String::from_utf8_lossy(&dry.body));
    assert_eq!(dry.json()["CodeSha256"], sha_b64(&marked_zip(2)));
    assert_eq!(dry.json()["RevisionId"], before["RevisionId"]);
    assert_eq!(stored(&h).await, before);
    let r = h.call(Method::POST, INVOKE_F, "{}").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!(1));
}
