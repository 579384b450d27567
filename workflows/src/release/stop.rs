//! How a release ends early. A phase returns `Err(Stop)`; the strategy's `end` looks at what
//! the stop must undo and does it in one place.

use super::{Outcome, Request};
use std::time::SystemTime;
use temporalio_sdk::{ApplicationFailure, WorkflowTermination};

/// What must be undone when a release stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undo {
    /// Nothing has started yet.
    Nothing,
    /// The target colour runs but has taken no live traffic: stop it.
    StopTarget,
    /// Canary weights moved: stable capacity first, then every weight back to stable.
    WeightsBack,
    /// Traffic was switched: the Rollback workflow brings the previous colour back.
    RollBack,
    /// Traffic was switched and the previous colour still runs at full size (blue-green's
    /// validation window, patch `fast-revert`): traffic moves back first, in one switch, then
    /// it is verified; the Rollback workflow only if that switch fails.
    SwitchBack,
}

#[derive(Clone, Debug)]
pub struct Stop {
    pub outcome: Outcome,
    pub reason: String,
    pub undo: Undo,
    /// When the problem was seen (revert times are measured from here).
    pub at: SystemTime,
}

impl Stop {
    pub fn new(outcome: Outcome, undo: Undo, reason: impl Into<String>, at: SystemTime) -> Self {
        Self {
            outcome,
            reason: reason.into(),
            undo,
            at,
        }
    }

    pub fn failed(undo: Undo, reason: impl Into<String>, at: SystemTime) -> Self {
        Self::new(Outcome::Failed, undo, reason, at)
    }

    /// An operator's request. Before traffic moved both abort; after, both roll back.
    pub fn requested(r: &Request, undo: Undo, at: SystemTime) -> Self {
        let a = r.by();
        // An abort during canary steps stays an abort; everything after traffic moved rolls back.
        let rolls_back = match undo {
            Undo::Nothing | Undo::StopTarget => false,
            Undo::WeightsBack => matches!(r, Request::Rollback(_)),
            Undo::RollBack | Undo::SwitchBack => true,
        };
        if rolls_back {
            let reason = format!("rollback requested by {}: {}", a.by, a.reason);
            Self::new(Outcome::RolledBack, undo, reason, at)
        } else {
            Self::new(
                Outcome::Aborted,
                undo,
                format!("aborted by {}: {}", a.by, a.reason),
                at,
            )
        }
    }
}

/// The run's failure: a stable type name, never retried.
pub fn terminal(reason: String, type_name: &str) -> WorkflowTermination {
    ApplicationFailure::builder(reason)
        .type_name(type_name.to_owned())
        .non_retryable(true)
        .build()
        .into()
}
