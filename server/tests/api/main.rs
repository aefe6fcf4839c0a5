//! Black-box tests of the platform: HTTP in, real PostgreSQL and NATS, answers out.
#![allow(unreachable_pub)] // helpers are shared between the test modules of this one binary

mod alerts;
mod api_keys;
mod audit;
mod auth;
mod conditional;
mod console;
mod crash;
mod datasets;
mod datasets_input;
mod door;
mod encryption;
mod errors;
mod event_store;
mod fine_tuning;
mod helpers;
mod hostile_input;
mod https;
mod idempotency;
mod model_lifecycle;
mod operations;
mod projections;
mod rate_limits;
mod relay;
mod replay;
mod serving;
mod slow_clients;
mod streaming;
mod training;
mod users;
mod virus_scan;
