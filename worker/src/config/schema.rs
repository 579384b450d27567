//! The serde structs of `cutover.toml` and their defaults. Every struct refuses unknown keys.

use serde::Deserialize;
use std::collections::BTreeMap;
use workflows::release::PlatformKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub defaults: Defaults,
    pub services: BTreeMap<String, Service>,
    pub environments: BTreeMap<String, Environment>,
    /// Who may start and approve: the OIDC issuers the worker trusts, and the key the CLI seals
    /// ID tokens to.
    #[serde(default)]
    pub identity: IdentityCfg,
    #[serde(skip)]
    pub file: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityCfg {
    /// The worker's X25519 public key (base64): the CLI seals ID tokens to it, so no token is
    /// ever in a workflow history (`cutover identity keygen`).
    pub worker_key: String,
    /// The worker's environment variable holding the matching private key (a secret).
    pub private_key_env: String,
    /// Trusted OIDC issuers by name.
    pub issuers: BTreeMap<String, IssuerCfg>,
}

impl Default for IdentityCfg {
    fn default() -> Self {
        Self {
            worker_key: String::new(),
            private_key_env: "CUTOVER_IDENTITY_KEY".into(),
            issuers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerCfg {
    /// The `iss` claim, e.g. https://token.actions.githubusercontent.com.
    pub issuer: String,
    /// The `aud` claim the worker accepts.
    pub audience: String,
    /// The claim that names the person (GitHub Actions: `actor`).
    pub claim: String,
    /// JWKS URL; empty: the issuer's discovery document names it.
    pub jwks_url: String,
    /// Claims that must have exactly these values (e.g. repository = "jts/trading").
    pub required_claims: BTreeMap<String, String>,
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
    /// Identities asserted with `--as` (no ID token) are accepted: development only, never
    /// in production.
    #[serde(default)]
    pub asserted_identities: bool,
    /// Claims a requester's ID token must carry, exactly, in this environment (e.g. the
    /// GitHub environment and workflow of the deploy job).
    #[serde(default)]
    pub start_claims: BTreeMap<String, String>,
    /// Claims an approver's (or rejecter's) ID token must carry, exactly (e.g. environment =
    /// "production-approval" and the approval workflow's job_workflow_ref).
    #[serde(default)]
    pub approve_claims: BTreeMap<String, String>,
    /// Claims the token of someone rolling back on their own must carry (e.g. the rollback
    /// job's GitHub environment).
    #[serde(default)]
    pub rollback_claims: BTreeMap<String, String>,
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
    /// "local" (the local router's counters) or "prometheus". On Kubernetes it must be
    /// "prometheus", and it also judges blue-green's post-switch window.
    pub provider: String,
    pub prometheus_url: String,
    pub window_secs: u64,
    /// PromQL templates ({service}, {color}, {window}, {namespace}); empty: defaults.
    pub requests_query: String,
    pub errors_query: String,
    pub p95_query: String,
    /// When the environment requires approval: ask before this step (0: before the first).
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

/// Where an environment's services run, by `kind`; each kind takes only its own keys (a
/// Kubernetes key on a local platform is refused as unknown, naming the key).
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Platform {
    /// Real processes behind the local router (the embedded default, the demo).
    Local(LocalPlatformCfg),
    /// Deployments, Services and routes in a Kubernetes namespace.
    Kubernetes(Box<KubernetesPlatformCfg>),
}

impl Platform {
    pub fn kind(&self) -> PlatformKind {
        match self {
            Platform::Local(_) => PlatformKind::Local,
            Platform::Kubernetes(_) => PlatformKind::Kubernetes,
        }
    }

    /// The Kubernetes settings, when the environment runs there.
    pub fn kubernetes(&self) -> Option<&KubernetesPlatformCfg> {
        match self {
            Platform::Kubernetes(k) => Some(k),
            Platform::Local(_) => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPlatformCfg {
    /// The platform's admin API (checked by validation, naming the key).
    #[serde(default)]
    pub admin_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesPlatformCfg {
    /// The namespace of the environment's services (checked by validation, naming the key).
    #[serde(default)]
    pub namespace: String,
    /// kubeconfig context (default: in-cluster, else the current context).
    #[serde(default)]
    pub context: String,
    /// URL template of a service's preview colour, for the checks before the switch.
    #[serde(default = "default_preview_url")]
    pub preview_url: String,
    /// How canary weights are applied: "gateway" (HTTPRoute) or "istio".
    #[serde(default = "default_canary_routing")]
    pub canary_routing: String,
    /// Host of the JTS ingress (default jts.<environment>.example).
    #[serde(default)]
    pub ingress_host: String,
    /// Folder of the per-service templates, relative to the configuration file.
    #[serde(default = "default_manifests")]
    pub manifests: String,
    /// Gateway API: the Gateway the HTTPRoutes attach to, and its namespace (default: the
    /// environment's namespace).
    #[serde(default = "default_gateway")]
    pub gateway: String,
    #[serde(default)]
    pub gateway_namespace: String,
    /// Host template ({service}, {namespace}) of each service's live route through the Gateway
    /// (to `<service>-active`); empty: routes exist only for canary weights.
    #[serde(default)]
    pub route_host: String,
    /// Host template of each service's preview route (to `<service>-preview`); the checks before
    /// the switch go through it (it replaces `preview_url`).
    #[serde(default)]
    pub preview_host: String,
    /// IP:port where the worker reaches the Gateway for the preview hosts (default: DNS, port 80).
    #[serde(default)]
    pub gateway_address: String,
    /// Image preflight: every image reference is resolved against its registry (OCI
    /// distribution API) before a release starts and deployed as `image@sha256:…`. On by
    /// default; a production environment cannot turn it off.
    #[serde(default = "default_true")]
    pub resolve_images: bool,
}

fn default_true() -> bool {
    true
}

fn default_gateway() -> String {
    "jts".into()
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
