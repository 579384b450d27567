//! Istio: one VirtualService per service, on the active Service's host, whose `canary` route
//! weights the active and preview Services.

use serde_json::{Value, json};

/// The VirtualService of `service` with these weights (percent).
pub(super) fn virtual_service(
    service: &str,
    namespace: &str,
    stable: u32,
    canary: u32,
    labels: Value,
) -> Value {
    let s = service;
    let host = |suffix: &str| format!("{s}-{suffix}.{namespace}.svc.cluster.local");
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": s, "namespace": namespace, "labels": labels },
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
    })
}

/// (destination host, weight) of each route of a VirtualService's first HTTP route, as the API
/// server holds it.
pub(super) fn weighted_backends(spec: &Value) -> Vec<(String, Option<u64>)> {
    spec["http"][0]["route"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["destination"]["host"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                b["weight"].as_u64(),
            )
        })
        .collect()
}
