//! Canary weights: each service's traffic split between its active (stable) and preview (canary)
//! Service, applied through the environment's router and read back from the API server. One file
//! per router: `gateway` (Gateway API HTTPRoute) and `istio` (Istio VirtualService); the choice
//! and the read-back decision are here.

mod gateway;
mod istio;

use super::{KubePlatform, api_resource, kube_failure};
use crate::error::Failure;
use kube::api::{Api, DynamicObject};
use proto::{PlatformTarget, ServiceWeight, WeightsRequest, WeightsResult};
use serde_json::{Value, json};

/// How long a weights change waits for the gateway's controller to take it (the workflow gives a
/// traffic move 5 s per attempt).
pub const WEIGHTS_TAKEN_WITHIN: std::time::Duration = std::time::Duration::from_millis(3000);

/// The route objects of an environment, built from its platform target alone (the CLI's
/// `render` uses them without a cluster).
pub struct Routes<'a>(pub &'a PlatformTarget);

fn labels(service: &str) -> Value {
    json!({
        "app": service, "app.kubernetes.io/part-of": "jts", "app.kubernetes.io/managed-by": "cutover"
    })
}

impl Routes<'_> {
    pub fn route_doc(&self, w: &ServiceWeight) -> Result<Value, Failure> {
        let s = &w.service;
        let stable = 100 - w.canary_percent;
        let canary = w.canary_percent;
        let labels = labels(s);
        match self.0.canary_routing.as_str() {
            "istio" => Ok(istio::virtual_service(
                s,
                &self.0.namespace,
                stable,
                canary,
                labels,
            )),
            "gateway" | "" => Ok(gateway::http_route(
                s,
                &self.0.namespace,
                stable,
                canary,
                labels,
                &self.parent_ref(),
                &self.hosts(&self.0.route_host, s),
            )),
            other => Err(Failure::InvalidInput(format!(
                "canary routing {other:?}: expected \"gateway\" or \"istio\""
            ))),
        }
    }

    /// The live route (at 100 % to the active Service) and the preview route of a service, when
    /// the environment has route hosts (Gateway API); empty otherwise.
    pub fn gateway_route_docs(&self, service: &str) -> Result<Vec<Value>, Failure> {
        if !self.gateway_routes() {
            return Ok(Vec::new());
        }
        let w = ServiceWeight {
            service: service.to_owned(),
            canary_percent: 0,
            ..Default::default()
        };
        Ok(vec![
            self.route_doc(&w)?,
            gateway::preview_route(
                service,
                &self.0.namespace,
                labels(service),
                &self.parent_ref(),
                &self.hosts(&self.0.preview_host, service),
            ),
        ])
    }

    /// The Gateway the routes attach to (name and namespace from configuration).
    pub fn parent_ref(&self) -> Value {
        let name = if self.0.gateway_name.is_empty() {
            "jts"
        } else {
            &self.0.gateway_name
        };
        let mut p =
            json!({ "name": name, "kind": "Gateway", "group": "gateway.networking.k8s.io" });
        if !self.0.gateway_namespace.is_empty() {
            p["namespace"] = json!(self.0.gateway_namespace);
        }
        p
    }

    fn hosts(&self, template: &str, service: &str) -> Vec<String> {
        if template.is_empty() {
            Vec::new()
        } else {
            vec![
                template
                    .replace("{service}", service)
                    .replace("{namespace}", &self.0.namespace),
            ]
        }
    }

    pub fn gateway_routes(&self) -> bool {
        matches!(self.0.canary_routing.as_str(), "gateway" | "") && !self.0.route_host.is_empty()
    }
}

