//! The circuit breaker of an environment: one long-running entity workflow per environment
//! (`breaker-<env>`), so its state survives any crash and every change is in its history.
//!
//! It is open while at least one reason holds:
//! - a manual trip (`cutover breaker trip`), until `cutover breaker reset`;
//! - firing alerts (Prometheus alerts API or Alertmanager), an SLO burn rate above its limit
//!   (both read by the `breaker_probe` activity at the probe interval);
//! - `max_consecutive_failures` failed or rolled-back deployments in a row (reported by the
//!   deployments' notifications through the signal `deployment_finished`);
//! - a freeze window of the environment's time zone (market hours), or a manual freeze.
//!
//! While open and not overridden it *blocks*: new deployments are refused with the reasons
//! (the CLI asks first; preflight asks again), and the environment's running deployment is
//! told to hold (signal `breaker_hold`): a canary stays at its current step, a blue-green
//! deployment does not switch. An override (reason and expiry required) lets deployments
//! through while open; it ends on its own at its expiry. Rolling back is never held.

use crate::activities::CutoverActivities as Act;
use crate::names;
use crate::options;
use crate::release::{Outcome, contract};
use crate::time::rfc3339;
use futures::FutureExt;
use proto::{
    BreakerAction, BreakerGrant, BreakerHold, BreakerProbe, BreakerRequest, BreakerStatus,
    Notification, ProbeUnread,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ContinueAsNewOptions, SignalWorkflowOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

type ValidatorResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Audit events kept in the status (every one is in the history).
const EVENTS_KEPT: usize = 100;
/// Deployment outcomes kept in the status.
const RECENT_KEPT: usize = 20;
/// Loop turns before the history is handed over to a new run.
const TURNS_PER_RUN: u32 = 400;

#[workflow]
#[derive(Default)]
pub struct BreakerWorkflow {
    status: BreakerStatus,
    /// Set by every signal and update: the main loop re-evaluates and tells the deployment.
    changed: bool,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn is_failure(outcome: &str) -> bool {
    matches!(
        Outcome::parse(outcome),
        Some(Outcome::Failed | Outcome::RolledBack)
    )
}

/// Whether the request's status has something for the probe to read.
fn probes(s: &BreakerStatus) -> bool {
    s.config.as_ref().is_some_and(|c| {
        !c.alerts_url.is_empty() || !c.burn_rate_query.is_empty() || !c.windows.is_empty()
    })
}

impl BreakerWorkflow {
    fn event(&mut self, at: SystemTime, text: String) {
        self.status.events.push(format!("{} {text}", rfc3339(at)));
        let n = self.status.events.len();
        if n > EVENTS_KEPT {
            self.status.events.drain(..n - EVENTS_KEPT);
        }
    }

    /// Takes a probe's reading. A source that could not be read keeps its last verdict;
    /// changes are audited.
    fn take_probe(&mut self, mut probe: BreakerProbe, t: SystemTime, typed: bool) {
        let before = self.status.probe.clone().unwrap_or_default();
        let unread = if typed {
            probe.unread.unwrap_or_default()
        } else {
            legacy_unread(&probe.errors)
        };
        if unread.alerts {
            probe.firing = before.firing.clone();
        }
        if unread.burn_rate {
            probe.burn_rate = before.burn_rate;
            probe.burn_rate_known = before.burn_rate_known;
        }
        if unread.freeze_windows {
            probe.window = before.window.clone();
        }
        if before.firing != probe.firing {
            let text = if probe.firing.is_empty() {
                "no alert firing any more".to_owned()
            } else {
                format!("alerts firing: {}", probe.firing.join(", "))
            };
            self.event(t, text);
        }
        if before.window != probe.window {
            let text = if probe.window.is_empty() {
                format!("freeze window {} closed", before.window)
            } else {
                format!("freeze window {} opened", probe.window)
            };
            self.event(t, text);
        }
        if before.errors != probe.errors && !probe.errors.is_empty() {
            self.event(t, format!("probe: {}", probe.errors.join("; ")));
        }
        self.status.probe = Some(probe);
    }

    /// Ends expired grants (audited), then recomputes the reasons, `open` and `blocking`.
    fn evaluate(&mut self, now: SystemTime) {
        let now_ms = unix_ms(now);
        let expired = |g: &BreakerGrant| g.until_unix_ms != 0 && g.until_unix_ms <= now_ms;
        if let Some(o) = self.status.r#override.clone()
            && expired(&o)
        {
            self.status.r#override = None;
            self.event(
                now,
                format!("override by {} expired (it was: {})", o.by, o.reason),
            );
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.status.freezes)
            .into_iter()
            .partition(expired);
        self.status.freezes = kept;
        for f in gone {
            self.event(now, format!("freeze by {} ended ({})", f.by, f.reason));
        }

        let s = &self.status;
        let cfg = s.config.clone().unwrap_or_default();
        let mut reasons = Vec::new();
        if let Some(t) = &s.trip {
            reasons.push(format!("tripped by {} at {}: {}", t.by, t.since, t.reason));
        }
        if let Some(p) = &s.probe {
            if !p.firing.is_empty() {
                reasons.push(format!("alerts firing: {}", p.firing.join(", ")));
            }
            if p.burn_rate_known && cfg.max_burn_rate > 0.0 && p.burn_rate > cfg.max_burn_rate {
                reasons.push(format!(
                    "SLO burn rate {:.2} is above {:.2}",
                    p.burn_rate, cfg.max_burn_rate
                ));
            }
            if !p.window.is_empty() {
                reasons.push(format!("freeze window {}", p.window));
            }
        }
        if cfg.max_consecutive_failures > 0
            && s.consecutive_failures >= cfg.max_consecutive_failures
        {
            reasons.push(format!(
                "{} consecutive failed deployments (limit {})",
                s.consecutive_failures, cfg.max_consecutive_failures
            ));
        }
        for f in &s.freezes {
            let until = if f.until.is_empty() {
                "until lifted".to_owned()
            } else {
                format!("until {}", f.until)
            };
            reasons.push(format!("frozen by {} {until}: {}", f.by, f.reason));
        }
        self.status.open = !reasons.is_empty();
        self.status.blocking = self.status.open && self.status.r#override.is_none();
        self.status.reasons = reasons;
    }

    /// When the next grant expires (ms since the epoch), if any does.
    fn next_expiry(&self) -> Option<u64> {
        self.status
            .r#override
            .iter()
            .chain(self.status.freezes.iter())
            .map(|g| g.until_unix_ms)
            .filter(|u| *u != 0)
            .min()
    }

    fn grant(now: SystemTime, a: &BreakerAction) -> BreakerGrant {
        let until = (a.for_secs > 0).then(|| now + Duration::from_secs(a.for_secs));
        BreakerGrant {
            by: a.by.clone(),
            reason: a.reason.clone(),
            since: rfc3339(now),
            until: until.map(rfc3339).unwrap_or_default(),
            until_unix_ms: until.map(unix_ms).unwrap_or(0),
        }
    }

    fn needs_who_and_why(a: &BreakerAction) -> ValidatorResult {
        if a.by.trim().is_empty() {
            return Err("say who you are (--as NAME)".into());
        }
        if a.reason.trim().is_empty() {
            return Err("give a reason (--reason TEXT); it is kept in the audit trail".into());
        }
        Ok(())
    }
}

/// Patch: the sources a probe could not read come as `BreakerProbe.unread`, not from the
/// errors' wording.
pub const PROBE_TYPED: &str = "breaker-probe-typed";

/// The sources a probe recorded before [`PROBE_TYPED`] could not read, from its errors'
/// wording (kept only so that those histories replay).
fn legacy_unread(errors: &[String]) -> ProbeUnread {
    let failed = |src: &str| errors.iter().any(|e| e.starts_with(src));
    ProbeUnread {
        alerts: failed("alerts:"),
        burn_rate: failed("burn rate:"),
        freeze_windows: failed("freeze windows:"),
    }
}

fn now<W>(ctx: &WorkflowContext<W>) -> SystemTime {
    ctx.workflow_time().unwrap_or(UNIX_EPOCH)
}

fn sync_now<W>(ctx: &SyncWorkflowContext<W>) -> SystemTime {
    ctx.workflow_time().unwrap_or(UNIX_EPOCH)
}

/// The turns of the breaker's loop.
impl BreakerWorkflow {
    /// Reads the sources (alerts, burn rate, freeze windows); a source that could not be read
    /// keeps its last verdict, and a failed probe keeps them all.
    async fn probe(ctx: &WorkflowContext<Self>, env: &str) {
        let input = BreakerRequest {
            config: ctx.state(|s| s.status.config.clone()),
            carried: Some(BreakerStatus {
                environment: env.to_owned(),
                blocking: ctx.state(|s| s.status.blocking),
                ..Default::default()
            }),
        };
        let probe = match ctx
            .execute_activity(Act::breaker_probe, input, options::breaker_probe())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let mut p = ctx.state(|s| s.status.probe.clone()).unwrap_or_default();
                p.errors = vec![format!("probe failed: {}", crate::failures::innermost(&e))];
                p.unread = Some(ProbeUnread {
                    alerts: true,
                    burn_rate: true,
                    freeze_windows: true,
                });
                p
            }
        };
        let t = now(ctx);
        // Runs before this patch read which sources failed from the errors' wording.
        let typed = ctx.patched(PROBE_TYPED);
        ctx.state_mut(|s| s.take_probe(probe, t, typed));
    }

    /// The verdict changed: the audit event, the environment's running deployment told (hold
    /// or go on), the worker's gauges.
    async fn tell(ctx: &WorkflowContext<Self>, env: &str) {
        let t = now(ctx);
        let (blocking, reasons) = ctx.state(|s| (s.status.blocking, s.status.reasons.clone()));
        let text = if blocking {
            format!("breaker OPEN: {}", reasons.join("; "))
        } else if reasons.is_empty() {
            "breaker closed".to_owned()
        } else {
            format!("breaker overridden (open: {})", reasons.join("; "))
        };
        ctx.state_mut(|s| {
            s.status.since = rfc3339(t);
            s.event(t, text.clone());
        });
        let hold = BreakerHold {
            hold: blocking,
            reason: reasons.join("; "),
        };
        let _ = ctx
            .external_workflow(names::deploy_workflow_id(env), None)
            .signal(
                contract::BREAKER_HOLD,
                hold,
                SignalWorkflowOptions::default(),
            )
            .await;
        let status = ctx.state(|s| s.status.clone());
        let _ = ctx
            .execute_activity(Act::breaker_publish, status, options::notify())
            .await;
    }

    /// Until the next probe, the next expiry, or a signal or update; hourly when nothing is
    /// watched (keeps the history moving to continue-as-new).
    async fn sleep(ctx: &WorkflowContext<Self>, next_probe: u64) {
        let t_ms = unix_ms(now(ctx));
        let mut wake = u64::MAX;
        if ctx.state(|s| probes(&s.status)) {
            wake = next_probe.saturating_sub(t_ms);
        }
        if let Some(e) = ctx.state(|s| s.next_expiry()) {
            wake = wake.min(e.saturating_sub(t_ms));
        }
        let wake = Duration::from_millis(wake.clamp(50, 3_600_000));
        temporalio_sdk::workflows::select! {
            _ = ctx.timer(wake).fuse() => {},
            _ = ctx.wait_condition(|s| s.changed).fuse() => {},
        };
        ctx.state_mut(|s| s.changed = false);
    }
}

