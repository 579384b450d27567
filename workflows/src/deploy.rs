//! The Deploy workflow: blue-green release of all four JTS services as one unit.
//!
//! preflight → start the target colour → wait until ready → smoke and performance checks on the
//! target colour (before it takes traffic) → approval gate when required → switch all services in
//! one step → post-switch validation window → keep the old colour warm at reduced size → retire
//! it. Any failure after the switch reverts every service through the Rollback workflow.

use crate::activities::CutoverActivities as Act;
use crate::failures::{self, innermost as describe};
use crate::names;
use crate::options;
use crate::release::journal::{event, millis_between, now};
use crate::release::{self, Control, Ident, Phase, RELEASE_V2, Release, Request, Undo, colour};
use crate::time::rfc3339;
use futures::FutureExt;
use proto::{
    AbortRequest, ApprovalDecision, BreakerHold, CheckReport, CheckRequest, CheckResult,
    ColorRequest, DeployRequest, DeployStatus, MetricsSnapshot, MigrateRequest, ServiceStatus,
    SwitchRequest, WindowCheckRequest,
};
use std::time::{Duration, SystemTime};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

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
    /// What the signals and updates every release answers wrote (abort, rollback, approval,
    /// breaker hold).
    control: Control,
}

impl Release for DeployWorkflow {
    fn ident(&self) -> Ident {
        let r = &self.request;
        Ident {
            deployment_id: r.deployment_id.clone(),
            environment: r.environment.clone(),
            revision: r.revision.clone(),
            requested_by: r.requested_by.clone(),
        }
    }
    fn control(&self) -> &Control {
        &self.control
    }
    fn events_mut(&mut self) -> &mut Vec<String> {
        &mut self.status.events
    }
    fn events(&self) -> Vec<String> {
        self.status.events.clone()
    }
    fn set_phase(&mut self, phase: Phase) {
        self.status.phase = phase.as_str().to_owned();
    }
    fn checks_mut(&mut self) -> &mut Vec<CheckResult> {
        &mut self.status.checks
    }
    fn migrate(&self) -> Option<MigrateRequest> {
        self.request.migrate.clone()
    }
}

