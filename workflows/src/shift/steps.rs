//! The canary's steps: approval and breaker gates, the weights of every service, and the hold
//! at each step while analysis runs at its interval.

use super::ShiftWorkflow;
use crate::activities::CutoverActivities as Act;
use crate::failures::innermost as why;
use crate::options;
use crate::release::journal::{enter, event, notify, now};
use crate::release::{Event, Outcome, Phase, Stop, Undo, Verdict, approval};
use crate::time::rfc3339;
use futures::FutureExt;
use proto::{
    AnalysisRequest, AnalysisResult, MetricsSnapshot, ServiceAnalysis, ServiceWeight,
    ShiftDecision, ShiftRequest, WeightsRequest,
};
use std::time::{Duration, SystemTime};
use temporalio_sdk::WorkflowContext;

/// Decisions kept in the status (all are in the history).
const DECISIONS_KEPT: usize = 200;

/// The steps of a request (default 10, 25, 50, 75, 100 %).
pub fn steps_of(req: &ShiftRequest) -> Vec<u32> {
    if req.steps.is_empty() {
        vec![10, 25, 50, 75, 100]
    } else {
        req.steps.clone()
    }
}

/// The step before which the approval gate stands, if the policy requires one. Runs before
/// `release-v2` asked only at `approval_at_percent` (0: never); now 0 asks before the first
/// step, so no live traffic reaches an unapproved canary.
pub fn approval_step(req: &ShiftRequest, steps: &[u32], v2: bool) -> Option<u32> {
    if !req.approval.as_ref().is_some_and(|a| a.required) {
        return None;
    }
    match req.approval_at_percent {
        0 if v2 => steps.first().copied(),
        0 => None,
        at => Some(at),
    }
}

/// Where the hold of a step stands after one analysis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hold {
    /// The step's clock ran (or stood still while paused or held).
    Counting,
    /// Not counted; inconclusive since the given time, within the limit.
    Inconclusive,
    /// Inconclusive for longer than the limit: roll back.
    TooLong,
    /// A failed analysis: roll back at once.
    Breach,
}

/// One analysis judged: `held` grows by `interval` only when it passed with the observed share
/// near the target and nothing (pause, breaker) stops the clock.
pub fn judge(
    verdict: Verdict,
    share_ok: bool,
    clock_runs: bool,
    inconclusive_for: Duration,
    limit: Duration,
) -> (Hold, bool) {
    match verdict {
        Verdict::Failed => (Hold::Breach, false),
        Verdict::Passed if share_ok => (Hold::Counting, clock_runs),
        _ if inconclusive_for >= limit => (Hold::TooLong, false),
        _ => (Hold::Inconclusive, false),
    }
}

fn names(req: &ShiftRequest) -> Vec<String> {
    req.services.iter().map(|s| s.name.clone()).collect()
}

