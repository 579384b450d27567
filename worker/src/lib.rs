//! The `cutover` binary's library: configuration, release input checks, the Temporal client and
//! worker, and one module per CLI verb group.
//!
//! - [`authority`]: the worker's own configuration decides a release's policy.
//! - [`identity`]: OIDC ID tokens sealed by the CLI, verified by the worker.
//! - [`config`]: `cutover.toml`, validated and resolved into a `DeployRequest`.
//! - [`image`]: image reference validation.
//! - [`registry`]: image preflight (references resolved to digests with the OCI distribution API).
//! - [`temporal`]: connection settings from `TEMPORAL_*` and the worker.
//! - [`breaker_cmd`]: the circuit breaker's commands and the gate `deploy` passes.
//! - [`canary_cmd`]: the canary strategy and its controls.
//! - [`commands`]: deploy, approve, reject, abort, status, rollback.
//! - [`k8s`]: render (a release's Kubernetes manifests) and secrets sync.
//! - [`migrate_cmd`]: migrate check, plan, status, run, rollback.
//! - [`release_cmd`]: the environment's running release, whichever strategy, and how a new
//!   release makes way (supersede).

pub mod authority;
pub mod breaker_cmd;
pub mod canary_cmd;
pub mod commands;
pub mod config;
pub mod identity;
pub mod image;
pub mod k8s;
pub mod migrate_cmd;
pub mod registry;
pub mod release_cmd;
pub mod temporal;
