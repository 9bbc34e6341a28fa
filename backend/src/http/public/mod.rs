//! Public endpoints: verification (no auth).

pub mod self_service;
pub mod verify;
