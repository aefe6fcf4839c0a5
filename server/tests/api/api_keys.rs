//! API keys (issue 20): created, listed and revoked through the API, accepted on `/v1/*` and `/api/qa/*`
//! only, refused at once once revoked or once their owner is deactivated, on this node and on another.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEYS: &str = "/api/users/profile/api-keys";

/// Creates a key named `name` for the bearer of `token`, answering the creation's body.
async fn create_key(app: &TestApp, token: &str, name: &str) -> Value {
    let response = app.post(KEYS, Some(token), json!({ "name": name })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

fn secret(key: &Value) -> &str {
    key["secret"].as_str().unwrap()
}

/// The status and error code (if any) of a question history read with `key`.
async fn history_with(app: &TestApp, key: &str) -> (StatusCode, Option<String>) {
    let response = app.get("/api/qa/history", Some(key)).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().map(str::to_owned))
}

/// The event types of user `id`'s history, with their payloads.
async fn user_events(app: &TestApp, admin: &str, id: &str) -> Vec<Value> {
    app.get(&format!("/api/audit/User/{id}"), Some(admin)).await.json().await.unwrap()
}

#[tokio::test]
async fn an_api_key_works_on_questions_only_is_listed_without_its_secret_and_stops_at_once_when_revoked() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (kim, token) = app.create_user(&admin, "kim", "user").await;

    let key = create_key(&app, &token, "  ci pipeline ").await;
    let secret = secret(&key).to_owned();
    assert!(secret.starts_with("bsk_"), "{secret}");
    assert_eq!(key["name"], "ci pipeline");
    assert_eq!(key["prefix"].as_str().unwrap(), &secret[..12]);

    // Accepted on the question endpoints, with the owner's identity.
    assert_eq!(history_with(&app, &secret).await, (StatusCode::OK, None));
    // Anywhere else: 401 with a code that says why.
    for path in ["/api/data/datasets", "/api/users/profile", KEYS, "/api/training/tasks"] {
        let response = app.get(path, Some(&secret)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(error_code(response).await, "api_key_not_allowed", "{path}");
    }
    let response = app.post(KEYS, Some(&secret), json!({"name": "from a key"})).await;
    assert_eq!(error_code(response).await, "api_key_not_allowed", "a key makes no keys");

    // Listed with its prefix and last use, never its secret.
    let response = app.get(KEYS, Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&secret) && !text.contains(&secret[12..]), "the secret is not listed: {text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], key["id"]);
    assert_eq!(items[0]["prefix"], key["prefix"]);
    assert_eq!(items[0]["name"], "ci pipeline");
    assert!(items[0].get("secret").is_none() && items[0].get("secret_hash").is_none());
    assert!(items[0]["last_used_at"].is_string(), "used once: {}", items[0]);
    // Used again within the minute: the time is not rewritten (at most one write a minute per key).
    assert_eq!(history_with(&app, &secret).await.0, StatusCode::OK);
    let again: Value = app.get(KEYS, Some(&token)).await.json().await.unwrap();
    assert_eq!(again["items"][0]["last_used_at"], items[0]["last_used_at"]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM api_key_usage").fetch_one(&app.pool).await.unwrap();
    assert_eq!(rows, 1);

    // The OpenAI-compatible door takes it too.
    let models = app.get("/v1/models", Some(&secret)).await;
    assert_eq!(models.status(), StatusCode::OK);
    assert_eq!(models.json::<Value>().await.unwrap()["object"], "list");

    // Revoked: the very next request with it is refused.
    let path = format!("{KEYS}/{}", key["id"].as_str().unwrap());
    assert_eq!(app.delete(&path, Some(&token)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(history_with(&app, &secret).await, (StatusCode::UNAUTHORIZED, Some("invalid_api_key".into())));
    // Under /v1, refused in OpenAI's error shape.
    let models = app.get("/v1/models", Some(&secret)).await;
    assert_eq!(models.status(), StatusCode::UNAUTHORIZED);
    let body: Value = models.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "authentication_error");
    let list: Value = app.get(KEYS, Some(&token)).await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    // Revoking it again, or a key that never was: 4xx with a code.
    let again = app.delete(&path, Some(&token)).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(again).await, "api_key_revoked");
    let unknown = app.delete(&format!("{KEYS}/{}", uuid::Uuid::now_v7()), Some(&token)).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(unknown).await, "not_found");

    // Both are events in the audit log, the hash redacted, the revocation naming who did it.
    let events = user_events(&app, &admin, &kim).await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&secret[4..36]), "no secret in the log");
    let created = events.iter().find(|e| e["event_type"] == "ApiKeyCreated").expect("created is logged");
    assert_eq!(created["payload"]["ApiKeyCreated"]["secret_hash"], "[redacted]");
    assert_eq!(created["payload"]["ApiKeyCreated"]["prefix"], key["prefix"]);
    let revoked = events.iter().find(|e| e["event_type"] == "ApiKeyRevoked").expect("revoked is logged");
    assert_eq!(revoked["payload"]["ApiKeyRevoked"]["by"].as_str(), Some(kim.as_str()));
}