#[workflow_methods]
impl BreakerWorkflow {
    #[run(name = names::BREAKER_WORKFLOW)]
    pub async fn run(ctx: &mut WorkflowContext<Self>, req: BreakerRequest) -> WorkflowResult<()> {
        let config = req.config.clone().unwrap_or_default();
        let env = config.environment.clone();
        ctx.state_mut(|s| {
            s.status = req.carried.clone().unwrap_or_default();
            s.status.environment = env.clone();
            s.status.config = Some(config.clone());
        });
        if req.carried.is_none() {
            let t = now(ctx);
            ctx.state_mut(|s| s.event(t, format!("breaker of {env} started")));
        }
        // What the environment's deployments were last told (a new run starts from the
        // carried state, so it does not repeat the last signal).
        let mut told = ctx.state(|s| s.status.blocking);
        let mut next_probe = 0u64;
        let mut turns = 0u32;
        loop {
            turns += 1;
            let t = now(ctx);
            if ctx.state(|s| probes(&s.status)) && unix_ms(t) >= next_probe {
                Self::probe(ctx, &env).await;
                next_probe = unix_ms(now(ctx)) + config.probe_interval_secs.max(1) * 1000;
            }
            let t = now(ctx);
            ctx.state_mut(|s| s.evaluate(t));
            if ctx.state(|s| s.status.blocking) != told {
                told = !told;
                Self::tell(ctx, &env).await;
            }
            if turns >= TURNS_PER_RUN || ctx.continue_as_new_suggested() {
                let carried = ctx.state(|s| s.status.clone());
                ctx.continue_as_new(
                    BreakerRequest {
                        config: carried.config.clone(),
                        carried: Some(carried),
                    },
                    ContinueAsNewOptions::default(),
                )?;
            }
            Self::sleep(ctx, next_probe).await;
        }
    }

