//! The management API (root key).

pub mod alerts;
pub mod apis;
pub mod audit;
pub mod billing;
pub mod consumers;
pub mod imports;
pub mod keys;
pub mod migration;
pub mod playbooks;
pub mod policies;
pub mod portal;
pub mod root_keys;
pub mod rotations;
pub mod signing_keys;
pub mod usage;
pub mod views;
pub mod webhooks;
