//! The Deploy workflow: blue-green release of all four JTS services as one unit.
//!
//! The runbook ([`DeployWorkflow::run`]): preflight → expand migrations → start the target colour
//! and wait until ready → smoke and performance checks on it (before it takes traffic) →
//! approval gate when required → the breaker's hold → switch all services in one step →
//! post-switch validation window ([`window`]) → keep the old colour warm at reduced size →
//! retire it → contract migrations. Each phase returns `Err(Stop)` to end early; [`end`]
//! undoes what the stop requires (nothing, stop the target, or the Rollback workflow).

mod end;
mod phases;
pub mod window;

use crate::names;
use crate::release::{self, Control, RELEASE_V2, Request};
use proto::{
    AbortRequest, ApprovalDecision, BreakerHold, ColorRequest, DeployRequest, DeployStatus,
    ServiceStatus,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult};

type ValidatorResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Final outcomes.
pub mod outcome {
    use crate::release::Outcome;
    pub const SUCCEEDED: &str = Outcome::Succeeded.as_str();
    pub const ROLLED_BACK: &str = Outcome::RolledBack.as_str();
    pub const FAILED: &str = Outcome::Failed.as_str();
    pub const REJECTED: &str = Outcome::Rejected.as_str();
    pub const ABORTED: &str = Outcome::Aborted.as_str();
}

#[workflow]
#[derive(Default)]
pub struct DeployWorkflow {
    request: DeployRequest,
    status: DeployStatus,
    /// The colour live before this release (where a rollback returns).
    previous: String,
    /// What the signals and updates every release answers wrote (abort, rollback, supersede,
    /// approval, breaker hold).
    control: Control,
    /// The phases entered, with their time (the worker's phase metrics).
    marks: Vec<proto::PhaseMark>,
}

crate::release::release_workflow!(DeployWorkflow, DeployStatus);

impl DeployWorkflow {
    fn begin(ctx: &WorkflowContext<Self>, req: &DeployRequest, breaker_aware: bool, v2: bool) {
        ctx.state_mut(|s| {
            s.control.breaker_aware = breaker_aware;
            s.control.v2 = v2;
            s.adopt(req);
        });
    }

    /// The request the run follows, and the status it shows: at the start, and again once the
    /// worker has completed it from its configuration (patch `worker-authority`).
    fn adopt(&mut self, req: &DeployRequest) {
        self.request = req.clone();
        let s = &mut self.status;
        s.deployment_id = req.deployment_id.clone();
        s.environment = req.environment.clone();
        s.revision = req.revision.clone();
        s.requested_by = req.requested_by.clone();
        s.approval_required = req.approval.as_ref().is_some_and(|a| a.required);
        s.services = req
            .services
            .iter()
            .map(|s| ServiceStatus {
                name: s.name.clone(),
                version: s.version.clone(),
                active_color: String::new(),
                state: "pending".to_owned(),
            })
            .collect();
    }

    /// Patch `worker-authority`: the worker checks the request against its own configuration
    /// and completes it; the run follows what the worker returned.
    async fn authorize(ctx: &WorkflowContext<Self>) -> Result<(), release::Stop> {
        let req = ctx.state(|s| s.request.clone());
        let ask = proto::AuthorizeRequest {
            deploy: Some(req),
            ..Default::default()
        };
        let a = release::authority::authorize(ctx, ask).await?;
        let (req, record) = (a.deploy.unwrap_or_default(), a.record.unwrap_or_default());
        ctx.state_mut(|s| {
            s.adopt(&req);
            s.status.requested_by = record.requester.clone();
            s.control.release = Some(record.clone());
            s.status.release = Some(record);
        });
        Ok(())
    }

    /// The runbook. Ok: the release is live (the reason of its success).
    async fn release(ctx: &WorkflowContext<Self>) -> Result<String, release::Stop> {
        let target = Self::preflight(ctx).await?;
        let migrations = Self::expand(ctx).await?;
        Self::start_target(ctx, &target).await?;
        Self::check_target(ctx, &target).await?;
        Self::approval_gate(ctx).await?;
        Self::breaker_gate(ctx).await?;
        let baseline = Self::switch(ctx, &target).await?;
        Self::validate(ctx, baseline).await?;
        Self::keep_warm_and_retire(ctx, &target, migrations).await
    }

