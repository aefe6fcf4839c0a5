//! The web console served by `bonsai serve` at `/`: cached assets, an uncached page, deep links, the
//! Content-Security-Policy, the API's JSON 404s left alone; and the console's copy of the OpenAPI document
//! (from which its TypeScript types are generated) kept identical to the API's.

use crate::helpers::{error_code, test_settings, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

/// A console build as Vite leaves it: `index.html` and hashed assets.
fn built_console() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bonsai_console_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><div id=\"root\"></div>").unwrap();
    std::fs::write(dir.join("assets/index-Ab12Cd34.js"), "console.log('bonsai')").unwrap();
    std::fs::write(dir.join("favicon.svg"), "<svg/>").unwrap();
    dir
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn the_console_is_served_at_the_root_with_cache_rules_deep_links_and_a_csp() {
    let dir = built_console();
    let mut settings = test_settings();
    settings.console_dir = Some(dir.clone());
    let app = TestApp::spawn_with(settings).await;

    let page = app.get("/", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"));
    assert!(!csp.split(';').find(|d| d.trim().starts_with("script-src")).unwrap().contains("unsafe-inline"));
    assert!(page.text().await.unwrap().contains("id=\"root\""));

    let asset = app.get("/assets/index-Ab12Cd34.js", None).await;
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(header(&asset, "cache-control"), "public, max-age=31536000, immutable");
    assert!(header(&asset, "content-type").starts_with("text/javascript"));
    assert_eq!(asset.text().await.unwrap(), "console.log('bonsai')");

    // A page of the console's own router, opened directly or reloaded.
    let deep = app.get("/datasets/3f1c/preview", None).await;
    assert_eq!(deep.status(), StatusCode::OK);
    assert_eq!(header(&deep, "cache-control"), "no-cache");
    assert!(deep.text().await.unwrap().contains("id=\"root\""));

    // A missing asset is not the page (a stale tab must not run HTML as a script).
    assert_eq!(app.get("/assets/gone-1234.js", None).await.status(), StatusCode::NOT_FOUND);
    // Nothing outside the folder.
    assert_ne!(
        app.get("/..%2f..%2fetc/passwd", None).await.text().await.unwrap(),
        std::fs::read_to_string("/etc/passwd").unwrap_or_default()
    );

    // The API's unknown paths stay JSON 404s.
    let missing = app.get("/api/nothing-here", None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "not_found");
    assert_eq!(app.get("/v1/anything", None).await.status(), StatusCode::NOT_FOUND);
    // And the API still answers.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    app.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn without_a_console_the_root_is_a_json_404() {
    let app = TestApp::spawn().await;
    let root = app.get("/", None).await;
    assert_eq!(root.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(root).await, "not_found");
    app.stop().await.unwrap();
}

/// `web/src/api/openapi.json` is what the console's types (`schema.d.ts`, by openapi-typescript) are made
/// from; it must be the API's document. `BONSAI_UPDATE_OPENAPI=1` rewrites it (then `npm run gen:api` in web/).
#[tokio::test]
async fn the_consoles_copy_of_the_openapi_document_is_current() {
    let app = TestApp::spawn().await;
    let served: Value = app.get("/api/openapi.json", None).await.json().await.unwrap();
    app.stop().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src/api/openapi.json");
    if std::env::var("BONSAI_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, serde_json::to_string_pretty(&served).unwrap() + "\n").unwrap();
    }
    let copy: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        copy == served,
        "web/src/api/openapi.json is stale: run `BONSAI_UPDATE_OPENAPI=1 cargo test -p bonsai-server --test api \
         the_consoles_copy` and `npm run gen:api` in web/"
    );
}
