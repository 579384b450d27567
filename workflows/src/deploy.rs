//! The Deploy workflow: blue-green release of all four JTS services as one unit.
//!
//! preflight → start the target colour → wait until ready → smoke and performance checks on the
//! target colour (before it takes traffic) → approval gate when required → switch all services in
//! one step → post-switch validation window → keep the old colour warm at reduced size → retire
//! it. Any failure after the switch reverts every service through the Rollback workflow.

use crate::activities::CutoverActivities as Act;
use crate::failures;
use crate::migrate::MigrateWorkflow;
use crate::names;
use crate::options;
use crate::rollback::RollbackWorkflow;
use crate::time::rfc3339;
use futures::FutureExt;
use proto::{
    AbortRequest, ApprovalDecision, ApprovalRecord, BreakerHold, CheckReport, CheckRequest,
    CheckResult, ColorRequest, DeployRequest, DeployStatus, MetricsSnapshot, Notification,
    RollbackRequest, ServiceStatus, SwitchRequest, WindowCheckRequest,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, ChildWorkflowOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

type ValidatorResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Phases, as shown by `status` and in the Temporal UI's current details.
pub mod phase {
    pub const PREFLIGHT: &str = "preflight";
    pub const MIGRATING: &str = "migrating";
    pub const STARTING: &str = "starting";
    pub const CHECKING: &str = "checking";
    pub const AWAITING_APPROVAL: &str = "awaiting_approval";
    pub const HELD: &str = "held";
    pub const SWITCHING: &str = "switching";
    pub const VALIDATING: &str = "validating";
    pub const WARM: &str = "warm";
    pub const ROLLING_BACK: &str = "rolling_back";
    pub const DONE: &str = "done";
}

/// Final outcomes.
pub mod outcome {
    pub const SUCCEEDED: &str = "succeeded";
    pub const ROLLED_BACK: &str = "rolled_back";
    pub const FAILED: &str = "failed";
    pub const REJECTED: &str = "rejected";
    pub const ABORTED: &str = "aborted";
}

#[derive(Clone, Debug)]
enum Stop {
    Abort(AbortRequest),
    Rollback(AbortRequest),
}

#[workflow]
#[derive(Default)]
pub struct DeployWorkflow {
    request: DeployRequest,
    status: DeployStatus,
    decision: Option<(bool, ApprovalDecision)>,
    stop: Option<Stop>,
    /// The environment's circuit breaker holds the switch (the reason), when the run knows
    /// about breakers (patch `breaker-v1`).
    breaker: Option<String>,
    breaker_aware: bool,
}

fn now<W>(ctx: &WorkflowContext<W>) -> SystemTime {
    ctx.workflow_time().unwrap_or(UNIX_EPOCH)
}

fn millis_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).unwrap_or_default().as_secs_f64() * 1000.0
}

/// A person-readable message of an activity or child failure: the innermost causes, joined.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.last().cloned().unwrap_or_default()
}

impl DeployWorkflow {
    fn event(ctx: &WorkflowContext<Self>, text: impl Into<String>) {
        let at = rfc3339(now(ctx));
        let text = text.into();
        ctx.state_mut(|s| s.status.events.push(format!("{at} {text}")));
    }

    fn set_phase(ctx: &WorkflowContext<Self>, phase: &str) {
        ctx.state_mut(|s| s.status.phase = phase.to_owned());
        ctx.set_current_details(format!("phase: {phase}"));
        Self::event(ctx, format!("phase {phase}"));
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
        ctx.state_mut(|s| {
            for r in &report.results {
                let mut r = r.clone();
                r.at = at.clone();
                // One live row per (check, service): the validation window refreshes its figures.
                if let Some(existing) = s
                    .status
                    .checks
                    .iter_mut()
                    .find(|c| c.name == r.name && c.service == r.service && c.color == r.color)
                {
                    *existing = r;
                } else {
                    s.status.checks.push(r);
                }
            }
        });
    }

    fn stop_requested(ctx: &WorkflowContext<Self>) -> Option<Stop> {
        ctx.state(|s| s.stop.clone())
    }

