//! The event store under the command bus: one-statement appends, the User's state kept in its snapshot,
//! and a snapshot that is behind its events (or missing) rebuilt from the events instead of trusted.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// (last_sequence of the User's snapshot, the User's last event sequence).
async fn snapshot_and_last_event(app: &TestApp, id: &str) -> (Option<i64>, i64) {
    let snapshot: Option<i64> =
        sqlx::query_scalar("SELECT last_sequence FROM snapshots WHERE aggregate_type = 'User' AND aggregate_id = $1")
            .bind(id)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
    let last: i64 =
        sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_type = 'User' AND aggregate_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    (snapshot, last)
}

#[tokio::test]
async fn every_append_keeps_the_snapshot_at_the_last_event() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (id, token) = app.create_user(&admin, "sara", "user").await;
    for name in ["one", "two", "three"] {
        let response = app.put("/api/users/profile", &token, json!({"display_name": name})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (snapshot, last) = snapshot_and_last_event(&app, &id).await;
        assert_eq!(snapshot, Some(last), "the snapshot is written with the events");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "one snapshot row per aggregate");

    // Three sessions, then a password change ends them: one append of four events (PasswordChanged and
    // three SessionEnded), in sequence order also by global position (the relay's order).
    app.tokens("sara", "sara-password").await;
    app.tokens("sara", "sara-password").await;
    let (_, before) = snapshot_and_last_event(&app, &id).await;
    let change = json!({"current_password": "sara-password", "new_password": "another-password"});
    assert_eq!(app.put("/api/users/profile/password", &token, change).await.status(), StatusCode::NO_CONTENT);
    let appended: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT sequence, global_position, event_type FROM events \
         WHERE aggregate_type = 'User' AND aggregate_id = $1 AND sequence > $2 ORDER BY sequence",
    )
    .bind(&id)
    .bind(before)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let kinds: Vec<&str> = appended.iter().map(|(_, _, kind)| kind.as_str()).collect();
    assert_eq!(kinds, ["PasswordChanged", "SessionEnded", "SessionEnded", "SessionEnded"]);
    assert!(appended.windows(2).all(|w| w[1].0 == w[0].0 + 1 && w[1].1 > w[0].1), "{appended:?}");
    let (snapshot, last) = snapshot_and_last_event(&app, &id).await;
    assert_eq!((snapshot, last), (Some(before + 4), before + 4));
}

#[tokio::test]
async fn a_snapshot_behind_its_events_or_missing_is_rebuilt_from_the_events() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (id, token) = app.create_user(&admin, "sam", "user").await;
    let old: (i64, i64, Value) = sqlx::query_as(
        "SELECT last_sequence, current_snapshot, payload::jsonb FROM snapshots WHERE aggregate_type = 'User' AND aggregate_id = $1",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();

    let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let response = app.put("/api/users/profile/password", &token, change("sam-password", "second-password")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Put the snapshot from before the change back: it still holds the first password's hash.
    sqlx::query(
        "UPDATE snapshots SET last_sequence = $2, current_snapshot = $3, payload = $4::json \
         WHERE aggregate_type = 'User' AND aggregate_id = $1",
    )
    .bind(&id)
    .bind(old.0)
    .bind(old.1)
    .bind(&old.2)
    .execute(&app.pool)
    .await
    .unwrap();
    assert!(snapshot_and_last_event(&app, &id).await.0 < Some(snapshot_and_last_event(&app, &id).await.1));

    // Deciding on the stale snapshot would refuse the second password; the events say it is current.
    let token = app.tokens("sam", "second-password").await["access_token"].as_str().unwrap().to_owned();
    let response = app.put("/api/users/profile/password", &token, change("second-password", "third-password")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", response.text().await.unwrap());
    let (snapshot, last) = snapshot_and_last_event(&app, &id).await;
    assert_eq!(snapshot, Some(last), "the next append rewrote the snapshot");

    // No snapshot at all (removed by hand): the same.
    sqlx::query("DELETE FROM snapshots WHERE aggregate_id = $1").bind(&id).execute(&app.pool).await.unwrap();
    let token = app.tokens("sam", "third-password").await["access_token"].as_str().unwrap().to_owned();
    let response = app.put("/api/users/profile", &token, json!({"display_name": "Sam"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["display_name"], "Sam");
    let (snapshot, last) = snapshot_and_last_event(&app, &id).await;
    assert_eq!(snapshot, Some(last));
    assert_eq!(app.login("sam", "second-password").await.status(), StatusCode::UNAUTHORIZED);
}
