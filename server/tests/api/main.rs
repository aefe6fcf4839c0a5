//! Black-box tests of the platform: HTTP in, real PostgreSQL and NATS, answers out.
#![allow(unreachable_pub)] // helpers are shared between the test modules of this one binary

mod alerts;
mod audit;
mod auth;
mod conditional;
mod datasets;
mod datasets_input;
mod encryption;
mod errors;
mod event_store;
mod helpers;
mod https;
mod model_lifecycle;
mod rate_limits;
mod relay;
mod replay;
mod serving;
mod training;
mod users;
mod virus_scan;