#[tokio::test]
async fn a_key_works_on_another_node_and_stops_with_its_owners_deactivation_on_every_node() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (kim, token) = app.create_user(&admin, "kim", "user").await;
    let other = TestApp::spawn_with(app.settings.clone()).await;
    let key = create_key(&app, &token, "script").await;
    let secret = secret(&key).to_owned();
    // Another node accepts a key created through this one (its cached state of kim is read again).
    assert_eq!(history_with(&other, &secret).await, (StatusCode::OK, None));
    // The key acts as its owner: it reads what the owner reads.
    let mine: Value = app.get("/api/qa/history", Some(&secret)).await.json().await.unwrap();
    let by_token: Value = app.get("/api/qa/history", Some(&token)).await.json().await.unwrap();
    assert_eq!(mine, by_token, "the key sees what its owner sees");

    let response = app.patch(&format!("/api/users/{kim}"), &admin, json!({"is_active": false})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let disabled = (StatusCode::UNAUTHORIZED, Some("account_disabled".to_owned()));
    assert_eq!(history_with(&app, &secret).await, disabled, "refused at once by the node that deactivated");
    let answered = Instant::now();
    while history_with(&other, &secret).await != disabled {
        assert!(answered.elapsed() < Duration::from_secs(2), "the other node still accepts the key");
    }
    println!("another node refused a deactivated owner's key {:?} after the answer", answered.elapsed());

    let response = app.patch(&format!("/api/users/{kim}"), &admin, json!({"is_active": true})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(history_with(&app, &secret).await, (StatusCode::OK, None), "works again once reactivated");
    eventually(|| async { history_with(&other, &secret).await.0 == StatusCode::OK }).await;
    other.stop().await.unwrap();
}

#[tokio::test]
async fn another_node_refuses_a_revoked_key_as_soon_as_it_hears_of_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, token) = app.create_user(&admin, "kim", "user").await;
    let other = TestApp::spawn_with(app.settings.clone()).await;
    let mut delays = Vec::new();
    for i in 0..5 {
        let key = create_key(&app, &token, &format!("key {i}")).await;
        let secret = secret(&key).to_owned();
        // The other node has the owner's state with this key cached: only the notice can stop it.
        eventually(|| async { history_with(&other, &secret).await.0 == StatusCode::OK }).await;
        let path = format!("{KEYS}/{}", key["id"].as_str().unwrap());
        assert_eq!(app.delete(&path, Some(&token)).await.status(), StatusCode::NO_CONTENT);
        let answered = Instant::now();
        while history_with(&other, &secret).await.0 != StatusCode::UNAUTHORIZED {
            assert!(answered.elapsed() < Duration::from_secs(2), "the other node still accepts the key");
        }
        delays.push(answered.elapsed());
    }
    let longest = delays.iter().max().unwrap();
    println!("another node refused a revoked key {delays:?} after the revocation answered (longest {longest:?})");
    assert!(*longest < Duration::from_millis(500), "{delays:?}");
    other.stop().await.unwrap();
}

