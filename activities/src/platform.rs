//! The platforms an environment can run on. Same operations, chosen per environment by
//! `PlatformTarget.kind`: `local` (the embedded default) or `kubernetes` (kube-rs).

use crate::checks;
use crate::error::Failure;
use crate::kubernetes::KubePlatform;
use crate::local::LocalPlatform;
use proto::{
    CheckReport, CheckResult, ColorRequest, DeployRequest, MetricsSnapshot, PreflightResult,
    SwitchRequest, SwitchResult, WeightsRequest, WeightsResult, WindowCheckRequest,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::Mutex;
use workflows::release::PlatformKind;

pub enum Platform {
    Local(LocalPlatform),
    Kubernetes(Box<KubePlatform>),
}

/// Kubernetes clients by kubeconfig context, made once per worker (a client holds its
/// connection pool and credentials).
#[derive(Default)]
pub struct Clients {
    kube: Mutex<BTreeMap<String, kube::Client>>,
}

impl Clients {
    async fn kube(&self, context: &str) -> Result<kube::Client, Failure> {
        let mut map = self.kube.lock().await;
        if let Some(c) = map.get(context) {
            return Ok(c.clone());
        }
        let c = crate::kubernetes::client_for(context).await?;
        map.insert(context.to_owned(), c.clone());
        Ok(c)
    }
}

pub async fn connect(
    target: Option<&proto::PlatformTarget>,
    http: &reqwest::Client,
    clients: &Clients,
) -> Result<Platform, Failure> {
    let target = target.ok_or_else(|| Failure::InvalidInput("request names no platform".into()))?;
    match PlatformKind::parse(&target.kind) {
        Some(PlatformKind::Local) => Ok(Platform::Local(LocalPlatform::new(
            &target.admin_url,
            http.clone(),
        )?)),
        Some(PlatformKind::Kubernetes) => Ok(Platform::Kubernetes(Box::new(KubePlatform::new(
            clients.kube(&target.kube_context).await?,
            target,
        )?))),
        None => Err(Failure::InvalidInput(format!(
            "unknown platform kind {:?}: expected \"local\" or \"kubernetes\"",
            target.kind
        ))),
    }
}

impl Platform {
    /// How often a wait polls the platform.
    pub fn poll_interval(&self) -> Duration {
        match self {
            Platform::Local(_) => Duration::from_millis(100),
            Platform::Kubernetes(_) => Duration::from_millis(500),
        }
    }

    pub async fn preflight(&self, req: &DeployRequest) -> Result<PreflightResult, Failure> {
        match self {
            Platform::Local(p) => p.preflight(req).await,
            Platform::Kubernetes(p) => p.preflight(req).await,
        }
    }

    pub async fn read_active(&self, services: &[String]) -> Result<PreflightResult, Failure> {
        match self {
            Platform::Local(p) => p.read_active(services).await,
            Platform::Kubernetes(p) => p.read_active(services).await,
        }
    }

    pub async fn start_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        match self {
            Platform::Local(p) => p.start_color(req).await,
            Platform::Kubernetes(p) => p.start_color(req).await,
        }
    }

    pub async fn scale_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        match self {
            Platform::Local(p) => p.scale_color(req).await,
            Platform::Kubernetes(p) => p.scale_color(req).await,
        }
    }

    /// One line per service of the colour that is not fully ready yet; empty when all are.
    pub async fn not_ready(&self, req: &ColorRequest) -> Result<Vec<String>, Failure> {
        match self {
            Platform::Local(p) => p.not_ready(req).await,
            Platform::Kubernetes(p) => p.not_ready(req).await,
        }
    }

    pub async fn switch(&self, req: &SwitchRequest) -> Result<SwitchResult, Failure> {
        match self {
            Platform::Local(p) => p.switch(req).await,
            Platform::Kubernetes(p) => p.switch(req).await,
        }
    }

    /// Counters of live traffic on a colour (the baseline of the post-switch window). The
    /// Kubernetes platform judges the window by health and keeps no counters here.
    pub async fn snapshot(
        &self,
        color: &str,
        services: &[String],
    ) -> Result<MetricsSnapshot, Failure> {
        match self {
            Platform::Local(p) => p.snapshot(color, services).await,
            Platform::Kubernetes(_) => Ok(MetricsSnapshot::default()),
        }
    }

    /// One judgement of the post-switch window. Kubernetes: the metrics source's verdict per
    /// service (error ratio, p95, minimum requests of the live colour) and the pods' health; a
    /// failure of either fails the check.
    pub async fn check_window(
        &self,
        http: &reqwest::Client,
        req: &WindowCheckRequest,
    ) -> Result<CheckReport, Failure> {
        match self {
            Platform::Local(p) => {
                let now = p.snapshot(&req.color, &req.services).await?;
                Ok(checks::window(req, &now))
            }
            Platform::Kubernetes(p) => {
                let health = p.health(&req.color, &req.services).await?;
                // A run started before the window was judged by metrics carries no analysis
                // settings: it keeps the judgement it started with (pod health).
                let judged_by_metrics = req.platform.as_ref().is_some_and(|t| t.analysis.is_some());
                let mut results = if judged_by_metrics {
                    crate::analysis::window(http, req).await
                } else {
                    Vec::new()
                };
                for (service, ok, detail) in health {
                    if !ok || !judged_by_metrics {
                        results.push(CheckResult {
                            name: "validation".into(),
                            service,
                            color: req.color.clone(),
                            outcome: if ok { "passed" } else { "failed" }.into(),
                            detail: format!("health: {detail}"),
                            ..Default::default()
                        });
                    }
                }
                Ok(CheckReport {
                    passed: results.iter().all(|r| r.outcome == "passed"),
                    results,
                })
            }
        }
    }

    /// The client the checks use: on Kubernetes with a `gateway_address`, one that reaches the
    /// services' preview hosts at that address (as DNS would in the cluster).
    pub fn check_client(
        &self,
        shared: &reqwest::Client,
        services: &[String],
    ) -> Result<reqwest::Client, Failure> {
        match self {
            Platform::Kubernetes(p) => p.check_client(shared, services),
            Platform::Local(_) => Ok(shared.clone()),
        }
    }

    pub async fn verify(&self, color: &str, services: &[String]) -> Result<(), Failure> {
        match self {
            Platform::Local(p) => p.verify(color, services).await,
            Platform::Kubernetes(p) => p.verify(color, services).await,
        }
    }

    /// Base URLs that reach one service's colour directly (the "preview" of that colour).
    pub async fn endpoints(&self, service: &str, color: &str) -> Result<Vec<String>, Failure> {
        match self {
            Platform::Local(p) => p.endpoints(service, color).await,
            Platform::Kubernetes(p) => Ok(vec![p.preview_url(service)]),
        }
    }

    /// Canary weights (Kubernetes: HTTPRoute or VirtualService), read back after the change.
    pub async fn set_weights(&self, req: &WeightsRequest) -> Result<WeightsResult, Failure> {
        match self {
            Platform::Local(p) => p.set_weights(req).await,
            Platform::Kubernetes(p) => p.set_weights(req).await,
        }
    }
}
