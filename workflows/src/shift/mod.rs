//! The GradualShift workflow: a canary of all four services together.
//!
//! The runbook ([`ShiftWorkflow::run`]): preflight → expand migrations → start the canary colour
//! at full size → smoke and performance checks on it, before any live traffic → for each step
//! (default 10, 25, 50, 75, 100 %): the approval gate where the policy asks for it, the
//! breaker's hold, every service's weight set, the observed share confirmed from live metrics,
//! then a hold (a durable timer) while analysis runs at its interval → promote (everything to
//! the canary in one verified switch) → keep the stable colour warm (interruptible by
//! `cutover rollback`) → retire it → contract migrations.
//!
//! - A failed analysis rolls back at once: stable capacity first, then every service's weight
//!   back to the stable colour together ([`steps`]); after promotion the Rollback workflow
//!   brings the stable colour back ([`end`]).
//! - Missing data, query errors, too little traffic are inconclusive: never promote on them;
//!   hold (the step's clock stops), alert, and roll back only after `inconclusive_hold_secs`.
//! - Signals `pause` / `resume` / `abort` / `rollback`; Updates `promote` (skips the remaining
//!   holds, records who), `approve` / `reject` (the policy check shared with blue-green).
//!
//! Runs recorded before patch `release-v2` keep their commands: no checks, migrations,
//! approval timeout or rollback after promotion.

mod end;
mod steps;

use crate::activities::CutoverActivities as Act;
use crate::failures::innermost as why;
use crate::names;
use crate::options;
use crate::release::journal::{enter, event, notify, now, report_outcome};
use crate::release::{
    self, Control, Event, Outcome, Phase, RELEASE_V2, Release, ScaleTarget, Stop, Undo, colour,
};
use crate::time::rfc3339;
use futures::FutureExt;
use proto::{
    AbortRequest, ApprovalDecision, BreakerHold, ColorRequest, DeployRequest, ShiftControl,
    ShiftRequest, ShiftStatus,
};
use std::time::Duration;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult};

type ValidatorResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[workflow]
#[derive(Default)]
pub struct ShiftWorkflow {
    request: ShiftRequest,
    status: ShiftStatus,
    promote: Option<ShiftControl>,
    /// What the signals and updates every release answers wrote (abort, rollback, approval,
    /// breaker hold).
    control: Control,
    /// The phases entered, with their time (the worker's phase metrics).
    marks: Vec<proto::PhaseMark>,
}

crate::release::release_workflow!(ShiftWorkflow, ShiftStatus);

impl ShiftWorkflow {
    fn v2(ctx: &WorkflowContext<Self>) -> bool {
        ctx.state(|s| s.control.v2)
    }

    fn colours(ctx: &WorkflowContext<Self>) -> (String, String) {
        ctx.state(|s| (s.status.stable_color.clone(), s.status.canary_color.clone()))
    }

    /// The request that sizes `color` (ready timeout from the release's timings).
    fn colour(ctx: &WorkflowContext<Self>, color: &str, target: ScaleTarget) -> ColorRequest {
        let req = ctx.state(|s| s.request.clone());
        let template = ColorRequest {
            platform: req.platform.clone(),
            services: req.services.clone(),
            timeout_secs: req.timings.map_or(120, |t| t.ready_timeout_secs).max(1),
            ..Default::default()
        };
        colour::request(&template, color, target)
    }

    /// Scales a colour; a failure is recorded, never fatal (the release is decided already).
    async fn scale(ctx: &WorkflowContext<Self>, color: &str, target: ScaleTarget) {
        let r = Self::colour(ctx, color, target);
        match ctx
            .execute_activity(Act::scale_color, r, options::platform_call())
            .await
        {
            Ok(()) => event(
                ctx,
                Event::Scaled {
                    colour: color,
                    to: target,
                },
            ),
            Err(e) => event(
                ctx,
                Event::NotScaled {
                    colour: color,
                    to: target,
                    why: &why(&e),
                },
            ),
        }
    }

    fn begin(ctx: &WorkflowContext<Self>, req: &ShiftRequest, breaker_aware: bool, v2: bool) {
        ctx.state_mut(|s| {
            s.request = req.clone();
            s.status.deployment_id = req.deployment_id.clone();
            s.status.environment = req.environment.clone();
            s.control.breaker_aware = breaker_aware;
            s.control.v2 = v2;
        });
    }

