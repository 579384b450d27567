//! The Migrate workflow: database migrations as a durable phase of a release.
//!
//! preflight (connect, current version, pending set, checksums of applied files, no session
//! that would block the locks) → safety check (unsafe fails the run) → verified backup
//! (pg_dump to S3) → each migration in its own transaction, exactly once → verify. On any
//! failure nothing is left half-applied: the files applied by this run are reverted with their
//! down files (newest first), or the database is restored from the backup, as configured.
//!
//! `phase` selects the files: `expand` (not marked contract), `contract`, or `all`. With
//! `phase = "rollback"` the run reverts every applied file newer than `target_version`.

use crate::activities::CutoverActivities as Act;
use crate::failures;
use crate::names;
use crate::options;
use crate::time::rfc3339;
use proto::{ApplyRequest, MigratePlan, MigrateRequest, MigrateStatus, RestoreRequest};
use std::time::{Duration, UNIX_EPOCH};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ApplicationFailure, WorkflowContext, WorkflowContextView, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct MigrateWorkflow {
    status: MigrateStatus,
}

fn failed(reason: String) -> temporalio_sdk::WorkflowTermination {
    ApplicationFailure::builder(reason)
        .type_name(failures::MIGRATION_RUN_FAILED.to_owned())
        .non_retryable(true)
        .build()
        .into()
}

use crate::failures::innermost as why;

impl MigrateWorkflow {
    fn event(ctx: &WorkflowContext<Self>, text: String) {
        let at = rfc3339(ctx.workflow_time().unwrap_or(UNIX_EPOCH));
        ctx.set_current_details(text.clone());
        ctx.state_mut(|s| s.status.events.push(format!("{at} {text}")));
    }

    fn step(ctx: &WorkflowContext<Self>, step: &str) {
        ctx.state_mut(|s| s.status.step = step.to_owned());
    }

    async fn notify(ctx: &WorkflowContext<Self>, req: &MigrateRequest, event: &str, text: String) {
        let (env, id) = (&req.environment, &req.deployment_id);
        crate::release::journal::announce(ctx, env, id, event, text).await;
    }

    /// Reverts one applied file with its down file: whether it was applied (and is now
    /// reverted), or why not.
    async fn revert(
        ctx: &WorkflowContext<Self>,
        req: &MigrateRequest,
        v: i64,
    ) -> Result<bool, String> {
        let r = ApplyRequest {
            migrate: Some(req.clone()),
            version: v,
        };
        ctx.execute_activity(
            Act::revert_migration,
            r,
            options::migration(Self::statement_timeout(req)),
        )
        .await
        .map_err(|e| why(&e))
    }

    fn statement_timeout(req: &MigrateRequest) -> Duration {
        Duration::from_millis(req.statement_timeout_ms.max(1000))
    }

    /// Undoes what this run applied: down files newest first, or a restore from the backup.
    async fn recover(
        ctx: &WorkflowContext<Self>,
        req: &MigrateRequest,
        reason: String,
    ) -> WorkflowResult<MigrateStatus> {
        let applied: Vec<i64> = ctx.state(|s| s.status.applied.clone());
        let backup_key = ctx.state(|s| s.status.backup.as_ref().map(|b| b.key.clone()));
        Self::event(ctx, format!("failed: {reason}"));
        let outcome = if req.on_failure == "restore" && backup_key.is_some() {
            Self::step(ctx, "restoring");
            let key = backup_key.unwrap_or_default();
            Self::event(ctx, format!("restoring the database from {key}"));
            ctx.execute_activity(
                Act::restore_database,
                RestoreRequest {
                    migrate: Some(req.clone()),
                    key,
                },
                options::migration(Self::statement_timeout(req)),
            )
            .await
            .map_err(|e| failed(format!("{reason}; and the restore failed: {}", why(&e))))?;
            "restored"
        } else {
            Self::step(ctx, "reverting");
            for v in applied.iter().rev() {
                let r = Self::revert(ctx, req, *v)
                    .await
                    .map_err(|e| failed(format!("{reason}; and reverting {v} failed: {e}")))?;
                if r {
                    ctx.state_mut(|s| s.status.reverted.push(*v));
                    Self::event(ctx, format!("reverted {v}"));
                }
            }
            "reverted"
        };
        ctx.state_mut(|s| {
            s.status.step = "done".into();
            s.status.outcome = outcome.into();
            s.status.reason = reason.clone();
        });
        Self::notify(
            ctx,
            req,
            "migration_failed",
            format!(
                "migration of {} failed and was {outcome}: {reason}",
                req.environment
            ),
        )
        .await;
        Err(failed(format!(
            "migration failed and was {outcome}: {reason}"
        )))
    }
}

