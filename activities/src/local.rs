//! The local platform: the `cutover-platform` process's admin API.

use crate::error::Failure;
use proto::{
    ColorRequest, DeployRequest, MetricsSnapshot, PreflightResult, SeriesCounters, ServiceWeight,
    SwitchRequest, SwitchResult, WeightsRequest, WeightsResult,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use wire::api::{
    ApiError, Assignment, InstancesSpec, PlatformState, Stats, SwitchRequest as ApiSwitch,
    SwitchResponse, WeightsRequest as ApiWeights,
};
use workflows::release::Colour;

pub struct LocalPlatform {
    base: String,
    http: reqwest::Client,
}

impl LocalPlatform {
    pub fn new(admin_url: &str, http: reqwest::Client) -> Result<Self, Failure> {
        if !(admin_url.starts_with("http://") || admin_url.starts_with("https://")) {
            return Err(Failure::InvalidInput(format!(
                "local platform admin_url {admin_url:?} is not an http(s) URL"
            )));
        }
        Ok(Self {
            base: admin_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, Failure> {
        let resp = req.send().await.map_err(|e| {
            Failure::Unavailable(format!(
                "local platform at {} unreachable ({what}): {e}",
                self.base
            ))
        })?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .json()
                .await
                .map_err(|e| Failure::Unavailable(format!("bad answer to {what}: {e}")));
        }
        let err: ApiError = resp.json().await.unwrap_or(ApiError {
            error: format!("HTTP {status}"),
            kind: "internal".into(),
        });
        let msg = format!("{what}: {}", err.error);
        Err(match err.kind.as_str() {
            "conflict" => Failure::Conflict(msg),
            "bad_request" | "not_found" => Failure::InvalidInput(msg),
            _ => Failure::Unavailable(msg),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.call(self.http.get(format!("{}{path}", self.base)), path)
            .await
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        self.call(
            self.http
                .request(method, format!("{}{path}", self.base))
                .json(body),
            path,
        )
        .await
    }

    pub async fn state(&self) -> Result<PlatformState, Failure> {
        self.get("/v1/state").await
    }

    pub async fn read_active(&self, services: &[String]) -> Result<PreflightResult, Failure> {
        let state = self.state().await?;
        let mut colours = BTreeMap::new();
        let mut versions = BTreeMap::new();
        for name in services {
            let svc = state.services.get(name).ok_or_else(|| {
                Failure::InvalidInput(format!(
                    "service {name:?} is unknown to the local platform at {} (it runs: {})",
                    self.base,
                    state
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let active = svc.active_color().ok_or_else(|| {
                Failure::Conflict(format!(
                    "{name} splits traffic {:?}: finish or roll back the running shift first",
                    svc.weights
                ))
            })?;
            colours.insert(name.clone(), active.to_owned());
            versions.insert(
                name.clone(),
                svc.colors
                    .get(active)
                    .map(|c| c.version.clone())
                    .unwrap_or_default(),
            );
        }
        let mut distinct: Vec<&String> = colours.values().collect();
        distinct.dedup();
        distinct.sort();
        distinct.dedup();
        let [active] = distinct.as_slice() else {
            return Err(Failure::Conflict(format!(
                "services are not on one colour ({colours:?}): run `cutover rollback` to reunite them"
            )));
        };
        let active = (*active).clone();
        Ok(PreflightResult {
            target_color: Colour::parse(&active)
                .map_or(Colour::Green, Colour::other)
                .as_str()
                .to_owned(),
            active_color: active,
            active_versions: versions,
        })
    }

    pub async fn preflight(&self, req: &DeployRequest) -> Result<PreflightResult, Failure> {
        let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
        self.read_active(&names).await
    }

    pub async fn start_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        let specs: Vec<InstancesSpec> = req
            .services
            .iter()
            .map(|s| InstancesSpec {
                service: s.name.clone(),
                color: req.color.clone(),
                version: s.version.clone(),
                replicas: s.replicas,
            })
            .collect();
        let _: PlatformState = self
            .send(reqwest::Method::PUT, "/v1/instances", &specs)
            .await?;
        Ok(())
    }

    pub async fn scale_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        let state = self.state().await?;
        let mut specs = Vec::new();
        for s in &req.services {
            let replicas = if req.stop {
                0
            } else if req.warm_size {
                s.warm_replicas
            } else {
                s.replicas
            };
            let version = state
                .services
                .get(&s.name)
                .and_then(|svc| svc.colors.get(&req.color))
                .map(|c| c.version.clone())
                .unwrap_or_default();
            if version.is_empty() {
                if replicas == 0 {
                    continue;
                }
                return Err(Failure::NoPreviousColor(format!(
                    "{} has never run on {}: nothing to scale",
                    s.name, req.color
                )));
            }
            specs.push(InstancesSpec {
                service: s.name.clone(),
                color: req.color.clone(),
                version,
                replicas,
            });
        }
        let _: PlatformState = self
            .send(reqwest::Method::PUT, "/v1/instances", &specs)
            .await?;
        Ok(())
    }

    pub async fn not_ready(&self, req: &ColorRequest) -> Result<Vec<String>, Failure> {
        let state = self.state().await?;
        let mut waiting = Vec::new();
        for s in &req.services {
            let c = state
                .services
                .get(&s.name)
                .and_then(|svc| svc.colors.get(&req.color))
                .cloned()
                .unwrap_or_default();
            if c.replicas == 0 || c.ready < c.replicas {
                let restarts: u32 = c.instances.iter().map(|i| i.restarts).sum();
                let mut line = format!(
                    "{} {} {}: {}/{} ready",
                    s.name, req.color, c.version, c.ready, c.replicas
                );
                if restarts > 0 {
                    line.push_str(&format!(", {restarts} restarts (crashing)"));
                }
                waiting.push(line);
            }
        }
        Ok(waiting)
    }

    pub async fn switch(&self, req: &SwitchRequest) -> Result<SwitchResult, Failure> {
        let body = ApiSwitch {
            request_id: req.request_id.clone(),
            atomic: req.atomic,
            assignments: req
                .services
                .iter()
                .map(|s| Assignment {
                    service: s.clone(),
                    color: req.color.clone(),
                })
                .collect(),
        };
        let r: SwitchResponse = self
            .send(reqwest::Method::POST, "/v1/switch", &body)
            .await?;
        Ok(SwitchResult {
            changed: r.changed,
            switch_ms: r.switch_us as f64 / 1000.0,
            previous: r.previous,
            replayed: r.replayed,
        })
    }

    pub async fn snapshot(
        &self,
        color: &str,
        services: &[String],
    ) -> Result<MetricsSnapshot, Failure> {
        let stats: Stats = self.get("/v1/stats").await?;
        let mut snap = MetricsSnapshot {
            buckets: stats.buckets.clone(),
            services: BTreeMap::new(),
        };
        for name in services {
            let s = stats
                .series
                .get(name)
                .and_then(|by_color| by_color.get(color))
                .cloned()
                .unwrap_or_else(|| wire::api::SeriesStats {
                    bucket_counts: vec![0; stats.buckets.len()],
                    ..Default::default()
                });
            snap.services.insert(
                name.clone(),
                SeriesCounters {
                    requests: s.requests,
                    errors: s.errors,
                    bucket_counts: s.bucket_counts,
                },
            );
        }
        Ok(snap)
    }

    pub async fn verify(&self, color: &str, services: &[String]) -> Result<(), Failure> {
        let state = self.state().await?;
        let mut wrong = Vec::new();
        for name in services {
            let svc = state.services.get(name).cloned().unwrap_or_default();
            let ready = svc.colors.get(color).map_or(0, |c| c.ready);
            if svc.active_color() != Some(color) || ready == 0 {
                wrong.push(format!(
                    "{name} (weights {:?}, {ready} ready on {color})",
                    svc.weights
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(Failure::VerifyFailed(format!(
                "not all traffic is on {color}: {}",
                wrong.join("; ")
            )))
        }
    }

    pub async fn endpoints(&self, service: &str, color: &str) -> Result<Vec<String>, Failure> {
        let state = self.state().await?;
        Ok(state
            .services
            .get(service)
            .and_then(|s| s.colors.get(color))
            .map(|c| {
                c.instances
                    .iter()
                    .filter(|i| i.ready)
                    .map(|i| format!("http://{}", i.addr))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Canary weights for every named service in one route-table swap, read back after.
    pub async fn set_weights(&self, req: &WeightsRequest) -> Result<WeightsResult, Failure> {
        let mut body = ApiWeights {
            request_id: req.request_id.clone(),
            weights: BTreeMap::new(),
        };
        for w in &req.weights {
            if w.canary_percent > 100 {
                return Err(Failure::InvalidInput(format!(
                    "{}: canary weight {}% is more than 100%",
                    w.service, w.canary_percent
                )));
            }
            let mut m = BTreeMap::new();
            m.insert(w.canary_color.clone(), w.canary_percent);
            *m.entry(w.stable_color.clone()).or_insert(0) += 100 - w.canary_percent;
            body.weights.insert(w.service.clone(), m);
        }
        let _: SwitchResponse = self
            .send(reqwest::Method::PUT, "/v1/weights", &body)
            .await?;
        let state = self.state().await?;
        let applied = req
            .weights
            .iter()
            .map(|w| ServiceWeight {
                canary_percent: state
                    .services
                    .get(&w.service)
                    .and_then(|s| s.weights.get(&w.canary_color).copied())
                    .unwrap_or(0),
                ..w.clone()
            })
            .collect();
        Ok(WeightsResult { applied })
    }
}
