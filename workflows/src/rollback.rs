//! The Rollback workflow: capacity first, then traffic.
//!
//! Brings the previous colour to full size and ready, then moves every service back in reverse
//! dependency order, verifies, and notifies. Used by Deploy, and callable on its own.

use crate::activities::CutoverActivities as Act;
use crate::failures;
use crate::names;
use crate::options;
use crate::time::rfc3339;
use proto::{ColorRequest, RollbackRequest, RollbackResult, SwitchRequest};
use std::time::{Duration, UNIX_EPOCH};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ApplicationFailure, WorkflowContext, WorkflowContextView, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct RollbackWorkflow {
    progress: Vec<String>,
}

fn failed(reason: String) -> temporalio_sdk::WorkflowTermination {
    ApplicationFailure::builder(reason)
        .type_name(failures::ROLLBACK_FAILED.to_owned())
        .non_retryable(true)
        .build()
        .into()
}

impl RollbackWorkflow {
    /// The previous colour at full size and ready before traffic returns.
    async fn capacity_first(
        ctx: &WorkflowContext<Self>,
        req: &RollbackRequest,
        to: &str,
    ) -> WorkflowResult<()> {
        let colour = ColorRequest {
            platform: req.platform.clone(),
            color: to.to_owned(),
            services: req.services.clone(),
            warm_size: false,
            stop: false,
            timeout_secs: req.ready_timeout_secs.max(1),
        };
        let timeout = Duration::from_secs(colour.timeout_secs);
        ctx.execute_activity(
            Act::scale_color,
            colour.clone(),
            options::start_instances(timeout),
        )
        .await
        .map_err(|e| failed(format!("cannot bring {to} to full size: {e}")))?;
        ctx.execute_activity(Act::wait_ready, colour, options::long_wait(timeout))
            .await
            .map_err(|e| failed(format!("{to} is not ready: {e}")))?;
        Self::note(ctx, format!("{to} ready at full size"));
        Ok(())
    }

    /// Then traffic, in reverse dependency order, verified: the order and what moved.
    async fn traffic_back(
        ctx: &WorkflowContext<Self>,
        req: &RollbackRequest,
        to: &str,
    ) -> WorkflowResult<(Vec<String>, Vec<String>)> {
        let order: Vec<String> = req.services.iter().rev().map(|s| s.name.clone()).collect();
        let switch = SwitchRequest {
            platform: req.platform.clone(),
            color: to.to_owned(),
            services: order.clone(),
            atomic: false,
            request_id: format!("{}/{}/rollback", ctx.workflow_id(), ctx.run_id()),
            environment: req.environment.clone(),
        };
        let moved = ctx
            .execute_activity(Act::switch_traffic, switch.clone(), options::traffic_move())
            .await
            .map_err(|e| failed(format!("cannot move traffic to {to}: {e}")))?;
        ctx.execute_activity(Act::verify_active, switch, options::platform_call())
            .await
            .map_err(|e| failed(format!("traffic is not on {to}: {e}")))?;
        Ok((order, moved.changed))
    }

    fn note(ctx: &WorkflowContext<Self>, text: String) {
        let at = rfc3339(ctx.workflow_time().unwrap_or(UNIX_EPOCH));
        ctx.set_current_details(text.clone());
        ctx.state_mut(|s| s.progress.push(format!("{at} {text}")));
    }

    async fn notify(ctx: &WorkflowContext<Self>, req: &RollbackRequest, event: &str, text: String) {
        let (env, id) = (&req.environment, &req.deployment_id);
        crate::release::journal::announce(ctx, env, id, event, text).await;
    }
}

#[workflow_methods]
impl RollbackWorkflow {
    #[run(name = names::ROLLBACK_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        req: RollbackRequest,
    ) -> WorkflowResult<RollbackResult> {
        let begun = ctx.workflow_time().unwrap_or(UNIX_EPOCH);
        // Patch `worker-authority`: the platform and services from the worker's configuration.
        let req = if ctx.patched(crate::release::authority::WORKER_AUTHORITY) {
            let ask = proto::AuthorizeRequest {
                rollback: Some(req),
                workflow_id: ctx.workflow_id().to_owned(),
                ..Default::default()
            };
            ctx.execute_activity(Act::authorize_release, ask, options::authorize())
                .await
                .map_err(|e| failed(format!("refused by the worker: {e}")))?
                .rollback
                .unwrap_or_default()
        } else {
            req
        };
        let to = if req.to_color.is_empty() {
            let active = ctx
                .execute_activity(Act::read_active, req.clone(), options::platform_call())
                .await
                .map_err(|e| failed(format!("cannot read the live colour: {e}")))?;
            active.target_color
        } else {
            req.to_color.clone()
        };
        Self::note(
            ctx,
            format!("rolling back {} to {to}: {}", req.environment, req.reason),
        );
        Self::notify(
            ctx,
            &req,
            "rollback_started",
            format!(
                "rollback of {} to {to} started by {}: {}",
                req.environment, req.requested_by, req.reason
            ),
        )
        .await;

        Self::capacity_first(ctx, &req, &to).await?;
        let (order, moved) = Self::traffic_back(ctx, &req, &to).await?;
        let revert_ms = ctx
            .workflow_time()
            .unwrap_or(UNIX_EPOCH)
            .duration_since(begun)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0;
        Self::note(ctx, format!("all services on {to} ({})", order.join(", ")));
        Self::notify(
            ctx,
            &req,
            "rolled_back",
            format!("{} rolled back to {to}: {}", req.environment, req.reason),
        )
        .await;
        Ok(RollbackResult {
            color: to,
            moved,
            revert_ms,
        })
    }

    #[query(name = names::STATUS_QUERY)]
    pub fn status(&self, _ctx: &WorkflowContextView) -> Vec<String> {
        self.progress.clone()
    }
}
