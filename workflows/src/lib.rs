//! cutover's workflows. Deterministic code only: no I/O crates, no wall clock, no tokio.
//!
//! - [`names`] pins every workflow, activity, signal, update and query name, shared with the CLI,
//!   so a Rust rename never breaks a running history or a CI script.
//! - [`activities`] declares the activities the workflows call (implemented in the `activities`
//!   crate), and [`options`] their timeouts and retry policies.
//! - [`release`] is the lifecycle both strategies share (journal, colours, approvals, stops);
//!   [`deploy`] is the blue-green Deploy workflow; [`shift`] the canary (GradualShift); [`rollback`] the Rollback workflow it uses;
//!   [`migrate`] runs database migrations (expand before the switch, contract after).
//! - [`breaker`] is an environment's circuit breaker (a long-running entity workflow).
//! - [`failures`] names the failure types workflows and activities raise.

pub mod activities;
pub mod breaker;
pub mod deploy;
pub mod failures;
pub mod migrate;
pub mod names;
pub mod options;
pub mod release;
pub mod rollback;
pub mod shift;
pub mod time;

pub use breaker::BreakerWorkflow;
pub use deploy::DeployWorkflow;
pub use migrate::MigrateWorkflow;
pub use rollback::RollbackWorkflow;
pub use shift::ShiftWorkflow;
