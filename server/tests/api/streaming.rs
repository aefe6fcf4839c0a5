//! Streamed answers and the OpenAI-compatible door: `POST /api/qa/ask` with `stream`, tokens carried over
//! core NATS from the answering node to the asking one, a client that goes away stopping the generation,
//! and `/v1/models` and `/v1/chat/completions` in OpenAI's shapes (the official Python client drives them in
//! `scripts/test-openai.sh`).

use crate::helpers::*;
use bonsai_crypto::data_keys::ERASED;
use bonsai_server::settings::NodeRole;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// The server-sent events of a response, `(event name, data)`, read to its end.
async fn sse(response: reqwest::Response) -> Vec<(String, String)> {
    let text = response.text().await.unwrap();
    parse_sse(&text)
}

fn parse_sse(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}

impl TestApp {
    async fn ask_streamed(&self, token: &str, body: Value) -> reqwest::Response {
        let mut body = body;
        body["stream"] = json!(true);
        let response = self.post("/api/qa/ask", Some(token), body).await;
        assert_eq!(response.status(), StatusCode::OK);
        let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        response
    }
}

/// The deltas of a streamed answer, and its final event.
fn deltas_and_end(events: &[(String, String)]) -> (String, usize, (String, Value)) {
    let deltas: Vec<String> = events
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| serde_json::from_str::<Value>(data).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    let (name, data) = events.last().expect("a final event").clone();
    (deltas.concat(), deltas.len(), (name, serde_json::from_str(&data).unwrap()))
}

#[tokio::test]
async fn a_streamed_answer_arrives_piece_by_piece_and_adds_up_to_the_stored_answer() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let events =
        sse(app.ask_streamed(&admin, json!({"question": "What is Bonsai?", "max_new_tokens": 24})).await).await;
    assert_eq!(events[0].0, "question", "{events:?}");
    let (text, pieces, (end, done)) = deltas_and_end(&events);
    assert_eq!(end, "done", "{events:?}");
    assert_eq!(done["status"], "answered");
    assert!(pieces > 1, "streamed in pieces: {events:?}");
    assert_eq!(done["answer"].as_str(), Some(text.as_str()), "the pieces add up to the answer");
    assert!(done["completion_tokens"].as_i64().unwrap() > 0 && done["prompt_tokens"].as_i64().unwrap() > 0);
    assert!(done["finish_reason"] == "length" || done["finish_reason"] == "stop", "{done}");
    // As recorded in the history.
    let id = done["question_id"].as_str().unwrap();
    let stored: Value = app.get(&format!("/api/qa/questions/{id}"), Some(&admin)).await.json().await.unwrap();
    assert_eq!(stored["answer"], done["answer"]);
    // The same question again is a cached answer: one piece, the whole answer.
    let events =
        sse(app.ask_streamed(&admin, json!({"question": "What is Bonsai?", "max_new_tokens": 24})).await).await;
    let (again, pieces, (_, done)) = deltas_and_end(&events);
    assert_eq!((again.as_str(), pieces, done["cached"].as_bool()), (text.as_str(), 1, Some(true)));
}

#[tokio::test]
async fn tokens_reach_a_client_connected_to_a_node_that_does_not_answer() {
    let answering = TestApp::spawn().await;
    let admin = answering.admin_token().await;
    answering.training_fixture(&admin).await;
    answering.deployed_tiny(&admin).await;
    let mut settings = answering.settings.clone();
    settings.role = NodeRole::Api;
    let front = TestApp::spawn_with(settings).await;
    let events =
        sse(front.ask_streamed(&admin, json!({"question": "Hello from afar", "max_new_tokens": 16})).await).await;
    let (text, pieces, (end, done)) = deltas_and_end(&events);
    assert_eq!((end.as_str(), done["status"].as_str()), ("done", Some("answered")), "{events:?}");
    assert!(pieces >= 1 && done["answer"].as_str() == Some(text.as_str()), "{events:?}");
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_generation() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let max = 1024;
    let response = app.ask_streamed(&admin, json!({"question": "Go on and on", "max_new_tokens": max})).await;
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let question_id = loop {
        seen.push_str(&String::from_utf8_lossy(&body.next().await.expect("more events").unwrap()));
        let events = parse_sse(&seen);
        let question = events.iter().find(|(name, _)| name == "question");
        if let (Some((_, q)), true) = (question, events.iter().any(|(name, _)| name == "delta")) {
            break serde_json::from_str::<Value>(q).unwrap()["question_id"].as_str().unwrap().to_owned();
        }
    };
    drop(body); // the client goes away after the first piece
    let stored = eventually_some(|| async {
        let q: Value = app.get(&format!("/api/qa/questions/{question_id}"), Some(&admin)).await.json().await.unwrap();
        (q["status"] != "pending").then_some(q)
    })
    .await;
    assert_eq!(stored["finish_reason"], "cancelled", "{stored}");
    let generated = stored["completion_tokens"].as_i64().unwrap();
    assert!(generated < max as i64, "stopped early: {generated} tokens");
    assert!(!stored["answer"].as_str().unwrap().is_empty(), "what was generated is recorded: {stored}");
}

