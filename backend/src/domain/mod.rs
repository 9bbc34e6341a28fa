//! Pure types and rules: no I/O, no database, no HTTP.

pub mod actor;
pub mod anomaly;
pub mod code;
pub mod event;
pub mod gateway;
pub mod ids;
pub mod import;
pub mod input;
pub mod key_format;
pub mod key_state;
pub mod net;
pub mod plan;
pub mod policy;
pub mod rotation;
pub mod scope;
pub mod scope_query;
pub mod signing;
pub mod stripe;

pub use actor::{Actor, Origin};
pub use event::EventType;
pub use ids::*;
pub use key_format::{ApiKey, Environment, KeyHash, KeyHead, KeyPrefix};
pub use key_state::{KeyState, KeyTimes};
pub use scope::{Scope, ScopeSet};
