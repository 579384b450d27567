//! A `cutover worker` child process: its log kept across restarts, killable with SIGKILL.

use crate::{bin, kill};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
pub struct Worker {
    child: Option<Child>,
    envs: Vec<(String, String)>,
    /// The worker's stderr (appended across restarts), for failure messages.
    pub log: PathBuf,
}

impl Worker {
    pub fn start(temporal: &str, envs: &[(&str, &str)]) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let log = std::env::temp_dir().join(format!(
            "cutover-test-worker-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut w = Self {
            child: None,
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log,
        };
        w.envs.push(("TEMPORAL_ADDRESS".into(), temporal.into()));
        w.spawn();
        w
    }

    pub fn spawn(&mut self) {
        let mut cmd = Command::new(bin("cutover"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("worker log file opens");
        let out = log.try_clone().expect("worker log file opens twice");
        cmd.arg("worker").stdout(out).stderr(log);
        cmd.env_remove("CUTOVER_SLACK_WEBHOOK_URL");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("cutover worker starts"));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// Whether `identity` (a task's worker in a history:
    /// `cutover-worker@HOST:BOOT:PIDNS:PID:START`) is this worker's current process.
    pub fn is(&self, identity: &str) -> bool {
        let pid = identity.rsplit(':').nth(1);
        pid.and_then(|p| p.parse::<u32>().ok()) == Some(self.pid())
    }

    /// The last lines the worker wrote to stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The address the worker's metrics listen on, once it has printed it (start the worker
    /// with `CUTOVER_METRICS_ADDR=127.0.0.1:0`: the kernel picks a free port, no race).
    pub fn metrics_addr(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix("metrics on http://"))
            .and_then(|l| l.strip_suffix("/metrics"))
            .map(str::to_owned)
    }

    /// Whether the worker process is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sets an environment variable for the next (re)start (e.g. CUTOVER_CONFIG: the worker
    /// reads its configuration only at start).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.remove_env(key);
        self.envs.push((key.to_owned(), value.to_owned()));
    }

    /// Drops an environment variable for the next (re)start.
    pub fn remove_env(&mut self, key: &str) {
        self.envs.retain(|(k, _)| k != key);
    }

    /// `kill -9`: no chance to finish or report anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, libc::SIGKILL);
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}
