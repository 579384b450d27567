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
    /// TLS: on unless the address is a loopback one (the local dev server) or TEMPORAL_TLS=false
    /// says so for a loopback address; custom CA and mTLS client certificate from files.
    pub tls: Tls,
}

#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// `TEMPORAL_TLS`: "true" / "false" / unset (decided by the address).
    pub mode: Option<bool>,
    /// `TEMPORAL_TLS_CA`: PEM file of the CA that signed the server's certificate.
    pub ca: Option<String>,
    /// `TEMPORAL_TLS_CERT` / `TEMPORAL_TLS_KEY`: PEM files of the client certificate (mTLS).
    pub cert: Option<String>,
    pub key: Option<String>,
    /// `TEMPORAL_TLS_SERVER_NAME`: the name the server's certificate must carry.
    pub server_name: Option<String>,
}

/// Whether `address` (host:port, or a URL) is the local machine.
pub fn is_loopback(address: &str) -> bool {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Settings {
    /// Whether the connection uses TLS, or why the settings cannot be used: plaintext is only
    /// for a loopback address (the local dev server); credentials never travel in clear.
    pub fn use_tls(&self) -> Result<bool, String> {
        let local = is_loopback(&self.address);
        let creds = self.api_key.is_some() || self.tls.cert.is_some();
        let wants = self.tls.mode.unwrap_or(!local || creds);
        if !wants && !local {
            return Err(format!(
                "TEMPORAL_TLS=false for {}: plaintext is allowed only to a loopback address (the local dev server)",
                self.address
            ));
        }
        if !wants && creds {
            return Err(
                "TEMPORAL_TLS=false with TEMPORAL_API_KEY or a client certificate: credentials are sent only over TLS"
                    .into(),
            );
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS)".into());
        }
        Ok(wants)
    }

    fn tls_options(&self) -> Result<temporalio_client::TlsOptions, String> {
        let read =
            |var: &str, path: &str| std::fs::read(path).map_err(|e| format!("{var} {path}: {e}"));
        let mut o = temporalio_client::TlsOptions::default();
        if let Some(ca) = &self.tls.ca {
            o.server_root_ca_cert = Some(read("TEMPORAL_TLS_CA", ca)?);
        }
        if let (Some(c), Some(k)) = (&self.tls.cert, &self.tls.key) {
            o.client_tls_options = Some(
                temporalio_client::ClientTlsOptions::builder()
                    .client_cert(read("TEMPORAL_TLS_CERT", c)?)
                    .client_private_key(read("TEMPORAL_TLS_KEY", k)?)
                    .build(),
            );
        }
        o.domain.clone_from(&self.tls.server_name);
        Ok(o)
    }
}

