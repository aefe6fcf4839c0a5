//! HTTPS: with a certificate and key configured the API is served over TLS only.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A self-signed certificate for `bonsai.test`, written as PEM files in `dir`: (cert path, key path, cert PEM).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["bonsai.test".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let pem = certified.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert, key, pem)
}

#[tokio::test]
async fn the_api_is_served_over_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path());
    let mut settings = test_settings();
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(key);
    let app = TestApp::spawn_with(settings).await;
    let addr: std::net::SocketAddr = app.addr.trim_start_matches("http://").parse().unwrap();
    let https = |path: &str| format!("https://bonsai.test:{}{path}", addr.port());
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve("bonsai.test", addr)
        .build()
        .unwrap();

    let health = trusting.get(https("/healthz")).send().await.expect("an HTTPS request is served");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.version(), reqwest::Version::HTTP_2, "ALPN offers h2 to clients that speak it");
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve("bonsai.test", addr)
        .http1_only()
        .build()
        .unwrap();
    let health = http1.get(https("/healthz")).send().await.unwrap();
    assert_eq!((health.status(), health.version()), (StatusCode::OK, reqwest::Version::HTTP_11));
    let login = json!({"username": ADMIN, "password": ADMIN_PASSWORD});
    let tokens: Value =
        trusting.post(https("/api/auth/login")).json(&login).send().await.unwrap().json().await.unwrap();
    let token = tokens["access_token"].as_str().unwrap();
    // The users view knows the first admin within moments of the start.
    let sessions = || trusting.get(https("/api/users/profile/sessions")).bearer_auth(token).send();
    eventually(|| async { sessions().await.unwrap().status() == StatusCode::OK }).await;
    let sessions: Value = sessions().await.unwrap().json().await.unwrap();
    assert_eq!(sessions["items"][0]["address"], "127.0.0.1", "the client's address is known behind TLS too");

    // Plain HTTP on the same port is not served, and a client that does not trust the certificate stops.
    assert!(reqwest::get(format!("http://{addr}/healthz")).await.map_or(true, |r| !r.status().is_success()));
    let untrusting = reqwest::Client::builder().resolve("bonsai.test", addr).build().unwrap();
    let refused = untrusting.get(https("/healthz")).send().await;
    assert!(refused.is_err(), "an unknown issuer is refused: {refused:?}");
    // The platform still answers afterwards (a failed handshake harms no one else).
    assert_eq!(trusting.get(https("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_stops_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = self_signed(dir.path());
    let mut settings = test_settings();
    settings.tls_cert = Some(dir.path().join("missing.pem"));
    settings.tls_key = Some(dir.path().join("key.pem"));
    let error = bonsai_server::Application::build(&settings).await.err().expect("no start without the certificate");
    assert!(format!("{error:#}").contains("TLS certificate"), "{error:#}");
    // A key of another certificate.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = self_signed(other.path());
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(other_key);
    let error = bonsai_server::Application::build(&settings).await.err().expect("no start with a foreign key");
    assert!(format!("{error:#}").contains("do not go together"), "{error:#}");
    settings.tls_key = None;
    let error = bonsai_server::Application::build(&settings).await.err().expect("a certificate needs its key");
    assert!(format!("{error:#}").contains("BONSAI__TLS_KEY"), "{error:#}");
}

#[tokio::test]
async fn plain_http_also_speaks_http2_to_clients_that_know_it_does() {
    let app = TestApp::spawn().await;
    // h2c with prior knowledge (what proxies and load balancers use towards a backend): requests, JSON
    // bodies and bearer tokens work as over HTTP/1.1.
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let login = json!({"username": ADMIN, "password": ADMIN_PASSWORD});
    let response = h2c.post(app.url("/api/auth/login")).json(&login).send().await.expect("served over h2c");
    assert_eq!((response.status(), response.version()), (StatusCode::OK, reqwest::Version::HTTP_2));
    let token = response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    // The users view knows the first admin within moments of the start.
    let profile = || h2c.get(app.url("/api/users/profile")).bearer_auth(&token).send();
    eventually(|| async { profile().await.unwrap().status() == StatusCode::OK }).await;
    let requests = (0..8).map(|_| h2c.get(app.url("/api/users/profile")).bearer_auth(&token).send());
    for response in futures::future::join_all(requests).await {
        let response = response.unwrap();
        assert_eq!((response.status(), response.version()), (StatusCode::OK, reqwest::Version::HTTP_2));
    }
}
