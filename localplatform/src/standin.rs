//! The JTS stand-in service: what each of api-gateway, strategy-engine, order-execution and
//! risk-management looks like to cutover on the local platform.
//!
//! Routes: `/health` (liveness: the process answers), `/health/ready` (readiness: 503 until the
//! slow start is over), `/metrics`, and API routes that answer JSON naming service, version and
//! colour (and the instance's address): `/api/market/status`, `/api/strategies`, `/api/orders`,
//! `/api/risk/limits`.

use crate::faults::{CHECK_HEADER, Faults, nth_fails};
use crate::http::{self, Body};
use crate::metrics::Red;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const API_ROUTES: [&str; 4] = [
    "/api/market/status",
    "/api/strategies",
    "/api/orders",
    "/api/risk/limits",
];

pub struct Standin {
    pub service: String,
    pub version: String,
    pub color: String,
    pub faults: Faults,
    /// The address it serves on (set once bound; named in every API answer).
    pub instance: std::sync::OnceLock<String>,
    started: Instant,
    served: AtomicU64,
    live_served: AtomicU64,
    red: Red,
}

impl Standin {
    pub fn new(service: String, version: String, color: String, faults: Faults) -> Arc<Self> {
        Arc::new(Self {
            service,
            version,
            color,
            faults,
            instance: std::sync::OnceLock::new(),
            started: Instant::now(),
            served: AtomicU64::new(0),
            live_served: AtomicU64::new(0),
            red: Red::default(),
        })
    }

    fn ready(&self) -> bool {
        !self.faults.never_ready && self.started.elapsed() >= self.faults.slow_start
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let begun = Instant::now();
        let path = req.uri().path().to_owned();
        let is_check = req.headers().contains_key(CHECK_HEADER);
        let resp = match path.as_str() {
            "/health" => http::text(StatusCode::OK, "ok"),
            "/health/ready" if self.ready() => http::text(StatusCode::OK, "ready"),
            "/health/ready" => http::text(StatusCode::SERVICE_UNAVAILABLE, "starting"),
            "/metrics" => http::text(StatusCode::OK, self.red.render()),
            p if API_ROUTES.contains(&p) => self.api(p, is_check).await,
            _ => http::text(StatusCode::NOT_FOUND, "no such route"),
        };
        if path.starts_with("/api/") {
            self.red.record(
                &self.service,
                &self.color,
                resp.status().as_u16(),
                begun.elapsed(),
            );
        }
        resp
    }

    async fn api(&self, path: &str, is_check: bool) -> Response<Body> {
        if !self.faults.latency.is_zero() {
            tokio::time::sleep(self.faults.latency).await;
        }
        if !is_check && !self.faults.live_latency.is_zero() {
            tokio::time::sleep(self.faults.live_latency).await;
        }
        let n = self.served.fetch_add(1, Ordering::Relaxed);
        let live_fail = !is_check
            && nth_fails(
                self.live_served.fetch_add(1, Ordering::Relaxed),
                self.faults.live_error_rate,
            );
        if nth_fails(n, self.faults.error_rate) || live_fail {
            return http::json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": "injected fault", "service": self.service, "version": self.version}),
            );
        }
        http::json(
            StatusCode::OK,
            &serde_json::json!({
                "service": self.service,
                "version": self.version,
                "color": self.color,
                "route": path,
                "instance": self.instance.get().map(String::as_str).unwrap_or_default(),
            }),
        )
    }

    /// When the crash knob is set, the time after which the process exits abruptly.
    pub fn crash_after(&self) -> Option<Duration> {
        self.faults.crash_after
    }
}
