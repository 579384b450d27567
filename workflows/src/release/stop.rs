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
        match (r, undo) {
            (_, Undo::Nothing | Undo::StopTarget) => Self::new(
                Outcome::Aborted,
                undo,
                format!("aborted by {}: {}", a.by, a.reason),
                at,
            ),
            (Request::Abort(_), Undo::WeightsBack) => Self::new(
                Outcome::Aborted,
                undo,
                format!("aborted by {}: {}", a.by, a.reason),
                at,
            ),
            _ => Self::new(
                Outcome::RolledBack,
                undo,
                format!("rollback requested by {}: {}", a.by, a.reason),
                at,
            ),
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