impl Settings {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            address: var("TEMPORAL_ADDRESS").unwrap_or_else(|| "localhost:7233".into()),
            namespace: var("TEMPORAL_NAMESPACE").unwrap_or_else(|| "default".into()),
            api_key: var("TEMPORAL_API_KEY"),
            ui: var("CUTOVER_TEMPORAL_UI").unwrap_or_else(|| "http://localhost:8233".into()),
            tls: Tls {
                mode: var("TEMPORAL_TLS").map(|v| !matches!(v.as_str(), "false" | "0" | "no")),
                ca: var("TEMPORAL_TLS_CA"),
                cert: var("TEMPORAL_TLS_CERT"),
                key: var("TEMPORAL_TLS_KEY"),
                server_name: var("TEMPORAL_TLS_SERVER_NAME"),
            },
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
        let tls = self.use_tls()?;
        let scheme = if tls { "https" } else { "http" };
        // The scheme follows the TLS decision (an `http://` address is not a way around it).
        let bare = self
            .address
            .split_once("://")
            .map_or(self.address.as_str(), |(_, rest)| rest);
        let target = format!("{scheme}://{bare}");
        let url = url::Url::parse(&target)
            .map_err(|e| format!("TEMPORAL_ADDRESS {:?} is not host:port: {e}", self.address))?;
        let opts = ConnectionOptions::new(url)
            .identity(identity.to_owned())
            .maybe_api_key(self.api_key.clone())
            .maybe_tls_options(if tls { Some(self.tls_options()?) } else { None })
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
pub async fn run_worker(
    settings: &Settings,
    task_queue: &str,
    authority: crate::authority::AuthorityActivities,
) -> Result<(), String> {
    let runtime = Runtime::from_current_tokio(Default::default()).map_err(|e| e.to_string())?;
    let identity = liveness::identity();
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
        // The worker's own configuration decides every release's policy.
        .register_activities(authority)
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
    // Runs a dead worker held wait out its sticky queue's timeout, and its activity attempts
    // their heartbeat timeout, before anyone may take them: a worker coming up (a restart after
    // a crash) sends the runs to the shared queue and hands its dead predecessor's attempts back
    // at once.
    tokio::spawn(release_runs(
        client.clone(),
        settings.namespace.clone(),
        task_queue.to_owned(),
        identity.clone(),
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

/// For every running workflow on `task_queue`: resets its sticky queue, so its next workflow
/// task goes to the shared queue, where this worker polls, rather than waiting on the sticky
/// queue of the worker that held it (after a crash, a dead one) for its timeout; and fails the
/// activity attempts a dead cutover worker on this host was running ([`liveness::gone`]), so
/// they are retried now rather than after their heartbeat timeout (and the server's timer
/// queue, which can add up to a second more). A live worker that held one of the runs replays
/// it once. Best effort: failures are logged, and the timeouts still apply.
async fn release_runs(client: Client, namespace: String, task_queue: String, identity: String) {
    use temporalio_client::grpc::WorkflowService;
    use temporalio_client::tonic::Request;
    use temporalio_common::protos::temporal::api::workflowservice::v1::ListWorkflowExecutionsRequest;
    let mut lister = client.clone();
    let query = format!("TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'");
    let mut token = Vec::new();
    let (mut released, mut handed_back) = (0usize, 0usize);
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
                tracing::warn!(error = %e.message(), "running workflows not listed; sticky queues and attempts left to time out");
                return;
            }
        };
        for execution in page.executions.into_iter().filter_map(|run| run.execution) {
            handed_back += fail_orphans(&client, &namespace, &execution, &identity).await;
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
        handed_back,
        "running workflows' next tasks go to the shared queue; attempts of dead workers on this host handed back"
    );
}

/// Fails, as retryable, the running activity attempts of `execution` whose worker was a cutover
/// worker on this host that is gone; their heartbeat details go with them, so the next attempt
/// resumes from its predecessor's progress. Returns how many it failed.
async fn fail_orphans(
    client: &Client,
    namespace: &str,
    execution: &temporalio_common::protos::temporal::api::common::v1::WorkflowExecution,
    identity: &str,
) -> usize {
    use temporalio_client::grpc::WorkflowService;
    use temporalio_client::tonic::Request;
    use temporalio_common::protos::temporal::api::enums::v1::PendingActivityState;
    use temporalio_common::protos::temporal::api::failure::v1::{
        ApplicationFailureInfo, Failure, failure::FailureInfo,
    };
    use temporalio_common::protos::temporal::api::workflowservice::v1::{
        DescribeWorkflowExecutionRequest, RespondActivityTaskFailedByIdRequest,
    };
    let mut c = client.clone();
    let describe = c.describe_workflow_execution(Request::new(DescribeWorkflowExecutionRequest {
        namespace: namespace.to_owned(),
        execution: Some(execution.clone()),
    }));
    let described = match tokio::time::timeout(Duration::from_secs(2), describe).await {
        Ok(Ok(d)) => d.into_inner(),
        Ok(Err(e)) => {
            tracing::warn!(workflow_id = execution.workflow_id, error = %e.message(), "run not described; its attempts are left to their timeouts");
            return 0;
        }
        Err(_) => {
            tracing::warn!(
                workflow_id = execution.workflow_id,
                "run not described within 2 s; its attempts are left to their timeouts"
            );
            return 0;
        }
    };
    let described_at = std::time::Instant::now();
    let mut failed = 0;
    for pending in described.pending_activities {
        if pending.state != PendingActivityState::Started as i32 {
            continue;
        }
        // A failure by id fails whichever attempt is running when it lands. Seen running by
        // the describe, the dead attempt can time out meanwhile, but its next one starts no
        // sooner than the retry backoff (200 ms, `workflows::options`) later: the failure goes
        // at once after the describe and must land within HAND_BACK_DEADLINE, or not at all.
        if described_at.elapsed() > HAND_BACK_DEADLINE / 2 {
            continue;
        }
        if !liveness::gone(&pending.last_worker_identity) {
            tracing::info!(
                workflow_id = execution.workflow_id,
                activity_id = pending.activity_id,
                worker = pending.last_worker_identity,
                "attempt left to its worker (alive, or not on this host: its heartbeat timeout applies)"
            );
            continue;
        }
        let failure = Failure {
            message: format!(
                "the worker running this attempt ({}) is gone; handed back by its successor ({identity})",
                pending.last_worker_identity
            ),
            source: "cutover-worker".to_owned(),
            failure_info: Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    r#type: WORKER_GONE.to_owned(),
                    non_retryable: false,
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let request = RespondActivityTaskFailedByIdRequest {
            namespace: namespace.to_owned(),
            workflow_id: execution.workflow_id.clone(),
            run_id: execution.run_id.clone(),
            activity_id: pending.activity_id.clone(),
            failure: Some(failure),
            identity: identity.to_owned(),
            last_heartbeat_details: pending.heartbeat_details.clone(),
            ..Default::default()
        };
        // The deadline travels with the call (grpc-timeout): the server drops it once passed.
        let mut request = Request::new(request);
        request.set_timeout(HAND_BACK_DEADLINE);
        match c.respond_activity_task_failed_by_id(request).await {
            Ok(_) => {
                failed += 1;
                tracing::info!(
                    workflow_id = execution.workflow_id,
                    activity_id = pending.activity_id,
                    attempt = pending.attempt,
                    dead = pending.last_worker_identity,
                    "a dead worker's attempt handed back for retry"
                );
            }
            // Finished or timed out meanwhile: nothing to hand back.
            Err(e) => tracing::info!(
                workflow_id = execution.workflow_id,
                error = %e.message(),
                "attempt not handed back"
            ),
        }
    }
    failed
}

/// How long a hand-back may take from the describe that saw the attempt running: less than the
/// retry backoff, so it cannot fail the attempt after it (see `fail_orphans`).
const HAND_BACK_DEADLINE: Duration = Duration::from_millis(150);

/// The failure type of an attempt handed back because its worker died.
pub const WORKER_GONE: &str = "WorkerGone";

/// Who a worker is to Temporal, and whether a worker named in a run's history still runs.
pub mod liveness {
    const PREFIX: &str = "cutover-worker@";

    /// One process: the host's name and boot id, the pid namespace, the pid and the process's
    /// start time (clock ticks after boot) — one process even when a restarted container reuses
    /// the pid.
    #[derive(PartialEq)]
    struct Process<'a> {
        host: &'a str,
        boot: &'a str,
        ns: &'a str,
        pid: u32,
        start: u64,
    }

    impl<'a> Process<'a> {
        /// `HOST:BOOT:PIDNS:PID:START` after the prefix.
        fn parse(identity: &'a str) -> Option<Self> {
            let rest = identity.strip_prefix(PREFIX)?;
            let parts: Vec<&str> = rest.rsplitn(5, ':').collect();
            let [start, pid, ns, boot, host] = parts[..] else {
                return None;
            };
            Some(Self {
                host,
                boot,
                ns,
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            })
        }
    }

    /// This process's identity, read from `/proc` once.
    fn this() -> &'static str {
        static THIS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        THIS.get_or_init(|| {
            let pid = std::process::id();
            match (host(), boot(), pid_namespace(), started(pid)) {
                (Some(host), Some(boot), Some(ns), Some(start)) => {
                    format!("{PREFIX}{host}:{boot}:{ns}:{pid}:{start}")
                }
                _ => format!("{PREFIX}{pid}"),
            }
        })
    }

    /// This process's identity: `cutover-worker@HOST:BOOT:PIDNS:PID:START` ([`Process`]).
    /// Without `/proc` (or a host name) it is `cutover-worker@PID`, which [`gone`] never reads
    /// as dead.
    pub fn identity() -> String {
        this().to_owned()
    }

    /// Whether `identity` names a cutover worker that certainly no longer runs: same host name,
    /// same boot and same pid namespace as this process (a restart on the same machine, or in
    /// the same pod with `shareProcessNamespace`), and no process with its pid and start time
    /// (a process this one may not inspect counts as running). Anything else — another host,
    /// another boot or pid namespace, an identity it cannot read — is left to the attempt's
    /// heartbeat timeout.
    pub fn gone(identity: &str) -> bool {
        let (Some(other), Some(me)) = (Process::parse(identity), Process::parse(this())) else {
            return false;
        };
        if (other.host, other.boot, other.ns) != (me.host, me.boot, me.ns) || other == me {
            return false;
        }
        match signal_zero(other.pid) {
            Alive::No => true,
            // Another process may have taken the pid: the start time tells them apart, when
            // it can be read.
            Alive::Yes => started(other.pid).is_some_and(|s| s != other.start),
            Alive::NotMine => false,
        }
    }

    enum Alive {
        Yes,
        No,
        /// A process of another user: alive.
        NotMine,
    }

    /// `kill(pid, 0)`: whether a process with that pid exists (a zombie still does; its start
    /// time then says whether it is the same process).
    fn signal_zero(pid: u32) -> Alive {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return Alive::NotMine;
        };
        #[allow(unsafe_code)]
        // SAFETY: signal 0 sends nothing; it only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        if r == 0 {
            return Alive::Yes;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Alive::No,
            _ => Alive::NotMine,
        }
    }

    /// The host's name (a pod's name in Kubernetes); none when unset or a generic default.
    fn host() -> Option<String> {
        let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
        let h = h.trim();
        (!h.is_empty() && h != "localhost" && h != "(none)" && !h.contains(':'))
            .then(|| h.to_owned())
    }

    /// This boot of the machine (`/proc/sys/kernel/random/boot_id`).
    fn boot() -> Option<String> {
        let b = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        Some(b.trim().to_owned()).filter(|b| !b.is_empty() && !b.contains(':'))
    }

    /// The pid namespace's inode (`/proc/self/ns/pid` → `pid:[4026531836]`).
    fn pid_namespace() -> Option<String> {
        let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let link = link.to_str()?;
        let inode = link.strip_prefix("pid:[")?.strip_suffix(']')?;
        inode.parse::<u64>().ok().map(|n| n.to_string())
    }

    /// When process `pid` started (field 22 of `/proc/PID/stat`), if it runs (a zombie, dead
    /// but not yet reaped by its parent, does not).
    fn started(pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
        if matches!(fields.next(), Some("Z" | "X")) {
            return None;
        }
        fields.nth(18)?.parse().ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn of(pid: u32, start: u64) -> String {
            format!(
                "{PREFIX}{}:{}:{}:{pid}:{start}",
                host().unwrap(),
                boot().unwrap(),
                pid_namespace().unwrap()
            )
        }

        #[test]
        fn this_process_is_not_gone_and_a_dead_one_is() {
            let me = identity();
            assert!(me.matches(':').count() == 4, "{me}");
            assert!(!gone(&me), "{me}");
            // A child that has exited and been reaped: its pid runs no more.
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            let start = started(pid);
            child.wait().unwrap();
            let dead = of(pid, start.unwrap_or(1));
            assert!(gone(&dead), "{dead}");
            // The same pid with another start time: a restarted process that reused the pid.
            let mine = std::process::id();
            let reused = of(mine, started(mine).unwrap() + 1);
            assert!(gone(&reused), "{reused}");
        }

        #[test]
        fn other_hosts_boots_namespaces_and_unreadable_identities_are_left_to_their_timeouts() {
            let me = identity();
            let mut parts: Vec<String> = me[PREFIX.len()..].split(':').map(str::to_owned).collect();
            let pid = i32::MAX as u32;
            parts[3] = pid.to_string();
            for (i, other) in [(0, "another-host"), (1, "another-boot"), (2, "1")] {
                let mut p = parts.clone();
                p[i] = other.to_owned();
                let id = format!("{PREFIX}{}", p.join(":"));
                assert!(!gone(&id), "{id}");
            }
            // The same host, boot and namespace, a pid that runs nowhere: gone.
            let id = format!("{PREFIX}{}", parts.join(":"));
            assert!(gone(&id), "{id}");
            assert!(!gone("cutover-worker@12345"));
            assert!(!gone("some-other-worker@host:b:1:1:1"));
            assert!(!gone(""));
        }
    }
}

