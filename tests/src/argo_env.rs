//! One Argo Rollouts world on the test cluster, for `cutover-bench --only argo` (bench/argo.rs)
//! and tests/tests/argo_rollouts.rs: a namespace with the four JTS services as Rollouts (the
//! stand-in pods as cutover's templates run them), their Services and HTTPRoutes on the shared
//! Gateway, AnalysisTemplates with cutover's Prometheus queries and thresholds, Prometheus with
//! Kubernetes discovery, the published controller (scripts/argo-rollouts-build.sh) in namespaced
//! mode, and steady load through the gateway.
//!
//! Blue-green: active and preview Services, pre-promotion analysis (1 measurement) and
//! post-promotion analysis (a measurement a second from 1 s after the promotion: cutover's
//! validation window). Canary: by replica count — the Gateway API traffic-router plugin is not
//! served by this machine's Go module proxy (see the script) — so the HTTPRoute sends to one
//! Service over stable and canary pods and a step's share is the canary's share of the pods
//! (10 replicas, so 10 % is one pod); background analysis every second.

#![allow(dead_code)]

use crate::kube_env::{LOAD_RATE, SERVICES, live_host, namespace_with_faults};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::cluster::{Cluster, cluster, testbin_cache};
use testkit::prom::Prometheus;
use testkit::{GatewayLoad, scratch_dir, wait_until};

pub const ARGO_ROLLOUTS_VERSION: &str = "v1.10.1";

/// Where scripts/argo-rollouts-build.sh put the controller and the CRDs (CUTOVER_ARGO_ROLLOUTS
/// overrides).
pub fn argo_dir() -> PathBuf {
    std::env::var_os("CUTOVER_ARGO_ROLLOUTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| testbin_cache().join(format!("argo-rollouts-{ARGO_ROLLOUTS_VERSION}")))
}

// Argo Rollouts.

/// One Argo Rollouts world: a namespace of the test cluster with the four services as Rollouts,
/// their Services and HTTPRoutes on the shared Gateway, the AnalysisTemplates, Prometheus, the
/// controller (namespaced) and the load.
pub struct ArgoEnv {
    pub c: &'static Cluster,
    pub ns: String,
    pub dir: PathBuf,
    pub prom: Prometheus,
    controller: Option<Child>,
    pub load: Option<GatewayLoad>,
    pub canary: bool,
    /// Measurements of the post-promotion analysis.
    pub validation: u32,
}

/// The CRDs, once per cluster.
fn install_crds(c: &Cluster) {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let crds = argo_dir().join("crds");
    assert!(
        argo_dir().join("bin/rollouts-controller").exists(),
        "{} is missing: run scripts/argo-rollouts-build.sh (it builds and caches Argo Rollouts)",
        argo_dir().display()
    );
    c.kubectl_ok(&["apply", "--server-side", "-f", &crds.display().to_string()]);
    wait_until(
        "Argo Rollouts' CRDs established",
        Duration::from_secs(60),
        || {
            c.kubectl(&[
                "wait",
                "--for=condition=Established",
                "crd/rollouts.argoproj.io",
                "crd/analysistemplates.argoproj.io",
                "crd/analysisruns.argoproj.io",
                "--timeout=5s",
            ])
            .status
            .success()
        },
    );
    *done = true;
}

const PARENT: fn(&Cluster) -> Value = |c| {
    json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
           "name": c.gateway.name, "namespace": c.gateway.namespace})
};

/// The pod template of `service` at `version`: the JTS stand-in as cutover's templates run it
/// (restricted security context, readiness probe, preStop sleep), its metrics' `color` label
/// the version (Argo Rollouts has no colours; the analysis selects the version).
fn pod_template(service: &str, version: &str) -> Value {
    json!({
        "metadata": {"labels": {
            "app": service, "app.kubernetes.io/name": service,
            "app.kubernetes.io/part-of": "jts", "app.kubernetes.io/version": version}},
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 45,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": service,
                "image": format!("jts/{service}:{version}"),
                "imagePullPolicy": "IfNotPresent",
                "args": ["--service", service, "--version", version, "--color", version,
                         "--listen", "0.0.0.0:8080"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"},
                                   "periodSeconds": 2, "failureThreshold": 2},
                "lifecycle": {"preStop": {"sleep": {"seconds": 10}}},
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}}
            }]
        }
    })
}

