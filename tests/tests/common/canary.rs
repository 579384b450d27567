//! Canary helpers: an environment with a real Prometheus scraping the router (1 s scrape
//! interval) and the `canary` section of the configuration, and waits on `canary status`.

use serde_json::Value;
use std::time::{Duration, Instant};
use testkit::prom::Prometheus;
use testkit::{ConfigOpts, Env};

pub const INTERVAL_MS: u64 = 1000;

/// The default steps (10..100 %), a hold of `hold_secs` per step.
pub fn canary_env(
    name: &str,
    faults: &str,
    hold_secs: u64,
    inconclusive_secs: u64,
) -> (Env, Prometheus) {
    let opts = ConfigOpts {
        min_requests: 10,
        keep_warm_secs: 1,
        ..Default::default()
    };
    canary_env_with(
        name,
        faults,
        &[10, 25, 50, 75, 100],
        hold_secs,
        inconclusive_secs,
        &opts,
    )
}

/// `canary_env_with` and no environment for the worker beyond the test's.
pub fn canary_env_with(
    name: &str,
    faults: &str,
    steps: &[u32],
    hold_secs: u64,
    inconclusive_secs: u64,
    opts: &ConfigOpts,
) -> (Env, Prometheus) {
    canary_env_for(
        name,
        faults,
        steps,
        (hold_secs, inconclusive_secs),
        opts,
        &[],
    )
}

/// `holds`: the step hold and the inconclusive hold, in seconds; `worker_env`: the worker's
/// environment (a database URL, S3 credentials).
pub fn canary_env_for(
    name: &str,
    faults: &str,
    steps: &[u32],
    holds: (u64, u64),
    opts: &ConfigOpts,
    worker_env: &[(&str, &str)],
) -> (Env, Prometheus) {
    let (hold_secs, inconclusive_secs) = holds;
    let mut env = Env::start(name, faults, opts, worker_env);
    let admin = env.platform.admin.trim_start_matches("http://").to_owned();
    let prom = Prometheus::start(&env.dir, &[("router", &admin)]);
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    cfg.push_str(&format!(
        "canary = {{ steps = {steps:?}, step_hold_secs = {hold_secs}, analysis_interval_ms = {INTERVAL_MS}, share_tolerance_pct = 8, inconclusive_hold_secs = {inconclusive_secs}, provider = \"prometheus\", prometheus_url = \"{}\", window_secs = 5 }}\n",
        prom.url
    ));
    std::fs::write(&env.config, cfg).unwrap();
    env.reconfigure();
    (env, prom)
}

/// Starts the canary of v3; its deployment id.
pub fn start(env: &Env) -> String {
    let run = env.cli(&[
        "deploy",
        "staging",
        "--strategy",
        "canary",
        "--revision",
        "v3",
        "--as",
        "ci",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    run.field("deployment_id").unwrap()
}

pub fn canary_status(env: &Env) -> Option<Value> {
    let r = env.cli(&["canary", "status", "staging", "--json"]);
    (r.code == 0)
        .then(|| serde_json::from_str(&r.stdout).ok())
        .flatten()
}

pub fn wait(env: &Env, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = canary_status(env)
            && f(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}\nworker:\n{}",
            canary_status(env),
            env.worker.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn done(s: &Value) -> bool {
    s["phase"] == "done"
}

pub fn rfc3339_ms(s: &str) -> f64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as f64
}

/// Every service's canary weight on `color` (the router's state).
pub fn weights_on(env: &Env, color: &str) -> Vec<u32> {
    env.platform
        .state()
        .services
        .values()
        .map(|svc| svc.weights.get(color).copied().unwrap_or(0))
        .collect()
}