    #[query(name = names::STATUS_QUERY)]
    pub fn status(&self, _ctx: &WorkflowContextView) -> BreakerStatus {
        self.status.clone()
    }

    /// The configuration from `cutover.toml`, sent by every CLI command that touches the
    /// breaker; a change is audited.
    #[signal(name = names::BREAKER_CONFIGURE_SIGNAL)]
    pub fn configure(&mut self, ctx: &mut SyncWorkflowContext<Self>, c: proto::BreakerConfig) {
        if self.status.config.as_ref() != Some(&c) {
            let t = sync_now(ctx);
            self.status.config = Some(c);
            self.event(t, "configuration updated".to_owned());
            self.changed = true;
        }
    }

    /// A deployment's outcome (from its notifications); consecutive failures trip the breaker.
    #[signal(name = names::DEPLOYMENT_FINISHED_SIGNAL)]
    pub fn deployment_finished(&mut self, ctx: &mut SyncWorkflowContext<Self>, n: Notification) {
        if !matches!(n.event.as_str(), "succeeded" | "failed" | "rolled_back") {
            return;
        }
        let t = sync_now(ctx);
        let prefix = format!("{} ", n.deployment_id);
        let before = self
            .status
            .recent
            .iter()
            .position(|r| r.starts_with(&prefix));
        let previous = before.map(|i| self.status.recent.remove(i));
        self.status.recent.push(format!("{}{}", prefix, n.event));
        let n_recent = self.status.recent.len();
        if n_recent > RECENT_KEPT {
            self.status.recent.drain(..n_recent - RECENT_KEPT);
        }
        let was_failure = previous
            .as_deref()
            .is_some_and(|p| is_failure(p.trim_start_matches(&prefix)));
        if previous.as_deref() == Some(&format!("{prefix}{}", n.event)) {
            return; // the same outcome again (a retried notification)
        }
        if is_failure(&n.event) {
            if self.status.blocking {
                self.event(
                    t,
                    format!(
                        "deployment {} {} (not counted: the breaker was already open)",
                        n.deployment_id, n.event
                    ),
                );
            } else if !was_failure {
                self.status.consecutive_failures += 1;
                self.event(
                    t,
                    format!(
                        "deployment {} {}: {} in a row",
                        n.deployment_id, n.event, self.status.consecutive_failures
                    ),
                );
            }
        } else {
            if self.status.consecutive_failures > 0 {
                self.event(
                    t,
                    format!(
                        "deployment {} succeeded: failure streak cleared",
                        n.deployment_id
                    ),
                );
            }
            self.status.consecutive_failures = 0;
        }
        self.changed = true;
    }

