//! The platforms an environment can run on. Same operations, chosen per environment by
//! `PlatformTarget.kind`: `local` (the embedded default) here; `kubernetes` arrives with the
//! kube-rs platform.

use crate::error::Failure;
use crate::local::LocalPlatform;
use proto::{
    ColorRequest, DeployRequest, MetricsSnapshot, PlatformTarget, PreflightResult, SwitchRequest,
    SwitchResult,
};

pub enum Platform {
    Local(LocalPlatform),
}

pub fn connect(
    target: Option<&PlatformTarget>,
    http: &reqwest::Client,
) -> Result<Platform, Failure> {
    let target = target.ok_or_else(|| Failure::InvalidInput("request names no platform".into()))?;
    match target.kind.as_str() {
        "local" => Ok(Platform::Local(LocalPlatform::new(
            &target.admin_url,
            http.clone(),
        )?)),
        "kubernetes" => Err(Failure::UnsupportedPlatform(
            "this worker has no Kubernetes platform yet; use platform = \"local\"".into(),
        )),
        other => Err(Failure::InvalidInput(format!(
            "unknown platform kind {other:?}: expected \"local\" or \"kubernetes\""
        ))),
    }
}

impl Platform {
    pub async fn preflight(&self, req: &DeployRequest) -> Result<PreflightResult, Failure> {
        match self {
            Platform::Local(p) => p.preflight(req).await,
        }
    }

    pub async fn read_active(&self, services: &[String]) -> Result<PreflightResult, Failure> {
        match self {
            Platform::Local(p) => p.read_active(services).await,
        }
    }

    pub async fn start_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        match self {
            Platform::Local(p) => p.start_color(req).await,
        }
    }

    pub async fn scale_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        match self {
            Platform::Local(p) => p.scale_color(req).await,
        }
    }

    /// One line per service of the colour that is not fully ready yet; empty when all are.
    pub async fn not_ready(&self, req: &ColorRequest) -> Result<Vec<String>, Failure> {
        match self {
            Platform::Local(p) => p.not_ready(req).await,
        }
    }

    pub async fn switch(&self, req: &SwitchRequest) -> Result<SwitchResult, Failure> {
        match self {
            Platform::Local(p) => p.switch(req).await,
        }
    }

    pub async fn snapshot(
        &self,
        color: &str,
        services: &[String],
    ) -> Result<MetricsSnapshot, Failure> {
        match self {
            Platform::Local(p) => p.snapshot(color, services).await,
        }
    }

    pub async fn verify(&self, color: &str, services: &[String]) -> Result<(), Failure> {
        match self {
            Platform::Local(p) => p.verify(color, services).await,
        }
    }

    /// Base URLs that reach one service's colour directly (the "preview" of that colour).
    pub async fn endpoints(&self, service: &str, color: &str) -> Result<Vec<String>, Failure> {
        match self {
            Platform::Local(p) => p.endpoints(service, color).await,
        }
    }
}
