//! Keyroll: the whole life of API keys — issue, verify, rotate with zero downtime, revoke.

pub mod alerts;
pub mod app;
pub mod audit;
pub mod billing;
pub mod cache;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod playbooks;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tokens;
pub mod verify;