    #[update_validator(trip)]
    fn validate_trip(&self, _ctx: &WorkflowContextView, a: &BreakerAction) -> ValidatorResult {
        Self::needs_who_and_why(a)
    }

    /// Opens the breaker by hand until `reset`.
    #[update(name = names::BREAKER_TRIP_UPDATE)]
    pub fn trip(&mut self, ctx: &mut SyncWorkflowContext<Self>, a: BreakerAction) -> BreakerStatus {
        let t = sync_now(ctx);
        self.status.trip = Some(Self::grant(
            t,
            &BreakerAction {
                for_secs: 0,
                ..a.clone()
            },
        ));
        self.event(t, format!("tripped by {}: {}", a.by, a.reason));
        self.evaluate(t);
        self.changed = true;
        self.status.clone()
    }

    #[update_validator(reset)]
    fn validate_reset(&self, _ctx: &WorkflowContextView, a: &BreakerAction) -> ValidatorResult {
        Self::needs_who_and_why(a)
    }

    /// Clears a manual trip and the failure streak. Firing alerts, a burn rate above its limit
    /// and freezes stay: they are facts, not opinions.
    #[update(name = names::BREAKER_RESET_UPDATE)]
    pub fn reset(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        a: BreakerAction,
    ) -> BreakerStatus {
        let t = sync_now(ctx);
        self.status.trip = None;
        self.status.consecutive_failures = 0;
        self.event(t, format!("reset by {}: {}", a.by, a.reason));
        self.evaluate(t);
        self.changed = true;
        self.status.clone()
    }

