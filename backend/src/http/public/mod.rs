//! Public endpoints: verification (no auth), self-service (the consumer's key) and leak intake
//! (signed by the scanner), and the probe other nodes send (their token).

pub mod billing;
pub mod gateway;
pub mod intake;
pub mod oauth;
pub mod probe;
pub mod self_service;
pub mod verify;
