use crate::helpers::*;
use bonsai_projections::users::all_rows;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn a_users_view_rebuilt_by_bonsai_replay_equals_the_live_one() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (id, token) = app.create_user(&admin, "mona", "user").await;
    app.create_user(&admin, "nick", "trainer").await;
    app.put("/api/users/profile", &token, json!({"display_name": "Mona L."})).await;
    app.patch(&format!("/api/users/{id}"), &admin, json!({"role": "trainer", "is_active": false})).await;
    eventually(|| async {
        let u: Value = app.get(&format!("/api/users/{id}"), Some(&admin)).await.json().await.unwrap();
        u["is_active"] == false && u["role"] == "trainer" && u["display_name"] == "Mona L."
    })
    .await;
    let live = all_rows(&app.pool).await.unwrap();
    assert_eq!(live.len(), 3);

    // Vandalise the view, then rebuild it with the real CLI.
    sqlx::query("UPDATE users_view SET display_name = 'wrong', role = 'admin'").execute(&app.pool).await.unwrap();
    // Without the encryption keys the sealed events cannot be read: the replay stops and says why.
    let output = app
        .cli(&["replay", "--projection", "users"])
        .env_remove("BONSAI__ENCRYPTION__KEYS")
        .env_remove("BONSAI__ENCRYPTION__INDEX_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("BONSAI__ENCRYPTION__KEYS"), "{output:?}");
    let output = app.cli(&["replay", "--projection", "users"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("rebuilt users"));
    assert_eq!(all_rows(&app.pool).await.unwrap(), live);

    // The live consumer skips what the rebuild applied and keeps going.
    app.put("/api/users/profile", &token, json!({"display_name": "after replay"})).await;
    let unknown = app.cli(&["replay", "--projection", "nope"]).output().unwrap();
    assert!(!unknown.status.success());
    assert_eq!(
        app.get("/api/users/profile", Some(&token)).await.status(),
        StatusCode::UNAUTHORIZED,
        "mona is deactivated"
    );
}
