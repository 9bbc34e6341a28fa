//! One integration binary: every black-box test of the HTTP contract.

mod alerts;
mod audit;
mod bad_input;
mod browser;
mod bulk;
mod cache;
mod dashboard;
mod dashboard_admin;
mod dashboard_alerts;
mod dashboard_audit;
mod dashboard_playbooks;
mod faults;
mod helpers;
mod isolation;
mod jobs;
mod leaks;
mod limits;
mod management;
mod migration;
mod nodes;
mod notifications;
mod operations;
mod playbooks;
mod policies;
mod rotation;
mod verify;
