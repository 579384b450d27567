//! One test's (or one benchmark scenario's) world on Kubernetes, shared by tests/kubernetes.rs
//! and cutover-bench: a namespace of the test cluster, Temporal, a worker with the cluster's
//! kubeconfig, Prometheus discovering the pods and the gateway, a config file whose `staging`
//! environment runs in the namespace behind the shared Gateway, and load through Traefik.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use testkit::cluster::{Cluster, cluster};
use testkit::faultproxy::FaultProxy;
use testkit::prom::Prometheus;
use testkit::{Answer, GatewayLoad, Run, Temporal, Worker, scratch_dir};

pub const SERVICES: [&str; 4] = [
    "risk-management",
    "order-execution",
    "strategy-engine",
    "api-gateway",
];

pub fn repo() -> PathBuf {
    testkit::cluster::repo_root()
}

/// One test's world on Kubernetes: a namespace, Temporal, a worker with the cluster's
/// kubeconfig, a config file whose `staging` environment runs in the namespace.
pub struct KubeEnv {
    pub c: &'static Cluster,
    pub ns: String,
    pub dir: PathBuf,
    pub temporal: Temporal,
    pub worker: Worker,
    pub config: PathBuf,
    pub proxy: Option<FaultProxy>,
    /// Prometheus finding the pods and the gateway by Kubernetes service discovery.
    pub prom: Prometheus,
    /// Steady traffic through Traefik to all four services for the whole test.
    pub load: Option<GatewayLoad>,
    /// This test's place among those with a release running at once ([`MAX_AT_ONCE`]); the last
    /// field, so it is released after everything above has stopped.
    _slot: Slot,
}

/// How many tests run a Kubernetes world (Temporal, worker, Prometheus, load through the shared
/// gateway, stand-ins) at once. With three on two cores the test bed itself fell behind (the fake
/// kube-proxy's view of the EndpointSlices lagged until the gateway met closed connections: 502s
/// the product did not cause, on the code before this change as well); the other tests of the
/// file (no release) still run alongside.
pub const MAX_AT_ONCE: usize = 2;

struct Slot;

static SLOTS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

