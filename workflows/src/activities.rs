//! The activities the workflows call. Declared here without bodies; the `activities` crate
//! implements each under the same pinned name and the worker registers that implementation.
#![allow(clippy::unimplemented)]

use crate::names;
use proto::{
    AnalysisRequest, AnalysisResult, ApplyRequest, ApplyResult, AuthorizeRequest,
    AuthorizedRelease, BackupResult, BreakerProbe, BreakerRequest, BreakerStatus, CheckReport,
    CheckRequest, CheckSummary, ColorRequest, DeployRequest, IdentityRequest, IdentityVerdict,
    MetricsSnapshot, MigratePlan, MigrateRequest, Notification, PreflightResult, RestoreRequest,
    RollbackRequest, SwitchRequest, SwitchResult, VerifyReport, WeightsRequest, WeightsResult,
    WindowCheckRequest,
};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

pub struct CutoverActivities;

#[activity_definitions]
impl CutoverActivities {
    /// Platform reachable, services known; reads which colour is live (the platform is the truth).
    #[activity(name = names::PREFLIGHT)]
    pub fn preflight(_: DeployRequest) -> Result<PreflightResult, ActivityError> {
        unimplemented!()
    }

    /// Runs each service's release version on a colour at full size.
    #[activity(name = names::START_COLOR)]
    pub fn start_color(_: ColorRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Resizes a colour keeping its version: full, warm or stopped.
    #[activity(name = names::SCALE_COLOR)]
    pub fn scale_color(_: ColorRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Waits, heartbeating, until every instance of the colour is ready.
    #[activity(name = names::WAIT_READY)]
    pub fn wait_ready(_: ColorRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    #[activity(name = names::SMOKE_CHECKS)]
    pub fn smoke_checks(_: CheckRequest) -> Result<CheckReport, ActivityError> {
        unimplemented!()
    }

    #[activity(name = names::PERF_CHECKS)]
    pub fn perf_checks(_: CheckRequest) -> Result<CheckReport, ActivityError> {
        unimplemented!()
    }

    /// Moves services' traffic to a colour; idempotent by request id.
    #[activity(name = names::SWITCH_TRAFFIC)]
    pub fn switch_traffic(_: SwitchRequest) -> Result<SwitchResult, ActivityError> {
        unimplemented!()
    }

    #[activity(name = names::SNAPSHOT_METRICS)]
    pub fn snapshot_metrics(_: WindowCheckRequest) -> Result<MetricsSnapshot, ActivityError> {
        unimplemented!()
    }

    /// Judges live traffic on a colour since a baseline snapshot.
    #[activity(name = names::CHECK_WINDOW)]
    pub fn check_window(_: WindowCheckRequest) -> Result<CheckReport, ActivityError> {
        unimplemented!()
    }

    /// Confirms that every named service sends all traffic to the colour, with ready instances.
    #[activity(name = names::VERIFY_ACTIVE)]
    pub fn verify_active(_: SwitchRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Reads the live colour for a rollback that was not told where to go.
    #[activity(name = names::READ_ACTIVE)]
    pub fn read_active(_: RollbackRequest) -> Result<PreflightResult, ActivityError> {
        unimplemented!()
    }

    /// Sets every named service's canary weight in one step; returns what the platform holds.
    #[activity(name = names::SET_WEIGHTS)]
    pub fn set_weights(_: WeightsRequest) -> Result<WeightsResult, ActivityError> {
        unimplemented!()
    }

    /// One analysis of live canary traffic (local router counters or Prometheus).
    #[activity(name = names::ANALYZE_CANARY)]
    pub fn analyze_canary(_: AnalysisRequest) -> Result<AnalysisResult, ActivityError> {
        unimplemented!()
    }

    /// Connects to the database; current version, what this phase applies, checksums of
    /// applied files unchanged, sessions that would block the locks.
    #[activity(name = names::MIGRATE_PLAN)]
    pub fn migrate_plan(_: MigrateRequest) -> Result<MigratePlan, ActivityError> {
        unimplemented!()
    }

    /// The safety check (libpg_query) over the release's migration files.
    #[activity(name = names::MIGRATE_CHECK)]
    pub fn migrate_check(_: MigrateRequest) -> Result<CheckSummary, ActivityError> {
        unimplemented!()
    }

    /// pg_dump uploaded to S3 in parts (heartbeats carry progress so a retry resumes),
    /// verified by reading back size and checksum.
    #[activity(name = names::BACKUP_DATABASE)]
    pub fn backup_database(_: MigrateRequest) -> Result<BackupResult, ActivityError> {
        unimplemented!()
    }

    /// One migration in its own transaction, recorded in the same transaction: exactly once.
    #[activity(name = names::APPLY_MIGRATION)]
    pub fn apply_migration(_: ApplyRequest) -> Result<ApplyResult, ActivityError> {
        unimplemented!()
    }

    /// One migration's down file, and its record removed, in one transaction.
    #[activity(name = names::REVERT_MIGRATION)]
    pub fn revert_migration(_: ApplyRequest) -> Result<bool, ActivityError> {
        unimplemented!()
    }

    #[activity(name = names::VERIFY_MIGRATIONS)]
    pub fn verify_migrations(_: MigrateRequest) -> Result<VerifyReport, ActivityError> {
        unimplemented!()
    }

    /// Restores the database from a verified backup, in one transaction.
    #[activity(name = names::RESTORE_DATABASE)]
    pub fn restore_database(_: RestoreRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Posts to the Slack-compatible webhook, if one is configured. Never fails a deployment.
    #[activity(name = names::NOTIFY)]
    pub fn notify(_: Notification) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Reads the breaker's sources: firing alerts, the SLO burn rate, the freeze window now
    /// (in the environment's time zone). Sets the worker's breaker gauge.
    #[activity(name = names::BREAKER_PROBE)]
    pub fn breaker_probe(_: BreakerRequest) -> Result<BreakerProbe, ActivityError> {
        unimplemented!()
    }

    /// A breaker state change: the worker's gauge and a notification.
    #[activity(name = names::BREAKER_PUBLISH)]
    pub fn breaker_publish(_: BreakerStatus) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Checks a release against the worker's own configuration and completes it from there:
    /// policy, the requester's verified identity, the migration safety check, the digests.
    /// Implemented by the `worker` crate (it owns the configuration).
    #[activity(name = names::AUTHORIZE_RELEASE)]
    pub fn authorize_release(_: AuthorizeRequest) -> Result<AuthorizedRelease, ActivityError> {
        unimplemented!()
    }

    /// Verifies an approver's identity (sealed OIDC ID token, or an asserted name where the
    /// environment allows it) against the worker's approval policy.
    #[activity(name = names::VERIFY_IDENTITY)]
    pub fn verify_identity(_: IdentityRequest) -> Result<IdentityVerdict, ActivityError> {
        unimplemented!()
    }
}
