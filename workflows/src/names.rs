//! Every name that appears in a Temporal history. Renaming one breaks running deployments and
//! CI scripts: add new names instead.

pub const TASK_QUEUE: &str = "cutover";

pub const DEPLOY_WORKFLOW: &str = "Deploy";
pub const ROLLBACK_WORKFLOW: &str = "Rollback";
pub const MIGRATE_WORKFLOW: &str = "Migrate";
pub const SHIFT_WORKFLOW: &str = "GradualShift";
pub const BREAKER_WORKFLOW: &str = "Breaker";

/// Breaker: signals and updates.
pub const BREAKER_CONFIGURE_SIGNAL: &str = "configure";
pub const DEPLOYMENT_FINISHED_SIGNAL: &str = "deployment_finished";
pub const BREAKER_TRIP_UPDATE: &str = "trip";
pub const BREAKER_RESET_UPDATE: &str = "reset";
pub const BREAKER_FREEZE_UPDATE: &str = "freeze";
pub const BREAKER_OVERRIDE_UPDATE: &str = "override";
/// Sent by the breaker to the environment's running deployment (Deploy or GradualShift).
pub const BREAKER_HOLD_SIGNAL: &str = "breaker_hold";

pub const PAUSE_SIGNAL: &str = "pause";
pub const RESUME_SIGNAL: &str = "resume";
pub const PROMOTE_UPDATE: &str = "promote";

pub const APPROVE_UPDATE: &str = "approve";
pub const REJECT_UPDATE: &str = "reject";
pub const ABORT_SIGNAL: &str = "abort";
pub const ROLLBACK_SIGNAL: &str = "rollback";
/// A newer release of the environment asks the running one to end its keep-warm period now.
pub const SUPERSEDE_SIGNAL: &str = "supersede";
pub const STATUS_QUERY: &str = "status";

pub const PREFLIGHT: &str = "preflight";
pub const START_COLOR: &str = "start_color";
pub const SCALE_COLOR: &str = "scale_color";
pub const WAIT_READY: &str = "wait_ready";
pub const SMOKE_CHECKS: &str = "smoke_checks";
pub const PERF_CHECKS: &str = "perf_checks";
pub const SWITCH_TRAFFIC: &str = "switch_traffic";
pub const SNAPSHOT_METRICS: &str = "snapshot_metrics";
pub const CHECK_WINDOW: &str = "check_window";
pub const VERIFY_ACTIVE: &str = "verify_active";
pub const NOTIFY: &str = "notify";
pub const READ_ACTIVE: &str = "read_active";
pub const SET_WEIGHTS: &str = "set_weights";
pub const ANALYZE_CANARY: &str = "analyze_canary";
pub const MIGRATE_PLAN: &str = "migrate_plan";
pub const MIGRATE_CHECK: &str = "migrate_check";
pub const BACKUP_DATABASE: &str = "backup_database";
pub const APPLY_MIGRATION: &str = "apply_migration";
pub const REVERT_MIGRATION: &str = "revert_migration";
pub const VERIFY_MIGRATIONS: &str = "verify_migrations";
pub const RESTORE_DATABASE: &str = "restore_database";
pub const BREAKER_PROBE: &str = "breaker_probe";
pub const BREAKER_PUBLISH: &str = "breaker_publish";
/// The worker's own configuration decides a release's policy (patch `worker-authority`).
pub const AUTHORIZE_RELEASE: &str = "authorize_release";
pub const VERIFY_IDENTITY: &str = "verify_identity";

/// Workflow id of an environment's deployment: one at a time per environment, enforced by the
/// server with id-conflict policy Fail.
pub fn deploy_workflow_id(environment: &str) -> String {
    format!("deploy-{environment}")
}

/// Workflow id of an environment's rollback.
pub fn rollback_workflow_id(environment: &str) -> String {
    format!("rollback-{environment}")
}

/// Workflow id of an environment's migration run (one at a time per environment).
pub fn migrate_workflow_id(environment: &str) -> String {
    format!("migrate-{environment}")
}

/// Workflow id of an environment's circuit breaker (one long-running entity per environment).
pub fn breaker_workflow_id(environment: &str) -> String {
    format!("breaker-{environment}")
}
