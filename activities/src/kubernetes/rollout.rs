//! Rollout: a colour's Deployments started, scaled and judged ready, the active Services
//! switched to it and verified, and its health watched after the switch.

use super::{
    FAULT_ABORT_AFTER_SWITCHED, FIELD_MANAGER, KubePlatform, kube_failure, other_color,
    render_ingress, render_service, render_services,
};
use crate::error::Failure;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use proto::{ColorRequest, SwitchRequest, SwitchResult};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a promoted canary's routes stay on the preview Services after the active Services'
/// EndpointSlices serve only the new colour: kube-proxy's default minimum sync period (1 s) and
/// the time one sync takes.
const DATA_PLANE_SETTLE: Duration = Duration::from_millis(1500);

impl KubePlatform {
    /// Applies each service's Deployment and PDB for the colour at full size, and points the
    /// preview Services at it (the active ones keep their colour).
    pub async fn start_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
        let active = self.active_selectors(&names).await?;
        if let Some((s, _)) = active
            .iter()
            .find(|(_, c)| c.as_deref() == Some(req.color.as_str()))
        {
            return Err(Failure::Conflict(format!(
                "{s} is live on {}: refusing to replace the live colour",
                req.color
            )));
        }
        for plan in &req.services {
            let docs = render_service(plan, &self.ns, &req.color, plan.replicas, req.timeout_secs)?;
            for d in &docs {
                self.apply(d, false).await?;
            }
            let live = active
                .get(&plan.name)
                .cloned()
                .flatten()
                .unwrap_or_else(|| other_color(&req.color).to_owned());
            for d in render_services(&plan.name, &self.ns, &live, &req.color)? {
                self.apply(&d, false).await?;
            }
        }
        if !self.target.ingress_host.is_empty() {
            for d in render_ingress(&self.ns, &self.target.ingress_host)? {
                self.apply(&d, false).await?;
            }
        }
        self.ensure_routes(&names).await
    }

    pub async fn scale_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        let api: Api<Deployment> = self.api();
        // Never stop a colour an active Service selects: whatever path asked for it (e.g. a
        // promotion that failed after the switch and undoes by weights), that would leave the
        // service with no pods behind its live traffic.
        if req.stop {
            let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
            let live: Vec<String> = self
                .active_selectors(&names)
                .await?
                .into_iter()
                .filter(|(_, c)| c.as_deref() == Some(req.color.as_str()))
                .map(|(s, _)| s)
                .collect();
            if !live.is_empty() {
                return Err(Failure::Conflict(format!(
                    "{} live on {}: refusing to stop the live colour",
                    live.join(", "),
                    req.color
                )));
            }
        }
        for s in &req.services {
            let replicas = if req.stop {
                0
            } else if req.warm_size {
                s.warm_replicas
            } else {
                s.replicas
            };
            let name = format!("{}-{}", s.name, req.color);
            if self.deployment(&name).await?.is_none() {
                if replicas == 0 {
                    continue;
                }
                return Err(Failure::NoPreviousColor(format!(
                    "{} has never run on {}: nothing to scale",
                    s.name, req.color
                )));
            }
            let pp = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            };
            api.patch_scale(
                &name,
                &pp,
                &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
            )
            .await
            .map_err(|e| kube_failure(e, &format!("scale Deployment {name}")))?;
        }
        Ok(())
    }

    /// Why pods of a service's colour are not ready (first few), from their conditions and
    /// container states.
    async fn pod_problems(&self, service: &str, color: &str) -> Result<Vec<String>, Failure> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("app={service},version={color}")))
            .await
            .map_err(|e| kube_failure(e, &format!("list pods of {service}-{color}")))?;
        let mut out = Vec::new();
        for p in pods.items {
            let name = p.metadata.name.unwrap_or_default();
            let Some(st) = p.status else { continue };
            let ready = st.conditions.iter().flatten().find(|c| c.type_ == "Ready");
            if ready.is_some_and(|c| c.status == "True") {
                continue;
            }
            let mut why: Vec<String> = Vec::new();
            why.push(format!("phase {}", st.phase.unwrap_or_default()));
            if let Some(c) = ready {
                why.push(format!(
                    "Ready={}{}",
                    c.status,
                    c.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
            }
            for cs in st.container_statuses.iter().flatten() {
                if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                    why.push(format!(
                        "container {} waiting: {}",
                        cs.name,
                        w.reason.clone().unwrap_or_default()
                    ));
                }
                if cs.restart_count > 0 {
                    why.push(format!("{} restarts", cs.restart_count));
                }
            }
            out.push(format!("pod {name}: {}", why.join(", ")));
            if out.len() == 2 {
                break;
            }
        }
        Ok(out)
    }

    /// One line per service whose colour is not rolled out yet, judged as `kubectl rollout
    /// status` does. A Deployment past its progress deadline is a failure, not a wait.
    pub async fn not_ready(&self, req: &ColorRequest) -> Result<Vec<String>, Failure> {
        let mut waiting = Vec::new();
        for s in &req.services {
            let name = format!("{}-{}", s.name, req.color);
            let Some(d) = self.deployment(&name).await? else {
                waiting.push(format!("{name}: Deployment not created yet"));
                continue;
            };
            match rollout_status(&d) {
                Rollout::Done => {}
                Rollout::Waiting(why) => {
                    let pods = self.pod_problems(&s.name, &req.color).await?;
                    let mut line = format!("{} {}: {why}", s.name, req.color);
                    if !pods.is_empty() {
                        line.push_str(&format!(" [{}]", pods.join("; ")));
                    }
                    waiting.push(line);
                }
                Rollout::Failed(why) => {
                    let pods = self.pod_problems(&s.name, &req.color).await?;
                    return Err(Failure::NotReady(format!(
                        "{} {} failed to roll out: {why}{}",
                        s.name,
                        req.color,
                        if pods.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", pods.join("; "))
                        }
                    )));
                }
            }
        }
        Ok(waiting)
    }

    /// Moves each named service's active Service to the colour, in the given order. Services
    /// already there are left alone, so a retry after a crash finishes the rest. Then, for a
    /// promoted canary (its route still sends a share to the preview Service): once a service's
    /// active Service serves only the new colour, the route goes back to 100 % on the active
    /// Service, as the gateway reports it. The preview Services are never moved here: each
    /// selects the colour its release started (start_color), so no share of a route can follow a
    /// colour about to retire, and a retry after the weights went back has nothing left to do.
    pub async fn switch(&self, req: &SwitchRequest) -> Result<SwitchResult, Failure> {
        let before = self.active_selectors(&req.services).await?;
        let abort_after: Option<usize> = std::env::var(FAULT_ABORT_AFTER_SWITCHED)
            .ok()
            .and_then(|v| v.parse().ok());
        let mut changed = Vec::new();
        let mut previous = BTreeMap::new();
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        for s in &req.services {
            let was = before.get(s).cloned().flatten().unwrap_or_default();
            previous.insert(s.clone(), was.clone());
            if was == req.color {
                continue;
            }
            // [active, preview]: only the active one moves.
            let docs = render_services(s, &self.ns, &req.color, other_color(&req.color))?;
            let t = Instant::now();
            self.apply(&docs[0], false).await?;
            first.get_or_insert(t);
            last = Instant::now();
            changed.push(s.clone());
            if abort_after == Some(changed.len()) {
                tracing::error!(
                    switched = ?changed,
                    "fault hook {FAULT_ABORT_AFTER_SWITCHED}: aborting mid-switch"
                );
                std::process::abort();
            }
        }
        let switch_ms = first.map_or(0.0, |f| (last - f).as_secs_f64() * 1000.0);
        // A promoted canary: the routes still sending a share to the preview Services go back to
        // the active ones once those serve only the new colour. Bounded inside the 5 s of a
        // traffic move; past it the attempt fails retryably and the retry finds the Services
        // moved and finishes this part.
        let mut reset = Vec::new();
        for s in &req.services {
            if self.current_weight(s).await?.is_some_and(|w| w > 0) {
                reset.push(s.clone());
            }
        }
        if !reset.is_empty() {
            self.wait_serving_only(&reset, &req.color).await?;
            // The API server's EndpointSlices are not yet the data plane: kube-proxy programs a
            // change at most once per sync period (`--iptables-min-sync-period`, 1 s by
            // default), so a route moved back at once could still reach the old colour through
            // the active Service for that long.
            tokio::time::sleep(DATA_PLANE_SETTLE).await;
            let weights = reset
                .iter()
                .map(|s| proto::ServiceWeight {
                    service: s.clone(),
                    canary_percent: 0,
                    ..Default::default()
                })
                .collect();
            self.set_weights(&proto::WeightsRequest {
                platform: None,
                weights,
                ..Default::default()
            })
            .await?;
        }
        Ok(SwitchResult {
            replayed: changed.is_empty(),
            changed,
            switch_ms,
            previous,
        })
    }

    /// Waits (up to 1.2 s) until each service's `<service>-active` has ready endpoints of
    /// `color` and none of the other colour (EndpointSlices follow a selector change within
    /// moments); a retryable failure past that.
    async fn wait_serving_only(&self, services: &[String], color: &str) -> Result<(), Failure> {
        let deadline = Instant::now() + Duration::from_millis(1200);
        loop {
            let mut waiting = Vec::new();
            for service in services {
                let active = format!("{service}-active");
                let new = self.ready_endpoints(&active, color).await?;
                let old = self.ready_endpoints(&active, other_color(color)).await?;
                if new == 0 || old > 0 {
                    waiting.push(format!(
                        "{active} has {old} ready {} endpoint(s) and {new} {color}",
                        other_color(color)
                    ));
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure::Unavailable(format!(
                    "the routes stay on the canary until the active Services serve only {color}: {}",
                    waiting.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every named active Service selects the colour and has ready endpoints (EndpointSlices
    /// follow a selector change within moments: wait for them briefly), and, with live routes,
    /// the gateway has accepted each service's route as it is now (status read back).
    pub async fn verify(&self, color: &str, services: &[String]) -> Result<(), Failure> {
        // Inside the 15 s the workflow gives the call.
        let deadline = Instant::now() + Duration::from_secs(12);
        loop {
            let selectors = self.active_selectors(services).await?;
            let mut wrong = Vec::new();
            for s in services {
                let sel = selectors.get(s).cloned().flatten().unwrap_or_default();
                if sel != color {
                    wrong.push(format!("{s}-active selects {sel:?}"));
                    continue;
                }
                let ready = self.ready_endpoints(&format!("{s}-active"), color).await?;
                if ready == 0 {
                    wrong.push(format!("{s}-active has no ready {color} endpoint"));
                    continue;
                }
                if let Some(why) = self.route_not_programmed(s).await? {
                    wrong.push(why);
                }
            }
            if wrong.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure::VerifyFailed(format!(
                    "not all traffic is on {color}: {}",
                    wrong.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Ready endpoints of a Service whose pods carry `version: color`.
    pub async fn ready_endpoints(&self, service: &str, color: &str) -> Result<usize, Failure> {
        let slices = self
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
            .await
            .map_err(|e| kube_failure(e, &format!("list EndpointSlices of {service}")))?;
        let prefix = format!("{}-{color}-", service.trim_end_matches("-active"));
        Ok(slices
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .filter(|e| {
                e.target_ref
                    .as_ref()
                    .and_then(|t| t.name.as_deref())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .count())
    }

    /// Health of the live colour for the post-switch window: every Deployment fully available
    /// and no pod restarting. (Metric analysis on Kubernetes comes from Prometheus.)
    pub async fn health(
        &self,
        color: &str,
        services: &[String],
    ) -> Result<Vec<(String, bool, String)>, Failure> {
        let mut out = Vec::new();
        for s in services {
            let name = format!("{s}-{color}");
            let Some(d) = self.deployment(&name).await? else {
                out.push((s.clone(), false, format!("Deployment {name} is gone")));
                continue;
            };
            let want = d.spec.replicas.unwrap_or(1);
            let available = d
                .status
                .as_ref()
                .and_then(|st| st.available_replicas)
                .unwrap_or(0);
            let problems = self.pod_problems(s, color).await?;
            let ok = available >= want && problems.is_empty();
            let mut detail = format!("{available}/{want} available");
            if !problems.is_empty() {
                detail.push_str(&format!(" [{}]", problems.join("; ")));
            }
            out.push((s.clone(), ok, detail));
        }
        Ok(out)
    }
}

/// Rollout state of a Deployment, as `kubectl rollout status` reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Rollout {
    Done,
    Waiting(String),
    Failed(String),
}

pub fn rollout_status(d: &Deployment) -> Rollout {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(st) = &d.status else {
        return Rollout::Waiting("waiting for the deployment to be observed".into());
    };
    if generation > st.observed_generation.unwrap_or(0) {
        return Rollout::Waiting("waiting for the deployment spec update to be observed".into());
    }
    if let Some(c) = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Rollout::Failed(format!(
            "progress deadline exceeded: {}",
            c.message.clone().unwrap_or_default()
        ));
    }
    let want = d.spec.replicas.unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    let replicas = st.replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    if updated < want {
        return Rollout::Waiting(format!(
            "{updated} out of {want} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return Rollout::Waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Rollout::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Rollout::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_status_reads_like_kubectl() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "x", "generation": 2 },
            "spec": { "replicas": 2, "selector": {}, "template": {} },
            "status": { "observedGeneration": 1 }
        }))
        .unwrap();
        assert!(matches!(rollout_status(&d), Rollout::Waiting(w) if w.contains("observed")));
        d.status = serde_json::from_value(json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1
        }))
        .unwrap();
        assert!(matches!(rollout_status(&d), Rollout::Waiting(w) if w.contains("1 of 2 updated")));
        d.status.as_mut().unwrap().available_replicas = Some(2);
        assert_eq!(rollout_status(&d), Rollout::Done);
        d.status.as_mut().unwrap().conditions = serde_json::from_value(json!([{
            "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"x\" has timed out progressing."
        }]))
        .unwrap();
        assert!(matches!(rollout_status(&d), Rollout::Failed(_)));
    }
}