    fn set_services(ctx: &WorkflowContext<Self>, state: &str, active: Option<&str>) {
        ctx.state_mut(|s| {
            for svc in &mut s.status.services {
                svc.state = state.to_owned();
                if let Some(c) = active {
                    svc.active_color = c.to_owned();
                }
            }
            if let Some(c) = active {
                s.status.active_color = c.to_owned();
            }
        });
    }

    fn stop_requested(ctx: &WorkflowContext<Self>) -> Option<Request> {
        ctx.state(|s| s.control.request.clone())
    }

    fn color_request(req: &DeployRequest, color: &str) -> ColorRequest {
        ColorRequest {
            platform: req.platform.clone(),
            color: color.to_owned(),
            services: req.services.clone(),
            warm_size: false,
            stop: false,
            timeout_secs: req.timings.as_ref().map_or(120, |t| t.ready_timeout_secs),
        }
    }
}

#[workflow_methods]
impl DeployWorkflow {
    #[run(name = names::DEPLOY_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        req: DeployRequest,
    ) -> WorkflowResult<DeployStatus> {
        let breaker_aware = ctx.patched("breaker-v1");
        let v2 = ctx.patched(RELEASE_V2);
        let authority = ctx.patched(release::authority::WORKER_AUTHORITY);
        Self::begin(ctx, &req, breaker_aware, v2);
        ctx.state_mut(|s| s.control.authority = authority);
        let result = match authority {
            true => match Self::authorize(ctx).await {
                Ok(()) => Self::release(ctx).await,
                Err(stop) => Err(stop),
            },
            false => Self::release(ctx).await,
        };
        Self::end(ctx, result).await
    }

    #[query(name = names::STATUS_QUERY)]
    pub fn status(&self, _ctx: &WorkflowContextView) -> DeployStatus {
        self.status.clone()
    }

    #[update_validator(approve)]
    fn validate_approve(
        &self,
        _ctx: &WorkflowContextView,
        d: &ApprovalDecision,
    ) -> ValidatorResult {
        self.validate_decision(d)
    }

    /// Approves the deployment waiting at its gate. Rejected by the validator (leaving no
    /// history) when stale, for another revision, or from someone without rights.
    #[update(name = names::APPROVE_UPDATE)]
    pub fn approve(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        d: ApprovalDecision,
    ) -> DeployStatus {
        self.decide(ctx, true, d)
    }

    #[update_validator(reject)]
    fn validate_reject(&self, _ctx: &WorkflowContextView, d: &ApprovalDecision) -> ValidatorResult {
        self.validate_decision(d)
    }

    #[update(name = names::REJECT_UPDATE)]
    pub fn reject(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        d: ApprovalDecision,
    ) -> DeployStatus {
        self.decide(ctx, false, d)
    }

    /// From the environment's circuit breaker: hold before the switch (or go on).
    #[signal(name = names::BREAKER_HOLD_SIGNAL)]
    pub fn breaker_hold(&mut self, _ctx: &mut SyncWorkflowContext<Self>, h: BreakerHold) {
        self.status.breaker_hold = if h.hold {
            h.reason.clone()
        } else {
            String::new()
        };
        self.control.on_breaker(h);
    }

    /// Stops the deployment: before the switch the target colour is stopped; after it, every
    /// service is rolled back.
    #[signal(name = names::ABORT_SIGNAL)]
    pub fn abort(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        self.control.on_abort(a);
    }

    /// A newer release of the environment: end the keep-warm period now (patch `release-v2`).
    #[signal(name = names::SUPERSEDE_SIGNAL)]
    pub fn supersede(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        if self.control.v2 {
            self.control.on_supersede(a);
        }
    }

    /// Rolls back a switched deployment (validation window or warm period).
    #[signal(name = names::ROLLBACK_SIGNAL)]
    pub fn rollback(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        self.control.on_rollback(a);
    }
}