/// The steps of a run, in order; each fails the run or hands its reason to `recover`.
impl MigrateWorkflow {
    /// Current version, pending set, checksums of applied files, no blocking session.
    async fn preflight(
        ctx: &WorkflowContext<Self>,
        req: &MigrateRequest,
    ) -> WorkflowResult<MigratePlan> {
        Self::step(ctx, "preflight");
        let plan = ctx
            .execute_activity(Act::migrate_plan, req.clone(), options::database_call())
            .await
            .map_err(|e| failed(format!("preflight: {}", why(&e))))?;
        ctx.state_mut(|s| {
            s.status.current_version = plan.current_version;
            s.status.pending = plan.pending.clone();
        });
        if !plan.blockers.is_empty() {
            return Err(failed(format!(
                "sessions would block the migration locks: {}",
                plan.blockers.join("; ")
            )));
        }
        Ok(plan)
    }

    /// `phase = "rollback"`: every applied file newer than the target, newest first.
    async fn revert_to(
        ctx: &WorkflowContext<Self>,
        req: &MigrateRequest,
        plan: &MigratePlan,
    ) -> WorkflowResult<MigrateStatus> {
        Self::step(ctx, "reverting");
        let to_revert: Vec<i64> = plan
            .applied
            .iter()
            .copied()
            .filter(|v| *v > req.target_version)
            .rev()
            .collect();
        for v in &to_revert {
            Self::revert(ctx, req, *v)
                .await
                .map_err(|e| failed(format!("reverting {v}: {e}")))?;
            ctx.state_mut(|s| s.status.reverted.push(*v));
            Self::event(ctx, format!("reverted {v}"));
        }
        let kept = plan
            .applied
            .iter()
            .copied()
            .filter(|v| *v <= req.target_version);
        let current = kept.max().unwrap_or(0);
        ctx.state_mut(|s| {
            s.status.step = "done".into();
            s.status.outcome = "reverted".into();
            s.status.current_version = current;
        });
        Ok(ctx.state(|s| s.status.clone()))
    }

    /// The safety check: unsafe files fail the run before anything changes.
    async fn check(ctx: &WorkflowContext<Self>, req: &MigrateRequest) -> WorkflowResult<()> {
        Self::step(ctx, "check");
        let check = ctx
            .execute_activity(Act::migrate_check, req.clone(), options::database_call())
            .await
            .map_err(|e| failed(format!("safety check: {}", why(&e))))?;
        ctx.state_mut(|s| s.status.check = check.text.clone());
        if check.ok {
            return Ok(());
        }
        ctx.state_mut(|s| {
            s.status.step = "done".into();
            s.status.outcome = "failed".into();
            s.status.reason = format!("{} blocking findings", check.blocking);
        });
        Err(failed(format!(
            "the safety check refused the migrations ({} blocking findings):\n{}",
            check.blocking, check.text
        )))
    }

    /// A verified backup (pg_dump to S3) before the first statement.
    async fn backup(ctx: &WorkflowContext<Self>, req: &MigrateRequest) -> WorkflowResult<()> {
        Self::step(ctx, "backup");
        let backup = ctx
            .execute_activity(Act::backup_database, req.clone(), options::backup())
            .await
            .map_err(|e| failed(format!("backup: {}", why(&e))))?;
        Self::event(
            ctx,
            format!(
                "backup {} ({} bytes, sha256 {}, {} parts{})",
                backup.key,
                backup.size,
                &backup.sha256[..12.min(backup.sha256.len())],
                backup.parts,
                if backup.resumed { ", resumed" } else { "" }
            ),
        );
        ctx.state_mut(|s| s.status.backup = Some(backup));
        Ok(())
    }

