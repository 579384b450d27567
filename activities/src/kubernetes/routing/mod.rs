//! Canary weights: each service's traffic split between its active (stable) and preview (canary)
//! Service, applied through the environment's router and read back from the API server. One file
//! per router: `gateway` (Gateway API HTTPRoute) and `istio` (Istio VirtualService); the choice
//! and the read-back decision are here.

mod gateway;
mod istio;

use super::{KubePlatform, api_resource, kube_failure};
use crate::error::Failure;
use kube::api::{Api, DynamicObject};
use proto::{ServiceWeight, WeightsRequest, WeightsResult};
use serde_json::{Value, json};

impl KubePlatform {
    /// Sets each service's canary weight through the environment's router and reads it back.
    pub async fn set_weights(&self, req: &WeightsRequest) -> Result<WeightsResult, Failure> {
        let mut applied = Vec::new();
        for w in &req.weights {
            if w.canary_percent > 100 {
                return Err(Failure::InvalidInput(format!(
                    "{}: canary weight {}% is more than 100%",
                    w.service, w.canary_percent
                )));
            }
            let doc = self.route_doc(w)?;
            self.apply(&doc, false).await?;
            applied.push(self.read_weight(w).await?);
        }
        Ok(WeightsResult { applied })
    }

    fn route_doc(&self, w: &ServiceWeight) -> Result<Value, Failure> {
        let s = &w.service;
        let stable = 100 - w.canary_percent;
        let canary = w.canary_percent;
        let labels = json!({
            "app": s, "app.kubernetes.io/part-of": "jts", "app.kubernetes.io/managed-by": "cutover"
        });
        match self.target.canary_routing.as_str() {
            "istio" => Ok(istio::virtual_service(s, &self.ns, stable, canary, labels)),
            "gateway" | "" => Ok(gateway::http_route(s, &self.ns, stable, canary, labels)),
            other => Err(Failure::InvalidInput(format!(
                "canary routing {other:?}: expected \"gateway\" or \"istio\""
            ))),
        }
    }

    /// What the router holds for a service, read back from the API server.
    pub async fn read_weight(&self, w: &ServiceWeight) -> Result<ServiceWeight, Failure> {
        let probe = self.route_doc(w)?;
        let (ar, name) = api_resource(&probe)?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, &ar);
        let obj = api
            .get(&name)
            .await
            .map_err(|e| kube_failure(e, &format!("read {} {name}", ar.kind)))?;
        let spec = obj.data.get("spec").cloned().unwrap_or_default();
        let backends = if ar.kind == "VirtualService" {
            istio::weighted_backends(&spec)
        } else {
            gateway::weighted_backends(&spec)
        };
        let mut canary = None;
        for (target, weight) in backends {
            if target.starts_with(&format!("{}-preview", w.service)) {
                canary = weight;
            }
        }
        let canary = canary.ok_or_else(|| {
            Failure::VerifyFailed(format!(
                "{} {name} has no weighted route to {}-preview",
                ar.kind, w.service
            ))
        })?;
        Ok(ServiceWeight {
            canary_percent: u32::try_from(canary).unwrap_or(u32::MAX),
            ..w.clone()
        })
    }
}
