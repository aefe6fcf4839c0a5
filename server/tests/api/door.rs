//! What is let in: text PostgreSQL cannot store is refused at the door with the field named (it used to be
//! accepted and then lost in the views), names are free of control characters, and what was just written reads
//! back at once.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn refused(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn text_holding_nul_is_refused_at_the_door_with_the_field_named() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cases = [
        ("/api/qa/ask", json!({"question": "What is\u{0}?"}), "question"),
        (
            "/api/training/tasks",
            json!({"name": "bot\u{0}", "base_model_id": "tiny", "dataset_id": uuid::Uuid::nil()}),
            "name",
        ),
        (
            "/api/models",
            json!({"name": "m", "base_model_id": "tiny", "test_cases": [{"question": "a\u{0}", "answer": "b"}]}),
            "test_cases[0].question",
        ),
        (
            "/api/users",
            json!({"username": "zed", "email": "z@example.com", "password": "long-enough-1", "role": "user", "display_name": "Z\u{0}"}),
            "display_name",
        ),
    ];
    for (path, body, field) in cases {
        let (status, body) = refused(app.post(path, Some(&admin), body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["details"]["field"].as_str()),
            (Some("invalid_text"), Some(field)),
            "{path}"
        );
    }
    let (status, body) = refused(app.put("/api/users/profile", &admin, json!({"display_name": "A\u{0}"})).await).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("display_name"))
    );

    // Multipart text fields too, and control characters in a dataset's name.
    let line = br#"{"question": "q", "answer": "a"}"#.to_vec();
    for (fields, field, code) in [
        (&[("name", "faq\u{0}")][..], "name", "invalid_text"),
        (&[("name", "faq"), ("description", "about\u{0}")][..], "description", "invalid_text"),
        (&[("name", "faq\u{7}bell")][..], "name", "validation_failed"),
    ] {
        let (status, body) = refused(app.upload(Some(&admin), "qa.jsonl", line.clone(), fields).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["details"]["field"].as_str()),
            (Some(code), Some(field))
        );
    }
    // Nothing of it was stored.
    let (datasets, questions): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE aggregate_type = 'Dataset'), \
                (SELECT count(*) FROM events WHERE aggregate_type = 'QaSession')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((datasets, questions), (0, 0));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn what_was_just_created_or_changed_reads_back_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let line = br#"{"question": "q", "answer": "a"}"#.to_vec();
    for i in 0..30 {
        let created = app.upload(Some(&admin), "qa.jsonl", line.clone(), &[("name", &format!("set {i}"))]).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let read = app.get(&format!("/api/data/datasets/{id}"), Some(&admin)).await;
        assert_eq!(read.status(), StatusCode::OK, "try {i}: the upload reads back right after its 201");
    }
    let body = json!({"username": "fresh", "email": "fresh@example.com", "password": "long-enough-1", "role": "user"});
    let created: Value = app.post("/api/users", Some(&admin), body).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let patched = app.patch(&format!("/api/users/{id}"), &admin, json!({"role": "trainer"})).await;
    assert_eq!(patched.status(), StatusCode::OK);
    let read: Value = app.get(&format!("/api/users/{id}"), Some(&admin)).await.json().await.unwrap();
    assert_eq!(read["role"], "trainer", "a change reads back right after it");
    app.stop().await.unwrap();
}
