//! Public endpoints: verification (no auth).

pub mod verify;
