//! The Kubernetes platform (kube-rs). Every write is a server-side apply with the field manager
//! [`FIELD_MANAGER`], so repeating it is harmless and the API server records who owns what.
//!
//! - Per service and colour one Deployment (and PodDisruptionBudget) rendered from the release's
//!   template of that service (`k8s/jts/<service>.yaml`, carried in the request).
//! - `<service>-active` and `<service>-preview` Services select pods by `app` and `version`; the
//!   switch changes the active one's `version`. The cluster is the truth: the live colour is read
//!   back from the active Services after any crash.
//! - Readiness is judged as `kubectl rollout status` judges it.
//! - Canary weights go through a Gateway API HTTPRoute or an Istio VirtualService per service,
//!   between the active (stable) and the preview (canary) Service, and are read back.

use crate::error::Failure;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use proto::{
    ColorRequest, DeployRequest, PlatformTarget, PreflightResult, ServicePlan, ServiceWeight,
    SwitchRequest, SwitchResult, WeightsRequest, WeightsResult,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The field manager of every server-side apply cutover makes.
pub const FIELD_MANAGER: &str = "cutover";
/// The `<service>-active` / `<service>-preview` Services (cutover's own mechanism, not the release's).
pub const SERVICES_TEMPLATE: &str = include_str!("../../k8s/jts/services.yaml");
/// The JTS ingress.
pub const INGRESS_TEMPLATE: &str = include_str!("../../k8s/jts/ingress.yaml");

/// Fault hook for tests, named as such: after this many services have been switched in one
/// switch call, the worker process aborts on the spot (as `kill -9` would stop it there).
pub const FAULT_ABORT_AFTER_SWITCHED: &str = "CUTOVER_FAULT_ABORT_AFTER_SWITCHED";

pub fn other_color(c: &str) -> &'static str {
    if c == "blue" { "green" } else { "blue" }
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// Fills `{{name}}` placeholders (not in comments) and parses the YAML documents. An unknown
/// placeholder, or YAML that does not parse after rendering, is refused naming `what`.
pub fn render(
    template: &str,
    what: &str,
    vars: &BTreeMap<&str, String>,
) -> Result<Vec<Value>, Failure> {
    let text = render_text(template, what, vars)?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| {
        Failure::InvalidInput(format!("{what}: not valid YAML after rendering: {e}"))
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The rendered text of a template (what `cutover render` prints).
pub fn render_text(
    template: &str,
    what: &str,
    vars: &BTreeMap<&str, String>,
) -> Result<String, Failure> {
    let mut out = String::with_capacity(template.len() + 256);
    for (n, line) in template.lines().enumerate() {
        // Comments stay as written (they document the placeholders).
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else {
                break;
            };
            let key = rest[start + 2..start + len].trim();
            out.push_str(&rest[..start]);
            match vars.get(key) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(Failure::InvalidInput(format!(
                        "{what}: line {}: unknown placeholder {{{{{key}}}}} (known: {})",
                        n + 1,
                        vars.keys().copied().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            rest = &rest[start + len + 2..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    Ok(out)
}

/// The placeholders of a service template for one colour.
pub fn service_vars(
    plan: &ServicePlan,
    namespace: &str,
    color: &str,
    replicas: u32,
    progress_deadline_secs: u64,
) -> BTreeMap<&'static str, String> {
    let r = plan.resources.clone().unwrap_or_default();
    let or = |v: String, d: &str| if v.is_empty() { d.to_owned() } else { v };
    BTreeMap::from([
        ("namespace", namespace.to_owned()),
        ("color", color.to_owned()),
        ("image", plan.image.clone()),
        ("version", plan.version.clone()),
        ("revision", plan.revision.clone()),
        ("replicas", replicas.to_string()),
        ("cpu_request", or(r.cpu_request, "100m")),
        ("cpu_limit", or(r.cpu_limit, "1")),
        ("memory_request", or(r.memory_request, "128Mi")),
        ("memory_limit", or(r.memory_limit, "256Mi")),
        (
            "progress_deadline_secs",
            progress_deadline_secs.max(10).to_string(),
        ),
    ])
}

/// The Deployment (and any PodDisruptionBudget) of one service and colour, checked: the
/// Deployment must be `<service>-<colour>` and its pods must carry the labels the Services select.
pub fn render_service(
    plan: &ServicePlan,
    namespace: &str,
    color: &str,
    replicas: u32,
    progress_deadline_secs: u64,
) -> Result<Vec<Value>, Failure> {
    let what = format!("template of {} (k8s/jts/{}.yaml)", plan.name, plan.name);
    if plan.manifest.trim().is_empty() {
        return Err(Failure::InvalidInput(format!(
            "{what}: the release carries no template for this service"
        )));
    }
    let vars = service_vars(plan, namespace, color, replicas, progress_deadline_secs);
    let mut docs = render(&plan.manifest, &what, &vars)?;
    let want = format!("{}-{color}", plan.name);
    let mut deployments = 0;
    for d in &mut docs {
        let kind = d["kind"].as_str().unwrap_or_default().to_owned();
        if !["Deployment", "PodDisruptionBudget"].contains(&kind.as_str()) {
            return Err(Failure::InvalidInput(format!(
                "{what}: kind {kind:?} is not allowed here (Deployment, PodDisruptionBudget)"
            )));
        }
        d["metadata"]["namespace"] = json!(namespace);
        if kind == "Deployment" {
            deployments += 1;
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            if name != want {
                return Err(Failure::InvalidInput(format!(
                    "{what}: the Deployment is named {name:?}; it must be {want:?}"
                )));
            }
            let labels = &d["spec"]["template"]["metadata"]["labels"];
            if labels["app"] != json!(plan.name) || labels["version"] != json!(color) {
                return Err(Failure::InvalidInput(format!(
                    "{what}: pod labels must include app: {} and version: {color} (the Services select them)",
                    plan.name
                )));
            }
        }
    }
    if deployments != 1 {
        return Err(Failure::InvalidInput(format!(
            "{what}: expected exactly one Deployment, found {deployments}"
        )));
    }
    Ok(docs)
}

/// The active and preview Services of one service.
pub fn render_services(
    service: &str,
    namespace: &str,
    active: &str,
    preview: &str,
) -> Result<Vec<Value>, Failure> {
    let vars = BTreeMap::from([
        ("namespace", namespace.to_owned()),
        ("service", service.to_owned()),
        ("active_color", active.to_owned()),
        ("preview_color", preview.to_owned()),
    ]);
    render(SERVICES_TEMPLATE, "k8s/jts/services.yaml", &vars)
}

pub fn render_ingress(namespace: &str, host: &str) -> Result<Vec<Value>, Failure> {
    let vars = BTreeMap::from([
        ("namespace", namespace.to_owned()),
        ("host", host.to_owned()),
    ]);
    render(INGRESS_TEMPLATE, "k8s/jts/ingress.yaml", &vars)
}

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

// ---------------------------------------------------------------------------------------------
// Errors

/// Maps a kube error to a failure: conflicts, throttling, server errors and timeouts are
/// retryable; forbidden, invalid and not-found are not.
pub fn kube_failure(e: kube::Error, what: &str) -> Failure {
    match &e {
        kube::Error::Api(s) => {
            let msg = format!("{what}: {} ({} {})", s.message, s.code, s.reason);
            match s.code {
                403 => Failure::Forbidden(msg),
                400 | 404 | 422 => Failure::InvalidInput(msg),
                // 409: written meanwhile by someone else; read again and retry.
                _ => Failure::Unavailable(msg),
            }
        }
        _ => Failure::Unavailable(format!("{what}: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The platform

pub struct KubePlatform {
    client: Client,
    ns: String,
    target: PlatformTarget,
}

/// A kube client for a kubeconfig context ("" = in-cluster when running in a pod, else the
/// current context of $KUBECONFIG / ~/.kube/config).
pub async fn client_for(context: &str) -> Result<Client, Failure> {
    let config = if context.is_empty() {
        kube::Config::infer()
            .await
            .map_err(|e| Failure::Unavailable(format!("no Kubernetes configuration: {e}")))?
    } else {
        let opts = kube::config::KubeConfigOptions {
            context: Some(context.to_owned()),
            ..Default::default()
        };
        kube::Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| Failure::InvalidInput(format!("kubeconfig context {context:?}: {e}")))?
    };
    Client::try_from(config).map_err(|e| Failure::Unavailable(format!("Kubernetes client: {e}")))
}

fn api_resource(doc: &Value) -> Result<(ApiResource, String), Failure> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let plural = match kind {
        "Deployment" => "deployments",
        "PodDisruptionBudget" => "poddisruptionbudgets",
        "Service" => "services",
        "Ingress" => "ingresses",
        "Secret" => "secrets",
        "HTTPRoute" => "httproutes",
        "VirtualService" => "virtualservices",
        other => {
            return Err(Failure::InvalidInput(format!(
                "cutover does not apply objects of kind {other:?} ({name})"
            )));
        }
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Ok((
        ApiResource::from_gvk_with_plural(&gvk, plural),
        name.to_owned(),
    ))
}

impl KubePlatform {
    pub fn new(client: Client, target: &PlatformTarget) -> Result<Self, Failure> {
        if target.namespace.is_empty() {
            return Err(Failure::InvalidInput(
                "a kubernetes platform needs a namespace".into(),
            ));
        }
        Ok(Self {
            client,
            ns: target.namespace.clone(),
            target: target.clone(),
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Server-side apply of one rendered object (or a server-side dry run of it).
    pub async fn apply(&self, doc: &Value, dry_run: bool) -> Result<(), Failure> {
        let (ar, name) = api_resource(doc)?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, &ar);
        let mut doc = doc.clone();
        doc["metadata"]["namespace"] = json!(self.ns);
        let mut pp = PatchParams::apply(FIELD_MANAGER).force();
        pp.dry_run = dry_run;
        api.patch(&name, &pp, &Patch::Apply(&doc))
            .await
            .map_err(|e| kube_failure(e, &format!("apply {} {name}", ar.kind)))?;
        Ok(())
    }

    /// Permissions the deployment needs that the worker's identity lacks.
    pub async fn missing_permissions(&self) -> Result<Vec<String>, Failure> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let mut missing = Vec::new();
        for p in required_permissions(&self.target.canary_routing) {
            let (group, resource, sub, verb) = p;
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(self.ns.clone()),
                        group: Some(group.to_owned()),
                        resource: Some(resource.to_owned()),
                        subresource: (!sub.is_empty()).then(|| sub.to_owned()),
                        verb: Some(verb.to_owned()),
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
            if !r.status.is_some_and(|s| s.allowed) {
                missing.push(describe_permission(&p));
            }
        }
        Ok(missing)
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

    /// The colour each service's active Service selects; None when it does not exist.
    async fn active_selectors(
        &self,
        services: &[String],
    ) -> Result<BTreeMap<String, Option<String>>, Failure> {
        let api: Api<Service> = self.api();
        let mut out = BTreeMap::new();
        for s in services {
            let name = format!("{s}-active");
            let svc = api
                .get_opt(&name)
                .await
                .map_err(|e| kube_failure(e, &format!("read Service {name}")))?;
            let colour = svc.map(|svc| {
                svc.spec
                    .and_then(|sp| sp.selector)
                    .and_then(|sel| sel.get("version").cloned())
                    .unwrap_or_default()
            });
            out.insert(s.clone(), colour);
        }
        Ok(out)
    }

    async fn deployment(&self, name: &str) -> Result<Option<Deployment>, Failure> {
        self.api::<Deployment>()
            .get_opt(name)
            .await
            .map_err(|e| kube_failure(e, &format!("read Deployment {name}")))
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
        if active != "blue" && active != "green" {
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
        self.check_secrets(&refs).await?;
        for d in &docs {
            self.apply(d, true).await?;
        }
        Ok(live)
    }

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
        Ok(())
    }

    pub async fn scale_color(&self, req: &ColorRequest) -> Result<(), Failure> {
        let api: Api<Deployment> = self.api();
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
    /// already there are left alone, so a retry after a crash finishes the rest.
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
            let docs = render_services(s, &self.ns, &req.color, other_color(&req.color))?;
            let t = Instant::now();
            for d in &docs {
                self.apply(d, false).await?;
            }
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
        Ok(SwitchResult {
            replayed: changed.is_empty(),
            changed,
            switch_ms,
            previous,
        })
    }

    /// Every named active Service selects the colour and has ready endpoints (EndpointSlices
    /// follow a selector change within moments: wait for them briefly).
    pub async fn verify(&self, color: &str, services: &[String]) -> Result<(), Failure> {
        let deadline = Instant::now() + Duration::from_secs(20);
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

    /// The preview URL of a service (where checks reach the colour being released).
    pub fn preview_url(&self, service: &str) -> String {
        let t = if self.target.preview_url.is_empty() {
            "http://{service}-preview.{namespace}.svc.cluster.local"
        } else {
            &self.target.preview_url
        };
        t.replace("{service}", service)
            .replace("{namespace}", &self.ns)
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
            "istio" => {
                let host = |suffix: &str| format!("{s}-{suffix}.{}.svc.cluster.local", self.ns);
                Ok(json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "VirtualService",
                    "metadata": { "name": s, "namespace": self.ns, "labels": labels },
                    "spec": {
                        "hosts": [host("active")],
                        "http": [{
                            "name": "canary",
                            "route": [
                                { "destination": { "host": host("active"), "port": { "number": 80 } }, "weight": stable },
                                { "destination": { "host": host("preview"), "port": { "number": 80 } }, "weight": canary }
                            ]
                        }]
                    }
                }))
            }
            "gateway" | "" => Ok(json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": { "name": s, "namespace": self.ns, "labels": labels },
                "spec": {
                    "parentRefs": [{ "name": "jts", "kind": "Gateway", "group": "gateway.networking.k8s.io" }],
                    "rules": [{
                        "backendRefs": [
                            { "name": format!("{s}-active"), "port": 80, "weight": stable },
                            { "name": format!("{s}-preview"), "port": 80, "weight": canary }
                        ]
                    }]
                }
            })),
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
        let (backends, key): (Vec<Value>, &str) = if ar.kind == "VirtualService" {
            (
                spec["http"][0]["route"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                "host",
            )
        } else {
            (
                spec["rules"][0]["backendRefs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                "name",
            )
        };
        let mut canary = None;
        for b in &backends {
            let target = if key == "host" {
                b["destination"]["host"].as_str().unwrap_or_default()
            } else {
                b["name"].as_str().unwrap_or_default()
            };
            if target.starts_with(&format!("{}-preview", w.service)) {
                canary = b["weight"].as_u64();
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

    fn plan(manifest: &str) -> ServicePlan {
        ServicePlan {
            name: "order-execution".into(),
            image: "registry.example.com/jts/order-execution:v2".into(),
            version: "v2".into(),
            revision: "v2".into(),
            replicas: 2,
            manifest: manifest.into(),
            ..Default::default()
        }
    }

    const TEMPLATE: &str = include_str!("../../k8s/jts/order-execution.yaml");

    #[test]
    fn renders_the_service_template_per_colour() {
        let docs = render_service(&plan(TEMPLATE), "jts-staging", "green", 3, 120).unwrap();
        let d = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        assert_eq!(d["metadata"]["name"], "order-execution-green");
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["selector"]["matchLabels"]["version"], "green");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example.com/jts/order-execution:v2"
        );
        assert!(docs.iter().any(|d| d["kind"] == "PodDisruptionBudget"));
        let refs = secret_refs("order-execution", &docs);
        let keys: Vec<_> = refs.iter().map(|r| r.key.clone().unwrap()).collect();
        assert_eq!(keys, ["database-url", "broker-api-key"]);
    }

    #[test]
    fn unknown_placeholders_and_wrong_names_are_refused() {
        let bad = TEMPLATE.replace("{{replicas}}", "{{replica_count}}");
        let e = render_service(&plan(&bad), "ns", "blue", 1, 60).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown placeholder {{replica_count}}"),
            "{e}"
        );
        let bad = TEMPLATE.replace("name: order-execution-{{color}}", "name: oe-{{color}}");
        let e = render_service(&plan(&bad), "ns", "blue", 1, 60).unwrap_err();
        assert!(
            e.to_string().contains("must be \"order-execution-blue\""),
            "{e}"
        );
    }

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
