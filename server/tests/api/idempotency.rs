//! Safe retries (issue 16, item 6): the same `Idempotency-Key` and request within 24 h answers the first
//! answer and does nothing again; another request with that key is 409; keys are per user.

use crate::datasets::qa_jsonl;
use crate::helpers::*;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

async fn post_keyed(app: &TestApp, path: &str, token: &str, key: &str, body: Value) -> Response {
    app.client.post(app.url(path)).bearer_auth(token).header("Idempotency-Key", key).json(&body).send().await.unwrap()
}

async fn upload_keyed(app: &TestApp, token: &str, key: &str, bytes: Vec<u8>) -> Response {
    let form = Form::new().part("file", Part::bytes(bytes).file_name("qa.jsonl")).text("name", "capitals");
    let request = app.client.post(app.url("/api/data/upload")).bearer_auth(token).header("Idempotency-Key", key);
    request.multipart(form).send().await.unwrap()
}

#[tokio::test]
async fn a_retried_create_answers_the_first_answer_and_another_body_is_409() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let sam = json!({"username": "sam", "email": "sam@example.com", "password": "sam-password", "role": "trainer"});

    let first = post_keyed(&app, "/api/users", &admin, "create-sam-1", sam.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    // Without the key the same request is a second attempt, refused as such.
    let unkeyed = app.post("/api/users", Some(&admin), sam.clone()).await;
    assert_eq!(unkeyed.status(), StatusCode::CONFLICT);
    // With it, the first answer again.
    let retry = post_keyed(&app, "/api/users", &admin, "create-sam-1", sam.clone()).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"].to_str().unwrap(), location);
    assert_eq!(retry.json::<Value>().await.unwrap(), first);

    let mut other = sam.clone();
    other["username"] = json!("samuel");
    other["email"] = json!("samuel@example.com");
    let reused = post_keyed(&app, "/api/users", &admin, "create-sam-1", other.clone()).await;
    assert_eq!(reused.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(reused).await, "idempotency_key_reused");

    // Keys are per user: sam's own key of that name is his.
    let sam_token = app.tokens("sam", "sam-password").await["access_token"].as_str().unwrap().to_owned();
    eventually(|| async { app.get("/api/users/profile", Some(&sam_token)).await.status() == StatusCode::OK }).await;
    let response = upload_keyed(&app, &sam_token, "create-sam-1", qa_jsonl(3)).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let bad = post_keyed(&app, "/api/users", &admin, "", other.clone()).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(bad).await, "invalid_idempotency_key");
    // A failed attempt frees its key: the retry is handled (and this time it works).
    let mut taken = other.clone();
    taken["username"] = json!("sam");
    let failed = post_keyed(&app, "/api/users", &admin, "create-samuel", taken).await;
    assert_eq!(failed.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(failed).await, "username_taken");
    let response = post_keyed(&app, "/api/users", &admin, "create-samuel", other).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_retried_upload_creates_one_dataset_whatever_its_multipart_boundary() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let first = upload_keyed(&app, &admin, "upload-1", qa_jsonl(5)).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    // reqwest picks a new boundary for each form: the same upload all the same.
    let retry = upload_keyed(&app, &admin, "upload-1", qa_jsonl(5)).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], first["id"]);
    let other = upload_keyed(&app, &admin, "upload-1", qa_jsonl(6)).await;
    assert_eq!(other.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(other).await, "idempotency_key_reused");
    eventually(|| async {
        let page: Value = app.get("/api/data/datasets", Some(&admin)).await.json().await.unwrap();
        page["total"] == 1
    })
    .await;
}

#[tokio::test]
async fn a_request_in_progress_with_the_same_key_is_409() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    // An upload whose body takes two seconds to arrive.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let form = Form::new().part("file", Part::stream(body).file_name("qa.jsonl"));
    let slow = {
        let request =
            app.client.post(app.url("/api/data/upload")).bearer_auth(&admin).header("Idempotency-Key", "slow");
        tokio::spawn(request.multipart(form).send())
    };
    tx.send(Ok(qa_jsonl(2))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let meanwhile = upload_keyed(&app, &admin, "slow", qa_jsonl(2)).await;
    assert_eq!(meanwhile.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(meanwhile).await, "idempotency_key_in_progress");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(tx);
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::CREATED);
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A node killed while it answers keyed requests: once its lease lapses, a retry of a request it cut off
/// before committing runs again (one dataset, not none), and a retry of one that committed but lost its
/// answer is told what was created (409 `idempotency_key_committed`), never a second one.
#[tokio::test]
async fn keyed_requests_cut_off_by_a_killed_node_are_settled_by_their_retries() {
    let mut settings = test_settings();
    settings.node_lease_secs = 1.0;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (mut node, base) = crate::encryption::second_node_with(&app, &[("BONSAI__NODE_LEASE_SECS", "1")]).await;

    // Cut off before it committed: an upload whose body never ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let form = Form::new()
        .part("file", Part::stream(reqwest::Body::wrap_stream(tokio_stream_of(rx))).file_name("qa.jsonl"))
        .text("name", "capitals");
    let request =
        app.client.post(format!("{base}/api/data/upload")).bearer_auth(&admin).header("Idempotency-Key", "cut-early");
    let cut = tokio::spawn(request.multipart(form).send());
    tx.send(Ok(qa_jsonl(2))).await.unwrap();
    // Committed, its answer lost: a kill between the commit and the answer leaves the key as it was before
    // the answer was recorded.
    let form = Form::new().part("file", Part::bytes(qa_jsonl(3)).file_name("qa.jsonl")).text("name", "capitals");
    let request =
        app.client.post(format!("{base}/api/data/upload")).bearer_auth(&admin).header("Idempotency-Key", "cut-late");
    let created = request.multipart(form).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let first_id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    sqlx::query(
        "UPDATE idempotency_keys SET status = NULL, request_sha256 = NULL, body = NULL, content_type = NULL, \
         location = NULL WHERE key = 'cut-late'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    eventually(|| async {
        let keys: i64 =
            sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'cut-early' AND status IS NULL")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        keys == 1
    })
    .await;
    node.start_kill().unwrap();
    node.wait().await.unwrap();
    assert!(cut.await.unwrap().is_err(), "the cut-off upload got no answer");
    drop(tx);
    tokio::time::sleep(Duration::from_millis(1500)).await; // the killed node's lease lapses

    let early = upload_keyed(&app, &admin, "cut-early", qa_jsonl(2)).await;
    assert_eq!(early.status(), StatusCode::CREATED, "the cut-off upload committed nothing: its retry runs");
    let again = upload_keyed(&app, &admin, "cut-early", qa_jsonl(2)).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    for _ in 0..2 {
        let late = upload_keyed(&app, &admin, "cut-late", qa_jsonl(3)).await;
        assert_eq!(late.status(), StatusCode::CONFLICT);
        let body: Value = late.json().await.unwrap();
        assert_eq!(body["error"]["code"], "idempotency_key_committed", "{body}");
        assert_eq!(body["error"]["details"]["aggregate_type"], "Dataset");
        assert_eq!(body["error"]["details"]["aggregate_id"], first_id.as_str(), "{body}");
    }
    let datasets: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Dataset' AND event_type = 'DatasetUploaded'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(datasets, 2, "one dataset for each key, none twice");
    app.stop().await.unwrap();
}