    #[update_validator(freeze)]
    fn validate_freeze(&self, _ctx: &WorkflowContextView, a: &BreakerAction) -> ValidatorResult {
        Self::needs_who_and_why(a)
    }

    /// A manual freeze (for `for_secs`, or until lifted); `lift` ends every manual freeze.
    #[update(name = names::BREAKER_FREEZE_UPDATE)]
    pub fn freeze(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        a: BreakerAction,
    ) -> BreakerStatus {
        let t = sync_now(ctx);
        if a.lift {
            let n = self.status.freezes.len();
            self.status.freezes.clear();
            self.event(
                t,
                format!("{n} manual freeze(s) lifted by {}: {}", a.by, a.reason),
            );
        } else {
            let g = Self::grant(t, &a);
            let until = if g.until.is_empty() {
                "until lifted".to_owned()
            } else {
                format!("until {}", g.until)
            };
            self.event(t, format!("frozen by {} {until}: {}", a.by, a.reason));
            self.status.freezes.push(g);
        }
        self.evaluate(t);
        self.changed = true;
        self.status.clone()
    }

    #[update_validator(override_open)]
    fn validate_override(&self, _ctx: &WorkflowContextView, a: &BreakerAction) -> ValidatorResult {
        Self::needs_who_and_why(a)?;
        let max = self
            .status
            .config
            .as_ref()
            .map_or(0, |c| c.max_override_secs);
        if a.for_secs == 0 {
            return Err("an override needs an expiry (--for DURATION)".into());
        }
        if max > 0 && a.for_secs > max {
            return Err(format!(
                "an override may last at most {max}s (breaker.max_override_secs); asked {}s",
                a.for_secs
            )
            .into());
        }
        Ok(())
    }

    /// Lets deployments through while the breaker is open, until the expiry.
    #[update(name = names::BREAKER_OVERRIDE_UPDATE)]
    pub fn override_open(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        a: BreakerAction,
    ) -> BreakerStatus {
        let t = sync_now(ctx);
        let g = Self::grant(t, &a);
        self.event(
            t,
            format!("override by {} until {}: {}", a.by, g.until, a.reason),
        );
        self.status.r#override = Some(g);
        self.evaluate(t);
        self.changed = true;
        self.status.clone()
    }
}

#[cfg(test)]
mod tests;
