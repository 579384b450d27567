//! Per-service HTTP routing by colour weight, with RED metrics and an idempotent switch journal.
//!
//! The weights of all services live in one immutable table behind a lock; a blue-green switch of
//! every service builds a new table and swaps it in one step, so no request ever sees a mix.

use crate::api::{COLORS, JournalEntry, SwitchRequest, SwitchResponse, WeightsRequest};
use crate::http::{self, Body};
use crate::metrics::Red;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One ready instance the router may send requests to.
pub struct Backend {
    pub addr: SocketAddr,
    pub in_flight: AtomicI64,
}

/// The ready instances of one service's colour.
#[derive(Default)]
pub struct Pool {
    backends: RwLock<Vec<Arc<Backend>>>,
    next: AtomicUsize,
}

impl Pool {
    pub fn set(&self, backends: Vec<Arc<Backend>>) {
        *self.backends.write().unwrap() = backends;
    }

    pub fn snapshot(&self) -> Vec<Arc<Backend>> {
        self.backends.read().unwrap().clone()
    }

    fn pick(&self) -> Vec<Arc<Backend>> {
        let all = self.snapshot();
        if all.is_empty() {
            return all;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % all.len();
        all.iter()
            .cycle()
            .skip(start)
            .take(all.len())
            .cloned()
            .collect()
    }
}

type Weights = BTreeMap<String, BTreeMap<String, u32>>;

pub struct ServiceRoute {
    pub listen: SocketAddr,
    pub pools: BTreeMap<String, Arc<Pool>>,
    counter: AtomicU64,
}

#[derive(Default)]
struct Journal {
    entries: Vec<JournalEntry>,
    answers: HashMap<String, SwitchResponse>,
}

pub struct Router {
    pub services: BTreeMap<String, ServiceRoute>,
    table: RwLock<Arc<Weights>>,
    pub red: Red,
    client: Client<HttpConnector, Full<Bytes>>,
    journal: Mutex<Journal>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("unknown colour {0:?}: expected blue or green")]
    UnknownColor(String),
    #[error("weights of {0} sum to {1}, not 100")]
    BadSum(String, u32),
    #[error("{service} has no ready {color} instance: refusing to send traffic there")]
    NotReady { service: String, color: String },
}