    /// Patch `worker-authority`: the worker checks the request against its own configuration
    /// and completes it; the run follows what the worker returned.
    async fn authorize(ctx: &WorkflowContext<Self>) -> Result<(), Stop> {
        let req = ctx.state(|s| s.request.clone());
        let ask = proto::AuthorizeRequest {
            shift: Some(req),
            ..Default::default()
        };
        let a = release::authority::authorize(ctx, ask).await?;
        let (req, record) = (a.shift.unwrap_or_default(), a.record.unwrap_or_default());
        ctx.state_mut(|s| {
            s.request = req;
            s.request.requested_by = record.requester.clone();
            s.control.release = Some(record.clone());
            s.status.release = Some(record);
        });
        Ok(())
    }

    /// The runbook: each phase returns `Err(Stop)` to end the release early.
    async fn release(ctx: &WorkflowContext<Self>) -> Result<(), Stop> {
        let (stable, canary) = Self::preflight(ctx).await?;
        Self::expand(ctx).await?;
        Self::start_canary(ctx, &canary).await?;
        Self::check_canary(ctx, &canary).await?;
        Self::shift(ctx, &stable, &canary).await?;
        Self::promote_all(ctx, &canary).await?;
        Self::keep_warm_and_retire(ctx, &stable).await
    }

    async fn preflight(ctx: &WorkflowContext<Self>) -> Result<(String, String), Stop> {
        enter(ctx, Phase::Preflight);
        let req = ctx.state(|s| s.request.clone());
        let pre = ctx
            .execute_activity(
                Act::preflight,
                DeployRequest {
                    deployment_id: req.deployment_id.clone(),
                    environment: req.environment.clone(),
                    revision: req.revision.clone(),
                    requested_by: req.requested_by.clone(),
                    platform: req.platform.clone(),
                    services: req.services.clone(),
                    timings: req.timings,
                    ..Default::default()
                },
                options::platform_call(),
            )
            .await
            .map_err(|e| {
                Stop::failed(Undo::Nothing, format!("preflight: {}", why(&e)), now(ctx))
            })?;
        let (stable, canary) = (pre.active_color, pre.target_color);
        ctx.state_mut(|s| {
            s.status.stable_color = stable.clone();
            s.status.canary_color = canary.clone();
        });
        let text = format!(
            "{} canary of {} on {canary} started",
            req.deployment_id, req.revision
        );
        notify(ctx, "started", text).await;
        Ok((stable, canary))
    }

    /// Expand migrations before the canary starts (safe for the live version); a failed run
    /// was reverted by the Migrate workflow and nothing else has changed.
    async fn expand(ctx: &WorkflowContext<Self>) -> Result<(), Stop> {
        if !Self::v2(ctx) || ctx.state(|s| s.request.migrate.is_none()) {
            return Ok(());
        }
        enter(ctx, Phase::Migrating);
        match colour::migrate_phase(ctx, "expand").await {
            Ok(summary) => {
                ctx.state_mut(|s| s.status.migrations = summary.unwrap_or_default());
                Ok(())
            }
            Err(e) => {
                ctx.state_mut(|s| s.status.migrations = format!("expand failed: {e}"));
                Err(Stop::failed(
                    Undo::Nothing,
                    format!("expand migrations failed (reverted; nothing else changed): {e}"),
                    now(ctx),
                ))
            }
        }
    }

    async fn start_canary(ctx: &WorkflowContext<Self>, canary: &str) -> Result<(), Stop> {
        enter(ctx, Phase::Starting);
        let colour = Self::colour(ctx, canary, ScaleTarget::Full);
        let started = colour::start_and_wait_ready(ctx, colour).await;
        // Runs before `release-v2` took the weights-back path here (a no-op move to stable).
        let undo = if Self::v2(ctx) {
            Undo::StopTarget
        } else {
            Undo::WeightsBack
        };
        started.map_err(|e| Stop::failed(undo, format!("{canary} did not start: {e}"), now(ctx)))
    }

    /// Smoke and performance checks on the canary colour while it takes no live traffic.
    async fn check_canary(ctx: &WorkflowContext<Self>, canary: &str) -> Result<(), Stop> {
        if !Self::v2(ctx) {
            return Ok(());
        }
        enter(ctx, Phase::Checking);
        let check = ctx.state(|s| s.check_request(canary));
        colour::checks_before_traffic(ctx, &check, Undo::StopTarget).await
    }

