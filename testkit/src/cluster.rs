//! A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler built from the published Go modules (scripts/k8s-build.sh); kwok scheduling pods
//! onto a node; the fake kubelet ([`crate::kubelet`]) running a real `jts-standin` per pod; the
//! fake kube-proxy ([`crate::kubeproxy`]) serving Service ClusterIPs; and a real gateway, Traefik
//! (scripts/gateway-build.sh), as the Gateway API implementation and Ingress controller, sending
//! real requests to those pods. One per test process, started on first use; each test gets its
//! own namespace. Istio's CRDs are installed for read-back only (no data plane here).
//!
//! Addresses: all traffic stays in 127.0.0.0/8. Service ClusterIPs come from 127.96.0.0/16. The
//! API server refuses loopback addresses in EndpointSlices, so pods are given 10.244.x.y by kwok
//! as their names in the API and serve at the loopback mirror 127.244.x.y
//! ([`loopback_mirror`]); nothing ever connects to a 10.x address.
//!
//! The processes are children of a thread that lives as long as the test process, with
//! PR_SET_PDEATHSIG, so they end with it.

use crate::{free_port, scratch_dir, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const K8S_VERSION: &str = "v1.37.2";

pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub bin_dir: PathBuf,
    /// The cluster's CA and the admin's client certificate (for Prometheus' service discovery).
    pub ca: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub gateway: GatewayInfo,
}

/// The shared Gateway every test's HTTPRoutes attach to, and where Traefik listens.
#[derive(Clone, Debug)]
pub struct GatewayInfo {
    pub name: String,
    pub namespace: String,
    /// host:port of the Gateway's HTTP listener (Traefik's `web` entry point) on 127.0.0.1.
    pub http: String,
    /// host:port of Traefik's metrics and ping entry point.
    pub metrics: String,
}

pub const TRAEFIK_VERSION: &str = "v3.6.12";

/// The loopback address where the test bed serves an address the API holds: 10.a.b.c →
/// 127.a.b.c (pods, the gateway's metrics endpoint); a 127.x address is itself. None for any
/// other address, which the test bed never connects to.
pub fn loopback_mirror(ip: &str) -> Option<std::net::Ipv4Addr> {
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let [a, b, c, d] = ip.octets();
    (a == 10 || a == 127).then(|| std::net::Ipv4Addr::new(127, b, c, d))
}

/// Where scripts/gateway-build.sh put Traefik (CUTOVER_GATEWAY_BIN overrides).
pub fn traefik_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CUTOVER_GATEWAY_BIN") {
        return PathBuf::from(p);
    }
    testbin_cache()
        .join(format!("traefik-{TRAEFIK_VERSION}"))
        .join("traefik")
}

/// The workspace root (the folder of cutover.toml and k8s/).
pub fn repo_root() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

/// Where scripts/k8s-build.sh put the binaries (CUTOVER_K8S_BIN overrides).
pub fn k8s_bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CUTOVER_K8S_BIN") {
        return PathBuf::from(d);
    }
    testbin_cache().join(format!("k8s-{K8S_VERSION}"))
}

/// Where the build scripts cache the test bed's binaries: `$XDG_CACHE_HOME` (else ~/.cache)
/// `/cutover-testbin`.
pub fn testbin_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"))
        .join("cutover-testbin")
}

/// The test process's control plane, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("k8s-control-plane".into())
            .spawn(move || {
                let mut children = Vec::new();
                let c = start(&mut children);
                tx.send(c).unwrap();
                // The children die with this thread (PDEATHSIG): keep it for the whole run.
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        rx.recv().expect("the control plane starts")
    })
}

fn spawn(children: &mut Vec<Child>, dir: &Path, name: &str, program: &Path, args: &[String]) {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    crate::die_with_parent(&mut cmd);
    children.push(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("{name} ({}) starts: {e}", program.display())),
    );
}