    /// Each pending migration in its own transaction, exactly once. Err: why (to recover).
    async fn apply(
        ctx: &WorkflowContext<Self>,
        req: &MigrateRequest,
        pending: &[i64],
    ) -> Result<(), String> {
        Self::step(ctx, "apply");
        for v in pending {
            let r = ctx
                .execute_activity(
                    Act::apply_migration,
                    ApplyRequest {
                        migrate: Some(req.clone()),
                        version: *v,
                    },
                    options::migration(Self::statement_timeout(req)),
                )
                .await
                .map_err(|e| format!("{v}: {}", why(&e)))?;
            ctx.state_mut(|s| {
                s.status.applied.push(*v);
                s.status.current_version = *v;
            });
            Self::event(
                ctx,
                if r.already_applied {
                    format!("{v} was already applied by an earlier attempt")
                } else {
                    format!("applied {v} in {} ms", r.duration_ms)
                },
            );
        }
        Ok(())
    }

    /// The database as the files say it should be. Err: why (to recover).
    async fn verify(ctx: &WorkflowContext<Self>, req: &MigrateRequest) -> Result<(), String> {
        Self::step(ctx, "verify");
        let v = ctx
            .execute_activity(
                Act::verify_migrations,
                req.clone(),
                options::database_call(),
            )
            .await
            .map_err(|e| format!("verify: {}", why(&e)))?;
        if !v.problems.is_empty() {
            return Err(format!("verify: {}", v.problems.join("; ")));
        }
        for n in v.notes {
            Self::event(ctx, n);
        }
        ctx.state_mut(|s| s.status.current_version = v.current_version);
        Ok(())
    }
}

#[workflow_methods]
impl MigrateWorkflow {
    #[run(name = names::MIGRATE_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        req: MigrateRequest,
    ) -> WorkflowResult<MigrateStatus> {
        // Patch `worker-authority`: the database, the bucket and the files' markers as the
        // worker's configuration and the SQL say.
        let req = if ctx.patched(crate::release::authority::WORKER_AUTHORITY) {
            let ask = proto::AuthorizeRequest {
                migrate: Some(req),
                workflow_id: ctx.workflow_id().to_owned(),
                ..Default::default()
            };
            ctx.execute_activity(Act::authorize_release, ask, options::authorize())
                .await
                .map_err(|e| failed(format!("refused by the worker: {}", why(&e))))?
                .migrate
                .unwrap_or_default()
        } else {
            req
        };
        ctx.state_mut(|s| {
            s.status.environment = req.environment.clone();
            s.status.deployment_id = req.deployment_id.clone();
            s.status.phase = req.phase.clone();
        });
        let plan = Self::preflight(ctx, &req).await?;
        if req.phase == "rollback" {
            return Self::revert_to(ctx, &req, &plan).await;
        }
        if plan.pending.is_empty() {
            Self::event(ctx, format!("nothing to apply in the {} phase", req.phase));
            ctx.state_mut(|s| {
                s.status.step = "done".into();
                s.status.outcome = "nothing_to_do".into();
            });
            return Ok(ctx.state(|s| s.status.clone()));
        }
        Self::check(ctx, &req).await?;
        Self::backup(ctx, &req).await?;
        let done = match Self::apply(ctx, &req, &plan.pending).await {
            Ok(()) => Self::verify(ctx, &req).await,
            Err(reason) => Err(reason),
        };
        if let Err(reason) = done {
            return Self::recover(ctx, &req, reason).await;
        }
        ctx.state_mut(|s| {
            s.status.step = "done".into();
            s.status.outcome = "succeeded".into();
        });
        let applied = ctx.state(|s| s.status.applied.clone());
        let text = format!(
            "{} phase of {} applied {:?} on {}",
            req.phase, req.deployment_id, applied, req.environment
        );
        Self::notify(ctx, &req, "migrated", text).await;
        Ok(ctx.state(|s| s.status.clone()))
    }

    #[query(name = names::STATUS_QUERY)]
    pub fn status(&self, _ctx: &WorkflowContextView) -> MigrateStatus {
        self.status.clone()
    }
}