impl DeployWorkflow {
    fn set_phase(ctx: &WorkflowContext<Self>, phase: Phase) {
        release::journal::enter(ctx, phase);
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

    fn record(ctx: &WorkflowContext<Self>, report: &CheckReport) {
        let at = rfc3339(now(ctx));
        ctx.state_mut(|s| colour::merge_checks(&mut s.status.checks, report, &at));
    }

    fn stop_requested(ctx: &WorkflowContext<Self>) -> Option<Request> {
        ctx.state(|s| s.control.request.clone())
    }

    async fn notify(ctx: &WorkflowContext<Self>, kind: &str, text: String) {
        release::journal::notify(ctx, kind, text).await;
    }

    async fn finish(
        ctx: &WorkflowContext<Self>,
        result: &str,
        failure_type: &str,
        reason: String,
    ) -> WorkflowResult<DeployStatus> {
        ctx.state_mut(|s| {
            s.status.outcome = result.to_owned();
            s.status.reason = reason.clone();
        });
        Self::set_phase(ctx, Phase::Done);
        let req = ctx.state(|s| s.request.clone());
        let text = format!(
            "{} {} of {} to {}: {}",
            req.deployment_id, result, req.revision, req.environment, reason
        );
        Self::notify(ctx, result, text).await;
        if let Some(o) = release::Outcome::parse(result) {
            release::journal::report_outcome(ctx, o, &reason).await;
        }
        if result == outcome::SUCCEEDED {
            Ok(ctx.state(|s| s.status.clone()))
        } else {
            Err(ApplicationFailure::builder(reason)
                .type_name(failure_type.to_owned())
                .non_retryable(true)
                .build()
                .into())
        }
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

    /// Before the switch nothing has moved: stop the target colour and end.
    async fn fail_before_switch(
        ctx: &WorkflowContext<Self>,
        target: &str,
        result: &str,
        failure_type: &str,
        reason: String,
    ) -> WorkflowResult<DeployStatus> {
        let req = ctx.state(|s| s.request.clone());
        let stop = ColorRequest {
            stop: true,
            ..Self::color_request(&req, target)
        };
        if let Err(e) = ctx
            .execute_activity(Act::scale_color, stop, options::platform_call())
            .await
        {
            event(ctx, format!("could not stop {target}: {}", describe(&e)));
        }
        Self::set_services(ctx, "reverted", None);
        Self::finish(ctx, result, failure_type, reason).await
    }

    /// Before the switch: the stop's outcome, with the target colour stopped.
    async fn stop_before_switch(
        ctx: &WorkflowContext<Self>,
        target: &str,
        stop: release::Stop,
    ) -> WorkflowResult<DeployStatus> {
        let (o, reason) = (stop.outcome, stop.reason);
        Self::fail_before_switch(ctx, target, o.as_str(), o.failure_type(), reason).await
    }

    /// Before the switch, when an abort (or rollback) was requested: stops the target colour and
    /// gives the run's result.
    async fn stop_if_aborted(
        ctx: &WorkflowContext<Self>,
        target: &str,
    ) -> Option<WorkflowResult<DeployStatus>> {
        let a = Self::stop_requested(ctx)?.by().clone();
        Some(
            Self::fail_before_switch(
                ctx,
                target,
                outcome::ABORTED,
                failures::DEPLOYMENT_ABORTED,
                format!("aborted by {}: {}", a.by, a.reason),
            )
            .await,
        )
    }

    /// After the switch: every service goes back to `previous` through the Rollback workflow.
    async fn roll_back(
        ctx: &WorkflowContext<Self>,
        previous: &str,
        reason: String,
        detected_at: SystemTime,
        result: &str,
        failure_type: &str,
    ) -> WorkflowResult<DeployStatus> {
        Self::set_phase(ctx, Phase::RollingBack);
        event(ctx, format!("rolling back to {previous}: {reason}"));
        let req = ctx.state(|s| s.request.clone());
        let template = Self::color_request(&req, previous);
        match colour::roll_back(ctx, &template, previous, &reason).await {
            Ok(color) => {
                let revert_ms = millis_between(detected_at, now(ctx));
                ctx.state_mut(|s| s.status.revert_ms = revert_ms);
                Self::set_services(ctx, "reverted", Some(&color));
                Self::finish(ctx, result, failure_type, reason).await
            }
            Err(e) => {
                Self::set_services(ctx, "failed", None);
                Self::finish(
                    ctx,
                    outcome::FAILED,
                    failures::ROLLBACK_FAILED,
                    format!("{reason}; and the rollback failed: {e}"),
                )
                .await
            }
        }
    }

    /// The approver's decision, validated by the one policy check both strategies share.
    fn validate_decision(&self, d: &ApprovalDecision) -> ValidatorResult {
        let (ident, policy) = (
            self.ident(),
            self.request.approval.clone().unwrap_or_default(),
        );
        release::approval::validate(
            &release::approval::Pending {
                ident: &ident,
                policy: &policy,
                phase: &self.status.phase,
                decided: self.control.decision.is_some(),
            },
            d,
        )
        .map_err(Into::into)
    }

    fn decide(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        approved: bool,
        d: ApprovalDecision,
    ) -> DeployStatus {
        let at = rfc3339(ctx.workflow_time().unwrap_or(std::time::UNIX_EPOCH));
        self.status
            .approvals
            .push(release::approval::record(approved, &d, at));
        self.control.decision = Some((approved, d));
        self.status.clone()
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
        ctx.state_mut(|s| {
            s.request = req.clone();
            s.control.breaker_aware = breaker_aware;
            s.control.v2 = v2;
            s.status = DeployStatus {
                deployment_id: req.deployment_id.clone(),
                environment: req.environment.clone(),
                revision: req.revision.clone(),
                requested_by: req.requested_by.clone(),
                approval_required: req.approval.as_ref().is_some_and(|a| a.required),
                services: req
                    .services
                    .iter()
                    .map(|s| ServiceStatus {
                        name: s.name.clone(),
                        version: s.version.clone(),
                        active_color: String::new(),
                        state: "pending".to_owned(),
                    })
                    .collect(),
                ..Default::default()
            };
        });
        Self::set_phase(ctx, Phase::Preflight);
        Self::notify(
            ctx,
            "started",
            format!(
                "{} started: {} to {} (requested by {})",
                req.deployment_id, req.revision, req.environment, req.requested_by
            ),
        )
        .await;

        let pre = match ctx
            .execute_activity(Act::preflight, req.clone(), options::platform_call())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                return Self::finish(
                    ctx,
                    outcome::FAILED,
                    failures::DEPLOYMENT_FAILED,
                    format!("preflight failed: {}", describe(&e)),
                )
                .await;
            }
        };
        let (previous, target) = (pre.active_color.clone(), pre.target_color.clone());
        ctx.state_mut(|s| s.status.target_color = target.clone());
        Self::set_services(ctx, "pending", Some(&previous));
        event(
            ctx,
            format!("{previous} is live; releasing {} on {target}", req.revision),
        );

        // Expand migrations before the new colour starts (safe for the live version). A failed
        // run is reverted by the Migrate workflow itself; nothing else has changed yet.
        let migrations = ctx.patched("migrations-v1") && req.migrate.is_some();
        if migrations {
            Self::set_phase(ctx, Phase::Migrating);
            match colour::migrate_phase(ctx, "expand").await {
                Ok(Some(summary)) => {
                    ctx.state_mut(|s| s.status.migrations = summary);
                }
                Ok(None) => {}
                Err(e) => {
                    ctx.state_mut(|s| s.status.migrations = format!("expand failed: {e}"));
                    return Self::finish(
                        ctx,
                        outcome::FAILED,
                        failures::DEPLOYMENT_FAILED,
                        format!("expand migrations failed (reverted; nothing else changed): {e}"),
                    )
                    .await;
                }
            }
        }

        // Start the target colour and wait until every instance is ready.
        Self::set_phase(ctx, Phase::Starting);
        Self::set_services(ctx, "starting", None);
        let colour = Self::color_request(&req, &target);
        let ready_timeout = Duration::from_secs(colour.timeout_secs.max(1));
        let started_ok = match ctx
            .execute_activity(
                Act::start_color,
                colour.clone(),
                options::start_instances(ready_timeout),
            )
            .await
        {
            Ok(()) => ctx
                .execute_activity(
                    Act::wait_ready,
                    colour.clone(),
                    options::long_wait(ready_timeout),
                )
                .await
                .map_err(|e| describe(&e)),
            Err(e) => Err(describe(&e)),
        };
        if let Err(e) = started_ok {
            return Self::fail_before_switch(
                ctx,
                &target,
                outcome::FAILED,
                failures::DEPLOYMENT_FAILED,
                format!("{target} did not start: {e}"),
            )
            .await;
        }
        Self::set_services(ctx, "ready", None);

        // Smoke and performance checks against the target colour, before it takes traffic.
        Self::set_phase(ctx, Phase::Checking);
        let check = CheckRequest {
            platform: req.platform.clone(),
            color: target.clone(),
            services: req.services.clone(),
            thresholds: req.thresholds,
            perf: req.perf.clone(),
        };
        if let Err(stop) = colour::checks_before_traffic(ctx, &check, Undo::StopTarget).await {
            return Self::stop_before_switch(ctx, &target, stop).await;
        }

        // Approval gate.
        if req.approval.as_ref().is_some_and(|a| a.required) {
            release::approval::ask(ctx, &format!("{} to {}", req.revision, req.environment)).await;
            let timeout = Duration::from_secs(
                req.timings
                    .as_ref()
                    .map_or(86_400, |t| t.approval_timeout_secs)
                    .max(1),
            );
            if let Err(stop) = release::approval::gate(ctx, Some(timeout), Undo::StopTarget).await {
                return Self::stop_before_switch(ctx, &target, stop).await;
            }
        }

        // The circuit breaker holds the switch while it blocks (rolling back is never held).
        if ctx.state(|s| s.control.held()) {
            Self::set_phase(ctx, Phase::Held);
            let _ = ctx
                .wait_condition(|s| s.control.breaker.is_none() || s.control.request.is_some())
                .await;
            if let Some(done) = Self::stop_if_aborted(ctx, &target).await {
                return done;
            }
            event(ctx, "circuit breaker closed: switching");
        }

        // Switch every service in one step.
        Self::set_phase(ctx, Phase::Switching);
        let names_in_order: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
        let window = WindowCheckRequest {
            platform: req.platform.clone(),
            color: target.clone(),
            services: names_in_order.clone(),
            thresholds: req.thresholds,
            baseline: None,
        };
        let baseline: MetricsSnapshot = match ctx
            .execute_activity(
                Act::snapshot_metrics,
                window.clone(),
                options::platform_call(),
            )
            .await
        {
            Ok(b) => b,
            Err(e) => {
                return Self::fail_before_switch(
                    ctx,
                    &target,
                    outcome::FAILED,
                    failures::DEPLOYMENT_FAILED,
                    format!("could not read metrics before the switch: {}", describe(&e)),
                )
                .await;
            }
        };
        let switch = SwitchRequest {
            platform: req.platform.clone(),
            color: target.clone(),
            services: names_in_order.clone(),
            atomic: true,
            request_id: format!("{}/switch", req.deployment_id),

            environment: req.environment.clone(),
        };
        match ctx
            .execute_activity(Act::switch_traffic, switch, options::traffic_move())
            .await
        {
            Ok(r) => {
                ctx.state_mut(|s| s.status.switch_ms = r.switch_ms);
                Self::set_services(ctx, "live", Some(&target));
                event(
                    ctx,
                    format!("switched {} to {target}", r.changed.join(", ")),
                );
            }
            Err(e) => {
                // The switch is one atomic step: if it failed, nothing moved, but make sure.
                let reason = format!("switch failed: {}", describe(&e));
                return Self::roll_back(
                    ctx,
                    &previous,
                    reason,
                    now(ctx),
                    outcome::FAILED,
                    failures::DEPLOYMENT_FAILED,
                )
                .await;
            }
        }

        // Post-switch validation window on live traffic.
        Self::set_phase(ctx, Phase::Validating);
        let timings = req.timings.unwrap_or_default();
        let interval = Duration::from_millis(timings.check_interval_ms.max(100));
        let window_ms = timings.validation_window_secs * 1000;
        let hold_ms = timings.inconclusive_hold_secs * 1000;
        let checks_in_window = (window_ms / interval.as_millis() as u64).max(1);
        let checks_max = checks_in_window + hold_ms / interval.as_millis() as u64;
        let judge = WindowCheckRequest {
            baseline: Some(baseline),
            ..window
        };
        let mut n = 0u64;
        loop {
            n += 1;
            let interrupted = temporalio_sdk::workflows::select! {
                _ = ctx.timer(interval).fuse() => false,
                _ = ctx.wait_condition(|s| s.control.request.is_some()).fuse() => true,
            };
            if interrupted {
                let a = Self::stop_requested(ctx)
                    .expect("condition above")
                    .by()
                    .clone();
                let reason = format!("rollback requested by {}: {}", a.by, a.reason);
                return Self::roll_back(
                    ctx,
                    &previous,
                    reason,
                    now(ctx),
                    outcome::ROLLED_BACK,
                    failures::DEPLOYMENT_ROLLED_BACK,
                )
                .await;
            }
            let report = match ctx
                .execute_activity(Act::check_window, judge.clone(), options::platform_call())
                .await
            {
                Ok(r) => r,
                Err(e) => CheckReport {
                    passed: false,
                    results: vec![CheckResult {
                        name: "validation".into(),
                        outcome: "inconclusive".into(),
                        detail: describe(&e),
                        ..Default::default()
                    }],
                },
            };
            Self::record(ctx, &report);
            let failed: Vec<&CheckResult> = report
                .results
                .iter()
                .filter(|r| r.outcome == "failed")
                .collect();
            if !failed.is_empty() {
                let reason = failed
                    .iter()
                    .map(|r| format!("{} {}", r.service, r.detail))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Self::roll_back(
                    ctx,
                    &previous,
                    format!("post-switch validation failed: {reason}"),
                    now(ctx),
                    outcome::ROLLED_BACK,
                    failures::DEPLOYMENT_ROLLED_BACK,
                )
                .await;
            }
            if n >= checks_in_window && report.passed {
                break;
            }
            if n >= checks_max {
                let why = report
                    .results
                    .iter()
                    .filter(|r| r.outcome != "passed")
                    .map(|r| format!("{} {}", r.service, r.detail))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Self::roll_back(
                    ctx,
                    &previous,
                    format!("post-switch validation stayed inconclusive: {why}"),
                    now(ctx),
                    outcome::ROLLED_BACK,
                    failures::DEPLOYMENT_ROLLED_BACK,
                )
                .await;
            }
        }

        // Success: the old colour stays warm at reduced size for a fast rollback, then retires.
        Self::set_phase(ctx, Phase::Warm);
        let warm = ColorRequest {
            warm_size: true,
            ..Self::color_request(&req, &previous)
        };
        if let Err(e) = ctx
            .execute_activity(Act::scale_color, warm, options::platform_call())
            .await
        {
            event(
                ctx,
                format!("could not shrink {previous} to warm size: {}", describe(&e)),
            );
        }
        let keep_warm = Duration::from_secs(timings.keep_warm_secs);
        let warm_until = now(ctx) + keep_warm;
        ctx.state_mut(|s| {
            s.status.outcome = outcome::SUCCEEDED.to_owned();
            s.status.warm_until = rfc3339(warm_until);
        });
        Self::notify(
            ctx,
            "succeeded",
            format!(
                "{} succeeded: {} live on {target} in {}; {previous} stays warm until {}",
                req.deployment_id,
                req.revision,
                req.environment,
                rfc3339(warm_until)
            ),
        )
        .await;
        // A stop request rolls back; a newer release (patch `release-v2`) ends the period early.
        let interrupted = temporalio_sdk::workflows::select! {
            _ = ctx.timer(keep_warm).fuse() => false,
            _ = ctx.wait_condition(|s| s.control.warm_interrupted()).fuse() => true,
        };
        if interrupted && let Some(r) = Self::stop_requested(ctx) {
            let a = r.by().clone();
            ctx.state_mut(|s| s.status.outcome.clear());
            let reason = format!("rollback requested by {}: {}", a.by, a.reason);
            return Self::roll_back(
                ctx,
                &previous,
                reason,
                now(ctx),
                outcome::ROLLED_BACK,
                failures::DEPLOYMENT_ROLLED_BACK,
            )
            .await;
        }
        let retire = ColorRequest {
            stop: true,
            ..Self::color_request(&req, &previous)
        };
        if let Err(e) = ctx
            .execute_activity(Act::scale_color, retire, options::platform_call())
            .await
        {
            event(
                ctx,
                format!("could not retire {previous}: {}", describe(&e)),
            );
        } else {
            event(ctx, format!("retired {previous}"));
            // The old colour is gone and its rollback window closed: the contract phase.
            if migrations {
                Self::set_phase(ctx, Phase::Migrating);
                match colour::migrate_phase(ctx, "contract").await {
                    Ok(Some(summary)) => {
                        ctx.state_mut(|s| {
                            s.status.migrations = format!("{}; {summary}", s.status.migrations)
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // The release is live and healthy; the contract files were reverted.
                        event(ctx, format!("contract migrations failed (reverted): {e}"));
                        ctx.state_mut(|s| {
                            s.status.migrations =
                                format!("{}; contract failed (reverted): {e}", s.status.migrations)
                        });
                        Self::notify(
                            ctx,
                            "failed",
                            format!(
                                "{}: contract migrations failed and were reverted: {e}",
                                req.deployment_id
                            ),
                        )
                        .await;
                    }
                }
            }
        }
        let migrations = ctx.state(|s| s.status.migrations.clone());
        release::journal::superseded(ctx, &migrations);
        Self::finish(
            ctx,
            outcome::SUCCEEDED,
            "",
            format!("{} live on {target}", req.revision),
        )
        .await
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

    /// Stops the deployment: before the switch the target colour is stopped; after it, every
    /// service is rolled back.
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