impl Router {
    /// A router for `services` (name, listen address) sending everything to `initial` colour.
    pub fn new(services: &[(String, SocketAddr)], initial: &str) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let mut table = Weights::new();
        let mut routes = BTreeMap::new();
        for (name, listen) in services {
            let pools = COLORS
                .iter()
                .map(|c| (c.to_string(), Arc::new(Pool::default())))
                .collect();
            routes.insert(
                name.clone(),
                ServiceRoute {
                    listen: *listen,
                    pools,
                    counter: AtomicU64::new(0),
                },
            );
            table.insert(
                name.clone(),
                COLORS
                    .iter()
                    .map(|c| (c.to_string(), if *c == initial { 100 } else { 0 }))
                    .collect(),
            );
        }
        // Every service and colour is exported from the start, at 0: a canary's first errors
        // then show up in rate() at the next scrape.
        let red = Red::default();
        for name in routes.keys() {
            for c in COLORS {
                red.touch(name, c);
            }
        }
        Arc::new(Self {
            services: routes,
            table: RwLock::new(Arc::new(table)),
            red,
            client,
            journal: Mutex::new(Journal::default()),
        })
    }

    pub fn weights(&self) -> Arc<Weights> {
        self.table.read().unwrap().clone()
    }

    pub fn pool(&self, service: &str, color: &str) -> Option<Arc<Pool>> {
        self.services.get(service)?.pools.get(color).cloned()
    }

    fn check(&self, service: &str, color: &str) -> Result<(), RouteError> {
        if !self.services.contains_key(service) {
            return Err(RouteError::UnknownService(service.to_owned()));
        }
        if !COLORS.contains(&color) {
            return Err(RouteError::UnknownColor(color.to_owned()));
        }
        Ok(())
    }

    fn record_journal(&self, request_id: &str, kind: &str, answer: &SwitchResponse) {
        let mut journal = self.journal.lock().unwrap();
        if !answer.changed.is_empty() {
            journal.entries.push(JournalEntry {
                request_id: request_id.to_owned(),
                kind: kind.to_owned(),
                changed: answer.changed.clone(),
                unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64,
            });
        }
        journal
            .answers
            .insert(request_id.to_owned(), answer.clone());
    }

    fn replayed(&self, request_id: &str) -> Option<SwitchResponse> {
        let journal = self.journal.lock().unwrap();
        journal.answers.get(request_id).map(|a| SwitchResponse {
            replayed: true,
            ..a.clone()
        })
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        self.journal.lock().unwrap().entries.clone()
    }

    /// Points services at colours; refuses a colour with no ready instance so a switch can never
    /// leave a service without backends.
    pub fn switch(&self, req: &SwitchRequest) -> Result<SwitchResponse, RouteError> {
        if let Some(answer) = self.replayed(&req.request_id) {
            return Ok(answer);
        }
        for a in &req.assignments {
            self.check(&a.service, &a.color)?;
            if self
                .pool(&a.service, &a.color)
                .is_none_or(|p| p.snapshot().is_empty())
            {
                return Err(RouteError::NotReady {
                    service: a.service.clone(),
                    color: a.color.clone(),
                });
            }
        }
        let mut previous = BTreeMap::new();
        let mut changed = Vec::new();
        let mut first = None;
        let mut last = None;
        let mut apply = |assignments: &[crate::api::Assignment]| {
            let mut table = self.table.write().unwrap();
            let mut next = (**table).clone();
            for a in assignments {
                let weights = next.get_mut(&a.service).expect("checked above");
                let before = weights
                    .iter()
                    .find(|(_, w)| **w == 100)
                    .map(|(c, _)| c.clone())
                    .unwrap_or_else(|| "split".to_owned());
                previous.entry(a.service.clone()).or_insert(before.clone());
                if before != a.color {
                    for (c, w) in weights.iter_mut() {
                        *w = if *c == a.color { 100 } else { 0 };
                    }
                    changed.push(a.service.clone());
                }
            }
            *table = Arc::new(next);
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
        };
        if req.atomic {
            apply(&req.assignments);
        } else {
            for a in &req.assignments {
                apply(std::slice::from_ref(a));
            }
        }
        let switch_us = match (first, last) {
            (Some(f), Some(l)) => l.duration_since(f).as_micros() as u64,
            _ => 0,
        };
        let answer = SwitchResponse {
            request_id: req.request_id.clone(),
            changed,
            previous,
            switch_us,
            replayed: false,
        };
        self.record_journal(&req.request_id, "switch", &answer);
        Ok(answer)
    }

    /// Sets traffic weights per service (canary). All services change in one swap.
    pub fn set_weights(&self, req: &WeightsRequest) -> Result<SwitchResponse, RouteError> {
        if let Some(answer) = self.replayed(&req.request_id) {
            return Ok(answer);
        }
        for (service, weights) in &req.weights {
            let sum: u32 = weights.values().sum();
            if sum != 100 {
                return Err(RouteError::BadSum(service.clone(), sum));
            }
            for (color, w) in weights {
                self.check(service, color)?;
                if *w > 0
                    && self
                        .pool(service, color)
                        .is_none_or(|p| p.snapshot().is_empty())
                {
                    return Err(RouteError::NotReady {
                        service: service.clone(),
                        color: color.clone(),
                    });
                }
            }
        }
        let mut table = self.table.write().unwrap();
        let mut next = (**table).clone();
        let mut answer = SwitchResponse {
            request_id: req.request_id.clone(),
            ..Default::default()
        };
        for (service, weights) in &req.weights {
            let current = next.get_mut(service).expect("checked above");
            let mut full: BTreeMap<String, u32> =
                COLORS.iter().map(|c| (c.to_string(), 0)).collect();
            full.extend(weights.clone());
            if *current != full {
                answer.changed.push(service.clone());
                *current = full;
            }
        }
        *table = Arc::new(next);
        drop(table);
        self.record_journal(&req.request_id, "weights", &answer);
        Ok(answer)
    }

    fn pick_color(&self, service: &str, route: &ServiceRoute) -> String {
        let table = self.weights();
        let weights = &table[service];
        spread_pick(weights, route.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Proxies one client request of `service` to a ready instance of the colour its weights pick.
    pub async fn proxy(self: Arc<Self>, service: String, req: Request<Incoming>) -> Response<Body> {
        let begun = Instant::now();
        let route = &self.services[&service];
        let color = self.pick_color(&service, route);
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return http::text(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let candidates = route.pools[&color].pick();
        let mut resp = http::text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no ready {color} instance of {service}"),
        );
        // Connection failures (an instance that just stopped) are retried on the next instance;
        // an answer from an instance, whatever its code, is passed through as it is.
        for backend in candidates.iter().take(3) {
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let mut out = Request::builder()
                .method(parts.method.clone())
                .uri(format!("http://{}{}", backend.addr, path));
            for (k, v) in parts.headers.iter() {
                if k != hyper::header::HOST {
                    out = out.header(k, v);
                }
            }
            let Ok(out) = out.body(Full::new(body.clone())) else {
                break;
            };
            backend.in_flight.fetch_add(1, Ordering::SeqCst);
            let result = self.client.request(out).await;
            let answer = match result {
                Ok(r) => {
                    let (p, b) = r.into_parts();
                    b.collect()
                        .await
                        .ok()
                        .map(|c| Response::from_parts(p, Full::new(c.to_bytes())))
                }
                Err(_) => None,
            };
            backend.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(a) = answer {
                resp = a;
                break;
            }
            resp = http::text(
                StatusCode::BAD_GATEWAY,
                format!(
                    "{color} instance {} of {service} did not answer",
                    backend.addr
                ),
            );
        }
        self.red
            .record(&service, &color, resp.status().as_u16(), begun.elapsed());
        resp
    }
}

/// The colour of the `n`-th request: each colour's share spread evenly over every 100 requests
/// (Bresenham), not in one block; with 25 % on the canary every 4th request goes there, so even
/// a short analysis window sees the configured share.
pub fn spread_pick(weights: &BTreeMap<String, u32>, n: u64) -> String {
    let k = n % 100;
    let mut acc = 0u64;
    for (color, w) in weights {
        acc += u64::from(*w);
        if acc > 0 && (k + 1) * acc / 100 > k * acc / 100 {
            return color.clone();
        }
    }
    weights
        .iter()
        .max_by_key(|(_, w)| **w)
        .map(|(c, _)| c.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod spread_tests {
    use super::*;

    #[test]
    fn every_window_of_requests_gets_its_share() {
        for canary in [0u32, 1, 10, 25, 50, 75, 99, 100] {
            let w: BTreeMap<String, u32> = [
                ("blue".to_owned(), 100 - canary),
                ("green".to_owned(), canary),
            ]
            .into_iter()
            .collect();
            let picks: Vec<bool> = (0..1000).map(|n| spread_pick(&w, n) == "green").collect();
            assert_eq!(
                picks.iter().filter(|g| **g).count() as u32,
                canary * 10,
                "{canary}%: exact per 100"
            );
            // Any 20 consecutive requests hold the share within one request.
            for win in picks.windows(20) {
                let got = win.iter().filter(|g| **g).count() as f64;
                assert!(
                    (got - f64::from(canary) / 5.0).abs() <= 1.0,
                    "{canary}%: {got} of 20"
                );
            }
        }
    }
}
