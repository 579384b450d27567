//! The fake kubelet: a test-harness component, named as the fake it is. kwok schedules pods onto
//! its node, gives each an address from 10.244.0.0/16 and marks it Running but not Ready
//! (tests/kwok/pod-running.yaml); this component then does what a kubelet does for the JTS
//! stand-in image:
//!
//! - starts one real `jts-standin` per running pod, bound to the loopback mirror of the pod's IP
//!   (10.244.x.y → 127.244.x.y, [`crate::cluster::loopback_mirror`]; the API server refuses
//!   loopback addresses in EndpointSlices, so the API names pods by 10.x and traffic goes to
//!   127.x) and the container port,
//!   with the service and colour from the container's arguments and the version from the image's
//!   tag (faults per version come from the namespace annotation [`FAULTS_ANNOTATION`], plus
//!   `never-ready` for the image tag of that name);
//! - probes the process's readiness endpoint and writes the pod's Ready condition from it (a
//!   version that never becomes ready stays unready); a process that exits is restarted and its
//!   restart counted;
//! - on deletion: the process keeps serving for the pod's preStop sleep (capped at
//!   [`MAX_PRESTOP`]) while endpoints drain (EndpointSlices mark the pod terminating: not ready,
//!   still serving), then gets SIGTERM, and the pod is removed once the process has exited.
//!
//! Only 127.0.0.0/8 addresses are ever bound or probed; a pod without a mirror is refused.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Namespace annotation holding `JTS_FAULTS` for the stand-ins of that namespace.
pub const FAULTS_ANNOTATION: &str = "testkit.cutover.dev/jts-faults";
/// The longest preStop sleep honoured (the JTS templates ask for more than tests need).
pub const MAX_PRESTOP: Duration = Duration::from_secs(2);
/// Per address a stand-in served on: when it was told to stop (SIGTERM) and when a later pod's
/// stand-in took the address again (kwok reuses pod IPs), for tests that check no request sent
/// in between was answered there.
type Stops = BTreeMap<String, Vec<(Instant, Option<Instant>)>>;
static STOPPED: std::sync::Mutex<Stops> = std::sync::Mutex::new(BTreeMap::new());

/// How long after its stand-in was told to stop (and before another pod's took the address) a
/// request sent at `sent` to `addr` was; None when it was not.
pub fn sent_after_stop(addr: &str, sent: Instant) -> Option<Duration> {
    let stops = STOPPED.lock().unwrap();
    stops.get(addr)?.iter().find_map(|(stop, reused)| {
        (sent > *stop && reused.is_none_or(|r| sent < r)).then(|| sent - *stop)
    })
}

/// Whether any stand-in at `addr` was ever told to stop.
pub fn ever_stopped(addr: &str) -> bool {
    STOPPED.lock().unwrap().contains_key(addr)
}

/// How long a stopping stand-in gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

struct Running {
    child: Child,
    addr: SocketAddr,
    ns: String,
    name: String,
    ready: Option<bool>,
    restarts: i32,
    args: Vec<String>,
    faults: String,
    /// Deletion seen: when to send SIGTERM, and whether it was sent.
    stop_at: Option<Instant>,
    termed: Option<Instant>,
}

/// Starts the fake kubelet on its own thread; it lives as long as the test process.
pub fn start(kubeconfig: &Path, log_dir: &Path) {
    let (kubeconfig, log_dir) = (kubeconfig.to_path_buf(), log_dir.to_path_buf());
    let standin = crate::bin("jts-standin");
    std::thread::Builder::new()
        .name("fake-kubelet".into())
        .spawn(move || {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(kubeconfig, log_dir, standin));
        })
        .unwrap();
}

pub(crate) async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn loopback(ip: &str) -> Option<IpAddr> {
    crate::cluster::loopback_mirror(ip).map(IpAddr::V4)
}

/// The stand-in's arguments for a pod: service and colour from the container's args, version
/// from the image tag, listening on the pod's address.
fn standin_args(pod: &Pod, addr: SocketAddr) -> Option<Vec<String>> {
    let c = pod.spec.as_ref()?.containers.first()?;
    let args = c.args.clone().unwrap_or_default();
    let flag = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let image = c.image.clone().unwrap_or_default();
    let image = image.split('@').next().unwrap_or_default();
    let version = image
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map(|(_, tag)| tag.to_owned())
        .unwrap_or_else(|| "latest".into());
    Some(vec![
        "--service".into(),
        flag("--service")?,
        "--version".into(),
        version,
        "--color".into(),
        flag("--color")?,
        "--listen".into(),
        addr.to_string(),
    ])
}

fn container_port(pod: &Pod) -> u16 {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|p| p.first())
        .map_or(8080, |p| p.container_port as u16)
}

/// The preStop sleep of the pod's first container (`sleep N` exec or `sleep` action), capped.
fn prestop(pod: &Pod) -> Duration {
    let Some(pre) = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return Duration::ZERO;
    };
    let secs = if let Some(s) = &pre.sleep {
        s.seconds as u64
    } else if let Some(e) = &pre.exec {
        e.command
            .iter()
            .flatten()
            .flat_map(|w| w.split_whitespace())
            .filter_map(|w| w.parse::<u64>().ok())
            .next()
            .unwrap_or(0)
    } else {
        0
    };
    Duration::from_secs(secs).min(MAX_PRESTOP)
}

fn spawn(standin: &Path, args: &[String], faults: &str, log: &Path) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new(standin);
    cmd.args(args)
        .env("JTS_FAULTS", faults)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    crate::die_with_parent(&mut cmd);
    cmd.spawn()
}

async fn probe(http: &reqwest::Client, addr: SocketAddr) -> bool {
    matches!(
        http.get(format!("http://{addr}/health/ready"))
            .timeout(Duration::from_millis(400))
            .send()
            .await,
        Ok(r) if r.status().is_success()
    )
}

