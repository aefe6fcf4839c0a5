//! Everything that runs behind the bus: the relay (events table -> JetStream) and the durable
//! consumers that feed the projections (and, as the platform grows, the training and serving workers).

mod alert_webhook;
mod alerts;
mod answer_cache;
mod bus;
mod consumer;
mod notices;
mod relay;
mod serving;
mod training;
mod validation;

pub use alert_webhook::{AlertNotifier, WebhookSettings};
pub use alerts::{node_name, AlertSettings, AlertWorker};
pub use answer_cache::AnswerCache;
pub use bus::{stream_name, EventBus};
pub use consumer::{Processed, ProjectionConsumer};
pub use notices::{follow_key_erasures, follow_model_events, follow_user_events};
pub use relay::{Relay, RelayError, RelayWaker};
pub use serving::{matches_expected, Engines, ModelWorker, QaWorker};
pub use training::{interrupt_lost_runs, latest_checkpoint, model_of, TrainingWorker, DEFAULT_NODE_LEASE};
pub use validation::ValidationWorker;
