//! One error enum for every activity; each kind has a stable failure type name (see
//! `workflows::failures`) and an explicit retryability, mapped in one place.

use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;
use workflows::failures;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    UnsupportedPlatform(String),
    #[error("{0}")]
    NoPreviousColor(String),
    #[error("{0}")]
    VerifyFailed(String),
    /// A migration's SQL failed; its transaction rolled back.
    #[error("{0}")]
    MigrationFailed(String),
    /// A permission the deployment needs is missing (RBAC).
    #[error("{0}")]
    Forbidden(String),
    /// The environment's circuit breaker blocks deployments.
    #[error("{0}")]
    BreakerOpen(String),
    /// Network errors, 5xx answers: worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

impl Failure {
    pub fn type_name(&self) -> &'static str {
        match self {
            Failure::InvalidInput(_) => failures::INVALID_INPUT,
            Failure::Conflict(_) => failures::CONFLICT,
            Failure::NotReady(_) => failures::NOT_READY,
            Failure::UnsupportedPlatform(_) => failures::UNSUPPORTED_PLATFORM,
            Failure::NoPreviousColor(_) => failures::NO_PREVIOUS_COLOR,
            Failure::VerifyFailed(_) => failures::VERIFY_FAILED,
            Failure::Forbidden(_) => failures::FORBIDDEN,
            Failure::MigrationFailed(_) => failures::MIGRATION_FAILED,
            Failure::BreakerOpen(_) => failures::BREAKER_OPEN,
            Failure::Unavailable(_) => failures::PLATFORM_UNAVAILABLE,
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(self, Failure::Unavailable(_))
    }
}

impl Failure {
    /// The one place a failure becomes an activity error. (A bare `?` would go through
    /// `anyhow` and arrive as a retryable failure without a type name.)
    pub fn into_activity_error(self) -> ActivityError {
        let f = self;
        let retryable = f.retryable();
        let type_name = f.type_name().to_owned();
        ActivityError::application(
            ApplicationFailure::builder(f.to_string())
                .type_name(type_name)
                .non_retryable(!retryable)
                .build(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_retryable_kind_is_listed_in_the_retry_policies() {
        let kinds = [
            Failure::InvalidInput(String::new()),
            Failure::Conflict(String::new()),
            Failure::NotReady(String::new()),
            Failure::UnsupportedPlatform(String::new()),
            Failure::NoPreviousColor(String::new()),
            Failure::VerifyFailed(String::new()),
            Failure::Forbidden(String::new()),
            Failure::MigrationFailed(String::new()),
            Failure::BreakerOpen(String::new()),
            Failure::Unavailable(String::new()),
        ];
        for k in kinds {
            assert_eq!(
                failures::NON_RETRYABLE.contains(&k.type_name()),
                !k.retryable(),
                "{}",
                k.type_name()
            );
        }
    }
}