    /// Everything to the canary in one verified switch; the stable colour shrinks to warm size.
    async fn promote_all(ctx: &WorkflowContext<Self>, canary: &str) -> Result<(), Stop> {
        enter(ctx, Phase::Promoting);
        if let Some(p) = ctx.state(|s| s.promote.clone()) {
            ctx.state_mut(|s| s.status.promoted_by = p.by.clone());
            event(
                ctx,
                Event::Promoted {
                    by: &p.by,
                    reason: &p.reason,
                },
            );
        }
        let switch = ctx.state(|s| s.switch_request(canary, "switch"));
        let failed =
            |ctx: &WorkflowContext<Self>, what: &str, e: &(dyn std::error::Error + 'static)| {
                Stop::failed(Undo::WeightsBack, format!("{what}: {}", why(e)), now(ctx))
            };
        if let Err(e) = ctx
            .execute_activity(Act::switch_traffic, switch.clone(), options::traffic_move())
            .await
        {
            return Err(failed(ctx, "promotion failed", &e));
        }
        if let Err(e) = ctx
            .execute_activity(Act::verify_active, switch, options::platform_call())
            .await
        {
            return Err(failed(ctx, "promotion not verified", &e));
        }
        ctx.state_mut(|s| s.status.percent = 100);
        Ok(())
    }

    /// The release succeeded: the stable colour stays warm for a fast rollback, then retires,
    /// then the contract migrations run. `cutover rollback` (or abort) during the warm period
    /// brings the stable colour back through the Rollback workflow.
    async fn keep_warm_and_retire(ctx: &WorkflowContext<Self>, stable: &str) -> Result<(), Stop> {
        let v2 = Self::v2(ctx);
        let req = ctx.state(|s| s.request.clone());
        Self::scale(ctx, stable, ScaleTarget::Warm).await;
        let keep = Duration::from_secs(req.timings.map_or(0, |t| t.keep_warm_secs));
        let warm_until = rfc3339(now(ctx) + keep);
        ctx.state_mut(|s| {
            s.status.outcome = Outcome::Succeeded.as_str().into();
            s.status.warm_until = warm_until.clone();
        });
        let (_, canary) = Self::colours(ctx);
        let text = format!(
            "{} canary promoted: {} live on {canary}; {stable} stays warm until {warm_until}",
            req.deployment_id, req.revision
        );
        notify(ctx, Outcome::Succeeded.as_str(), text).await;
        report_outcome(ctx, Outcome::Succeeded, "promoted").await;
        enter(ctx, Phase::Warm);
        if !v2 {
            ctx.timer(keep).await;
            Self::scale(ctx, stable, ScaleTarget::Stopped).await;
            return Ok(());
        }
        let interrupted = temporalio_sdk::workflows::select! {
            _ = ctx.timer(keep).fuse() => false,
            _ = ctx.wait_condition(|s| s.control.warm_interrupted()).fuse() => true,
        };
        if interrupted && let Some(r) = ctx.state(|s| s.control.request.clone()) {
            return Err(Stop::requested(&r, Undo::RollBack, now(ctx)));
        }
        release::journal::superseding(ctx);
        Self::scale(ctx, stable, ScaleTarget::Stopped).await;
        Self::contract(ctx).await;
        let migrations = ctx.state(|s| s.status.migrations.clone());
        release::journal::superseded(ctx, &migrations);
        Ok(())
    }

