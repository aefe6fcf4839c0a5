//! Black-box tests of the platform: HTTP in, real PostgreSQL and NATS, answers out.

mod audit;
mod auth;
mod errors;
mod helpers;
mod relay;
mod replay;
mod users;
