//! Approvals: one pure policy check for both strategies, used by the `approve` / `reject`
//! validators (a refused decision leaves no history), and the gate that waits for a decision.

use super::journal::{event, notify};
use super::{Event, Ident, Phase, Release, Stop, Undo};
use futures::FutureExt;
use proto::{ApprovalDecision, ApprovalPolicy, ApprovalRecord};
use std::time::Duration;
use temporalio_sdk::WorkflowContext;

/// What a decision is judged against.
pub struct Pending<'a> {
    pub ident: &'a Ident,
    pub policy: &'a ApprovalPolicy,
    /// The phase the release is in now.
    pub phase: &'a str,
    /// A decision was already taken.
    pub decided: bool,
}

/// Whether `d` may decide the release waiting in `p`: it must be waiting, not yet decided, the
/// decision must name this deployment and revision, come from a named approver on the policy's
/// list, and (production) not from the requester.
pub fn validate(p: &Pending, d: &ApprovalDecision) -> Result<(), String> {
    let id = p.ident;
    if p.phase != Phase::AwaitingApproval.as_str() || p.decided {
        return Err(format!(
            "deployment {} is not awaiting approval (phase: {})",
            id.deployment_id, p.phase
        ));
    }
    if d.deployment_id != id.deployment_id {
        return Err(format!(
            "stale approval: it names deployment {:?}, but {} is running {:?}",
            d.deployment_id, id.environment, id.deployment_id
        ));
    }
    if d.revision != id.revision {
        return Err(format!(
            "approval is for revision {:?}, but deployment {} releases {:?}",
            d.revision, id.deployment_id, id.revision
        ));
    }
    if d.approver.trim().is_empty() {
        return Err("approval has no approver identity".into());
    }
    if !p.policy.approvers.iter().any(|a| a == &d.approver) {
        return Err(format!(
            "{:?} may not approve deployments to {} (allowed: {})",
            d.approver,
            id.environment,
            p.policy.approvers.join(", ")
        ));
    }
    if p.policy.distinct_from_requester && d.approver == id.requested_by {
        return Err(format!(
            "{:?} requested deployment {} and may not approve it too",
            d.approver, id.deployment_id
        ));
    }
    Ok(())
}

/// The record a decision leaves in the status.
pub fn record(approved: bool, d: &ApprovalDecision, at: String) -> ApprovalRecord {
    ApprovalRecord {
        approver: d.approver.clone(),
        decision: if approved { "approved" } else { "rejected" }.to_owned(),
        revision: d.revision.clone(),
        comment: d.comment.clone(),
        at,
    }
}

/// Waits for a decision, an operator's stop, or the timeout (`None`: no timer, the behaviour of
/// runs recorded before the canary had one). The caller has entered `awaiting_approval` and
/// notified; `undo` is what a stop here undoes.
pub async fn gate<W: Release>(
    ctx: &WorkflowContext<W>,
    timeout: Option<Duration>,
    undo: Undo,
) -> Result<ApprovalDecision, Stop> {
    let decided = |s: &W| s.control().decision.is_some() || s.control().request.is_some();
    let answered = match timeout {
        Some(t) => temporalio_sdk::workflows::select! {
            _ = ctx.wait_condition(decided).fuse() => true,
            _ = ctx.timer(t).fuse() => false,
        },
        None => {
            let _ = ctx.wait_condition(decided).await;
            true
        }
    };
    let at = super::journal::now(ctx);
    if !answered {
        let secs = timeout.unwrap_or_default().as_secs();
        return Err(Stop::failed(
            undo,
            format!("no approval within {secs}s"),
            at,
        ));
    }
    if let Some(r) = ctx.state(|s| s.control().request.clone()) {
        return Err(Stop::requested(&r, undo, at));
    }
    let (approved, d) = ctx
        .state(|s| s.control().decision.clone())
        .expect("the condition above");
    if !approved {
        return Err(Stop::new(
            super::Outcome::Rejected,
            undo,
            format!("rejected by {}: {}", d.approver, d.comment),
            at,
        ));
    }
    event(ctx, Event::Approved { by: &d.approver });
    Ok(d)
}

/// Enters `awaiting_approval` and tells the approvers how to answer.
pub async fn ask<W: Release>(ctx: &WorkflowContext<W>, what: &str) {
    super::journal::enter(ctx, Phase::AwaitingApproval);
    let id = ctx.state(|s| s.ident());
    notify(
        ctx,
        "awaiting_approval",
        format!(
            "{} awaits approval: {what} (approve with: cutover approve {} --deployment {} --revision {})",
            id.deployment_id, id.environment, id.deployment_id, id.revision
        ),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Ident {
        Ident {
            deployment_id: "dep-1".into(),
            environment: "production".into(),
            revision: "v2".into(),
            requested_by: "carol".into(),
        }
    }

    fn policy() -> ApprovalPolicy {
        ApprovalPolicy {
            required: true,
            approvers: vec!["alice".into(), "carol".into()],
            distinct_from_requester: true,
        }
    }

    fn decision(approver: &str) -> ApprovalDecision {
        ApprovalDecision {
            approver: approver.into(),
            deployment_id: "dep-1".into(),
            revision: "v2".into(),
            comment: String::new(),
        }
    }

    fn check(phase: &str, decided: bool, d: &ApprovalDecision) -> Result<(), String> {
        let (id, pol) = (ident(), policy());
        validate(
            &Pending {
                ident: &id,
                policy: &pol,
                phase,
                decided,
            },
            d,
        )
    }

    #[test]
    fn a_listed_approver_other_than_the_requester_may_decide_once() {
        assert_eq!(
            check("awaiting_approval", false, &decision("alice")),
            Ok(())
        );
        let again = check("awaiting_approval", true, &decision("alice")).unwrap_err();
        assert!(again.contains("not awaiting approval"), "{again}");
        let early = check("checking", false, &decision("alice")).unwrap_err();
        assert!(early.contains("phase: checking"), "{early}");
    }

    #[test]
    fn each_refusal_names_what_is_wrong() {
        let cases = [
            (
                {
                    let mut d = decision("alice");
                    d.deployment_id = "dep-0".into();
                    d
                },
                "stale approval",
            ),
            (
                {
                    let mut d = decision("alice");
                    d.revision = "v1".into();
                    d
                },
                "approval is for revision \"v1\"",
            ),
            (decision("  "), "no approver identity"),
            (
                decision("mallory"),
                "\"mallory\" may not approve deployments to production (allowed: alice, carol)",
            ),
            (decision("carol"), "\"carol\" requested deployment dep-1"),
        ];
        for (d, want) in cases {
            let err = check("awaiting_approval", false, &d).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn outside_production_the_requester_may_approve() {
        let (id, mut pol) = (ident(), policy());
        pol.distinct_from_requester = false;
        let p = Pending {
            ident: &id,
            policy: &pol,
            phase: "awaiting_approval",
            decided: false,
        };
        assert_eq!(validate(&p, &decision("carol")), Ok(()));
    }
}
