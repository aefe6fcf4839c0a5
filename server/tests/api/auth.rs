use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn login_refresh_and_logout_rotate_and_revoke_refresh_tokens() {
    let app = TestApp::spawn().await;
    let first = app.tokens(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(first["token_type"], "Bearer");
    assert!(first["expires_in"].as_i64().unwrap() > 0);
    let refresh = first["refresh_token"].as_str().unwrap();

    let response = app.post("/api/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second: Value = response.json().await.unwrap();
    let rotated = second["refresh_token"].as_str().unwrap();
    assert_ne!(rotated, refresh);

    // The new access token works.
    let access = second["access_token"].as_str().unwrap();
    eventually(|| async { app.get("/api/users/profile", Some(access)).await.status() == StatusCode::OK }).await;

    // Logout ends the session: the current refresh token stops working.
    let response = app.post("/api/auth/logout", None, json!({"refresh_token": rotated})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app.post("/api/auth/refresh", None, json!({"refresh_token": rotated})).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await, "invalid_refresh_token");
}

#[tokio::test]
async fn a_reused_refresh_token_is_rejected_and_revokes_the_session() {
    let app = TestApp::spawn().await;
    let first = app.tokens(ADMIN, ADMIN_PASSWORD).await;
    let old = first["refresh_token"].as_str().unwrap();
    let response = app.post("/api/auth/refresh", None, json!({"refresh_token": old})).await;
    let new: Value = response.json().await.unwrap();
    let new = new["refresh_token"].as_str().unwrap();

    let response = app.post("/api/auth/refresh", None, json!({"refresh_token": old})).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await, "refresh_token_reused");
    // The thief's reuse also kills the legitimate, newer token of the same session.
    let response = app.post("/api/auth/refresh", None, json!({"refresh_token": new})).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_the_same_401() {
    let app = TestApp::spawn().await;
    let wrong = app.login(ADMIN, "not-the-password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(wrong).await, "invalid_credentials");
    let unknown = app.login("nobody-here", "whatever-password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(unknown).await, "invalid_credentials");
}

fn jwt(claims: Value, secret: &str) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

#[tokio::test]
async fn expired_tampered_foreign_and_unsigned_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let good = app.admin_token().await;
    let claims: Value = {
        let payload = good.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let now = chrono::Utc::now().timestamp();

    let mut expired = claims.clone();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let expired = jwt(expired, SECRET);

    let wrong_secret = jwt(claims.clone(), "some-other-secret");

    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut body = claims.clone();
        body["sub"] = json!(uuid::Uuid::new_v4());
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap());
        parts.join(".")
    };

    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );

    for (name, token, code) in [
        ("expired", expired, "token_expired"),
        ("wrong secret", wrong_secret, "invalid_token"),
        ("tampered", tampered, "invalid_token"),
        ("alg none", unsigned, "invalid_token"),
        ("garbage", "not.a.jwt".to_owned(), "invalid_token"),
    ] {
        let response = app.get("/api/users/profile", Some(&token)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(error_code(response).await, code, "{name}");
    }
    let response = app.get("/api/users/profile", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await, "missing_token");
    assert_eq!(app.get("/api/users/profile", Some(&good)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn repeated_failed_logins_are_slowed_then_refused_with_retry_after() {
    let mut settings = test_settings();
    settings.rate_limit.login_slowdown_after = 2;
    settings.rate_limit.login_lockout_after = 4;
    let app = TestApp::spawn_with(settings).await;
    for _ in 0..4 {
        let response = app.login(ADMIN, "wrong-password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits out the lockout");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0);
    assert_eq!(error_code(response).await, "rate_limited");
}

#[tokio::test]
async fn the_per_user_request_limit_answers_429() {
    let mut settings = test_settings();
    settings.rate_limit.requests_per_second = 1;
    settings.rate_limit.burst = 200;
    let app = TestApp::spawn_with(settings).await;
    let token = app.admin_token().await;
    let mut limited = None;
    for _ in 0..400 {
        let response = app.get("/api/users/profile", Some(&token)).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = limited.expect("the limit was hit");
    assert!(response.headers().contains_key("retry-after"));
}

/// Logs `username` in as the client `agent`; the token response.
async fn login_as(app: &TestApp, username: &str, agent: &str) -> Value {
    let body = json!({"username": username, "password": format!("{username}-password")});
    let response = app.client.post(app.url("/api/auth/login")).header("user-agent", agent).json(&body).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

/// Whether `token` is refused as a signed-out session's.
async fn signed_out(app: &TestApp, token: &str) -> bool {
    let response = app.get("/api/users/profile", Some(token)).await;
    response.status() == StatusCode::UNAUTHORIZED && error_code(response).await == "session_ended"
}

#[tokio::test]
async fn a_user_sees_their_sessions_and_signs_them_out_and_so_can_an_admin() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (sam_id, _) = app.create_user(&admin, "sam", "user").await;
    let (_, other) = app.create_user(&admin, "olga", "user").await;
    let laptop = login_as(&app, "sam", "laptop-browser").await;
    let phone = login_as(&app, "sam", "phone-app").await;
    let cli = login_as(&app, "sam", "bonsai-cli").await;

    let sessions = |token: String| {
        let app = &app;
        async move {
            let response = app.get("/api/users/profile/sessions", Some(&token)).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
        }
    };
    let listed = sessions(access(&laptop).to_owned()).await;
    assert_eq!(listed.len(), 4, "create_user logged in once too: {listed:?}");
    let by_agent = |agent: &str| listed.iter().find(|s| s["user_agent"] == agent).unwrap().clone();
    let this = by_agent("laptop-browser");
    assert_eq!((this["current"].as_bool(), this["address"].as_str()), (Some(true), Some("127.0.0.1")));
    assert!(this["started_at"].is_string() && this["expires_at"].is_string(), "{this}");
    assert_eq!(listed.iter().filter(|s| s["current"] == true).count(), 1);
    assert_eq!(listed[0]["id"], by_agent("bonsai-cli")["id"], "most recent first");

    // One session signed out from another: its refresh token and its access token stop at once.
    let phone_id = by_agent("phone-app")["id"].as_str().unwrap().to_owned();
    let path = format!("/api/users/profile/sessions/{phone_id}");
    assert_eq!(app.delete(&path, Some(&other)).await.status(), StatusCode::NOT_FOUND, "not olga's session");
    assert_eq!(app.delete(&path, Some(access(&laptop))).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&path, Some(access(&laptop))).await.status(), StatusCode::NOT_FOUND, "already ended");
    eventually(|| async { signed_out(&app, access(&phone)).await }).await;
    let response = app.post("/api/auth/refresh", None, json!({"refresh_token": phone["refresh_token"]})).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let ids: Vec<Value> = sessions(access(&laptop).to_owned()).await.iter().map(|s| s["id"].clone()).collect();
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(&json!(phone_id)));
    let response = app.get("/api/users/profile/sessions/not-an-id", Some(access(&laptop))).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    // Everywhere else: only this session is left.
    let response = app.delete("/api/users/profile/sessions", Some(access(&laptop))).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    eventually(|| async { signed_out(&app, access(&cli)).await }).await;
    let left = sessions(access(&laptop).to_owned()).await;
    assert_eq!((left.len(), left[0]["user_agent"].as_str()), (1, Some("laptop-browser")));

    // An admin signs sam out everywhere; users may not.
    let path = format!("/api/users/{sam_id}/sessions");
    assert_eq!(app.delete(&path, Some(&other)).await.status(), StatusCode::FORBIDDEN);
    let unknown = format!("/api/users/{}/sessions", uuid::Uuid::now_v7());
    assert_eq!(app.delete(&unknown, Some(&admin)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&path, Some(&admin)).await.status(), StatusCode::NO_CONTENT);
    eventually(|| async { signed_out(&app, access(&laptop)).await }).await;
    let response = app.post("/api/auth/refresh", None, json!({"refresh_token": laptop["refresh_token"]})).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let history = bonsai_projections::log::aggregate_history(&app.pool, "User", &sam_id).await.unwrap();
    let reasons: Vec<&str> = history
        .iter()
        .filter(|e| e.event_type == "SessionEnded")
        .map(|e| e.payload["SessionEnded"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["revoked", "revoked", "revoked", "revoked_by_admin"], "{reasons:?}");

    // A node started later refuses the signed-out sessions' tokens from its first request.
    let settings = app.settings.clone();
    app.stop().await.unwrap();
    let restarted = TestApp::spawn_with(settings).await;
    assert!(signed_out(&restarted, access(&phone)).await);
    assert!(signed_out(&restarted, access(&laptop)).await);
    // A new login works as before.
    let again = login_as(&restarted, "sam", "laptop-browser").await;
    assert_eq!(restarted.get("/api/users/profile", Some(access(&again))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_access_token_lifetime_beyond_the_sign_out_memory_stops_the_start() {
    for ttl in [0, 24 * 3600 + 1] {
        let mut settings = test_settings();
        settings.access_token_ttl_secs = ttl;
        let error = bonsai_server::Application::build(&settings).await.err().expect("the start fails");
        assert!(format!("{error:#}").contains("BONSAI__ACCESS_TOKEN_TTL_SECS"), "{error:#}");
    }
}

#[tokio::test]
async fn a_signed_out_token_is_refused_by_the_node_that_signed_out_before_it_answers() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "sam", "user").await;

    // Logout: the very next request with the old access token is refused, without waiting for any notice.
    for _ in 0..5 {
        let tokens = login_as(&app, "sam", "laptop").await;
        assert_eq!(app.get("/api/users/profile", Some(access(&tokens))).await.status(), StatusCode::OK);
        let response = app.post("/api/auth/logout", None, json!({"refresh_token": tokens["refresh_token"]})).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(signed_out(&app, access(&tokens)).await, "refused at once after logout");
    }

    // A session deleted from another one, and all but this one: refused at once too.
    let laptop = login_as(&app, "sam", "laptop").await;
    let phone = login_as(&app, "sam", "phone").await;
    let tablet = login_as(&app, "sam", "tablet").await;
    assert_eq!(app.get("/api/users/profile", Some(access(&phone))).await.status(), StatusCode::OK);
    let listed: Value = app.get("/api/users/profile/sessions", Some(access(&laptop))).await.json().await.unwrap();
    let phone_id = listed["items"].as_array().unwrap().iter().find(|s| s["user_agent"] == "phone").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/users/profile/sessions/{phone_id}");
    assert_eq!(app.delete(&path, Some(access(&laptop))).await.status(), StatusCode::NO_CONTENT);
    assert!(signed_out(&app, access(&phone)).await, "refused at once after the session's deletion");
    assert_eq!(app.get("/api/users/profile", Some(access(&tablet))).await.status(), StatusCode::OK);
    let response = app.delete("/api/users/profile/sessions", Some(access(&laptop))).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(signed_out(&app, access(&tablet)).await, "refused at once after signing out the others");
    assert_eq!(app.get("/api/users/profile", Some(access(&laptop))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn another_node_refuses_a_signed_out_token_as_soon_as_it_hears_of_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "sam", "user").await;
    let other = TestApp::spawn_with(app.settings.clone()).await;
    let mut delays = Vec::new();
    for _ in 0..5 {
        let tokens = login_as(&app, "sam", "laptop").await;
        // The other node has seen this session live (its memory of it is warm: only the notice can stop it).
        eventually(|| async {
            other.get("/api/users/profile", Some(access(&tokens))).await.status() == StatusCode::OK
        })
        .await;
        let response = app.post("/api/auth/logout", None, json!({"refresh_token": tokens["refresh_token"]})).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let answered = std::time::Instant::now();
        while !signed_out(&other, access(&tokens)).await {
            assert!(answered.elapsed() < std::time::Duration::from_secs(2), "the other node still accepts it");
        }
        delays.push(answered.elapsed());
    }
    let longest = delays.iter().max().unwrap();
    println!("another node refused a signed-out token {delays:?} after the logout answered (longest {longest:?})");
    assert!(*longest < std::time::Duration::from_millis(500), "{delays:?}");
    other.stop().await.unwrap();
}

#[tokio::test]
async fn tokens_naming_no_session_or_living_too_long_are_refused_with_a_plain_message() {
    let app = TestApp::spawn().await;
    let good = app.admin_token().await;
    let claims: Value = {
        let payload = good.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let mut no_session = claims.clone();
    no_session["sid"] = json!(uuid::Uuid::now_v7());
    let mut years_ahead = claims.clone();
    years_ahead["exp"] = json!(now + 5 * 365 * 24 * 3600);
    let mut beyond_lifetime = claims.clone();
    beyond_lifetime["iat"] = json!(now - 3600);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    for (name, token) in [
        ("a session that never existed", jwt(no_session, SECRET)),
        ("exp years ahead", jwt(years_ahead, SECRET)),
        ("exp beyond iat + lifetime", jwt(beyond_lifetime, SECRET)),
        ("alg none", unsigned),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let response = app.get("/api/users/profile", Some(&token)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_token", "{name}");
        assert_eq!(body["error"]["message"], "invalid token", "{name}: no library internals");
    }
    assert_eq!(app.get("/api/users/profile", Some(&good)).await.status(), StatusCode::OK);
}
