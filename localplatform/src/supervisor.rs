//! Runs the stand-in instances of each service's colours as child processes: starts, probes
//! readiness, restarts crashed ones, and drains an instance before stopping it.

use crate::api::{ColorState, InstanceState, InstancesSpec, PlatformState, ServiceState};
use crate::router::{Backend, Router};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How long a stopping instance may take to finish its in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace period between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often instances are looked at: a crashed one is noticed (and restarted), one that is
/// not ready yet is probed, within this.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// A ready instance's readiness is probed again after this (like a kubelet's readiness probe
/// period): probing every ready instance ten times a second cost more than the traffic itself
/// once a platform held hundreds of instances.
const READY_PROBE_EVERY: Duration = Duration::from_secs(1);

struct Instance {
    child: Child,
    pid: u32,
    backend: Arc<Backend>,
    ready: bool,
    /// When readiness was last probed.
    probed: Option<Instant>,
    restarts: u32,
}

#[derive(Default)]
struct ColorSet {
    version: String,
    replicas: u32,
    instances: Vec<Instance>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("unknown colour {0:?}: expected blue or green")]
    UnknownColor(String),
    #[error(
        "{service} {color} takes {weight}% of traffic: move traffic away before replacing its version or scaling it to 0"
    )]
    Live {
        service: String,
        color: String,
        weight: u32,
    },
    #[error("cannot start {0}: {1}")]
    Spawn(String, String),
}

pub struct Supervisor {
    standin: PathBuf,
    router: Arc<Router>,
    sets: Mutex<BTreeMap<(String, String), ColorSet>>,
    probe: Client<HttpConnector, Empty<Bytes>>,
}

impl Supervisor {
    pub fn new(standin: PathBuf, router: Arc<Router>) -> Arc<Self> {
        let probe = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        let me = Arc::new(Self {
            standin,
            router,
            sets: Mutex::new(BTreeMap::new()),
            probe,
        });
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            while let Some(me) = weak.upgrade() {
                me.probe_all().await;
                drop(me);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
        me
    }

    fn weight(&self, service: &str, color: &str) -> u32 {
        self.router
            .weights()
            .get(service)
            .and_then(|w| w.get(color))
            .copied()
            .unwrap_or(0)
    }

    async fn spawn(
        &self,
        service: &str,
        color: &str,
        version: &str,
    ) -> Result<(Child, SocketAddr), SupervisorError> {
        let fail = |e: String| SupervisorError::Spawn(format!("{service} {color} {version}"), e);
        let mut cmd = Command::new(&self.standin);
        cmd.args(["--service", service, "--version", version, "--color", color])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // A stand-in must not outlive its platform, even when the platform is killed with -9.
        #[allow(unsafe_code)]
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| fail("no LISTENING line within 10s".into()))?
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("exited before listening".into()))?;
        let addr = line
            .strip_prefix("LISTENING ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| fail(format!("unexpected first line {line:?}")))?;
        Ok((child, addr))
    }

    async fn start_instance(
        &self,
        service: &str,
        color: &str,
        version: &str,
        restarts: u32,
    ) -> Result<Instance, SupervisorError> {
        let (child, addr) = self.spawn(service, color, version).await?;
        Ok(Instance {
            pid: child.id().unwrap_or_default(),
            child,
            backend: Arc::new(Backend {
                addr,
                in_flight: AtomicI64::new(0),
            }),
            ready: false,
            probed: None,
            restarts,
        })
    }

    /// Runs `spec.replicas` instances of `spec.version`. Idempotent: asking for what runs already
    /// changes nothing.
    pub async fn apply(&self, spec: &InstancesSpec) -> Result<(), SupervisorError> {
        if !self.router.services.contains_key(&spec.service) {
            return Err(SupervisorError::UnknownService(spec.service.clone()));
        }
        if !crate::api::COLORS.contains(&spec.color.as_str()) {
            return Err(SupervisorError::UnknownColor(spec.color.clone()));
        }
        let weight = self.weight(&spec.service, &spec.color);
        let mut sets = self.sets.lock().await;
        let set = sets
            .entry((spec.service.clone(), spec.color.clone()))
            .or_default();
        let replacing = !set.instances.is_empty() && set.version != spec.version;
        if weight > 0 && (replacing || spec.replicas == 0) {
            return Err(SupervisorError::Live {
                service: spec.service.clone(),
                color: spec.color.clone(),
                weight,
            });
        }
        let mut stopping = Vec::new();
        if replacing {
            stopping.append(&mut set.instances);
        }
        set.version = spec.version.clone();
        set.replicas = spec.replicas;
        while set.instances.len() > spec.replicas as usize {
            stopping.push(set.instances.pop().expect("len checked"));
        }
        self.publish(&spec.service, &spec.color, set);
        let mut started = Vec::new();
        for _ in set.instances.len()..spec.replicas as usize {
            started.push(
                self.start_instance(&spec.service, &spec.color, &spec.version, 0)
                    .await?,
            );
        }
        set.instances.extend(started);
        drop(sets);
        for instance in stopping {
            tokio::spawn(stop(instance));
        }
        Ok(())
    }