impl Slot {
    fn take() -> Self {
        let mut taken = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *taken >= MAX_AT_ONCE {
            taken = FREED.wait(taken).unwrap_or_else(|e| e.into_inner());
        }
        *taken += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

/// A fresh namespace of the test cluster whose stand-ins run with `faults` (JTS_FAULTS, read by
/// the fake kubelet from the namespace annotation).
pub fn namespace_with_faults(c: &Cluster, name: &str, faults: &str) -> String {
    let ns = c.namespace(name);
    if !faults.is_empty() {
        c.kubectl_ok(&[
            "annotate",
            "namespace",
            &ns,
            &format!("{}={faults}", testkit::kubelet::FAULTS_ANNOTATION),
        ]);
    }
    ns
}

/// Requests per second to each service through the gateway, during every test.
pub const LOAD_RATE: u32 = 20;

pub fn live_host(ns: &str, service: &str) -> String {
    format!("{service}.{ns}.jts.test")
}

/// `registry`: the images are `<registry>/jts/<service>:<revision>` and the image preflight
/// resolves them there; without one (the worlds that test traffic) the images are the stand-in's
/// `jts/<service>:<revision>`, which no registry holds, and the preflight is off.
pub fn config_text(
    ns: &str,
    c: &Cluster,
    prometheus: &str,
    keep_warm_secs: u64,
    registry: Option<&str>,
) -> String {
    let (defaults, resolve) = match registry {
        Some(r) => (
            format!("[defaults]\nimage = \"{r}/jts/{{service}}:{{revision}}\"\n"),
            "",
        ),
        None => (String::new(), ", resolve_images = false"),
    };
    format!(
        r#"{services}{defaults}
[environments.staging]
asserted_identities = true
platform = {{ kind = "kubernetes", namespace = "{ns}", manifests = "{manifests}", gateway = "{gw}", gateway_namespace = "{gw_ns}", route_host = "{{service}}.{{namespace}}.jts.test", preview_host = "{{service}}-preview.{{namespace}}.jts.test", gateway_address = "{gw_addr}"{resolve} }}
# p95 800 ms: a healthy colour's performance check through the gateway measured 534 ms while
# three Kubernetes tests shared the two cores.
thresholds = {{ max_error_ratio = 0.01, max_p95_ms = 800, min_requests = 5 }}
performance = {{ requests = 20, concurrency = 4 }}
timings = {{ validation_window_secs = 4, check_interval_ms = 1000, keep_warm_secs = {keep_warm_secs}, inconclusive_hold_secs = 8, ready_timeout_secs = 30 }}
replicas = {{ risk-management = 2, order-execution = 2, strategy-engine = 2, api-gateway = 2 }}
[environments.staging.canary]
steps = [10, 25, 50, 75, 100]
step_hold_secs = 4
analysis_interval_ms = 1000
share_tolerance_pct = 10
inconclusive_hold_secs = 20
provider = "prometheus"
prometheus_url = "{prometheus}"
window_secs = 5
"#,
        services = testkit::SERVICES_TOML,
        manifests = repo().join("k8s/jts").display(),
        gw = c.gateway.name,
        gw_ns = c.gateway.namespace,
        gw_addr = c.gateway.http,
    )
}

impl KubeEnv {
    pub fn start(name: &str, worker_env: &[(&str, &str)], keep_warm_secs: u64) -> Self {
        Self::start_with(name, worker_env, keep_warm_secs, false)
    }

    /// `through_proxy`: the worker reaches the API server through the fault proxy.
    pub fn start_with(
        name: &str,
        worker_env: &[(&str, &str)],
        keep_warm_secs: u64,
        through_proxy: bool,
    ) -> Self {
        Self::start_full(name, worker_env, keep_warm_secs, through_proxy, "")
    }

    /// `faults`: JTS_FAULTS of the namespace's stand-ins (the fake kubelet reads it from the
    /// namespace annotation).
    pub fn start_full(
        name: &str,
        worker_env: &[(&str, &str)],
        keep_warm_secs: u64,
        through_proxy: bool,
        faults: &str,
    ) -> Self {
        Self::start_world(
            name,
            worker_env,
            keep_warm_secs,
            through_proxy,
            faults,
            None,
        )
    }

    /// A world whose images live in `registry` (see [`config_text`]).
    pub fn start_registry(name: &str, worker_env: &[(&str, &str)], registry: &str) -> Self {
        Self::start_world(name, worker_env, 2, false, "", Some(registry))
    }

    fn start_world(
        name: &str,
        worker_env: &[(&str, &str)],
        keep_warm_secs: u64,
        through_proxy: bool,
        faults: &str,
        registry: Option<&str>,
    ) -> Self {
        let slot = Slot::take();
        let c = cluster();
        let ns = namespace_with_faults(c, name, faults);
        let dir = scratch_dir(&format!("k8s-{name}"));
        let prom = Prometheus::start_kubernetes(&dir, c);
        let config = dir.join("cutover.toml");
        std::fs::write(
            &config,
            config_text(&ns, c, &prom.url, keep_warm_secs, registry),
        )
        .unwrap();
        let temporal = Temporal::start(&dir);
        let proxy = through_proxy.then(|| FaultProxy::start(c));
        let kubeconfig = match &proxy {
            Some(p) => p.kubeconfig(&dir.join("proxy.kubeconfig")),
            None => c.kubeconfig.clone(),
        }
        .display()
        .to_string();
        let config_path = config.display().to_string();
        let mut envs: Vec<(&str, &str)> = vec![
            ("KUBECONFIG", &kubeconfig),
            ("CUTOVER_CONFIG", &config_path),
        ];
        envs.extend_from_slice(worker_env);
        let worker = Worker::start(&temporal.address(), &envs);
        let mut env = Self {
            c,
            ns,
            dir,
            temporal,
            worker,
            config,
            proxy,
            prom,
            load: None,
            _slot: slot,
        };
        env.sync_secrets();
        env.bootstrap("v1");
        env.start_load();
        env
    }

    /// Traffic through the gateway once every live route answers.
    pub fn start_load(&mut self) {
        let hosts: BTreeMap<String, String> = SERVICES
            .iter()
            .map(|s| (s.to_string(), live_host(&self.ns, s)))
            .collect();
        let gw = self.c.gateway.http.clone();
        testkit::wait_until(
            "every live route answers through the gateway",
            Duration::from_secs(60),
            || {
                hosts.values().all(|h| {
                    testkit::gateway_get(&gw, h, "/health/ready").is_some_and(|c| c == 200)
                })
            },
        );
        self.load = Some(GatewayLoad::start(&gw, &hosts, LOAD_RATE));
    }

    /// Stops the load: every answer it saw.
    pub fn stop_load(&mut self) -> Vec<Answer> {
        self.load.take().map(GatewayLoad::stop).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_env(args, &[])
    }

    /// `cutover deploy staging --as ci --revision REVISION EXTRA...`
    pub fn deploy(&self, revision: &str, extra: &[&str]) -> Run {
        let mut args = vec!["deploy", "staging", "--as", "ci", "--revision", revision];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    pub fn cli_env(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(testkit::bin("cutover"));
        cmd.args(args)
            .env("TEMPORAL_ADDRESS", self.temporal.address())
            .env("CUTOVER_CONFIG", &self.config)
            .env("KUBECONFIG", &self.c.kubeconfig)
            .env_remove("CUTOVER_USER");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn sync_secrets(&self) {
        let run = self.cli_env(
            &[
                "secrets",
                "sync",
                "staging",
                "--key",
                "database-url=T_DB",
                "--key",
                "broker-api-key=T_BROKER",
                "--key",
                "market-data-token=T_MARKET",
            ],
            &[
                ("T_DB", "postgres://jts:s3cr3t-db@db/jts"),
                ("T_BROKER", "s3cr3t-broker"),
                ("T_MARKET", "s3cr3t-market"),
            ],
        );
        assert_eq!(run.code, 0, "{run:?}");
    }

    /// The environment's first release, as an operator bootstraps it: rendered by cutover,
    /// applied by kubectl (server-side, as field manager cutover).
    pub fn bootstrap(&self, revision: &str) {
        let run = self.cli(&["render", "staging", "--revision", revision]);
        assert_eq!(run.code, 0, "{run:?}");
        let out = self.c.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=cutover",
                "-f",
                "-",
            ],
            &run.stdout,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for s in SERVICES {
            self.c.kubectl_ok(&[
                "-n",
                &self.ns,
                "rollout",
                "status",
                &format!("deployment/{s}-blue"),
                "--timeout=60s",
            ]);
        }
    }

    pub fn active_colors(&self) -> BTreeMap<String, String> {
        SERVICES
            .iter()
            .map(|s| {
                let v = self.c.kubectl_ok(&[
                    "-n",
                    &self.ns,
                    "get",
                    "service",
                    &format!("{s}-active"),
                    "-o",
                    "jsonpath={.spec.selector.version}",
                ]);
                (s.to_string(), v)
            })
            .collect()
    }

    /// The weights of a service's HTTPRoute backends as kubectl prints them ("100 0").
    pub fn route_weights(&self, service: &str) -> String {
        self.c.kubectl_ok(&[
            "-n",
            &self.ns,
            "get",
            "httproute",
            service,
            "-o",
            "jsonpath={.spec.rules[0].backendRefs[*].weight}",
        ])
    }

    pub fn replicas(&self, deployment: &str) -> i64 {
        self.c
            .kubectl_ok(&[
                "-n",
                &self.ns,
                "get",
                "deployment",
                deployment,
                "-o",
                "jsonpath={.spec.replicas}",
            ])
            .parse()
            .unwrap()
    }

    pub fn status(&self) -> Option<Value> {
        let run = self.cli(&["status", "staging", "--json"]);
        (run.code == 0)
            .then(|| serde_json::from_str(&run.stdout).ok())
            .flatten()
    }

    pub fn wait_status(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.status()
                && f(&s)
            {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; last status: {:?}\n{:?}\nworker log:\n{}",
                self.status(),
                self.cli(&["status", "staging"]),
                self.worker.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn all_on(colors: &BTreeMap<String, String>, c: &str) -> bool {
    colors.len() == 4 && colors.values().all(|v| v == c)
}

/// No request sent after a pod was told to stop (SIGTERM from the fake kubelet) was answered
/// by that pod: retiring pods drain, they never take new requests.
/// Returns how many answers came from addresses whose pods were stopped (callers where pods
/// retire assert it is above 0, so the check is not vacuous).
pub fn assert_no_answer_from_stopped_pods(
    started: std::time::Instant,
    answers: &[Answer],
) -> usize {
    let mut checked = 0;
    for a in answers.iter().filter(|a| !a.instance.is_empty()) {
        if !testkit::kubelet::ever_stopped(&a.instance) {
            continue;
        }
        checked += 1;
        if let Some(late) = testkit::kubelet::sent_after_stop(&a.instance, started + a.sent) {
            panic!(
                "{} answered a {} request sent {late:?} after its pod was told to stop",
                a.instance, a.service
            );
        }
    }
    eprintln!("{checked} answers came from addresses whose pods were stopped; none after a stop");
    checked
}

/// Answers received after `after` from any version but `want`.
pub fn answers_not_by(answers: &[Answer], after: Duration, want: &str) -> Vec<Answer> {
    answers
        .iter()
        .filter(|a| a.at > after && a.version != want)
        .cloned()
        .collect()
}

/// Every request of the load answered with a 2xx by some version.
pub fn assert_none_failed(answers: &[Answer]) {
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.failure.is_some()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests through the gateway failed: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(10)]
    );
}

/// Prints, per service and for all four, the cutover window as clients saw it: the first
/// answer by `new` to the last answer by `old`, among the answers after `after` (negative: a
/// clean cut, the gap between them).
pub fn report_cutover(answers: &[Answer], after: Duration, old: &str, new: &str) -> f64 {
    let answers: Vec<Answer> = answers.iter().filter(|a| a.at >= after).cloned().collect();
    let mut all = (f64::MAX, f64::MIN);
    for s in SERVICES {
        let of = |v: &str| -> Vec<f64> {
            answers
                .iter()
                .filter(|a| a.service == s && a.version == v)
                .map(|a| a.at.as_secs_f64() * 1000.0)
                .collect()
        };
        let first_new = of(new).into_iter().fold(f64::MAX, f64::min);
        let last_old = of(old).into_iter().fold(f64::MIN, f64::max);
        all = (all.0.min(first_new), all.1.max(last_old));
        eprintln!(
            "cutover {old}→{new} {s}: first {new} at {first_new:.0} ms, last {old} at {last_old:.0} ms, window {:.0} ms",
            last_old - first_new
        );
    }
    let n = answers.len();
    eprintln!(
        "cutover {old}→{new} all four: window {:.0} ms; {n} requests, {} failed",
        all.1 - all.0,
        answers.iter().filter(|a| a.failure.is_some()).count()
    );
    all.1 - all.0
}

/// Unix ms of the first status event that starts with `what` (after its timestamp).
pub fn event_ms(status: &Value, what: &str) -> Option<f64> {
    status["events"].as_array()?.iter().find_map(|e| {
        let (at, text) = e.as_str()?.split_once(' ')?;
        let t: jiff::Timestamp = at.parse().ok()?;
        text.starts_with(what).then(|| t.as_millisecond() as f64)
    })
}