#[tokio::test]
async fn an_admin_lists_and_revokes_another_users_keys() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let me: Value = app.get("/api/users/profile", Some(&admin)).await.json().await.unwrap();
    let (kim, token) = app.create_user(&admin, "kim", "user").await;
    let (_, sam) = app.create_user(&admin, "sam", "trainer").await;
    let first = create_key(&app, &token, "first").await;
    let second = create_key(&app, &token, "second").await;

    let list: Value = app.get(&format!("/api/users/{kim}/api-keys"), Some(&admin)).await.json().await.unwrap();
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first", "second"]);
    assert!(list["items"][1]["last_used_at"].is_null(), "never used");
    // Not for anyone else.
    let response = app.get(&format!("/api/users/{kim}/api-keys"), Some(&sam)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let path = format!("/api/users/{kim}/api-keys/{}", first["id"].as_str().unwrap());
    let response = app.delete(&path, Some(&sam)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(history_with(&app, secret(&first)).await.0, StatusCode::OK);

    assert_eq!(app.delete(&path, Some(&admin)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(history_with(&app, secret(&first)).await.1.as_deref(), Some("invalid_api_key"));
    assert_eq!(history_with(&app, secret(&second)).await.0, StatusCode::OK, "the other key still works");
    let events = user_events(&app, &admin, &kim).await;
    let revoked = events.iter().find(|e| e["event_type"] == "ApiKeyRevoked").unwrap();
    assert_eq!(revoked["payload"]["ApiKeyRevoked"]["by"], me["id"], "the admin is recorded");
    assert_eq!(revoked["metadata"]["actor"], me["id"]);

    let nobody = uuid::Uuid::new_v4();
    let response = app.get(&format!("/api/users/{nobody}/api-keys"), Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let path = format!("/api/users/{nobody}/api-keys/{}", second["id"].as_str().unwrap());
    assert_eq!(app.delete(&path, Some(&admin)).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_key_requests_are_refused_with_codes() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (kim, token) = app.create_user(&admin, "kim", "user").await;

    for name in [json!(""), json!("   "), json!("n".repeat(101)), json!("bell\u{7}")] {
        let response = app.post(KEYS, Some(&token), json!({ "name": name })).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_failed", "{name}");
        assert_eq!(body["error"]["details"]["field"], "name", "{name}");
    }
    let response = app.post(KEYS, Some(&token), json!({ "name": "k", "scopes": ["all"] })).await;
    assert!(response.status().is_client_error(), "unknown fields are refused");

    // A retried creation (same Idempotency-Key) is not replayed: its answer held a secret that is kept nowhere.
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let response = app
            .client
            .post(app.url(KEYS))
            .bearer_auth(&token)
            .header("idempotency-key", "create-key-1")
            .json(&json!({"name": "retried"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(response.headers().get("idempotent-replayed").is_none());
        secrets.push(response.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned());
    }
    assert_ne!(secrets[0], secrets[1]);

    // At most 20 live keys.
    for i in 2..20 {
        create_key(&app, &token, &format!("key {i}")).await;
    }
    let response = app.post(KEYS, Some(&token), json!({"name": "one too many"})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "too_many_api_keys");

    // Secrets that are not keys of anyone.
    let real = secrets[0].clone();
    let unknown_owner = format!("{}{}", &real[..37], uuid::Uuid::new_v4().simple());
    let wrong_random = format!("bsk_{}{}", "A".repeat(32), &real[36..]);
    for bad in ["bsk_nonsense".to_owned(), unknown_owner, wrong_random, format!("{real}x")] {
        assert_eq!(
            history_with(&app, &bad).await,
            (StatusCode::UNAUTHORIZED, Some("invalid_api_key".to_owned())),
            "{bad}"
        );
    }
    assert_eq!(history_with(&app, &real).await.0, StatusCode::OK);
    let response = app.delete(&format!("/api/users/{kim}/api-keys/not-a-uuid"), Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "a key id is a UUID");
}
