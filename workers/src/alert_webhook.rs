//! Alert notifications: each alert that is raised, acknowledged or resolved is POSTed as JSON to the
//! webhook `BONSAI__ALERTS__WEBHOOK_URL` (a chat incoming webhook, a pager, Alertmanager-style relays).
//!
//! A durable consumer of `<prefix>.events.Alert.>` (one delivery per event whichever node sends it, in
//! order). A receiver that is down or answers 5xx, 408 or 429 gets the notification again, in place,
//! after 0.5, 1, 2, 4 and 8 s (so later alerts wait and the order holds through a short outage); after
//! that the message goes back to the stream and comes again until it is taken. One that answers another
//! 4xx refuses it for good (logged). With
//! `BONSAI__ALERTS__WEBHOOK_SECRET`, the body is signed: `Bonsai-Signature: sha256=<hex HMAC-SHA256 of
//! the body>`. `Bonsai-Delivery` (`Alert/<id>/<sequence>`) is the same on every retry, for receivers that
//! de-duplicate. The body's `text` reads well in chat tools (Slack and Mattermost show it as is).

use crate::consumer::{consume, Fetch, WorkerConsumer};
use crate::{EventBus, Processed};
use bonsai_domain::alert::{AlertEvent, AlertSpec};
use bonsai_domain::AggregateKind;
use bonsai_projections::{log, StoredEvent};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    /// Signs each body when set.
    pub secret: Option<String>,
}

pub struct AlertNotifier {
    bus: EventBus,
    pool: PgPool,
    client: reqwest::Client,
    settings: WebhookSettings,
}

/// The signature header's value for `body`.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl AlertNotifier {
    pub fn new(bus: EventBus, pool: PgPool, settings: WebhookSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("bonsai-alerts")
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Self { bus, pool, client, settings }
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let name = self.bus.durable_name("worker_alert_webhook");
        let subjects = vec![self.bus.subjects.events_of(AggregateKind::Alert)];
        // Up to six tries of 10 s each and 15.5 s of waits per message: well within the ack wait.
        // One notification in hand in the whole cluster: receivers get them in order.
        let spec = WorkerConsumer {
            name,
            subjects,
            ack_wait: Duration::from_secs(120),
            concurrency: 1,
            max_in_flight: 1,
            fetch: Fetch::Stream,
        };
        consume(&self.bus, &self.pool, spec, &shutdown, |e, _| self.handle(e)).await
    }

    /// What the alert was raised with: the latest `AlertRaised` up to `sequence`.
    async fn spec(&self, event: &StoredEvent) -> Option<AlertSpec> {
        let history = log::aggregate_history(&self.pool, "Alert", &event.aggregate_id).await.ok()?;
        history
            .iter()
            .filter(|e| e.sequence <= event.sequence)
            .filter_map(|e| match serde_json::from_value::<AlertEvent>(e.payload.clone()) {
                Ok(AlertEvent::AlertRaised { spec, .. }) => Some(spec),
                _ => None,
            })
            .next_back()
    }

    /// The notification for one alert event.
    fn body(event: &StoredEvent, decoded: &AlertEvent, spec: &AlertSpec) -> Value {
        let (what, status, by, note) = match decoded {
            AlertEvent::AlertRaised { .. } => ("raised", "open", None, None),
            AlertEvent::AlertAcknowledged { by, note } => ("acknowledged", "acknowledged", Some(*by), note.clone()),
            AlertEvent::AlertResolved { by, note } => ("resolved", "resolved", *by, note.clone()),
        };
        let mut text = format!("[{}] {} {}: {}", spec.severity.as_str().to_uppercase(), spec.kind, what, spec.message);
        if let Some(note) = &note {
            text.push_str(&format!(" ({note})"));
        }
        json!({
            "alert_id": event.aggregate_id,
            "event": what,
            "status": status,
            "kind": spec.kind,
            "severity": spec.severity,
            "subject": spec.subject,
            "message": spec.message,
            "details": spec.details,
            "owner_id": spec.owner_id,
            "by": by,
            "note": note,
            "at": event.recorded_at,
            "text": text,
        })
    }

    pub async fn handle(&self, event: StoredEvent) -> Processed {
        let Ok(decoded) = serde_json::from_value::<AlertEvent>(event.payload.clone()) else {
            return Processed::Terminated;
        };
        let spec = match &decoded {
            AlertEvent::AlertRaised { spec, .. } => Some(spec.clone()),
            _ => self.spec(&event).await,
        };
        let Some(spec) = spec else {
            tracing::warn!(alert = %event.aggregate_id, "the alert's raise is not readable yet, will retry");
            return Processed::Retried;
        };
        let body = serde_json::to_vec(&Self::body(&event, &decoded, &spec)).expect("JSON values serialise");
        let mut outcome = self.deliver(&event, &body).await;
        for delay_ms in [500, 1000, 2000, 4000, 8000] {
            if outcome != Processed::Retried {
                break;
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            outcome = self.deliver(&event, &body).await;
        }
        outcome
    }

    /// One POST of `body`: `Applied` when taken, `Retried` when it may be taken later, `Terminated` never.
    async fn deliver(&self, event: &StoredEvent, body: &[u8]) -> Processed {
        let mut request = self
            .client
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Bonsai-Delivery", event.message_id());
        if let Some(secret) = &self.settings.secret {
            request = request.header("Bonsai-Signature", signature(secret, body));
        }
        match request.body(body.to_vec()).send().await {
            Ok(response) if response.status().is_success() => Processed::Applied,
            Ok(response) => {
                let status = response.status();
                let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                if retry {
                    tracing::warn!(%status, alert = %event.aggregate_id, "the alert webhook failed, will retry");
                    Processed::Retried
                } else {
                    tracing::error!(%status, alert = %event.aggregate_id, "the alert webhook refused the notification");
                    Processed::Terminated
                }
            }
            Err(error) => {
                tracing::warn!(%error, alert = %event.aggregate_id, "the alert webhook is unreachable, will retry");
                Processed::Retried
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_body() {
        // RFC 4231 test case 2.
        let expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(signature("Jefe", b"what do ya want for nothing?"), expected);
    }
}
