//! Encryption at rest (design 4.2): e-mail addresses, display names, session clients and addresses, and
//! questions and answers are sealed in the event store, the snapshots, the read models and the messages on
//! NATS (which JetStream keeps on disk), and read back plain through the API and the audit log. (Every test
//! runs with keys: see `test_settings`.)

use crate::helpers::*;
use bonsai_domain::AggregateKind;
use bonsai_projections::Subjects;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// How many rows of the event store, the snapshots and the views hold `needle` in plain text (sealed values
/// are text too: a needle of `sealed:v1:<key>:` counts those sealed with a key).
async fn plain_copies(app: &TestApp, needle: &str) -> i64 {
    let pattern = format!("%{needle}%");
    let mut found = 0;
    for sql in [
        "SELECT count(*) FROM events WHERE payload::text LIKE $1",
        "SELECT count(*) FROM snapshots WHERE payload::text LIKE $1",
        "SELECT count(*) FROM users_view WHERE email LIKE $1 OR display_name LIKE $1",
        "SELECT count(*) FROM qa_history_view WHERE question LIKE $1 OR answer LIKE $1",
        "SELECT count(*) FROM data_keys WHERE key LIKE $1",
    ] {
        let n: i64 = sqlx::query_scalar(sql).bind(&pattern).fetch_one(&app.pool).await.unwrap();
        found += n;
    }
    found
}

#[tokio::test]
async fn personal_data_is_sealed_in_the_database_and_plain_through_the_api() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let nats = async_nats::connect(&app.settings.nats_url).await.unwrap();
    let mut published =
        nats.subscribe(Subjects::new(&app.settings.nats_prefix).events_of(AggregateKind::User)).await.unwrap();

    let body = json!({"username": "ada", "email": "ada.lovelace@example.com", "password": "ada-password-1",
        "role": "user", "display_name": "Ada Lovelace"});
    let response = app.post("/api/users", Some(&admin), body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let login = app
        .client
        .post(app.url("/api/auth/login"))
        .header("user-agent", "AnalyticalEngine/1843")
        .json(&json!({"username": "ada", "password": "ada-password-1"}))
        .send()
        .await
        .unwrap();
    let token = login.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let path = format!("/api/users/{id}");
    eventually(|| async { app.get(&path, Some(&admin)).await.status() == StatusCode::OK }).await;
    let profile = json!({"email": "countess@example.com"});
    assert_eq!(app.put("/api/users/profile", &token, profile).await.status(), StatusCode::OK);
    eventually(|| async {
        let user: Value = app.get(&path, Some(&admin)).await.json().await.unwrap();
        user["email"] == "countess@example.com"
    })
    .await;

    // Plain through the API: the user's own profile, the admin's view, sessions, the audit log.
    let user: Value = app.get(&path, Some(&admin)).await.json().await.unwrap();
    assert_eq!(
        (user["email"].as_str(), user["display_name"].as_str()),
        (Some("countess@example.com"), Some("Ada Lovelace"))
    );
    let sessions: Value = app.get("/api/users/profile/sessions", Some(&token)).await.json().await.unwrap();
    assert_eq!(sessions["items"][0]["user_agent"], "AnalyticalEngine/1843", "{sessions}");
    let audit: Value = app.get(&format!("/api/audit/User/{id}"), Some(&admin)).await.json().await.unwrap();
    assert!(audit.to_string().contains("ada.lovelace@example.com"), "the audit log reads plain: {audit}");
    // On NATS sealed as in the store: an integration with the keys opens them (`bonsai_crypto::sealed`).
    let registered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(message) = published.next().await {
            if String::from_utf8_lossy(&message.payload).contains("\"UserRegistered\"") {
                return message.payload;
            }
        }
        Default::default()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&registered);
    assert!(!text.contains("ada.lovelace@") && !text.contains("Lovelace"), "plain on NATS: {text}");
    let envelope: Value = serde_json::from_slice(&registered).unwrap();
    let sealed_email = envelope["payload"]["UserRegistered"]["email"].as_str().unwrap();
    assert!(sealed_email.starts_with("sealed:v1:t2:"), "{sealed_email}");
    let opened = bonsai_projections::StoredEvent::from_bus(&app.pool, &registered).await.unwrap();
    assert_eq!(opened.payload["UserRegistered"]["email"], "ada.lovelace@example.com");

    // Sealed in the database, everywhere.
    for secret in ["ada.lovelace@", "countess@", "Lovelace", "AnalyticalEngine"] {
        assert_eq!(plain_copies(&app, secret).await, 0, "{secret} is stored in plain text");
    }
    let stored: String = sqlx::query_scalar("SELECT email FROM users_view WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("sealed:v1:t2:"), "sealed with the first key: {stored}");

    // An address in use is still found, though sealed (by its digest), for both create and update.
    let taken =
        json!({"username": "ada2", "email": "countess@example.com", "password": "ada-password-2", "role": "user"});
    let response = app.post("/api/users", Some(&admin), taken).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "email_taken");
    let (babbage, other) = app.create_user(&admin, "babbage", "user").await;
    let response = app.put("/api/users/profile", &other, json!({"email": "countess@example.com"})).await;
    assert_eq!(error_code(response).await, "email_taken");

    // A value sealed for one record does not open for another: copied to another row, it is refused.
    sqlx::query("UPDATE users_view SET email = $1 WHERE username = 'babbage'")
        .bind(&stored)
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app.get(&format!("/api/users/{babbage}"), Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!response.text().await.unwrap().contains("countess"));
}

