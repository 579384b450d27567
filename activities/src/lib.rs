//! cutover's activities: all I/O lives here. Each activity is idempotent, so a retry after a
//! worker crash repeats nothing that already took effect.
//!
//! - [`error`]: one error enum; each kind maps to a stable failure type and retryability.
//! - [`platform`]: the platforms an environment can run on ([`local`], [`kubernetes`]).
//! - [`checks`]: smoke, performance and live-traffic judgements.
//! - [`notify`]: the Slack-compatible webhook.

pub mod analysis;
pub mod breaker;
pub mod checks;
pub mod error;
pub mod kubernetes;
pub mod local;
pub mod migrations;
pub mod notify;
pub mod platform;
pub mod telemetry;

use error::Failure;
use platform::Platform;
use proto::{
    AnalysisRequest, AnalysisResult, ApplyRequest, ApplyResult, BackupResult, BreakerProbe,
    BreakerRequest, BreakerStatus, CheckReport, CheckRequest, CheckSummary, ColorRequest,
    DeployRequest, MetricsSnapshot, MigratePlan, MigrateRequest, Notification, PreflightResult,
    RestoreRequest, RollbackRequest, SwitchRequest, SwitchResult, VerifyReport, WeightsRequest,
    WeightsResult, WindowCheckRequest,
};
use std::future::Future;
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

