//! Slow and greedy clients (issue 16, item 3): a client that never finishes its headers, or says nothing,
//! is let go after the header-read timeout while healthy clients keep being served, and connections beyond
//! the cap per client address are closed at once.

use crate::helpers::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn socket_addr(app: &TestApp) -> String {
    app.addr.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or fails it); how long that took, or none within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue, // a 408 answer, then the close
            Err(_) => return None,
        }
    }
}

/// A raw HTTP/1.1 GET of /healthz on `stream`: its status line.
async fn health_over(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_healthy_clients_are_served() {
    let mut settings = test_settings();
    settings.http.header_read_timeout_secs = 2.0;
    let app = TestApp::spawn_with(settings).await;
    let addr = socket_addr(&app);

    // Headers one byte a second, never finished.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let slowloris = tokio::spawn(async move {
        let start = Instant::now();
        for byte in
            b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .iter()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return start.elapsed();
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
                Ok(Ok(_)) => return start.elapsed(), // an answer (408) before the headers ended: cut off
                Err(_) => {}                         // a second went by: the next byte
            }
        }
        panic!("the slow client was held for {:?}", start.elapsed())
    });
    // A client that connects and says nothing.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let silent = tokio::spawn(async move { closed_within(&mut silent, Duration::from_secs(20)).await });

    // Meanwhile healthy clients are served, on new connections and on one kept alive.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(4) {
        assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
        let fresh = reqwest::Client::new();
        assert_eq!(fresh.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
        served += 2;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let slow_for = slowloris.await.unwrap();
    let silent_for = silent.await.unwrap().expect("the silent connection is closed");
    println!(
        "slowloris cut off after {slow_for:?}, silent client after {silent_for:?}; {served} healthy requests served"
    );
    assert!(slow_for >= Duration::from_millis(1500) && slow_for < Duration::from_secs(5), "{slow_for:?}");
    assert!(silent_for >= Duration::from_millis(1500) && silent_for < Duration::from_secs(5), "{silent_for:?}");
    assert!(served >= 10, "{served}");
}

#[tokio::test]
async fn connections_beyond_the_cap_per_address_are_closed_at_once() {
    let mut settings = test_settings();
    settings.http.max_connections_per_address = 4;
    let app = TestApp::spawn_with(settings).await;
    let addr = socket_addr(&app);

    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        assert!(health_over(&mut stream).await.contains("200"), "within the cap: served");
        open.push(stream);
    }
    for _ in 0..3 {
        let mut extra = TcpStream::connect(&addr).await.unwrap();
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n").await;
        let closed = closed_within(&mut extra, Duration::from_secs(5)).await;
        assert!(
            closed.is_some_and(|t| t < Duration::from_secs(1)),
            "the fifth connection is closed at once: {closed:?}"
        );
    }
    // The ones within the cap go on being served; one closed makes room for another.
    assert!(health_over(&mut open[0]).await.contains("200"));
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = TcpStream::connect(&addr).await.unwrap();
    assert!(health_over(&mut again).await.contains("200"), "room was made");
}
