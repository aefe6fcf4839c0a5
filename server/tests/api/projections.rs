//! Views never lose an acknowledged event: a projection applies each aggregate's events exactly once and in
//! sequence order whatever JetStream delivers (late redeliveries, out-of-order, duplicates), and an event it
//! cannot apply holds only its own aggregate, raises an alert and shows in the lag metric.

use crate::helpers::*;
use bonsai_projections::log::aggregate_history;
use bonsai_projections::{apply_event, held, retry_held, Applied, Projection, ProjectionError, StoredEvent};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgConnection;
use std::collections::HashSet;
use std::sync::Mutex;

/// A projection of the tests' own over User events: a row per applied event, in the order applied (`id`), with
/// (aggregate, sequence) unique, so a second application of an event fails. Events named in `failing` fail
/// with a database error of the event's own (division by zero), as a poison event does.
struct Probe {
    failing: Mutex<HashSet<(String, i64)>>,
}

impl Probe {
    fn new() -> Self {
        Self { failing: Mutex::new(HashSet::new()) }
    }
}

#[async_trait::async_trait]
impl Projection for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["probe_view"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["User"]
    }
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let fails = self.failing.lock().unwrap().contains(&(event.aggregate_id.clone(), event.sequence));
        if fails {
            sqlx::query("SELECT 1 / 0").execute(&mut *conn).await?;
        }
        sqlx::query("INSERT INTO probe_view (aggregate_id, sequence) VALUES ($1, $2)")
            .bind(&event.aggregate_id)
            .bind(event.sequence)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

