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
