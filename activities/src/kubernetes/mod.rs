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
//!
//! Layout: `render` (templates to objects), `preflight` (permissions, Secrets, the live colour,
//! a server-side dry run), `rollout` (start, scale, readiness, switch, verify, health) and
//! `routing` (canary weights, one file per router).

mod preflight;
mod render;
mod rollout;
mod routing;

pub use preflight::{
    Permission, SecretRef, describe_permission, required_permissions, secret_refs,
};
pub use render::{
    INGRESS_TEMPLATE, SERVICES_TEMPLATE, render, render_ingress, render_service, render_services,
    render_text, service_vars,
};
pub use rollout::{Rollout, rollout_status};
pub use routing::Routes;

use crate::error::Failure;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use proto::PlatformTarget;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use workflows::release::Colour;

/// The field manager of every server-side apply cutover makes.
pub const FIELD_MANAGER: &str = "cutover";

/// Fault hook for tests, named as such: after this many services have been switched in one
/// switch call, the worker process aborts on the spot (as `kill -9` would stop it there).
pub const FAULT_ABORT_AFTER_SWITCHED: &str = "CUTOVER_FAULT_ABORT_AFTER_SWITCHED";

/// The colour that is not `c` (the partner of a name that is no colour is blue).
pub fn other_color(c: &str) -> &'static str {
    Colour::parse(c).unwrap_or(Colour::Green).other().as_str()
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

    /// A host template ({service}, {namespace}) filled for a service.
    pub fn host(&self, template: &str, service: &str) -> String {
        template
            .replace("{service}", service)
            .replace("{namespace}", &self.ns)
    }

    /// The client for the checks: with a `gateway_address`, each service's preview host
    /// resolves to it (the URL carries its port).
    pub fn check_client(
        &self,
        shared: &reqwest::Client,
        services: &[String],
    ) -> Result<reqwest::Client, Failure> {
        if self.target.preview_host.is_empty() || self.target.gateway_address.is_empty() {
            return Ok(shared.clone());
        }
        let addr: std::net::SocketAddr = self.target.gateway_address.parse().map_err(|_| {
            Failure::InvalidInput(format!(
                "gateway_address {:?} is not IP:port",
                self.target.gateway_address
            ))
        })?;
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(10));
        for s in services {
            b = b.resolve(&self.host(&self.target.preview_host, s), addr);
        }
        b.build()
            .map_err(|e| Failure::Unavailable(format!("HTTP client for the gateway: {e}")))
    }

    /// The preview URL of a service (where checks reach the colour being released): its preview
    /// route through the Gateway when `preview_host` is set, else the `preview_url` template.
    pub fn preview_url(&self, service: &str) -> String {
        if !self.target.preview_host.is_empty() {
            let port = self
                .target
                .gateway_address
                .rsplit_once(':')
                .map(|(_, p)| format!(":{p}"))
                .unwrap_or_default();
            return format!(
                "http://{}{port}",
                self.host(&self.target.preview_host, service)
            );
        }
        let t = if self.target.preview_url.is_empty() {
            "http://{service}-preview.{namespace}.svc.cluster.local"
        } else {
            &self.target.preview_url
        };
        t.replace("{service}", service)
            .replace("{namespace}", &self.ns)
    }
}
