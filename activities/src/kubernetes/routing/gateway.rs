//! Gateway API: one HTTPRoute per service, attached to the environment's Gateway (default `jts`),
//! whose single rule weights the active and preview Services; with hosts configured, also a
//! preview HTTPRoute per service.

use serde_json::{Value, json};

/// The HTTPRoute of `service` with these weights (percent), attached to `parent` (a Gateway
/// reference), for `hostnames` (none: any host).
pub(super) fn http_route(
    service: &str,
    namespace: &str,
    stable: u32,
    canary: u32,
    labels: Value,
    parent: &Value,
    hostnames: &[String],
) -> Value {
    let s = service;
    let mut spec = json!({
        "parentRefs": [parent],
        "rules": [{
            "backendRefs": [
                { "name": format!("{s}-active"), "port": 80, "weight": stable },
                { "name": format!("{s}-preview"), "port": 80, "weight": canary }
            ]
        }]
    });
    if !hostnames.is_empty() {
        spec["hostnames"] = json!(hostnames);
    }
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": s, "namespace": namespace, "labels": labels },
        "spec": spec
    })
}

/// The preview route of `service`: its preview host to `<service>-preview`, where the checks
/// before the switch reach the colour being released.
pub(super) fn preview_route(
    service: &str,
    namespace: &str,
    labels: Value,
    parent: &Value,
    hostnames: &[String],
) -> Value {
    let s = service;
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": format!("{s}-preview"), "namespace": namespace, "labels": labels },
        "spec": {
            "parentRefs": [parent],
            "hostnames": hostnames,
            "rules": [{ "backendRefs": [{ "name": format!("{s}-preview"), "port": 80 }] }]
        }
    })
}

/// (Service name, weight) of each backend of an HTTPRoute's first rule, as the API server holds it.
pub(super) fn weighted_backends(spec: &Value) -> Vec<(String, Option<u64>)> {
    spec["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or_default().to_owned(),
                b["weight"].as_u64(),
            )
        })
        .collect()
}
