//! The release lifecycle both strategies share (blue-green [`crate::deploy`], canary
//! [`crate::shift`]). A strategy's `run` is its runbook: a short list of phases, each a method
//! returning `Result<_, Stop>`; what a [`Stop`] undoes is decided in one place per strategy.
//!
//! - [`types`]: phases, outcomes, verdicts, scale targets, colours, platform kinds as enums (same JSON as before).
//! - [`event`]: what a release records, typed (shown as the same status lines as before).
//! - [`journal`]: events, phase changes, notifications (a failed one is recorded, never fatal),
//!   and the outcome sent to the environment's circuit breaker as its own signal.
//! - [`approval`]: the approval policy as one pure function, and the gate that waits for it.
//! - [`colour`]: colour requests (full, warm, stopped), the checks before any live traffic, the
//!   Rollback child, and the expand / contract migration phases.
//! - [`stop`]: how a release ends early, and what it undoes.
//! - [`contract`]: the signals, updates and query every release answers, by name, for the CLI.
//! - [`control`]: the state the signals every release answers write (abort, rollback,
//!   supersede, breaker hold, approval decisions).

pub mod approval;
pub mod authority;
pub mod colour;
pub mod contract;
pub mod control;
pub mod event;
pub mod journal;
pub mod stop;
pub mod types;

pub use control::{Control, Request};
pub use event::Event;
pub use stop::{Stop, Undo};
pub use types::{Colour, Outcome, Phase, PlatformKind, ScaleTarget, Verdict};

use proto::MigrateRequest;

/// Patch of the shared lifecycle: canary parity (checks before traffic, migrations, approval
/// timeout and reject, rollback after promotion) and the outcome signalled to the breaker.
pub const RELEASE_V2: &str = "release-v2";

/// What a release is, the same for both strategies.
#[derive(Clone, Debug, Default)]
pub struct Ident {
    pub deployment_id: String,
    pub environment: String,
    pub revision: String,
    pub requested_by: String,
}

/// A workflow that runs a release: its state gives the shared lifecycle what it needs.
pub trait Release: Sized + 'static {
    fn ident(&self) -> Ident;
    fn control(&self) -> &Control;
    fn control_mut(&mut self) -> &mut Control;
    /// The decisions recorded in the status.
    fn approvals_mut(&mut self) -> &mut Vec<proto::ApprovalRecord>;
    fn events_mut(&mut self) -> &mut Vec<String>;
    /// The phases entered so far, with their workflow time.
    fn marks_mut(&mut self) -> &mut Vec<proto::PhaseMark>;
    /// The phases so far (notifications carry them: the worker's phase metrics).
    fn marks(&self) -> Vec<proto::PhaseMark>;
    fn set_phase(&mut self, phase: Phase);
    /// The checks' rows of the status (one live row per check, service and colour).
    fn checks_mut(&mut self) -> &mut Vec<proto::CheckResult>;
    /// The release's migrations, when the environment has a database.
    fn migrate(&self) -> Option<MigrateRequest>;
}

/// Implements [`Release`] and the approval handlers' logic for a release workflow. Both
/// strategies keep the same shape: `request` (identity, approval policy, migrations),
/// `status` (events, phase, checks, approvals), `marks` (phases entered) and `control`.
macro_rules! release_workflow {
    ($wf:ty, $status:ty) => {
        impl $crate::release::Release for $wf {
            fn ident(&self) -> $crate::release::Ident {
                let r = &self.request;
                $crate::release::Ident {
                    deployment_id: r.deployment_id.clone(),
                    environment: r.environment.clone(),
                    revision: r.revision.clone(),
                    requested_by: r.requested_by.clone(),
                }
            }
            fn control(&self) -> &$crate::release::Control {
                &self.control
            }
            fn control_mut(&mut self) -> &mut $crate::release::Control {
                &mut self.control
            }
            fn approvals_mut(&mut self) -> &mut Vec<proto::ApprovalRecord> {
                &mut self.status.approvals
            }
            fn events_mut(&mut self) -> &mut Vec<String> {
                &mut self.status.events
            }
            fn marks_mut(&mut self) -> &mut Vec<proto::PhaseMark> {
                &mut self.marks
            }
            fn marks(&self) -> Vec<proto::PhaseMark> {
                self.marks.clone()
            }
            fn set_phase(&mut self, phase: $crate::release::Phase) {
                self.status.phase = phase.as_str().to_owned();
            }
            fn checks_mut(&mut self) -> &mut Vec<proto::CheckResult> {
                &mut self.status.checks
            }
            fn migrate(&self) -> Option<proto::MigrateRequest> {
                self.request.migrate.clone()
            }
        }

        impl $wf {
            /// The approver's decision, validated by the one policy check both strategies share.
            fn validate_decision(
                &self,
                d: &proto::ApprovalDecision,
            ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                use $crate::release::Release as _;
                let ident = self.ident();
                let policy = self.request.approval.clone().unwrap_or_default();
                let pending = $crate::release::approval::Pending {
                    ident: &ident,
                    policy: &policy,
                    phase: &self.status.phase,
                    decided: self.control.decision.is_some(),
                    digest: self
                        .control
                        .release
                        .as_ref()
                        .filter(|_| self.control.authority)
                        .map(|r| r.digest.as_str()),
                };
                $crate::release::approval::validate(&pending, d).map_err(Into::into)
            }

            /// The smoke and performance checks of `color`, before it takes live traffic.
            fn check_request(&self, color: &str) -> proto::CheckRequest {
                let r = &self.request;
                proto::CheckRequest {
                    platform: r.platform.clone(),
                    color: color.to_owned(),
                    services: r.services.clone(),
                    thresholds: r.thresholds,
                    perf: r.perf.clone(),
                }
            }

            /// Every service of the release to `color` in one atomic step (`suffix` names the
            /// move in its request id: `<deployment id>/<suffix>`).
            fn switch_request(&self, color: &str, suffix: &str) -> proto::SwitchRequest {
                let r = &self.request;
                proto::SwitchRequest {
                    platform: r.platform.clone(),
                    color: color.to_owned(),
                    services: r.services.iter().map(|s| s.name.clone()).collect(),
                    atomic: true,
                    request_id: format!("{}/{suffix}", r.deployment_id),
                    environment: r.environment.clone(),
                }
            }

            /// Records an approval or a rejection (the gate waiting in `run` reads it). In a
            /// worker-authority run it counts, and is recorded, only once the worker has
            /// verified who took it (the gate does that).
            fn decide(
                &mut self,
                ctx: &mut temporalio_sdk::SyncWorkflowContext<Self>,
                approved: bool,
                d: proto::ApprovalDecision,
            ) -> $status {
                if !self.control.authority {
                    let at =
                        $crate::time::rfc3339(ctx.workflow_time().unwrap_or(std::time::UNIX_EPOCH));
                    let record = $crate::release::approval::record(approved, &d, at);
                    self.status.approvals.push(record);
                }
                self.control.decision = Some((approved, d));
                self.status.clone()
            }
        }
    };
}
pub(crate) use release_workflow;
