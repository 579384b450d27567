//! The release's journal: events with workflow time, phase changes, notifications, and the
//! outcome told to the environment's circuit breaker.

use super::{Outcome, Phase, Release};
use crate::activities::CutoverActivities as Act;
use crate::breaker::BreakerWorkflow;
use crate::names;
use crate::options;
use crate::time::rfc3339;
use proto::Notification;
use std::time::{SystemTime, UNIX_EPOCH};
use temporalio_sdk::{SignalWorkflowOptions, WorkflowContext};

/// Workflow time (from history: deterministic).
pub fn now<W>(ctx: &WorkflowContext<W>) -> SystemTime {
    ctx.workflow_time().unwrap_or(UNIX_EPOCH)
}

pub fn millis_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).unwrap_or_default().as_secs_f64() * 1000.0
}

/// Appends `<time> <text>` to the release's events.
pub fn event<W: Release>(ctx: &WorkflowContext<W>, text: impl Into<String>) {
    let line = format!("{} {}", rfc3339(now(ctx)), text.into());
    ctx.state_mut(|s| s.events_mut().push(line));
}

/// Enters a phase: the status, the Temporal UI's current details, and the event the worker's
/// phase metrics read.
pub fn enter<W: Release>(ctx: &WorkflowContext<W>, phase: Phase) {
    ctx.state_mut(|s| s.set_phase(phase));
    ctx.set_current_details(format!("phase: {phase}"));
    event(ctx, format!("phase {phase}"));
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
        // The events so far: the worker's phase metrics.
        events: ctx.state(|s| s.events()),
        outcome_signalled: ctx.state(|s| s.control().v2),
    };
    if ctx
        .execute_activity(Act::notify, n, options::notify())
        .await
        .is_err()
    {
        event(ctx, format!("notification {kind} could not be delivered"));
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
        events: Vec::new(),
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
        event(ctx, "no circuit breaker to tell the outcome");
    }
}

/// A newer release asks this one to end its keep-warm period: said at once (the new release's
/// `deploy` waits for this line), before the old colour retires.
pub fn superseding<W: Release>(ctx: &WorkflowContext<W>) {
    if let Some(by) = ctx.state(|s| s.control().superseded_by.clone()) {
        event(
            ctx,
            format!(
                "superseded by {} (requested by {}): ending the keep-warm period early",
                by.reason, by.by
            ),
        );
    }
}

/// A newer release ended this one's keep-warm period early: what became of the old colour and
/// the contract migrations (`migrations`: the status line, empty when none ran).
pub fn superseded<W: Release>(ctx: &WorkflowContext<W>, migrations: &str) {
    let Some(by) = ctx.state(|s| s.control().superseded_by.clone()) else {
        return;
    };
    let m = if migrations.is_empty() {
        "no contract migrations to run"
    } else {
        migrations
    };
    event(
        ctx,
        format!(
            "superseded by {} (requested by {}): keep-warm period ended early, old colour retired; migrations: {m}",
            by.reason, by.by
        ),
    );
}
