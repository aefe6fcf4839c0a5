//! Crash tests: a node killed with SIGKILL in the middle of a burst of writes, and the NATS server killed and
//! restarted in the middle of one. Afterwards every write that was acknowledged (2xx) is readable through the
//! API and counted once in its view: uploads, users, profile updates, questions and training tasks. Rounds: `BONSAI_CRASH_ROUNDS` (default 1; more by hand).
//!
//! The node test is the loss the views used to have: the killed node held messages it had not acknowledged;
//! the other node applied later events meanwhile, and when JetStream redelivered the held ones (after
//! `ack_wait`), a checkpoint past them skipped them for good.

use crate::encryption::{second_node, second_node_with};
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
    questions: Vec<String>,
    tasks: Vec<String>,
    failures: usize,
}

/// Which field of an answer is the id written, and where in [`Acknowledged`] it is kept.
type Keep = (&'static str, fn(&mut Acknowledged) -> &mut Vec<String>);

/// POSTs `body` to `url` until `stop`, keeping the id of each 2xx answer as `(id_field, kept)` says.
async fn writer(
    client: Client,
    url: String,
    token: String,
    body: impl Fn(usize) -> Value,
    (id_field, kept): Keep,
    acked: Arc<Mutex<Acknowledged>>,
    stop: CancellationToken,
) {
    let mut i = 0;
    while !stop.is_cancelled() {
        i += 1;
        match client.post(&url).bearer_auth(&token).json(&body(i)).send().await {
            Ok(r) if r.status().is_success() => {
                let id = r.json::<Value>().await.unwrap()[id_field].as_str().unwrap().to_owned();
                kept(&mut acked.lock().unwrap()).push(id);
            }
            _ => acked.lock().unwrap().failures += 1,
        }
    }
}

/// What the burst needs to ask questions and create training tasks: a deployed model, and a valid dataset
/// of the installed `tiny` base model.
async fn qa_and_training(app: &TestApp, admin: &str) -> String {
    let dataset = app.training_fixture(admin).await;
    app.deployed_tiny(admin).await;
    dataset
}

/// Writes against `base` until `stop`: uploads (three writers), user creations, profile updates of `people`,
/// questions (answered later: `wait_secs` 0) and training tasks on `dataset`.
async fn burst(
    base: String,
    admin: String,
    people: Vec<(String, String)>,
    dataset: String,
    stop: CancellationToken,
) -> Acknowledged {
    let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut writers = tokio::task::JoinSet::new();
    writers.spawn(writer(
        client.clone(),
        format!("{base}/api/qa/ask"),
        admin.clone(),
        |i| json!({"question": format!("burst question {i}"), "wait_secs": 0, "max_new_tokens": 2}),
        ("question_id", |a| &mut a.questions),
        acked.clone(),
        stop.clone(),
    ));
    let on = dataset.clone();
    writers.spawn(writer(
        client.clone(),
        format!("{base}/api/training/tasks"),
        admin.clone(),
        move |i| {
            json!({"name": format!("burst task {i}"), "base_model_id": "tiny", "dataset_id": on,
            "config": {"max_steps": 1, "merge": false}, "start": false})
        },
        ("id", |a| &mut a.tasks),
        acked.clone(),
        stop.clone(),
    ));
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
    for id in &acked.questions {
        readable(app, admin, &format!("/api/qa/questions/{id}"), deadline).await;
    }
    for id in &acked.tasks {
        readable(app, admin, &format!("/api/training/tasks/{id}"), deadline).await;
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
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM qa_history_view), \
                (SELECT count(*) FROM events WHERE aggregate_type = 'QaSession' AND event_type = 'QuestionAsked'), \
                (SELECT count(*) FROM training_tasks_view), \
                (SELECT count(*) FROM events WHERE aggregate_type = 'TrainingTask' AND event_type = 'TrainingTaskCreated')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(counts.0, counts.1, "one history row per question committed");
    assert_eq!(counts.2, counts.3, "one task row per task committed");
    assert!(counts.0 as usize >= acked.questions.len() && counts.2 as usize >= acked.tasks.len());
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
    let dataset = qa_and_training(&app, &admin).await;
    for round in 0..rounds() {
        let (mut node, base) = second_node(&app).await;
        let people = people(&app, &admin, round).await;
        let stop = CancellationToken::new();
        let writes = tokio::spawn(burst(base, admin.clone(), people, dataset.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        node.start_kill().unwrap(); // SIGKILL: no graceful anything
        node.wait().await.unwrap();
        stop.cancel();
        let acked = writes.await.unwrap();
        assert!(acked.datasets.len() + acked.users.len() >= 10, "the burst wrote something before the kill");
        assert!(!acked.questions.is_empty() && !acked.tasks.is_empty(), "questions and tasks before the kill");
        // The node comes back (on the same database and stream) while the other one kept going.
        let (_restarted, _) = second_node(&app).await;
        all_readable_once(&app, &admin, &acked).await;
        eprintln!(
            "round {round}: {} uploads, {} users, {} profiles, {} questions, {} tasks acknowledged; {} requests cut \
             off; all readable, once",
            acked.datasets.len(),
            acked.users.len(),
            acked.profiles.len(),
            acked.questions.len(),
            acked.tasks.len(),
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
    let dataset = qa_and_training(&app, &admin).await;
    for round in 0..rounds() {
        let people = people(&app, &admin, round).await;
        let stop = CancellationToken::new();
        let base = app.url("").trim_end_matches('/').to_owned();
        let writes = tokio::spawn(burst(base, admin.clone(), people, dataset.clone(), stop.clone()));
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
            "nats round {round}: {} uploads, {} users, {} questions, {} tasks acknowledged; {} failed; all readable, \
             once",
            acked.datasets.len(),
            acked.users.len(),
            acked.questions.len(),
            acked.tasks.len(),
            acked.failures
        );
    }
    app.stop().await.unwrap();
}

/// A node killed while it trains: within a lease or two the task shows `interrupted` (it used to show
/// `running` with frozen progress until another worker took it), the node is listed as gone, and a node of
/// the same device resumes the run from its last checkpoint.
#[tokio::test]
async fn a_run_whose_node_is_killed_shows_interrupted_and_another_node_resumes_it() {
    let mut settings = test_settings();
    settings.training_devices = String::new(); // this node trains nothing: the killed node and its successor do
    settings.node_lease_secs = 1.0;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let trainer =
        [("BONSAI__TRAINING_DEVICES", "cpu"), ("BONSAI__TRAINING_THREADS", "1"), ("BONSAI__NODE_LEASE_SECS", "1")];
    let (mut node, _) = second_node_with(&app, &trainer).await;
    let config = json!({"max_steps": 1000000, "checkpoint_every": 2, "merge": false});
    let (status, created) = app.create_task(&admin, &dataset, config, true).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let running = app
        .task_until(&admin, &id, 120, |t| t["status"] == "running" && t["progress"]["step"].as_u64() >= Some(5))
        .await;
    let worker = running["worker"].as_str().unwrap().to_owned();
    let (killed_node, device) = worker.rsplit_once('/').unwrap();
    assert_eq!(device, "cpu");

    node.start_kill().unwrap(); // SIGKILL: the node records nothing
    node.wait().await.unwrap();
    let killed_at = tokio::time::Instant::now();
    let interrupted = app.task_until(&admin, &id, 30, |t| t["status"] == "interrupted").await;
    eprintln!("interrupted {:.1} s after the kill (lease 1 s)", killed_at.elapsed().as_secs_f64());
    assert_eq!(interrupted["worker"], worker.as_str(), "{interrupted}");
    let history = bonsai_projections::log::aggregate_history(&app.pool, "TrainingTask", &id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.event_type, "TrainingInterrupted");
    assert_eq!(last.payload["TrainingInterrupted"]["reason"], "worker_lost");
    assert_eq!(last.payload["TrainingInterrupted"]["worker"], worker.as_str());
    let nodes: Value = app.get("/api/system/nodes", Some(&admin)).await.json().await.unwrap();
    let listed = |name: &str| nodes["items"].as_array().unwrap().iter().find(|n| n["name"] == name).cloned();
    assert_eq!(listed(killed_node).expect("the killed node is listed")["alive"], false, "{nodes}");
    assert_eq!(listed(nodes["this_node"].as_str().unwrap()).expect("this node is listed")["alive"], true);
    let (_, user) = app.create_user(&admin, "nosy", "user").await;
    assert_eq!(app.get("/api/system/nodes", Some(&user)).await.status(), StatusCode::FORBIDDEN);

    // Another node of the device takes the run (JetStream gives it out again after four leases) and
    // resumes it from the last checkpoint the killed node wrote.
    let (_successor, _) = second_node_with(&app, &trainer).await;
    let starts = app.task_starts(&id, 2, 90).await;
    assert_ne!(starts[1]["worker"], worker.as_str(), "another worker resumes it");
    assert_eq!(starts[1]["attempt"], 1, "as the same run");
    let resumed_from = starts[1]["resumed_from_step"].as_u64().expect("resumed from a checkpoint");
    assert!(resumed_from >= 2, "a checkpoint at or after step 2: {resumed_from}");
    app.task_until(&admin, &id, 60, |t| {
        t["status"] == "running" && t["progress"]["step"].as_u64() > Some(resumed_from)
    })
    .await;
    app.task_command(&admin, &id, "stop").await;
    app.task_until(&admin, &id, 60, |t| t["status"] == "stopped").await;
    app.stop().await.unwrap();
}
