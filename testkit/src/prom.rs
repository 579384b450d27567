//! A real Prometheus (Debian `prometheus`) scraping given targets every second; stoppable and
//! restartable on the same port and data folder.

use crate::{die_with_parent, free_port, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// Prometheus with Kubernetes service discovery, built by scripts/prometheus-build.sh
/// (CUTOVER_PROMETHEUS_BIN overrides); Debian's package has no Kubernetes discovery.
pub fn kubernetes_prometheus_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CUTOVER_PROMETHEUS_BIN") {
        return PathBuf::from(p);
    }
    crate::cluster::testbin_cache()
        .join("prometheus-v0.316.0")
        .join("prometheus")
}

pub struct Prometheus {
    child: Option<Child>,
    program: PathBuf,
    pub port: u16,
    pub url: String,
    dir: PathBuf,
    targets: usize,
}

/// Relabelling of a discovered target: the API names it 10.x, it serves at its loopback mirror
/// 127.x (crate::cluster::loopback_mirror); nothing else is kept.
const MIRROR_RELABEL: &str = "      - source_labels: [__address__]
        regex: '10\\.(\\d+\\.\\d+\\.\\d+):(\\d+)'
        replacement: '127.$1:$2'
        target_label: __address__
      - source_labels: [__address__]
        regex: '127\\..*'
        action: keep
";

impl Prometheus {
    /// `targets`: host:port of /metrics endpoints, each its own job.
    pub fn start(dir: &Path, targets: &[(&str, &str)]) -> Self {
        Self::start_with_rules(dir, targets, "")
    }

    /// Like `start`, with an alerting/recording rules file (YAML; empty: none), evaluated
    /// every second.
    pub fn start_with_rules(dir: &Path, targets: &[(&str, &str)], rules: &str) -> Self {
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut cfg = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if !rules.is_empty() {
            let path = dir.join("rules.yml");
            std::fs::write(&path, rules).unwrap();
            cfg.push_str(&format!("rule_files:\n  - {}\n", path.display()));
        }
        cfg.push_str("scrape_configs:\n");
        for (job, target) in targets {
            cfg.push_str(&format!(
                "  - job_name: {job}\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
        let port = free_port();
        let mut p = Self {
            child: None,
            program: PathBuf::from("prometheus"),
            port,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            targets: targets.len(),
        };
        p.spawn();
        p
    }

    /// Prometheus as it runs in a cluster: targets found by `kubernetes_sd_configs` against the
    /// test API server — the JTS pods (their `http` port, labelled with namespace and pod) and
    /// the gateway (the `traefik-metrics` Service's endpoints), scraped every second, each at the
    /// loopback mirror of its address (10.x in the API, 127.x here); nothing else is kept.
    pub fn start_kubernetes(dir: &Path, c: &crate::cluster::Cluster) -> Self {
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let sd = |role: &str, extra: &str| {
            format!(
                "    kubernetes_sd_configs:
      - role: {role}
        api_server: {server}
        tls_config:
          ca_file: {ca}
          cert_file: {cert}
          key_file: {key}
{extra}",
                server = c.server,
                ca = c.ca.display(),
                cert = c.admin_cert.display(),
                key = c.admin_key.display(),
            )
        };
        let cfg = format!(
            "global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: jts-pods
{pods}    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_part_of]
        regex: jts
        action: keep
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: http
        action: keep
{mirror}      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
  - job_name: gateway
{gw}    relabel_configs:
      - source_labels: [__meta_kubernetes_service_name]
        regex: traefik-metrics
        action: keep
{mirror}",
            pods = sd("pod", ""),
            mirror = MIRROR_RELABEL,
            gw = sd(
                "endpointslice",
                &format!(
                    "        namespaces:\n          names: [{}]\n",
                    c.gateway.namespace
                )
            ),
        );
        std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
        let port = free_port();
        let program = kubernetes_prometheus_bin();
        assert!(
            program.exists(),
            "{} is missing: run scripts/prometheus-build.sh (it builds and caches it)",
            program.display()
        );
        let mut p = Self {
            child: None,
            program,
            port,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            targets: 1,
        };
        p.spawn();
        p
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("prometheus.log")).unwrap();
        let mut cmd = Command::new(&self.program);
        cmd.arg(format!(
            "--config.file={}",
            self.dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            self.dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        die_with_parent(&mut cmd);
        self.child = Some(
            cmd.spawn()
                .expect("prometheus starts (Debian package prometheus)"),
        );
        let ready = format!("{}/-/ready", self.url);
        let client = crate::blocking::Client::new();
        wait_until("prometheus ready", Duration::from_secs(30), || {
            client.status(&ready) == Some(200)
        });
        // Listening is not scraping (the first scrape can come seconds later): wait until every
        // target has been scraped once, so what the test does next is in the data from its start.
        let targets = self.targets;
        wait_until(
            "prometheus to scrape every target",
            Duration::from_secs(30),
            || {
                let v = self.query("count(up == 1)");
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n >= targets)
            },
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Unix ms of the first scrape, at or after `after_ms`, in which a counter matching
    /// `selector` grew (looking back 10 minutes): the first bad scrape of an error counter.
    pub fn first_increase_ms(&self, selector: &str, after_ms: f64) -> Option<f64> {
        let v = self.query(&format!("{selector}[10m]"));
        let mut first: Option<f64> = None;
        for series in v["data"]["result"].as_array().cloned().unwrap_or_default() {
            let samples: Vec<(f64, f64)> = series["values"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|x| Some((x[0].as_f64()? * 1000.0, x[1].as_str()?.parse().ok()?)))
                .collect();
            if let Some(w) = samples
                .windows(2)
                .find(|w| w[1].0 >= after_ms && w[1].1 > w[0].1)
            {
                first = Some(first.map_or(w[1].0, |f: f64| f.min(w[1].0)));
            }
        }
        first
    }

    /// An instant query's JSON answer.
    pub fn query(&self, q: &str) -> serde_json::Value {
        let client = crate::blocking::Client::new();
        let url = format!(
            "{}/api/v1/query?query={}",
            self.url,
            q.bytes()
                .map(|b| if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        );
        client.get_json(&url)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
