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
    BreakerRequest, BreakerStatus, CheckReport, CheckRequest, CheckResult, CheckSummary,
    ColorRequest, DeployRequest, MetricsSnapshot, MigratePlan, MigrateRequest, Notification,
    PreflightResult, RestoreRequest, RollbackRequest, SwitchRequest, SwitchResult, VerifyReport,
    WeightsRequest, WeightsResult, WindowCheckRequest,
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

/// How often a running activity heartbeats (the SDK sends at most one per 0.8 × the heartbeat
/// timeout, `workflows::options::HEARTBEAT`).
const BEAT_EVERY: Duration = Duration::from_millis(400);

/// Runs `work` while heartbeating `details()` every [`BEAT_EVERY`], so a dead worker is noticed
/// within the heartbeat timeout and a live one, however long its call, is not taken for dead.
async fn with_heartbeats<T>(
    ctx: &ActivityContext,
    details: impl Fn() -> String,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    hand_over(ctx);
    let beat = async {
        loop {
            let _ = ctx.record_heartbeat(details()).await;
            tokio::time::sleep(BEAT_EVERY).await;
        }
    };
    tokio::select! {
        r = work => r,
        _ = beat => unreachable!("the heartbeat loop never ends"),
    }
}

/// Resets the sticky queue of one run, so its next workflow task goes to the shared queue at
/// once (a live worker that still caches the run replays it instead). Also used by the worker at
/// start-up for every running workflow.
pub async fn reset_sticky(
    client: &temporalio_client::Client,
    namespace: &str,
    execution: temporalio_common::protos::temporal::api::common::v1::WorkflowExecution,
) -> Result<(), String> {
    use temporalio_client::grpc::WorkflowService;
    use temporalio_common::protos::temporal::api::workflowservice::v1::ResetStickyTaskQueueRequest;
    let request = ResetStickyTaskQueueRequest {
        namespace: namespace.to_owned(),
        execution: Some(execution),
    };
    let mut client = client.clone();
    let reset = client.reset_sticky_task_queue(temporalio_client::tonic::Request::new(request));
    match tokio::time::timeout(Duration::from_secs(2), reset).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.message().to_owned()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    }
}

/// A retried attempt: the attempt before it may have died with its worker, and the run's next
/// workflow task would then wait on that worker's sticky queue for the sticky timeout before
/// any live worker could take it. Resets the run's stickiness alongside the attempt's work (so
/// heartbeats start at once), normally long before the attempt completes. Best effort: a
/// failure only costs the sticky timeout.
fn hand_over(ctx: &ActivityContext) {
    use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
    let info = ctx.info();
    let (Some(workflow_id), Some(run_id)) = (&info.workflow_id, &info.workflow_run_id) else {
        return;
    };
    if info.attempt < 2 || info.is_local {
        return;
    }
    let (client, namespace) = (ctx.client(), info.namespace.clone());
    let execution = WorkflowExecution {
        workflow_id: workflow_id.clone(),
        run_id: run_id.clone(),
    };
    let (attempt, activity) = (info.attempt, info.activity_type.clone());
    tokio::spawn(async move {
        let workflow_id = execution.workflow_id.clone();
        match reset_sticky(&client, &namespace, execution).await {
            Ok(()) => tracing::info!(
                workflow_id,
                attempt,
                activity,
                "retried attempt: the run's next workflow task goes to any live worker"
            ),
            Err(error) => tracing::warn!(workflow_id, error, "sticky queue not reset"),
        }
    });
}

/// An activity's progress in its heartbeats: an attempt after a crash resumes from the last
/// progress its predecessor recorded. Every beat repeats the latest (also between records), so
/// whichever beat the server heard last carries it.
struct Progress {
    last: std::sync::Mutex<String>,
}

impl Progress {
    /// The progress an earlier attempt recorded (JSON in its heartbeat details), if any, and a
    /// recorder that starts from it.
    fn resume<P: serde::de::DeserializeOwned + serde::Serialize>(
        ctx: &ActivityContext,
    ) -> (Option<P>, Self) {
        let previous: Option<P> = ctx
            .heartbeat_details()
            .deserialize::<String>()
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok());
        let last = previous
            .as_ref()
            .map(|p| serde_json::to_string(p).unwrap_or_default())
            .unwrap_or_default();
        (
            previous,
            Self {
                last: std::sync::Mutex::new(last),
            },
        )
    }

    /// The details of the next beat: the latest progress.
    fn details(&self) -> String {
        self.last.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Records `progress` and sends it at once (the SDK throttles what it sends).
    fn record<P: serde::Serialize>(
        &self,
        ctx: &ActivityContext,
        progress: &P,
    ) -> impl Future<Output = ()> + use<P> {
        let d = serde_json::to_string(progress).unwrap_or_default();
        if let Ok(mut l) = self.last.lock() {
            l.clone_from(&d);
        }
        let ctx = ctx.clone();
        async move {
            let _ = ctx.record_heartbeat(d).await;
        }
    }
}

