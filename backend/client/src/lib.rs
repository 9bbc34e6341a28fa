//! A Rust client of Keyroll.
//!
//! - [`VerifyClient`]: "is this key valid, and what may it do?", with a small local cache that
//!   keeps only what the server allows (`Cache-Control` on `/v1/verify`).
//! - `KeyrollAuth` (feature `actix`) and `KeyrollLayer` (feature `tower`): protect a service with
//!   one line; the handler finds the [`Verification`] in the request's extensions, and a
//!   superseded key's `Deprecation`/`Sunset` reach its caller.
//! - [`KeyHolder`]: the consumer side of rotation. It holds the key a service calls a provider
//!   with, picks up a key issued by a scheduled rotation, or rotates itself before the
//!   provider's policy would, swaps keys atomically in process and keeps the new one in a
//!   [`Sink`] (a file, an environment file, a callback).

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(any(feature = "actix", feature = "tower"))]
mod guard;
mod holder;
mod refusal;
#[cfg(feature = "tower")]
pub mod tower;
mod verify;

pub use holder::{CallbackSink, EnvFileSink, FileSink, HolderOptions, KeyHolder, Outcome, Sink};
pub use refusal::Refusal;
pub use verify::{
    Check, ClientOptions, ConsumerInfo, CreditsInfo, KeyInfo, RateLimitInfo, RotationInfo, Verification, VerifyClient,
};

/// What can go wrong talking to Keyroll.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Keyroll could not be reached, or its answer could not be read.
    #[error("keyroll: {0}")]
    Http(#[from] reqwest::Error),
    /// Keyroll refused the request itself (the status and its problem document).
    #[error("keyroll answered {0}: {1}")]
    Status(u16, String),
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
    /// The sink did not keep a new key.
    #[error("key sink: {0}")]
    Sink(String),
}
