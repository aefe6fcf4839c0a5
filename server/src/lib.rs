//! The `bonsai` binary's library: settings, telemetry, database bootstrap, and the application that
//! runs API, relay and projections together. `main.rs` only parses the command line.

pub mod app;
pub mod db;
pub mod erasable;
pub mod http;
pub mod rekey;
pub mod replay;
pub mod settings;
pub mod system_alerts;
pub mod telemetry;
pub mod tls;
pub mod watch;

pub use app::Application;
pub use settings::Settings;