/// cutover's analysis as an AnalysisTemplate: the error ratio and p95 of one service's version
/// over 5 s, every second; `count` measurements (None: until the rollout ends, for a canary's
/// background analysis), the first after `initial_delay`. No traffic counts as 0 errors and p95 0 (Argo sends no traffic of
/// its own to a preview).
fn analysis_template(
    name: &str,
    prometheus: &str,
    count: Option<u32>,
    initial_delay: Option<&str>,
) -> Value {
    let sel =
        r#"namespace="{{args.namespace}}",service="{{args.service}}",color="{{args.version}}""#;
    let errors = format!(
        r#"(sum(rate(http_requests_total{{{sel},code=~"5.."}}[5s])) or vector(0)) / (sum(rate(http_requests_total{{{sel}}}[5s])) or vector(1))"#
    );
    let p95 = format!(
        r#"(histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[5s]))) >= 0) or vector(0)"#
    );
    let metric = |name: &str, query: String, cond: &str| {
        let mut m = json!({
            "name": name, "interval": "1s", "failureLimit": 0,
            "successCondition": cond,
            "provider": {"prometheus": {"address": prometheus, "query": query}}
        });
        if let Some(n) = count {
            m["count"] = json!(n);
        }
        if let Some(d) = initial_delay {
            m["initialDelay"] = json!(d);
        }
        m
    };
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {
            "args": [{"name": "namespace"}, {"name": "service"}, {"name": "version"}],
            "metrics": [
                metric("error-ratio", errors, "result[0] <= 0.01"),
                metric("p95-seconds", p95, "result[0] <= 0.8"),
            ]
        }
    })
}

fn analysis_ref(template: &str, ns: &str, service: &str, version: &str) -> Value {
    json!({
        "templates": [{"templateName": template}],
        "args": [
            {"name": "namespace", "value": ns},
            {"name": "service", "value": service},
            {"name": "version", "value": version}
        ]
    })
}

impl ArgoEnv {
    pub fn start(name: &str, faults: &str, canary: bool, validation: u32) -> Self {
        let c = cluster();
        install_crds(c);
        let ns = namespace_with_faults(c, name, faults);
        let dir = scratch_dir(&format!("argo-{name}"));
        let prom = Prometheus::start_kubernetes(&dir, c);
        let mut env = Self {
            c,
            ns,
            dir,
            prom,
            controller: None,
            load: None,
            canary,
            validation,
        };
        env.apply(&env.setup());
        env.spawn_controller();
        env.apply(&env.rollouts("v1"));
        let st = env.wait_settled(Duration::from_secs(120));
        assert!(
            st.values().all(|(phase, _, _)| phase == "Healthy"),
            "v1 is not Healthy: {st:?}\ncontroller log:\n{}",
            env.log_tail()
        );
        let hosts: BTreeMap<String, String> = SERVICES
            .iter()
            .map(|s| (s.to_string(), live_host(&env.ns, s)))
            .collect();
        let gw = c.gateway.http.clone();
        wait_until(
            "every live route answers through the gateway",
            Duration::from_secs(60),
            || {
                hosts.values().all(|h| {
                    testkit::gateway_get(&gw, h, "/health/ready").is_some_and(|c| c == 200)
                })
            },
        );
        env.load = Some(GatewayLoad::start(&gw, &hosts, LOAD_RATE));
        env
    }

