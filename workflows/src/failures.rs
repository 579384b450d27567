//! Failure type names. Activities raise them as `ApplicationFailure` type names; retry policies
//! list the non-retryable ones; the CLI shows them.

/// Input that can never succeed (unknown service, malformed image, bad colour...).
pub const INVALID_INPUT: &str = "InvalidInput";
/// The platform refused because of its current state (e.g. the colour is live).
pub const CONFLICT: &str = "PlatformConflict";
/// Instances did not become ready in time.
pub const NOT_READY: &str = "NotReady";
/// The platform kind is not available in this worker.
pub const UNSUPPORTED_PLATFORM: &str = "UnsupportedPlatform";
/// Nothing to roll back to (the other colour never ran).
pub const NO_PREVIOUS_COLOR: &str = "NoPreviousColor";
/// Traffic is not where the workflow expected it.
pub const VERIFY_FAILED: &str = "VerifyFailed";
/// The worker lacks a permission the deployment needs (named in the message).
pub const FORBIDDEN: &str = "Forbidden";
/// A migration statement failed (the transaction rolled back); retrying the same SQL cannot help.
pub const MIGRATION_FAILED: &str = "MigrationFailed";
/// The environment's circuit breaker is open: the deployment is refused (reasons in the message).
pub const BREAKER_OPEN: &str = "BreakerOpen";
/// The platform could not be reached (retryable).
pub const PLATFORM_UNAVAILABLE: &str = "PlatformUnavailable";

/// Workflow outcomes.
pub const DEPLOYMENT_FAILED: &str = "DeploymentFailed";
pub const DEPLOYMENT_ROLLED_BACK: &str = "DeploymentRolledBack";
pub const DEPLOYMENT_REJECTED: &str = "DeploymentRejected";
pub const DEPLOYMENT_ABORTED: &str = "DeploymentAborted";
/// The worker's configuration refused the request (a field, an identity, the migration check).
pub const RELEASE_REFUSED: &str = "ReleaseRefused";
pub const ROLLBACK_FAILED: &str = "RollbackFailed";
pub const MIGRATION_RUN_FAILED: &str = "MigrationRunFailed";

/// Types that retrying cannot fix.
pub const NON_RETRYABLE: [&str; 9] = [
    INVALID_INPUT,
    CONFLICT,
    NOT_READY,
    UNSUPPORTED_PLATFORM,
    NO_PREVIOUS_COLOR,
    VERIFY_FAILED,
    FORBIDDEN,
    MIGRATION_FAILED,
    BREAKER_OPEN,
];

/// The innermost message of an error chain (an activity or child failure wraps the cause the
/// person needs to read).
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        msg = c.to_string();
        cur = c.source();
    }
    msg
}
