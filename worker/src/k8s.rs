//! Kubernetes verbs of the CLI: `cutover render` (the manifests of a release, for review,
//! bootstrap and `kubectl apply --dry-run=server`) and `cutover secrets sync` (named environment
//! variables, as GitHub Actions exposes secrets, into a Kubernetes Secret; only key names are
//! ever printed).

use crate::commands::{CmdError, CmdResult};
use crate::config::Config;
use activities::kubernetes::{self, FIELD_MANAGER, KubePlatform};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;
use workflows::release::{Colour, PlatformKind};

/// Every object of a release on one colour, as YAML documents: per service its Deployment and
/// PodDisruptionBudget, its active and preview Services (active = `active`, preview = the other
/// colour), its live and preview HTTPRoutes when the environment has route hosts, and the
/// ingress.
pub fn render(
    cfg: &Config,
    environment: &str,
    revision: &str,
    images: &BTreeMap<String, String>,
    color: &str,
    active: &str,
) -> Result<String, CmdError> {
    let env = cfg.environment(environment).map_err(CmdError::usage)?;
    if env.platform.kind() != PlatformKind::Kubernetes {
        return Err(CmdError::usage(format!(
            "environment {environment} runs on the {} platform: only kubernetes environments have manifests",
            env.platform.kind()
        )));
    }
    for (flag, c) in [("--color", color), ("--active", active)] {
        if Colour::parse(c).is_none() {
            return Err(CmdError::usage(format!(
                "{flag} {c:?}: expected blue or green"
            )));
        }
    }
    let req = cfg
        .deploy_request(environment, revision, images, "render", "render")
        .map_err(CmdError::usage)?;
    let target = req.platform.clone().unwrap_or_default();
    let ns = &target.namespace;
    let deadline = req.timings.map(|t| t.ready_timeout_secs).unwrap_or(600);
    let mut out = String::new();
    let bad = |e: activities::error::Failure| CmdError::usage(e.to_string());
    for plan in &req.services {
        // Validates names and labels exactly as the worker will.
        kubernetes::render_service(plan, ns, color, plan.replicas, deadline).map_err(bad)?;
        let vars = kubernetes::service_vars(plan, ns, color, plan.replicas, deadline);
        let what = format!("template of {}", plan.name);
        out.push_str(&format!("---\n# {} on {color}\n", plan.name));
        out.push_str(&kubernetes::render_text(&plan.manifest, &what, &vars).map_err(bad)?);
    }
    for plan in &req.services {
        let vars = BTreeMap::from([
            ("namespace", ns.clone()),
            ("service", plan.name.clone()),
            ("active_color", active.to_owned()),
            ("preview_color", kubernetes::other_color(active).to_owned()),
        ]);
        out.push_str(&format!("---\n# {} Services\n", plan.name));
        out.push_str(
            &kubernetes::render_text(
                kubernetes::SERVICES_TEMPLATE,
                "k8s/jts/services.yaml",
                &vars,
            )
            .map_err(bad)?,
        );
    }
    for plan in &req.services {
        let routes = kubernetes::Routes(&target)
            .gateway_route_docs(&plan.name)
            .map_err(bad)?;
        if !routes.is_empty() {
            out.push_str(&format!("---\n# {} routes (Gateway API)\n", plan.name));
        }
        for (i, r) in routes.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&serde_json::to_string_pretty(r).unwrap_or_default());
            out.push('\n');
        }
    }
    let vars = BTreeMap::from([
        ("namespace", ns.clone()),
        ("host", target.ingress_host.clone()),
    ]);
    out.push_str("---\n# ingress\n");
    out.push_str(
        &kubernetes::render_text(kubernetes::INGRESS_TEMPLATE, "k8s/jts/ingress.yaml", &vars)
            .map_err(bad)?,
    );
    Ok(out)
}

/// `KEY=ENV_VAR` pairs: the Secret's key and the environment variable holding its value.
pub fn parse_pairs(pairs: &[String]) -> Result<Vec<(String, String)>, CmdError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for p in pairs {
        let Some((key, var)) = p.split_once('=') else {
            return Err(CmdError::usage(format!(
                "--key {p:?}: expected KEY=ENV_VAR (the value is read from the environment variable)"
            )));
        };
        let key_ok = !key.is_empty()
            && key.len() <= 253
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !key_ok {
            return Err(CmdError::usage(format!(
                "--key {p:?}: {key:?} is not a valid Secret key ([-._a-zA-Z0-9]+)"
            )));
        }
        if var.is_empty() {
            return Err(CmdError::usage(format!(
                "--key {p:?}: no environment variable named"
            )));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(CmdError::usage(format!("--key {key}: given twice")));
        }
        out.push((key.to_owned(), var.to_owned()));
    }
    if out.is_empty() {
        return Err(CmdError::usage("give at least one --key KEY=ENV_VAR"));
    }
    Ok(out)
}

/// Server-side applies the Secret from environment variables. Every variable is read (and a
/// missing or empty one refused, by name) before anything is written. Prints key names only.
pub async fn secrets_sync(
    cfg: &Config,
    environment: &str,
    name: &str,
    pairs: &[String],
) -> CmdResult {
    let env = cfg.environment(environment).map_err(CmdError::usage)?;
    if env.platform.kind() != PlatformKind::Kubernetes {
        return Err(CmdError::usage(format!(
            "environment {environment} runs on the {} platform: secrets sync is for kubernetes environments",
            env.platform.kind()
        )));
    }
    let pairs = parse_pairs(pairs)?;
    let mut data = BTreeMap::new();
    let mut missing = Vec::new();
    for (key, var) in &pairs {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => {
                data.insert(key.clone(), ByteString(v.into_bytes()));
            }
            _ => missing.push(var.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(CmdError::usage(format!(
            "environment variables not set or empty: {} (nothing was written)",
            missing.join(", ")
        )));
    }
    let target = cfg.platform_target(env);
    let client = kubernetes::client_for(&target.kube_context)
        .await
        .map_err(|e| CmdError::failed(e.to_string()))?;
    // Constructing the platform validates the target (namespace).
    KubePlatform::new(client.clone(), &target).map_err(|e| CmdError::usage(e.to_string()))?;
    let api: Api<Secret> = Api::namespaced(client, &target.namespace);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(target.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "cutover".to_owned(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    };
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await
    .map_err(|e| {
        // kube errors carry the server's message, never the request body.
        CmdError::failed(kubernetes::kube_failure(e, &format!("apply Secret {name}")).to_string())
    })?;
    println!(
        "secret {name} in {}: keys {} (values not shown)",
        target.namespace,
        pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(0)
}