/// An activity's body, heartbeating while it runs; its [`Failure`] becomes the typed error.
async fn live<T>(
    ctx: &ActivityContext,
    what: &str,
    body: impl Future<Output = Result<T, Failure>>,
) -> Result<T, ActivityError> {
    act(with_heartbeats(ctx, || what.to_owned(), body)).await
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
        live(&ctx, "preflight", async {
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
        ctx: ActivityContext,
        req: RollbackRequest,
    ) -> Result<PreflightResult, ActivityError> {
        live(&ctx, "reading the live colour", async {
            let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
            let platform = self.platform(req.platform.as_ref()).await?;
            platform.read_active(&names).await
        })
        .await
    }

    #[activity(name = names::START_COLOR)]
    pub async fn start_color(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ColorRequest,
    ) -> Result<(), ActivityError> {
        live(&ctx, "starting", async {
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
        ctx: ActivityContext,
        req: ColorRequest,
    ) -> Result<(), ActivityError> {
        live(&ctx, "scaling", async {
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
        live(&ctx, "waiting for readiness", async {
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
        live(&ctx, "smoke checks", async {
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
        // The services an earlier attempt judged before its worker died: not measured again.
        let (done, progress) = Progress::resume::<Vec<CheckResult>>(&ctx);
        let (ctx, progress) = (&ctx, &progress);
        let work = async {
            let platform = self.platform(req.platform.as_ref()).await?;
            let done = done.unwrap_or_default();
            checks::performance(&self.http, &platform, &req, done, |results| {
                progress.record(ctx, &results.to_vec())
            })
            .await
        };
        act(with_heartbeats(ctx, || progress.details(), work)).await
    }

    #[activity(name = names::SWITCH_TRAFFIC)]
    pub async fn switch_traffic(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: SwitchRequest,
    ) -> Result<SwitchResult, ActivityError> {
        live(&ctx, "switching", async {
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
        ctx: ActivityContext,
        req: WindowCheckRequest,
    ) -> Result<MetricsSnapshot, ActivityError> {
        live(&ctx, "metrics snapshot", async {
            let platform = self.platform(req.platform.as_ref()).await?;
            platform.snapshot(&req.color, &req.services).await
        })
        .await
    }

    #[activity(name = names::CHECK_WINDOW)]
    pub async fn check_window(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: WindowCheckRequest,
    ) -> Result<CheckReport, ActivityError> {
        live(&ctx, "validation window", async {
            let platform = self.platform(req.platform.as_ref()).await?;
            platform.check_window(&self.http, &req).await
        })
        .await
    }

    #[activity(name = names::VERIFY_ACTIVE)]
    pub async fn verify_active(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: SwitchRequest,
    ) -> Result<(), ActivityError> {
        live(&ctx, "verifying", async {
            let platform = self.platform(req.platform.as_ref()).await?;
            platform.verify(&req.color, &req.services).await
        })
        .await
    }

    #[activity(name = names::SET_WEIGHTS)]
    pub async fn set_weights(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: WeightsRequest,
    ) -> Result<WeightsResult, ActivityError> {
        live(&ctx, "setting weights", async {
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
        live(&ctx, "analysis", async {
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
        })
        .await
    }

    #[activity(name = names::MIGRATE_PLAN)]
    pub async fn migrate_plan(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: MigrateRequest,
    ) -> Result<MigratePlan, ActivityError> {
        live(&ctx, "migration plan", migrations::plan(&req)).await
    }

    #[activity(name = names::MIGRATE_CHECK)]
    pub async fn migrate_check(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: MigrateRequest,
    ) -> Result<CheckSummary, ActivityError> {
        live(&ctx, "migration check", async {
            Ok(migrations::check(&req))
        })
        .await
    }

    #[activity(name = names::BACKUP_DATABASE)]
    pub async fn backup_database(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: MigrateRequest,
    ) -> Result<BackupResult, ActivityError> {
        // The previous attempt's progress, if it got as far as uploading.
        let (previous, progress) = Progress::resume::<migrations::UploadProgress>(&ctx);
        let (ctx, progress) = (&ctx, &progress);
        let details = || progress.details();
        let work = migrations::backup(&req, previous, |p| progress.record(ctx, &p));
        act(with_heartbeats(ctx, details, work)).await
    }

    #[activity(name = names::APPLY_MIGRATION)]
    pub async fn apply_migration(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ApplyRequest,
    ) -> Result<ApplyResult, ActivityError> {
        let what = format!("applying {}", req.version);
        live(&ctx, &what, migrations::apply(&req, &mut |_| {})).await
    }

    #[activity(name = names::REVERT_MIGRATION)]
    pub async fn revert_migration(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ApplyRequest,
    ) -> Result<bool, ActivityError> {
        let what = format!("reverting {}", req.version);
        live(&ctx, &what, migrations::revert(&req, &mut |_| {})).await
    }

    #[activity(name = names::VERIFY_MIGRATIONS)]
    pub async fn verify_migrations(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: MigrateRequest,
    ) -> Result<VerifyReport, ActivityError> {
        live(&ctx, "verifying migrations", migrations::verify(&req)).await
    }

    #[activity(name = names::RESTORE_DATABASE)]
    pub async fn restore_database(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: RestoreRequest,
    ) -> Result<(), ActivityError> {
        live(&ctx, "restoring", migrations::restore(&req)).await
    }

    #[activity(name = names::NOTIFY)]
    pub async fn notify(
        self: Arc<Self>,
        ctx: ActivityContext,
        n: Notification,
    ) -> Result<(), ActivityError> {
        telemetry::on_event(&n.environment, &n.deployment_id, &n.event);
        if !n.phases.is_empty() {
            telemetry::on_phases(&n.environment, &n.phases, std::time::SystemTime::now());
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
