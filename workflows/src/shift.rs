//! The GradualShift workflow: a canary of all four services together.
//!
//! preflight → start the canary colour at full size → for each step (default 10, 25, 50, 75,
//! 100 %): set every service's weight, confirm from live metrics that the observed share is near
//! the target, then hold for the step's duration (a durable timer) while analysis runs at its
//! interval → promote (switch all to the canary, keep the stable colour warm, retire it).
//!
//! - A failed analysis rolls back at once: stable capacity first, then every service's weight
//!   back to the stable colour together.
//! - Missing data, query errors, too little traffic are inconclusive: never promote on them;
//!   hold (the step's clock stops), alert, and roll back only after `inconclusive_hold_secs`.
//! - Signals `pause` / `resume` / `abort`; Update `promote` (skips the remaining holds, records
//!   who); Update `approve` when the request sets an approval step.

use crate::activities::CutoverActivities as Act;
use crate::failures;
use crate::names;
use crate::options;
use crate::time::rfc3339;
use futures::FutureExt;
use proto::{
    AbortRequest, AnalysisRequest, AnalysisResult, ApprovalDecision, BreakerHold, ColorRequest,
    DeployRequest, MetricsSnapshot, Notification, ServiceWeight, ShiftControl, ShiftDecision,
    ShiftRequest, ShiftStatus, SwitchRequest, WeightsRequest,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use temporalio_macros::{workflow, workflow_methods};
type ValidatorResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
use temporalio_sdk::{
    ApplicationFailure, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct ShiftWorkflow {
    request: ShiftRequest,
    status: ShiftStatus,
    abort: Option<AbortRequest>,
    promote: Option<ShiftControl>,
    approved: Option<ApprovalDecision>,
    /// The environment's circuit breaker holds the canary at its step (the reason), when the
    /// run knows about breakers (patch `breaker-v1`).
    breaker: Option<String>,
    breaker_aware: bool,
}

fn terminal(reason: String, type_name: &str) -> temporalio_sdk::WorkflowTermination {
    ApplicationFailure::builder(reason)
        .type_name(type_name.to_owned())
        .non_retryable(true)
        .build()
        .into()
}

use crate::failures::innermost as why;

fn aborted(a: &AbortRequest) -> String {
    format!("aborted by {}: {}", a.by, a.reason)
}

fn now<W>(ctx: &WorkflowContext<W>) -> SystemTime {
    ctx.workflow_time().unwrap_or(UNIX_EPOCH)
}

fn ms(a: SystemTime, b: SystemTime) -> u64 {
    b.duration_since(a).unwrap_or_default().as_millis() as u64
}

enum Stop {
    Abort(AbortRequest),
    Promote,
}

impl ShiftWorkflow {
    fn event(ctx: &WorkflowContext<Self>, text: String) {
        let at = rfc3339(now(ctx));
        ctx.set_current_details(text.clone());
        ctx.state_mut(|s| s.status.events.push(format!("{at} {text}")));
    }

    fn phase(ctx: &WorkflowContext<Self>, p: &str) {
        ctx.state_mut(|s| s.status.phase = p.to_owned());
        Self::event(ctx, format!("phase {p}"));
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
        let _ = ctx
            .execute_activity(Act::notify, n, options::notify())
            .await;
    }

    fn names(req: &ShiftRequest) -> Vec<String> {
        req.services.iter().map(|s| s.name.clone()).collect()
    }

    fn weights(
        req: &ShiftRequest,
        stable: &str,
        canary: &str,
        pct: u32,
        id: String,
    ) -> WeightsRequest {
        WeightsRequest {
            platform: req.platform.clone(),
            weights: req
                .services
                .iter()
                .map(|s| ServiceWeight {
                    service: s.name.clone(),
                    stable_color: stable.to_owned(),
                    canary_color: canary.to_owned(),
                    canary_percent: pct,
                })
                .collect(),
            request_id: id,
            environment: req.environment.clone(),
        }
    }

    async fn analyze(
        ctx: &WorkflowContext<Self>,
        stable: &str,
        canary: &str,
        pct: u32,
        base_c: &Option<MetricsSnapshot>,
        base_s: &Option<MetricsSnapshot>,
    ) -> AnalysisResult {
        let req = ctx.state(|s| s.request.clone());
        let a = AnalysisRequest {
            platform: req.platform.clone(),
            provider: req.provider.clone(),
            services: Self::names(&req),
            stable_color: stable.to_owned(),
            canary_color: canary.to_owned(),
            target_percent: pct,
            share_tolerance_pct: req.share_tolerance_pct,
            thresholds: req.thresholds,
            baseline_canary: base_c.clone(),
            baseline_stable: base_s.clone(),
            environment: req.environment.clone(),
        };
        match ctx
            .execute_activity(Act::analyze_canary, a, options::analysis())
            .await
        {
            Ok(r) => r,
            Err(e) => AnalysisResult {
                outcome: "inconclusive".into(),
                services: vec![proto::ServiceAnalysis {
                    service: "*".into(),
                    outcome: "inconclusive".into(),
                    detail: format!("analysis failed: {}", why(&e)),
                    ..Default::default()
                }],
                ..Default::default()
            },
        }
    }

    fn record(ctx: &WorkflowContext<Self>, pct: u32, r: &AnalysisResult, detail: &str) {
        let d = ShiftDecision {
            at: rfc3339(now(ctx)),
            percent: pct,
            outcome: r.outcome.clone(),
            services: r.services.clone(),
            detail: detail.to_owned(),
        };
        ctx.state_mut(|s| {
            s.status.decisions.push(d);
            // Keep the history of decisions bounded in the status (all are in the history).
            let n = s.status.decisions.len();
            if n > 200 {
                s.status.decisions.drain(..n - 200);
            }
        });
    }

    fn summary(r: &AnalysisResult) -> String {
        r.services
            .iter()
            .filter(|s| s.outcome != "passed")
            .map(|s| format!("{} {}", s.service, s.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn held_by_breaker(ctx: &WorkflowContext<Self>) -> bool {
        ctx.state(|s| s.breaker_aware && s.breaker.is_some())
    }

    fn stop(ctx: &WorkflowContext<Self>) -> Option<Stop> {
        ctx.state(|s| {
            s.abort
                .clone()
                .map(Stop::Abort)
                .or(s.promote.as_ref().map(|_| Stop::Promote))
        })
    }

    /// When an abort was requested: rolls back and gives the run's result.
    async fn roll_back_if_aborted(
        ctx: &WorkflowContext<Self>,
        stable: &str,
        canary: &str,
    ) -> Option<WorkflowResult<ShiftStatus>> {
        let a = ctx.state(|s| s.abort.clone())?;
        Some(Self::roll_back(ctx, stable, canary, aborted(&a), now(ctx), "aborted").await)
    }

    /// Stable capacity first, then every weight back to stable together, verified; the canary
    /// colour stopped.
    async fn roll_back(
        ctx: &WorkflowContext<Self>,
        stable: &str,
        canary: &str,
        reason: String,
        detected: SystemTime,
        outcome: &str,
    ) -> WorkflowResult<ShiftStatus> {
        Self::phase(ctx, "rolling_back");
        Self::event(ctx, format!("rolling back to {stable}: {reason}"));
        let req = ctx.state(|s| s.request.clone());
        let ready_timeout =
            Duration::from_secs(req.timings.map_or(120, |t| t.ready_timeout_secs).max(1));
        let capacity = ColorRequest {
            platform: req.platform.clone(),
            color: stable.to_owned(),
            services: req.services.clone(),
            timeout_secs: ready_timeout.as_secs(),
            ..Default::default()
        };
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
        let back = Self::weights(
            &req,
            stable,
            canary,
            0,
            format!("{}/weights/rollback", req.deployment_id),
        );
        match ctx
            .execute_activity(Act::set_weights, back, options::traffic_move())
            .await
        {
            Ok(_) => {
                let revert = ms(detected, now(ctx)) as f64;
                ctx.state_mut(|s| {
                    s.status.percent = 0;
                    s.status.revert_ms = revert;
                });
                Self::event(
                    ctx,
                    format!("all services back on {stable} ({revert:.0} ms after the breach)"),
                );
            }
            Err(e) => problems.push(format!("weights back to {stable}: {}", why(&e))),
        }
        let stop = ColorRequest {
            platform: req.platform.clone(),
            color: canary.to_owned(),
            services: req.services.clone(),
            stop: true,
            ..Default::default()
        };
        let _ = ctx
            .execute_activity(Act::scale_color, stop, options::platform_call())
            .await;
        let (final_outcome, final_reason) = if problems.is_empty() {
            (outcome.to_owned(), reason.clone())
        } else {
            (
                "failed".to_owned(),
                format!("{reason}; rollback problems: {}", problems.join("; ")),
            )
        };
        ctx.state_mut(|s| {
            s.status.phase = "done".into();
            s.status.outcome = final_outcome.clone();
            s.status.reason = final_reason.clone();
        });
        Self::notify(
            ctx,
            "rolled_back",
            format!("{} canary rolled back: {final_reason}", req.deployment_id),
        )
        .await;
        Err(terminal(
            format!("canary {final_outcome}: {final_reason}"),
            if final_outcome == "failed" {
                failures::DEPLOYMENT_FAILED
            } else if outcome == "aborted" {
                failures::DEPLOYMENT_ABORTED
            } else {
                failures::DEPLOYMENT_ROLLED_BACK
            },
        ))
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
        ctx.state_mut(|s| {
            s.request = req.clone();
            s.status.deployment_id = req.deployment_id.clone();
            s.status.environment = req.environment.clone();
            s.breaker_aware = breaker_aware;
        });
        Self::phase(ctx, "preflight");
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
                terminal(
                    format!("preflight: {}", why(&e)),
                    failures::DEPLOYMENT_FAILED,
                )
            })?;
        let (stable, canary) = (pre.active_color.clone(), pre.target_color.clone());
        ctx.state_mut(|s| {
            s.status.stable_color = stable.clone();
            s.status.canary_color = canary.clone();
        });
        Self::notify(
            ctx,
            "started",
            format!(
                "{} canary of {} on {canary} started",
                req.deployment_id, req.revision
            ),
        )
        .await;

        Self::phase(ctx, "starting");
        let ready_timeout =
            Duration::from_secs(req.timings.map_or(120, |t| t.ready_timeout_secs).max(1));
        let colour = ColorRequest {
            platform: req.platform.clone(),
            color: canary.clone(),
            services: req.services.clone(),
            timeout_secs: ready_timeout.as_secs(),
            ..Default::default()
        };
        let started = match ctx
            .execute_activity(
                Act::start_color,
                colour.clone(),
                options::start_instances(ready_timeout),
            )
            .await
        {
            Ok(()) => ctx
                .execute_activity(Act::wait_ready, colour, options::long_wait(ready_timeout))
                .await
                .map_err(|e| why(&e)),
            Err(e) => Err(why(&e)),
        };
        if let Err(e) = started {
            return Self::roll_back(
                ctx,
                &stable,
                &canary,
                format!("{canary} did not start: {e}"),
                now(ctx),
                "failed",
            )
            .await;
        }

        let interval = Duration::from_millis(req.analysis_interval_ms.max(200));
        let hold = Duration::from_secs(req.step_hold_secs);
        let inconclusive_limit = Duration::from_secs(req.inconclusive_hold_secs.max(1));
        // Baselines for the local provider: counters before any canary traffic.
        let first = Self::analyze(ctx, &stable, &canary, 0, &None, &None).await;
        let (mut base_c, mut base_s) = (first.canary, first.stable);
        let steps: Vec<u32> = if req.steps.is_empty() {
            vec![10, 25, 50, 75, 100]
        } else {
            req.steps.clone()
        };

        Self::phase(ctx, "shifting");
        'steps: for (i, pct) in steps.iter().copied().enumerate() {
            if let Some(done) = Self::roll_back_if_aborted(ctx, &stable, &canary).await {
                return done;
            }
            if matches!(Self::stop(ctx), Some(Stop::Promote)) {
                break 'steps;
            }
            // Optional approval before this step.
            if req.approval_at_percent == pct && req.approval.as_ref().is_some_and(|a| a.required) {
                Self::phase(ctx, "awaiting_approval");
                Self::notify(
                    ctx,
                    "awaiting_approval",
                    format!("{} waits for approval before {pct}%", req.deployment_id),
                )
                .await;
                let _ = ctx
                    .wait_condition(|s| s.approved.is_some() || s.abort.is_some())
                    .await;
                if let Some(done) = Self::roll_back_if_aborted(ctx, &stable, &canary).await {
                    return done;
                }
                let by = ctx.state(|s| {
                    s.approved
                        .as_ref()
                        .map(|d| d.approver.clone())
                        .unwrap_or_default()
                });
                Self::event(ctx, format!("approved by {by} before {pct}%"));
                Self::phase(ctx, "shifting");
            }
            // The circuit breaker holds the canary where it is: no next step while it blocks.
            if Self::held_by_breaker(ctx) {
                Self::event(ctx, format!("held before {pct}% by the circuit breaker"));
                let _ = ctx
                    .wait_condition(|s| s.breaker.is_none() || s.abort.is_some())
                    .await;
                if let Some(done) = Self::roll_back_if_aborted(ctx, &stable, &canary).await {
                    return done;
                }
            }
            let set = Self::weights(
                &req,
                &stable,
                &canary,
                pct,
                format!("{}/weights/{i}", req.deployment_id),
            );
            if let Err(e) = ctx
                .execute_activity(Act::set_weights, set, options::traffic_move())
                .await
            {
                return Self::roll_back(
                    ctx,
                    &stable,
                    &canary,
                    format!("setting {pct}%: {}", why(&e)),
                    now(ctx),
                    "failed",
                )
                .await;
            }
            let step_started = now(ctx);
            ctx.state_mut(|s| {
                s.status.percent = pct;
                s.status.held_ms = 0;
                s.status.step_started_at = rfc3339(step_started);
            });
            Self::event(ctx, format!("step {}: {pct}% on {canary}", i + 1));

            // Hold: analysis at every interval; the step's clock runs only while analysis
            // passes with the observed share near the target, and not while paused.
            let mut held = Duration::ZERO;
            let mut inconclusive_since: Option<SystemTime> = None;
            let mut alerted = false;
            loop {
                if held >= hold && ctx.state(|s| !s.status.paused) && !Self::held_by_breaker(ctx) {
                    break;
                }
                let interrupted = temporalio_sdk::workflows::select! {
                    _ = ctx.timer(interval).fuse() => false,
                    _ = ctx.wait_condition(|s| s.abort.is_some() || s.promote.is_some()).fuse() => true,
                };
                if interrupted {
                    match Self::stop(ctx) {
                        Some(Stop::Abort(a)) => {
                            return Self::roll_back(
                                ctx,
                                &stable,
                                &canary,
                                aborted(&a),
                                now(ctx),
                                "aborted",
                            )
                            .await;
                        }
                        _ => break 'steps,
                    }
                }
                let r = Self::analyze(ctx, &stable, &canary, pct, &base_c, &base_s).await;
                if r.canary.is_some() {
                    base_c = r.canary.clone();
                    base_s = r.stable.clone();
                }
                let t = now(ctx);
                if r.outcome == "failed" {
                    let why = Self::summary(&r);
                    Self::record(ctx, pct, &r, "breach");
                    return Self::roll_back(
                        ctx,
                        &stable,
                        &canary,
                        format!("analysis failed at {pct}%: {why}"),
                        t,
                        "rolled_back",
                    )
                    .await;
                }
                if r.outcome == "passed" && r.share_ok {
                    inconclusive_since = None;
                    if !ctx.state(|s| s.status.paused) && !Self::held_by_breaker(ctx) {
                        held += interval;
                    }
                    Self::record(ctx, pct, &r, "");
                } else {
                    let since = *inconclusive_since.get_or_insert(t);
                    let detail = if r.outcome == "passed" {
                        "observed share not yet near the target".to_owned()
                    } else {
                        Self::summary(&r)
                    };
                    Self::record(ctx, pct, &r, &format!("held: {detail}"));
                    if !alerted {
                        alerted = true;
                        Self::event(ctx, format!("holding at {pct}%: {detail}"));
                        Self::notify(
                            ctx,
                            "held",
                            format!("{} holds at {pct}%: {detail}", req.deployment_id),
                        )
                        .await;
                    }
                    if Duration::from_millis(ms(since, t)) >= inconclusive_limit {
                        return Self::roll_back(
                            ctx,
                            &stable,
                            &canary,
                            format!(
                                "inconclusive for {}s at {pct}%: {detail}",
                                inconclusive_limit.as_secs()
                            ),
                            t,
                            "rolled_back",
                        )
                        .await;
                    }
                }
                ctx.state_mut(|s| s.status.held_ms = held.as_millis() as u64);
            }
            Self::event(
                ctx,
                format!("step {}: {pct}% held {} s, promoted", i + 1, held.as_secs()),
            );
        }

        // Promote: everything to the canary in one step, verified; stable warm, then retired.
        Self::phase(ctx, "promoting");
        if let Some(p) = ctx.state(|s| s.promote.clone()) {
            ctx.state_mut(|s| s.status.promoted_by = p.by.clone());
            Self::event(ctx, format!("promoted by {}: {}", p.by, p.reason));
        }
        let all = Self::names(&req);
        let switch = SwitchRequest {
            platform: req.platform.clone(),
            color: canary.clone(),
            services: all.clone(),
            atomic: true,
            request_id: format!("{}/switch", req.deployment_id),

            environment: req.environment.clone(),
        };
        if let Err(e) = ctx
            .execute_activity(Act::switch_traffic, switch.clone(), options::traffic_move())
            .await
        {
            return Self::roll_back(
                ctx,
                &stable,
                &canary,
                format!("promotion failed: {}", why(&e)),
                now(ctx),
                "failed",
            )
            .await;
        }
        if let Err(e) = ctx
            .execute_activity(Act::verify_active, switch, options::platform_call())
            .await
        {
            return Self::roll_back(
                ctx,
                &stable,
                &canary,
                format!("promotion not verified: {}", why(&e)),
                now(ctx),
                "failed",
            )
            .await;
        }
        ctx.state_mut(|s| s.status.percent = 100);
        let warm = ColorRequest {
            platform: req.platform.clone(),
            color: stable.clone(),
            services: req.services.clone(),
            warm_size: true,
            ..Default::default()
        };
        let _ = ctx
            .execute_activity(Act::scale_color, warm, options::platform_call())
            .await;
        ctx.state_mut(|s| s.status.outcome = "succeeded".into());
        Self::notify(
            ctx,
            "succeeded",
            format!(
                "{} canary promoted: {} live on {canary}",
                req.deployment_id, req.revision
            ),
        )
        .await;
        let keep = Duration::from_secs(req.timings.map_or(0, |t| t.keep_warm_secs));
        ctx.timer(keep).await;
        let retire = ColorRequest {
            platform: req.platform.clone(),
            color: stable.clone(),
            services: req.services.clone(),
            stop: true,
            ..Default::default()
        };
        let _ = ctx
            .execute_activity(Act::scale_color, retire, options::platform_call())
            .await;
        Self::phase(ctx, "done");
        Ok(ctx.state(|s| s.status.clone()))
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
        if h.hold {
            self.status
                .events
                .push(format!("circuit breaker open, holding: {}", h.reason));
            self.status.breaker_hold = h.reason.clone();
            self.breaker = Some(h.reason);
        } else if self.breaker.take().is_some() {
            self.status.breaker_hold.clear();
            self.status
                .events
                .push("circuit breaker closed, going on".to_owned());
        }
    }

    #[signal(name = names::ABORT_SIGNAL)]
    pub fn abort(&mut self, _ctx: &mut SyncWorkflowContext<Self>, a: AbortRequest) {
        if self.abort.is_none() {
            self.abort = Some(a);
        }
    }

    #[update_validator(promote)]
    fn validate_promote(&self, _ctx: &WorkflowContextView, c: &ShiftControl) -> ValidatorResult {
        if c.by.trim().is_empty() {
            return Err("promote needs who (--as NAME)".into());
        }
        if self.breaker_aware
            && let Some(reason) = &self.breaker
        {
            return Err(format!("the circuit breaker is open: {reason}").into());
        }
        if !self.status.outcome.is_empty() || self.status.phase == "rolling_back" {
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
        let policy = self.request.approval.clone().unwrap_or_default();
        if self.status.phase != "awaiting_approval" {
            return Err("the canary is not waiting for an approval".into());
        }
        if d.deployment_id != self.request.deployment_id {
            return Err(format!(
                "deployment {} is not the one waiting ({})",
                d.deployment_id, self.request.deployment_id
            )
            .into());
        }
        if d.revision != self.request.revision {
            return Err(format!(
                "revision {} is not the one waiting ({})",
                d.revision, self.request.revision
            )
            .into());
        }
        if !policy.approvers.iter().any(|a| a == &d.approver) {
            return Err(format!(
                "{} may not approve {}",
                d.approver, self.request.environment
            )
            .into());
        }
        if policy.distinct_from_requester && d.approver == self.request.requested_by {
            return Err("the requester may not approve their own release".into());
        }
        Ok(())
    }

    #[update(name = names::APPROVE_UPDATE)]
    pub fn approve(&mut self, _ctx: &mut SyncWorkflowContext<Self>, d: ApprovalDecision) -> String {
        let by = d.approver.clone();
        self.approved = Some(d);
        format!("approved by {by}")
    }
}
