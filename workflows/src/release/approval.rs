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
    /// Worker-authority runs: the release digest a decision must name. Its identity (token or
    /// asserted name) is verified by the worker afterwards, not here.
    pub digest: Option<&'a str>,
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
    if let Some(digest) = p.digest
        && d.digest != digest
    {
        return Err(format!(
            "approval names release {:?}, but deployment {} runs release {digest} (see `cutover status {}`)",
            d.digest, id.deployment_id, id.environment
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
    if p.digest.is_some() && !d.sealed_token.is_empty() {
        // The identity is in the sealed token: the worker verifies it (and the policy) next.
        return Ok(());
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
        ..Default::default()
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
    let deadline = timeout.map(|t| super::journal::now(ctx) + t);
    let answered = loop {
        let answered = match deadline {
            Some(end) => {
                // (A timer needs a positive duration.)
                let left = end
                    .duration_since(super::journal::now(ctx))
                    .unwrap_or_default()
                    .max(Duration::from_millis(1));
                temporalio_sdk::workflows::select! {
                    _ = ctx.wait_condition(decided).fuse() => true,
                    _ = ctx.timer(left).fuse() => false,
                }
            }
            None => {
                let _ = ctx.wait_condition(decided).await;
                true
            }
        };
        let (authority, digest) = ctx.state(|s| (s.control().authority, s.control().digest()));
        if !answered || !authority || ctx.state(|s| s.control().request.is_some()) {
            break answered;
        }
        // Worker-authority runs: the decision counts once the worker has verified who took it.
        let (approved, d) = ctx
            .state(|s| s.control().decision.clone())
            .expect("the condition above");
        match super::authority::verify(ctx, approved, &d, &digest).await {
            Ok((name, how)) => {
                let at = crate::time::rfc3339(super::journal::now(ctx));
                let mut r = record(approved, &d, at);
                r.approver.clone_from(&name);
                r.verified = how;
                r.digest = digest;
                ctx.state_mut(|s| {
                    s.approvals_mut().push(r);
                    s.control_mut().decision = Some((
                        approved,
                        ApprovalDecision {
                            approver: name.to_owned(),
                            ..d
                        },
                    ));
                });
                break true;
            }
            Err(_) => ctx.state_mut(|s| s.control_mut().decision = None),
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
    let text = match ctx.state(|s| s.control().release.clone()) {
        None => format!(
            "{} awaits approval: {what} (approve with: cutover approve {} --deployment {} --revision {})",
            id.deployment_id, id.environment, id.deployment_id, id.revision
        ),
        Some(r) => format!(
            "{} awaits approval: {what}; release {} (content {}, images {}) (approve with: cutover approve {} --deployment {} --revision {} --digest {})",
            id.deployment_id,
            r.digest,
            r.content_digest,
            r.images_digest,
            id.environment,
            id.deployment_id,
            id.revision,
            r.digest
        ),
    };
    notify(ctx, "awaiting_approval", text).await;
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
            ..Default::default()
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
                digest: None,
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
    fn a_worker_authority_run_refuses_a_decision_for_another_digest() {
        let (id, pol) = (ident(), policy());
        let p = Pending {
            ident: &id,
            policy: &pol,
            phase: "awaiting_approval",
            decided: false,
            digest: Some("sha256:aaa"),
        };
        let mut d = decision("alice");
        d.digest = "sha256:bbb".into();
        let err = validate(&p, &d).unwrap_err();
        assert!(
            err.contains("names release \"sha256:bbb\"") && err.contains("sha256:aaa"),
            "{err}"
        );
        d.digest = "sha256:aaa".into();
        assert_eq!(validate(&p, &d), Ok(()));
        // A sealed token carries the identity: the worker verifies it after the validator.
        d.approver = String::new();
        d.sealed_token = "sealed".into();
        assert_eq!(validate(&p, &d), Ok(()));
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
            digest: None,
        };
        assert_eq!(validate(&p, &decision("carol")), Ok(()));
    }
}
