//! Virus scanning of uploads (design 4.3) with a real ClamAV daemon: `scripts/ensure-clamd.sh --test` starts
//! one that knows the EICAR test string (address in `BONSAI_TEST_CLAMD`, default tcp://127.0.0.1:3319).

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

/// The EICAR anti-virus test string: harmless, and detected by every scanner as if it were a virus.
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The test scanner's address, or none (with the reason printed) outside CI when it is not running.
fn test_clamd() -> Option<String> {
    let address = std::env::var("BONSAI_TEST_CLAMD").unwrap_or_else(|_| "tcp://127.0.0.1:3319".into());
    let hostport = address.trim_start_matches("tcp://").to_owned();
    if std::net::TcpStream::connect(&hostport).is_ok() {
        return Some(address);
    }
    assert!(std::env::var_os("CI").is_none(), "CI runs scripts/ensure-clamd.sh --test: no clamd at {address}");
    eprintln!("skipped: no clamd at {address} (run scripts/ensure-clamd.sh --test)");
    None
}

/// A CSV question/answer file with the EICAR string as one answer.
fn infected_csv() -> Vec<u8> {
    format!("question,answer\nwhat is this?,{EICAR}\nand this?,a plain answer\n").into_bytes()
}

fn stored_blobs(app: &TestApp) -> usize {
    let blobs = app.settings.data_dir.join("datasets").join("blobs");
    walk(&blobs)
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map_or(0, |entries| entries.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
}

async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[tokio::test]
async fn an_infected_upload_is_refused_unstored_and_raises_a_critical_alert_for_admins() {
    let Some(clamd) = test_clamd() else { return };
    let mut settings = test_settings();
    settings.virus_scan.clamd = Some(clamd);
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (trainer_id, trainer) = app.create_user(&admin, "mallory", "trainer").await;

    let clean = app.upload_ok(&trainer, crate::datasets::qa_jsonl(3)).await;
    assert_eq!(stored_blobs(&app), 1);

    let response = app.upload(Some(&trainer), "faq.csv", infected_csv(), &[("name", "faq")]).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "file_infected", "{body}");
    assert!(body["error"]["details"]["signature"].as_str().unwrap().starts_with("Bonsai.Test.EICAR"), "{body}");
    // A new version of an existing dataset is scanned as well.
    let version = app.upload(Some(&trainer), "v2.csv", infected_csv(), &[("dataset_id", &clean)]).await;
    assert_eq!(version.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was stored or recorded: one file, one dataset, still at version 1.
    assert_eq!(stored_blobs(&app), 1, "the infected file is not kept");
    let list: Value = app.get("/api/data/datasets", Some(&trainer)).await.json().await.unwrap();
    assert_eq!(list["total"], 1, "{list}");
    let dataset: Value = app.get(&format!("/api/data/datasets/{clean}"), Some(&trainer)).await.json().await.unwrap();
    assert_eq!(dataset["version"], 1, "{dataset}");

    // Admins get one critical alert per user and file (the second upload was the same content).
    let page = app.alerts_until(&admin, "?kind=infected_upload", |p| p["total"] == 1).await;
    let alert = &page["items"][0];
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_eq!(alert["subject"], format!("User/{trainer_id}"));
    assert_eq!(alert["details"]["username"], "mallory");
    assert_eq!(alert["details"]["filename"], "faq.csv");
    // The uploader does not see the security alert about them.
    let theirs: Value = app.get("/api/alerts?kind=infected_upload", Some(&trainer)).await.json().await.unwrap();
    assert_eq!(theirs["total"], 0, "{theirs}");

    assert_eq!(metric(&app, "bonsai_upload_scans_total{result=\"clean\"}").await, Some(1.0));
    assert_eq!(metric(&app, "bonsai_upload_scans_total{result=\"infected\"}").await, Some(2.0));
}

#[tokio::test]
async fn without_a_verdict_uploads_are_refused_unless_scanning_is_optional() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = test_settings();
    settings.virus_scan.clamd = Some(format!("tcp://127.0.0.1:{port}"));
    settings.virus_scan.timeout_secs = 2.0;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let response = app.upload(Some(&admin), "qa.jsonl", crate::datasets::qa_jsonl(2), &[]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(response).await, "virus_scan_unavailable");
    assert_eq!(stored_blobs(&app), 0);
    let list: Value = app.get("/api/data/datasets", Some(&admin)).await.json().await.unwrap();
    assert_eq!(list["total"], 0);
    assert_eq!(metric(&app, "bonsai_upload_scans_total{result=\"failed\"}").await, Some(1.0));
    app.stop().await.unwrap();

    let mut settings = test_settings();
    settings.virus_scan.clamd = Some(format!("tcp://127.0.0.1:{port}"));
    settings.virus_scan.required = false;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    app.upload_ok(&admin, crate::datasets::qa_jsonl(2)).await;
    assert_eq!(stored_blobs(&app), 1, "accepted unscanned");
}

#[tokio::test]
async fn a_malformed_scanner_address_stops_the_start_with_a_reason() {
    let mut settings = test_settings();
    settings.virus_scan.clamd = Some("clamav".into());
    let error = bonsai_server::Application::build(&settings).await.err().expect("the start fails");
    assert!(format!("{error:#}").contains("BONSAI__VIRUS_SCAN__CLAMD"), "{error:#}");
}
