//! A real Kubernetes control plane for tests, without kubelets: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler built from the published Go modules
//! (scripts/k8s-build.sh), and kwok making pods Running/Ready. One per test process, started
//! on first use; each test gets its own namespace.
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
}

fn repo_root() -> PathBuf {
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
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    cache
        .join("cutover-testbin")
        .join(format!("k8s-{K8S_VERSION}"))
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
            "--service-cluster-ip-range=10.96.0.0/16".into(),
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
    let c = Cluster {
        dir: dir.clone(),
        kubeconfig: kubeconfig.clone(),
        server,
        bin_dir: bin_dir.clone(),
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

    // kwok: upstream stages (node initialise/heartbeat, pod ready/complete/delete) plus ours.
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
        "pod-ready.yaml",
        "pod-complete.yaml",
        "pod-delete.yaml",
    ] {
        stages.push_str("---\n");
        stages.push_str(&std::fs::read_to_string(bin_dir.join("stages").join(f)).unwrap());
    }
    stages.push_str("---\n");
    stages.push_str(
        &std::fs::read_to_string(repo_root().join("tests/kwok/pod-never-ready.yaml")).unwrap(),
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
    for crd in [
        "gateway-gatewayclasses.yaml",
        "gateway-gateways.yaml",
        "gateway-httproutes.yaml",
        "gateway-referencegrants.yaml",
        "istio.yaml",
    ] {
        let f = bin_dir.join("crds").join(crd);
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
            "crd/virtualservices.networking.istio.io",
            "--timeout=5s",
        ])
        .status
        .success()
    });
    c
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
