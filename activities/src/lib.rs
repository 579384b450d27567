//! cutover's activities: all I/O lives here. Each activity is idempotent, so a retry after a
//! worker crash repeats nothing that already took effect.
//!
//! - [`error`]: one error enum; each kind maps to a stable failure type and retryability.
//! - [`platform`]: the platforms an environment can run on ([`local`], [`kubernetes`]).
//! - [`checks`]: smoke, performance and live-traffic judgements.
//! - [`notify`]: the Slack-compatible webhook.

pub mod checks;
pub mod error;
pub mod kubernetes;
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
    clients: platform::Clients,
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
            clients: platform::Clients::default(),
        }
    }

    async fn platform(&self, target: Option<&proto::PlatformTarget>) -> Result<Platform, Failure> {
        platform::connect(target, &self.http, &self.clients).await
    }
}

impl Default for CutoverActivities {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs an activity's body: its [`Failure`] becomes the typed activity error in one place.
async fn act<T>(body: impl Future<Output = Result<T, Failure>>) -> Result<T, ActivityError> {
    body.await.map_err(Failure::into_activity_error)
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
        act(async {
            self.platform(req.platform.as_ref())
                .await?
                .preflight(&req)
                .await
        })
        .await
    }

    #[activity(name = names::READ_ACTIVE)]
    pub async fn read_active(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: RollbackRequest,
    ) -> Result<PreflightResult, ActivityError> {
        act(async {
            let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
            let platform = self.platform(req.platform.as_ref()).await?;
            platform.read_active(&names).await
        })
        .await
    }

    #[activity(name = names::START_COLOR)]
    pub async fn start_color(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: ColorRequest,
    ) -> Result<(), ActivityError> {
        act(async {
            self.platform(req.platform.as_ref())
                .await?
                .start_color(&req)
                .await
        })
        .await
    }

    #[activity(name = names::SCALE_COLOR)]
    pub async fn scale_color(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: ColorRequest,
    ) -> Result<(), ActivityError> {
        act(async {
            self.platform(req.platform.as_ref())
                .await?
                .scale_color(&req)
                .await
        })
        .await
    }

    #[activity(name = names::WAIT_READY)]
    pub async fn wait_ready(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ColorRequest,
    ) -> Result<(), ActivityError> {
        act(async {
            let platform = self.platform(req.platform.as_ref()).await?;
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
                    )));
                }
                heartbeat(&ctx, &summary).await;
                tokio::time::sleep(platform.poll_interval()).await;
            }
        })
        .await
    }

    #[activity(name = names::SMOKE_CHECKS)]
    pub async fn smoke_checks(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: CheckRequest,
    ) -> Result<CheckReport, ActivityError> {
        act(async {
            let platform = self.platform(req.platform.as_ref()).await?;
            heartbeat(&ctx, "smoke").await;
            checks::smoke(&self.http, &platform, &req).await
        })
        .await
    }

    #[activity(name = names::PERF_CHECKS)]
    pub async fn perf_checks(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: CheckRequest,
    ) -> Result<CheckReport, ActivityError> {
        act(async {
            let platform = self.platform(req.platform.as_ref()).await?;
            heartbeat(&ctx, "performance").await;
            checks::performance(&self.http, &platform, &req).await
        })
        .await
    }

    #[activity(name = names::SWITCH_TRAFFIC)]
    pub async fn switch_traffic(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: SwitchRequest,
    ) -> Result<SwitchResult, ActivityError> {
        act(async {
            let platform = self.platform(req.platform.as_ref()).await?;
            let result = platform.switch(&req).await?;
            tracing::info!(
                color = %req.color,
                changed = ?result.changed,
                switch_ms = result.switch_ms,
                replayed = result.replayed,
                "traffic moved"
            );
            Ok(result)
        })
        .await
    }

    #[activity(name = names::SNAPSHOT_METRICS)]
    pub async fn snapshot_metrics(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: WindowCheckRequest,
    ) -> Result<MetricsSnapshot, ActivityError> {
        act(async {
            let platform = self.platform(req.platform.as_ref()).await?;
            platform.snapshot(&req.color, &req.services).await
        })
        .await
    }

    #[activity(name = names::CHECK_WINDOW)]
    pub async fn check_window(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: WindowCheckRequest,
    ) -> Result<CheckReport, ActivityError> {
        act(async {
            let platform = self.platform(req.platform.as_ref()).await?;
            platform.check_window(&req).await
        })
        .await
    }

    #[activity(name = names::VERIFY_ACTIVE)]
    pub async fn verify_active(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: SwitchRequest,
    ) -> Result<(), ActivityError> {
        act(async {
            let platform = self.platform(req.platform.as_ref()).await?;
            platform.verify(&req.color, &req.services).await
        })
        .await
    }

    #[activity(name = names::NOTIFY)]
    pub async fn notify(
        self: Arc<Self>,
        _ctx: ActivityContext,
        n: Notification,
    ) -> Result<(), ActivityError> {
        act(async {
            match &self.webhook {
                Some(url) => notify::post(&self.http, url, &n).await,
                None => Ok(()),
            }
        })
        .await
    }
}
