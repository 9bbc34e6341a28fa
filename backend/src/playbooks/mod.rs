//! Incident handling: the step catalogue and built-in playbooks, playbook runs, the registry of
//! nodes that runs probe, and `leak`, which contains keys that secret scanners report.

pub mod catalogue;
pub mod execute;
pub mod leak;
pub mod nodes;
pub mod runs;
mod validate;
