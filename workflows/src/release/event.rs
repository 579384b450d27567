//! What a release records in its journal, as typed values. Each is shown as one line of the
//! status's `events` (`<rfc3339> <text>`), worded as before, so `status` and the recorded
//! histories read the same; phase changes also go to the worker as typed marks
//! (`Notification.phases`), never parsed back from the text.

use super::{Phase, ScaleTarget};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event<'a> {
    /// The release entered a phase.
    Phase(Phase),
    /// Blue-green: which colour is live and where the release goes.
    Releasing {
        live: &'a str,
        revision: &'a str,
        target: &'a str,
    },
    /// The expand or contract migrations ran (the status line of their result).
    Migrations {
        summary: &'a str,
    },
    /// Contract migrations failed and the Migrate workflow reverted them.
    ContractFailed {
        why: &'a str,
    },
    Approved {
        by: &'a str,
    },
    /// The worker authorised the release (patch `worker-authority`).
    Authorized {
        digest: &'a str,
        requester: &'a str,
        verified: &'a str,
    },
    /// A decision whose identity or digest the worker refused; the gate waits on.
    DecisionRefused {
        action: &'a str,
        why: &'a str,
    },
    /// Blue-green: the breaker no longer holds the switch.
    BreakerClosed,
    /// Blue-green: every service moved to `to` in one switch (`services`: comma-joined).
    Switched {
        services: &'a str,
        to: &'a str,
    },
    /// Canary: a step's weight is set.
    Step {
        n: usize,
        percent: u32,
        canary: &'a str,
    },
    /// Canary: a step's hold passed its analysis.
    StepPassed {
        n: usize,
        percent: u32,
        held_secs: u64,
    },
    /// Canary: the breaker holds the next step.
    HeldByBreaker {
        percent: u32,
    },
    /// Canary: the analysis cannot decide yet (first time only).
    Holding {
        percent: u32,
        detail: &'a str,
    },
    /// Canary: promoted by hand.
    Promoted {
        by: &'a str,
        reason: &'a str,
    },
    /// A colour was scaled (never fatal).
    Scaled {
        colour: &'a str,
        to: ScaleTarget,
    },
    NotScaled {
        colour: &'a str,
        to: ScaleTarget,
        why: &'a str,
    },
    /// The previous colour retired after the keep-warm period.
    Retired {
        colour: &'a str,
    },
    NotRetired {
        colour: &'a str,
        why: &'a str,
    },
    RollingBack {
        to: &'a str,
        reason: &'a str,
    },
    /// Blue-green: the switch back did not go through; the Rollback workflow takes over.
    SwitchBackFailed {
        to: &'a str,
        why: &'a str,
    },
    /// Every service back on the previous colour (canary weights; blue-green's switch back).
    AllBack {
        to: &'a str,
        revert_ms: f64,
    },
    NotificationUndelivered {
        kind: &'a str,
    },
    /// The environment has no breaker workflow to receive the outcome.
    NoBreaker,
    /// A newer release asked this one to end its keep-warm period.
    Superseding {
        by: &'a str,
        reason: &'a str,
    },
    /// A newer release ended this one's keep-warm period (`migrations`: what became of the
    /// contract migrations).
    Superseded {
        by: &'a str,
        reason: &'a str,
        migrations: &'a str,
    },
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Phase(p) => write!(f, "phase {p}"),
            Event::Releasing {
                live,
                revision,
                target,
            } => write!(f, "{live} is live; releasing {revision} on {target}"),
            Event::Migrations { summary } => write!(f, "migrations {summary}"),
            Event::ContractFailed { why } => {
                write!(f, "contract migrations failed (reverted): {why}")
            }
            Event::Approved { by } => write!(f, "approved by {by}"),
            Event::Authorized {
                digest,
                requester,
                verified,
            } => write!(
                f,
                "authorized by the worker's configuration: release {digest}, requested by {requester} ({verified})"
            ),
            Event::DecisionRefused { action, why } => write!(f, "{action} refused: {why}"),
            Event::BreakerClosed => f.write_str("circuit breaker closed: switching"),
            Event::Switched { services, to } => write!(f, "switched {services} to {to}"),
            Event::Step { n, percent, canary } => write!(f, "step {n}: {percent}% on {canary}"),
            Event::StepPassed {
                n,
                percent,
                held_secs,
            } => write!(f, "step {n}: {percent}% held {held_secs} s, promoted"),
            Event::HeldByBreaker { percent } => {
                write!(f, "held before {percent}% by the circuit breaker")
            }
            Event::Holding { percent, detail } => write!(f, "holding at {percent}%: {detail}"),
            Event::Promoted { by, reason } => write!(f, "promoted by {by}: {reason}"),
            Event::Scaled { colour, to } => match to {
                ScaleTarget::Full => write!(f, "scaled {colour} to full size"),
                ScaleTarget::Warm => write!(f, "shrank {colour} to warm size"),
                ScaleTarget::Stopped => write!(f, "stopped {colour}"),
            },
            Event::NotScaled { colour, to, why } => match to {
                ScaleTarget::Full => write!(f, "could not scale {colour} to full size: {why}"),
                ScaleTarget::Warm => write!(f, "could not shrink {colour} to warm size: {why}"),
                ScaleTarget::Stopped => write!(f, "could not stop {colour}: {why}"),
            },
            Event::Retired { colour } => write!(f, "retired {colour}"),
            Event::NotRetired { colour, why } => write!(f, "could not retire {colour}: {why}"),
            Event::RollingBack { to, reason } => write!(f, "rolling back to {to}: {reason}"),
            Event::AllBack { to, revert_ms } => write!(
                f,
                "all services back on {to} ({revert_ms:.0} ms after the stop was seen)"
            ),
            Event::SwitchBackFailed { to, why } => write!(
                f,
                "could not switch back to {to} ({why}): bringing it back capacity first"
            ),
            Event::NotificationUndelivered { kind } => {
                write!(f, "notification {kind} could not be delivered")
            }
            Event::NoBreaker => f.write_str("no circuit breaker to tell the outcome"),
            Event::Superseding { by, reason } => write!(
                f,
                "superseded by {reason} (requested by {by}): ending the keep-warm period early"
            ),
            Event::Superseded {
                by,
                reason,
                migrations,
            } => {
                let m = if migrations.is_empty() {
                    "no contract migrations to run"
                } else {
                    migrations
                };
                write!(
                    f,
                    "superseded by {reason} (requested by {by}): keep-warm period ended early, old colour retired; migrations: {m}"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `status`, the tests and people read keep their wording.
    #[test]
    fn events_read_as_the_status_lines_they_were() {
        let cases = [
            (
                Event::Phase(Phase::AwaitingApproval),
                "phase awaiting_approval",
            ),
            (
                Event::Releasing {
                    live: "blue",
                    revision: "v2",
                    target: "green",
                },
                "blue is live; releasing v2 on green",
            ),
            (
                Event::Switched {
                    services: "api-gateway, order-execution",
                    to: "green",
                },
                "switched api-gateway, order-execution to green",
            ),
            (
                Event::StepPassed {
                    n: 2,
                    percent: 25,
                    held_secs: 30,
                },
                "step 2: 25% held 30 s, promoted",
            ),
            (
                Event::NotScaled {
                    colour: "blue",
                    to: ScaleTarget::Warm,
                    why: "timeout",
                },
                "could not shrink blue to warm size: timeout",
            ),
            (
                Event::Scaled {
                    colour: "green",
                    to: ScaleTarget::Stopped,
                },
                "stopped green",
            ),
            (
                Event::AllBack {
                    to: "blue",
                    revert_ms: 166.6,
                },
                "all services back on blue (167 ms after the stop was seen)",
            ),
            (
                Event::Superseded {
                    by: "ci",
                    reason: "v3",
                    migrations: "",
                },
                "superseded by v3 (requested by ci): keep-warm period ended early, old colour retired; migrations: no contract migrations to run",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
