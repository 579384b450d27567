//! The activities the workflows call. Declared here without bodies; the `activities` crate
//! implements each under the same pinned name and the worker registers that implementation.
#![allow(clippy::unimplemented)]

use crate::names;
use proto::{
    CheckReport, CheckRequest, ColorRequest, DeployRequest, MetricsSnapshot, Notification,
    PreflightResult, RollbackRequest, SwitchRequest, SwitchResult, WindowCheckRequest,
};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

pub struct CutoverActivities;

#[activity_definitions]
impl CutoverActivities {
    /// Platform reachable, services known; reads which colour is live (the platform is the truth).
    #[activity(name = names::PREFLIGHT)]
    pub fn preflight(_: DeployRequest) -> Result<PreflightResult, ActivityError> {
        unimplemented!()
    }

    /// Runs each service's release version on a colour at full size.
    #[activity(name = names::START_COLOR)]
    pub fn start_color(_: ColorRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Resizes a colour keeping its version: full, warm or stopped.
    #[activity(name = names::SCALE_COLOR)]
    pub fn scale_color(_: ColorRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Waits, heartbeating, until every instance of the colour is ready.
    #[activity(name = names::WAIT_READY)]
    pub fn wait_ready(_: ColorRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    #[activity(name = names::SMOKE_CHECKS)]
    pub fn smoke_checks(_: CheckRequest) -> Result<CheckReport, ActivityError> {
        unimplemented!()
    }

    #[activity(name = names::PERF_CHECKS)]
    pub fn perf_checks(_: CheckRequest) -> Result<CheckReport, ActivityError> {
        unimplemented!()
    }

    /// Moves services' traffic to a colour; idempotent by request id.
    #[activity(name = names::SWITCH_TRAFFIC)]
    pub fn switch_traffic(_: SwitchRequest) -> Result<SwitchResult, ActivityError> {
        unimplemented!()
    }

    #[activity(name = names::SNAPSHOT_METRICS)]
    pub fn snapshot_metrics(_: WindowCheckRequest) -> Result<MetricsSnapshot, ActivityError> {
        unimplemented!()
    }

    /// Judges live traffic on a colour since a baseline snapshot.
    #[activity(name = names::CHECK_WINDOW)]
    pub fn check_window(_: WindowCheckRequest) -> Result<CheckReport, ActivityError> {
        unimplemented!()
    }

    /// Confirms that every named service sends all traffic to the colour, with ready instances.
    #[activity(name = names::VERIFY_ACTIVE)]
    pub fn verify_active(_: SwitchRequest) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Reads the live colour for a rollback that was not told where to go.
    #[activity(name = names::READ_ACTIVE)]
    pub fn read_active(_: RollbackRequest) -> Result<PreflightResult, ActivityError> {
        unimplemented!()
    }

    /// Posts to the Slack-compatible webhook, if one is configured. Never fails a deployment.
    #[activity(name = names::NOTIFY)]
    pub fn notify(_: Notification) -> Result<(), ActivityError> {
        unimplemented!()
    }
}