impl KubePlatform {
    fn routes(&self) -> Routes<'_> {
        Routes(&self.target)
    }

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
            let doc = self.routes().route_doc(w)?;
            self.apply(&doc, false).await?;
            applied.push(self.read_weight(w).await?);
        }
        // Gateway API: the gateway's controller must have taken the new weights (route status
        // for this generation) before anything else happens, e.g. the canary colour scaled down.
        // Bounded well inside the 5 s the workflow gives a traffic move: a slow gateway fails the
        // attempt (retryable) and the retry applies and waits again.
        let deadline = std::time::Instant::now() + WEIGHTS_TAKEN_WITHIN;
        for w in &req.weights {
            self.wait_route_programmed(&w.service, deadline).await?;
        }
        Ok(WeightsResult { applied })
    }

    /// With hosts configured (Gateway API): each service's live route (made at 100 % to the
    /// active Service when it does not exist; an existing one keeps its weights) and its preview
    /// route. Called when a colour starts, so traffic and checks go through the Gateway.
    pub async fn ensure_routes(&self, services: &[String]) -> Result<(), Failure> {
        if !self.routes().gateway_routes() {
            return Ok(());
        }
        for s in services {
            let docs = self.routes().gateway_route_docs(s)?;
            // The live route is made once; an existing one keeps its weights.
            if self.current_weight(s).await?.is_none() {
                self.apply(&docs[0], false).await?;
            }
            self.apply(&docs[1], false).await?;
        }
        // The checks go through the preview routes next: the gateway must have taken them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for s in services {
            for name in [s.clone(), format!("{s}-preview")] {
                loop {
                    let Some(why) = self.route_lag(&name).await? else {
                        break;
                    };
                    if std::time::Instant::now() >= deadline {
                        return Err(Failure::Unavailable(format!(
                            "the gateway has not taken the route yet: {why}"
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        Ok(())
    }

    /// With live routes (Gateway API): why the gateway has not taken a service's route as it is
    /// now — it must have accepted the route's current generation with every backend resolved
    /// (the Gateway API's own read-back of what the gateway programmed). None when it has.
    pub async fn route_not_programmed(&self, service: &str) -> Result<Option<String>, Failure> {
        // No live route yet (route hosts configured after the last release): nothing to verify.
        if !self.routes().gateway_routes() || self.current_weight(service).await?.is_none() {
            return Ok(None);
        }
        self.route_lag(service).await
    }

    /// Why the gateway's status of the HTTPRoute `name` (its entry for our Gateway) does not
    /// cover the route's current generation (Accepted and ResolvedRefs true); None when it does.
    async fn route_lag(&self, name: &str) -> Result<Option<String>, Failure> {
        let gvk = kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "httproutes");
        let name = name.to_owned();
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, &ar);
        let Some(obj) = api
            .get_opt(&name)
            .await
            .map_err(|e| kube_failure(e, &format!("read {} {name}", ar.kind)))?
        else {
            return Ok(Some(format!("HTTPRoute {name} does not exist")));
        };
        let generation = obj.metadata.generation.unwrap_or(0);
        let ours = self.routes().parent_ref();
        let parents: Vec<Value> = obj.data["status"]["parents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                let r = &p["parentRef"];
                r["name"] == ours["name"]
                    && (ours.get("namespace").is_none() || r["namespace"] == ours["namespace"])
            })
            .collect();
        let cond = |t: &str| {
            parents.iter().find_map(|p| {
                p["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == t)
                    .cloned()
            })
        };
        for t in ["Accepted", "ResolvedRefs"] {
            let Some(c) = cond(t) else {
                return Ok(Some(format!(
                    "HTTPRoute {name}: the gateway reports no {t} yet"
                )));
            };
            let seen = c["observedGeneration"].as_i64().unwrap_or(0);
            if c["status"] != "True" || seen < generation {
                return Ok(Some(format!(
                    "HTTPRoute {name}: {t}={} for generation {seen} of {generation} ({})",
                    c["status"].as_str().unwrap_or("?"),
                    c["message"].as_str().unwrap_or_default()
                )));
            }
        }
        Ok(None)
    }

    /// Waits until `deadline` for the gateway to report the service's route as it is now; a
    /// gateway that has not is a retryable failure naming why. Istio: nothing to wait for.
    pub async fn wait_route_programmed(
        &self,
        service: &str,
        deadline: std::time::Instant,
    ) -> Result<(), Failure> {
        if !matches!(self.target.canary_routing.as_str(), "gateway" | "") {
            return Ok(());
        }
        loop {
            let Some(why) = self.route_lag(service).await? else {
                return Ok(());
            };
            if std::time::Instant::now() >= deadline {
                return Err(Failure::Unavailable(format!(
                    "the gateway has not taken the route yet: {why}"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The canary weight a service's route holds; None when it has no route.
    pub async fn current_weight(&self, service: &str) -> Result<Option<u32>, Failure> {
        let w = ServiceWeight {
            service: service.to_owned(),
            ..Default::default()
        };
        let probe = self.routes().route_doc(&w)?;
        let (ar, name) = api_resource(&probe)?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, &ar);
        let Some(obj) = api
            .get_opt(&name)
            .await
            .map_err(|e| kube_failure(e, &format!("read {} {name}", ar.kind)))?
        else {
            return Ok(None);
        };
        let spec = obj.data.get("spec").cloned().unwrap_or_default();
        let backends = if ar.kind == "VirtualService" {
            istio::weighted_backends(&spec)
        } else {
            gateway::weighted_backends(&spec)
        };
        Ok(Some(
            backends
                .into_iter()
                .find(|(t, _)| t.starts_with(&format!("{service}-preview")))
                .and_then(|(_, w)| w)
                .map_or(0, |w| u32::try_from(w).unwrap_or(u32::MAX)),
        ))
    }

    /// What the router holds for a service, read back from the API server.
    pub async fn read_weight(&self, w: &ServiceWeight) -> Result<ServiceWeight, Failure> {
        let probe = self.routes().route_doc(w)?;
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
