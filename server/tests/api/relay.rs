use crate::helpers::*;
use bonsai_domain::AggregateKind;
use bonsai_projections::Subjects;
use bonsai_workers::stream_name;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::{Child, Command};
use std::time::Duration;

/// A private NATS server, so that this test can take it down without touching anyone else's.
pub(crate) struct PrivateNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    pub(crate) fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut nats = Self { port, dir: tempfile::tempdir().unwrap(), child: None };
        nats.up();
        nats
    }

    fn binary() -> String {
        ["/usr/sbin/nats-server", "/usr/local/bin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server")
            .to_owned()
    }

    pub(crate) fn up(&mut self) {
        let child = Command::new(Self::binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path())
            .spawn()
            .expect("nats-server is installed");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.down();
    }
}

async fn stream_messages(nats_url: &str, prefix: &str) -> u64 {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream_name(prefix)).await.unwrap();
    stream.info().await.unwrap().state.messages
}

async fn event_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn events_committed_while_nats_is_down_arrive_once_it_returns() {
    let mut nats = PrivateNats::start();
    let mut settings = test_settings();
    settings.nats_url = nats.url();
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (id, token) = app.create_user(&admin, "olga", "user").await;

    nats.down();
    for i in 0..5 {
        let response = app.put("/api/users/profile", &token, json!({"display_name": format!("while down {i}")})).await;
        assert_eq!(response.status(), StatusCode::OK, "commands do not need NATS");
    }
    nats.up();

    eventually(|| async {
        let u: Value = app.get(&format!("/api/users/{id}"), Some(&admin)).await.json().await.unwrap();
        u["display_name"] == "while down 4"
    })
    .await;
    // Every event is in the stream exactly once, however often the relay retried.
    let expected = event_count(&app).await as u64;
    eventually(|| async { stream_messages(&nats.url(), &app.settings.nats_prefix).await == expected }).await;
    let version: i64 = sqlx::query_scalar("SELECT version FROM users_view WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let last: i64 = sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(version, last);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_long_open_transaction_does_not_make_the_relay_skip_its_events() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;

    // A slow writer takes a global position first and commits last.
    let slow_id = uuid::Uuid::new_v4();
    let mut slow = app.pool.begin().await.unwrap();
    let payload = json!({"UserRegistered": {
        "user_id": slow_id, "username": "slowpoke", "email": "slow@example.com", "display_name": "",
        "role": "user", "password_hash": "x"}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('User', $1, 1, 'UserRegistered', '1', $2, '{}')",
    )
    .bind(slow_id.to_string())
    .bind(&payload)
    .execute(&mut *slow)
    .await
    .unwrap();

    // A later command commits first.
    let quick = app
        .post(
            "/api/users",
            Some(&admin),
            json!({"username": "quick", "email": "quick@example.com", "password": "quick-password", "role": "user"}),
        )
        .await;
    assert_eq!(quick.status(), StatusCode::CREATED);
    slow.commit().await.unwrap();

    eventually(|| async {
        let page: Value = app.get("/api/users?page_size=100", Some(&admin)).await.json().await.unwrap();
        let names: Vec<&str> =
            page["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        names.contains(&"slowpoke") && names.contains(&"quick")
    })
    .await;
}

/// The backend that holds the relay's leader lock in this test's database, if any.
async fn relay_leader_pid(app: &TestApp) -> Option<i32> {
    // pg_try_advisory_lock(bigint) shows as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
         AND classid::bigint = $1 AND objid::bigint = $2 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(0x626f_6e73_i64)
    .bind(0x6169_0001_i64)
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_relay_that_loses_its_lock_connection_steps_down_and_leads_again() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    eventually(|| async { relay_leader_pid(&app).await.is_some() }).await;
    let leader = relay_leader_pid(&app).await;
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(leader.unwrap()).fetch_one(&app.pool).await.unwrap();
    assert!(killed);
    // The relay notices within a second, competes again and wins (it is the only one here)...
    eventually(|| async { matches!(relay_leader_pid(&app).await, Some(pid) if Some(pid) != leader) }).await;
    // ... and events keep flowing to the views.
    let (_, token) = app.create_user(&admin, "lena", "user").await;
    let response = app.put("/api/users/profile", &token, json!({"display_name": "after the takeover"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    eventually(|| async {
        let me: Value = app.get("/api/users/profile", Some(&token)).await.json().await.unwrap();
        me["display_name"] == "after the takeover"
    })
    .await;
}

type Durable = async_nats::jetstream::consumer::Config;

#[tokio::test]
async fn a_restart_brings_durable_consumers_to_the_settings_of_this_release() {
    let settings = test_settings();
    let app = TestApp::spawn_with(settings.clone()).await;
    let js = async_nats::jetstream::new(async_nats::connect(&settings.nats_url).await.unwrap());
    let stream_name = stream_name(&settings.nats_prefix);
    let durable = format!("{}_worker_qa", stream_name.to_lowercase());
    let mut stream = None;
    for _ in 0..200 {
        if let Ok(s) = js.get_stream(&stream_name).await {
            if s.get_consumer::<Durable>(&durable).await.is_ok() {
                stream = Some(s);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stream = stream.expect("the QA worker's durable consumer exists");
    app.stop().await.unwrap();

    // An earlier release made it with another in-flight limit.
    let mut consumer = stream.get_consumer::<Durable>(&durable).await.unwrap();
    let mut old = consumer.info().await.unwrap().config.clone();
    old.max_ack_pending = 3;
    stream.create_consumer(old).await.unwrap();
    let mut consumer = stream.get_consumer::<Durable>(&durable).await.unwrap();
    assert_eq!(consumer.info().await.unwrap().config.max_ack_pending, 3);

    let app = TestApp::spawn_with(settings).await;
    let mut updated = false;
    for _ in 0..200 {
        let mut consumer = stream.get_consumer::<Durable>(&durable).await.unwrap();
        if consumer.info().await.unwrap().config.max_ack_pending == 256 {
            updated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(updated, "the restarted node updates the durable consumer's max_ack_pending");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn each_projection_receives_only_its_aggregates_events_and_reports_no_lag_for_the_others() {
    let settings = test_settings();
    let app = TestApp::spawn_with(settings.clone()).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "someone", "user").await;
    app.training_fixture(&admin).await; // Dataset events, after the User ones
    let js = async_nats::jetstream::new(async_nats::connect(&settings.nats_url).await.unwrap());
    let stream_name = stream_name(&settings.nats_prefix);
    let projection = |name: &str| format!("{}_projection_{name}", stream_name.to_lowercase());
    let stream = js.get_stream(&stream_name).await.unwrap();
    let info = |name: String| {
        let stream = stream.clone();
        async move { stream.get_consumer::<Durable>(&name).await.ok()?.info().await.ok().cloned() }
    };
    // The users view has taken the new user's events; the models consumer was given none of them (nor the
    // datasets').
    eventually(|| async { info(projection("users")).await.is_some_and(|i| i.delivered.stream_sequence >= 2) }).await;
    let models = info(projection("models")).await.expect("the models projection's consumer");
    assert_eq!(models.config.filter_subject, Subjects::new(&settings.nats_prefix).events_of(AggregateKind::Model));
    assert_eq!((models.delivered.consumer_sequence, models.num_pending), (0, 0), "{models:?}");
    // So /metrics counts for each projection (all six, whether or not it has applied an event yet) only the
    // events of its aggregates: none is behind, though the users view has not seen the dataset's events.
    eventually(|| async {
        let metrics = app.get("/metrics", None).await.text().await.unwrap();
        let lags: Vec<&str> = metrics.lines().filter(|l| l.starts_with("bonsai_projection_lag_events{")).collect();
        lags.len() == 6 && lags.iter().all(|l| l.ends_with(" 0"))
    })
    .await;
    app.stop().await.unwrap();

    // A consumer an earlier release made without a filter is narrowed when a node starts.
    let mut unfiltered = models.config.clone();
    unfiltered.filter_subject = String::new();
    stream.create_consumer(unfiltered).await.unwrap();
    assert_eq!(info(projection("models")).await.unwrap().config.filter_subject, "");
    let app = TestApp::spawn_with(settings.clone()).await;
    eventually(|| async {
        let filter = info(projection("models")).await.map(|i| i.config.filter_subject);
        filter == Some(Subjects::new(&settings.nats_prefix).events_of(AggregateKind::Model))
    })
    .await;
    app.stop().await.unwrap();
}
