//! [`Load`]: steady HTTP traffic to every service, counting failures.

use crate::blocking;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The API route the load asks each service for.
fn api_route(service: &str) -> &'static str {
    match service {
        "api-gateway" => "/api/market/status",
        "strategy-engine" => "/api/strategies",
        "order-execution" => "/api/orders",
        _ => "/api/risk/limits",
    }
}

/// Steady traffic: `rate` requests per second to each service, spread over time.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    pub failures: Arc<std::sync::Mutex<Vec<String>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadStats {
    pub ok: u64,
    pub failed: u64,
}

impl Load {
    pub fn start(services: &BTreeMap<String, String>, rate_per_service: u32) -> Self {
        let rt = blocking::rt();
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut handles = Vec::new();
        for (name, base) in services {
            let route = api_route(name);
            let url = format!("{base}{route}");
            let (stop, ok, failed, failures, client) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                failures.clone(),
                client.clone(),
            );
            let every = Duration::from_secs_f64(1.0 / f64::from(rate_per_service.max(1)));
            handles.push(rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut inflight = tokio::task::JoinSet::new();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (ok, failed, failures, client, url) = (
                        ok.clone(),
                        failed.clone(),
                        failures.clone(),
                        client.clone(),
                        url.clone(),
                    );
                    inflight.spawn(async move {
                        match client.get(&url).send().await {
                            Ok(r) if r.status().is_success() => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{url}: {}", r.status()));
                            }
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                failures.lock().unwrap().push(format!("{url}: {e}"));
                            }
                        }
                    });
                }
                while inflight.join_next().await.is_some() {}
            }));
        }
        Self {
            stop,
            ok,
            failed,
            failures,
            handles,
        }
    }

    pub fn stats(&self) -> LoadStats {
        LoadStats {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    pub fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let rt = blocking::rt();
        for h in self.handles {
            let _ = rt.block_on(h);
        }
        LoadStats {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// One answer (or failure) seen by [`GatewayLoad`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub service: String,
    /// When the request was sent and when its answer came, since the load started.
    pub sent: Duration,
    pub at: Duration,
    /// The address of the instance that answered ("" for a failure).
    pub instance: String,
    /// The version that answered ("" for a failure).
    pub version: String,
    pub color: String,
    /// None for a 2xx; else the status or the connection error.
    pub failure: Option<String>,
}

/// Steady traffic through the gateway: `rate` requests per second to each service's live host
/// (sent to the gateway's address with that Host header), recording for every request which
/// version and colour answered, and every non-2xx and connection error.
pub struct GatewayLoad {
    stop: Arc<AtomicBool>,
    answers: Arc<std::sync::Mutex<Vec<Answer>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    pub started: std::time::Instant,
}

impl GatewayLoad {
    /// `hosts`: service → its live host; `gateway`: host:port on 127.0.0.0/8.
    pub fn start(gateway: &str, hosts: &BTreeMap<String, String>, rate_per_service: u32) -> Self {
        assert!(
            gateway.starts_with("127."),
            "test traffic goes to loopback only, not {gateway}"
        );
        let rt = blocking::rt();
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let mut handles = Vec::new();
        for (name, host) in hosts {
            let route = api_route(name);
            let url = format!("http://{gateway}{route}");
            let (stop, answers, client, host, name) = (
                stop.clone(),
                answers.clone(),
                client.clone(),
                host.clone(),
                name.clone(),
            );
            let every = Duration::from_secs_f64(1.0 / f64::from(rate_per_service.max(1)));
            handles.push(rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut inflight = tokio::task::JoinSet::new();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (answers, client, url, host, name) = (
                        answers.clone(),
                        client.clone(),
                        url.clone(),
                        host.clone(),
                        name.clone(),
                    );
                    inflight.spawn(async move {
                        let sent = started.elapsed();
                        let r = client.get(&url).header("host", &host).send().await;
                        let at = started.elapsed();
                        let mut a = Answer {
                            service: name,
                            sent,
                            at,
                            instance: String::new(),
                            version: String::new(),
                            color: String::new(),
                            failure: None,
                        };
                        match r {
                            Ok(r) if r.status().is_success() => {
                                let v: serde_json::Value = r.json().await.unwrap_or_default();
                                a.version = v["version"].as_str().unwrap_or_default().to_owned();
                                a.color = v["color"].as_str().unwrap_or_default().to_owned();
                                a.instance = v["instance"].as_str().unwrap_or_default().to_owned();
                                if a.version.is_empty() {
                                    a.failure = Some("answer names no version".into());
                                }
                            }
                            Ok(r) => a.failure = Some(format!("{host}: {}", r.status())),
                            Err(e) => a.failure = Some(format!("{host}: {e}")),
                        }
                        answers.lock().unwrap().push(a);
                    });
                    while inflight.try_join_next().is_some() {}
                }
                while inflight.join_next().await.is_some() {}
            }));
        }
        Self {
            stop,
            answers,
            handles,
            started,
        }
    }

    /// Every answer so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    pub fn failed(&self) -> Vec<Answer> {
        self.answers()
            .into_iter()
            .filter(|a| a.failure.is_some())
            .collect()
    }

    pub fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        let rt = blocking::rt();
        for h in self.handles {
            let _ = rt.block_on(h);
        }
        self.answers.lock().unwrap().clone()
    }
}