#[tokio::test]
async fn v1_lists_models_and_answers_chat_completions_in_openai_s_shapes() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    let id = app.deployed_tiny(&admin).await;
    let models: Value = app.get("/v1/models", Some(&admin)).await.json().await.unwrap();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tiny bot", "tiny bot:1"], "{models}");
    let messages = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is Bonsai?"}
    ]);
    let response = app
        .post(
            "/v1/chat/completions",
            Some(&admin),
            json!({"model": "tiny bot:1", "messages": messages, "max_tokens": 8, "temperature": 0}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert!(completion["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &completion["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["finish_reason"] == "length" || choice["finish_reason"] == "stop", "{completion}");
    let usage = &completion["usage"];
    assert_eq!(
        usage["total_tokens"].as_i64(),
        Some(usage["prompt_tokens"].as_i64().unwrap() + usage["completion_tokens"].as_i64().unwrap())
    );
    // Recorded in the caller's history, with the conversation as its context.
    let history = eventually_some(|| async {
        let history: Value = app.get("/api/qa/history", Some(&admin)).await.json().await.unwrap();
        (history["items"][0]["status"] == "answered").then_some(history)
    })
    .await;
    let item = &history["items"][0];
    assert_eq!((item["question"].as_str(), item["model_id"].as_str()), (Some("What is Bonsai?"), Some(id.as_str())));
    assert_eq!(item["answer"], choice["message"]["content"]);
    // Erasable like any question: deleting it erases its text, its system message, the turns sent with it and
    // its answer (the events stay, sealed under the question's erased key).
    let (question, session) = (item["question_id"].as_str().unwrap(), item["session_id"].as_str().unwrap());
    let response = app.delete(&format!("/api/qa/history/{question}"), Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let events = bonsai_projections::log::aggregate_history(&app.pool, "QaSession", session).await.unwrap();
    let payload = |kind: &str| events.iter().find(|e| e.event_type == kind).unwrap().payload[kind].clone();
    let asked = payload("QuestionAsked");
    assert_eq!((asked["question"].as_str(), asked["system"].as_str()), (Some(ERASED), Some(ERASED)), "{asked}");
    let turns = asked["context"].as_array().unwrap();
    assert!(!turns.is_empty() && turns.iter().all(|t| t["question"] == ERASED && t["answer"] == ERASED), "{asked}");
    assert_eq!(payload("QuestionAnswered")["answer"]["answer"], ERASED);
    eventually(|| async {
        let history: Value = app.get("/api/qa/history", Some(&admin)).await.json().await.unwrap();
        history["items"].as_array().unwrap().iter().all(|q| q["question_id"] != question)
    })
    .await;
    // Streamed, with the usage chunk asked for.
    let body = json!({"model": "tiny bot", "messages": [{"role": "user", "content": "Stream it"}], "max_tokens": 8,
        "stream": true, "stream_options": {"include_usage": true}});
    let events = sse(app.post("/v1/chat/completions", Some(&admin), body).await).await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"), "{chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    let finished: Vec<&Value> = chunks.iter().filter(|c| !c["choices"][0]["finish_reason"].is_null()).collect();
    assert_eq!(finished.len(), 1, "one chunk ends the choice: {chunks:?}");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]), "the usage chunk comes last, without choices");
    assert!(usage["usage"]["completion_tokens"].as_i64().unwrap() > 0);
    let stored = eventually_some(|| async {
        let history: Value = app.get("/api/qa/history", Some(&admin)).await.json().await.unwrap();
        let first = &history["items"][0];
        (first["question"] == "Stream it" && first["status"] == "answered").then(|| first["answer"].clone())
    })
    .await;
    assert_eq!(stored.as_str(), Some(text.as_str()), "the chunks add up to the stored answer");
}

#[tokio::test]
async fn v1_errors_have_openai_s_shape() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let chat = |body: Value| app.post("/v1/chat/completions", Some(&admin), body);
    let check = |status: StatusCode, code: &'static str, param: Value| {
        move |(got, body): (StatusCode, Value)| {
            assert_eq!(got, status, "{body}");
            assert_eq!(body["error"]["code"], code, "{body}");
            assert_eq!(body["error"]["param"], param, "{body}");
            assert!(
                body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()) && body["error"]["type"].is_string()
            );
        }
    };
    let read = |r: reqwest::Response| async { (r.status(), r.json::<Value>().await.unwrap()) };
    let one = json!([{"role": "user", "content": "Hi"}]);
    check(StatusCode::NOT_FOUND, "model_not_found", json!("model"))(
        read(chat(json!({"model": "nobody", "messages": one})).await).await,
    );
    check(StatusCode::BAD_REQUEST, "invalid_request_error", json!("n"))(
        read(chat(json!({"model": "nobody", "messages": one, "n": 2})).await).await,
    );
    check(StatusCode::BAD_REQUEST, "invalid_request_error", json!("messages"))(
        read(chat(json!({"model": "x", "messages": [{"role": "assistant", "content": "Hi"}]})).await).await,
    );
    check(StatusCode::BAD_REQUEST, "invalid_request_error", Value::Null)(
        read(chat(json!({"messages": one})).await).await,
    );
    let response = app.client.get(app.url("/v1/models")).send().await.unwrap();
    check(StatusCode::UNAUTHORIZED, "missing_token", Value::Null)(read(response).await);
    let _ = Duration::ZERO;
}
