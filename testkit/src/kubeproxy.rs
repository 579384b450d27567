//! The fake kube-proxy: a test-harness component, named as the fake it is. The test cluster's
//! Service ClusterIPs come from a loopback range (127.96.0.0/16); for every Service port this
//! component listens on ClusterIP:port and sends each TCP connection to one ready endpoint of the
//! Service's EndpointSlices (round robin; serving terminating ones when none is ready, as
//! kube-proxy does), at the endpoint's loopback mirror (see
//! [`crate::cluster::loopback_mirror`]): what kube-proxy does for a ClusterIP, in user space.
//!
//! Why it exists: the API server refuses loopback addresses in EndpointSlices
//! (`ValidateEndpointIP`, pkg/apis/core/validation), so pods cannot carry 127.x addresses and be
//! endpoints. Pods carry 10.244.x.y as their names in the API, the fake kubelet binds them to
//! 127.244.x.y, and traffic reaches them only through this proxy or Prometheus' relabelled
//! scrapes — never at a 10.x address. The gateway uses the ClusterIP (Traefik's native load
//! balancing) and opens one connection per request (keep-alive to backends off), so each request
//! picks an endpoint that is ready at the time, as with kube-proxy.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Ready endpoints (loopback mirrors) per ClusterIP:port.
type Table = Arc<Mutex<BTreeMap<SocketAddr, Vec<SocketAddr>>>>;

/// Starts the fake kube-proxy on its own thread; it lives as long as the test process.
pub fn start(kubeconfig: &Path) {
    let kubeconfig = kubeconfig.to_path_buf();
    std::thread::Builder::new()
        .name("fake-kube-proxy".into())
        .spawn(move || {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(kubeconfig));
        })
        .unwrap();
}

async fn run(kubeconfig: PathBuf) {
    let client = crate::kubelet::client(&kubeconfig).await;
    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client);
    let table: Table = Arc::default();
    let mut listening: BTreeSet<SocketAddr> = BTreeSet::new();
    loop {
        let (Ok(svcs), Ok(sl)) = (
            services.list(&ListParams::default()).await,
            slices.list(&ListParams::default()).await,
        ) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        // Ready endpoints per (namespace, service, port name), mirrored to loopback.
        let mut ready: BTreeMap<(String, String, String), Vec<SocketAddr>> = BTreeMap::new();
        // Serving but terminating endpoints: used only when a Service has no ready one, as
        // kube-proxy does (KEP-1669), so a route still draining to a colour being scaled down
        // reaches pods in their preStop sleep.
        let mut terminating: BTreeMap<(String, String, String), Vec<SocketAddr>> = BTreeMap::new();
        for s in &sl.items {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .cloned()
            else {
                continue;
            };
            for p in s.ports.iter().flatten() {
                let (Some(port), name) = (p.port, p.name.clone().unwrap_or_default()) else {
                    continue;
                };
                let key = (ns.clone(), svc.clone(), name);
                for e in s.endpoints.iter().flatten() {
                    let c = e.conditions.clone().unwrap_or_default();
                    let list = if c.ready == Some(true) {
                        &mut ready
                    } else if c.serving == Some(true) && c.terminating == Some(true) {
                        &mut terminating
                    } else {
                        continue;
                    };
                    let entry = list.entry(key.clone()).or_default();
                    for a in &e.addresses {
                        if let Some(ip) = crate::cluster::loopback_mirror(a) {
                            entry.push(SocketAddr::new(ip.into(), port as u16));
                        }
                    }
                }
            }
        }
        let mut next: BTreeMap<SocketAddr, Vec<SocketAddr>> = BTreeMap::new();
        for svc in &svcs.items {
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            let name = svc.metadata.name.clone().unwrap_or_default();
            let Some(spec) = &svc.spec else { continue };
            let Some(ip) = spec
                .cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
                .filter(|ip| ip.octets()[0] == 127)
            else {
                continue;
            };
            for p in spec.ports.iter().flatten() {
                let front = SocketAddr::new(ip.into(), p.port as u16);
                let key = (ns.clone(), name.clone(), p.name.clone().unwrap_or_default());
                let eps = ready
                    .get(&key)
                    .filter(|r| !r.is_empty())
                    .or_else(|| terminating.get(&key))
                    .cloned()
                    .unwrap_or_default();
                next.insert(front, eps);
            }
        }
        for front in next.keys() {
            if !listening.contains(front) {
                match tokio::net::TcpListener::bind(front).await {
                    Ok(l) => {
                        listening.insert(*front);
                        tokio::spawn(serve(l, *front, table.clone()));
                    }
                    Err(e) => eprintln!("fake kube-proxy: cannot listen on {front}: {e}"),
                }
            }
        }
        *table.lock().unwrap() = next;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn serve(listener: tokio::net::TcpListener, front: SocketAddr, table: Table) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let (table, next) = (table.clone(), next.clone());
        tokio::spawn(async move {
            let backends = table
                .lock()
                .unwrap()
                .get(&front)
                .cloned()
                .unwrap_or_default();
            if backends.is_empty() {
                return; // No ready endpoint: the connection is refused (closed), as kube-proxy does.
            }
            let b = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(b).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
