//! Timeouts and retry policies of every activity call, in one place.

use crate::failures::NON_RETRYABLE;
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_sdk::ActivityOptions;

/// Every activity of a release heartbeats while it runs (every 400 ms, sent at most every
/// 0.8 × this by the SDK): an attempt whose worker died times out after this long without a
/// heartbeat and runs again on a live worker, whatever its start-to-close timeout. (Measured
/// with the dev server, the next attempt starts about 2.6 s after the first began, with 1 s or
/// 1.5 s here alike: `cutover-bench --only resume`.)
pub const HEARTBEAT: Duration = Duration::from_millis(1000);

/// How long a worker may hold a workflow task (the SDK's default is 10 s). Our tasks take
/// milliseconds; a worker killed while it holds one delays the run by this much.
pub const WORKFLOW_TASK_TIMEOUT: Duration = Duration::from_secs(2);

fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(200))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(5))
        .maximum_attempts(max_attempts)
        .non_retryable_error_types(NON_RETRYABLE)
        .build()
}

/// Quick calls to the platform (switch, scale, read): a few seconds each, retried on transient
/// errors for about a minute.
pub fn platform_call() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(15))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(10))
        .build()
}

/// Traffic moves must be fast to retry: a short timeout so a lost worker is noticed quickly.
pub fn traffic_move() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(5))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(20))
        .build()
}

/// Starting instances can take a while (image pull, slow start).
pub fn start_instances(timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout + Duration::from_secs(30))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(5))
        .build()
}

/// Long waits heartbeat, so a dead worker is detected within the heartbeat timeout.
pub fn long_wait(timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout + Duration::from_secs(10))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(3))
        .build()
}

/// Checks send real requests; a worker crash restarts them from scratch.
pub fn checks() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(3))
        .build()
}

/// The worker's authorisation of a release or of an identity: its configuration, the OIDC
/// issuer's keys (fetched once, cached), the migration check; a refusal is never retried.
pub fn authorize() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(retry(5))
        .build()
}

/// Notifications: a couple of tries, then the workflow moves on.
pub fn notify() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(retry(2))
        .build()
}

/// Database calls that return quickly (plan, verify, the check).
pub fn database_call() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(5))
        .build()
}

/// A migration or its revert: bounded by the statement timeout, heartbeating while it waits for
/// the migration lock; a lost worker is noticed within the heartbeat timeout.
pub fn migration(statement_timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(statement_timeout + Duration::from_secs(180))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(5))
        .build()
}

/// The backup: dump and upload can take long; every part heartbeats its progress.
pub fn backup() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(6 * 3600))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(5))
        .build()
}

/// One canary analysis: a few queries; a lost worker is noticed within the heartbeat timeout
/// and the analysis runs again on another attempt.
pub fn analysis() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(20))
        .heartbeat_timeout(HEARTBEAT)
        .retry_policy(retry(5))
        .build()
}

/// The breaker's probe: a few HTTP reads; retried briefly, then the last verdict is kept.
pub fn breaker_probe() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(15))
        .retry_policy(retry(3))
        .build()
}
