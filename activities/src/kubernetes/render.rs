//! Rendering: the release's per-service templates and cutover's own Services and ingress
//! templates, filled and checked before anything is applied.

use crate::error::Failure;
use proto::ServicePlan;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The `<service>-active` / `<service>-preview` Services (cutover's own mechanism, not the release's).
pub const SERVICES_TEMPLATE: &str = include_str!("../../../k8s/jts/services.yaml");
/// The JTS ingress.
pub const INGRESS_TEMPLATE: &str = include_str!("../../../k8s/jts/ingress.yaml");

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
            // What runs is what was recorded: the service's own image (pinned by the image
            // preflight), or one the template itself pins by digest (part of the release's
            // content digest). A tag in the template could change after the approval.
            let pod = &d["spec"]["template"]["spec"];
            for list in ["initContainers", "containers", "ephemeralContainers"] {
                for c in pod[list].as_array().into_iter().flatten() {
                    let image = c["image"].as_str().unwrap_or_default();
                    if image != plan.image && !image.contains("@sha256:") {
                        return Err(Failure::InvalidInput(format!(
                            "{what}: {list} {:?} runs {image:?}: a container runs the service's image ({{{{image}}}}) or an image pinned by digest",
                            c["name"].as_str().unwrap_or_default()
                        )));
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::secret_refs;

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

    const TEMPLATE: &str = include_str!("../../../k8s/jts/order-execution.yaml");

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
    fn a_container_runs_the_recorded_image_or_one_pinned_by_digest() {
        let sidecar = |image: &str| {
            TEMPLATE.replace(
                "          image: {{image}}\n",
                &format!(
                    "          image: {{{{image}}}}\n        - name: shipper\n          image: {image}\n"
                ),
            )
        };
        assert_ne!(sidecar("x"), TEMPLATE, "the template has the image line");
        let e = render_service(
            &plan(&sidecar("fluent/fluent-bit:3.1")),
            "ns",
            "blue",
            1,
            60,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains(
                "containers \"shipper\" runs \"fluent/fluent-bit:3.1\": a container runs the service's image ({{image}}) or an image pinned by digest"
            ),
            "{e}"
        );
        let pinned = format!("fluent/fluent-bit:3.1@sha256:{}", "a".repeat(64));
        assert!(render_service(&plan(&sidecar(&pinned)), "ns", "blue", 1, 60).is_ok());
    }
}