/// Runs `work` while heartbeating every two seconds (long statements, lock waits), so a dead
/// worker is noticed by the heartbeat timeout and a live one is not mistaken for dead.
async fn with_heartbeats<T>(
    ctx: &ActivityContext,
    what: &str,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let beat = async {
        loop {
            heartbeat(ctx, what).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        r = work => r,
        _ = beat => unreachable!("the heartbeat loop never ends"),
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
        ctx: ActivityContext,
        req: DeployRequest,
    ) -> Result<PreflightResult, ActivityError> {
        act(async {
            // The environment's circuit breaker first: while it blocks, nothing starts.
            let verdict = breaker::check(&ctx.client(), &req.environment).await?;
            if verdict.blocking {
                return Err(error::Failure::BreakerOpen(format!(
                    "the circuit breaker of {} is open: {}",
                    req.environment, verdict.reason
                )));
            }
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
            if !req.environment.is_empty() {
                for svc in &req.services {
                    telemetry::on_color(&req.environment, svc, &req.color);
                }
            }
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

    #[activity(name = names::SET_WEIGHTS)]
    pub async fn set_weights(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: WeightsRequest,
    ) -> Result<WeightsResult, ActivityError> {
        act(async {
            let platform = self.platform(req.platform.as_ref()).await?;
            let r = platform.set_weights(&req).await?;
            for w in &r.applied {
                telemetry::on_weight(&req.environment, &w.service, w.canary_percent);
                tracing::info!(service = %w.service, canary = %w.canary_color, percent = w.canary_percent, "weights set");
            }
            Ok(r)
        })
        .await
    }

    #[activity(name = names::ANALYZE_CANARY)]
    pub async fn analyze_canary(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: AnalysisRequest,
    ) -> Result<AnalysisResult, ActivityError> {
        act(with_heartbeats(&ctx, "analysis", async {
            let platform = self.platform(req.platform.as_ref()).await?;
            let r = analysis::analyze(&self.http, &platform, &req).await?;
            for a in &r.services {
                telemetry::on_analysis(
                    &req.environment,
                    &a.service,
                    a.error_ratio,
                    a.p95_ms,
                    a.canary_requests,
                );
            }
            Ok(r)
        }))
        .await
    }

    #[activity(name = names::MIGRATE_PLAN)]
    pub async fn migrate_plan(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: MigrateRequest,
    ) -> Result<MigratePlan, ActivityError> {
        act(migrations::plan(&req)).await
    }

    #[activity(name = names::MIGRATE_CHECK)]
    pub async fn migrate_check(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: MigrateRequest,
    ) -> Result<CheckSummary, ActivityError> {
        act(async { Ok(migrations::check(&req)) }).await
    }

    #[activity(name = names::BACKUP_DATABASE)]
    pub async fn backup_database(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: MigrateRequest,
    ) -> Result<BackupResult, ActivityError> {
        // The previous attempt's progress, if it got as far as uploading.
        let previous = ctx
            .heartbeat_details()
            .deserialize::<String>()
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str::<migrations::UploadProgress>(&s).ok());
        let ctx = &ctx;
        act(migrations::backup(&req, previous, |p| async move {
            let _ = ctx
                .record_heartbeat(serde_json::to_string(&p).unwrap_or_default())
                .await;
        }))
        .await
    }

    #[activity(name = names::APPLY_MIGRATION)]
    pub async fn apply_migration(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ApplyRequest,
    ) -> Result<ApplyResult, ActivityError> {
        let what = format!("applying {}", req.version);
        act(with_heartbeats(
            &ctx,
            &what,
            migrations::apply(&req, &mut |_| {}),
        ))
        .await
    }

    #[activity(name = names::REVERT_MIGRATION)]
    pub async fn revert_migration(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ApplyRequest,
    ) -> Result<bool, ActivityError> {
        let what = format!("reverting {}", req.version);
        act(with_heartbeats(
            &ctx,
            &what,
            migrations::revert(&req, &mut |_| {}),
        ))
        .await
    }

    #[activity(name = names::VERIFY_MIGRATIONS)]
    pub async fn verify_migrations(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: MigrateRequest,
    ) -> Result<VerifyReport, ActivityError> {
        act(migrations::verify(&req)).await
    }

    #[activity(name = names::RESTORE_DATABASE)]
    pub async fn restore_database(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: RestoreRequest,
    ) -> Result<(), ActivityError> {
        act(with_heartbeats(
            &ctx,
            "restoring",
            migrations::restore(&req),
        ))
        .await
    }

    #[activity(name = names::NOTIFY)]
    pub async fn notify(
        self: Arc<Self>,
        ctx: ActivityContext,
        n: Notification,
    ) -> Result<(), ActivityError> {
        telemetry::on_event(&n.environment, &n.deployment_id, &n.event);
        if !n.events.is_empty() {
            telemetry::on_phases(&n.environment, &n.events, std::time::SystemTime::now());
        }
        // Outcomes feed the environment's circuit breaker (its failure streak): runs recorded
        // before patch `release-v2` report through here; newer runs signal it themselves.
        if !n.outcome_signalled {
            breaker::report(&ctx.client(), &n).await;
        }
        act(async {
            match &self.webhook {
                Some(url) => notify::post(&self.http, url, &n).await,
                None => Ok(()),
            }
        })
        .await
    }

    #[activity(name = names::BREAKER_PROBE)]
    pub async fn breaker_probe(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: BreakerRequest,
    ) -> Result<BreakerProbe, ActivityError> {
        let c = req.config.unwrap_or_default();
        if let Some(s) = &req.carried {
            breaker::publish(s);
        }
        Ok(breaker::probe(&self.http, &c).await)
    }

    #[activity(name = names::BREAKER_PUBLISH)]
    pub async fn breaker_publish(
        self: Arc<Self>,
        _ctx: ActivityContext,
        s: BreakerStatus,
    ) -> Result<(), ActivityError> {
        breaker::publish(&s);
        let n = Notification {
            event: if s.blocking {
                "breaker_open".into()
            } else {
                "breaker_closed".into()
            },
            environment: s.environment.clone(),
            text: if s.blocking {
                format!(
                    "circuit breaker of {} OPEN: {}",
                    s.environment,
                    s.reasons.join("; ")
                )
            } else {
                format!(
                    "circuit breaker of {} no longer blocks deployments",
                    s.environment
                )
            },
            ..Default::default()
        };
        // A notification failure never fails the breaker.
        if let Some(url) = &self.webhook {
            let _ = notify::post(&self.http, url, &n).await;
        }
        Ok(())
    }
}
