//! Temporal connection settings (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`)
//! and the worker.

use std::time::Duration;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use temporalio_sdk::runtime::PollerBehavior;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use workflows::names;

#[derive(Clone, Debug)]
pub struct Settings {
    pub address: String,
    pub namespace: String,
    /// Never printed.
    pub api_key: Option<String>,
    pub ui: String,
}

impl Settings {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            address: var("TEMPORAL_ADDRESS").unwrap_or_else(|| "localhost:7233".into()),
            namespace: var("TEMPORAL_NAMESPACE").unwrap_or_else(|| "default".into()),
            api_key: var("TEMPORAL_API_KEY"),
            ui: var("CUTOVER_TEMPORAL_UI").unwrap_or_else(|| "http://localhost:8233".into()),
        }
    }

    /// Link to a run in the Temporal UI.
    pub fn ui_link(&self, workflow_id: &str, run_id: &str) -> String {
        format!(
            "{}/namespaces/{}/workflows/{workflow_id}/{run_id}/history",
            self.ui.trim_end_matches('/'),
            self.namespace
        )
    }

    pub async fn connect(&self, identity: &str) -> Result<Client, String> {
        let scheme = if self.api_key.is_some() {
            "https"
        } else {
            "http"
        };
        let target = if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("{scheme}://{}", self.address)
        };
        let url = url::Url::parse(&target)
            .map_err(|e| format!("TEMPORAL_ADDRESS {:?} is not host:port: {e}", self.address))?;
        let opts = ConnectionOptions::new(url)
            .identity(identity.to_owned())
            .maybe_api_key(self.api_key.clone())
            .maybe_tls_options(self.api_key.as_ref().map(|_| Default::default()))
            .connect_timeout(Duration::from_secs(5))
            .build();
        let connection = Connection::connect(opts)
            .await
            .map_err(|e| format!("cannot reach Temporal at {}: {e}", self.address))?;
        Client::new(
            connection,
            ClientOptions::new(self.namespace.clone()).build(),
        )
        .map_err(|e| format!("Temporal client: {e}"))
    }
}

/// How long a workflow task waits on this worker's sticky queue before any worker may take it.
/// A dead worker's runs wait this long, unless an activity retried on a live worker resets the
/// run's stickiness first (`activities::hand_over`) or a worker starting up does
/// (`release_sticky_runs`).
pub const STICKY_SCHEDULE_TO_START: Duration = Duration::from_secs(1);

/// Concurrent polls for workflow tasks (the SDK's default is 5, four of them on the sticky
/// queue): room for a burst of a hundred releases (`cutover-bench --only scale` prints the
/// decision delay; most of it was the test server's disk, not the polls).
pub const WORKFLOW_POLLS: usize = 10;
/// Concurrent polls for activity tasks (the SDK's default is 5).
pub const ACTIVITY_POLLS: usize = 10;

/// How long a SIGTERM lets running activities finish before they are handed back.
pub const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);

/// Runs the worker until SIGTERM/Ctrl-C, then shuts down gracefully.
pub async fn run_worker(settings: &Settings, task_queue: &str) -> Result<(), String> {
    let runtime = Runtime::from_current_tokio(Default::default()).map_err(|e| e.to_string())?;
    let identity = format!("cutover-worker@{}", std::process::id());
    // Temporal may still be starting (or restarting): keep trying for two minutes rather than
    // exit, so a worker started alongside the server comes up with it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut wait = std::time::Duration::from_millis(200);
    let client = loop {
        match settings.connect(&identity).await {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "Temporal not reachable yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    };
    let options = WorkerOptions::new(task_queue)
        .register_workflow::<workflows::DeployWorkflow>()
        .map_err(|e| e.to_string())?
        .register_workflow::<workflows::RollbackWorkflow>()
        .map_err(|e| e.to_string())?
        .register_workflow::<workflows::MigrateWorkflow>()
        .map_err(|e| e.to_string())?
        .register_workflow::<workflows::ShiftWorkflow>()
        .map_err(|e| e.to_string())?
        .register_workflow::<workflows::BreakerWorkflow>()
        .map_err(|e| e.to_string())?
        .register_activities(activities::CutoverActivities::new())
        // A dead worker's cached runs go back to the shared queue after this long (the SDK's
        // default, 10 s, was what a restarted worker waited before it could resume them).
        .sticky_queue_schedule_to_start_timeout(STICKY_SCHEDULE_TO_START)
        // SIGTERM: finish what is running; activities still running after this are cancelled
        // and retried by another worker.
        .graceful_shutdown_period(GRACEFUL_SHUTDOWN)
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(WORKFLOW_POLLS))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(ACTIVITY_POLLS))
        .build();
    // The worker's deployment metrics, when CUTOVER_METRICS_ADDR names an address (host:port).
    if let Ok(addr) = std::env::var("CUTOVER_METRICS_ADDR")
        && !addr.is_empty()
    {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("CUTOVER_METRICS_ADDR {addr}: {e}"))?;
        println!(
            "metrics on http://{}/metrics",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (_never, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _keep = _never;
            wire::http::serve(
                listener,
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    if req.uri().path() == "/metrics" {
                        wire::http::text(hyper::StatusCode::OK, activities::telemetry::render())
                    } else {
                        wire::http::text(hyper::StatusCode::NOT_FOUND, "see /metrics")
                    }
                },
                stop,
            )
            .await;
        });
    }
    // Runs a dead worker held wait out its sticky queue's timeout before anyone may take them:
    // a worker coming up (a restart after a crash) sends them to the shared queue at once.
    tokio::spawn(release_sticky_runs(
        client.clone(),
        settings.namespace.clone(),
        task_queue.to_owned(),
    ));
    let mut worker = Worker::new(&runtime, client, options).map_err(|e| e.to_string())?;
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        shutdown();
    });
    tracing::info!(task_queue, namespace = %settings.namespace, "worker started");
    println!(
        "worker polling task queue {task_queue:?} on {} ({})",
        settings.address, settings.namespace
    );
    worker.run().await.map_err(|e| e.to_string())
}

/// Resets the sticky queue of every running workflow on `task_queue`, so each one's next
/// workflow task goes to the shared queue, where this worker polls, rather than waiting on the
/// sticky queue of the worker that held it (after a crash, a dead one) for its timeout. A live
/// worker that held one of them replays it once. Best effort: failures are logged.
async fn release_sticky_runs(client: Client, namespace: String, task_queue: String) {
    use temporalio_client::grpc::WorkflowService;
    use temporalio_client::tonic::Request;
    use temporalio_common::protos::temporal::api::workflowservice::v1::ListWorkflowExecutionsRequest;
    let mut lister = client.clone();
    let query = format!("TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'");
    let mut token = Vec::new();
    let mut released = 0usize;
    loop {
        let page = lister
            .list_workflow_executions(Request::new(ListWorkflowExecutionsRequest {
                namespace: namespace.clone(),
                page_size: 1000,
                next_page_token: token,
                query: query.clone(),
            }))
            .await;
        let page = match page {
            Ok(p) => p.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e.message(), "running workflows not listed; sticky queues left to time out");
                return;
            }
        };
        for execution in page.executions.into_iter().filter_map(|run| run.execution) {
            match activities::reset_sticky(&client, &namespace, execution).await {
                Ok(()) => released += 1,
                Err(error) => tracing::warn!(error, "sticky queue not reset"),
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    tracing::info!(
        released,
        "running workflows' next tasks go to the shared queue"
    );
}

pub const DEFAULT_TASK_QUEUE: &str = names::TASK_QUEUE;
