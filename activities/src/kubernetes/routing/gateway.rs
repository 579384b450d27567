//! Gateway API: one HTTPRoute per service, attached to the `jts` Gateway, whose single rule
//! weights the active and preview Services.

use serde_json::{Value, json};

/// The HTTPRoute of `service` with these weights (percent).
pub(super) fn http_route(
    service: &str,
    namespace: &str,
    stable: u32,
    canary: u32,
    labels: Value,
) -> Value {
    let s = service;
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": s, "namespace": namespace, "labels": labels },
        "spec": {
            "parentRefs": [{ "name": "jts", "kind": "Gateway", "group": "gateway.networking.k8s.io" }],
            "rules": [{
                "backendRefs": [
                    { "name": format!("{s}-active"), "port": 80, "weight": stable },
                    { "name": format!("{s}-preview"), "port": 80, "weight": canary }
                ]
            }]
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