    pub fn apply(&self, items: &[Value]) {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        let out = self.c.kubectl_stdin(
            &[
                "-n",
                &self.ns,
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=bench",
                "-f",
                "-",
            ],
            &list.to_string(),
        );
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Services, HTTPRoutes, AnalysisTemplates.
    pub fn setup(&self) -> Vec<Value> {
        let mut items = vec![
            analysis_template("jts-preview", &self.prom.url, Some(1), None),
            // cutover's window: a check every second from 1 s after the switch, 4 of them.
            analysis_template(
                "jts-validation",
                &self.prom.url,
                Some(self.validation),
                Some("1s"),
            ),
            analysis_template("jts-canary", &self.prom.url, None, None),
        ];
        // Blue-green: the active and preview Services (the controller sets their selectors);
        // replica-count canary: one Service over stable and canary pods.
        let roles: &[&str] = if self.canary {
            &["all"]
        } else {
            &["active", "preview"]
        };
        for s in SERVICES {
            for role in roles {
                items.push(json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": format!("{s}-{role}"), "labels": {"app": s}},
                    "spec": {"type": "ClusterIP", "selector": {"app": s},
                             "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
                }));
            }
            let backends = json!([{"name": format!("{s}-{}", roles[0]), "port": 80}]);
            items.push(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": s},
                "spec": {"parentRefs": [PARENT(self.c)], "hostnames": [live_host(&self.ns, s)],
                         "rules": [{"backendRefs": backends}]}
            }));
        }
        items
    }

    /// The four Rollouts at `version`.
    pub fn rollouts(&self, version: &str) -> Vec<Value> {
        SERVICES
            .iter()
            .map(|s| {
                let strategy = if self.canary {
                    let mut steps = Vec::new();
                    for w in [10, 25, 50, 75] {
                        steps.push(json!({"setWeight": w}));
                        steps.push(json!({"pause": {"duration": "4s"}}));
                    }
                    json!({"canary": {
                        "analysis": analysis_ref("jts-canary", &self.ns, s, version),
                        "steps": steps
                    }})
                } else {
                    json!({"blueGreen": {
                        "activeService": format!("{s}-active"),
                        "previewService": format!("{s}-preview"),
                        "autoPromotionEnabled": true,
                        "scaleDownDelaySeconds": 30,
                        "prePromotionAnalysis": analysis_ref("jts-preview", &self.ns, s, version),
                        "postPromotionAnalysis": analysis_ref("jts-validation", &self.ns, s, version)
                    }})
                };
                json!({
                    "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                    "metadata": {"name": s},
                    "spec": {
                        // Blue-green as cutover's colours; the replica-count canary needs
                        // enough pods for its steps: 10 % is 1 canary pod of 10.
                        "replicas": if self.canary { 10 } else { 2 },
                        "revisionHistoryLimit": 3,
                        // cutover's ready_timeout_secs in these worlds.
                        "progressDeadlineSeconds": 30,
                        "progressDeadlineAbort": true,
                        "selector": {"matchLabels": {"app": s}},
                        "template": pod_template(s, version),
                        "strategy": strategy
                    }
                })
            })
            .collect()
    }

    pub fn spawn_controller(&mut self) {
        let dir = self.dir.join("controller");
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("controller.log"))
            .unwrap();
        let mut cmd = Command::new(argo_dir().join("bin/rollouts-controller"));
        cmd.args([
            &format!("--kubeconfig={}", self.c.kubeconfig.display()),
            "--namespaced",
            &format!("--namespace={}", self.ns),
            "--leader-elect=false",
            &format!("--metricsPort={}", testkit::free_port()),
            &format!("--healthzPort={}", testkit::free_port()),
            "--loglevel=info",
        ])
        .env("POD_NAMESPACE", &self.ns)
        .env("KUBECONFIG", &self.c.kubeconfig)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        testkit::die_with_parent(&mut cmd);
        self.controller = Some(cmd.spawn().expect("rollouts-controller starts"));
    }

    /// How many AnalysisRuns ended in each phase ("8 Successful, 1 Failed").
    pub fn analysis_runs(&self) -> String {
        let out = self
            .c
            .kubectl(&["-n", &self.ns, "get", "analysisruns", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for r in v["items"].as_array().into_iter().flatten() {
            let phase = r["status"]["phase"]
                .as_str()
                .unwrap_or("Pending")
                .to_owned();
            *by.entry(phase).or_default() += 1;
        }
        by.iter()
            .map(|(p, n)| format!("{n} {p}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.join("controller/controller.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Each Rollout's status: (phase, aborted, message).
    pub fn statuses(&self) -> BTreeMap<String, (String, bool, String)> {
        let out = self
            .c
            .kubectl(&["-n", &self.ns, "get", "rollouts", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let st = &r["status"];
                let settled = st["observedGeneration"].as_str().map(str::to_owned)
                    == Some(r["metadata"]["generation"].to_string());
                let phase = if settled {
                    st["phase"].as_str().unwrap_or("").to_owned()
                } else {
                    "Progressing".into()
                };
                (
                    r["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                    (
                        phase,
                        st["abort"].as_bool().unwrap_or(false),
                        st["message"].as_str().unwrap_or("").to_owned(),
                    ),
                )
            })
            .collect()
    }

    /// Until every Rollout is Healthy or Degraded (aborted) for its current spec.
    pub fn wait_settled(&self, timeout: Duration) -> BTreeMap<String, (String, bool, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.statuses();
            if st.len() == 4
                && st
                    .values()
                    .all(|(p, _, _)| p == "Healthy" || p == "Degraded")
            {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "Argo Rollouts did not settle in {timeout:?}: {st:?}\ncontroller log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ArgoEnv {
    fn drop(&mut self) {
        if let Some(l) = self.load.take() {
            l.stop();
        }
        self.kill9();
        // Its pods stop; later worlds' Prometheus no longer scrapes them.
        self.c
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}
