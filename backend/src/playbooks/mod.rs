//! Incident handling. `leak` contains keys that secret scanners report.

pub mod leak;
