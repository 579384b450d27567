//! What the signals and updates every release workflow answers write. The handlers of both
//! strategies are one-liners onto these methods, so abort, rollback, supersede, breaker holds
//! and approval decisions mean the same in both.

use proto::{AbortRequest, ApprovalDecision, BreakerHold};

/// An operator's request to stop a running release.
#[derive(Clone, Debug)]
pub enum Request {
    /// `cutover abort`: before traffic moved the target is stopped; after, traffic goes back.
    Abort(AbortRequest),
    /// `cutover rollback`: traffic goes back to the previous colour.
    Rollback(AbortRequest),
}

impl Request {
    pub fn by(&self) -> &AbortRequest {
        match self {
            Request::Abort(a) | Request::Rollback(a) => a,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Control {
    /// The first stop request wins; later ones are ignored.
    pub request: Option<Request>,
    /// A newer release of the environment asks this one to end its keep-warm period now.
    pub superseded_by: Option<AbortRequest>,
    /// Approved (true) or rejected, and by whom.
    pub decision: Option<(bool, ApprovalDecision)>,
    /// The environment's circuit breaker holds the release (the reason).
    pub breaker: Option<String>,
    /// Patch `breaker-v1`: the run knows about breaker holds.
    pub breaker_aware: bool,
    /// Patch `release-v2`: the shared lifecycle's newer commands.
    pub v2: bool,
    /// Patch `worker-authority`: the worker authorised the release, and verifies each
    /// decision's identity before it counts.
    pub authority: bool,
    /// What the worker authorised (worker-authority runs): decisions must name its digest.
    pub release: Option<proto::ReleaseRecord>,
}

impl Control {
    /// The release digest decisions must name ("" before the worker authorised the run).
    pub fn digest(&self) -> String {
        self.release
            .as_ref()
            .map(|r| r.digest.clone())
            .unwrap_or_default()
    }

    pub fn on_abort(&mut self, a: AbortRequest) {
        self.request.get_or_insert(Request::Abort(a));
    }

    pub fn on_rollback(&mut self, a: AbortRequest) {
        self.request.get_or_insert(Request::Rollback(a));
    }

    pub fn on_supersede(&mut self, a: AbortRequest) {
        self.superseded_by.get_or_insert(a);
    }

    /// Records a breaker hold or release; true when the hold changed.
    pub fn on_breaker(&mut self, h: BreakerHold) -> bool {
        if h.hold {
            let changed = self.breaker.as_deref() != Some(h.reason.as_str());
            self.breaker = Some(h.reason);
            changed
        } else {
            self.breaker.take().is_some()
        }
    }

    /// The breaker holds this run (only runs that know about breakers are held).
    pub fn held(&self) -> bool {
        self.breaker_aware && self.breaker.is_some()
    }

    /// Something ends the keep-warm period early: a stop request or a newer release.
    pub fn warm_interrupted(&self) -> bool {
        self.request.is_some() || self.superseded_by.is_some()
    }
}
