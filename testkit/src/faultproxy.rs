//! A FAKE, named as such: a fault-injecting HTTP proxy in front of the real kube-apiserver, for
//! faults a healthy control plane does not produce on demand — a write conflict (409) at the
//! moment of the switch, a 5xx answer, a request that hangs past the activity's timeout.
//! Every other request goes through unchanged to the real API server (with the admin identity).
//!
//! The worker talks to it over plain HTTP on 127.0.0.1 through its own kubeconfig.

use crate::blocking;
use crate::cluster::Cluster;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a Kubernetes `Status` body, without forwarding.
    Status(u16, &'static str),
    /// Hold the request this long, then forward it.
    Delay(Duration),
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    pub path_contains: String,
    pub fault: Fault,
    /// How many matching requests get the fault (then the rule is spent).
    pub times: u32,
}

/// (method, path, status answered, fault injected?) of one request.
pub type Entry = (String, String, u16, bool);

pub struct FaultProxy {
    pub url: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    /// Every request, in order.
    pub log: Arc<Mutex<Vec<Entry>>>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl FaultProxy {
    pub fn start(cluster: &Cluster) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = cluster.dir.join("pki");
        let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
        let mut identity = read("admin.crt");
        identity.extend_from_slice(&read("admin.key"));
        let upstream = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.crt")).unwrap())
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .build()
            .unwrap();
        let server = cluster.server.clone();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let log: Arc<Mutex<Vec<Entry>>> = Arc::default();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let listener = blocking::rt()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (r, l) = (rules.clone(), log.clone());
        blocking::rt().spawn(localplatform::http::serve(
            listener,
            move |req: hyper::Request<hyper::body::Incoming>| {
                let (upstream, server, rules, log) =
                    (upstream.clone(), server.clone(), r.clone(), l.clone());
                async move {
                    let method = req.method().as_str().to_owned();
                    let path = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default();
                    let fault = {
                        let mut rules = rules.lock().unwrap();
                        rules
                            .iter_mut()
                            .find(|r| {
                                r.times > 0 && r.method == method && path.contains(&r.path_contains)
                            })
                            .map(|r| {
                                r.times -= 1;
                                r.fault.clone()
                            })
                    };
                    if let Some(Fault::Status(code, reason)) = fault {
                        log.lock().unwrap().push((method, path, code, true));
                        let body = serde_json::json!({
                            "kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": format!("injected by the test fault proxy: {reason}"),
                            "reason": reason, "code": code
                        });
                        return Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .unwrap();
                    }
                    let delayed = matches!(fault, Some(Fault::Delay(_)));
                    if let Some(Fault::Delay(d)) = fault {
                        tokio::time::sleep(d).await;
                    }
                    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                    let mut out = upstream.request(m, format!("{server}{path}"));
                    for h in ["content-type", "accept"] {
                        if let Some(v) = req.headers().get(h) {
                            out = out.header(h, v.as_bytes());
                        }
                    }
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let resp = match out.body(body).send().await {
                        Ok(r) => r,
                        Err(e) => {
                            return Response::builder()
                                .status(StatusCode::BAD_GATEWAY)
                                .body(Full::new(Bytes::from(e.to_string())))
                                .unwrap();
                        }
                    };
                    let status = resp.status().as_u16();
                    let ct = resp
                        .headers()
                        .get("content-type")
                        .map(|v| v.as_bytes().to_vec());
                    let bytes = resp.bytes().await.unwrap_or_default();
                    log.lock().unwrap().push((method, path, status, delayed));
                    let mut b = Response::builder().status(status);
                    if let Some(ct) = ct {
                        b = b.header("content-type", ct);
                    }
                    b.body(Full::new(bytes)).unwrap()
                }
            },
            rx,
        ));
        Self {
            url,
            rules,
            log,
            _stop: tx,
        }
    }

    pub fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    /// Rules with faults still to inject.
    pub fn pending(&self) -> Vec<Rule> {
        self.rules
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.times > 0)
            .cloned()
            .collect()
    }

    /// A kubeconfig that reaches the cluster through this proxy (no credentials needed).
    pub fn kubeconfig(&self, file: &Path) -> PathBuf {
        std::fs::write(
            file,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: proxy
  cluster:
    server: {url}
users:
- name: proxy
  user: {{}}
contexts:
- name: proxy
  context:
    cluster: proxy
    user: proxy
current-context: proxy
",
                url = self.url
            ),
        )
        .unwrap();
        file.to_path_buf()
    }
}
