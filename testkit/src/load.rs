//! [`Load`]: steady HTTP traffic to every service, counting failures.

use crate::blocking;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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
            let route = match name.as_str() {
                "api-gateway" => "/api/market/status",
                "strategy-engine" => "/api/strategies",
                "order-execution" => "/api/orders",
                _ => "/api/risk/limits",
            };
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
