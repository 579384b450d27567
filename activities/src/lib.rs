//! cutover's activities: all I/O lives here. Each activity is idempotent, so a retry after a
//! worker crash repeats nothing that already took effect.
//!
//! - [`error`]: one error enum; each kind maps to a stable failure type and retryability.
//! - [`platform`]: the platforms an environment can run on ([`local`] here; Kubernetes later).
//! - [`checks`]: smoke, performance and live-traffic judgements.
//! - [`notify`]: the Slack-compatible webhook.

pub mod checks;
pub mod error;
pub mod local;
pub mod notify;
pub mod platform;

use error::Failure;
use platform::Platform;
use proto::{
    CheckReport, CheckRequest, ColorRequest, DeployRequest, MetricsSnapshot, Notification,
    PreflightResult, RollbackRequest, SwitchRequest, SwitchResult, WindowCheckRequest,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use workflows::names;

/// The activities the worker registers. Holds what is shared between calls (HTTP client,
/// webhook URL read once from the worker's environment).
pub struct CutoverActivities {
    http: reqwest::Client,
    webhook: Option<String>,
}

/// Environment variable holding the Slack-compatible webhook URL (a secret: never logged).
pub const WEBHOOK_ENV: &str = "CUTOVER_SLACK_WEBHOOK_URL";

impl CutoverActivities {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client builds");
        Self {
            http,
            webhook: std::env::var(WEBHOOK_ENV).ok().filter(|u| !u.is_empty()),
        }
    }

    fn platform(&self, target: Option<&proto::PlatformTarget>) -> Result<Platform, Failure> {
        platform::connect(target, &self.http)
    }
}

impl Default for CutoverActivities {
    fn default() -> Self {
        Self::new()
    }
}

async fn heartbeat(ctx: &ActivityContext, details: &str) {
    let _ = ctx.record_heartbeat(details.to_owned()).await;
}

#[activities]
impl CutoverActivities {
    #[activity(name = names::PREFLIGHT)]
    pub async fn preflight(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: DeployRequest,
    ) -> Result<PreflightResult, ActivityError> {
        let result: Result<PreflightResult, Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            Ok(platform.preflight(&req).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::READ_ACTIVE)]
    pub async fn read_active(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: RollbackRequest,
    ) -> Result<PreflightResult, ActivityError> {
        let result: Result<PreflightResult, Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
            Ok(platform.read_active(&names).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::START_COLOR)]
    pub async fn start_color(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: ColorRequest,
    ) -> Result<(), ActivityError> {
        let result: Result<(), Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            Ok(platform.start_color(&req).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::SCALE_COLOR)]
    pub async fn scale_color(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: ColorRequest,
    ) -> Result<(), ActivityError> {
        let result: Result<(), Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            Ok(platform.scale_color(&req).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::WAIT_READY)]
    pub async fn wait_ready(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ColorRequest,
    ) -> Result<(), ActivityError> {
        let result: Result<(), Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            let deadline = Instant::now() + Duration::from_secs(req.timeout_secs.max(1));
            loop {
                let waiting = platform.not_ready(&req).await?;
                if waiting.is_empty() {
                    return Ok(());
                }
                let summary = waiting.join("; ");
                if Instant::now() >= deadline {
                    return Err(Failure::NotReady(format!(
                        "not ready within {}s: {summary}",
                        req.timeout_secs
                    ))
                    .into());
                }
                heartbeat(&ctx, &summary).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::SMOKE_CHECKS)]
    pub async fn smoke_checks(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: CheckRequest,
    ) -> Result<CheckReport, ActivityError> {
        let result: Result<CheckReport, Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            heartbeat(&ctx, "smoke").await;
            Ok(checks::smoke(&self.http, &platform, &req).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::PERF_CHECKS)]
    pub async fn perf_checks(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: CheckRequest,
    ) -> Result<CheckReport, ActivityError> {
        let result: Result<CheckReport, Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            heartbeat(&ctx, "performance").await;
            Ok(checks::performance(&self.http, &platform, &req).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::SWITCH_TRAFFIC)]
    pub async fn switch_traffic(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: SwitchRequest,
    ) -> Result<SwitchResult, ActivityError> {
        let result: Result<SwitchResult, Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            let result = platform.switch(&req).await?;
            tracing::info!(
                color = %req.color,
                changed = ?result.changed,
                switch_ms = result.switch_ms,
                replayed = result.replayed,
                "traffic moved"
            );
            Ok(result)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::SNAPSHOT_METRICS)]
    pub async fn snapshot_metrics(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: WindowCheckRequest,
    ) -> Result<MetricsSnapshot, ActivityError> {
        let result: Result<MetricsSnapshot, Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            Ok(platform.snapshot(&req.color, &req.services).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::CHECK_WINDOW)]
    pub async fn check_window(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: WindowCheckRequest,
    ) -> Result<CheckReport, ActivityError> {
        let result: Result<CheckReport, Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            let now = platform.snapshot(&req.color, &req.services).await?;
            Ok(checks::window(&req, &now))
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::VERIFY_ACTIVE)]
    pub async fn verify_active(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: SwitchRequest,
    ) -> Result<(), ActivityError> {
        let result: Result<(), Failure> = async {
            let platform = self.platform(req.platform.as_ref())?;
            Ok(platform.verify(&req.color, &req.services).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }

    #[activity(name = names::NOTIFY)]
    pub async fn notify(
        self: Arc<Self>,
        _ctx: ActivityContext,
        n: Notification,
    ) -> Result<(), ActivityError> {
        let result: Result<(), Failure> = async {
            let Some(url) = &self.webhook else {
                return Ok(());
            };
            Ok(notify::post(&self.http, url, &n).await?)
        }
        .await;
        result.map_err(Failure::into_activity_error)
    }
}
