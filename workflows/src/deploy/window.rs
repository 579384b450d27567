//! The post-switch validation window on live traffic: a check every `check_interval_ms` for
//! `validation_window_secs`; too little traffic is inconclusive (never healthy) and is held for
//! at most `inconclusive_hold_secs` more; any failed check rolls back at once.

use super::DeployWorkflow;
use crate::activities::CutoverActivities as Act;
use crate::failures::innermost as why;
use crate::options;
use crate::release::journal::{enter, now};
use crate::release::{Outcome, Phase, Stop, Undo, Verdict, colour};
use crate::time::rfc3339;
use futures::FutureExt;
use proto::{CheckReport, CheckResult, Timings, WindowCheckRequest};
use std::time::Duration;
use temporalio_sdk::WorkflowContext;

/// How many checks the window takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub interval: Duration,
    /// Checks that make up the window.
    pub in_window: u64,
    /// And the most, with the inconclusive hold.
    pub max: u64,
}

impl Plan {
    pub fn of(t: &Timings) -> Plan {
        let interval = Duration::from_millis(t.check_interval_ms.max(100));
        let every = interval.as_millis() as u64;
        let in_window = (t.validation_window_secs * 1000 / every).max(1);
        Plan {
            interval,
            in_window,
            max: in_window + t.inconclusive_hold_secs * 1000 / every,
        }
    }
}

/// What the `n`-th check (from 1) of the window means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowVerdict {
    /// Keep checking.
    Continue,
    /// The window passed.
    Healthy,
    /// A check failed: roll back (why).
    Breach(String),
    /// Still not conclusive at the end of the hold: roll back (why).
    Inconclusive(String),
}

/// One check of the window judged: a failure at any time is a breach; healthy only once the
/// window is complete and the check passed; inconclusive past the hold.
pub fn judge(report: &CheckReport, n: u64, plan: Plan) -> WindowVerdict {
    let lines = |keep: &dyn Fn(Verdict) -> bool| {
        report
            .results
            .iter()
            .filter(|r| keep(Verdict::of(&r.outcome)))
            .map(|r| format!("{} {}", r.service, r.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let failed = lines(&|v| v == Verdict::Failed);
    if !failed.is_empty() {
        return WindowVerdict::Breach(format!("post-switch validation failed: {failed}"));
    }
    if n >= plan.in_window && report.passed {
        return WindowVerdict::Healthy;
    }
    if n >= plan.max {
        let why = lines(&|v| v != Verdict::Passed);
        return WindowVerdict::Inconclusive(format!(
            "post-switch validation stayed inconclusive: {why}"
        ));
    }
    WindowVerdict::Continue
}

/// Patch: a stop during the validation window moves traffic back first (the previous colour is
/// still at full size), then verifies; before it, the Rollback workflow ran capacity first.
pub const FAST_REVERT: &str = "fast-revert";

impl DeployWorkflow {
    /// The window after the switch. A stop request or a bad window rolls back.
    pub(super) async fn validate(
        ctx: &WorkflowContext<Self>,
        window: WindowCheckRequest,
    ) -> Result<(), Stop> {
        enter(ctx, Phase::Validating);
        let plan = Plan::of(&ctx.state(|s| s.request.timings.unwrap_or_default()));
        // The previous colour is still at full size here: traffic can go straight back.
        let undo = if ctx.patched(FAST_REVERT) {
            Undo::SwitchBack
        } else {
            Undo::RollBack
        };
        let back = |ctx: &WorkflowContext<Self>, reason: String| {
            Stop::new(Outcome::RolledBack, undo, reason, now(ctx))
        };
        let mut n = 0u64;
        loop {
            n += 1;
            let interrupted = temporalio_sdk::workflows::select! {
                _ = ctx.timer(plan.interval).fuse() => false,
                _ = ctx.wait_condition(|s| s.control.request.is_some()).fuse() => true,
            };
            if let Some(r) = Self::stop_requested(ctx).filter(|_| interrupted) {
                return Err(Stop::requested(&r, undo, now(ctx)));
            }
            let report = match ctx
                .execute_activity(Act::check_window, window.clone(), options::platform_call())
                .await
            {
                Ok(r) => r,
                Err(e) => CheckReport {
                    passed: false,
                    results: vec![CheckResult {
                        name: "validation".into(),
                        outcome: Verdict::Inconclusive.as_str().into(),
                        detail: why(&e),
                        ..Default::default()
                    }],
                },
            };
            let at = rfc3339(now(ctx));
            ctx.state_mut(|s| colour::merge_checks(&mut s.status.checks, &report, &at));
            match judge(&report, n, plan) {
                WindowVerdict::Continue => {}
                WindowVerdict::Healthy => return Ok(()),
                WindowVerdict::Breach(reason) | WindowVerdict::Inconclusive(reason) => {
                    return Err(back(ctx, reason));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::of(&Timings {
            check_interval_ms: 500,
            validation_window_secs: 3,
            inconclusive_hold_secs: 5,
            ..Default::default()
        })
    }

    fn report(rows: &[(&str, &str)]) -> CheckReport {
        CheckReport {
            passed: rows.iter().all(|(_, o)| *o == "passed"),
            results: rows
                .iter()
                .map(|(svc, o)| CheckResult {
                    service: (*svc).into(),
                    outcome: (*o).into(),
                    detail: format!("{o} detail"),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_window_is_counted_in_checks_and_the_hold_extends_it() {
        let p = plan();
        assert_eq!((p.in_window, p.max), (6, 16));
        // An interval longer than the window still takes one check.
        let one = Plan::of(&Timings {
            check_interval_ms: 10_000,
            validation_window_secs: 3,
            ..Default::default()
        });
        assert_eq!((one.in_window, one.max), (1, 1));
    }

    #[test]
    fn healthy_only_after_a_full_window_a_failure_at_once_inconclusive_past_the_hold() {
        let p = plan();
        let ok = report(&[("api-gateway", "passed"), ("order-execution", "passed")]);
        assert_eq!(judge(&ok, 5, p), WindowVerdict::Continue);
        assert_eq!(judge(&ok, 6, p), WindowVerdict::Healthy);
        let bad = report(&[("api-gateway", "passed"), ("order-execution", "failed")]);
        assert_eq!(
            judge(&bad, 1, p),
            WindowVerdict::Breach(
                "post-switch validation failed: order-execution failed detail".into()
            )
        );
        let thin = report(&[
            ("api-gateway", "inconclusive"),
            ("order-execution", "passed"),
        ]);
        assert_eq!(judge(&thin, 6, p), WindowVerdict::Continue);
        assert_eq!(judge(&thin, 15, p), WindowVerdict::Continue);
        assert_eq!(
            judge(&thin, 16, p),
            WindowVerdict::Inconclusive(
                "post-switch validation stayed inconclusive: api-gateway inconclusive detail"
                    .into()
            )
        );
        // An unreadable outcome is never a pass.
        let odd = report(&[("api-gateway", "PASSED")]);
        assert_eq!(
            judge(&odd, 16, p),
            WindowVerdict::Inconclusive(
                "post-switch validation stayed inconclusive: api-gateway PASSED detail".into()
            )
        );
    }
}
