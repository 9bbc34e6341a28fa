//! Public endpoints: verification (no auth), self-service (the consumer's key) and leak intake
//! (signed by the scanner).

pub mod intake;
pub mod self_service;
pub mod verify;