pub const DEFAULT_TASK_QUEUE: &str = names::TASK_QUEUE;

#[cfg(test)]
mod tls_tests {
    use super::*;

    fn settings(address: &str, mode: Option<bool>, api_key: bool, cert: bool) -> Settings {
        Settings {
            address: address.into(),
            namespace: "default".into(),
            api_key: api_key.then(|| "k".to_owned()),
            ui: String::new(),
            tls: Tls {
                mode,
                cert: cert.then(|| "c.pem".to_owned()),
                key: cert.then(|| "k.pem".to_owned()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn plaintext_only_to_a_loopback_address_and_never_with_credentials() {
        for local in [
            "localhost:7233",
            "127.0.0.1:7233",
            "[::1]:7233",
            "http://127.0.0.5:1",
        ] {
            assert!(is_loopback(local), "{local}");
            assert_eq!(settings(local, None, false, false).use_tls(), Ok(false));
            assert_eq!(
                settings(local, Some(true), false, false).use_tls(),
                Ok(true)
            );
            assert_eq!(settings(local, None, true, false).use_tls(), Ok(true));
            let e = settings(local, Some(false), true, false)
                .use_tls()
                .unwrap_err();
            assert!(e.contains("credentials are sent only over TLS"), "{e}");
        }
        for remote in [
            "temporal.example:7233",
            "10.0.0.7:7233",
            "jts.tmprl.cloud:7233",
        ] {
            assert!(!is_loopback(remote), "{remote}");
            assert_eq!(settings(remote, None, false, false).use_tls(), Ok(true));
            assert_eq!(settings(remote, None, false, true).use_tls(), Ok(true));
            let e = settings(remote, Some(false), false, false)
                .use_tls()
                .unwrap_err();
            assert!(e.contains("only to a loopback address"), "{e}");
        }
        let mut half = settings("temporal.example:7233", None, false, true);
        half.tls.key = None;
        assert!(half.use_tls().unwrap_err().contains("go together"));
    }
}
