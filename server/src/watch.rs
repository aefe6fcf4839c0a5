//! `bonsai watch-task <id>`: follows a training task of a running platform with a progress bar, from its
//! live event stream (`GET /api/training/tasks/{id}/events`), until its run ends. Off a terminal (a log, a
//! pipe, CI) it prints a line per progress event instead of drawing a bar.

use anyhow::{bail, Context};
use bonsai_domain::training::TrainingTaskEvent;
use bonsai_domain::Event;
use bonsai_projections::StoredEvent;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// How a watched run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Completed(Value),
    Failed { code: String, message: String },
    Stopped { step: u64 },
}

/// One server-sent event: its type and its JSON data.
fn parse_event(block: &str) -> Option<(String, Value)> {
    let mut kind = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(k) = line.strip_prefix("event:") {
            kind = Some(k.trim().to_owned());
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    Some((kind?, serde_json::from_str(&data).ok()?))
}

fn describe(m: &Value) -> String {
    let mut text = format!(
        "loss {:.4}  lr {:.2e}  {:.0} tok/s  eta {:.0}s",
        m["loss"].as_f64().unwrap_or(f64::NAN),
        m["learning_rate"].as_f64().unwrap_or(0.0),
        m["tokens_per_sec"].as_f64().unwrap_or(0.0),
        m["eta_secs"].as_f64().unwrap_or(0.0)
    );
    if let Some(eval) = m["eval_loss"].as_f64() {
        text.push_str(&format!("  eval {eval:.4}"));
    }
    text
}

/// Follows task `id` at `url` with `token`, drawing a progress bar (hidden when `quiet`), and returns how
/// its run ended. A task already at rest answers at once.
pub async fn watch(url: &str, token: &str, id: &str, quiet: bool) -> anyhow::Result<Ended> {
    let endpoint = format!("{}/api/training/tasks/{id}/events", url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&endpoint)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        bail!("{status}: {}", body["error"]["message"].as_str().unwrap_or("no details"));
    }
    let lines = !quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if quiet || lines { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}").context("progress bar template")?);
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.context("reading the event stream")?));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some((kind, data)) = parse_event(&block) else { continue };
            if kind == "snapshot" {
                let progress = &data["progress"];
                bar.set_length(progress["total_steps"].as_u64().unwrap_or(0));
                bar.set_position(progress["step"].as_u64().unwrap_or(0));
                bar.set_message(format!("{} ({})", data["name"].as_str().unwrap_or(""), data["status"]));
                match data["status"].as_str() {
                    Some("completed") => return Ok(Ended::Completed(data["result"].clone())),
                    Some("failed") => {
                        let error = &data["error"];
                        return Ok(Ended::Failed {
                            code: error["code"].as_str().unwrap_or_default().to_owned(),
                            message: error["message"].as_str().unwrap_or_default().to_owned(),
                        });
                    }
                    Some("stopped") => return Ok(Ended::Stopped { step: progress["step"].as_u64().unwrap_or(0) }),
                    _ => {}
                }
                continue;
            }
            // Every other event is the task's event envelope, read typed.
            let Ok(envelope) = serde_json::from_value::<StoredEvent>(data) else { continue };
            let Ok((Event::TrainingTask(event), _)) = envelope.event() else { continue };
            match event {
                TrainingTaskEvent::TrainingStarted { .. } => bar.set_message("running"),
                TrainingTaskEvent::TrainingProgressed { metrics, .. } => {
                    let m = serde_json::to_value(&metrics).unwrap_or_default();
                    if lines {
                        let (step, total) = (m["step"].as_u64().unwrap_or(0), m["total_steps"].as_u64().unwrap_or(0));
                        println!("step {step}/{total}  {}", describe(&m));
                    }
                    bar.set_length(m["total_steps"].as_u64().unwrap_or(0));
                    bar.set_position(m["step"].as_u64().unwrap_or(0));
                    bar.set_message(describe(&m));
                }
                TrainingTaskEvent::TrainingInterrupted { step, reason, .. } => {
                    let message = format!("interrupted at step {step} ({reason}); waiting for a worker to resume it");
                    if lines {
                        println!("{message}");
                    }
                    bar.set_message(message);
                }
                TrainingTaskEvent::TrainingStopRequested { .. } => bar.set_message("stopping"),
                TrainingTaskEvent::TrainingCompleted { result, .. } => {
                    bar.finish();
                    return Ok(Ended::Completed(serde_json::to_value(&result).unwrap_or_default()));
                }
                TrainingTaskEvent::TrainingFailed { code, message, .. } => {
                    bar.abandon();
                    return Ok(Ended::Failed { code, message });
                }
                TrainingTaskEvent::TrainingStopped { step, .. } => {
                    bar.abandon();
                    return Ok(Ended::Stopped { step });
                }
                _ => {}
            }
        }
    }
    bail!("the event stream ended before the run did")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_from_their_lines() {
        let block = "event: TrainingProgressed\ndata: {\"payload\": {\"x\": 1}}\n\n";
        assert_eq!(parse_event(block), Some(("TrainingProgressed".into(), serde_json::json!({"payload": {"x": 1}}))));
        assert_eq!(parse_event(": keep-alive\n\n"), None);
    }
}
