//! How a blue-green release ends: success, or a [`Stop`] and what it undoes — nothing, the
//! target colour stopped (before the switch), or the Rollback workflow (after it).

use super::DeployWorkflow;
use crate::activities::CutoverActivities as Act;
use crate::failures::{self, innermost as why};
use crate::options;
use crate::release::journal::{
    enter, event, millis_between, notify, now, report_outcome, rolling_back,
};
use crate::release::stop::terminal;
use crate::release::{Event, Outcome, Phase, ScaleTarget, Stop, Undo, colour};
use proto::DeployStatus;
use temporalio_sdk::{WorkflowContext, WorkflowResult};

impl DeployWorkflow {
    pub(super) async fn end(
        ctx: &WorkflowContext<Self>,
        result: Result<String, Stop>,
    ) -> WorkflowResult<DeployStatus> {
        let stop = match result {
            Ok(reason) => return Self::finish(ctx, Outcome::Succeeded, "", reason).await,
            Err(stop) => stop,
        };
        match stop.undo {
            Undo::Nothing => {
                let t = stop.outcome.failure_type();
                Self::finish(ctx, stop.outcome, t, stop.reason).await
            }
            Undo::StopTarget | Undo::WeightsBack => Self::stop_target(ctx, stop).await,
            Undo::RollBack => Self::roll_back(ctx, stop).await,
            Undo::SwitchBack => Self::switch_back(ctx, stop).await,
        }
    }

    /// The outcome in the status, the notification, the breaker told (patch `release-v2`);
    /// the run's failure unless it succeeded.
    async fn finish(
        ctx: &WorkflowContext<Self>,
        outcome: Outcome,
        failure_type: &str,
        reason: String,
    ) -> WorkflowResult<DeployStatus> {
        ctx.state_mut(|s| {
            s.status.outcome = outcome.as_str().to_owned();
            s.status.reason = reason.clone();
        });
        enter(ctx, Phase::Done);
        let req = ctx.state(|s| s.request.clone());
        let text = format!(
            "{} {outcome} of {} to {}: {reason}",
            req.deployment_id, req.revision, req.environment
        );
        notify(ctx, outcome.as_str(), text).await;
        report_outcome(ctx, outcome, &reason).await;
        if outcome == Outcome::Succeeded {
            Ok(ctx.state(|s| s.status.clone()))
        } else {
            Err(terminal(reason, failure_type))
        }
    }

    /// Before the switch nothing has moved: stop the target colour and end.
    async fn stop_target(ctx: &WorkflowContext<Self>, stop: Stop) -> WorkflowResult<DeployStatus> {
        let (req, target) = ctx.state(|s| (s.request.clone(), s.status.target_color.clone()));
        let template = Self::color_request(&req, &target);
        let r = colour::request(&template, &target, ScaleTarget::Stopped);
        if let Err(e) = ctx
            .execute_activity(Act::scale_color, r, options::platform_call())
            .await
        {
            event(
                ctx,
                Event::NotScaled {
                    colour: &target,
                    to: ScaleTarget::Stopped,
                    why: &why(&e),
                },
            );
        }
        Self::set_services(ctx, "reverted", None);
        let t = stop.outcome.failure_type();
        Self::finish(ctx, stop.outcome, t, stop.reason).await
    }

    /// During the validation window the previous colour still runs at full size and served
    /// until the switch: every service moves back to it in one switch, then the platform is
    /// verified. A switch back that fails falls back to the Rollback workflow (capacity first).
    async fn switch_back(ctx: &WorkflowContext<Self>, stop: Stop) -> WorkflowResult<DeployStatus> {
        let previous = ctx.state(|s| s.previous.clone());
        rolling_back(ctx, &previous, &stop.reason);
        let switch = ctx.state(|s| s.switch_request(&previous, "switch/rollback"));
        let moved = ctx
            .execute_activity(Act::switch_traffic, switch.clone(), options::traffic_move())
            .await;
        let revert_ms = millis_between(stop.at, now(ctx));
        let verified = match moved {
            Ok(_) => ctx
                .execute_activity(Act::verify_active, switch, options::platform_call())
                .await
                .map_err(|e| why(&e)),
            Err(e) => Err(why(&e)),
        };
        if let Err(e) = verified {
            event(
                ctx,
                Event::SwitchBackFailed {
                    to: &previous,
                    why: &e,
                },
            );
            return Self::roll_back(ctx, stop).await;
        }
        ctx.state_mut(|s| s.status.revert_ms = revert_ms);
        event(
            ctx,
            Event::AllBack {
                to: &previous,
                revert_ms,
            },
        );
        Self::set_services(ctx, "reverted", Some(&previous));
        let t = stop.outcome.failure_type();
        Self::finish(ctx, stop.outcome, t, stop.reason).await
    }

    /// After the switch: every service goes back to the previous colour through the Rollback
    /// workflow (capacity first, then one switch, verified).
    async fn roll_back(ctx: &WorkflowContext<Self>, stop: Stop) -> WorkflowResult<DeployStatus> {
        // A rollback from the warm period: the success it had is over.
        ctx.state_mut(|s| s.status.outcome.clear());
        let (req, previous) = ctx.state(|s| (s.request.clone(), s.previous.clone()));
        rolling_back(ctx, &previous, &stop.reason);
        let template = Self::color_request(&req, &previous);
        match colour::roll_back(ctx, &template, &previous, &stop.reason).await {
            Ok(color) => {
                let revert_ms = millis_between(stop.at, now(ctx));
                ctx.state_mut(|s| s.status.revert_ms = revert_ms);
                Self::set_services(ctx, "reverted", Some(&color));
                let t = stop.outcome.failure_type();
                Self::finish(ctx, stop.outcome, t, stop.reason).await
            }
            Err(e) => {
                Self::set_services(ctx, "failed", None);
                let reason = format!("{}; and the rollback failed: {e}", stop.reason);
                Self::finish(ctx, Outcome::Failed, failures::ROLLBACK_FAILED, reason).await
            }
        }
    }
}
