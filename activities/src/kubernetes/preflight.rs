//! Preflight: everything checked before a deployment changes anything. The worker's
//! permissions (SelfSubjectAccessReview), the Secrets the release reads, the live colour, and a
//! server-side dry run of every object.

use super::{KubePlatform, kube_failure, other_color, render_service};
use crate::error::Failure;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use proto::{DeployRequest, PreflightResult};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use workflows::release::Colour;

/// A Secret (and key, when one is named) a rendered Deployment reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRef {
    pub secret: String,
    pub key: Option<String>,
    pub optional: bool,
    pub used_by: String,
}

/// Every Secret reference of the pod templates in `docs`: env `secretKeyRef`, `envFrom`
/// `secretRef`, and `secret` volumes (with their items' keys).
pub fn secret_refs(service: &str, docs: &[Value]) -> Vec<SecretRef> {
    let mut refs = Vec::new();
    for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let spec = &d["spec"]["template"]["spec"];
        let containers = spec["containers"]
            .as_array()
            .into_iter()
            .chain(spec["initContainers"].as_array())
            .flatten();
        for c in containers {
            let cname = c["name"].as_str().unwrap_or_default();
            for e in c["env"].as_array().into_iter().flatten() {
                let r = &e["valueFrom"]["secretKeyRef"];
                if let Some(name) = r["name"].as_str() {
                    refs.push(SecretRef {
                        secret: name.to_owned(),
                        key: r["key"].as_str().map(str::to_owned),
                        optional: r["optional"].as_bool().unwrap_or(false),
                        used_by: format!(
                            "{service} container {cname} env {}",
                            e["name"].as_str().unwrap_or_default()
                        ),
                    });
                }
            }
            for e in c["envFrom"].as_array().into_iter().flatten() {
                if let Some(name) = e["secretRef"]["name"].as_str() {
                    refs.push(SecretRef {
                        secret: name.to_owned(),
                        key: None,
                        optional: e["secretRef"]["optional"].as_bool().unwrap_or(false),
                        used_by: format!("{service} container {cname} envFrom"),
                    });
                }
            }
        }
        for v in spec["volumes"].as_array().into_iter().flatten() {
            let s = &v["secret"];
            let Some(name) = s["secretName"].as_str() else {
                continue;
            };
            let optional = s["optional"].as_bool().unwrap_or(false);
            let used_by = format!(
                "{service} volume {}",
                v["name"].as_str().unwrap_or_default()
            );
            let items: Vec<&Value> = s["items"].as_array().into_iter().flatten().collect();
            if items.is_empty() {
                refs.push(SecretRef {
                    secret: name.to_owned(),
                    key: None,
                    optional,
                    used_by: used_by.clone(),
                });
            }
            for i in items {
                refs.push(SecretRef {
                    secret: name.to_owned(),
                    key: i["key"].as_str().map(str::to_owned),
                    optional,
                    used_by: used_by.clone(),
                });
            }
        }
    }
    refs
}

// ---------------------------------------------------------------------------------------------
// Permissions

/// One permission the deployment uses: (API group, resource, subresource, verb).
pub type Permission = (&'static str, &'static str, &'static str, &'static str);

/// Every verb a deployment on Kubernetes uses, for preflight and for `k8s/worker/rbac.yaml`
/// (a test keeps the two equal).
pub fn required_permissions(canary_routing: &str) -> Vec<Permission> {
    let mut p = vec![
        // Server-side apply of an object that does not exist yet needs `create` too.
        ("apps", "deployments", "", "get"),
        ("apps", "deployments", "", "create"),
        ("apps", "deployments", "", "patch"),
        ("apps", "deployments", "scale", "patch"),
        ("", "services", "", "get"),
        ("", "services", "", "patch"),
        ("", "pods", "", "list"),
        ("", "secrets", "", "get"),
        ("policy", "poddisruptionbudgets", "", "create"),
        ("policy", "poddisruptionbudgets", "", "patch"),
        ("networking.k8s.io", "ingresses", "", "create"),
        ("networking.k8s.io", "ingresses", "", "patch"),
        ("discovery.k8s.io", "endpointslices", "", "list"),
    ];
    match canary_routing {
        "istio" => {
            p.push(("networking.istio.io", "virtualservices", "", "get"));
            p.push(("networking.istio.io", "virtualservices", "", "create"));
            p.push(("networking.istio.io", "virtualservices", "", "patch"));
        }
        "gateway" => {
            p.push(("gateway.networking.k8s.io", "httproutes", "", "get"));
            p.push(("gateway.networking.k8s.io", "httproutes", "", "create"));
            p.push(("gateway.networking.k8s.io", "httproutes", "", "patch"));
        }
        _ => {}
    }
    p
}

pub fn describe_permission((group, resource, sub, verb): &Permission) -> String {
    let res = if sub.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{sub}")
    };
    if group.is_empty() {
        format!("{verb} {res}")
    } else {
        format!("{verb} {res}.{group}")
    }
}

impl KubePlatform {
    /// Permissions the deployment needs that the worker's identity lacks. Reading Secrets is
    /// granted per Secret (`resourceNames` in k8s/worker/rbac.yaml): it is asked for each
    /// Secret the release references ([`Self::missing_secret_reads`]), not here.
    pub async fn missing_permissions(&self) -> Result<Vec<String>, Failure> {
        let mut missing = Vec::new();
        for p in required_permissions(&self.target.canary_routing) {
            let (group, resource, sub, verb) = p;
            if (group, resource) == ("", "secrets") {
                continue;
            }
            if !self.allowed(group, resource, sub, verb, None).await? {
                missing.push(describe_permission(&p));
            }
        }
        Ok(missing)
    }

