//! Test harness for cutover: real servers on 127.0.0.1, started and stopped by the tests.
//!
//! - [`Temporal`]: `temporal server start-dev` on a free port with a SQLite file (restartable).
//! - [`Platform`]: the `cutover-platform` process with its stand-ins.
//! - [`Worker`]: a `cutover worker` child process (killable with SIGKILL).
//! - [`Load`]: steady HTTP traffic to every service, counting failures.
//! - [`Env`]: all of them plus a config file, and a helper to run the `cutover` CLI.
//! - [`cluster`]: a real Kubernetes control plane (etcd, kube-apiserver, controller manager,
//!   scheduler, kwok), one per test process, a namespace per test.
//! - [`db`]: a throwaway PostgreSQL 15 server and an S3-compatible server (s3s-fs).
//! - [`prom`]: a real Prometheus scraping the platform (and the worker), stoppable.
//! - [`faultproxy`]: a fake, named as such — injects API-server faults (409, 5xx, hangs).

pub mod cluster;
pub mod db;
pub mod faultproxy;
mod load;
pub mod prom;

pub use load::{Load, LoadStats};

use localplatform::api::{JournalEntry, PlatformState};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Directory of the workspace's built binaries (the test executable lives in `<dir>/deps`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("deps dir");
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --bins` first",
        p.display()
    );
    p
}

/// The Temporal CLI: `$CUTOVER_TEMPORAL`, else `temporal` on PATH, else the cache that
/// `scripts/install-tools.sh` fills.
pub fn temporal_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("CUTOVER_TEMPORAL") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("temporal"))
            .find(|p| p.is_file())
    }) {
        return p;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"));
    let p = cache.join("cutover-testbin/temporal-1.9.1/temporal");
    assert!(
        p.is_file(),
        "no Temporal CLI: run scripts/install-tools.sh or set CUTOVER_TEMPORAL"
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes (no fixed sleeps in tests).
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    wait_every(what, timeout, Duration::from_millis(50), cond);
}

/// `wait_until` at a chosen interval: a check that runs the 150 MB Temporal CLI polls every
/// 250 ms, so that three tests starting at once on two cores do not starve each other's servers.
pub fn wait_every(what: &str, timeout: Duration, every: Duration, cond: impl FnMut() -> bool) {
    assert!(
        poll(timeout, every, cond),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Whether `cond` came to hold within `timeout`, checked every `every`.
fn poll(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
    true
}

/// How often a check that runs the Temporal CLI is repeated.
const CLI_POLL: Duration = Duration::from_millis(250);

/// The child gets SIGKILL when the thread that spawned it ends (tests never leak servers).
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    #[allow(unsafe_code)]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn kill(child: &mut Child, signal: i32) {
    #[allow(unsafe_code)]
    // SAFETY: signals our own child; no memory is touched.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let _ = child.wait();
}

pub struct Temporal {
    child: Option<Child>,
    pub port: u16,
    pub ui_port: u16,
    db: PathBuf,
}

impl Temporal {
    /// A worker polls `task_queue` for workflow tasks (`temporal task-queue describe`).
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

    pub fn start(dir: &Path) -> Self {
        let mut t = Self {
            child: None,
            port: free_port(),
            ui_port: free_port(),
            db: dir.join("temporal.db"),
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

    fn log_tail(&self) -> String {
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
        .stdout(Stdio::null());
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

pub struct Platform {
    child: Child,
    pub admin: String,
    pub services: BTreeMap<String, String>,
    http: blocking::Client,
}

/// A tiny blocking HTTP helper over a private tokio runtime (tests are plain threads).
pub mod blocking {
    use std::sync::OnceLock;
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

    pub fn rt() -> &'static tokio::runtime::Runtime {
        let _ = rustls::crypto::ring::default_provider().install_default();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
    }

    #[derive(Clone)]
    pub struct Client(pub reqwest::Client);

    impl Client {
        pub fn new() -> Self {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Self(
                reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build()
                    .unwrap(),
            )
        }

        pub fn get_json(&self, url: &str) -> serde_json::Value {
            let c = self.0.clone();
            let url = url.to_owned();
            rt().block_on(async move { c.get(&url).send().await.unwrap().json().await.unwrap() })
        }
    }

    impl Default for Client {
        fn default() -> Self {
            Self::new()
        }
    }
}

impl Platform {
    /// Starts the platform with v1 live on blue; `faults` becomes the stand-ins' `JTS_FAULTS`.
    pub fn start(faults: &str, replicas: u32) -> Self {
        let mut child = Command::new(bin("cutover-platform"))
            .args([
                "--admin",
                "127.0.0.1:0",
                "--replicas",
                &replicas.to_string(),
            ])
            .env("JTS_FAULTS", faults)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cutover-platform starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut admin, mut services) = (String::new(), BTreeMap::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["ADMIN", a] => admin = format!("http://{a}"),
                ["SERVICE", n, a] => {
                    services.insert(n.to_string(), format!("http://{a}"));
                }
                ["READY"] => break,
                _ => {}
            }
        }
        std::thread::spawn(move || for _ in lines {});
        assert!(!admin.is_empty(), "platform printed no ADMIN line");
        Self {
            child,
            admin,
            services,
            http: blocking::Client::new(),
        }
    }

    pub fn state(&self) -> PlatformState {
        serde_json::from_value(self.http.get_json(&format!("{}/v1/state", self.admin))).unwrap()
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        serde_json::from_value(self.http.get_json(&format!("{}/v1/journal", self.admin))).unwrap()
    }

    /// The colour each service sends all its traffic to.
    pub fn active_colors(&self) -> BTreeMap<String, String> {
        self.state()
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.active_color().unwrap_or("split").to_owned()))
            .collect()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        kill(&mut self.child, libc::SIGTERM);
    }
}

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

/// Knobs of the test configuration.
#[derive(Clone, Debug)]
pub struct ConfigOpts {
    pub approval: bool,
    pub validation_window_secs: u64,
    pub check_interval_ms: u64,
    pub keep_warm_secs: u64,
    pub min_requests: u64,
    pub inconclusive_hold_secs: u64,
    pub replicas: u32,
}

impl Default for ConfigOpts {
    fn default() -> Self {
        Self {
            approval: false,
            validation_window_secs: 3,
            check_interval_ms: 500,
            keep_warm_secs: 1,
            min_requests: 10,
            inconclusive_hold_secs: 5,
            replicas: 1,
        }
    }
}

pub fn config_text(envs: &[(&str, &str)], o: &ConfigOpts) -> String {
    let mut s = String::from(
        r#"[services.risk-management]
smoke = ["/api/risk/limits"]
[services.order-execution]
depends_on = ["risk-management"]
smoke = ["/api/orders"]
[services.strategy-engine]
depends_on = ["risk-management"]
smoke = ["/api/strategies"]
[services.api-gateway]
depends_on = ["strategy-engine", "order-execution"]
smoke = ["/api/market/status"]
"#,
    );
    for (env, admin) in envs {
        s.push_str(&format!(
            r#"
[environments.{env}]
platform = {{ kind = "local", admin_url = "{admin}" }}
production = {prod}
thresholds = {{ max_error_ratio = 0.01, max_p95_ms = 500, min_requests = {min} }}
performance = {{ requests = 20, concurrency = 4 }}
approval = {{ required = {approval}, approvers = ["alice", "bob"] }}
timings = {{ validation_window_secs = {vw}, check_interval_ms = {ci}, keep_warm_secs = {kw}, inconclusive_hold_secs = {ih}, ready_timeout_secs = 20 }}
replicas = {{ risk-management = {r}, order-execution = {r}, strategy-engine = {r}, api-gateway = {r} }}
"#,
            prod = o.approval,
            min = o.min_requests,
            approval = o.approval,
            vw = o.validation_window_secs,
            ci = o.check_interval_ms,
            kw = o.keep_warm_secs,
            ih = o.inconclusive_hold_secs,
            r = o.replicas,
        ));
    }
    s
}

/// Output of one `cutover` CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The value of a `key: value` line of stdout.
    pub fn field(&self, key: &str) -> Option<String> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")).map(str::to_owned))
    }
}

/// One test's world: a Temporal server, a platform, a worker and a config file.
pub struct Env {
    pub dir: PathBuf,
    pub temporal: Temporal,
    pub platform: Platform,
    pub worker: Worker,
    pub config: PathBuf,
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cutover-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Env {
    pub fn start(name: &str, faults: &str, opts: &ConfigOpts, worker_env: &[(&str, &str)]) -> Self {
        let dir = scratch_dir(name);
        let temporal = Temporal::start(&dir);
        let platform = Platform::start(faults, opts.replicas);
        let config = dir.join("cutover.toml");
        std::fs::write(&config, config_text(&[("staging", &platform.admin)], opts)).unwrap();
        let mut worker = Worker::start(&temporal.address(), worker_env);
        // Until the worker polls, a query of a workflow that has just started (the breaker a
        // command creates) waits for the client's 30 s timeout on a slow machine. A worker that
        // exits instead is reported with its log at once, not after the timeout.
        let polling = poll(Duration::from_secs(90), CLI_POLL, || {
            assert!(
                worker.running(),
                "the cutover worker exited before polling; its log:\n{}",
                worker.log_tail(40)
            );
            temporal.has_workflow_poller("cutover")
        });
        assert!(
            polling,
            "timed out after 90 s waiting for the worker to poll the cutover task queue; \
             worker log:\n{}\nTemporal log:\n{}",
            worker.log_tail(40),
            temporal.log_tail()
        );
        Self {
            dir,
            temporal,
            platform,
            worker,
            config,
        }
    }

    /// Runs `cutover ARGS` against this world's Temporal server and config.
    pub fn cli(&self, args: &[&str]) -> Run {
        run_cli(&self.temporal.address(), &self.config, args)
    }
}

pub fn run_cli(temporal: &str, config: &Path, args: &[&str]) -> Run {
    let out = Command::new(bin("cutover"))
        .args(args)
        .env("TEMPORAL_ADDRESS", temporal)
        .env("CUTOVER_CONFIG", config)
        .env_remove("CUTOVER_USER")
        .output()
        .expect("cutover runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// Resident set size of a process in bytes (from /proc).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
