//! The release's journal: events with workflow time, phase changes, notifications, and the
//! outcome told to the environment's circuit breaker.

use super::{Event, Outcome, Phase, Release};
use crate::activities::CutoverActivities as Act;
use crate::breaker::BreakerWorkflow;
use crate::names;
use crate::options;
use crate::time::rfc3339;
use proto::{Notification, PhaseMark};
use std::time::{SystemTime, UNIX_EPOCH};
use temporalio_sdk::{SignalWorkflowOptions, WorkflowContext};

/// Workflow time (from history: deterministic).
pub fn now<W>(ctx: &WorkflowContext<W>) -> SystemTime {
    ctx.workflow_time().unwrap_or(UNIX_EPOCH)
}

pub fn millis_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).unwrap_or_default().as_secs_f64() * 1000.0
}

/// Appends `<time> <event>` to the release's events.
pub fn event<W: Release>(ctx: &WorkflowContext<W>, e: Event<'_>) {
    let line = format!("{} {e}", rfc3339(now(ctx)));
    ctx.state_mut(|s| s.events_mut().push(line));
}

/// Enters a phase: the status, the Temporal UI's current details, the event, and the typed
/// mark the worker's phase metrics read.
pub fn enter<W: Release>(ctx: &WorkflowContext<W>, phase: Phase) {
    let at = now(ctx);
    ctx.state_mut(|s| {
        s.set_phase(phase);
        s.marks_mut().push(PhaseMark {
            phase: phase.as_str().to_owned(),
            at_unix_ms: at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        });
    });
    ctx.set_current_details(format!("phase: {phase}"));
    event(ctx, Event::Phase(phase));
}

/// Enters `rolling_back`, saying to which colour and why.
pub fn rolling_back<W: Release>(ctx: &WorkflowContext<W>, to: &str, reason: &str) {
    enter(ctx, Phase::RollingBack);
    event(ctx, Event::RollingBack { to, reason });
}

/// Sends a notification from any workflow (Migrate, Rollback); whether it was delivered. A
/// notification never fails a run.
pub async fn announce<W>(
    ctx: &WorkflowContext<W>,
    environment: &str,
    deployment_id: &str,
    kind: &str,
    text: String,
) -> bool {
    let n = Notification {
        event: kind.to_owned(),
        environment: environment.to_owned(),
        deployment_id: deployment_id.to_owned(),
        text,
        ..Default::default()
    };
    ctx.execute_activity(Act::notify, n, options::notify())
        .await
        .is_ok()
}

/// Sends a notification; one that cannot be delivered is recorded and never fails the release.
pub async fn notify<W: Release>(ctx: &WorkflowContext<W>, kind: &str, text: String) {
    let id = ctx.state(|s| s.ident());
    let n = Notification {
        event: kind.to_owned(),
        environment: id.environment,
        deployment_id: id.deployment_id,
        text,
        // The phases so far: the worker's phase metrics.
        phases: ctx.state(|s| s.marks()),
        outcome_signalled: ctx.state(|s| s.control().v2),
    };
    if ctx
        .execute_activity(Act::notify, n, options::notify())
        .await
        .is_err()
    {
        event(ctx, Event::NotificationUndelivered { kind });
    }
}

/// The outcome goes to the environment's circuit breaker (its failure streak) as a signal of
/// its own. An environment without a breaker has no workflow to receive it: recorded, not fatal.
pub async fn report_outcome<W: Release>(ctx: &WorkflowContext<W>, outcome: Outcome, reason: &str) {
    if !ctx.state(|s| s.control().v2) || !outcome.reaches_breaker() {
        return;
    }
    let id = ctx.state(|s| s.ident());
    let n = Notification {
        event: outcome.as_str().to_owned(),
        environment: id.environment.clone(),
        deployment_id: id.deployment_id,
        text: reason.to_owned(),
        phases: Vec::new(),
        outcome_signalled: true,
    };
    if ctx
        .external_workflow(names::breaker_workflow_id(&id.environment), None)
        .signal(
            BreakerWorkflow::deployment_finished,
            n,
            SignalWorkflowOptions::default(),
        )
        .await
        .is_err()
    {
        event(ctx, Event::NoBreaker);
    }
}

/// A newer release asks this one to end its keep-warm period: said at once (the new release's
/// `deploy` waits for this line), before the old colour retires.
pub fn superseding<W: Release>(ctx: &WorkflowContext<W>) {
    if let Some(by) = ctx.state(|s| s.control().superseded_by.clone()) {
        event(
            ctx,
            Event::Superseding {
                by: &by.by,
                reason: &by.reason,
            },
        );
    }
}

/// A newer release ended this one's keep-warm period early: what became of the old colour and
/// the contract migrations (`migrations`: the status line, empty when none ran).
pub fn superseded<W: Release>(ctx: &WorkflowContext<W>, migrations: &str) {
    let Some(by) = ctx.state(|s| s.control().superseded_by.clone()) else {
        return;
    };
    event(
        ctx,
        Event::Superseded {
            by: &by.by,
            reason: &by.reason,
            migrations,
        },
    );
}
