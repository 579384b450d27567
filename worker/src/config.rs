//! `cutover.toml`: environments, services and their checks, in a file a person reviews in a pull
//! request. Unknown keys and invalid values are refused naming the file, the key and why.

use crate::image;
use proto::{
    ApprovalPolicy, DeployRequest, PerfCheck, PlatformTarget, Resources, ServicePlan, Thresholds,
    Timings,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {why}")]
    Read { file: String, why: String },
    #[error("{file}: {why}")]
    Parse { file: String, why: String },
    #[error("{file}: {key}: {why}")]
    Invalid {
        file: String,
        key: String,
        why: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub defaults: Defaults,
    pub services: BTreeMap<String, Service>,
    pub environments: BTreeMap<String, Environment>,
    #[serde(skip)]
    pub file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Image of each service for a revision; `{service}` and `{revision}` are replaced.
    #[serde(default = "default_image")]
    pub image: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            image: default_image(),
        }
    }
}

fn default_image() -> String {
    "jts/{service}:{revision}".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default = "default_ready")]
    pub readiness_path: String,
    #[serde(default = "default_health")]
    pub health_path: String,
    #[serde(default)]
    pub smoke: Vec<String>,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    #[serde(default = "default_warm")]
    pub warm_replicas: u32,
    pub image: Option<String>,
    /// Kubernetes requests and limits of the service's pods.
    #[serde(default)]
    pub resources: ResourcesCfg,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesCfg {
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
}

impl Default for ResourcesCfg {
    fn default() -> Self {
        Self {
            cpu_request: "100m".into(),
            cpu_limit: "1".into(),
            memory_request: "128Mi".into(),
            memory_limit: "256Mi".into(),
        }
    }
}

/// A Kubernetes quantity as the API server accepts it: digits with an optional decimal part and
/// an optional suffix (m, k, Ki, M, Mi, G, Gi, ...).
fn is_quantity(q: &str) -> bool {
    let digits_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(digits_end);
    !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit())
        && ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix)
}

fn default_ready() -> String {
    "/health/ready".into()
}
fn default_health() -> String {
    "/health".into()
}
fn default_replicas() -> u32 {
    2
}
fn default_warm() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub platform: Platform,
    #[serde(default)]
    pub production: bool,
    #[serde(default)]
    pub thresholds: ThresholdsCfg,
    #[serde(default)]
    pub performance: PerfCfg,
    #[serde(default)]
    pub approval: ApprovalCfg,
    #[serde(default)]
    pub timings: TimingsCfg,
    /// Per-service replica overrides for this environment.
    #[serde(default)]
    pub replicas: BTreeMap<String, u32>,
    /// The environment's JTS database and its migrations.
    pub database: Option<DatabaseCfg>,
    /// Gradual traffic shift (`cutover deploy ENV --strategy canary`).
    #[serde(default)]
    pub canary: CanaryCfg,
    /// The environment's circuit breaker (`cutover breaker ...`).
    pub breaker: Option<BreakerCfg>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerCfg {
    /// IANA time zone of the freeze windows (e.g. "America/New_York").
    pub timezone: String,
    /// Recurring freeze windows (market hours): no deployment starts or moves inside them.
    pub freeze_windows: Vec<FreezeWindowCfg>,
    /// Prometheus (or Alertmanager) base URL whose firing alerts trip the breaker.
    pub alerts_url: String,
    /// "prometheus" (/api/v1/alerts) or "alertmanager" (/api/v2/alerts).
    pub alerts_api: String,
    /// Alert names that trip the breaker; empty: any firing alert.
    pub alerts: Vec<String>,
    /// Prometheus base URL for the burn-rate query.
    pub prometheus_url: String,
    /// PromQL giving the SLO's error-budget burn rate as one number.
    pub burn_rate_query: String,
    /// Trips above this burn rate (e.g. 14.4: a 30-day budget gone in 2 days).
    pub max_burn_rate: f64,
    /// Failed or rolled-back deployments in a row that trip it (0: never).
    pub max_consecutive_failures: u32,
    pub probe_interval_secs: u64,
    /// The longest override anyone may grant.
    pub max_override_secs: u64,
}