    /// The referenced Secrets the worker may not read (`get secrets/<name>`).
    pub async fn missing_secret_reads(&self, refs: &[SecretRef]) -> Result<Vec<String>, Failure> {
        let names: BTreeSet<&str> = refs.iter().map(|r| r.secret.as_str()).collect();
        let mut missing = Vec::new();
        for name in names {
            if !self.allowed("", "secrets", "", "get", Some(name)).await? {
                missing.push(format!("get secrets/{name}"));
            }
        }
        Ok(missing)
    }

    async fn allowed(
        &self,
        group: &str,
        resource: &str,
        sub: &str,
        verb: &str,
        name: Option<&str>,
    ) -> Result<bool, Failure> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(self.ns.clone()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource: (!sub.is_empty()).then(|| sub.to_owned()),
                    verb: Some(verb.to_owned()),
                    name: name.map(str::to_owned),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| kube_failure(e, "SelfSubjectAccessReview"))?;
        Ok(r.status.is_some_and(|s| s.allowed))
    }

    /// Each referenced Secret and key exists; names what is missing (never a value).
    pub async fn check_secrets(&self, refs: &[SecretRef]) -> Result<(), Failure> {
        let api: Api<Secret> = self.api();
        let mut problems = BTreeSet::new();
        let mut cache: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        for r in refs.iter().filter(|r| !r.optional) {
            if !cache.contains_key(&r.secret) {
                let keys = api
                    .get_opt(&r.secret)
                    .await
                    .map_err(|e| kube_failure(e, &format!("read Secret {}", r.secret)))?
                    .map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_keys()
                            .chain(s.string_data.unwrap_or_default().into_keys())
                            .collect::<BTreeSet<String>>()
                    });
                cache.insert(r.secret.clone(), keys);
            }
            match (&cache[&r.secret], &r.key) {
                (None, _) => {
                    problems.insert(format!(
                        "Secret {:?} does not exist in namespace {} (used by {})",
                        r.secret, self.ns, r.used_by
                    ));
                }
                (Some(keys), Some(k)) if !keys.contains(k) => {
                    problems.insert(format!(
                        "Secret {:?} has no key {k:?} (used by {}; its keys: {})",
                        r.secret,
                        r.used_by,
                        keys.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Failure::InvalidInput(format!(
                "the release references missing secrets: {} (create them with `cutover secrets sync`)",
                problems.into_iter().collect::<Vec<_>>().join("; ")
            )))
        }
    }

    pub async fn read_active(&self, services: &[String]) -> Result<PreflightResult, Failure> {
        let selectors = self.active_selectors(services).await?;
        let missing: Vec<&String> = selectors
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(s, _)| s)
            .collect();
        if !missing.is_empty() {
            return Err(Failure::InvalidInput(format!(
                "no active Service for {} in namespace {}: bootstrap the environment first \
                 (`cutover render ENV --revision REV | kubectl apply --server-side -f -`)",
                missing
                    .iter()
                    .map(|s| format!("{s}-active"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.ns
            )));
        }
        let colours: BTreeMap<String, String> = selectors
            .into_iter()
            .map(|(s, c)| (s, c.unwrap_or_default()))
            .collect();
        let distinct: BTreeSet<&String> = colours.values().collect();
        let [active] = distinct.into_iter().collect::<Vec<_>>()[..] else {
            return Err(Failure::Conflict(format!(
                "services are not on one colour ({colours:?}): run `cutover rollback` to reunite them"
            )));
        };
        let active = active.clone();
        if Colour::parse(&active).is_none() {
            return Err(Failure::Conflict(format!(
                "active Services select version {active:?}: expected blue or green"
            )));
        }
        let mut versions = BTreeMap::new();
        for s in services {
            let v = self
                .deployment(&format!("{s}-{active}"))
                .await?
                .and_then(|d| d.metadata.labels)
                .and_then(|l| l.get("app.kubernetes.io/version").cloned())
                .unwrap_or_default();
            versions.insert(s.clone(), v);
        }
        Ok(PreflightResult {
            target_color: other_color(&active).to_owned(),
            active_color: active,
            active_versions: versions,
        })
    }

    /// Permissions, the live colour, the release's Secrets, and a server-side dry run of every
    /// object the release will apply: all before anything changes.
    pub async fn preflight(&self, req: &DeployRequest) -> Result<PreflightResult, Failure> {
        let missing = self.missing_permissions().await?;
        if !missing.is_empty() {
            return Err(Failure::Forbidden(format!(
                "the worker lacks permissions in namespace {}: {} (grant them as in k8s/worker/rbac.yaml)",
                self.ns,
                missing.join(", ")
            )));
        }
        let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
        let live = self.read_active(&names).await?;
        let deadline = req.timings.map(|t| t.ready_timeout_secs).unwrap_or(600);
        let mut docs = Vec::new();
        let mut refs = Vec::new();
        for plan in &req.services {
            let d = render_service(plan, &self.ns, &live.target_color, plan.replicas, deadline)?;
            refs.extend(secret_refs(&plan.name, &d));
            docs.extend(d);
        }
        let missing = self.missing_secret_reads(&refs).await?;
        if !missing.is_empty() {
            return Err(Failure::Forbidden(format!(
                "the worker lacks permissions in namespace {}: {} (grant them as in k8s/worker/rbac.yaml: resourceNames)",
                self.ns,
                missing.join(", ")
            )));
        }
        self.check_secrets(&refs).await?;
        for d in &docs {
            self.apply(d, true).await?;
        }
        Ok(live)
    }
}