    /// The contract phase, once the stable colour is gone. The release stays a success; a
    /// failure (reverted by the Migrate workflow) is recorded and announced.
    async fn contract(ctx: &WorkflowContext<Self>) {
        if ctx.state(|s| s.request.migrate.is_none()) {
            return;
        }
        enter(ctx, Phase::Migrating);
        let result = colour::migrate_phase(ctx, "contract").await;
        let line = match &result {
            Ok(summary) => summary.clone().unwrap_or_default(),
            Err(e) => format!("contract failed (reverted): {e}"),
        };
        ctx.state_mut(|s| {
            s.status.migrations = [s.status.migrations.as_str(), &line]
                .iter()
                .filter(|x| !x.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        });
        if let Err(e) = result {
            let id = ctx.state(|s| s.ident());
            event(
                ctx,
                Event::ContractFailed {
                    why: &e.to_string(),
                },
            );
            let text = format!(
                "{}: contract migrations failed and were reverted: {e}",
                id.deployment_id
            );
            notify(ctx, Outcome::Failed.as_str(), text).await;
        }
    }
}

#[workflow_methods]
impl ShiftWorkflow {
    #[run(name = names::SHIFT_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        req: ShiftRequest,
    ) -> WorkflowResult<ShiftStatus> {
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
    pub fn status(&self, _ctx: &WorkflowContextView) -> ShiftStatus {
        self.status.clone()
    }

    #[signal(name = names::PAUSE_SIGNAL)]
    pub fn pause(&mut self, _ctx: &mut SyncWorkflowContext<Self>, c: ShiftControl) {
        self.status.paused = true;
        self.status
            .events
            .push(format!("paused by {}: {}", c.by, c.reason));
    }

    #[signal(name = names::RESUME_SIGNAL)]
    pub fn resume(&mut self, _ctx: &mut SyncWorkflowContext<Self>, c: ShiftControl) {
        self.status.paused = false;
        self.status
            .events
            .push(format!("resumed by {}: {}", c.by, c.reason));
    }

    /// From the environment's circuit breaker: hold at the current step (or go on).
    #[signal(name = names::BREAKER_HOLD_SIGNAL)]
    pub fn breaker_hold(&mut self, _ctx: &mut SyncWorkflowContext<Self>, h: BreakerHold) {
        let (hold, reason) = (h.hold, h.reason.clone());
        if !self.control.on_breaker(h) {
            return;
        }
        if hold {
            self.status
                .events
                .push(format!("circuit breaker open, holding: {reason}"));
            self.status.breaker_hold = reason;
        } else {
            self.status.breaker_hold.clear();
            self.status
                .events
                .push("circuit breaker closed, going on".to_owned());
        }
    }

    #[signal(name = names::ABORT_SIGNAL)]
    pub fn abort(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        self.control.on_abort(a);
    }

    /// `cutover rollback`: during a step every weight goes back to the stable colour; during
    /// the warm period the Rollback workflow brings it back. Runs recorded before patch
    /// `release-v2` never saw this signal and ignore it.
    #[signal(name = names::ROLLBACK_SIGNAL)]
    pub fn rollback(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        if self.control.v2 {
            self.control.on_rollback(a);
        }
    }

    /// A newer release of the environment: end the keep-warm period now.
    #[signal(name = names::SUPERSEDE_SIGNAL)]
    pub fn supersede(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        if self.control.v2 {
            self.control.on_supersede(a);
        }
    }

    #[update_validator(promote)]
    fn validate_promote(&self, _ctx: &WorkflowContextView, c: &ShiftControl) -> ValidatorResult {
        if c.by.trim().is_empty() {
            return Err("promote needs who (--as NAME)".into());
        }
        if let Some(reason) = self
            .control
            .breaker
            .as_ref()
            .filter(|_| self.control.held())
        {
            return Err(format!("the circuit breaker is open: {reason}").into());
        }
        if !self.status.outcome.is_empty() || self.status.phase == Phase::RollingBack.as_str() {
            return Err(format!(
                "the canary is {}: nothing to promote",
                if self.status.outcome.is_empty() {
                    "rolling back"
                } else {
                    &self.status.outcome
                }
            )
            .into());
        }
        Ok(())
    }

    #[update(name = names::PROMOTE_UPDATE)]
    pub fn promote(&mut self, _ctx: &mut SyncWorkflowContext<Self>, c: ShiftControl) -> String {
        self.promote = Some(c);
        format!("promotion requested at {}%", self.status.percent)
    }

    #[update_validator(approve)]
    fn validate_approve(
        &self,
        _ctx: &WorkflowContextView,
        d: &ApprovalDecision,
    ) -> ValidatorResult {
        self.validate_decision(d)
    }

    #[update(name = names::APPROVE_UPDATE)]
    pub fn approve(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        d: ApprovalDecision,
    ) -> ShiftStatus {
        self.decide(ctx, true, d)
    }

    #[update_validator(reject)]
    fn validate_reject(&self, _ctx: &WorkflowContextView, d: &ApprovalDecision) -> ValidatorResult {
        if !self.control.v2 {
            return Err("this canary started before rejection existed: use `cutover abort`".into());
        }
        self.validate_decision(d)
    }

    #[update(name = names::REJECT_UPDATE)]
    pub fn reject(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        d: ApprovalDecision,
    ) -> ShiftStatus {
        self.decide(ctx, false, d)
    }
}
