//! The phases of a blue-green release, in runbook order. Each returns `Err(Stop)` to end the
//! release; what the stop undoes is decided in [`super::end`].

use super::DeployWorkflow;
use crate::activities::CutoverActivities as Act;
use crate::failures::innermost as why;
use crate::options;
use crate::release::journal::{enter, event, notify, now, superseded};
use crate::release::{Event, Outcome, Phase, Stop, Undo, approval, colour};
use crate::time::rfc3339;
use futures::FutureExt;
use proto::{ColorRequest, MetricsSnapshot, WindowCheckRequest};
use std::time::Duration;
use temporalio_sdk::WorkflowContext;

impl DeployWorkflow {
    /// Announces the release and reads which colour is live (the platform is the truth). The
    /// colour this release goes to.
    pub(super) async fn preflight(ctx: &WorkflowContext<Self>) -> Result<String, Stop> {
        enter(ctx, Phase::Preflight);
        let req = ctx.state(|s| s.request.clone());
        let text = format!(
            "{} started: {} to {} (requested by {})",
            req.deployment_id, req.revision, req.environment, req.requested_by
        );
        notify(ctx, "started", text).await;
        let pre = ctx
            .execute_activity(Act::preflight, req.clone(), options::platform_call())
            .await
            .map_err(|e| {
                let reason = format!("preflight failed: {}", why(&e));
                Stop::failed(Undo::Nothing, reason, now(ctx))
            })?;
        let (previous, target) = (pre.active_color, pre.target_color);
        ctx.state_mut(|s| {
            s.status.target_color = target.clone();
            s.previous = previous.clone();
        });
        Self::set_services(ctx, "pending", Some(&previous));
        event(
            ctx,
            Event::Releasing {
                live: &previous,
                revision: &req.revision,
                target: &target,
            },
        );
        Ok(target)
    }

    /// Expand migrations before the new colour starts (safe for the live version). A failed run
    /// is reverted by the Migrate workflow itself; nothing else has changed yet. Whether the
    /// release runs migrations (patch `migrations-v1`).
    pub(super) async fn expand(ctx: &WorkflowContext<Self>) -> Result<bool, Stop> {
        let migrations = ctx.patched("migrations-v1") && ctx.state(|s| s.request.migrate.is_some());
        if !migrations {
            return Ok(false);
        }
        enter(ctx, Phase::Migrating);
        match colour::migrate_phase(ctx, "expand").await {
            Ok(summary) => {
                if let Some(summary) = summary {
                    ctx.state_mut(|s| s.status.migrations = summary);
                }
                Ok(true)
            }
            Err(e) => {
                ctx.state_mut(|s| s.status.migrations = format!("expand failed: {e}"));
                let reason =
                    format!("expand migrations failed (reverted; nothing else changed): {e}");
                Err(Stop::failed(Undo::Nothing, reason, now(ctx)))
            }
        }
    }

    /// The target colour at full size, every instance ready.
    pub(super) async fn start_target(
        ctx: &WorkflowContext<Self>,
        target: &str,
    ) -> Result<(), Stop> {
        enter(ctx, Phase::Starting);
        Self::set_services(ctx, "starting", None);
        let colour = ctx.state(|s| Self::color_request(&s.request, target));
        let started = colour::start_and_wait_ready(ctx, colour).await;
        started.map_err(|e| {
            Stop::failed(
                Undo::StopTarget,
                format!("{target} did not start: {e}"),
                now(ctx),
            )
        })?;
        Self::set_services(ctx, "ready", None);
        Ok(())
    }

    /// Smoke and performance checks against the target colour, before it takes traffic.
    pub(super) async fn check_target(
        ctx: &WorkflowContext<Self>,
        target: &str,
    ) -> Result<(), Stop> {
        enter(ctx, Phase::Checking);
        let check = ctx.state(|s| s.check_request(target));
        colour::checks_before_traffic(ctx, &check, Undo::StopTarget).await
    }

    /// Where the environment requires it: a decision, a rejection, a stop, or the timeout.
    pub(super) async fn approval_gate(ctx: &WorkflowContext<Self>) -> Result<(), Stop> {
        let req = ctx.state(|s| s.request.clone());
        if !req.approval.as_ref().is_some_and(|a| a.required) {
            return Ok(());
        }
        approval::ask(ctx, &format!("{} to {}", req.revision, req.environment)).await;
        let secs = req
            .timings
            .as_ref()
            .map_or(86_400, |t| t.approval_timeout_secs);
        let timeout = Duration::from_secs(secs.max(1));
        approval::gate(ctx, Some(timeout), Undo::StopTarget).await?;
        Ok(())
    }

    /// The circuit breaker holds the switch while it blocks (rolling back is never held).
    pub(super) async fn breaker_gate(ctx: &WorkflowContext<Self>) -> Result<(), Stop> {
        if !ctx.state(|s| s.control.held()) {
            return Ok(());
        }
        enter(ctx, Phase::Held);
        let _ = ctx
            .wait_condition(|s| s.control.breaker.is_none() || s.control.request.is_some())
            .await;
        if let Some(r) = Self::stop_requested(ctx) {
            return Err(Stop::requested(&r, Undo::StopTarget, now(ctx)));
        }
        event(ctx, Event::BreakerClosed);
        Ok(())
    }