impl Default for BreakerCfg {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            freeze_windows: Vec::new(),
            alerts_url: String::new(),
            alerts_api: "prometheus".into(),
            alerts: Vec::new(),
            prometheus_url: String::new(),
            burn_rate_query: String::new(),
            max_burn_rate: 0.0,
            max_consecutive_failures: 3,
            probe_interval_secs: 30,
            max_override_secs: 86_400,
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindowCfg {
    pub name: String,
    /// mon tue wed thu fri sat sun; empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// HH:MM local time.
    pub start: String,
    /// HH:MM local time; before `start`: the window crosses midnight.
    pub end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryCfg {
    /// Canary weights in percent, in order; the last must be 100.
    pub steps: Vec<u32>,
    pub step_hold_secs: u64,
    pub analysis_interval_ms: u64,
    /// How far the observed share may be from the target before a step's clock starts.
    pub share_tolerance_pct: u32,
    /// Inconclusive analysis holds; after this long it rolls back.
    pub inconclusive_hold_secs: u64,
    /// "local" (the local router's counters) or "prometheus".
    pub provider: String,
    pub prometheus_url: String,
    pub window_secs: u64,
    /// PromQL templates ({service}, {color}, {window}); empty: defaults.
    pub requests_query: String,
    pub errors_query: String,
    pub p95_query: String,
    /// Ask for an approval before this step (0: never).
    pub approval_at_percent: u32,
}

impl Default for CanaryCfg {
    fn default() -> Self {
        Self {
            steps: vec![10, 25, 50, 75, 100],
            step_hold_secs: 60,
            analysis_interval_ms: 10_000,
            share_tolerance_pct: 5,
            inconclusive_hold_secs: 300,
            provider: "local".into(),
            prometheus_url: String::new(),
            window_secs: 30,
            requests_query: String::new(),
            errors_query: String::new(),
            p95_query: String::new(),
            approval_at_percent: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseCfg {
    /// Environment variable (of the worker, and of the CLI for `migrate plan`) holding the
    /// database URL. The URL itself never appears in configuration, payloads or logs.
    pub url_env: String,
    /// Folder of the migration files, relative to the configuration file.
    #[serde(default = "default_migrations")]
    pub migrations: String,
    /// S3 bucket of the backups taken before every migration run (credentials, region and
    /// endpoint come from the worker's AWS_* environment).
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// Path-style addressing (most S3-compatible servers).
    #[serde(default)]
    pub path_style: bool,
    #[serde(default = "default_part_size_mb")]
    pub part_size_mb: u64,
    /// What a failed run does: "down" (run the down files of what it applied) or "restore"
    /// (restore the whole database from the backup it took).
    #[serde(default = "default_on_failure")]
    pub on_failure: String,
    #[serde(default = "default_lock_timeout_ms")]
    pub lock_timeout_ms: u64,
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

fn default_migrations() -> String {
    "db/migrations".into()
}
fn default_part_size_mb() -> u64 {
    8
}
fn default_on_failure() -> String {
    "down".into()
}
fn default_lock_timeout_ms() -> u64 {
    2000
}
fn default_statement_timeout_ms() -> u64 {
    60_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub kind: String,
    /// local: the platform's admin API.
    #[serde(default)]
    pub admin_url: String,
    /// kubernetes: the namespace of the environment's services.
    #[serde(default)]
    pub namespace: String,
    /// kubernetes: kubeconfig context (default: in-cluster, else the current context).
    #[serde(default)]
    pub context: String,
    /// kubernetes: URL template of a service's preview colour, for the checks before the switch.
    #[serde(default = "default_preview_url")]
    pub preview_url: String,
    /// kubernetes: how canary weights are applied: "gateway" (HTTPRoute) or "istio".
    #[serde(default = "default_canary_routing")]
    pub canary_routing: String,
    /// kubernetes: host of the JTS ingress (default jts.<environment>.example).
    #[serde(default)]
    pub ingress_host: String,
    /// kubernetes: folder of the per-service templates, relative to the configuration file.
    #[serde(default = "default_manifests")]
    pub manifests: String,
}

fn default_preview_url() -> String {
    "http://{service}-preview.{namespace}.svc.cluster.local".into()
}
fn default_canary_routing() -> String {
    "gateway".into()
}
fn default_manifests() -> String {
    "k8s/jts".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsCfg {
    pub max_error_ratio: f64,
    pub max_p95_ms: u64,
    pub min_requests: u64,
}

impl Default for ThresholdsCfg {
    fn default() -> Self {
        Self {
            max_error_ratio: 0.01,
            max_p95_ms: 500,
            min_requests: 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerfCfg {
    pub requests: u32,
    pub concurrency: u32,
    pub path: String,
}

impl Default for PerfCfg {
    fn default() -> Self {
        Self {
            requests: 50,
            concurrency: 5,
            path: String::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalCfg {
    pub required: bool,
    pub approvers: Vec<String>,
    pub distinct_from_requester: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingsCfg {
    pub ready_timeout_secs: u64,
    pub validation_window_secs: u64,
    pub check_interval_ms: u64,
    pub keep_warm_secs: u64,
    pub approval_timeout_secs: u64,
    pub inconclusive_hold_secs: u64,
}

impl Default for TimingsCfg {
    fn default() -> Self {
        Self {
            ready_timeout_secs: 120,
            validation_window_secs: 60,
            check_interval_ms: 5000,
            keep_warm_secs: 900,
            approval_timeout_secs: 86_400,
            inconclusive_hold_secs: 120,
        }
    }
}

/// Default file: `$CUTOVER_CONFIG`, else `cutover.toml` in the working directory.
pub fn default_path() -> PathBuf {
    std::env::var_os("CUTOVER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cutover.toml"))
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            why: format!("{e} (pass --config FILE or set CUTOVER_CONFIG)"),
        })?;
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            why: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        cfg.file = file.to_owned();
        cfg.validate()?;
        Ok(cfg)
    }

    fn invalid(&self, key: impl Into<String>, why: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.into(),
            why: why.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.services.is_empty() {
            return Err(self.invalid("services", "at least one service is required"));
        }
        if self.environments.is_empty() {
            return Err(self.invalid("environments", "at least one environment is required"));
        }
        for (name, s) in &self.services {
            if !is_dns_label(name) {
                return Err(self.invalid(
                    format!("services.{name}"),
                    "service names are DNS labels: lowercase letters, digits and '-'",
                ));
            }
            for d in &s.depends_on {
                if !self.services.contains_key(d) {
                    return Err(self.invalid(
                        format!("services.{name}.depends_on"),
                        format!("unknown service {d:?}"),
                    ));
                }
            }
            for (key, path) in [
                ("readiness_path", &s.readiness_path),
                ("health_path", &s.health_path),
            ] {
                if !path.starts_with('/') {
                    return Err(self.invalid(
                        format!("services.{name}.{key}"),
                        format!("{path:?} must start with '/'"),
                    ));
                }
            }
            if let Some(p) = s.smoke.iter().find(|p| !p.starts_with('/')) {
                return Err(self.invalid(
                    format!("services.{name}.smoke"),
                    format!("{p:?} must start with '/'"),
                ));
            }
            if s.replicas == 0 {
                return Err(self.invalid(format!("services.{name}.replicas"), "must be at least 1"));
            }
            let r = &s.resources;
            for (key, q) in [
                ("cpu_request", &r.cpu_request),
                ("cpu_limit", &r.cpu_limit),
                ("memory_request", &r.memory_request),
                ("memory_limit", &r.memory_limit),
            ] {
                if !is_quantity(q) {
                    return Err(self.invalid(
                        format!("services.{name}.resources.{key}"),
                        format!("{q:?} is not a Kubernetes quantity (e.g. \"250m\", \"512Mi\")"),
                    ));
                }
            }
            if s.warm_replicas > s.replicas {
                return Err(self.invalid(
                    format!("services.{name}.warm_replicas"),
                    format!("{} is more than replicas ({})", s.warm_replicas, s.replicas),
                ));
            }
        }
        self.order()?;
        for (env, e) in &self.environments {
            let key = |k: &str| format!("environments.{env}.{k}");
            if !is_dns_label(env) {
                return Err(self.invalid(
                    format!("environments.{env}"),
                    "environment names are DNS labels: lowercase letters, digits and '-'",
                ));
            }
            match e.platform.kind.as_str() {
                "local" => {
                    let u = &e.platform.admin_url;
                    if url::Url::parse(u).map(|u| u.scheme() == "http" || u.scheme() == "https")
                        != Ok(true)
                    {
                        return Err(self.invalid(
                            key("platform.admin_url"),
                            format!("{u:?} is not an http(s) URL"),
                        ));
                    }
                }
                "kubernetes" => {
                    let p = &e.platform;
                    if !is_dns_label(&p.namespace) {
                        return Err(self.invalid(
                            key("platform.namespace"),
                            "a Kubernetes namespace is required",
                        ));
                    }
                    if !["gateway", "istio"].contains(&p.canary_routing.as_str()) {
                        return Err(self.invalid(
                            key("platform.canary_routing"),
                            format!("{:?}: expected \"gateway\" or \"istio\"", p.canary_routing),
                        ));
                    }
                    let sample = p
                        .preview_url
                        .replace("{service}", "svc")
                        .replace("{namespace}", "ns");
                    if url::Url::parse(&sample)
                        .map(|u| u.scheme() == "http" || u.scheme() == "https")
                        != Ok(true)
                    {
                        return Err(self.invalid(
                            key("platform.preview_url"),
                            format!("{:?} is not an http(s) URL template", p.preview_url),
                        ));
                    }
                }
                other => {
                    return Err(self.invalid(
                        key("platform.kind"),
                        format!("{other:?}: expected \"local\" or \"kubernetes\""),
                    ));
                }
            }
            if let Some(d) = &e.database {
                let ok_var = !d.url_env.is_empty()
                    && d.url_env
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !ok_var {
                    return Err(self.invalid(
                        key("database.url_env"),
                        format!(
                            "{:?}: name an environment variable (A-Z, 0-9, _) that holds the database URL, not the URL",
                            d.url_env
                        ),
                    ));
                }
                if d.bucket.is_empty() {
                    return Err(self.invalid(key("database.bucket"), "a backup bucket is required"));
                }
                if !["down", "restore"].contains(&d.on_failure.as_str()) {
                    return Err(self.invalid(
                        key("database.on_failure"),
                        format!("{:?}: expected \"down\" or \"restore\"", d.on_failure),
                    ));
                }
                if d.part_size_mb < 5 {
                    return Err(
                        self.invalid(key("database.part_size_mb"), "S3 parts are at least 5 MiB")
                    );
                }
            }
            let c = &e.canary;
            if c.steps.last() != Some(&100)
                || c.steps.windows(2).any(|w| w[0] >= w[1])
                || c.steps.iter().any(|p| *p == 0 || *p > 100)
            {
                return Err(self.invalid(
                    key("canary.steps"),
                    format!(
                        "{:?}: increasing percentages from 1 to 100, ending at 100",
                        c.steps
                    ),
                ));
            }
            if !["local", "prometheus"].contains(&c.provider.as_str()) {
                return Err(self.invalid(
                    key("canary.provider"),
                    format!("{:?}: expected \"local\" or \"prometheus\"", c.provider),
                ));
            }
            if c.provider == "prometheus"
                && url::Url::parse(&c.prometheus_url)
                    .map(|u| u.scheme() == "http" || u.scheme() == "https")
                    != Ok(true)
            {
                return Err(self.invalid(
                    key("canary.prometheus_url"),
                    format!("{:?} is not an http(s) URL", c.prometheus_url),
                ));
            }
            if c.approval_at_percent != 0 && !c.steps.contains(&c.approval_at_percent) {
                return Err(self.invalid(
                    key("canary.approval_at_percent"),
                    format!("{} is not one of the steps", c.approval_at_percent),
                ));
            }
            if let Some(b) = &e.breaker {
                self.check_breaker(env, b)?;
            }
            let t = &e.thresholds;
            if !(0.0..=1.0).contains(&t.max_error_ratio) {
                return Err(self.invalid(
                    key("thresholds.max_error_ratio"),
                    format!(
                        "{} is not a ratio between 0 and 1 (1% is 0.01)",
                        t.max_error_ratio
                    ),
                ));
            }
            if t.min_requests == 0 {
                return Err(self.invalid(
                    key("thresholds.min_requests"),
                    "must be at least 1: no traffic is no data, never health",
                ));
            }
            if e.performance.requests > 0 && e.performance.concurrency == 0 {
                return Err(self.invalid(key("performance.concurrency"), "must be at least 1"));
            }
            if !e.performance.path.is_empty() && !e.performance.path.starts_with('/') {
                return Err(self.invalid(key("performance.path"), "must start with '/'"));
            }
            if e.approval.required && e.approval.approvers.is_empty() {
                return Err(self.invalid(
                    key("approval.approvers"),
                    "approval is required but nobody may approve",
                ));
            }
            let tm = &e.timings;
            if tm.check_interval_ms < 100 {
                return Err(self.invalid(key("timings.check_interval_ms"), "must be at least 100"));
            }
            if tm.ready_timeout_secs == 0 || tm.approval_timeout_secs == 0 {
                return Err(self.invalid(
                    key("timings"),
                    "ready_timeout_secs and approval_timeout_secs must be at least 1",
                ));
            }
            for svc in e.replicas.keys() {
                if !self.services.contains_key(svc) {
                    return Err(self.invalid(key(&format!("replicas.{svc}")), "unknown service"));
                }
            }
            if let Some((svc, _)) = e.replicas.iter().find(|(_, r)| **r == 0) {
                return Err(self.invalid(key(&format!("replicas.{svc}")), "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Services in dependency order (dependencies first; ties by name), or the cycle.
    pub fn order(&self) -> Result<Vec<String>, ConfigError> {
        let mut done: Vec<String> = Vec::new();
        while done.len() < self.services.len() {
            let next = self
                .services
                .iter()
                .find(|(n, s)| !done.contains(n) && s.depends_on.iter().all(|d| done.contains(d)));
            match next {
                Some((n, _)) => done.push(n.clone()),
                None => {
                    let stuck: Vec<&String> =
                        self.services.keys().filter(|n| !done.contains(n)).collect();
                    return Err(self.invalid(
                        "services.*.depends_on",
                        format!("dependency cycle among {stuck:?}"),
                    ));
                }
            }
        }
        Ok(done)
    }

    pub fn environment(&self, env: &str) -> Result<&Environment, String> {
        self.environments.get(env).ok_or_else(|| {
            format!(
                "unknown environment {env:?} in {} (known: {})",
                self.file,
                self.environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    fn check_breaker(&self, env: &str, b: &BreakerCfg) -> Result<(), ConfigError> {
        let key = |k: &str| format!("environments.{env}.breaker.{k}");
        if let Err(e) = jiff::tz::TimeZone::get(&b.timezone) {
            return Err(self.invalid(
                key("timezone"),
                format!("{:?} is not a known IANA time zone: {e}", b.timezone),
            ));
        }
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        for (i, w) in b.freeze_windows.iter().enumerate() {
            let k = |f: &str| key(&format!("freeze_windows[{i}].{f}"));
            if w.name.trim().is_empty() {
                return Err(self.invalid(k("name"), "a window needs a name"));
            }
            if let Some(d) = w.days.iter().find(|d| !DAYS.contains(&d.as_str())) {
                return Err(self.invalid(
                    k("days"),
                    format!("{d:?}: expected one of {}", DAYS.join(", ")),
                ));
            }
            for (f, v) in [("start", &w.start), ("end", &w.end)] {
                activities::breaker::hhmm(v).map_err(|e| self.invalid(k(f), e))?;
            }
            if w.start == w.end {
                return Err(self.invalid(k("end"), "equals start: the window would be empty"));
            }
        }
        let http = |u: &str| {
            url::Url::parse(u).map(|u| u.scheme() == "http" || u.scheme() == "https") == Ok(true)
        };
        if !b.alerts_url.is_empty() && !http(&b.alerts_url) {
            return Err(self.invalid(
                key("alerts_url"),
                format!("{:?} is not an http(s) URL", b.alerts_url),
            ));
        }
        if !["prometheus", "alertmanager"].contains(&b.alerts_api.as_str()) {
            return Err(self.invalid(
                key("alerts_api"),
                format!(
                    "{:?}: expected \"prometheus\" or \"alertmanager\"",
                    b.alerts_api
                ),
            ));
        }
        if !b.alerts.is_empty() && b.alerts_url.is_empty() {
            return Err(self.invalid(key("alerts"), "alert names need alerts_url"));
        }
        if !b.burn_rate_query.is_empty() {
            if !http(&b.prometheus_url) {
                return Err(self.invalid(
                    key("prometheus_url"),
                    format!(
                        "{:?} is not an http(s) URL (burn_rate_query needs it)",
                        b.prometheus_url
                    ),
                ));
            }
            if b.max_burn_rate.is_nan() || b.max_burn_rate <= 0.0 {
                return Err(self.invalid(
                    key("max_burn_rate"),
                    "burn_rate_query needs a limit above 0 (e.g. 14.4)",
                ));
            }
        }
        if b.probe_interval_secs == 0 {
            return Err(self.invalid(key("probe_interval_secs"), "must be at least 1"));
        }
        if b.max_override_secs == 0 {
            return Err(self.invalid(key("max_override_secs"), "must be at least 1"));
        }
        Ok(())
    }

    /// The Breaker workflow's configuration for an environment that has a `breaker` section.
    pub fn breaker_config(&self, env_name: &str) -> Result<Option<proto::BreakerConfig>, String> {
        let env = self.environment(env_name)?;
        Ok(env.breaker.as_ref().map(|b| proto::BreakerConfig {
            environment: env_name.to_owned(),
            timezone: b.timezone.clone(),
            windows: b
                .freeze_windows
                .iter()
                .map(|w| proto::FreezeWindow {
                    name: w.name.clone(),
                    days: w.days.clone(),
                    start: w.start.clone(),
                    end: w.end.clone(),
                })
                .collect(),
            alerts_url: b.alerts_url.clone(),
            alerts_api: b.alerts_api.clone(),
            alerts: b.alerts.clone(),
            prometheus_url: b.prometheus_url.clone(),
            burn_rate_query: b.burn_rate_query.clone(),
            max_burn_rate: b.max_burn_rate,
            max_consecutive_failures: b.max_consecutive_failures,
            probe_interval_secs: b.probe_interval_secs,
            max_override_secs: b.max_override_secs,
        }))
    }

    pub fn platform_target(&self, env: &Environment) -> PlatformTarget {
        let p = &env.platform;
        let kube = p.kind == "kubernetes";
        let host = if p.ingress_host.is_empty() && kube {
            format!("jts.{}.example", p.namespace.trim_start_matches("jts-"))
        } else {
            p.ingress_host.clone()
        };
        PlatformTarget {
            kind: p.kind.clone(),
            admin_url: p.admin_url.clone(),
            namespace: p.namespace.clone(),
            kube_context: p.context.clone(),
            preview_url: if kube {
                p.preview_url.clone()
            } else {
                String::new()
            },
            canary_routing: if kube {
                p.canary_routing.clone()
            } else {
                String::new()
            },
            ingress_host: host,
        }
    }

    /// The GradualShift workflow's input for a release.
    pub fn shift_request(&self, d: &DeployRequest) -> Result<proto::ShiftRequest, String> {
        let env = self.environment(&d.environment)?;
        let c = &env.canary;
        Ok(proto::ShiftRequest {
            deployment_id: d.deployment_id.clone(),
            environment: d.environment.clone(),
            revision: d.revision.clone(),
            requested_by: d.requested_by.clone(),
            platform: d.platform.clone(),
            services: d.services.clone(),
            steps: c.steps.clone(),
            step_hold_secs: c.step_hold_secs,
            analysis_interval_ms: c.analysis_interval_ms,
            share_tolerance_pct: c.share_tolerance_pct,
            thresholds: d.thresholds,
            inconclusive_hold_secs: c.inconclusive_hold_secs,
            provider: Some(proto::AnalysisProvider {
                kind: c.provider.clone(),
                prometheus_url: c.prometheus_url.clone(),
                window_secs: c.window_secs,
                requests_query: c.requests_query.clone(),
                errors_query: c.errors_query.clone(),
                p95_query: c.p95_query.clone(),
            }),
            approval_at_percent: c.approval_at_percent,
            approval: d.approval.clone(),
            timings: d.timings,
        })
    }

    /// The Migrate workflow's input for an environment: every migration file of the release.
    pub fn migrate_request(
        &self,
        env_name: &str,
        phase: &str,
        deployment_id: &str,
        requested_by: &str,
    ) -> Result<proto::MigrateRequest, String> {
        let env = self.environment(env_name)?;
        let d = env.database.as_ref().ok_or_else(|| {
            format!(
                "{}: environments.{env_name}.database is not configured",
                self.file
            )
        })?;
        let base = Path::new(&self.file).parent().unwrap_or(Path::new("."));
        let dir = base.join(&d.migrations);
        let files = migrate::load_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(proto::MigrateRequest {
            environment: env_name.to_owned(),
            deployment_id: deployment_id.to_owned(),
            requested_by: requested_by.to_owned(),
            database_url_env: d.url_env.clone(),
            migrations: files
                .into_iter()
                .map(|m| proto::MigrationFile {
                    version: m.version,
                    name: m.name,
                    file: m.file,
                    up_sql: m.up_sql,
                    down_sql: m.down_sql,
                    checksum: m.checksum,
                    contract: m.contract,
                    no_transaction: m.no_transaction,
                })
                .collect(),
            phase: phase.to_owned(),
            backup: Some(proto::BackupTarget {
                bucket: d.bucket.clone(),
                prefix: d.prefix.clone(),
                path_style: d.path_style,
                part_size_bytes: d.part_size_mb * 1024 * 1024,
            }),
            on_failure: d.on_failure.clone(),
            lock_timeout_ms: d.lock_timeout_ms,
            statement_timeout_ms: d.statement_timeout_ms,
            target_version: 0,
        })
    }

    /// The folder of an environment's Kubernetes templates (relative to the configuration file).
    pub fn manifests_dir(&self, env: &Environment) -> PathBuf {
        let base = Path::new(&self.file).parent().unwrap_or(Path::new("."));
        base.join(&env.platform.manifests)
    }

    /// Reads each service's template from the release's manifests folder (kubernetes only).
    /// A missing template is refused here, before anything starts.
    pub fn attach_manifests(
        &self,
        env_name: &str,
        plans: &mut [ServicePlan],
    ) -> Result<(), String> {
        let env = self.environment(env_name)?;
        if env.platform.kind != "kubernetes" {
            return Ok(());
        }
        let dir = self.manifests_dir(env);
        for plan in plans {
            let path = dir.join(format!("{}.yaml", plan.name));
            plan.manifest = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "{}: the template of {} is missing or unreadable: {e} (environments.{env_name}.platform.manifests)",
                    path.display(),
                    plan.name
                )
            })?;
        }
        Ok(())
    }

    /// Every service of the environment, in dependency order, with the release's images.
    /// `images` overrides the default image per service; unknown services and malformed
    /// references are refused here, before anything starts.
    pub fn plan_services(
        &self,
        env_name: &str,
        revision: &str,
        images: &BTreeMap<String, String>,
    ) -> Result<Vec<ServicePlan>, String> {
        let env = self.environment(env_name)?;
        for svc in images.keys() {
            if !self.services.contains_key(svc) {
                return Err(format!(
                    "unknown service {svc:?} (known: {})",
                    self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let order = self.order().map_err(|e| e.to_string())?;
        let mut plans = Vec::new();
        for name in order {
            let s = &self.services[&name];
            let reference = match images.get(&name) {
                Some(r) => r.clone(),
                None => s
                    .image
                    .clone()
                    .unwrap_or_else(|| self.defaults.image.clone())
                    .replace("{service}", &name)
                    .replace("{revision}", revision),
            };
            let parsed = image::parse(&reference).map_err(|e| format!("{name}: {e}"))?;
            let replicas = env.replicas.get(&name).copied().unwrap_or(s.replicas);
            plans.push(ServicePlan {
                name: name.clone(),
                image: reference,
                version: parsed.version(),
                replicas,
                warm_replicas: s.warm_replicas.min(replicas),
                readiness_path: s.readiness_path.clone(),
                health_path: s.health_path.clone(),
                smoke_paths: s.smoke.clone(),
                depends_on: s.depends_on.clone(),
                revision: revision.to_owned(),
                manifest: String::new(),
                resources: Some(Resources {
                    cpu_request: s.resources.cpu_request.clone(),
                    cpu_limit: s.resources.cpu_limit.clone(),
                    memory_request: s.resources.memory_request.clone(),
                    memory_limit: s.resources.memory_limit.clone(),
                }),
            });
        }
        Ok(plans)
    }

    /// The Deploy workflow's input for a release, or why it cannot be made.
    pub fn deploy_request(
        &self,
        env_name: &str,
        revision: &str,
        images: &BTreeMap<String, String>,
        requested_by: &str,
        deployment_id: &str,
    ) -> Result<DeployRequest, String> {
        let env = self.environment(env_name)?;
        if revision.is_empty()
            || !revision
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(format!(
                "revision {revision:?} must be non-empty and made of [A-Za-z0-9._-]"
            ));
        }
        if requested_by.trim().is_empty() {
            return Err("requester identity is empty: pass --as NAME or set CUTOVER_USER".into());
        }
        let mut services = self.plan_services(env_name, revision, images)?;
        self.attach_manifests(env_name, &mut services)?;
        // The release's migrations, refused here (before anything starts) when the safety
        // check fails.
        let migrate = match &env.database {
            None => None,
            Some(_) => {
                let m = self.migrate_request(env_name, "expand", deployment_id, requested_by)?;
                let files: Vec<migrate::Migration> = m
                    .migrations
                    .iter()
                    .map(|f| {
                        migrate::files::migration(
                            f.version,
                            &f.name,
                            f.up_sql.clone(),
                            f.down_sql.clone(),
                        )
                    })
                    .collect();
                let report = migrate::check_migrations(&files);
                if !report.ok {
                    return Err(format!(
                        "the release's migrations fail the safety check:\n{}",
                        report.text()
                    ));
                }
                Some(m)
            }
        };
        let t = &env.timings;
        Ok(DeployRequest {
            deployment_id: deployment_id.to_owned(),
            environment: env_name.to_owned(),
            revision: revision.to_owned(),
            requested_by: requested_by.to_owned(),
            platform: Some(self.platform_target(env)),
            services,
            thresholds: Some(Thresholds {
                max_error_ratio: env.thresholds.max_error_ratio,
                max_p95_ms: env.thresholds.max_p95_ms,
                min_requests: env.thresholds.min_requests,
            }),
            perf: Some(PerfCheck {
                requests: env.performance.requests,
                concurrency: env.performance.concurrency,
                path: env.performance.path.clone(),
            }),
            approval: Some(ApprovalPolicy {
                required: env.approval.required,
                approvers: env.approval.approvers.clone(),
                distinct_from_requester: env
                    .approval
                    .distinct_from_requester
                    .unwrap_or(env.production),
            }),
            timings: Some(Timings {
                ready_timeout_secs: t.ready_timeout_secs,
                validation_window_secs: t.validation_window_secs,
                check_interval_ms: t.check_interval_ms,
                keep_warm_secs: t.keep_warm_secs,
                approval_timeout_secs: t.approval_timeout_secs,
                inconclusive_hold_secs: t.inconclusive_hold_secs,
            }),
            production: env.production,
            migrate,
        })
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[services.risk-management]
smoke = ["/api/risk/limits"]
[services.order-execution]
depends_on = ["risk-management"]
[services.api-gateway]
depends_on = ["order-execution"]

[environments.staging]
platform = { kind = "local", admin_url = "http://127.0.0.1:9400" }
approval = { required = true, approvers = ["alice"] }
"#;

    #[test]
    fn resolves_dependency_order_and_images() {
        let cfg = Config::parse(GOOD, "cutover.toml").unwrap();
        let req = cfg
            .deploy_request("staging", "v2", &BTreeMap::new(), "ci", "d1")
            .unwrap();
        let names: Vec<_> = req.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["risk-management", "order-execution", "api-gateway"]);
        assert_eq!(req.services[0].image, "jts/risk-management:v2");
        assert_eq!(req.services[0].version, "v2");
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let e = Config::parse(
            &GOOD.replace("approvers = [\"alice\"]", "approvers = []"),
            "c.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: environments.staging.approval.approvers: approval is required but nobody may approve"
        );
        let e = Config::parse(&GOOD.replace("smoke =", "smoek ="), "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml: ") && e.contains("smoek"), "{e}");
        let e = Config::parse(
            &GOOD.replace(
                "[\"risk-management\"]\n[services.api",
                "[\"api-gateway\"]\n[services.api",
            ),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dependency cycle"), "{e}");
        let e = Config::parse(
            &GOOD.replace("kind = \"local\"", "kind = \"nomad\""),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("environments.staging.platform.kind"), "{e}");
    }

    #[test]
    fn breaker_settings_are_checked_naming_the_key() {
        let with = |b: &str| {
            Config::parse(&format!("{GOOD}breaker = {{ {b} }}\n"), "c.toml")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(with("timezone = \"Europe/London\", freeze_windows = [{ name = \"open\", days = [\"mon\"], start = \"07:55\", end = \"08:10\" }]").is_ok());
        let cases = [
            (
                "timezone = \"Mars/Olympus\"",
                "breaker.timezone",
                "Mars/Olympus",
            ),
            (
                "freeze_windows = [{ name = \"x\", days = [\"monday\"], start = \"09:00\", end = \"10:00\" }]",
                "breaker.freeze_windows[0].days",
                "monday",
            ),
            (
                "freeze_windows = [{ name = \"x\", start = \"9:00\", end = \"10:00\" }]",
                "breaker.freeze_windows[0].start",
                "HH:MM",
            ),
            (
                "alerts_url = \"prometheus:9090\"",
                "breaker.alerts_url",
                "http(s)",
            ),
            (
                "alerts_api = \"grafana\"",
                "breaker.alerts_api",
                "alertmanager",
            ),
            (
                "burn_rate_query = \"x\", prometheus_url = \"http://p:9090\"",
                "breaker.max_burn_rate",
                "above 0",
            ),
            (
                "max_override_secs = 0",
                "breaker.max_override_secs",
                "at least 1",
            ),
            ("colour = 1", "breaker", "colour"),
        ];
        for (b, key, why) in cases {
            let e = with(b).unwrap_err();
            assert!(
                e.starts_with("c.toml: ") && e.contains(key) && e.contains(why),
                "{b}: {e}"
            );
        }
    }

    #[test]
    fn bad_release_input_is_refused() {
        let cfg = Config::parse(GOOD, "cutover.toml").unwrap();
        let e = cfg
            .deploy_request("prod", "v2", &BTreeMap::new(), "ci", "d")
            .unwrap_err();
        assert!(e.contains("unknown environment \"prod\""), "{e}");
        let images = BTreeMap::from([("billing".to_owned(), "jts/billing:v2".to_owned())]);
        let e = cfg
            .deploy_request("staging", "v2", &images, "ci", "d")
            .unwrap_err();
        assert!(e.contains("unknown service \"billing\""), "{e}");
        let images = BTreeMap::from([("api-gateway".to_owned(), "JTS/api:v2".to_owned())]);
        let e = cfg
            .deploy_request("staging", "v2", &images, "ci", "d")
            .unwrap_err();
        assert!(e.contains("malformed image reference"), "{e}");
    }
}
