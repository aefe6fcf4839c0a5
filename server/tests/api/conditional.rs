//! Conditional GETs: JSON answers carry an ETag, and a client that sends it back gets 304 while nothing
//! changed, without authentication or permissions ever being skipped.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn get_if(app: &TestApp, path: &str, token: Option<&str>, tag: &str) -> reqwest::Response {
    let mut request = app.client.get(app.url(path)).header("if-none-match", tag);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn an_unchanged_answer_is_304_and_a_changed_one_is_sent_again() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    // Another user, whose creation the users view applies after the admin's login (which changes the
    // admin's updated_at): from here on the admin's profile holds still.
    let (_, other) = app.create_user(&admin, "olga", "user").await;
    let response = app.get("/api/users/profile", Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(tag.starts_with("W/\"") && tag.ends_with('"') && tag.len() > 10, "{tag}");
    assert_eq!(response.headers()["cache-control"], "private, no-cache");

    let again = get_if(&app, "/api/users/profile", Some(&admin), &tag).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), tag);
    assert!(again.headers().contains_key("x-request-id"));
    assert!(again.bytes().await.unwrap().is_empty(), "a 304 has no body");
    // A list of tags matches if one does (compared weakly: with or without W/).
    let listed = get_if(&app, "/api/users/profile", Some(&admin), &format!("\"stale\", {}", &tag[2..])).await;
    assert_eq!(listed.status(), StatusCode::NOT_MODIFIED);

    // The tag does not stand in for authentication, nor open another user's answer.
    let anonymous = get_if(&app, "/api/users/profile", None, &tag).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(anonymous).await, "missing_token");
    let theirs = get_if(&app, "/api/users/profile", Some(&other), &tag).await;
    assert_eq!(theirs.status(), StatusCode::OK);
    assert_eq!(theirs.json::<Value>().await.unwrap()["username"], "olga");

    // A change is sent in full, with a new tag.
    let response = app.put("/api/users/profile", &admin, json!({"display_name": "The Admin"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let changed = loop {
        let response = get_if(&app, "/api/users/profile", Some(&admin), &tag).await;
        if response.status() == StatusCode::OK {
            let new_tag = response.headers()["etag"].to_str().unwrap().to_owned();
            break Some((new_tag, response.json::<Value>().await.unwrap()));
        }
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert!(tokio::time::Instant::now() < deadline, "the change never showed");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let (new_tag, body) = changed.unwrap();
    assert_ne!(new_tag, tag);
    assert_eq!(body["display_name"], "The Admin", "{body}");
    // Errors and writes carry no tag.
    let missing = app.get(&format!("/api/models/{}", uuid::Uuid::now_v7()), Some(&admin)).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(!missing.headers().contains_key("etag"));
}

#[tokio::test]
async fn answers_are_gzipped_for_clients_that_accept_it() {
    use std::io::Read;
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let mut last = String::new();
    for name in ["gina", "gus", "gwen"] {
        last = app.create_user(&admin, name, "user").await.0;
    }
    let path = "/api/audit/events?after=0&limit=100";
    // The audit log shows a transaction once every older one in the cluster has ended (other tests' too):
    // wait until it shows the last one (gwen's login), after which the page holds still.
    eventually(|| async {
        let page: Value = app.get(path, Some(&admin)).await.json().await.unwrap();
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["aggregate_id"] == last.as_str() && e["event_type"] == "SessionStarted")
    })
    .await;
    let plain = app.get(path, Some(&admin)).await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(!plain.headers().contains_key("content-encoding"), "only for clients that ask");
    let tag = plain.headers()["etag"].to_str().unwrap().to_owned();
    let plain = plain.bytes().await.unwrap();

    let request = app.client.get(app.url(path)).bearer_auth(&admin).header("accept-encoding", "gzip");
    let zipped = request.send().await.unwrap();
    assert_eq!(zipped.status(), StatusCode::OK);
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["etag"].to_str().unwrap(), tag, "the same answer, the same (weak) tag");
    let zipped = zipped.bytes().await.unwrap();
    assert!(zipped.len() * 3 < plain.len(), "{} gzipped bytes for {}", zipped.len(), plain.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut unzipped).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&unzipped).unwrap(), serde_json::from_slice::<Value>(&plain).unwrap());

    let request = app.client.get(app.url(path)).bearer_auth(&admin).header("accept-encoding", "gzip");
    let unchanged = request.header("if-none-match", &tag).send().await.unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
}