    /// Every service to the target in one step; the metrics read before it (the validation
    /// window's baseline).
    pub(super) async fn switch(
        ctx: &WorkflowContext<Self>,
        target: &str,
    ) -> Result<WindowCheckRequest, Stop> {
        enter(ctx, Phase::Switching);
        let req = ctx.state(|s| s.request.clone());
        let window = WindowCheckRequest {
            platform: req.platform.clone(),
            color: target.to_owned(),
            services: req.services.iter().map(|s| s.name.clone()).collect(),
            thresholds: req.thresholds,
            baseline: None,
        };
        let baseline: MetricsSnapshot = ctx
            .execute_activity(
                Act::snapshot_metrics,
                window.clone(),
                options::platform_call(),
            )
            .await
            .map_err(|e| {
                let reason = format!("could not read metrics before the switch: {}", why(&e));
                Stop::failed(Undo::StopTarget, reason, now(ctx))
            })?;
        let switch = ctx.state(|s| s.switch_request(target, "switch"));
        // The switch is one atomic step: if it failed, nothing moved, but make sure.
        let r = ctx
            .execute_activity(Act::switch_traffic, switch, options::traffic_move())
            .await
            .map_err(|e| {
                Stop::failed(
                    Undo::RollBack,
                    format!("switch failed: {}", why(&e)),
                    now(ctx),
                )
            })?;
        ctx.state_mut(|s| s.status.switch_ms = r.switch_ms);
        Self::set_services(ctx, "live", Some(target));
        event(
            ctx,
            Event::Switched {
                services: &r.changed.join(", "),
                to: target,
            },
        );
        Ok(WindowCheckRequest {
            baseline: Some(baseline),
            ..window
        })
    }

    /// Success: the old colour stays warm at reduced size for a fast rollback (a stop request
    /// rolls back; a newer release ends the period early), then retires; then the contract
    /// migrations. The reason of the success.
    pub(super) async fn keep_warm_and_retire(
        ctx: &WorkflowContext<Self>,
        target: &str,
        migrations: bool,
    ) -> Result<String, Stop> {
        enter(ctx, Phase::Warm);
        let (req, previous) = ctx.state(|s| (s.request.clone(), s.previous.clone()));
        let template = Self::color_request(&req, &previous);
        let warm = colour::request(&template, &previous, crate::release::ScaleTarget::Warm);
        if let Err(e) = ctx
            .execute_activity(Act::scale_color, warm, options::platform_call())
            .await
        {
            event(
                ctx,
                Event::NotScaled {
                    colour: &previous,
                    to: crate::release::ScaleTarget::Warm,
                    why: &why(&e),
                },
            );
        }
        let keep_warm = Duration::from_secs(req.timings.unwrap_or_default().keep_warm_secs);
        let warm_until = rfc3339(now(ctx) + keep_warm);
        ctx.state_mut(|s| {
            s.status.outcome = Outcome::Succeeded.as_str().to_owned();
            s.status.warm_until = warm_until.clone();
        });
        let text = format!(
            "{} succeeded: {} live on {target} in {}; {previous} stays warm until {warm_until}",
            req.deployment_id, req.revision, req.environment
        );
        notify(ctx, Outcome::Succeeded.as_str(), text).await;
        let interrupted = temporalio_sdk::workflows::select! {
            _ = ctx.timer(keep_warm).fuse() => false,
            _ = ctx.wait_condition(|s| s.control.warm_interrupted()).fuse() => true,
        };
        if interrupted && let Some(r) = Self::stop_requested(ctx) {
            return Err(Stop::requested(&r, Undo::RollBack, now(ctx)));
        }
        crate::release::journal::superseding(ctx);
        Self::retire(ctx, &template, &previous, migrations).await;
        let m = ctx.state(|s| s.status.migrations.clone());
        superseded(ctx, &m);
        Ok(format!("{} live on {target}", req.revision))
    }

    /// The old colour stopped; once it is gone (and its rollback window closed), the contract
    /// phase. A failed contract is reverted and announced; the release stays live.
    async fn retire(
        ctx: &WorkflowContext<Self>,
        template: &ColorRequest,
        previous: &str,
        migrations: bool,
    ) {
        let retire = colour::request(template, previous, crate::release::ScaleTarget::Stopped);
        if let Err(e) = ctx
            .execute_activity(Act::scale_color, retire, options::platform_call())
            .await
        {
            event(
                ctx,
                Event::NotRetired {
                    colour: previous,
                    why: &why(&e),
                },
            );
            return;
        }
        event(ctx, Event::Retired { colour: previous });
        if !migrations {
            return;
        }
        enter(ctx, Phase::Migrating);
        match colour::migrate_phase(ctx, "contract").await {
            Ok(Some(summary)) => ctx
                .state_mut(|s| s.status.migrations = format!("{}; {summary}", s.status.migrations)),
            Ok(None) => {}
            Err(e) => {
                event(
                    ctx,
                    Event::ContractFailed {
                        why: &e.to_string(),
                    },
                );
                ctx.state_mut(|s| {
                    s.status.migrations =
                        format!("{}; contract failed (reverted): {e}", s.status.migrations)
                });
                let id = ctx.state(|s| s.request.deployment_id.clone());
                let text = format!("{id}: contract migrations failed and were reverted: {e}");
                notify(ctx, Outcome::Failed.as_str(), text).await;
            }
        }
    }
}