    async fn notify(ctx: &WorkflowContext<Self>, event: &str, text: String) {
        let req = ctx.state(|s| s.request.clone());
        let n = Notification {
            event: event.to_owned(),
            environment: req.environment.clone(),
            deployment_id: req.deployment_id.clone(),
            text,
            // The events so far: the worker's phase metrics.
            events: ctx.state(|s| s.status.events.clone()),
        };
        // A notification failure never fails a deployment.
        if ctx
            .execute_activity(Act::notify, n, options::notify())
            .await
            .is_err()
        {
            Self::event(ctx, format!("notification {event} could not be delivered"));
        }
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
        Self::set_phase(ctx, phase::DONE);
        let req = ctx.state(|s| s.request.clone());
        let text = format!(
            "{} {} of {} to {}: {}",
            req.deployment_id, result, req.revision, req.environment, reason
        );
        Self::notify(ctx, result, text).await;
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
            Self::event(ctx, format!("could not stop {target}: {}", describe(&e)));
        }
        Self::set_services(ctx, "reverted", None);
        Self::finish(ctx, result, failure_type, reason).await
    }

    /// Before the switch, when an abort (or rollback) was requested: stops the target colour and
    /// gives the run's result.
    async fn stop_if_aborted(
        ctx: &WorkflowContext<Self>,
        target: &str,
    ) -> Option<WorkflowResult<DeployStatus>> {
        let (Stop::Abort(a) | Stop::Rollback(a)) = Self::stop_requested(ctx)?;
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
        Self::set_phase(ctx, phase::ROLLING_BACK);
        Self::event(ctx, format!("rolling back to {previous}: {reason}"));
        let req = ctx.state(|s| s.request.clone());
        let rb = RollbackRequest {
            environment: req.environment.clone(),
            platform: req.platform.clone(),
            services: req.services.clone(),
            to_color: previous.to_owned(),
            reason: reason.clone(),
            deployment_id: req.deployment_id.clone(),
            requested_by: "cutover (automatic)".to_owned(),
            ready_timeout_secs: req.timings.as_ref().map_or(120, |t| t.ready_timeout_secs),
        };
        let opts = ChildWorkflowOptions::workflow_id(names::rollback_workflow_id(&req.environment));
        let outcome = match ctx
            .start_child_workflow(RollbackWorkflow::run, rb, opts)
            .await
        {
            Ok(started) => started.result().await.map_err(|e| describe(&e)),
            Err(e) => Err(describe(&e)),
        };
        match outcome {
            Ok(r) => {
                let revert_ms = millis_between(detected_at, now(ctx));
                ctx.state_mut(|s| s.status.revert_ms = revert_ms);
                Self::set_services(ctx, "reverted", Some(&r.color));
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

    /// Runs one phase of the release's migrations as the child workflow `migrate-<env>`.
    /// Ok(None) when there is nothing to run.
    async fn migrate_phase(
        ctx: &WorkflowContext<Self>,
        phase_name: &str,
    ) -> Result<Option<String>, String> {
        let req = ctx.state(|s| s.request.clone());
        let Some(mut m) = req.migrate.clone() else {
            return Ok(None);
        };
        if m.migrations.is_empty() {
            return Ok(None);
        }
        m.phase = phase_name.to_owned();
        m.deployment_id = req.deployment_id.clone();
        m.requested_by = req.requested_by.clone();
        let opts = ChildWorkflowOptions::workflow_id(names::migrate_workflow_id(&req.environment));
        let result = match ctx
            .start_child_workflow(MigrateWorkflow::run, m, opts)
            .await
        {
            Ok(started) => started.result().await.map_err(|e| describe(&e)),
            Err(e) => Err(describe(&e)),
        };
        match result {
            Ok(s) => Ok(Some(format!(
                "{phase_name} {}: applied {:?}, version {}",
                s.outcome, s.applied, s.current_version
            ))),
            Err(e) => Err(e),
        }
    }

    fn validate_decision(
        &self,
        ctx: &WorkflowContextView,
        d: &ApprovalDecision,
    ) -> ValidatorResult {
        let _ = ctx;
        let req = &self.request;
        if self.status.phase != phase::AWAITING_APPROVAL || self.decision.is_some() {
            return Err(format!(
                "deployment {} is not awaiting approval (phase: {})",
                req.deployment_id, self.status.phase
            )
            .into());
        }
        if d.deployment_id != req.deployment_id {
            return Err(format!(
                "stale approval: it names deployment {:?}, but {} is running {:?}",
                d.deployment_id, req.environment, req.deployment_id
            )
            .into());
        }
        if d.revision != req.revision {
            return Err(format!(
                "approval is for revision {:?}, but deployment {} releases {:?}",
                d.revision, req.deployment_id, req.revision
            )
            .into());
        }
        let policy = req.approval.clone().unwrap_or_default();
        if d.approver.trim().is_empty() {
            return Err("approval has no approver identity".into());
        }
        if !policy.approvers.iter().any(|a| a == &d.approver) {
            return Err(format!(
                "{:?} may not approve deployments to {} (allowed: {})",
                d.approver,
                req.environment,
                policy.approvers.join(", ")
            )
            .into());
        }
        if policy.distinct_from_requester && d.approver == req.requested_by {
            return Err(format!(
                "{:?} requested deployment {} and may not approve it too",
                d.approver, req.deployment_id
            )
            .into());
        }
        Ok(())
    }

    fn decide(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        approved: bool,
        d: ApprovalDecision,
    ) -> DeployStatus {
        let at = rfc3339(ctx.workflow_time().unwrap_or(UNIX_EPOCH));
        self.status.approvals.push(ApprovalRecord {
            approver: d.approver.clone(),
            decision: if approved { "approved" } else { "rejected" }.to_owned(),
            revision: d.revision.clone(),
            comment: d.comment.clone(),
            at,
        });
        self.decision = Some((approved, d));
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
        ctx.state_mut(|s| {
            s.request = req.clone();
            s.breaker_aware = breaker_aware;
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
        Self::set_phase(ctx, phase::PREFLIGHT);
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
        Self::event(
            ctx,
            format!("{previous} is live; releasing {} on {target}", req.revision),
        );

        // Expand migrations before the new colour starts (safe for the live version). A failed
        // run is reverted by the Migrate workflow itself; nothing else has changed yet.
        let migrations = ctx.patched("migrations-v1") && req.migrate.is_some();
        if migrations {
            Self::set_phase(ctx, phase::MIGRATING);
            match Self::migrate_phase(ctx, "expand").await {
                Ok(Some(summary)) => {
                    Self::event(ctx, format!("migrations {summary}"));
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
        Self::set_phase(ctx, phase::STARTING);
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
        Self::set_phase(ctx, phase::CHECKING);
        let check = CheckRequest {
            platform: req.platform.clone(),
            color: target.clone(),
            services: req.services.clone(),
            thresholds: req.thresholds,
            perf: req.perf.clone(),
        };
        for name in ["smoke", "performance"] {
            let result = if name == "smoke" {
                ctx.execute_activity(Act::smoke_checks, check.clone(), options::checks())
                    .await
            } else {
                ctx.execute_activity(Act::perf_checks, check.clone(), options::checks())
                    .await
            };
            let failed = match result {
                Ok(report) => {
                    Self::record(ctx, &report);
                    (!report.passed).then(|| {
                        report
                            .results
                            .iter()
                            .filter(|r| r.outcome != "passed")
                            .map(|r| format!("{} {}: {}", r.service, r.name, r.detail))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                }
                Err(e) => Some(describe(&e)),
            };
            if let Some(why) = failed {
                return Self::fail_before_switch(
                    ctx,
                    &target,
                    outcome::FAILED,
                    failures::DEPLOYMENT_FAILED,
                    format!("{name} check failed on {target}: {why}"),
                )
                .await;
            }
            if let Some(done) = Self::stop_if_aborted(ctx, &target).await {
                return done;
            }
        }

        // Approval gate.
        if req.approval.as_ref().is_some_and(|a| a.required) {
            Self::set_phase(ctx, phase::AWAITING_APPROVAL);
            Self::notify(
                ctx,
                "awaiting_approval",
                format!(
                    "{} awaits approval: {} to {} (approve with: cutover approve {} --deployment {} --revision {})",
                    req.deployment_id, req.revision, req.environment, req.environment, req.deployment_id, req.revision
                ),
            )
            .await;
            let timeout = Duration::from_secs(
                req.timings
                    .as_ref()
                    .map_or(86_400, |t| t.approval_timeout_secs)
                    .max(1),
            );
            let answered = temporalio_sdk::workflows::select! {
                _ = ctx.wait_condition(|s| s.decision.is_some() || s.stop.is_some()).fuse() => true,
                _ = ctx.timer(timeout).fuse() => false,
            };
            if !answered {
                return Self::fail_before_switch(
                    ctx,
                    &target,
                    outcome::FAILED,
                    failures::DEPLOYMENT_FAILED,
                    format!("no approval within {}s", timeout.as_secs()),
                )
                .await;
            }
            if let Some(done) = Self::stop_if_aborted(ctx, &target).await {
                return done;
            }
            let (approved, d) = ctx.state(|s| s.decision.clone()).expect("condition above");
            if !approved {
                return Self::fail_before_switch(
                    ctx,
                    &target,
                    outcome::REJECTED,
                    failures::DEPLOYMENT_REJECTED,
                    format!("rejected by {}: {}", d.approver, d.comment),
                )
                .await;
            }
            Self::event(ctx, format!("approved by {}", d.approver));
        }

        // The circuit breaker holds the switch while it blocks (rolling back is never held).
        if ctx.state(|s| s.breaker_aware && s.breaker.is_some()) {
            Self::set_phase(ctx, phase::HELD);
            let _ = ctx
                .wait_condition(|s| s.breaker.is_none() || s.stop.is_some())
                .await;
            if let Some(done) = Self::stop_if_aborted(ctx, &target).await {
                return done;
            }
            Self::event(ctx, "circuit breaker closed: switching");
        }

        // Switch every service in one step.
        Self::set_phase(ctx, phase::SWITCHING);
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
                Self::event(
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
        Self::set_phase(ctx, phase::VALIDATING);
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
                _ = ctx.wait_condition(|s| s.stop.is_some()).fuse() => true,
            };
            if interrupted {
                let (Stop::Abort(a) | Stop::Rollback(a)) =
                    Self::stop_requested(ctx).expect("condition above");
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
        Self::set_phase(ctx, phase::WARM);
        let warm = ColorRequest {
            warm_size: true,
            ..Self::color_request(&req, &previous)
        };
        if let Err(e) = ctx
            .execute_activity(Act::scale_color, warm, options::platform_call())
            .await
        {
            Self::event(
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
        let interrupted = temporalio_sdk::workflows::select! {
            _ = ctx.timer(keep_warm).fuse() => false,
            _ = ctx.wait_condition(|s| s.stop.is_some()).fuse() => true,
        };
        if interrupted {
            let (Stop::Abort(a) | Stop::Rollback(a)) =
                Self::stop_requested(ctx).expect("condition above");
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
            Self::event(
                ctx,
                format!("could not retire {previous}: {}", describe(&e)),
            );
        } else {
            Self::event(ctx, format!("retired {previous}"));
            // The old colour is gone and its rollback window closed: the contract phase.
            if migrations {
                Self::set_phase(ctx, phase::MIGRATING);
                match Self::migrate_phase(ctx, "contract").await {
                    Ok(Some(summary)) => {
                        Self::event(ctx, format!("migrations {summary}"));
                        ctx.state_mut(|s| {
                            s.status.migrations = format!("{}; {summary}", s.status.migrations)
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // The release is live and healthy; the contract files were reverted.
                        Self::event(ctx, format!("contract migrations failed (reverted): {e}"));
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
    fn validate_approve(&self, ctx: &WorkflowContextView, d: &ApprovalDecision) -> ValidatorResult {
        self.validate_decision(ctx, d)
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
    fn validate_reject(&self, ctx: &WorkflowContextView, d: &ApprovalDecision) -> ValidatorResult {
        self.validate_decision(ctx, d)
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
        if h.hold {
            self.status.breaker_hold = h.reason.clone();
            self.breaker = Some(h.reason);
        } else {
            self.status.breaker_hold.clear();
            self.breaker = None;
        }
    }

    #[signal(name = names::ABORT_SIGNAL)]
    pub fn abort(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        if self.stop.is_none() {
            self.stop = Some(Stop::Abort(a));
        }
    }

    /// Rolls back a switched deployment (validation window or warm period).
    #[signal(name = names::ROLLBACK_SIGNAL)]
    pub fn rollback(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        if self.stop.is_none() {
            self.stop = Some(Stop::Rollback(a));
        }
    }
}
