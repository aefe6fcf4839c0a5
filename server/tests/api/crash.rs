//! Crash tests: a node killed with SIGKILL in the middle of a burst of writes, and the NATS server killed and
//! restarted in the middle of one. Afterwards every write that was acknowledged (2xx) is readable through the
//! API and counted once in its view. Rounds: `BONSAI_CRASH_ROUNDS` (default 1; more by hand).
//!
//! The node test is the loss the views used to have: the killed node held messages it had not acknowledged;
//! the other node applied later events meanwhile, and when JetStream redelivered the held ones (after
//! `ack_wait`), a checkpoint past them skipped them for good.

use crate::encryption::second_node;
use crate::helpers::*;
use crate::relay::PrivateNats;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn rounds() -> usize {
    std::env::var("BONSAI_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// What a burst had acknowledged.
#[derive(Default)]
struct Acknowledged {
    datasets: Vec<String>,
    users: Vec<String>,
    /// Per user whose profile was updated: the last name acknowledged, and the one in flight when writes stopped
    /// (it may have committed without its answer arriving).
    profiles: Vec<(String, Option<String>, Option<String>)>,
    failures: usize,
}

/// Writes against `base` until `stop`: uploads (three writers), user creations, profile updates of `people`.
async fn burst(base: String, admin: String, people: Vec<(String, String)>, stop: CancellationToken) -> Acknowledged {
    let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..3 {
        let (client, base, admin, acked, stop) =
            (client.clone(), base.clone(), admin.clone(), acked.clone(), stop.clone());
        writers.spawn(async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                i += 1;
                let line = format!("{{\"question\": \"q{w}-{i}\", \"answer\": \"a\"}}\n").into_bytes();
                let form = reqwest::multipart::Form::new()
                    .part("file", reqwest::multipart::Part::bytes(line).file_name("qa.jsonl"))
                    .text("name", format!("burst {w}-{i}"));
                let sent =
                    client.post(format!("{base}/api/data/upload")).bearer_auth(&admin).multipart(form).send().await;
                match sent {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                        acked.lock().unwrap().datasets.push(id);
                    }
                    _ => acked.lock().unwrap().failures += 1,
                }
            }
        });
    }
    {
        let (client, base, admin, acked, stop) =
            (client.clone(), base.clone(), admin.clone(), acked.clone(), stop.clone());
        writers.spawn(async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                i += 1;
                let name = format!("u{}", uuid::Uuid::new_v4().simple().to_string().get(..12).unwrap_or_default());
                let body = json!({"username": name, "email": format!("{name}{i}@example.com"),
                    "password": "long-enough-1", "role": "user"});
                match client.post(format!("{base}/api/users")).bearer_auth(&admin).json(&body).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                        acked.lock().unwrap().users.push(id);
                    }
                    _ => acked.lock().unwrap().failures += 1,
                }
            }
        });
    }
    for (id, token) in people {
        let (client, base, acked, stop) = (client.clone(), base.clone(), acked.clone(), stop.clone());
        writers.spawn(async move {
            let (mut last, mut i) = (None, 0);
            let mut in_flight = None;
            while !stop.is_cancelled() {
                i += 1;
                let name = format!("name {i}");
                in_flight = Some(name.clone());
                let body = json!({"display_name": name});
                match client.put(format!("{base}/api/users/profile")).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        last = in_flight.take();
                    }
                    _ => {
                        acked.lock().unwrap().failures += 1;
                        break; // an update that got no answer may have committed: stop here so it stays the last
                    }
                }
            }
            acked.lock().unwrap().profiles.push((id, last, in_flight));
        });
    }
    while writers.join_next().await.is_some() {}
    Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap()
}