#[tokio::test]
async fn questions_and_answers_are_sealed_in_the_database() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let (_, user) = app.create_user(&admin, "asker", "user").await;
    let nats = async_nats::connect(&app.settings.nats_url).await.unwrap();
    let mut published =
        nats.subscribe(Subjects::new(&app.settings.nats_prefix).events_of(AggregateKind::QaSession)).await.unwrap();
    let (status, first) =
        app.ask(&user, json!({"question": "What is the quarterly margin?", "max_new_tokens": 6})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let session = first["session_id"].as_str().unwrap();
    let answer = first["answer"].as_str().unwrap().to_owned();
    let follow_up = json!({"question": "And the forecast?", "session_id": session, "max_new_tokens": 4});
    let (status, second) = app.ask(&user, follow_up).await;
    assert_eq!(status, StatusCode::OK);
    let history: Value = app.get(&format!("/api/qa/history/{session}"), Some(&user)).await.json().await.unwrap();
    assert_eq!(history["items"][0]["question"], "What is the quarterly margin?", "{history}");
    assert_eq!(history["items"][0]["answer"], answer.as_str());
    for secret in ["quarterly margin", "the forecast"] {
        assert_eq!(plain_copies(&app, secret).await, 0, "{secret} is stored in plain text");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM qa_history_view WHERE question LIKE 'sealed:v1:%'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Sealed on NATS too: of the conversation's events, none holds a question or the answer in the clear.
    // Question and answer text is erasable: sealed with the data key of its question (`sealed:e1:<id>:`).
    let mut sealed = 0;
    let mut asked = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(std::time::Duration::from_secs(2), published.next()).await {
        let text = String::from_utf8_lossy(&message.payload);
        // (The tiny model's answer only when it is long enough not to turn up by chance.)
        for secret in ["quarterly margin", "the forecast", answer.as_str()].into_iter().filter(|s| s.len() >= 12) {
            assert!(!text.contains(secret), "{secret} is plain on NATS: {text}");
        }
        sealed += text.matches("sealed:e1:").count();
        if text.contains("\"QuestionAsked\"") {
            asked.push(message.payload);
        }
    }
    assert!(sealed >= 5, "two questions, one copy in context and two answers sealed on NATS: {sealed}");
    assert_eq!(asked.len(), 2);
    let follow_up = opened(&app, &asked[1]).await["QuestionAsked"].clone();
    assert_eq!(follow_up["context"][0]["question"], "What is the quarterly margin?");

    // Deleting the first question erases its data key: the messages JetStream keeps no longer open, in
    // this process or any other (no key is left in the database).
    let first_id = first["question_id"].as_str().unwrap();
    let response = app.delete(&format!("/api/qa/history/{first_id}"), Some(&user)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    app.until_erased(first_id).await;
    let erased = bonsai_crypto::data_keys::ERASED;
    assert_eq!(opened(&app, &asked[0]).await["QuestionAsked"]["question"], erased);
    let follow_up = opened(&app, &asked[1]).await["QuestionAsked"].clone();
    assert_eq!(
        (follow_up["question"].as_str(), follow_up["context"][0]["question"].as_str()),
        (Some("And the forecast?"), Some(erased))
    );
    let stored: String = sqlx::query_scalar("SELECT key FROM data_keys WHERE id = $1::uuid")
        .bind(second["question_id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("sealed:v1:t2:"), "the follow-up's key is live, sealed with the key ring: {stored}");
}

/// The payload of a message as published on NATS, opened as a subscriber opens it.
async fn opened(app: &TestApp, payload: &[u8]) -> Value {
    bonsai_projections::StoredEvent::from_bus(&app.pool, payload).await.unwrap().payload
}

/// A new key (bytes 3 x 32) in front of the tests' keys.
const ROTATED_KEYS: &str = "t3:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=,\
    t2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=,t1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// How many rows of the event store, the snapshots and the views hold a value sealed with `key`.
async fn sealed_with(app: &TestApp, key: &str) -> i64 {
    plain_copies(app, &format!("sealed:v1:{key}:")).await
}

#[tokio::test]
async fn after_a_key_rotation_rekey_seals_everything_with_the_new_key() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let (user_id, user) = app.create_user(&admin, "rosa", "user").await;
    let (status, asked) = app.ask(&user, json!({"question": "Where is the archive?", "max_new_tokens": 4})).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    let session = asked["session_id"].as_str().unwrap().to_owned();
    eventually(|| async {
        let history: Value = app.get(&format!("/api/qa/history/{session}"), Some(&user)).await.json().await.unwrap();
        history["items"][0]["status"] == "answered"
    })
    .await;
    let before = sealed_with(&app, "t2").await;
    assert!(before > 5, "the data is sealed with the tests' key t2: {before}");
    // Every node runs with the new key first (here: the platform is stopped, and the CLI has it).
    let mut app = app;
    app.halt().await.unwrap();

    let rekey = |dry_run: bool| {
        let mut command = app.cli(&["rekey"]);
        command.args(dry_run.then_some("--dry-run")).env("BONSAI__ENCRYPTION__KEYS", ROTATED_KEYS);
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let planned = rekey(true);
    assert!(planned.contains("events: sealed values by key t2: "), "{planned}");
    assert!(planned.contains("would re-seal") && !planned.contains("would re-seal 0 "), "{planned}");
    assert_eq!(sealed_with(&app, "t2").await, before, "a dry run changes nothing");
    let done = rekey(false);
    assert!(done.contains("nothing stored is sealed with another key now"), "{done}");
    assert_eq!(sealed_with(&app, "t2").await, 0, "{done}");
    assert!(sealed_with(&app, "t3").await >= before);
    assert!(rekey(false).contains("re-sealed 0 values"), "a second run has nothing to do");

    // The old keys can go: the whole store opens with the new key alone (the views rebuilt from it too).
    let output = app.cli(&["replay", "--all"]).env("BONSAI__ENCRYPTION__KEYS", &ROTATED_KEYS[..48]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let only_new = bonsai_crypto::KeyRing::parse(&ROTATED_KEYS[..48], TEST_INDEX_KEY).unwrap();
    let email: String = sqlx::query_scalar("SELECT email FROM users_view WHERE id = $1::uuid")
        .bind(&user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(only_new.open(&email, &format!("User/{user_id}")).unwrap(), "rosa@example.com");
    let question: String = sqlx::query_scalar("SELECT question FROM qa_history_view WHERE session_id = $1::uuid")
        .bind(&session)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(only_new.open(&question, &format!("QaSession/{session}")).unwrap(), "Where is the archive?");
}

/// Question text as stored before it was erasable: every erasable value of `value` sealed with the key ring
/// instead (the text of an erased one replaced by `erased_text`).
fn as_before_erasable(value: &mut Value, context: &str, ring: &bonsai_crypto::KeyRing, erased_text: &str) {
    match value {
        Value::String(s) if bonsai_crypto::data_keys::is_erasable(s) || s == bonsai_crypto::data_keys::ERASED => {
            let plain = bonsai_crypto::sealed::open(s, context).unwrap();
            let plain = if plain == bonsai_crypto::data_keys::ERASED { erased_text.to_owned() } else { plain };
            *s = ring.seal(&plain, context);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| as_before_erasable(v, context, ring, erased_text)),
        Value::Object(map) => map.values_mut().for_each(|v| as_before_erasable(v, context, ring, erased_text)),
        _ => {}
    }
}

#[tokio::test]
async fn make_erasable_brings_older_question_text_under_data_keys_and_erases_what_was_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let (_, user) = app.create_user(&admin, "archivist", "user").await;
    let (status, first) = app.ask(&user, json!({"question": "Where is the old vault?", "max_new_tokens": 4})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let session = first["session_id"].as_str().unwrap().to_owned();
    let follow_up = json!({"question": "Who keeps the old keys?", "session_id": session, "max_new_tokens": 4});
    let (status, second) = app.ask(&user, follow_up).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let (first_id, second_id) = (first["question_id"].as_str().unwrap(), second["question_id"].as_str().unwrap());
    assert_eq!(app.delete(&format!("/api/qa/history/{first_id}"), Some(&user)).await.status(), StatusCode::NO_CONTENT);
    app.until_erased(first_id).await;
    let mut app = app;
    app.halt().await.unwrap();

    // The conversation as it was stored before: text sealed with the key ring, the deleted question's too,
    // and no data key for the deleted question.
    let ring = bonsai_crypto::KeyRing::parse(TEST_KEYS, TEST_INDEX_KEY).unwrap();
    let context = format!("QaSession/{session}");
    let rows: Vec<(i64, Value)> =
        sqlx::query_as("SELECT global_position, payload FROM events WHERE aggregate_id = $1 ORDER BY global_position")
            .bind(&session)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    for (position, mut payload) in rows {
        as_before_erasable(&mut payload, &context, &ring, "Where is the old vault?");
        sqlx::query("UPDATE events SET payload = $1 WHERE global_position = $2")
            .bind(&payload)
            .bind(position)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    sqlx::query("DELETE FROM data_keys WHERE id = $1::uuid").bind(first_id).execute(&app.pool).await.unwrap();
    let older = |pattern: &'static str| {
        let pool = app.pool.clone();
        let session = session.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM events WHERE aggregate_id = $1 AND payload::text LIKE $2",
            )
            .bind(session)
            .bind(pattern)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(older("%sealed:v1:%").await, 4, "two questions and two answers as they were stored before");

    let run = |dry_run: bool| {
        let mut command = app.cli(&["make-erasable"]);
        command.args(dry_run.then_some("--dry-run"));
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let planned = run(true);
    assert!(
        planned.contains("would change: deleted questions erased: 1; events made erasable: 4 (6 text fields)"),
        "{planned}"
    );
    assert_eq!(older("%sealed:v1:%").await, 4, "a dry run changes nothing");
    let done = run(false);
    assert!(done.contains("deleted questions erased: 1; events made erasable: 4 (6 text fields)"), "{done}");
    assert_eq!(older("%sealed:v1:%").await, 0, "{done}");
    assert_eq!(older("%sealed:e1:%").await, 2, "the follow-up and its answer, under the follow-up's key");
    assert_eq!(
        older("%[erased]%").await,
        3,
        "the deleted question, its answer and its copy in the follow-up's context"
    );
    let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots WHERE aggregate_type = 'QaSession'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(snapshots, 0, "written before, they may hold what was erased");
    let live: Vec<(uuid::Uuid, bool)> =
        sqlx::query_as("SELECT id, key IS NOT NULL FROM data_keys ORDER BY id").fetch_all(&app.pool).await.unwrap();
    let id = |s: &str| s.parse::<uuid::Uuid>().unwrap();
    assert!(live.contains(&(id(first_id), false)) && live.contains(&(id(second_id), true)), "{live:?}");
    assert!(run(false)
        .contains("deleted questions erased: 0; events made erasable: 0 (0 text fields); snapshots dropped: 0"));

    // The platform reads the conversation on: the audit log, and a next question in it.
    let app = TestApp::spawn_with(app.settings.clone()).await;
    let audit: Value = app.get(&format!("/api/audit/QaSession/{session}"), Some(&admin)).await.json().await.unwrap();
    let asked: Vec<&Value> = audit.as_array().unwrap().iter().filter(|e| e["event_type"] == "QuestionAsked").collect();
    assert_eq!(asked[0]["payload"]["QuestionAsked"]["question"], bonsai_crypto::data_keys::ERASED, "{audit}");
    let follow_up = &asked[1]["payload"]["QuestionAsked"];
    assert_eq!(
        (follow_up["question"].as_str(), follow_up["context"][0]["question"].as_str()),
        (Some("Who keeps the old keys?"), Some(bonsai_crypto::data_keys::ERASED))
    );
    let next = json!({"question": "And the new ones?", "session_id": session, "max_new_tokens": 4});
    let (status, asked) = app.ask(&user, next).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
}

/// Another node (`bonsai serve` in a process of its own, so with a data key cache of its own) on `app`'s
/// database, NATS stream and data folder; its base URL. It runs until the child is dropped.
pub(crate) async fn second_node(app: &TestApp) -> (tokio::process::Child, String) {
    second_node_with(app, &[]).await
}

/// [`second_node`] with more settings (`env`, applied last).
pub(crate) async fn second_node_with(app: &TestApp, env: &[(&str, &str)]) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::from(app.cli(&["serve"]));
    command
        .env("NATS_URL", &app.settings.nats_url)
        .env("BONSAI_NATS_PREFIX", &app.settings.nats_prefix)
        .env("REDIS_URL", &app.settings.redis_url)
        .env("BONSAI_HTTP_ADDR", "127.0.0.1:0")
        .env("BONSAI_JWT_SECRET", crate::helpers::SECRET)
        .env("BONSAI_ADMIN_USERNAME", crate::helpers::ADMIN)
        .env("BONSAI_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .env("BONSAI__TRAINING_DEVICES", "")
        .env("BONSAI__ALERTS__CHECK_EVERY_SECS", "0")
        .env("BONSAI__RATE_LIMIT__REQUESTS_PER_SECOND", "0")
        .env("BONSAI__RATE_LIMIT__QUESTIONS_PER_MINUTE", "0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut node = command.spawn().expect("bonsai serve starts");
    let mut lines = tokio::io::BufReader::new(node.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, at)) = line.split_once("bonsai is listening").and_then(|_| line.split_once("127.0.0.1:")) {
                return format!("127.0.0.1:{}", at.chars().take_while(char::is_ascii_digit).collect::<String>());
            }
        }
        panic!("the second node stopped before it listened")
    });
    let addr = listening.await.expect("the second node listens within 60 s");
    // Its log is read on (a full pipe would stop it).
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (node, format!("http://{addr}"))
}

/// Asks `question` as `user` (in `session`, or a new conversation): `(session id, question id)`.
async fn ask_in(app: &TestApp, user: &str, session: Option<&str>, question: &str) -> (String, String) {
    let (status, asked) =
        app.ask(user, json!({"question": question, "max_new_tokens": 3, "session_id": session})).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    (asked["session_id"].as_str().unwrap().to_owned(), asked["question_id"].as_str().unwrap().to_owned())
}

/// How many connections to `app`'s database follow a notification channel (one per running node).
async fn listening_nodes(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_erased_question_stops_opening_on_every_node_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let (_, user) = app.create_user(&admin, "asker", "user").await;
    let (node, other) = second_node(&app).await;
    // Both nodes follow the erasure notices (each loads its keys afresh once it does).
    eventually(|| async { listening_nodes(&app).await == 2 }).await;
    let (id, first) = ask_in(&app, &user, None, "Who signs the lease?").await;
    // What the other node's audit API shows as the text of question `question`.
    let client = reqwest::Client::new();
    let shown = |question: String| {
        let (client, url, admin) = (client.clone(), format!("{other}/api/audit/QaSession/{id}"), admin.clone());
        async move {
            let response = client.get(url).bearer_auth(admin).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let events: Value = response.json().await.unwrap();
            let asked = events.as_array().unwrap().iter().find(|e| {
                e["event_type"] == "QuestionAsked" && e["payload"]["QuestionAsked"]["question_id"] == question.as_str()
            });
            asked.map(|e| e["payload"]["QuestionAsked"]["question"].as_str().unwrap().to_owned())
        }
    };
    let erased = Some(bonsai_crypto::data_keys::ERASED.to_owned());
    assert_eq!(
        shown(first.clone()).await.as_deref(),
        Some("Who signs the lease?"),
        "the other node has loaded its key"
    );

    // An erasure whose notice is lost (made with triggers off): the other node trusts the key it loaded...
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await.unwrap();
    sqlx::query("UPDATE data_keys SET key = NULL, erased_at = now() WHERE id = $1::uuid")
        .bind(&first)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(shown(first.clone()).await.as_deref(), Some("Who signs the lease?"), "no notice, a fresh key");
    // ...until its notice connection breaks: listening again, it reloads every key and sees the erasure.
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN %') AS cut",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(cut, 2);
    eventually(|| async { shown(first.clone()).await == erased }).await;
    eventually(|| async { listening_nodes(&app).await == 2 }).await;

    // A key erased by another node, or by hand, is forgotten here as soon as the erasure commits, well
    // within the time this node would otherwise trust it (data_keys::FRESH_FOR, 60 s).
    let (_, second) = ask_in(&app, &user, Some(&id), "And who pays the rent?").await;
    assert_eq!(shown(second.clone()).await.as_deref(), Some("And who pays the rent?"));
    let erasing = std::time::Instant::now();
    sqlx::query("UPDATE data_keys SET key = NULL, erased_at = now() WHERE id = $1::uuid")
        .bind(&second)
        .execute(&app.pool)
        .await
        .unwrap();
    eventually(|| async { shown(second.clone()).await == erased }).await;
    assert!(erasing.elapsed() < std::time::Duration::from_secs(10), "{:?}", erasing.elapsed());

    // And the way a user erases: deleting a question through this node.
    let (_, third) = ask_in(&app, &user, Some(&id), "When does it end?").await;
    assert_eq!(shown(third.clone()).await.as_deref(), Some("When does it end?"));
    let response = app.delete(&format!("/api/qa/history/{third}"), Some(&user)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    eventually(|| async { shown(third.clone()).await == erased }).await;
    drop(node);
}

/// Whether the data key of each question is erased.
async fn keys_erased(pool: &sqlx::PgPool, questions: &[uuid::Uuid]) -> Vec<bool> {
    let mut erased = Vec::new();
    for id in questions {
        let gone: bool = sqlx::query_scalar("SELECT key IS NULL FROM data_keys WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        erased.push(gone);
    }
    erased
}

#[tokio::test]
async fn deleting_questions_erases_their_text_when_the_command_answers_with_no_consumer_running() {
    use bonsai_commands::{CommandBus, CommandMetadata};
    use bonsai_domain::qa::{AnswerParams, QaCommand};
    use bonsai_domain::{Actor, Role};
    use uuid::Uuid;
    let mut app = TestApp::spawn().await;
    let pool = sqlx::PgPool::connect(&app.settings.database_url).await.unwrap();
    // No relay, no projection, no worker from here on: only the write side.
    app.halt().await.unwrap();
    let bus = CommandBus::new(pool.clone());
    let by = Actor { id: Uuid::now_v7(), role: Role::User };
    let (session, model) = (Uuid::now_v7(), Uuid::now_v7());
    let meta = CommandMetadata::system("test");
    let asked: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (i, &question_id) in asked.iter().enumerate() {
        let question = format!("secret number {i}");
        let ask = QaCommand::AskQuestion {
            session_id: session,
            by,
            question_id,
            model_id: model,
            question,
            params: AnswerParams::default(),
            conversation: None,
        };
        bus.execute(session, ask, &meta).await.unwrap();
    }
    assert_eq!(keys_erased(&pool, &asked).await, [false, false, false]);
    bus.execute(session, QaCommand::DeleteQuestion { by, question_id: asked[1] }, &meta).await.unwrap();
    assert_eq!(keys_erased(&pool, &asked).await, [false, true, false], "erased with the append");
    bus.execute(session, QaCommand::ClearHistory { by }, &meta).await.unwrap();
    assert_eq!(keys_erased(&pool, &asked).await, [true, true, true], "every question asked before the clearing");
    let later = Uuid::now_v7();
    let ask = QaCommand::AskQuestion {
        session_id: session,
        by,
        question_id: later,
        model_id: model,
        question: "asked after".into(),
        params: AnswerParams::default(),
        conversation: None,
    };
    bus.execute(session, ask, &meta).await.unwrap();
    assert_eq!(keys_erased(&pool, &[later]).await, [false], "a question asked after the clearing keeps its text");
    let stored: String = sqlx::query_scalar(
        "SELECT payload -> 'QuestionAsked' ->> 'question' FROM events WHERE event_type = 'QuestionAsked' \
         AND payload -> 'QuestionAsked' ->> 'question_id' = $1",
    )
    .bind(asked[0].to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        bonsai_crypto::sealed::open(&stored, &format!("QaSession/{session}")).unwrap(),
        bonsai_crypto::data_keys::ERASED
    );
}
