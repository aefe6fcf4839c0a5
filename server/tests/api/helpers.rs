//! Spawns the real application (HTTP on port 0, a fresh PostgreSQL database, a NATS subject prefix of
//! its own) and drives it over HTTP.

use bonsai_server::{Application, Settings};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const SECRET: &str = "test-secret-that-is-long-enough";

pub fn base_url() -> String {
    std::env::var("TEST_DATABASE_BASE").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Whether this test binary has removed the JetStream streams earlier runs left.
static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Every test has a stream of its own (`TEST<id>_EVENTS`), which outlives the test in the NATS server; those
/// created over an hour ago (`BONSAI_TEST_STREAM_MAX_AGE_SECS`) belong to finished runs and are removed (once
/// per test binary, best effort).
async fn remove_old_test_streams(nats_url: &str) {
    use futures::StreamExt;
    let Ok(client) = async_nats::connect(nats_url).await else { return };
    let js = async_nats::jetstream::new(client);
    let names: Vec<String> = js.stream_names().filter_map(|n| async { n.ok() }).collect().await;
    let max_age = std::env::var("BONSAI_TEST_STREAM_MAX_AGE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3600);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    for name in names.into_iter().filter(|n| n.starts_with("TEST") && n.ends_with("_EVENTS")) {
        let Ok(mut stream) = js.get_stream(&name).await else { continue };
        let Ok(info) = stream.info().await else { continue };
        if now - info.created.unix_timestamp() > max_age {
            let _ = js.delete_stream(&name).await;
        }
    }
}

pub struct TestApp {
    pub addr: String,
    pub client: Client,
    pub pool: PgPool,
    pub settings: Settings,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub fn test_settings() -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut s = Settings {
        database_url: format!("{}/bonsai_test_{}", base_url(), &id[..16]),
        database_max_connections: 10,
        nats_url: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        nats_prefix: format!("test{}", &id[..12]),
        http_addr: "127.0.0.1:0".into(),
        jwt_secret: bonsai_server::settings::Secret::new(SECRET),
        admin_username: ADMIN.into(),
        admin_password: bonsai_server::settings::Secret::new(ADMIN_PASSWORD),
        data_dir: std::env::temp_dir().join(format!("bonsai_test_{id}")),
        ..Settings::default()
    };
    s.rate_limit.requests_per_second = 0;
    s.rate_limit.questions_per_minute = 0;
    // Resource checks only where a test turns them on.
    s.alerts.check_every_secs = 0.0;
    // Every test runs with encryption at rest on (the key ring is process-wide: all tests share it).
    s.encryption.keys = bonsai_server::settings::Secret::new(TEST_KEYS);
    s.encryption.index_key = bonsai_server::settings::Secret::new(TEST_INDEX_KEY);
    s
}

pub const TEST_INDEX_KEY: &str = "test-index-key-long-enough";

/// The tests' encryption keys: `t2` seals, `t1` (an older key) still opens.
pub const TEST_KEYS: &str =
    "t2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=,t1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(test_settings()).await
    }

    pub async fn spawn_with(settings: Settings) -> Self {
        bonsai_server::telemetry::init("text");
        SWEPT.get_or_init(|| remove_old_test_streams(&settings.nats_url)).await;
        let app = Application::build(&settings).await.expect("application builds");
        let addr = format!("http://{}", app.local_addr());
        let pool = app.pool.clone();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self { addr, client, pool, settings, shutdown, handle: Some(handle) }
    }

    /// Stops every task and returns how the application ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.halt().await
    }

    /// Stops every task (the database stays, for the CLI), returning how the application ended.
    pub async fn halt(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.take().expect("the application runs").await.expect("the application task does not panic")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request is sent")
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Response {
        self.client.put(self.url(path)).bearer_auth(token).json(&body).send().await.expect("request is sent")
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.client.patch(self.url(path)).bearer_auth(token).json(&body).send().await.expect("request is sent")
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request is sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request is sent")
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post("/api/auth/login", None, json!({"username": username, "password": password})).await
    }

    /// The `bonsai` CLI with `args`, set up for this instance (its database, data folder and encryption keys;
    /// no configuration file).
    pub fn cli(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bonsai"));
        command
            .args(args)
            .env("DATABASE_URL", &self.settings.database_url)
            .env("BONSAI_DATA_DIR", &self.settings.data_dir)
            .env("BONSAI_CONFIG", "/nonexistent.toml")
            .env("BONSAI__ENCRYPTION__KEYS", TEST_KEYS)
            .env("BONSAI__ENCRYPTION__INDEX_KEY", TEST_INDEX_KEY);
        command
    }

    /// Waits until the data key of `question` is erased in the database (the history projection erases it
    /// when it applies the deletion).
    pub async fn until_erased(&self, question: &str) {
        eventually(|| async {
            let key: Option<Option<String>> = sqlx::query_scalar("SELECT key FROM data_keys WHERE id = $1::uuid")
                .bind(question)
                .fetch_optional(&self.pool)
                .await
                .unwrap();
            key == Some(None)
        })
        .await;
    }

    /// Logs in and returns the token response, panicking on anything but 200.
    pub async fn tokens(&self, username: &str, password: &str) -> Value {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {username}");
        response.json().await.unwrap()
    }

    /// The bootstrap admin's access token, once the users view knows the admin.
    pub async fn admin_token(&self) -> String {
        let token = self.tokens(ADMIN, ADMIN_PASSWORD).await["access_token"].as_str().unwrap().to_owned();
        eventually(|| async { self.get("/api/users/profile", Some(&token)).await.status() == StatusCode::OK }).await;
        token
    }

    /// Creates a user through the API and waits until its profile is readable (the view caught up).
    pub async fn create_user(&self, admin: &str, username: &str, role: &str) -> (String, String) {
        let password = format!("{username}-password");
        let response = self
            .post(
                "/api/users",
                Some(admin),
                json!({"username": username, "email": format!("{username}@example.com"), "password": password, "role": role}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let token = self.tokens(username, &password).await["access_token"].as_str().unwrap().to_owned();
        eventually(|| async { self.get("/api/users/profile", Some(&token)).await.status() == StatusCode::OK }).await;
        (id, token)
    }
}

/// Polls `check` until it is true, failing after 20 seconds.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within 20 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn error_code(response: Response) -> String {
    let body: Value = response.json().await.expect("error bodies are JSON");
    body["error"]["code"].as_str().expect("error.code is present").to_owned()
}

/// Polls `check` until it gives a value, failing after 20 seconds.
pub async fn eventually_some<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "no value within 20 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
