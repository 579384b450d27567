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
//! - [`registry`]: a real OCI registry (CNCF distribution) and `crane` to push images to it.
//! - [`faultproxy`]: a fake, named as such — injects API-server faults (409, 5xx, hangs).

pub mod cluster;
pub mod db;
pub mod faultproxy;
pub mod kubelet;
pub mod kubeproxy;
mod load;
pub mod prom;
pub mod registry;
mod temporal;
pub mod tlsproxy;
mod worker;

pub use load::{Answer, GatewayLoad, Load, LoadStats};
pub use temporal::{RunningActivity, Temporal};
pub use worker::Worker;

use localplatform::api::{JournalEntry, PlatformState};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    send_signal(child, signal);
    let _ = child.wait();
}

/// Sends a signal to our own child without waiting for it.
pub(crate) fn send_signal(child: &Child, signal: i32) {
    #[allow(unsafe_code)]
    // SAFETY: signals our own child; no memory is touched.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

pub struct Platform {
    child: Child,
    pub admin: String,
    pub services: BTreeMap<String, String>,
    http: blocking::Client,
}

/// One GET through the gateway at `gateway` (host:port on 127.0.0.0/8) for `host`: its status,
/// or None when nothing answered.
pub fn gateway_get(gateway: &str, host: &str, path: &str) -> Option<u16> {
    assert!(gateway.starts_with("127."), "loopback only: {gateway}");
    let (url, host) = (format!("http://{gateway}{path}"), host.to_owned());
    blocking::rt().block_on(async move {
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(3))
            .build()
            .ok()?;
        c.get(&url)
            .header("host", host)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
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

        /// The status code of a GET, or None when nothing answered.
        pub fn status(&self, url: &str) -> Option<u16> {
            let c = self.0.clone();
            let url = url.to_owned();
            rt().block_on(async move { c.get(&url).send().await.ok().map(|r| r.status().as_u16()) })
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

/// The four JTS services of every test configuration, in cutover.toml's form.
pub const SERVICES_TOML: &str = r#"[services.risk-management]
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
"#;

pub fn config_text(envs: &[(&str, &str)], o: &ConfigOpts) -> String {
    let mut s = String::from(SERVICES_TOML);
    for (env, admin) in envs {
        s.push_str(&format!(
            r#"
[environments.{env}]
platform = {{ kind = "local", admin_url = "{admin}" }}
production = false
asserted_identities = true
thresholds = {{ max_error_ratio = 0.01, max_p95_ms = 500, min_requests = {min} }}
performance = {{ requests = 20, concurrency = 4 }}
approval = {{ required = {approval}, approvers = ["alice", "bob"], distinct_from_requester = {approval} }}
timings = {{ validation_window_secs = {vw}, check_interval_ms = {ci}, keep_warm_secs = {kw}, inconclusive_hold_secs = {ih}, ready_timeout_secs = 20 }}
replicas = {{ risk-management = {r}, order-execution = {r}, strategy-engine = {r}, api-gateway = {r} }}
"#,
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
        let mut envs = worker_env.to_vec();
        let config_path = config.display().to_string();
        envs.push(("CUTOVER_CONFIG", &config_path));
        let mut worker = Worker::start(&temporal.address(), &envs);
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

    /// The configuration file changed: the worker reads it only at start, so it restarts
    /// (nothing is running in between in the tests that do this) and polls again.
    pub fn reconfigure(&mut self) {
        self.worker.restart();
        let polling = poll(Duration::from_secs(60), CLI_POLL, || {
            assert!(
                self.worker.running(),
                "the cutover worker exited after a configuration change; its log:\n{}",
                self.worker.log_tail(40)
            );
            self.worker_polls()
        });
        assert!(polling, "the restarted worker did not poll within 60 s");
    }

    /// Whether this world's current worker process polls the cutover task queue (the server
    /// lists a dead worker's poller for a while).
    fn worker_polls(&self) -> bool {
        self.temporal
            .workflow_pollers("cutover")
            .iter()
            .any(|id| self.worker.is(id))
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