    /// Tells the router which instances of a colour are ready.
    fn publish(&self, service: &str, color: &str, set: &ColorSet) {
        if let Some(pool) = self.router.pool(service, color) {
            pool.set(
                set.instances
                    .iter()
                    .filter(|i| i.ready)
                    .map(|i| i.backend.clone())
                    .collect(),
            );
        }
    }

    async fn probe_all(&self) {
        let mut sets = self.sets.lock().await;
        let keys: Vec<_> = sets.keys().cloned().collect();
        for key in keys {
            let set = sets.get_mut(&key).expect("key from map");
            for i in 0..set.instances.len() {
                let exited = matches!(set.instances[i].child.try_wait(), Ok(Some(_)));
                if exited {
                    // Like a kubelet: a crashed instance is restarted, and counted.
                    set.instances[i].ready = false;
                    self.publish(&key.0, &key.1, set);
                    let restarts = set.instances[i].restarts + 1;
                    if let Ok(fresh) = self
                        .start_instance(&key.0, &key.1, &set.version, restarts)
                        .await
                    {
                        set.instances[i] = fresh;
                    }
                    continue;
                }
                let instance = &set.instances[i];
                if instance.ready
                    && instance
                        .probed
                        .is_some_and(|at| at.elapsed() < READY_PROBE_EVERY)
                {
                    continue;
                }
                let ready = self.is_ready(instance.backend.addr).await;
                set.instances[i].ready = ready;
                set.instances[i].probed = Some(Instant::now());
            }
            self.publish(&key.0, &key.1, set);
        }
    }

    async fn is_ready(&self, addr: SocketAddr) -> bool {
        let Ok(uri) = format!("http://{addr}/health/ready").parse::<hyper::Uri>() else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(500), self.probe.get(uri)).await,
            Ok(Ok(r)) if r.status().is_success()
        )
    }

    pub async fn state(&self) -> PlatformState {
        let sets = self.sets.lock().await;
        let weights = self.router.weights();
        let mut state = PlatformState::default();
        for (name, route) in &self.router.services {
            let mut svc = ServiceState {
                listen: route.listen.to_string(),
                weights: weights.get(name).cloned().unwrap_or_default(),
                colors: BTreeMap::new(),
            };
            for color in crate::api::COLORS {
                let Some(set) = sets.get(&(name.clone(), color.to_owned())) else {
                    svc.colors.insert(color.to_owned(), ColorState::default());
                    continue;
                };
                svc.colors.insert(
                    color.to_owned(),
                    ColorState {
                        version: set.version.clone(),
                        replicas: set.replicas,
                        ready: set.instances.iter().filter(|i| i.ready).count() as u32,
                        instances: set
                            .instances
                            .iter()
                            .map(|i| InstanceState {
                                addr: i.backend.addr.to_string(),
                                pid: i.pid,
                                ready: i.ready,
                                restarts: i.restarts,
                                in_flight: i.backend.in_flight.load(Ordering::SeqCst),
                            })
                            .collect(),
                    },
                );
            }
            state.services.insert(name.clone(), svc);
        }
        state
    }

    /// Stops every instance (platform shutdown).
    pub async fn stop_all(&self) {
        let mut sets = self.sets.lock().await;
        let mut all = Vec::new();
        for set in sets.values_mut() {
            all.append(&mut set.instances);
        }
        drop(sets);
        let handles: Vec<_> = all.into_iter().map(|i| tokio::spawn(stop(i))).collect();
        for h in handles {
            let _ = h.await;
        }
    }
}

/// Drain, then SIGTERM, then SIGKILL after the grace period.
async fn stop(mut instance: Instance) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while instance.backend.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(pid) = instance.child.id() {
        #[allow(unsafe_code)]
        // SAFETY: sending a signal to our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(STOP_GRACE, instance.child.wait())
        .await
        .is_err()
    {
        let _ = instance.child.kill().await;
    }
}
