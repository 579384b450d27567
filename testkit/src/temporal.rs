//! `temporal server start-dev` on free ports with a SQLite file: restartable, and started
//! again on new ports when a port it picked is taken first.

use crate::{CLI_POLL, free_port, kill, poll, temporal_cli};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Temporal {
    child: Option<Child>,
    pub port: u16,
    pub ui_port: u16,
    db: PathBuf,
    /// Dynamic configuration beyond the test bed's own (`KEY=JSON` values).
    settings: Vec<String>,
}

impl Temporal {
    /// A worker polls `task_queue` for workflow tasks (`temporal task-queue describe`).
    /// The identities of the workers polling `task_queue` for workflow tasks.
    pub fn workflow_pollers(&self, task_queue: &str) -> Vec<String> {
        let out = Command::new(temporal_cli())
            .args(["task-queue", "describe", "--task-queue", task_queue])
            .args(["--address", &self.address(), "--output", "json"])
            .output();
        let Ok(out) = out else { return Vec::new() };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["pollers"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter(|x| x["taskQueueType"] == "workflow")
                    .filter_map(|x| x["identity"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has_workflow_poller(&self, task_queue: &str) -> bool {
        let out = Command::new(temporal_cli())
            .args(["task-queue", "describe", "--task-queue", task_queue])
            .args(["--address", &self.address(), "--output", "json"])
            .output();
        let Ok(out) = out else { return false };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["pollers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x["taskQueueType"] == "workflow"))
    }

    /// How many workflow executions match a visibility `query` (`temporal workflow count`): one
    /// call to the server, no query task for the worker; `None` when the CLI fails.
    pub fn count(&self, query: &str) -> Option<u64> {
        let out = Command::new(temporal_cli())
            .args(["workflow", "count", "--query", query])
            .args(["--address", &self.address(), "--output", "json"])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        // proto3 JSON leaves a zero count out: `{}`.
        match &v["count"] {
            serde_json::Value::Null => Some(0),
            c => c.as_u64().or_else(|| c.as_str()?.parse().ok()),
        }
    }

    /// The activities of a workflow's latest run that a worker is running now, from `temporal
    /// workflow describe`.
    pub fn running_activities(&self, workflow_id: &str) -> Vec<RunningActivity> {
        let out = Command::new(temporal_cli())
            .args(["workflow", "describe", "--workflow-id", workflow_id])
            .args(["--address", &self.address(), "--output", "json"])
            .output()
            .expect("the Temporal CLI runs");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let ms = |t: &serde_json::Value| {
            t.as_str()?
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_millisecond() as f64)
        };
        v["pendingActivities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "PENDING_ACTIVITY_STATE_STARTED")
            .map(|a| RunningActivity {
                kind: a["activityType"]["name"].as_str().unwrap_or("").to_owned(),
                worker: a["lastWorkerIdentity"].as_str().unwrap_or("").to_owned(),
                last_heartbeat_ms: ms(&a["lastHeartbeatTime"]),
            })
            .collect()
    }

    /// The events of a workflow's latest run (`temporal workflow show --output json`).
    pub fn history(&self, workflow_id: &str) -> Vec<serde_json::Value> {
        let out = Command::new(temporal_cli())
            .args(["workflow", "show", "--workflow-id", workflow_id])
            .args(["--address", &self.address(), "--output", "json"])
            .output()
            .expect("the Temporal CLI runs");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "workflow show {workflow_id}: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// The identities of the workers that took the run's workflow tasks, in order (the last one
    /// holds the run: its sticky queue gets the next task).
    pub fn task_workers(&self, workflow_id: &str) -> Vec<String> {
        self.history(workflow_id)
            .iter()
            .filter_map(|e| {
                e["workflowTaskStartedEventAttributes"]["identity"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// When the run of `workflow_id` next completed a workflow task after `since` (it resumed):
    /// the milliseconds from `since`, read from the history.
    pub fn resumed_ms(&self, workflow_id: &str, since: SystemTime) -> Option<f64> {
        first_after(
            &self.history(workflow_id),
            since,
            &["EVENT_TYPE_WORKFLOW_TASK_COMPLETED"],
        )
    }

    /// When a worker next started any task of the run (a workflow task, or an activity attempt)
    /// after `since`: the milliseconds from `since` until the run was taken over.
    pub fn taken_over_ms(&self, workflow_id: &str, since: SystemTime) -> Option<f64> {
        first_after(
            &self.history(workflow_id),
            since,
            &[
                "EVENT_TYPE_WORKFLOW_TASK_STARTED",
                "EVENT_TYPE_ACTIVITY_TASK_STARTED",
            ],
        )
    }

    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// Starts the server with dynamic configuration `settings` (`KEY=JSON` values, e.g.
    /// `history.timerProcessorMaxTimeShift="100ms"`) beyond the test bed's own.
    pub fn start_with(dir: &Path, settings: &[&str]) -> Self {
        let mut t = Self {
            child: None,
            port: free_port(),
            ui_port: free_port(),
            db: dir.join("temporal.db"),
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        // The server picks its internal ports at random; on a busy machine another process can
        // take one first, and the server never becomes healthy. Then: new ports, again.
        for attempt in 1..=3 {
            if t.try_spawn(true) {
                return t;
            }
            eprintln!(
                "testkit: Temporal on port {} did not become healthy (attempt {attempt}); log:\n{}",
                t.port,
                t.log_tail()
            );
            t.stop();
            t.port = free_port();
            t.ui_port = free_port();
        }
        panic!("Temporal did not become healthy in 3 attempts")
    }

    /// Starts the server on its ports; panics (with its log) when it does not become healthy.
    pub fn spawn(&mut self, headless: bool) {
        assert!(
            self.try_spawn(headless),
            "Temporal did not become healthy on port {}; log:\n{}",
            self.port,
            self.log_tail()
        );
    }

    fn log(&self) -> PathBuf {
        self.db.with_extension("log")
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, libc::SIGKILL);
        }
    }

    /// The server process has not exited.
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Starts the server and waits until it listens and its frontend reports healthy; false
    /// (early) when it exits or stays unhealthy. `headless`: no UI (tests); the demo passes false.
    fn try_spawn(&mut self, headless: bool) -> bool {
        let mut cmd = Command::new(temporal_cli());
        cmd.args([
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "error",
        ])
        .args(["--port", &self.port.to_string()])
        .args(["--db-filename", self.db.to_str().unwrap()])
        .args([
            "--dynamic-config-value",
            "matching.longPollExpirationInterval=\"2s\"",
        ])
        // A write-ahead log, synced at checkpoints: still durable when the server is killed
        // (what the tests do), and no fsync per transaction. With SQLite's default journal the
        // dev server spent most of a 100-release burst waiting on the disk (failed check →
        // rollback decision p99 2.3 s against 0.5 s), which a production cluster's database
        // would not.
        .args(["--sqlite-pragma", "journal_mode=WAL"])
        .args(["--sqlite-pragma", "synchronous=NORMAL"])
        .stdout(Stdio::null());
        for setting in &self.settings {
            cmd.args(["--dynamic-config-value", setting]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("Temporal log file opens");
        cmd.stderr(log);
        if headless {
            cmd.arg("--headless");
        } else {
            cmd.args(["--ui-port", &self.ui_port.to_string()]);
        }
        self.child = Some(cmd.spawn().expect("temporal starts"));
        let addr = format!("127.0.0.1:{}", self.port);
        let listening = poll(Duration::from_secs(30), Duration::from_millis(50), || {
            !self.running() || std::net::TcpStream::connect(&addr).is_ok()
        });
        // Listening is not serving: wait until the frontend reports healthy.
        listening
            && self.running()
            && poll(Duration::from_secs(60), CLI_POLL, || {
                !self.running()
                    || Command::new(temporal_cli())
                        .args(["operator", "cluster", "health", "--address", &addr])
                        .output()
                        .is_ok_and(|o| o.status.success())
            })
            && self.running()
    }

    /// The dev server's process id (0 while it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Restarts the server with its web UI (for the demo).
    pub fn restart_with_ui(&mut self) {
        self.stop();
        self.spawn(false);
    }

    /// Stops the server abruptly (SIGKILL) and starts it again on the same SQLite file.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn(true);
    }
}

impl Drop for Temporal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An activity attempt a worker is running (`Temporal::running_activities`).
#[derive(Debug, Clone)]
pub struct RunningActivity {
    pub kind: String,
    /// The identity of the worker running it.
    pub worker: String,
    /// When the server last heard its heartbeat (ms since the epoch).
    pub last_heartbeat_ms: Option<f64>,
}

/// Milliseconds from `since` to the first event of one of `types` after it.
fn first_after(events: &[serde_json::Value], since: SystemTime, types: &[&str]) -> Option<f64> {
    let since_ms = since.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1000.0;
    events
        .iter()
        .filter(|e| e["eventType"].as_str().is_some_and(|t| types.contains(&t)))
        .filter_map(|e| e["eventTime"].as_str()?.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond() as f64)
        .filter(|t| *t > since_ms)
        .min_by(f64::total_cmp)
        .map(|t| t - since_ms)
}
