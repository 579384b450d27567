//! Patch `worker-authority`: the worker's own configuration decides a release's policy. The run
//! starts by asking the worker to check the request and complete it (`authorize_release`), and
//! every approval decision's identity is verified by the worker (`verify_identity`) before it
//! counts.

use super::journal::{event, now};
use super::{Event, Outcome, Release, Stop, Undo};
use crate::activities::CutoverActivities as Act;
use crate::failures::innermost as why;
use crate::options;
use proto::{
    ApprovalDecision, AuthorizeRequest, AuthorizedRelease, IdentityRequest, IdentityVerdict,
};
use temporalio_sdk::WorkflowContext;

pub const WORKER_AUTHORITY: &str = "worker-authority";

/// The release checked against, and completed from, the worker's configuration; a refusal
/// stops the release before anything started.
pub async fn authorize<W: Release>(
    ctx: &WorkflowContext<W>,
    mut req: AuthorizeRequest,
) -> Result<AuthorizedRelease, Stop> {
    req.workflow_id = ctx.workflow_id().to_owned();
    let a = ctx
        .execute_activity(Act::authorize_release, req, options::authorize())
        .await
        .map_err(|e| {
            Stop::new(
                Outcome::Refused,
                Undo::Nothing,
                format!("refused by the worker: {}", why(&e)),
                now(ctx),
            )
        })?;
    let r = a.record.clone().unwrap_or_default();
    event(
        ctx,
        Event::Authorized {
            digest: &r.digest,
            requester: &r.requester,
            verified: &r.verified,
        },
    );
    Ok(a)
}

/// Whether a decision's identity holds: verified by the worker against the environment's
/// approval policy. A refusal is recorded (never as an approval) and the gate waits on.
pub async fn verify<W: Release>(
    ctx: &WorkflowContext<W>,
    approved: bool,
    d: &ApprovalDecision,
    digest: &str,
) -> Result<(String, String), String> {
    let id = ctx.state(|s| s.ident());
    let action = if approved { "approve" } else { "reject" };
    let req = IdentityRequest {
        environment: id.environment,
        deployment_id: id.deployment_id,
        digest: digest.to_owned(),
        action: action.to_owned(),
        sealed_token: d.sealed_token.clone(),
        asserted: d.approver.clone(),
        requester: id.requested_by,
    };
    let verdict: Result<IdentityVerdict, String> = ctx
        .execute_activity(Act::verify_identity, req, options::authorize())
        .await
        .map_err(|e| why(&e));
    let refused = match verdict {
        Ok(v) if v.refused.is_empty() => return Ok((v.identity, v.verified)),
        Ok(v) => v.refused,
        Err(e) => format!("the identity could not be verified: {e}"),
    };
    event(
        ctx,
        Event::DecisionRefused {
            action,
            why: &refused,
        },
    );
    Err(refused)
}