/// Waits until `path` answers 200, failing at `deadline`.
async fn readable(app: &TestApp, admin: &str, path: &str, deadline: tokio::time::Instant) {
    loop {
        let status = app.get(path, Some(admin)).await.status();
        if status == StatusCode::OK {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "acknowledged {path} is not readable ({status})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks through `app` that everything `acked` says was written is readable, once.
async fn all_readable_once(app: &TestApp, admin: &str, acked: &Acknowledged) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for id in &acked.datasets {
        readable(app, admin, &format!("/api/data/datasets/{id}"), deadline).await;
    }
    for id in &acked.users {
        readable(app, admin, &format!("/api/users/{id}"), deadline).await;
    }
    for (id, last, in_flight) in &acked.profiles {
        loop {
            let user: Value = app.get(&format!("/api/users/{id}"), Some(admin)).await.json().await.unwrap();
            let shown = user["display_name"].as_str().map(str::to_owned);
            if last.is_none() || shown == *last || (shown.is_some() && shown == *in_flight) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "user {id} shows {shown:?}, acknowledged {last:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Counted once: a view row per created aggregate, and every user's row at its last event.
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM datasets_view), \
                (SELECT count(*) FROM events WHERE aggregate_type = 'Dataset' AND event_type = 'DatasetUploaded')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(counts.0, counts.1, "one dataset row per upload committed");
    assert!(counts.0 as usize >= acked.datasets.len());
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM users_view v WHERE v.version <> \
               (SELECT max(sequence) FROM events e WHERE e.aggregate_type = 'User' AND e.aggregate_id = v.id::text)",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        let (rows, users): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM users_view), \
                    (SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'User')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if behind == 0 && rows == users {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{behind} user rows behind their events, {rows} rows for {users} users"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two people whose profiles the burst updates: `(id, token)`.
async fn people(app: &TestApp, admin: &str, round: usize) -> Vec<(String, String)> {
    let mut people = Vec::new();
    for who in ["pat", "sam"] {
        people.push(app.create_user(admin, &format!("{who}{round}"), "user").await);
    }
    people
}

#[tokio::test]
async fn every_acknowledged_write_survives_a_node_killed_mid_burst() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for round in 0..rounds() {
        let (mut node, base) = second_node(&app).await;
        let people = people(&app, &admin, round).await;
        let stop = CancellationToken::new();
        let writes = tokio::spawn(burst(base, admin.clone(), people, stop.clone()));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        node.start_kill().unwrap(); // SIGKILL: no graceful anything
        node.wait().await.unwrap();
        stop.cancel();
        let acked = writes.await.unwrap();
        assert!(acked.datasets.len() + acked.users.len() >= 10, "the burst wrote something before the kill");
        // The node comes back (on the same database and stream) while the other one kept going.
        let (_restarted, _) = second_node(&app).await;
        all_readable_once(&app, &admin, &acked).await;
        eprintln!(
            "round {round}: {} uploads, {} users, {} profiles acknowledged; {} requests cut off; all readable, once",
            acked.datasets.len(),
            acked.users.len(),
            acked.profiles.len(),
            acked.failures
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_acknowledged_write_survives_nats_killed_mid_burst() {
    let mut nats = PrivateNats::start();
    let mut settings = test_settings();
    settings.nats_url = nats.url();
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    for round in 0..rounds() {
        let people = people(&app, &admin, round).await;
        let stop = CancellationToken::new();
        let writes =
            tokio::spawn(burst(app.url("").trim_end_matches('/').to_owned(), admin.clone(), people, stop.clone()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nats.down(); // SIGKILL
        tokio::time::sleep(Duration::from_millis(1000)).await;
        nats.up();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.cancel();
        let acked = writes.await.unwrap();
        assert!(acked.datasets.len() + acked.users.len() >= 10, "writes go on while NATS is down");
        all_readable_once(&app, &admin, &acked).await;
        eprintln!(
            "nats round {round}: {} uploads, {} users acknowledged; {} failed; all readable, once",
            acked.datasets.len(),
            acked.users.len(),
            acked.failures
        );
    }
    app.stop().await.unwrap();
}