fn start(children: &mut Vec<Child>) -> Cluster {
    let bin_dir = k8s_bin_dir();
    for b in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "kubectl",
    ] {
        assert!(
            bin_dir.join(b).exists(),
            "{} is missing: run scripts/k8s-build.sh (it builds and caches the control plane)",
            bin_dir.join(b).display()
        );
    }
    let dir = scratch_dir("k8s");
    let pki = dir.join("pki");
    let st = Command::new(repo_root().join("scripts/k8s-pki.sh"))
        .arg(&pki)
        .status()
        .expect("scripts/k8s-pki.sh runs");
    assert!(st.success(), "PKI generation failed");
    let p = |f: &str| pki.join(f).display().to_string();

    // etcd, plain HTTP on loopback.
    let (etcd_port, peer_port) = (free_port(), free_port());
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    spawn(
        children,
        &dir,
        "etcd",
        &bin_dir.join("etcd"),
        &[
            "--data-dir".into(),
            dir.join("etcd").display().to_string(),
            "--name=default".into(),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync".into(),
            "--quota-backend-bytes=4294967296".into(),
            "--log-level=warn".into(),
        ],
    );
    wait_until("etcd /health", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_ok()
    });

    let api_port = free_port();
    let server = format!("https://127.0.0.1:{api_port}");
    spawn(
        children,
        &dir,
        "kube-apiserver",
        &bin_dir.join("kube-apiserver"),
        &[
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=127.96.0.0/16".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--endpoint-reconciler-type=none".into(),
            "--allow-privileged=false".into(),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            "--v=0".into(),
        ],
    );
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {crt}
    client-key: {key}
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
",
            ca = p("ca.crt"),
            crt = p("admin.crt"),
            key = p("admin.key"),
        ),
    )
    .unwrap();
    let web_port = free_port();
    let mut c = Cluster {
        dir: dir.clone(),
        kubeconfig: kubeconfig.clone(),
        server,
        bin_dir: bin_dir.clone(),
        ca: pki.join("ca.crt"),
        admin_cert: pki.join("admin.crt"),
        admin_key: pki.join("admin.key"),
        gateway: GatewayInfo {
            name: "jts".into(),
            namespace: "jts-gateway".into(),
            http: format!("127.0.0.1:{web_port}"),
            // The API names it 10.255.0.1 (an EndpointSlice cannot hold 127.x); its mirror.
            metrics: format!("127.255.0.1:{}", free_port()),
        },
    };
    wait_until("kube-apiserver /readyz", Duration::from_secs(90), || {
        c.kubectl(&["get", "--raw", "/readyz"]).status.success()
    });
    let kc = format!("--kubeconfig={}", kubeconfig.display());
    spawn(
        children,
        &dir,
        "kube-controller-manager",
        &bin_dir.join("kube-controller-manager"),
        &[
            kc.clone(),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            format!("--service-account-private-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            "--use-service-account-credentials=false".into(),
            "--concurrent-deployment-syncs=10".into(),
            "--concurrent-replicaset-syncs=10".into(),
            "--v=0".into(),
        ],
    );
    spawn(
        children,
        &dir,
        "kube-scheduler",
        &bin_dir.join("kube-scheduler"),
        &[
            kc.clone(),
            "--leader-elect=false".into(),
            format!("--secure-port={}", free_port()),
            "--bind-address=127.0.0.1".into(),
            "--v=0".into(),
        ],
    );

    // kwok: upstream node stages (initialise, heartbeat) and pod-complete (Jobs), plus our
    // pod-running stage; readiness and deletion of pods are the fake kubelet's.
    let mut stages = String::from(
        "apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: 10.244.0.0/16
  nodeIP: 127.0.0.1
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 2
  nodeLeaseParallelism: 2
  nodeLeaseDurationSeconds: 40
  podsOnNodeSyncParallelism: 1
  enableDebuggingHandlers: false
  enableProfilingHandler: false
",
    );
    for f in [
        "node-initialize.yaml",
        "node-heartbeat-with-lease.yaml",
        "pod-complete.yaml",
    ] {
        stages.push_str("---\n");
        stages.push_str(&std::fs::read_to_string(bin_dir.join("stages").join(f)).unwrap());
    }
    stages.push_str("---\n");
    stages.push_str(
        &std::fs::read_to_string(repo_root().join("tests/kwok/pod-running.yaml")).unwrap(),
    );
    let kwok_config = dir.join("kwok.yaml");
    std::fs::write(&kwok_config, stages).unwrap();
    spawn(
        children,
        &dir,
        "kwok",
        &bin_dir.join("kwok"),
        &[
            kc,
            format!("--config={}", kwok_config.display()),
            "--manage-all-nodes=false".into(),
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
            format!("--server-address=127.0.0.1:{}", free_port()),
        ],
    );

    let node = repo_root().join("tests/kwok/node.yaml");
    c.kubectl_ok(&["apply", "-f", &node.display().to_string()]);
    let mut crds: Vec<PathBuf> = std::fs::read_dir(bin_dir.join("crds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    crds.sort();
    for f in &crds {
        c.kubectl_ok(&["apply", "--server-side", "-f", &f.display().to_string()]);
    }
    wait_until("node kwok-node-0 Ready", Duration::from_secs(60), || {
        c.kubectl(&[
            "get",
            "node",
            "kwok-node-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
        .stdout
            == b"True"
    });
    wait_until("CRDs established", Duration::from_secs(60), || {
        c.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/httproutes.gateway.networking.k8s.io",
            "crd/gateways.gateway.networking.k8s.io",
            "crd/backendtlspolicies.gateway.networking.k8s.io",
            "crd/virtualservices.networking.istio.io",
            "--timeout=5s",
        ])
        .status
        .success()
    });
    crate::kubelet::start(&kubeconfig, &dir);
    crate::kubeproxy::start(&kubeconfig);
    start_gateway(children, &mut c, &pki);
    c
}

/// Traefik as the Gateway API implementation (and Ingress controller for class `nginx`, the JTS
/// ingress's), authenticated with a ServiceAccount token, and the shared `jts` Gateway in
/// `jts-gateway` whose listener is Traefik's `web` entry point, open to routes of every
/// namespace. Its metrics are published as the `traefik-metrics` Service (an EndpointSlice on
/// 127.0.0.1), so Prometheus finds them by Kubernetes service discovery as in a cluster.
fn start_gateway(children: &mut Vec<Child>, c: &mut Cluster, pki: &Path) {
    let traefik = traefik_bin();
    assert!(
        traefik.exists(),
        "{} is missing: run scripts/gateway-build.sh (it builds and caches Traefik)",
        traefik.display()
    );
    let g = c.gateway.clone();
    let web_port = g.http.rsplit_once(':').unwrap().1.to_owned();
    let metrics_port = g.metrics.rsplit_once(':').unwrap().1;
    let metrics_ip = g
        .metrics
        .split(':')
        .next()
        .unwrap()
        .replacen("127.", "10.", 1);
    let setup = format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: traefik
  namespace: {ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: traefik-test-gateway
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
- kind: ServiceAccount
  name: traefik
  namespace: {ns}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: traefik
spec:
  controllerName: traefik.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
  namespace: {ns}
spec:
  gatewayClassName: traefik
  listeners:
  - name: web
    protocol: HTTP
    port: {web_port}
    allowedRoutes:
      namespaces:
        from: All
---
apiVersion: v1
kind: Service
metadata:
  name: traefik-metrics
  namespace: {ns}
  labels:
    app.kubernetes.io/name: traefik
spec:
  clusterIP: None
  ports:
  - name: metrics
    port: {metrics_port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: traefik-metrics
  namespace: {ns}
  labels:
    kubernetes.io/service-name: traefik-metrics
    app.kubernetes.io/name: traefik
addressType: IPv4
ports:
- name: metrics
  port: {metrics_port}
  protocol: TCP
endpoints:
- addresses: [\"{metrics_ip}\"]
  conditions:
    ready: true
",
        ns = g.namespace,
        name = g.name,
    );
    let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &setup);
    assert!(
        out.status.success(),
        "gateway setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = c
        .kubectl_ok(&[
            "-n",
            &g.namespace,
            "create",
            "token",
            "traefik",
            "--duration=48h",
        ])
        .trim()
        .to_owned();
    let ca = pki.join("ca.crt").display().to_string();
    let mut args = vec![
        format!("--entryPoints.web.address={}", g.http),
        format!("--entryPoints.traefik.address={}", g.metrics),
        "--ping=true".into(),
        "--ping.entryPoint=traefik".into(),
        "--metrics.prometheus=true".into(),
        "--metrics.prometheus.entryPoint=traefik".into(),
        "--metrics.prometheus.addServicesLabels=true".into(),
        "--metrics.prometheus.addRoutersLabels=true".into(),
        // Traefik applies at most one new configuration per throttle period (default 2 s): the
        // four services' switch or a canary step would reach clients up to 2 s apart (README).
        "--providers.providersThrottleDuration=100ms".into(),
        // The Services' ClusterIPs (the fake kube-proxy), a new connection per request: each
        // request goes to an endpoint ready at that moment (see crate::kubeproxy).
        "--serversTransport.maxIdleConnsPerHost=-1".into(),
        "--global.checkNewVersion=false".into(),
        "--global.sendAnonymousUsage=false".into(),
        "--log.level=INFO".into(),
    ];
    for p in ["kubernetesgateway", "kubernetesingress"] {
        args.push(format!("--providers.{p}=true"));
        args.push(format!("--providers.{p}.endpoint={}", c.server));
        args.push(format!("--providers.{p}.token={token}"));
        args.push(format!("--providers.{p}.certAuthFilePath={ca}"));
        args.push(format!("--providers.{p}.nativeLBByDefault=true"));
    }
    args.push("--providers.kubernetesingress.ingressClass=nginx".into());
    spawn(children, &c.dir, "traefik", &traefik, &args);
    let ping = g.metrics.clone();
    wait_until("traefik /ping", Duration::from_secs(60), || {
        crate::blocking::Client::new().status(&format!("http://{ping}/ping")) == Some(200)
    });
    wait_until(
        "Gateway jts accepted by Traefik",
        Duration::from_secs(60),
        || {
            c.kubectl(&[
                "-n",
                &g.namespace,
                "get",
                "gateway",
                &g.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Programmed\")].status}",
            ])
            .stdout
                == b"True"
        },
    );
}

impl Cluster {
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin_dir.join("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl with stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(self.bin_dir.join("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// A fresh namespace for one test, with the restricted Pod Security Standard enforced (as
    /// k8s/namespaces.yaml does for the JTS environments).
    pub fn namespace(&self, name: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let ns = format!("t-{name}-{}", N.fetch_add(1, Ordering::Relaxed));
        let yaml = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n"
        );
        let out = self.kubectl_stdin(&["apply", "-f", "-"], &yaml);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Pods need the namespace's default ServiceAccount (made by the controller manager).
        wait_until("default ServiceAccount", Duration::from_secs(30), || {
            self.kubectl(&["-n", &ns, "get", "serviceaccount", "default"])
                .status
                .success()
        });
        ns
    }

    /// A kube-rs client for the admin identity.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    /// A kubeconfig that impersonates `user` (e.g. a ServiceAccount) through the admin identity.
    pub fn impersonating_kubeconfig(&self, user: &str, file: &Path) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap().replace(
            "    client-key:",
            &format!("    as: {user}\n    client-key:"),
        );
        std::fs::write(file, text).unwrap();
        file.to_path_buf()
    }
}
