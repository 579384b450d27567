//! The Kubernetes platform against a real control plane (etcd, kube-apiserver, controller
//! manager, scheduler, kwok with the fake kubelet running a real stand-in per pod, the fake
//! kube-proxy) and a real gateway (Traefik), started once for this test binary; each test has its
//! own namespace, its own Prometheus discovering the pods, and load through the gateway to all
//! four services (src/kube_env.rs). Deployments are driven end to end through the Temporal dev
//! server and the `cutover worker`, as in production.

mod common;
#[path = "../src/kube_env.rs"]
mod kube_env;

use kube_env::*;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::cluster::{Cluster, cluster};
use testkit::faultproxy::{Fault, Rule};
use testkit::{Answer, blocking, run_cli};

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

/// One YAML document as JSON, converted by kubectl itself (no YAML parser in the tests).
fn serde_yaml_to_json(c: &testkit::cluster::Cluster, doc: &str) -> serde_json::Value {
    let out = c.kubectl_stdin(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        doc,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The workers' configurations in k8s/worker/config agree with the repository's cutover.toml
/// (which the CLI reads) on everything they share, and each serves only its environments.
#[test]
fn the_worker_configurations_agree_with_the_repositorys_cutover_toml() {
    let read = |p: &str| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(repo().join(p)).unwrap()).unwrap()
    };
    let cli = read("cutover.toml");
    for (file, envs) in [
        (
            "k8s/worker/config/worker.toml",
            vec!["development", "staging"],
        ),
        (
            "k8s/worker/config/worker-production.toml",
            vec!["production"],
        ),
    ] {
        let w = read(file);
        for key in ["defaults", "services", "identity"] {
            assert_eq!(
                w.get(key),
                cli.get(key),
                "{file}: [{key}] differs from cutover.toml"
            );
        }
        let named: Vec<&String> = w["environments"].as_table().unwrap().keys().collect();
        assert_eq!(named, envs, "{file}");
        for e in &envs {
            assert_eq!(
                w["environments"][*e], cli["environments"][*e],
                "{file}: environments.{e} differs from cutover.toml"
            );
        }
        let cfg = worker::config::Config::load(&repo().join(file)).unwrap();
        for e in envs {
            assert!(
                cfg.environments[e].platform.kubernetes().is_some(),
                "{file}: {e}"
            );
        }
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
    // The Prometheus Operator's CRDs (scripts/registry-build.sh copies them from its module),
    // for the workers' ServiceMonitor and k8s/monitoring's PodMonitor and PrometheusRule.
    let crds = testkit::cluster::testbin_cache().join("prometheus-operator-crds-v0.85.0");
    c.kubectl_ok(&["apply", "--server-side", "-f", &crds.display().to_string()]);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ]);
    // The workers as `kubectl apply -k k8s/worker` applies them: the configurations become
    // ConfigMaps named by their content's hash, which the Deployments mount.
    let worker = c.kubectl_ok(&[
        "kustomize",
        &repo().join("k8s/worker").display().to_string(),
    ]);
    for kind in [
        "kind: ConfigMap",
        "kind: ServiceMonitor",
        "kind: PodDisruptionBudget",
        "kind: NetworkPolicy",
        "kind: Service\n",
    ] {
        assert!(worker.contains(kind), "k8s/worker has no {kind}");
    }
    let out = c.kubectl_stdin(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &worker,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "configmap/cutover-config-",
        "configmap/cutover-config-production-",
        "deployment.apps/cutover-worker serverside-applied (server dry run)",
        "deployment.apps/cutover-worker-production serverside-applied (server dry run)",
        "servicemonitor.monitoring.coreos.com/cutover-worker serverside-applied (server dry run)",
        "poddisruptionbudget.policy/cutover-worker-production serverside-applied (server dry run)",
        "service/cutover-worker-metrics serverside-applied (server dry run)",
    ] {
        assert!(text.contains(name), "{name} not accepted:\n{text}");
    }
    // Each Deployment mounts its own generated ConfigMap, a writable /tmp, the registry
    // credentials, and exposes the metrics port; the production worker reads the database URL
    // and the S3 settings from its Secret.
    let docs: Vec<serde_json::Value> = worker
        .split("\n---\n")
        .map(|d| serde_yaml_to_json(c, d))
        .collect();
    let config_maps: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let name = d["metadata"]["name"].as_str().unwrap();
        let pod = &d["spec"]["template"]["spec"];
        let vols = pod["volumes"].as_array().unwrap();
        let cm = vols
            .iter()
            .find_map(|v| v["configMap"]["name"].as_str())
            .unwrap();
        assert!(
            config_maps.iter().any(|n| n == cm),
            "{name} mounts {cm}: {config_maps:?}"
        );
        let ctr = &pod["containers"][0];
        assert_eq!(
            ctr["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
        let mounts = ctr["volumeMounts"].to_string();
        assert!(
            mounts.contains("\"/tmp\"") && mounts.contains("/etc/cutover/registry"),
            "{name}: {mounts}"
        );
        assert!(
            vols.iter()
                .any(|v| v["name"] == "tmp" && v["emptyDir"].is_object()),
            "{name}"
        );
        let env = ctr["env"].to_string();
        assert!(env.contains("CUTOVER_REGISTRY_AUTH_FILE"), "{name}");
        assert!(ctr["ports"].to_string().contains("9464"), "{name}");
        if name.ends_with("production") {
            for v in [
                "JTS_DATABASE_URL",
                "AWS_REGION",
                "AWS_ENDPOINT_URL",
                "TEMPORAL_API_KEY",
            ] {
                assert!(env.contains(v), "{name} has no {v}");
            }
        }
    }
    for f in ["podmonitor.yaml", "prometheusrule.yaml"] {
        let out = c.kubectl_ok(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            &repo().join("k8s/monitoring").join(f).display().to_string(),
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
        // 4 Deployments, 4 PDBs, 8 Services, 8 HTTPRoutes (live and preview), 1 Ingress.
        assert_eq!(stdout.matches("(server dry run)").count(), 25, "{stdout}");
        assert!(
            stdout.contains(
                "httproute.gateway.networking.k8s.io/order-execution-preview serverside-applied"
            ),
            "{stdout}"
        );
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
    let mut env = KubeEnv::start("bluegreen", &[], 4);
    assert!(all_on(&env.active_colors(), "blue"));
    let watch = SliceWatch::start(env.c, &env.ns);
    let run = env.deploy("v2", &[]);
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
    let done_at = env.load.as_ref().unwrap().started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (min_ready, endpoints) = watch.stop();
    let answers = env.load.as_ref().unwrap().answers();
    report_cutover(&answers, Duration::ZERO, "v1", "v2");
    assert_none_failed(&answers);
    // Once the release is done, only v2 answers (the old colour is warm, out of traffic).
    let late = answers_not_by(&answers, done_at, "v2");
    assert!(
        late.is_empty(),
        "answered by the old version after the release: {late:?}"
    );
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
    let rollback_at = env.load.as_ref().unwrap().started.elapsed();
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
    let back_at = env.load.as_ref().unwrap().started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let load_started = env.load.as_ref().unwrap().started;
    let answers = env.stop_load();
    let retired = assert_no_answer_from_stopped_pods(load_started, &answers);
    assert!(
        retired > 0,
        "pods retired during the test answered before they stopped"
    );
    report_cutover(&answers, rollback_at, "v2", "v1");
    assert_none_failed(&answers);
    let late = answers_not_by(&answers, back_at, "v1");
    assert!(
        late.is_empty(),
        "answered by v2 after the rollback: {late:?}"
    );
}

#[test]
fn a_v3_failing_5_percent_of_live_requests_is_rolled_back_by_the_metrics_analysis() {
    let mut env = KubeEnv::start_full(
        "metrics-breach",
        &[],
        1,
        false,
        "v3@strategy-engine=live_error_rate:0.05",
    );
    let run = env.deploy("v3", &["--wait"]);
    assert_ne!(run.code, 0, "{run:?}");
    let s = env.status().unwrap();
    let reason = s["reason"].as_str().unwrap_or_default().to_owned();
    eprintln!("metrics breach: {} — {reason}", s["outcome"]);
    assert_eq!(s["outcome"], "rolled_back", "{s}");
    for want in [
        "strategy-engine",
        "error ratio",
        "http_requests_total",
        env.ns.as_str(),
    ] {
        assert!(reason.contains(want), "the reason names {want:?}: {reason}");
    }
    assert!(
        !reason.contains("api-gateway") && !reason.contains("order-execution"),
        "only the failing service is blamed: {reason}"
    );
    assert!(all_on(&env.active_colors(), "blue"));
    let back_at = env.load.as_ref().unwrap().started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let load_started = env.load.as_ref().unwrap().started;
    let answers = env.stop_load();
    assert_no_answer_from_stopped_pods(load_started, &answers);
    let bad: Vec<&Answer> = answers.iter().filter(|a| a.failure.is_some()).collect();
    eprintln!(
        "{} of {} requests failed (v3's injected 5 % on strategy-engine while it was live)",
        bad.len(),
        answers.len()
    );
    assert!(
        bad.iter()
            .all(|a| a.service == "strategy-engine" && a.at <= back_at),
        "only strategy-engine's v3 failed, and only before the rollback: {bad:?}"
    );
    let late = answers_not_by(&answers, back_at, "v1");
    assert!(
        late.is_empty(),
        "answered by v3 after the rollback: {late:?}"
    );
}

#[test]
fn a_v3_with_p95_above_the_threshold_is_rolled_back_by_the_metrics_analysis() {
    let mut env = KubeEnv::start_full(
        "metrics-p95",
        &[],
        1,
        false,
        "v3@order-execution=live_latency_ms:1500",
    );
    let run = env.deploy("v3", &["--wait"]);
    assert_ne!(run.code, 0, "{run:?}");
    let s = env.status().unwrap();
    let reason = s["reason"].as_str().unwrap_or_default().to_owned();
    eprintln!("p95 breach: {} — {reason}", s["outcome"]);
    assert_eq!(s["outcome"], "rolled_back", "{s}");
    for want in [
        "order-execution",
        "p95",
        "http_request_duration_seconds_bucket",
    ] {
        assert!(reason.contains(want), "the reason names {want:?}: {reason}");
    }
    assert!(all_on(&env.active_colors(), "blue"));
    let load_started = env.load.as_ref().unwrap().started;
    let answers = env.stop_load();
    assert_no_answer_from_stopped_pods(load_started, &answers);
    assert_none_failed(&answers);
}

/// The canary's share per step as the load generator counted it, against the route's weight.
#[test]
fn canary_through_httproute_weights_serves_each_step_share_and_promotes_to_the_new_colour() {
    let mut env = KubeEnv::start("canary-gw", &[], 2);
    let start = env.load.as_ref().unwrap().started;
    // The weight the API server holds for api-gateway's route, sampled while the canary runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(Duration, u32)>>> = Arc::default();
    let sampler = {
        let (stop, samples, c, ns) = (stop.clone(), samples.clone(), env.c, env.ns.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = c.kubectl(&[
                    "-n",
                    &ns,
                    "get",
                    "httproute",
                    "api-gateway",
                    "-o",
                    "jsonpath={.spec.rules[0].backendRefs[1].weight}",
                ]);
                if let Ok(w) = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>() {
                    samples.lock().unwrap().push((start.elapsed(), w));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let run = env.deploy("v2", &["--strategy", "canary"]);
    assert_eq!(run.code, 0, "{run:?}");
    let s = env.wait_status("promoted", Duration::from_secs(180), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    let promoted_at = start.elapsed();
    // Retirement of the old colour (keep warm 2 s), with the load still running.
    testkit::wait_until("blue retired", Duration::from_secs(60), || {
        SERVICES
            .iter()
            .all(|s| env.replicas(&format!("{s}-blue")) == 0)
    });
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let load_started = env.load.as_ref().unwrap().started;
    let answers = env.stop_load();
    let retired = assert_no_answer_from_stopped_pods(load_started, &answers);
    assert!(
        retired > 0,
        "pods retired during the test answered before they stopped"
    );
    assert_none_failed(&answers);
    // Each step's share: answers between one weight change (+2 s for the gateway to apply it,
    // three tests sharing two cores) and the next, across the four services.
    let samples = samples.lock().unwrap().clone();
    let mut steps: Vec<(Duration, u32)> = Vec::new();
    for (t, w) in samples {
        if steps.last().is_none_or(|(_, last)| *last != w) {
            steps.push((t, w));
        }
    }
    let tolerance = 10.0;
    let mut checked = 0;
    for (i, (t, w)) in steps.iter().enumerate() {
        let end = steps.get(i + 1).map_or(promoted_at, |(t2, _)| *t2);
        let from = *t + Duration::from_secs(2);
        if *w == 0 || end <= from {
            continue;
        }
        let window: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.at >= from && a.at < end)
            .collect();
        let v2 = window.iter().filter(|a| a.version == "v2").count();
        let share = v2 as f64 * 100.0 / window.len().max(1) as f64;
        eprintln!(
            "canary step {w}%: v2 answered {share:.1}% of {} requests",
            window.len()
        );
        assert!(
            (share - *w as f64).abs() <= tolerance,
            "step {w}%: the load saw {share:.1}% on v2 (tolerance ±{tolerance})"
        );
        if *w == 100 {
            let old: Vec<&&Answer> = window.iter().filter(|a| a.version != "v2").collect();
            assert!(old.is_empty(), "v1 answered at the 100 % step: {old:?}");
        }
        checked += 1;
    }
    assert!(checked >= 4, "every step was seen: {steps:?}");
    // After promotion: all traffic on green through the active Services, the route back at 0,
    // only v2 answering.
    assert!(all_on(&env.active_colors(), "green"));
    for svc in SERVICES {
        let w = env.route_weights(svc);
        assert_eq!(w, "100 0", "{svc}'s route after promotion");
    }
    let late = answers_not_by(&answers, promoted_at, "v2");
    assert!(late.is_empty(), "answered by v1 after promotion: {late:?}");
    // The preview Services stayed on the live colour (none points at the retired one).
    for svc in SERVICES {
        let sel = env.c.kubectl_ok(&[
            "-n",
            &env.ns,
            "get",
            "service",
            &format!("{svc}-preview"),
            "-o",
            "jsonpath={.spec.selector.version}",
        ]);
        assert_eq!(sel, "green", "{svc}-preview after promotion");
    }
}

#[test]
fn a_green_that_never_becomes_ready_leaves_all_four_on_blue_naming_the_service() {
    let env = KubeEnv::start("neverready", &[], 1);
    let run = env.deploy(
        "v2",
        &[
            "--image",
            "strategy-engine=registry.example.com/jts/strategy-engine:never-ready",
            "--wait",
        ],
    );
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
    let run = env.deploy("v2", &[]);
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
    let run = env.deploy("v2", &["--wait"]);
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
    // The Services the routes weight (the gateway resolves them before it takes a route).
    for s in SERVICES {
        let docs = activities::kubernetes::render_services(s, &ns, "blue", "green").unwrap();
        for d in docs {
            let out = c.kubectl_stdin(
                &["apply", "--server-side", "-f", "-"],
                &serde_json::to_string(&d).unwrap(),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    blocking::rt().block_on(async {
        let client = c.client().await;
        for routing in ["gateway", "istio"] {
            // Routes on the shared Gateway: set_weights waits until Traefik has taken them.
            let target = proto::PlatformTarget {
                kind: "kubernetes".into(),
                namespace: ns.clone(),
                canary_routing: routing.into(),
                gateway_name: c.gateway.name.clone(),
                gateway_namespace: c.gateway.namespace.clone(),
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
    let run = env.deploy("v2", &["--wait"]);
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

#[test]
fn a_canary_failing_5_percent_on_one_service_is_rolled_back_at_the_next_analysis() {
    let mut env = KubeEnv::start_full(
        "canary-breach",
        &[],
        1,
        false,
        "v2@order-execution=live_error_rate:0.05",
    );
    let begun_ms = jiff::Timestamp::now().as_millisecond() as f64;
    let run = env.deploy("v2", &["--strategy", "canary"]);
    assert_eq!(run.code, 0, "{run:?}");
    let s = env.wait_status("canary outcome", Duration::from_secs(180), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    let reason = s["reason"].as_str().unwrap_or_default();
    eprintln!("canary breach: {} — {reason}", s["outcome"]);
    assert_eq!(s["outcome"], "rolled_back", "{s}");
    assert!(reason.contains("order-execution"), "{reason}");
    assert!(all_on(&env.active_colors(), "blue"));
    // From the first scrape in which the canary's error counter grew to the rollback decision:
    // the next analysis sees it. Shown as a count, not a timing: at most one analysis (one
    // that queried before that scrape was stored) lies between the bad scrape and the decision.
    let first_bad = env
        .prom
        .first_increase_ms(
            &format!(
                "http_requests_total{{namespace=\"{}\",service=\"order-execution\",color=\"green\",code=~\"5..\"}}",
                env.ns
            ),
            begun_ms,
        )
        .expect("Prometheus saw the canary's errors");
    let decided = event_ms(&s, "rolling back to").expect("the decision is in the events");
    eprintln!(
        "first bad scrape → rollback decision: {:.0} ms (analysis interval 1000 ms + scrape interval 1000 ms)",
        decided - first_bad
    );
    let between: Vec<&Value> = s["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            let at = d["at"]
                .as_str()
                .and_then(|a| a.parse::<jiff::Timestamp>().ok())
                .map_or(0.0, |t| t.as_millisecond() as f64);
            at > first_bad && at < decided && d["outcome"] != "failed"
        })
        .collect();
    assert!(
        between.len() <= 1,
        "analyses that missed the bad scrape before the rollback: {between:?}"
    );
    // Every weight went back: the canary's failures are the only failed requests, all of them
    // before the decision, and from order-execution.
    std::thread::sleep(Duration::from_secs(2));
    let load_started = env.load.as_ref().unwrap().started;
    let answers = env.stop_load();
    assert_no_answer_from_stopped_pods(load_started, &answers);
    let bad: Vec<&Answer> = answers.iter().filter(|a| a.failure.is_some()).collect();
    eprintln!(
        "{} of {} requests failed during the canary",
        bad.len(),
        answers.len()
    );
    assert!(
        bad.iter().all(|a| a.service == "order-execution"),
        "only order-execution's canary failed: {bad:?}"
    );
}

#[test]
fn kill_9_of_the_worker_in_the_blue_green_validation_window_still_ends_on_green_with_0_failed() {
    let mut env = KubeEnv::start("kill-validating", &[], 1);
    let run = env.deploy("v2", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    env.wait_status("validating", Duration::from_secs(120), |s| {
        s["phase"] == "validating"
    });
    env.worker.kill9();
    eprintln!("worker killed in the validation window");
    std::thread::sleep(Duration::from_millis(500));
    env.worker.spawn();
    let s = env.wait_status("outcome", Duration::from_secs(120), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert!(all_on(&env.active_colors(), "green"));
    let done_at = env.load.as_ref().unwrap().started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let load_started = env.load.as_ref().unwrap().started;
    let answers = env.stop_load();
    assert_no_answer_from_stopped_pods(load_started, &answers);
    report_cutover(&answers, Duration::ZERO, "v1", "v2");
    assert_none_failed(&answers);
    assert!(
        answers
            .iter()
            .filter(|a| a.at > done_at)
            .all(|a| a.version == "v2"),
        "only v2 answers once the release is done"
    );
}

#[test]
fn kill_9_of_the_worker_in_a_canary_hold_still_promotes_with_0_failed() {
    let mut env = KubeEnv::start("kill-hold", &[], 1);
    let run = env.deploy("v2", &["--strategy", "canary"]);
    assert_eq!(run.code, 0, "{run:?}");
    env.wait_status("holding at 25 %", Duration::from_secs(120), |s| {
        s["percent"].as_u64() == Some(25)
    });
    env.worker.kill9();
    eprintln!("worker killed while holding at 25 %");
    std::thread::sleep(Duration::from_millis(500));
    env.worker.spawn();
    let s = env.wait_status("outcome", Duration::from_secs(180), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert!(all_on(&env.active_colors(), "green"));
    let load_started = env.load.as_ref().unwrap().started;
    let answers = env.stop_load();
    assert_no_answer_from_stopped_pods(load_started, &answers);
    assert_none_failed(&answers);
    for svc in SERVICES {
        let w = env.route_weights(svc);
        assert_eq!(w, "100 0", "{svc}'s route after promotion");
    }
}

#[test]
fn prometheus_stopped_during_a_kubernetes_canary_holds_the_step_then_the_canary_finishes() {
    let mut env = KubeEnv::start("prom-stopped", &[], 1);
    let run = env.deploy("v2", &["--strategy", "canary"]);
    assert_eq!(run.code, 0, "{run:?}");
    env.wait_status("at 25 %", Duration::from_secs(120), |s| {
        s["percent"].as_u64() == Some(25)
    });
    env.prom.stop();
    // Longer than a step's hold (4 s), shorter than the inconclusive hold (20 s).
    std::thread::sleep(Duration::from_secs(7));
    let s = env.status().unwrap();
    eprintln!(
        "after 7 s without Prometheus: {}% ({})",
        s["percent"], s["phase"]
    );
    assert_eq!(s["percent"].as_u64(), Some(25), "no step promoted: {s}");
    assert_eq!(s["outcome"], "", "{s}");
    let held = s["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["outcome"] == "inconclusive")
        .count();
    assert!(
        held > 0,
        "the analyses without Prometheus were inconclusive: {s}"
    );
    env.prom.spawn();
    let s = env.wait_status("outcome", Duration::from_secs(180), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert!(all_on(&env.active_colors(), "green"));
    let load_started = env.load.as_ref().unwrap().started;
    let answers = env.stop_load();
    assert_no_answer_from_stopped_pods(load_started, &answers);
    assert_none_failed(&answers);
}

/// The Deployments of every service (image preflight test): name, replicas and image.
fn deployments(env: &KubeEnv) -> String {
    let out = env.c.kubectl(&[
        "-n",
        &env.ns,
        "get",
        "deployments",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.replicas} {.spec.template.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn deploy_and_wait(env: &KubeEnv, revision: &str, deployment_id: &str) -> serde_json::Value {
    let run = env.deploy(revision, &["--deployment-id", deployment_id]);
    assert_eq!(run.code, 0, "{run:?}");
    env.wait_status(deployment_id, Duration::from_secs(60), |s| {
        s["deployment_id"] == deployment_id && !s["outcome"].as_str().unwrap_or("").is_empty()
    })
}

#[test]
fn a_tagged_release_runs_by_digest_and_a_missing_or_unauthorised_image_stops_it_first() {
    let dir = testkit::scratch_dir("images-k8s");
    let mut reg = testkit::registry::Registry::start(&dir, Some(("ci-puller", "pull-s3cret")));
    let mut digests = std::collections::BTreeMap::new();
    for s in SERVICES {
        digests.insert(s.to_string(), reg.push(&format!("jts/{s}"), "v2"));
    }
    // The worker starts without the registry's credentials.
    let mut env = KubeEnv::start_registry("images", &[], &reg.host);
    let before = deployments(&env);
    assert!(before.contains(":v1"), "{before}");

    let s = deploy_and_wait(&env, "v2", "dep-no-login");
    assert_eq!(s["outcome"], "refused", "{s}");
    let text = s.to_string();
    assert!(
        text.contains("image preflight") && text.contains("requires credentials"),
        "{s}"
    );
    assert_eq!(deployments(&env), before, "nothing changed");
    // A refused release passes no images on.
    let run = env.cli(&["images", "staging", "--revision", "v2"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("recorded no images"), "{run:?}");

    // With the registry's credentials (a Docker config.json, as a dockerconfigjson Secret
    // mounts it): a revision nobody pushed is refused naming the image.
    let auth = reg.auth_file().display().to_string();
    env.worker.set_env("CUTOVER_REGISTRY_AUTH_FILE", &auth);
    env.worker.restart();
    let s = deploy_and_wait(&env, "v3", "dep-missing");
    assert_eq!(s["outcome"], "refused", "{s}");
    let text = s.to_string();
    assert!(
        text.contains(&format!("{}/jts/", reg.host)) && text.contains(":v3 does not exist"),
        "{s}"
    );
    assert_eq!(deployments(&env), before, "nothing changed");
    println!(
        "missing image: {}",
        s["reason"].as_str().unwrap_or(&s.to_string())
    );

    // The pushed tags: resolved, approved as digests, rendered by digest.
    let s = deploy_and_wait(&env, "v2", "dep-by-digest");
    assert_eq!(s["outcome"], "succeeded", "{s}");
    let images = &s["release"]["images"];
    let after = deployments(&env);
    for svc in SERVICES {
        let pinned = format!("{}/jts/{svc}:v2@{}", reg.host, digests[svc]);
        assert_eq!(images[svc], pinned, "{s}");
        assert!(
            after.contains(&format!("{svc}-green 2 {pinned}")),
            "{svc}-green runs {pinned}:\n{after}"
        );
    }
    // What the next environment deploys: these digests, for this revision only.
    let run = env.cli(&["images", "staging", "--revision", "v2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    let mut want: Vec<String> = SERVICES
        .iter()
        .map(|svc| format!("{svc}={}/jts/{svc}:v2@{}", reg.host, digests[*svc]))
        .collect();
    want.sort();
    assert_eq!(lines, want);
    let run = env.cli(&["images", "staging", "--revision", "v9"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("is revision \"v2\", not \"v9\""),
        "{run:?}"
    );
    // Rolled back after it succeeded (and ended: the Rollback workflow runs on its own): its
    // images are no longer passed on.
    testkit::wait_until("the release ends", Duration::from_secs(60), || {
        env.temporal
            .history("deploy-staging")
            .iter()
            .any(|e| e["workflowExecutionCompletedEventAttributes"].is_object())
    });
    let run = env.cli(&[
        "rollback",
        "staging",
        "--as",
        "ci",
        "--reason",
        "image test",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut last = None;
    testkit::wait_until(
        "the rolled-back release's images refused",
        Duration::from_secs(60),
        || {
            let run = env.cli(&["images", "staging", "--revision", "v2"]);
            let refused =
                run.code == 1 && run.stderr.contains("was rolled back after it succeeded");
            last = Some(run);
            refused
        },
    );
    println!("after the rollback: {}", last.unwrap().stderr.trim());
    // Recorded in the history: the authorisation's result names every digest.
    let history = serde_json::to_string(&env.temporal.history("deploy-staging")).unwrap();
    let history = common::decoded_payloads(&history);
    for d in digests.values() {
        assert!(history.contains(d.as_str()), "{d} not in the history");
    }
    assert!(
        !history.contains("pull-s3cret"),
        "the registry password reached the history"
    );
    assert!(!env.worker.log_tail(2000).contains("pull-s3cret"));
    println!("deployed by digest:\n{after}");
}
