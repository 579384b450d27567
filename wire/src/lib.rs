//! What cutover's production crates (`activities`, `worker`) and the demo platform
//! (`localplatform`) both need, so that production code never depends on the demo platform:
//!
//! - [`api`]: the JSON types of the local platform's admin API (`/v1/...`), spoken by the
//!   platform and by the activities' client.
//! - [`CHECK_HEADER`]: the header cutover's own checks send, which the stand-in tells apart from
//!   real traffic.
//! - [`metrics::quantile`]: the p-quantile of a cumulative histogram, as Prometheus computes it.
//! - [`http`]: serving HTTP/1.1 with a graceful drain, and a plain-text response.

pub mod api;
pub mod http;
pub mod metrics;

/// Header that cutover's smoke and performance checks send.
pub const CHECK_HEADER: &str = "x-cutover-check";