pub fn weights(
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

fn summary(r: &AnalysisResult) -> String {
    r.services
        .iter()
        .filter(|s| s.outcome != Verdict::Passed.as_str())
        .map(|s| format!("{} {}", s.service, s.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Counters of the last analysis: the local provider measures from them.
#[derive(Default)]
struct Baseline {
    canary: Option<MetricsSnapshot>,
    stable: Option<MetricsSnapshot>,
}

impl ShiftWorkflow {
    async fn analyze(
        ctx: &WorkflowContext<Self>,
        stable: &str,
        canary: &str,
        pct: u32,
        base: &Baseline,
    ) -> AnalysisResult {
        let req = ctx.state(|s| s.request.clone());
        let a = AnalysisRequest {
            platform: req.platform.clone(),
            provider: req.provider.clone(),
            services: names(&req),
            stable_color: stable.to_owned(),
            canary_color: canary.to_owned(),
            target_percent: pct,
            share_tolerance_pct: req.share_tolerance_pct,
            thresholds: req.thresholds,
            baseline_canary: base.canary.clone(),
            baseline_stable: base.stable.clone(),
            environment: req.environment.clone(),
        };
        match ctx
            .execute_activity(Act::analyze_canary, a, options::analysis())
            .await
        {
            Ok(r) => r,
            Err(e) => AnalysisResult {
                outcome: Verdict::Inconclusive.as_str().into(),
                services: vec![ServiceAnalysis {
                    service: "*".into(),
                    outcome: Verdict::Inconclusive.as_str().into(),
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
            let n = s.status.decisions.len();
            if n > DECISIONS_KEPT {
                s.status.decisions.drain(..n - DECISIONS_KEPT);
            }
        });
    }

    /// What a stop between steps undoes: before the first weight moved (patch `release-v2`)
    /// only the canary colour is stopped; after, every weight goes back.
    fn undo_between_steps(ctx: &WorkflowContext<Self>) -> Undo {
        if ctx.state(|s| s.control.v2 && s.status.percent == 0) {
            Undo::StopTarget
        } else {
            Undo::WeightsBack
        }
    }

    /// An operator's stop between steps or during a hold.
    fn requested(ctx: &WorkflowContext<Self>) -> Result<(), Stop> {
        match ctx.state(|s| s.control.request.clone()) {
            Some(r) => Err(Stop::requested(&r, Self::undo_between_steps(ctx), now(ctx))),
            None => Ok(()),
        }
    }

    /// Every step in turn; a `promote` skips the remaining ones.
    pub(super) async fn shift(
        ctx: &WorkflowContext<Self>,
        stable: &str,
        canary: &str,
    ) -> Result<(), Stop> {
        let req = ctx.state(|s| s.request.clone());
        let v2 = Self::v2(ctx);
        // Baselines for the local provider: counters before any canary traffic.
        let first = Self::analyze(ctx, stable, canary, 0, &Baseline::default()).await;
        let mut base = Baseline {
            canary: first.canary,
            stable: first.stable,
        };
        let steps = steps_of(&req);
        let gate = approval_step(&req, &steps, v2);
        enter(ctx, Phase::Shifting);
        for (i, pct) in steps.iter().copied().enumerate() {
            Self::requested(ctx)?;
            if ctx.state(|s| s.promote.is_some()) {
                break;
            }
            if gate == Some(pct) {
                Self::approval(ctx, pct, canary).await?;
            }
            Self::breaker_gate(ctx, pct).await?;
            let set = weights(
                &req,
                stable,
                canary,
                pct,
                format!("{}/weights/{i}", req.deployment_id),
            );
            if let Err(e) = ctx
                .execute_activity(Act::set_weights, set, options::traffic_move())
                .await
            {
                let reason = format!("setting {pct}%: {}", why(&e));
                return Err(Stop::failed(Undo::WeightsBack, reason, now(ctx)));
            }
            let step_started = now(ctx);
            ctx.state_mut(|s| {
                s.status.percent = pct;
                s.status.held_ms = 0;
                s.status.step_started_at = rfc3339(step_started);
            });
            event(
                ctx,
                Event::Step {
                    n: i + 1,
                    percent: pct,
                    canary,
                },
            );
            match Self::hold(ctx, stable, canary, pct, &mut base).await? {
                Some(held) => event(
                    ctx,
                    Event::StepPassed {
                        n: i + 1,
                        percent: pct,
                        held_secs: held.as_secs(),
                    },
                ),
                None => break,
            }
        }
        Ok(())
    }

    /// The approval gate before `pct`: a decision, a rejection, a stop or (patch `release-v2`)
    /// the approval timeout.
    async fn approval(ctx: &WorkflowContext<Self>, pct: u32, canary: &str) -> Result<(), Stop> {
        approval::ask(ctx, &format!("{pct}% of live traffic on {canary}")).await;
        let timeout = Self::v2(ctx).then(|| {
            let secs = ctx.state(|s| {
                s.request
                    .timings
                    .map_or(86_400, |t| t.approval_timeout_secs)
            });
            Duration::from_secs(secs.max(1))
        });
        approval::gate(ctx, timeout, Self::undo_between_steps(ctx)).await?;
        enter(ctx, Phase::Shifting);
        Ok(())
    }

    /// The circuit breaker holds the canary where it is: no next step while it blocks.
    async fn breaker_gate(ctx: &WorkflowContext<Self>, pct: u32) -> Result<(), Stop> {
        if !ctx.state(|s| s.control.held()) {
            return Ok(());
        }
        event(ctx, Event::HeldByBreaker { percent: pct });
        let _ = ctx
            .wait_condition(|s| s.control.breaker.is_none() || s.control.request.is_some())
            .await;
        Self::requested(ctx)
    }

    /// Holds at `pct`: analysis at every interval; the step's clock runs only while analysis
    /// passes with the observed share near the target, and not while paused or held. The time
    /// held, or None when a `promote` ends the steps.
    async fn hold(
        ctx: &WorkflowContext<Self>,
        stable: &str,
        canary: &str,
        pct: u32,
        base: &mut Baseline,
    ) -> Result<Option<Duration>, Stop> {
        let req = ctx.state(|s| s.request.clone());
        let hold = Duration::from_secs(req.step_hold_secs);
        let mut clock = StepClock {
            pct,
            interval: Duration::from_millis(req.analysis_interval_ms.max(200)),
            limit: Duration::from_secs(req.inconclusive_hold_secs.max(1)),
            held: Duration::ZERO,
            inconclusive_since: None,
            alerted: false,
        };
        loop {
            if clock.held >= hold && Self::clock_runs(ctx) {
                return Ok(Some(clock.held));
            }
            let interrupted = temporalio_sdk::workflows::select! {
                _ = ctx.timer(clock.interval).fuse() => false,
                _ = ctx.wait_condition(|s| s.control.request.is_some() || s.promote.is_some()).fuse() => true,
            };
            if interrupted {
                Self::requested(ctx)?;
                return Ok(None);
            }
            let r = Self::analyze(ctx, stable, canary, pct, base).await;
            if r.canary.is_some() {
                base.canary = r.canary.clone();
                base.stable = r.stable.clone();
            }
            Self::count(ctx, &mut clock, &r).await?;
            ctx.state_mut(|s| s.status.held_ms = clock.held.as_millis() as u64);
        }
    }

    /// Not paused, not held by the breaker.
    fn clock_runs(ctx: &WorkflowContext<Self>) -> bool {
        ctx.state(|s| !s.status.paused && !s.control.held())
    }

    /// One analysis of a hold: counted, held (alerting once), or the end of the canary.
    async fn count(
        ctx: &WorkflowContext<Self>,
        clock: &mut StepClock,
        r: &AnalysisResult,
    ) -> Result<(), Stop> {
        let (t, pct, verdict) = (now(ctx), clock.pct, Verdict::of(&r.outcome));
        let since = match verdict {
            Verdict::Passed if r.share_ok => None,
            Verdict::Failed => None,
            _ => Some(*clock.inconclusive_since.get_or_insert(t)),
        };
        let for_ = since.map_or(Duration::ZERO, |s| t.duration_since(s).unwrap_or_default());
        let (hold, counts) = judge(
            verdict,
            r.share_ok,
            Self::clock_runs(ctx),
            for_,
            clock.limit,
        );
        let detail = match (hold, verdict) {
            (Hold::Counting, _) => String::new(),
            (_, Verdict::Passed) => "observed share not yet near the target".to_owned(),
            _ => summary(r),
        };
        let back = |reason: String| Stop::new(Outcome::RolledBack, Undo::WeightsBack, reason, t);
        match hold {
            Hold::Breach => {
                Self::record(ctx, pct, r, "breach");
                Err(back(format!("analysis failed at {pct}%: {}", summary(r))))
            }
            Hold::Counting => {
                clock.inconclusive_since = None;
                if counts {
                    clock.held += clock.interval;
                }
                Self::record(ctx, pct, r, "");
                Ok(())
            }
            Hold::Inconclusive | Hold::TooLong => {
                Self::record(ctx, pct, r, &format!("held: {detail}"));
                if !clock.alerted {
                    clock.alerted = true;
                    event(
                        ctx,
                        Event::Holding {
                            percent: pct,
                            detail: &detail,
                        },
                    );
                    let id = ctx.state(|s| s.request.deployment_id.clone());
                    notify(ctx, "held", format!("{id} holds at {pct}%: {detail}")).await;
                }
                if hold == Hold::TooLong {
                    let secs = clock.limit.as_secs();
                    return Err(back(format!(
                        "inconclusive for {secs}s at {pct}%: {detail}"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// A step's hold in progress.
struct StepClock {
    pct: u32,
    interval: Duration,
    /// Inconclusive longer than this: roll back.
    limit: Duration,
    held: Duration,
    inconclusive_since: Option<SystemTime>,
    alerted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ApprovalPolicy;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_clock_counts_only_passing_analyses_at_the_target_share() {
        let limit = 60 * S;
        assert_eq!(
            judge(Verdict::Passed, true, true, Duration::ZERO, limit),
            (Hold::Counting, true)
        );
        // Paused or held by the breaker: counted as seen, but the clock stands still.
        assert_eq!(
            judge(Verdict::Passed, true, false, Duration::ZERO, limit),
            (Hold::Counting, false)
        );
        // Passing while the share is off is not a pass.
        assert_eq!(
            judge(Verdict::Passed, false, true, 10 * S, limit),
            (Hold::Inconclusive, false)
        );
        assert_eq!(
            judge(Verdict::Inconclusive, true, true, 59 * S, limit),
            (Hold::Inconclusive, false)
        );
        assert_eq!(
            judge(Verdict::Inconclusive, true, true, 60 * S, limit),
            (Hold::TooLong, false)
        );
        // A failed analysis is a breach at once, however long it was inconclusive before.
        assert_eq!(
            judge(Verdict::Failed, true, true, Duration::ZERO, limit),
            (Hold::Breach, false)
        );
    }

    #[test]
    fn the_approval_gate_stands_before_the_configured_step_or_the_first() {
        let mut req = ShiftRequest {
            approval: Some(ApprovalPolicy {
                required: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let steps = steps_of(&req);
        assert_eq!(steps, vec![10, 25, 50, 75, 100]);
        assert_eq!(approval_step(&req, &steps, true), Some(10));
        // Before release-v2 an approval at 0 % was never asked.
        assert_eq!(approval_step(&req, &steps, false), None);
        req.approval_at_percent = 50;
        assert_eq!(approval_step(&req, &steps, true), Some(50));
        req.approval.as_mut().unwrap().required = false;
        assert_eq!(approval_step(&req, &steps, true), None);
    }
}
