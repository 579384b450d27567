//! How a canary ends: one place that looks at what a [`Stop`] must undo and does it.

use super::ShiftWorkflow;
use crate::activities::CutoverActivities as Act;
use crate::failures::{self, innermost as why};
use crate::options;
use crate::release::journal::{
    enter, event, millis_between, notify, now, report_outcome, rolling_back,
};
use crate::release::stop::terminal;
use crate::release::{Event, Outcome, Phase, ScaleTarget, Stop, Undo, colour};
use proto::ShiftStatus;
use std::time::Duration;
use temporalio_sdk::{WorkflowContext, WorkflowResult};

impl ShiftWorkflow {
    pub(super) async fn end(
        ctx: &WorkflowContext<Self>,
        result: Result<(), Stop>,
    ) -> WorkflowResult<ShiftStatus> {
        let stop = match result {
            Ok(()) => {
                enter(ctx, Phase::Done);
                return Ok(ctx.state(|s| s.status.clone()));
            }
            Err(stop) => stop,
        };
        let (stable, canary) = Self::colours(ctx);
        match stop.undo {
            // A failed preflight of a run recorded before `release-v2` ended right there.
            Undo::Nothing if !Self::v2(ctx) => {
                return Err(terminal(stop.reason, stop.outcome.failure_type()));
            }
            Undo::Nothing => {}
            Undo::StopTarget => Self::scale(ctx, &canary, ScaleTarget::Stopped).await,
            Undo::WeightsBack => return Self::weights_back(ctx, &stable, &canary, stop).await,
            Undo::RollBack | Undo::SwitchBack => {
                return Self::roll_back_promoted(ctx, &stable, stop).await;
            }
        }
        let kind = stop.outcome.as_str();
        Self::finish_stop(ctx, stop, kind).await
    }

    /// `finish` with the stop's outcome and its failure type; `kind`: the notification's event.
    async fn finish_stop(
        ctx: &WorkflowContext<Self>,
        stop: Stop,
        kind: &str,
    ) -> WorkflowResult<ShiftStatus> {
        let t = stop.outcome.failure_type();
        Self::finish(ctx, stop.outcome, stop.reason, kind, t).await
    }

    /// The outcome in the status, the notification, the breaker told; the run's failure.
    async fn finish(
        ctx: &WorkflowContext<Self>,
        outcome: Outcome,
        reason: String,
        kind: &str,
        failure_type: &str,
    ) -> WorkflowResult<ShiftStatus> {
        ctx.state_mut(|s| {
            s.status.outcome = outcome.as_str().to_owned();
            s.status.reason = reason.clone();
        });
        enter(ctx, Phase::Done);
        let id = ctx.state(|s| s.request.deployment_id.clone());
        let text = if kind == Outcome::RolledBack.as_str() {
            format!("{id} canary rolled back: {reason}")
        } else {
            format!("{id} canary {outcome}: {reason}")
        };
        notify(ctx, kind, text).await;
        report_outcome(ctx, outcome, &reason).await;
        Err(terminal(
            format!("canary {outcome}: {reason}"),
            failure_type,
        ))
    }

    /// Every service is back on `color`: the revert time, measured from when the stop was seen.
    fn reverted(ctx: &WorkflowContext<Self>, color: &str, stop: &Stop) {
        let revert = millis_between(stop.at, now(ctx)).round();
        ctx.state_mut(|s| {
            s.status.percent = 0;
            s.status.revert_ms = revert;
        });
        event(
            ctx,
            Event::AllBack {
                to: color,
                revert_ms: revert,
            },
        );
    }

    /// Weights moved: stable capacity first, then every weight back to stable together,
    /// verified; the canary colour stopped.
    async fn weights_back(
        ctx: &WorkflowContext<Self>,
        stable: &str,
        canary: &str,
        stop: Stop,
    ) -> WorkflowResult<ShiftStatus> {
        rolling_back(ctx, stable, &stop.reason);
        let req = ctx.state(|s| s.request.clone());
        let capacity = Self::colour(ctx, stable, ScaleTarget::Full);
        let ready_timeout = Duration::from_secs(capacity.timeout_secs);
        let mut problems = Vec::new();
        if let Err(e) = ctx
            .execute_activity(Act::scale_color, capacity.clone(), options::platform_call())
            .await
        {
            problems.push(format!("stable capacity: {}", why(&e)));
        } else if let Err(e) = ctx
            .execute_activity(Act::wait_ready, capacity, options::long_wait(ready_timeout))
            .await
        {
            problems.push(format!("stable not ready: {}", why(&e)));
        }
        let id = format!("{}/weights/rollback", req.deployment_id);
        let back = super::steps::weights(&req, stable, canary, 0, id);
        match ctx
            .execute_activity(Act::set_weights, back, options::traffic_move())
            .await
        {
            Ok(_) => Self::reverted(ctx, stable, &stop),
            Err(e) => problems.push(format!("weights back to {stable}: {}", why(&e))),
        }
        Self::scale(ctx, canary, ScaleTarget::Stopped).await;
        let (outcome, reason) = if problems.is_empty() {
            (stop.outcome, stop.reason)
        } else {
            let p = problems.join("; ");
            (
                Outcome::Failed,
                format!("{}; rollback problems: {p}", stop.reason),
            )
        };
        let kind = Outcome::RolledBack.as_str();
        Self::finish(ctx, outcome, reason, kind, outcome.failure_type()).await
    }

    /// After promotion (the warm period): the Rollback workflow brings the stable colour back
    /// to full size, then moves every service back to it.
    async fn roll_back_promoted(
        ctx: &WorkflowContext<Self>,
        stable: &str,
        stop: Stop,
    ) -> WorkflowResult<ShiftStatus> {
        ctx.state_mut(|s| s.status.outcome.clear());
        rolling_back(ctx, stable, &stop.reason);
        let template = Self::colour(ctx, stable, ScaleTarget::Full);
        match colour::roll_back(ctx, &template, stable, &stop.reason).await {
            Ok(color) => {
                Self::reverted(ctx, &color, &stop);
                Self::finish_stop(ctx, stop, Outcome::RolledBack.as_str()).await
            }
            Err(e) => {
                let reason = format!("{}; and the rollback failed: {e}", stop.reason);
                let kind = Outcome::Failed.as_str();
                Self::finish(
                    ctx,
                    Outcome::Failed,
                    reason,
                    kind,
                    failures::ROLLBACK_FAILED,
                )
                .await
            }
        }
    }
}
