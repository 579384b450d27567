//! The Kubernetes platform against a real control plane (etcd, kube-apiserver, controller
//! manager, scheduler; kwok instead of kubelets), started once for this test binary; each test
//! has its own namespace. Deployments are driven end to end through the Temporal dev server and
//! the `cutover worker`, as in production.

mod common;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::cluster::{Cluster, cluster};
use testkit::faultproxy::{Fault, FaultProxy, Rule};
use testkit::{Run, Temporal, Worker, blocking, run_cli, scratch_dir};

const SERVICES: [&str; 4] = [
    "risk-management",
    "order-execution",
    "strategy-engine",
    "api-gateway",
];

fn repo() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

/// A stand-in process that plays the preview colour's pods for the checks before the switch
/// (kwok pods run no process; the API traffic of the checks needs a real server).
struct Preview(Child, String);

impl Preview {
    fn start() -> Self {
        let mut cmd = Command::new(testkit::bin("jts-standin"));
        cmd.args([
            "--service",
            "api-gateway",
            "--version",
            "v2",
            "--color",
            "green",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().strip_prefix("LISTENING ").unwrap().to_owned();
        Self(child, format!("http://{addr}"))
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One test's world on Kubernetes: a namespace, Temporal, a worker with the cluster's
/// kubeconfig, a config file whose `staging` environment runs in the namespace.
struct KubeEnv {
    c: &'static Cluster,
    ns: String,
    dir: PathBuf,
    temporal: Temporal,
    worker: Worker,
    config: PathBuf,
    _preview: Preview,
    proxy: Option<FaultProxy>,
}

fn config_text(ns: &str, preview: &str, keep_warm_secs: u64) -> String {
    format!(
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

[environments.staging]
platform = {{ kind = "kubernetes", namespace = "{ns}", preview_url = "{preview}", manifests = "{manifests}" }}
thresholds = {{ max_error_ratio = 0.01, max_p95_ms = 500, min_requests = 10 }}
performance = {{ requests = 20, concurrency = 4 }}
timings = {{ validation_window_secs = 2, check_interval_ms = 500, keep_warm_secs = {keep_warm_secs}, inconclusive_hold_secs = 5, ready_timeout_secs = 30 }}
replicas = {{ risk-management = 2, order-execution = 2, strategy-engine = 2, api-gateway = 2 }}
"#,
        manifests = repo().join("k8s/jts").display()
    )
}

impl KubeEnv {
    fn start(name: &str, worker_env: &[(&str, &str)], keep_warm_secs: u64) -> Self {
        Self::start_with(name, worker_env, keep_warm_secs, false)
    }

    /// `through_proxy`: the worker reaches the API server through the fault proxy.
    fn start_with(
        name: &str,
        worker_env: &[(&str, &str)],
        keep_warm_secs: u64,
        through_proxy: bool,
    ) -> Self {
        let c = cluster();
        let ns = c.namespace(name);
        let dir = scratch_dir(&format!("k8s-{name}"));
        let preview = Preview::start();
        let config = dir.join("cutover.toml");
        std::fs::write(&config, config_text(&ns, &preview.1, keep_warm_secs)).unwrap();
        let temporal = Temporal::start(&dir);
        let proxy = through_proxy.then(|| FaultProxy::start(c));
        let kubeconfig = match &proxy {
            Some(p) => p.kubeconfig(&dir.join("proxy.kubeconfig")),
            None => c.kubeconfig.clone(),
        }
        .display()
        .to_string();
        let mut envs: Vec<(&str, &str)> = vec![("KUBECONFIG", &kubeconfig)];
        envs.extend_from_slice(worker_env);
        let worker = Worker::start(&temporal.address(), &envs);
        let env = Self {
            c,
            ns,
            dir,
            temporal,
            worker,
            config,
            _preview: preview,
            proxy,
        };
        env.sync_secrets();
        env.bootstrap("v1");
        env
    }

    fn cli(&self, args: &[&str]) -> Run {
        self.cli_env(args, &[])
    }

    fn cli_env(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
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

    fn sync_secrets(&self) {
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
    fn bootstrap(&self, revision: &str) {
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

    fn active_colors(&self) -> BTreeMap<String, String> {
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

    fn replicas(&self, deployment: &str) -> i64 {
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

    fn status(&self) -> Option<Value> {
        let run = self.cli(&["status", "staging", "--json"]);
        (run.code == 0)
            .then(|| serde_json::from_str(&run.stdout).ok())
            .flatten()
    }

    fn wait_status(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
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

fn all_on(colors: &BTreeMap<String, String>, c: &str) -> bool {
    colors.len() == 4 && colors.values().all(|v| v == c)
}

/// Ready pod names per active Service, per EndpointSlice.
type ReadyPods = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Ready endpoints per active Service, followed through a watch on EndpointSlices. Records the
/// smallest count each service had once it had any, and the pod-name prefixes seen at the end.
struct SliceWatch {
    min_ready: Arc<Mutex<BTreeMap<String, usize>>>,
    current: Arc<Mutex<ReadyPods>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SliceWatch {
    fn start(c: &'static Cluster, ns: &str) -> Self {
        let min_ready = Arc::new(Mutex::new(BTreeMap::new()));
        let current: Arc<Mutex<ReadyPods>> = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, cur, st, ns) = (
            min_ready.clone(),
            current.clone(),
            stop.clone(),
            ns.to_owned(),
        );
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let task = blocking::rt().spawn(async move {
            let api: Api<EndpointSlice> = Api::namespaced(c.client().await, &ns);
            let lp = ListParams::default();
            let list = api.list(&lp).await.unwrap();
            let record = |slice: &EndpointSlice, deleted: bool| {
                let Some(svc) = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    .filter(|s| s.ends_with("-active"))
                    .cloned()
                else {
                    return;
                };
                let name = slice.metadata.name.clone().unwrap_or_default();
                let ready: Vec<String> = if deleted {
                    vec![]
                } else {
                    slice
                        .endpoints
                        .iter()
                        .flatten()
                        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                        .map(|e| {
                            e.target_ref
                                .as_ref()
                                .and_then(|t| t.name.clone())
                                .unwrap_or_default()
                        })
                        .collect()
                };
                let mut cur = cur.lock().unwrap();
                let per = cur.entry(svc.clone()).or_default();
                per.insert(name, ready);
                let total: usize = per.values().map(Vec::len).sum();
                let mut m = m.lock().unwrap();
                let e = m.entry(svc).or_insert(usize::MAX);
                *e = (*e).min(total);
            };
            for s in &list.items {
                record(s, false);
            }
            let rv = list.metadata.resource_version.unwrap_or_default();
            let mut stream = api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .unwrap()
                .boxed();
            ready_tx.send(()).unwrap();
            while let Some(ev) = stream.next().await {
                if st.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match ev {
                    Ok(WatchEvent::Added(s)) | Ok(WatchEvent::Modified(s)) => record(&s, false),
                    Ok(WatchEvent::Deleted(s)) => record(&s, true),
                    _ => {}
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Self {
            min_ready,
            current,
            stop,
            task: Some(task),
        }
    }

    fn stop(mut self) -> (BTreeMap<String, usize>, BTreeMap<String, Vec<String>>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let cur = self
            .current
            .lock()
            .unwrap()
            .iter()
            .map(|(svc, slices)| (svc.clone(), slices.values().flatten().cloned().collect()))
            .collect();
        (self.min_ready.lock().unwrap().clone(), cur)
    }
}

#[test]
fn jts_manifests_are_accepted_by_the_api_server() {
    let c = cluster();
    // The namespaces themselves, for real (namespaced objects need them).
    c.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        &repo().join("k8s/namespaces.yaml").display().to_string(),
    ]);
    for f in ["serviceaccount.yaml", "rbac.yaml", "deployment.yaml"] {
        let path = repo().join("k8s/worker").join(f);
        let out = c.kubectl_ok(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            &path.display().to_string(),
        ]);
        assert!(out.contains("(server dry run)"), "{out}");
    }
    // The release's manifests of every service, both colours, as cutover renders them for the
    // production environment of the repository's own cutover.toml (restricted PSS enforced).
    for colour in ["blue", "green"] {
        let run = run_cli(
            "127.0.0.1:1",
            &repo().join("cutover.toml"),
            &[
                "render",
                "production",
                "--revision",
                "v7",
                "--color",
                colour,
            ],
        );
        assert_eq!(run.code, 0, "{run:?}");
        let out = c.kubectl_stdin(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            &run.stdout,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // 4 Deployments, 4 PDBs, 8 Services, 1 Ingress.
        assert_eq!(stdout.matches("(server dry run)").count(), 17, "{stdout}");
        assert!(
            stdout.contains(&format!(
                "deployment.apps/order-execution-{colour} serverside-applied"
            )),
            "{stdout}"
        );
    }
}

#[test]
fn blue_green_moves_every_active_service_from_blue_pods_to_green_pods_without_a_gap() {
    let env = KubeEnv::start("bluegreen", &[], 4);
    assert!(all_on(&env.active_colors(), "blue"));
    let watch = SliceWatch::start(env.c, &env.ns);
    let run = env.cli(&["deploy", "staging", "--as", "ci", "--revision", "v2"]);
    assert_eq!(run.code, 0, "{run:?}");
    // While the old colour stays warm: blue scaled to its warm size (1), green at full size.
    let s = env.wait_status("phase warm", Duration::from_secs(120), |s| {
        s["phase"] == "warm" || !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["phase"], "warm", "{s}");
    testkit::wait_until("blue at warm size", Duration::from_secs(10), || {
        SERVICES
            .iter()
            .all(|s| env.replicas(&format!("{s}-blue")) == 1)
    });
    for s in SERVICES {
        assert_eq!(env.replicas(&format!("{s}-green")), 2, "{s}");
    }
    let s = env.wait_status("outcome", Duration::from_secs(60), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert!(all_on(&env.active_colors(), "green"));
    std::thread::sleep(Duration::from_secs(1));
    let (min_ready, endpoints) = watch.stop();
    for s in SERVICES {
        let svc = format!("{s}-active");
        assert!(
            min_ready.get(&svc).copied().unwrap_or(0) > 0,
            "{svc} had a moment with no ready endpoint: {min_ready:?}"
        );
        let eps = &endpoints[&svc];
        assert!(!eps.is_empty(), "{svc}: no endpoints at the end");
        assert!(
            eps.iter().all(|p| p.starts_with(&format!("{s}-green-"))),
            "{svc} still selects non-green pods: {eps:?}"
        );
    }
    eprintln!("minimum ready endpoints per active Service during the run: {min_ready:?}");

    // The Rollback workflow on Kubernetes: blue back to full size and ready first, then every
    // active Service back to blue.
    let run = env.cli(&[
        "rollback",
        "staging",
        "--reason",
        "operator drill",
        "--as",
        "ops",
        "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        all_on(&env.active_colors(), "blue"),
        "{:?}",
        env.active_colors()
    );
    for s in SERVICES {
        assert_eq!(
            env.replicas(&format!("{s}-blue")),
            2,
            "{s} blue at full size"
        );
    }
}

#[test]
fn a_green_that_never_becomes_ready_leaves_all_four_on_blue_naming_the_service() {
    let env = KubeEnv::start("neverready", &[], 1);
    let run = env.cli(&[
        "deploy",
        "staging",
        "--as",
        "ci",
        "--revision",
        "v2",
        "--image",
        "strategy-engine=registry.example.com/jts/strategy-engine:never-ready",
        "--wait",
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    let s = env.status().unwrap();
    let reason = s["reason"].as_str().unwrap_or_default();
    eprintln!("never-ready outcome: {} — {reason}", s["outcome"]);
    assert!(
        reason.contains("strategy-engine"),
        "reason names the service: {reason}"
    );
    assert!(
        reason.contains("Ready=False") || reason.contains("available"),
        "reason says why: {reason}"
    );
    assert!(all_on(&env.active_colors(), "blue"));
    // The failed colour is stopped.
    testkit::wait_until("green stopped", Duration::from_secs(20), || {
        SERVICES
            .iter()
            .all(|s| env.replicas(&format!("{s}-green")) == 0)
    });
}

#[test]
fn kill_9_of_the_worker_mid_switch_ends_with_all_four_on_one_colour() {
    // Fault hook (named as such): the worker aborts right after switching 2 of 4 services.
    let mut env = KubeEnv::start(
        "midswitch",
        &[("CUTOVER_FAULT_ABORT_AFTER_SWITCHED", "2")],
        1,
    );
    let run = env.cli(&["deploy", "staging", "--as", "ci", "--revision", "v2"]);
    assert_eq!(run.code, 0, "{run:?}");
    testkit::wait_until(
        "the worker died mid-switch",
        Duration::from_secs(120),
        || !testkit::alive(env.worker.pid()),
    );
    let split = env.active_colors();
    let on_green = split.values().filter(|c| *c == "green").count();
    assert_eq!(
        on_green, 2,
        "exactly two switched before the crash: {split:?}"
    );
    // Restart without the fault hook.
    env.worker.remove_env("CUTOVER_FAULT_ABORT_AFTER_SWITCHED");
    env.worker.restart();
    let s = env.wait_status("outcome", Duration::from_secs(120), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert!(
        all_on(&env.active_colors(), "green"),
        "{:?}",
        env.active_colors()
    );
}

#[test]
fn preflight_names_a_missing_permission_and_a_missing_secret_key_before_any_change() {
    let env = KubeEnv::start("preflight", &[], 1);
    let c = env.c;
    // The worker's Role from k8s/worker/rbac.yaml, bound in this namespace to a ServiceAccount.
    let rbac = std::fs::read_to_string(repo().join("k8s/worker/rbac.yaml")).unwrap();
    let role = rbac
        .split("\n---\n")
        .find(|d| d.lines().any(|l| l == "kind: Role") && d.contains("namespace: jts-staging"))
        .unwrap()
        .replace("namespace: jts-staging", &format!("namespace: {}", env.ns));
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: cutover-worker\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: cutover-worker\nsubjects:\n- kind: ServiceAccount\n  name: cutover\n  namespace: {ns}\n",
        ns = env.ns
    );
    let sa = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: cutover\n  namespace: {}\n",
        env.ns
    );
    for doc in [&sa, &role, &binding] {
        let out = c.kubectl_stdin(&["apply", "-f", "-"], doc);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let user = format!("system:serviceaccount:{}:cutover", env.ns);
    let kc = c.impersonating_kubeconfig(&user, &env.dir.join("sa.kubeconfig"));
    let plan = |kubeconfig: &Path| -> (i32, String) {
        let req = deploy_request(&env, "v2");
        blocking::rt().block_on(async {
            let kcfg = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
            let cfg = kube::Config::from_custom_kubeconfig(kcfg, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(cfg).unwrap();
            let p =
                activities::kubernetes::KubePlatform::new(client, req.platform.as_ref().unwrap())
                    .unwrap();
            match p.preflight(&req).await {
                Ok(r) => (0, r.target_color),
                Err(e) => (1, e.to_string()),
            }
        })
    };
    // With exactly the Role's verbs, preflight passes.
    assert_eq!(plan(&kc), (0, "green".to_owned()));
    // Without `patch services` it fails, naming the verb and resource.
    let weaker = role.replace(
        "    resources: [\"services\"]\n    verbs: [\"get\", \"patch\"]",
        "    resources: [\"services\"]\n    verbs: [\"get\"]",
    );
    assert_ne!(weaker, role, "the Role has the services rule");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &weaker);
    assert!(out.status.success());
    let (code, msg) = plan(&kc);
    assert_eq!(code, 1);
    assert!(msg.contains("patch services"), "{msg}");
    assert!(!msg.contains("get services"), "only what is missing: {msg}");

    // A release whose manifests reference a key the Secret lacks is refused by name, and
    // nothing is created.
    let run = env.cli_env(
        &["secrets", "sync", "staging", "--key", "database-url=T_DB"],
        &[("T_DB", "postgres://x")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("keys database-url (values not shown)"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("postgres://x"));
    let run = env.cli(&[
        "deploy",
        "staging",
        "--as",
        "ci",
        "--revision",
        "v2",
        "--wait",
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("has no key \"broker-api-key\""), "{all}");
    assert!(
        !all.contains("postgres://x"),
        "a secret value leaked: {all}"
    );
    let green = c.kubectl(&["-n", &env.ns, "get", "deployment", "order-execution-green"]);
    assert!(!green.status.success(), "nothing was created");
}

fn deploy_request(env: &KubeEnv, revision: &str) -> proto::DeployRequest {
    // The same request the CLI builds (the CLI is the only place that reads cutover.toml).
    let cfg = worker_config(&env.config);
    cfg.deploy_request("staging", revision, &BTreeMap::new(), "tester", "dep-test")
        .unwrap()
}

fn worker_config(path: &Path) -> worker::config::Config {
    worker::config::Config::load(path).unwrap()
}

#[test]
fn canary_weights_through_httproute_and_virtualservice_read_back_as_set() {
    let c = cluster();
    let ns = c.namespace("weights");
    blocking::rt().block_on(async {
        let client = c.client().await;
        for routing in ["gateway", "istio"] {
            let target = proto::PlatformTarget {
                kind: "kubernetes".into(),
                namespace: ns.clone(),
                canary_routing: routing.into(),
                ..Default::default()
            };
            let p = activities::kubernetes::KubePlatform::new(client.clone(), &target).unwrap();
            for percent in [10u32, 25, 50, 75, 100, 0] {
                let weights: Vec<proto::ServiceWeight> = SERVICES
                    .iter()
                    .map(|s| proto::ServiceWeight {
                        service: s.to_string(),
                        stable_color: "blue".into(),
                        canary_color: "green".into(),
                        canary_percent: percent,
                    })
                    .collect();
                let r = p
                    .set_weights(&proto::WeightsRequest {
                        platform: Some(target.clone()),
                        weights: weights.clone(),
                        request_id: format!("w-{percent}"),
                        environment: "staging".into(),
                    })
                    .await
                    .unwrap();
                assert_eq!(r.applied, weights, "{routing} {percent}%");
            }
        }
    });
    // Independently of cutover's reader: what kubectl sees.
    let route = c.kubectl_ok(&[
        "-n",
        &ns,
        "get",
        "httproute",
        "api-gateway",
        "-o",
        "jsonpath={.spec.rules[0].backendRefs[*].weight}",
    ]);
    assert_eq!(route, "100 0");
    let vs = c.kubectl_ok(&[
        "-n",
        &ns,
        "get",
        "virtualservice",
        "api-gateway",
        "-o",
        "jsonpath={.spec.http[0].route[*].weight}",
    ]);
    assert_eq!(vs, "100 0");
}

#[test]
fn the_worker_rbac_file_grants_exactly_the_verbs_the_code_uses() {
    let rbac = std::fs::read_to_string(repo().join("k8s/worker/rbac.yaml")).unwrap();
    assert!(!rbac.contains("\"*\""), "no wildcards");
    for role in rbac
        .split("\n---\n")
        .filter(|d| d.lines().any(|l| l == "kind: Role"))
    {
        let mut granted = std::collections::BTreeSet::new();
        let mut group = String::new();
        let mut resources: Vec<String> = Vec::new();
        let list = |l: &str| -> Vec<String> {
            let inner = l.split_once('[').unwrap().1.trim_end_matches(']');
            inner
                .split(',')
                .map(|x| x.trim().trim_matches('"').to_owned())
                .collect()
        };
        for line in role.lines().map(str::trim) {
            if let Some(g) = line.strip_prefix("- apiGroups:") {
                group = list(g).remove(0);
            } else if let Some(r) = line.strip_prefix("resources:") {
                resources = list(r);
            } else if let Some(v) = line.strip_prefix("verbs:") {
                for r in &resources {
                    for verb in list(v) {
                        granted.insert((group.clone(), r.clone(), verb));
                    }
                }
            }
        }
        let mut needed = std::collections::BTreeSet::new();
        for routing in ["gateway", "istio"] {
            for (g, r, sub, v) in activities::kubernetes::required_permissions(routing) {
                let res = if sub.is_empty() {
                    r.to_owned()
                } else {
                    format!("{r}/{sub}")
                };
                needed.insert((g.to_owned(), res, v.to_owned()));
            }
        }
        assert_eq!(
            granted, needed,
            "k8s/worker/rbac.yaml differs from required_permissions()"
        );
    }
}

#[test]
fn conflicts_api_errors_and_timeouts_are_retried() {
    let env = KubeEnv::start_with("retries", &[], 1, true);
    let proxy = env.proxy.as_ref().unwrap();
    let ns = &env.ns;
    // Two write conflicts on a Service at the switch, two 503s while the new colour is
    // applied, and one switch request that hangs past the activity's 5 s timeout.
    proxy.add(Rule {
        method: "PATCH",
        path_contains: format!("/namespaces/{ns}/services/strategy-engine-active"),
        fault: Fault::Status(409, "Conflict"),
        times: 2,
    });
    proxy.add(Rule {
        method: "PATCH",
        path_contains: format!("/namespaces/{ns}/deployments/order-execution-green"),
        fault: Fault::Status(503, "ServiceUnavailable"),
        times: 2,
    });
    proxy.add(Rule {
        method: "PATCH",
        path_contains: format!("/namespaces/{ns}/services/api-gateway-active"),
        fault: Fault::Delay(Duration::from_secs(8)),
        times: 1,
    });
    let run = env.cli(&[
        "deploy",
        "staging",
        "--as",
        "ci",
        "--revision",
        "v2",
        "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        proxy.pending().is_empty(),
        "faults not injected: {:?}",
        proxy.pending()
    );
    assert!(
        all_on(&env.active_colors(), "green"),
        "{:?}",
        env.active_colors()
    );
    let log = proxy.log.lock().unwrap().clone();
    let injected: Vec<_> = log.iter().filter(|e| e.3).collect();
    assert_eq!(
        injected.iter().filter(|e| e.2 == 409).count(),
        2,
        "{injected:?}"
    );
    assert_eq!(
        injected.iter().filter(|e| e.2 == 503).count(),
        2,
        "{injected:?}"
    );
    // After each fault the same write was made again and succeeded.
    for (what, code) in [
        ("strategy-engine-active", 409),
        ("order-execution-green", 503),
    ] {
        let last_fault = log
            .iter()
            .rposition(|e| e.1.contains(what) && e.2 == code)
            .unwrap();
        assert!(
            log[last_fault..]
                .iter()
                .any(|e| e.0 == "PATCH" && e.1.contains(what) && e.2 == 200),
            "{what} was not retried after {code}: {log:?}"
        );
    }
    let s = env.status().unwrap();
    eprintln!(
        "retried deployment: outcome {}, switch {} ms, {} requests through the proxy, {} faults injected",
        s["outcome"],
        s["switch_ms"],
        log.len(),
        injected.len()
    );
}
