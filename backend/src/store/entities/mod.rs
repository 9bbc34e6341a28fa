//! sea-orm entities, one per table. Ids are TypeID strings; every tenant-owned row has
//! `tenant_id`, and the queries in `store/` always filter on it.

pub mod alert;
pub mod api;
pub mod audit_event;
pub mod audit_head;
pub mod billing_account;
pub mod consumer;
pub mod delivery;
pub mod event;
pub mod idempotency_key;
pub mod job;
pub mod key;
pub mod key_baseline;
pub mod key_client;
pub mod key_credit;
pub mod key_import;
pub mod membership;
pub mod node;
pub mod password_reset;
pub mod pending_secret;
pub mod playbook;
pub mod playbook_run;
pub mod portal_grant;
pub mod portal_session;
pub mod rotation;
pub mod rotation_policy;
pub mod sent_notice;
pub mod session;
pub mod signing_key;
pub mod stripe_connection;
pub mod stripe_event;
pub mod tenant;
pub mod usage_mark;
pub mod usage_rollup;
pub mod user;
pub mod webhook_endpoint;