async fn write_status(pods: &Api<Pod>, name: &str, ready: bool, restarts: i32, pod: &Pod) {
    let now = jiff::Timestamp::now().to_string();
    let s = if ready { "True" } else { "False" };
    let reason = if ready {
        None
    } else {
        Some("ContainersNotReady")
    };
    let cond = |t: &str, status: &str, reason: Option<&str>| json!({ "type": t, "status": status, "lastTransitionTime": now, "reason": reason });
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": ready,
                "started": true, "restartCount": restarts,
                "state": { "running": { "startedAt": now } }
            })
        })
        .collect();
    let patch = json!({ "status": {
        "conditions": [
            cond("PodScheduled", "True", None),
            cond("Initialized", "True", None),
            cond("ContainersReady", s, reason),
            cond("Ready", s, reason),
        ],
        "containerStatuses": containers,
    }});
    let _ = pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}

async fn run(kubeconfig: PathBuf, log_dir: PathBuf, standin: PathBuf) {
    let client = client(&kubeconfig).await;
    let all: Api<Pod> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let Ok(list) = all.list(&ListParams::default()).await else {
            continue;
        };
        let faults_of: BTreeMap<String, String> = namespaces
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|n| {
                        let f = n
                            .metadata
                            .annotations
                            .and_then(|a| a.get(FAULTS_ANNOTATION).cloned())
                            .unwrap_or_default();
                        (n.metadata.name.unwrap_or_default(), f)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut seen = Vec::new();
        let mut to_probe = Vec::new();
        for pod in &list.items {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let st = pod.status.clone().unwrap_or_default();
            seen.push(uid.clone());
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if let Some(r) = running.get_mut(&uid) {
                if pod.metadata.deletion_timestamp.is_some() {
                    // As a kubelet: the pod keeps its Ready condition through the preStop sleep
                    // (the EndpointSlice marks it terminating: not ready, still serving).
                    if r.stop_at.is_none() {
                        r.stop_at = Some(Instant::now() + prestop(pod));
                    }
                    continue;
                }
                if let Ok(Some(_)) = r.child.try_wait() {
                    r.restarts += 1;
                    let log = log_dir.join(format!("{ns}.{name}.log"));
                    if let Ok(c) = spawn(&standin, &r.args, &r.faults, &log) {
                        r.child = c;
                    }
                }
                to_probe.push((uid, r.addr, pod.clone()));
                continue;
            }
            // A pod being deleted that never ran here: nothing to drain.
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = pods
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            if st.phase.as_deref() != Some("Running") {
                continue;
            }
            let Some(ip) = st.pod_ip.as_deref() else {
                continue;
            };
            let Some(ip) = loopback(ip) else {
                eprintln!(
                    "fake kubelet: pod {ns}/{name} has address {ip}, which has no loopback mirror: not started"
                );
                continue;
            };
            let addr = SocketAddr::new(ip, container_port(pod));
            let Some(args) = standin_args(pod, addr) else {
                continue;
            };
            let mut faults = faults_of.get(&ns).cloned().unwrap_or_default();
            faults.push_str(";never-ready=never_ready:true");
            let log = log_dir.join(format!("{ns}.{name}.log"));
            if let Some(last) = STOPPED
                .lock()
                .unwrap()
                .get_mut(&addr.to_string())
                .and_then(|v| v.last_mut())
                && last.1.is_none()
            {
                last.1 = Some(Instant::now());
            }
            match spawn(&standin, &args, &faults, &log) {
                Ok(child) => {
                    running.insert(
                        uid,
                        Running {
                            child,
                            addr,
                            ns,
                            name,
                            ready: None,
                            restarts: 0,
                            args,
                            faults,
                            stop_at: None,
                            termed: None,
                        },
                    );
                }
                Err(e) => eprintln!("fake kubelet: jts-standin for {ns}/{name}: {e}"),
            }
        }
        // Readiness of every serving pod, probed at once.
        let mut probes = tokio::task::JoinSet::new();
        for (uid, addr, pod) in to_probe {
            let http = http.clone();
            probes.spawn(async move { (uid, probe(&http, addr).await, pod) });
        }
        while let Some(Ok((uid, ready, pod))) = probes.join_next().await {
            let Some(r) = running.get_mut(&uid) else {
                continue;
            };
            if r.ready != Some(ready) && r.stop_at.is_none() {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &r.ns);
                write_status(&pods, &r.name, ready, r.restarts, &pod).await;
                r.ready = Some(ready);
            }
        }
        // Stopping: SIGTERM after the preStop sleep, SIGKILL after the grace, then the pod goes.
        let mut gone = Vec::new();
        for (uid, r) in running.iter_mut() {
            let deleted_elsewhere = !seen.contains(uid);
            if deleted_elsewhere && r.stop_at.is_none() {
                r.stop_at = Some(Instant::now());
            }
            let Some(at) = r.stop_at else { continue };
            if Instant::now() < at {
                continue;
            }
            match r.termed {
                None => {
                    STOPPED
                        .lock()
                        .unwrap()
                        .entry(r.addr.to_string())
                        .or_default()
                        .push((Instant::now(), None));
                    crate::send_signal(&r.child, libc::SIGTERM);
                    r.termed = Some(Instant::now());
                }
                Some(t) if t.elapsed() > TERM_GRACE => {
                    let _ = r.child.kill();
                }
                Some(_) => {}
            }
            if let Ok(Some(_)) = r.child.try_wait() {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &r.ns);
                let _ = pods
                    .delete(&r.name, &DeleteParams::default().grace_period(0))
                    .await;
                gone.push(uid.clone());
            }
        }
        for uid in gone {
            running.remove(&uid);
        }
    }
}
