//! What every release workflow answers (blue-green `Deploy` and canary `GradualShift`), by
//! name and payload type, independent of the workflow's Rust type: the CLI addresses the
//! environment's running release through these whichever strategy it runs.

use crate::names;
use proto::{AbortRequest, ApprovalDecision, ApprovalRecord, BreakerHold};
use std::marker::PhantomData;
use temporalio_common::data_converters::RawValue;
use temporalio_common::{QueryDefinition, SignalDefinition, UntypedWorkflow, UpdateDefinition};

/// A signal every release workflow handles.
pub struct Signal<I>(&'static str, PhantomData<fn() -> I>);

impl<I: serde::Serialize + serde::de::DeserializeOwned + 'static> SignalDefinition for Signal<I> {
    type Workflow = UntypedWorkflow;
    type Input = I;
    fn name(&self) -> &str {
        self.0
    }
}

/// An update every release workflow handles (its answer differs by strategy: read the
/// [`STATUS`] after it).
pub struct Update<I>(&'static str, PhantomData<fn() -> I>);

impl<I: serde::Serialize + serde::de::DeserializeOwned + 'static> UpdateDefinition for Update<I> {
    type Workflow = UntypedWorkflow;
    type Input = I;
    type Output = RawValue;
    fn name(&self) -> &str {
        self.0
    }
}

/// The status query, read as the fields both strategies' statuses share.
pub struct Status;

impl QueryDefinition for Status {
    type Workflow = UntypedWorkflow;
    type Input = ();
    type Output = Summary;
    fn name(&self) -> &str {
        names::STATUS_QUERY
    }
}

/// `cutover abort`: before traffic moved the target is stopped; after, traffic goes back.
pub const ABORT: Signal<AbortRequest> = Signal(names::ABORT_SIGNAL, PhantomData);
/// `cutover rollback`: every service back on the previous colour (during the validation
/// window or a canary step, or during the keep-warm period).
pub const ROLLBACK: Signal<AbortRequest> = Signal(names::ROLLBACK_SIGNAL, PhantomData);
/// A newer release asks the running one, in its keep-warm period, to retire the old colour and
/// run its contract migrations now (outcome unchanged).
pub const SUPERSEDE: Signal<AbortRequest> = Signal(names::SUPERSEDE_SIGNAL, PhantomData);
/// From the environment's circuit breaker (`breaker-<env>`): hold, or go on.
pub const BREAKER_HOLD: Signal<BreakerHold> = Signal(names::BREAKER_HOLD_SIGNAL, PhantomData);
pub const APPROVE: Update<ApprovalDecision> = Update(names::APPROVE_UPDATE, PhantomData);
pub const REJECT: Update<ApprovalDecision> = Update(names::REJECT_UPDATE, PhantomData);
pub const STATUS: Status = Status;

/// The part of `DeployStatus` and `ShiftStatus` that is the same in both (same JSON names).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Summary {
    pub deployment_id: String,
    pub environment: String,
    /// Blue-green only (empty for a canary).
    pub revision: String,
    pub requested_by: String,
    pub phase: String,
    pub outcome: String,
    pub reason: String,
    pub approvals: Vec<ApprovalRecord>,
    pub events: Vec<String>,
    pub warm_until: String,
    /// What the worker authorised (patch `worker-authority`).
    pub release: Option<proto::ReleaseRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{DeployStatus, ShiftStatus};

    #[test]
    fn both_statuses_read_as_the_summary() {
        let d = DeployStatus {
            deployment_id: "dep-1".into(),
            revision: "v2".into(),
            phase: "warm".into(),
            outcome: "succeeded".into(),
            ..Default::default()
        };
        let s = ShiftStatus {
            deployment_id: "dep-2".into(),
            phase: "shifting".into(),
            percent: 25,
            approvals: vec![ApprovalRecord {
                approver: "alice".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let d: Summary = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        let s: Summary = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(
            (d.deployment_id.as_str(), d.revision.as_str()),
            ("dep-1", "v2")
        );
        assert_eq!(
            (d.phase.as_str(), d.outcome.as_str()),
            ("warm", "succeeded")
        );
        assert_eq!(
            (s.phase.as_str(), s.approvals[0].approver.as_str()),
            ("shifting", "alice")
        );
    }
}
