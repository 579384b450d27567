//! The embedded default platform of cutover.
//!
//! It exists so that the same Deploy and Rollback workflows that drive Kubernetes can run on a
//! laptop, in the demo and in real-traffic tests, without a cluster:
//!
//! - [`standin`] is the JTS stand-in service (`jts-standin` binary): health, readiness, metrics and
//!   a few API routes, with knobs that inject latency, errors, crashes and slow starts per version.
//! - [`supervisor`] runs each service's blue and green instances as child processes, probes their
//!   readiness and drains them before they stop.
//! - [`router`] routes each service's traffic to its colours by weight; a blue-green switch of all
//!   four services is one swap of the route table. It records RED metrics.
//! - [`admin`] is the small HTTP API the worker's activities call (`cutover-platform` binary).
//! - [`api`] holds the JSON types of that API, re-exported from the `wire` crate, which the
//!   activities' client shares without depending on this crate.
//!
//! The platform is its own process: a worker crash never drops traffic.

pub mod admin;
pub mod api;
pub mod faults;
pub mod http;
pub mod metrics;
pub mod router;
pub mod standin;
pub mod supervisor;
