//! The rate limits are the platform's, not a node's: kept in Redis, one limit holds across every API node
//! behind the load balancer; with Redis gone each node goes on limiting alone.

use crate::helpers::*;
use reqwest::StatusCode;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

async fn redis(app: &TestApp) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(app.settings.redis_url.as_str()).unwrap();
    client.get_multiplexed_async_connection().await.expect("Redis runs (scripts/ensure-services.sh)")
}

async fn metric(app: &TestApp, line_start: &str) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("{line_start} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn failed_logins_count_towards_a_lockout_only_within_the_login_window() {
    let mut settings = test_settings();
    settings.rate_limit.login_lockout_after = 3;
    settings.rate_limit.login_window_secs = 1;
    let app = TestApp::spawn_with(settings).await;
    for _ in 0..2 {
        assert_eq!(app.login(ADMIN, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    // The first two have left the window: two more are not yet three.
    for _ in 0..2 {
        assert_eq!(app.login(ADMIN, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.login(ADMIN, "wrong-password").await.status(), StatusCode::UNAUTHORIZED, "the third in the window");
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_login_lockout_earned_on_one_node_holds_on_every_node() {
    let mut settings = test_settings();
    settings.rate_limit.login_lockout_after = 3;
    settings.rate_limit.login_lockout_secs = 120;
    let first = TestApp::spawn_with(settings).await;
    let second = TestApp::spawn_with(first.settings.clone()).await;
    // Alternating nodes: neither saw the three failures alone.
    for node in [&first, &second, &first] {
        assert_eq!(node.login(ADMIN, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    }
    for node in [&second, &first] {
        let response = node.login(ADMIN, ADMIN_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits out the lockout");
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((100..=120).contains(&retry_after), "the lockout's remaining time: {retry_after}");
        assert_eq!(error_code(response).await, "rate_limited");
    }
    // Other accounts are not locked out with this one.
    assert_eq!(second.login("nobody-else", "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    assert!(metric(&second, "bonsai_rate_limited_total{limit=\"login\"}").await >= 1.0);
    assert_eq!(metric(&second, "bonsai_redis_errors_total").await, 0.0);
    // The lock is in Redis under this instance's namespace, and expires; the username is not in the key.
    let mut redis = redis(&first).await;
    let pattern = format!("{}:limit:lock:user:*", first.settings.nats_prefix);
    let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut redis).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(!keys[0].contains(ADMIN), "{}", keys[0]);
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut redis).await.unwrap();
    assert!(ttl > 0 && ttl <= 120_000, "{ttl}");
    // Waiting the lockout out (here: an operator clearing it) lets the right password in on every node.
    let _: i64 = redis::cmd("DEL").arg(&keys[0]).query_async(&mut redis).await.unwrap();
    assert_eq!(second.login(ADMIN, ADMIN_PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_users_request_budget_is_shared_by_every_node() {
    let mut settings = test_settings();
    settings.rate_limit.requests_per_second = 1;
    settings.rate_limit.burst = 6;
    let first = TestApp::spawn_with(settings).await;
    let second = TestApp::spawn_with(first.settings.clone()).await;
    let token = first.admin_token().await;
    // Waiting for the users view took one request of the budget: a second gives it back.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let nodes = [&first, &second];
    let mut served = 0;
    let refused = loop {
        let response = nodes[served % 2].get("/api/users/profile", Some(&token)).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(response.status(), StatusCode::OK);
        served += 1;
        // Each node alone would serve its own burst of 6: 12 in all.
        assert!(served < 12, "the nodes do not share the budget");
    };
    assert!(served >= 6, "the burst is served: {served}");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, 1, "one request a second: the next one is at most a second away");
    assert_eq!(error_code(refused).await, "rate_limited");
    // The other node refuses too, and another user has a budget of their own.
    let response = nodes[(served + 1) % 2].get("/api/users/profile", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The budget refills: a second later one more request is served.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(second.get("/api/users/profile", Some(&token)).await.status(), StatusCode::OK);
    assert!(
        metric(&first, "bonsai_rate_limited_total{limit=\"request\"}").await
            + metric(&second, "bonsai_rate_limited_total{limit=\"request\"}").await
            >= 2.0
    );
}

#[tokio::test]
async fn questions_have_a_budget_of_their_own_on_every_node() {
    let mut settings = test_settings();
    settings.rate_limit.questions_per_minute = 6;
    settings.rate_limit.question_burst = 3;
    let first = TestApp::spawn_with(settings).await;
    let second = TestApp::spawn_with(first.settings.clone()).await;
    let admin = first.admin_token().await;
    let (_, ann) = first.create_user(&admin, "ann", "user").await;
    // No model is deployed: each question is refused (422), but it was asked, and counts.
    for node in [&first, &second, &first] {
        let response = node.post("/api/qa/ask", Some(&ann), serde_json::json!({"question": "Anyone there?"})).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_code(response).await, "no_deployed_model");
    }
    let response = second.post("/api/qa/ask", Some(&ann), serde_json::json!({"question": "Anyone there?"})).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "six a minute: one every 10 s: {retry_after}");
    assert_eq!(error_code(response).await, "rate_limited");
    // Another user's budget is untouched, and other requests of ann go on.
    let response = first.post("/api/qa/ask", Some(&admin), serde_json::json!({"question": "Anyone there?"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(first.get("/api/qa/history", Some(&ann)).await.status(), StatusCode::OK);
    assert_eq!(metric(&second, "bonsai_rate_limited_total{limit=\"question\"}").await, 1.0);
}

/// A TCP relay to the test Redis that can be cut, as if Redis died.
struct CuttableRedis {
    url: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl CuttableRedis {
    async fn start() -> Self {
        Self::start_at("127.0.0.1:0").await
    }

    async fn start_at(addr: &str) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let inner = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect("127.0.0.1:6379").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                inner.lock().unwrap().push(relay);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { url, tasks }
    }

    /// Closes every connection and stops listening.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test]
async fn a_redis_that_answers_only_after_the_start_is_used_from_then_on() {
    // A port where nothing listens yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut settings = test_settings();
    settings.redis_url = format!("redis://{addr}");
    settings.rate_limit.login_lockout_after = 2;
    let started = std::time::Instant::now();
    let app = TestApp::spawn_with(settings).await;
    let ready: serde_json::Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["redis"], "degraded", "{ready}");
    println!("started in {:?} with Redis refusing connections", started.elapsed());
    let _redis = CuttableRedis::start_at(&addr).await;
    eventually(|| async {
        let ready: serde_json::Value = app.get("/readyz", None).await.json().await.unwrap();
        ready["redis"] == "ok"
    })
    .await;
    // Limits go to Redis from now on: a second node sees the first one's failed logins.
    let second = TestApp::spawn_with(app.settings.clone()).await;
    assert_eq!(app.login(ADMIN, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(second.login(ADMIN, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn when_redis_dies_each_node_goes_on_limiting_alone() {
    let relay = CuttableRedis::start().await;
    let mut settings = test_settings();
    settings.redis_url = relay.url.clone();
    settings.rate_limit.login_lockout_after = 3;
    settings.rate_limit.requests_per_second = 50;
    let app = TestApp::spawn_with(settings).await;
    let token = app.admin_token().await;
    let ready: serde_json::Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["redis"], "ok", "{ready}");
    assert_eq!(app.login(ADMIN, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    relay.cut();
    // The node counted that failure too: two more lock the account out, Redis or not.
    for _ in 0..2 {
        assert_eq!(app.login(ADMIN, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(response).await, "rate_limited");
    assert!(metric(&app, "bonsai_redis_errors_total").await >= 1.0);
    // Still ready (Redis is not required), and saying that Redis is not answering.
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["redis"], "degraded");
    // A dead Redis fails no request: signed-in users go on, under the node's own request limit.
    for _ in 0..20 {
        assert_eq!(app.get("/api/users/profile", Some(&token)).await.status(), StatusCode::OK);
    }
}

/// Behind a trusted proxy the client is the address `X-Forwarded-For` names: a lockout earned by one client
/// address does not lock out another behind the same proxy, and a session records the client's address.
/// From an untrusted peer the header is ignored.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_clients() {
    let mut settings = test_settings();
    settings.rate_limit.login_lockout_after = 100;
    settings.rate_limit.login_slowdown_after = 100;
    settings.rate_limit.login_lockout_after_per_address = 3;
    settings.http.trusted_proxies = "127.0.0.1".into();
    let app = TestApp::spawn_with(settings).await;
    let login = |from: &'static str, username: &'static str, password: &'static str| {
        app.client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", from)
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
    };
    for name in ["ann", "bob", "cyd"] {
        assert_eq!(login("203.0.113.7", name, "wrong-password").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let locked = login("203.0.113.7", ADMIN, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS, "that address earned its lockout");
    // A client that writes its own header behind the proxy is still the address the proxy appended.
    let spoofed = login("198.51.100.2, 203.0.113.7", ADMIN, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = login("198.51.100.2", ADMIN, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(other.status(), StatusCode::OK, "another client behind the same proxy is not locked out");
    let token = other.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    // Once the users view knows the admin (a fresh instance).
    eventually(|| async { app.get("/api/users/profile", Some(&token)).await.status() == StatusCode::OK }).await;
    let sessions: serde_json::Value = app.get("/api/users/profile/sessions", Some(&token)).await.json().await.unwrap();
    let this = sessions["items"].as_array().unwrap().iter().find(|s| s["current"] == true).unwrap().clone();
    assert_eq!(this["address"], "198.51.100.2", "{sessions}");
    app.stop().await.unwrap();

    // Without trusted proxies the header is anyone's to write, and ignored.
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", "198.51.100.2")
        .json(&serde_json::json!({"username": ADMIN, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = response.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    eventually(|| async { app.get("/api/users/profile", Some(&token)).await.status() == StatusCode::OK }).await;
    let sessions: serde_json::Value = app.get("/api/users/profile/sessions", Some(&token)).await.json().await.unwrap();
    assert_eq!(sessions["items"][0]["address"], "127.0.0.1", "{sessions}");
}