async fn probe_table(app: &TestApp) {
    sqlx::query(
        "CREATE TABLE probe_view (id bigserial, aggregate_id text, sequence bigint, PRIMARY KEY (aggregate_id, sequence))",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Each aggregate's sequences as the probe applied them, in the order applied.
async fn probe_rows(app: &TestApp, aggregate_id: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT sequence FROM probe_view WHERE aggregate_id = $1 ORDER BY id")
        .bind(aggregate_id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// Two users with a few events each: `(id, history)` per user.
async fn two_users_with_history(app: &TestApp) -> Vec<(String, Vec<StoredEvent>)> {
    let admin = app.admin_token().await;
    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let (id, token) = app.create_user(&admin, name, "user").await;
        for i in 0..3 {
            let response = app.put("/api/users/profile", &token, json!({"display_name": format!("{name} {i}")})).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        let history = aggregate_history(&app.pool, "User", &id).await.unwrap();
        assert!(history.len() >= 4, "registered, signed in, three profile updates");
        users.push((id, history));
    }
    users
}

#[tokio::test]
async fn each_aggregates_events_apply_once_and_in_order_whatever_the_delivery_order() {
    let app = TestApp::spawn().await;
    probe_table(&app).await;
    let users = two_users_with_history(&app).await;
    let probe = Probe::new();
    let (alice, bob) = (&users[0], &users[1]);

    // The reported loss: a message retried after later events (here bob's) moved the checkpoint past it.
    let bobs_last = bob.1.last().unwrap();
    assert!(bobs_last.cursor() > alice.1[0].cursor());
    assert_eq!(apply_event(&app.pool, &probe, bobs_last).await.unwrap(), Applied::Applied, "bob's gap is filled");
    assert_eq!(apply_event(&app.pool, &probe, &alice.1[0]).await.unwrap(), Applied::Applied, "not skipped");

    // Alice's events delivered backwards, then all of everyone's again, then out of order.
    for event in alice.1.iter().rev() {
        apply_event(&app.pool, &probe, event).await.unwrap();
    }
    for event in alice.1.iter().chain(&bob.1) {
        assert_eq!(apply_event(&app.pool, &probe, event).await.unwrap(), Applied::AlreadyApplied);
    }
    for (id, history) in &users {
        let expected: Vec<i64> = history.iter().map(|e| e.sequence).collect();
        assert_eq!(probe_rows(&app, id).await, expected, "every event once, in sequence order");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_poison_event_holds_only_its_aggregate_until_it_applies() {
    let app = TestApp::spawn().await;
    probe_table(&app).await;
    let users = two_users_with_history(&app).await;
    let ((alice, alices), (_, bobs)) = (&users[0], &users[1]);
    let probe = Probe::new();
    probe.failing.lock().unwrap().insert((alice.clone(), 2));

    assert_eq!(apply_event(&app.pool, &probe, &alices[0]).await.unwrap(), Applied::Applied);
    let Applied::Held(first) = apply_event(&app.pool, &probe, &alices[1]).await.unwrap() else {
        panic!("the failing event holds its aggregate")
    };
    assert!(first.newly && first.sequence == 2 && first.error.contains("division by zero"), "{first:?}");
    let Applied::Held(again) = apply_event(&app.pool, &probe, &alices[2]).await.unwrap() else {
        panic!("a later event of a held aggregate waits")
    };
    assert!(!again.newly, "held at the same event: no second alert");
    for event in bobs {
        assert_eq!(apply_event(&app.pool, &probe, event).await.unwrap(), Applied::Applied, "bob goes on");
    }
    assert_eq!(probe_rows(&app, alice).await, vec![1], "alice stays before the failing event");
    assert_eq!(held(&app.pool, &probe).await.unwrap(), vec![("User".to_owned(), alice.clone(), 2)]);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM projection_held WHERE aggregate_id = $1")
        .bind(alice)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 2);

    // Still failing: retrying keeps it held. Fixed: the retry applies everything after it, in order.
    assert!(retry_held(&app.pool, &probe).await.unwrap()[0].held.is_some());
    probe.failing.lock().unwrap().clear();
    let outcome = retry_held(&app.pool, &probe).await.unwrap();
    assert_eq!((outcome[0].released, outcome[0].held.is_none()), (Some(2), true));
    let expected: Vec<i64> = alices.iter().map(|e| e.sequence).collect();
    assert_eq!(probe_rows(&app, alice).await, expected);
    assert!(held(&app.pool, &probe).await.unwrap().is_empty());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_rebuild_goes_past_a_poison_event_and_holds_its_aggregate() {
    let app = TestApp::spawn().await;
    probe_table(&app).await;
    let users = two_users_with_history(&app).await;
    let (alice, bob) = (&users[0].0, &users[1].0);
    let probe = Probe::new();
    probe.failing.lock().unwrap().insert((alice.clone(), 3));
    bonsai_projections::rebuild(&app.pool, &probe).await.unwrap();
    assert_eq!(probe_rows(&app, alice).await, vec![1, 2], "up to the failing event");
    assert_eq!(probe_rows(&app, bob).await.len(), users[1].1.len());
    assert_eq!(held(&app.pool, &probe).await.unwrap(), vec![("User".to_owned(), alice.clone(), 3)]);
    app.stop().await.unwrap();
}

async fn metric(app: &TestApp, line_start: &str) -> Option<f64> {
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    metrics.lines().find_map(|l| l.strip_prefix(line_start)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn an_event_the_users_view_cannot_apply_holds_that_user_raises_an_alert_and_shows_in_the_lag() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (carol, _) = app.create_user(&admin, "carol", "user").await;
    let (dave, _) = app.create_user(&admin, "dave", "user").await;
    eventually(|| async { app.get(&format!("/api/users/{carol}"), Some(&admin)).await.status() == StatusCode::OK })
        .await;

    // An event no release can read lands in carol's history (as a bug or a bad migration would put it).
    let next: i64 = sqlx::query_scalar("SELECT max(sequence) + 1 FROM events WHERE aggregate_id = $1")
        .bind(&carol)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('User', $1, $2, 'UserBogus', '1.0', '{\"UserBogus\": {}}', '{}')",
    )
    .bind(&carol)
    .bind(next)
    .execute(&app.pool)
    .await
    .unwrap();
    // Others go on.
    let patched = app.patch(&format!("/api/users/{dave}"), &admin, json!({"role": "trainer"})).await;
    assert_eq!(patched.status(), StatusCode::OK);
    let dave_view: Value = app.get(&format!("/api/users/{dave}"), Some(&admin)).await.json().await.unwrap();
    assert_eq!(dave_view["role"], "trainer", "read after write, through a view that is not held for dave");

    // The hold is an alert for admins, and in the metrics.
    let alert = eventually_some(|| async {
        let alerts: Value = app.get("/api/alerts?status=open", Some(&admin)).await.json().await.unwrap();
        alerts["items"].as_array().unwrap().iter().find(|a| a["kind"] == "projection_held").cloned()
    })
    .await;
    assert_eq!(alert["severity"], "critical");
    assert_eq!(
        (alert["details"]["aggregate_id"].as_str(), alert["details"]["sequence"].as_i64()),
        (Some(&*carol), Some(next))
    );
    assert_eq!(metric(&app, "bonsai_projection_held_aggregates{projection=\"users\"}").await, Some(1.0));
    assert!(metric(&app, "bonsai_projection_lag_events{projection=\"users\"}").await.unwrap() >= 1.0);

    // Fixed in the store (as an upcaster would read it), the next event of carol's releases her view.
    sqlx::query("UPDATE events SET event_type = 'UserActivated', payload = '\"UserActivated\"' WHERE aggregate_id = $1 AND sequence = $2")
        .bind(&carol)
        .bind(next)
        .execute(&app.pool)
        .await
        .unwrap();
    let patched = app.patch(&format!("/api/users/{carol}"), &admin, json!({"role": "trainer"})).await;
    assert_eq!(patched.status(), StatusCode::OK);
    eventually(|| async {
        let carol_view: Value = app.get(&format!("/api/users/{carol}"), Some(&admin)).await.json().await.unwrap();
        carol_view["role"] == "trainer"
    })
    .await;
    let id = alert["id"].as_str().unwrap().to_owned();
    eventually(|| async {
        let alert: Value = app.get(&format!("/api/alerts/{id}"), Some(&admin)).await.json().await.unwrap();
        alert["status"] == "resolved"
    })
    .await;
    assert_eq!(metric(&app, "bonsai_projection_held_aggregates{projection=\"users\"}").await, Some(0.0));
    app.stop().await.unwrap();
}
