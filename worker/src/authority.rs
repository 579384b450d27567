//! The worker is the authority: a release's policy comes from the worker's own configuration
//! (read once at start), never from the request.
//!
//! `authorize_release` (the first step of every release, patch `worker-authority`) takes the
//! request as the client sent it and
//! - refuses an environment the worker does not serve, or a workflow id other than the
//!   environment's one-at-a-time id;
//! - verifies the requester: a sealed OIDC ID token ([`crate::identity`]), or an asserted name
//!   where the environment's configuration allows it (never in production);
//! - completes the release from the configuration (services, platform, thresholds, timings,
//!   approval, database, breaker) around what the request carries (images, templates,
//!   migrations), and runs the migration safety check on the migrations, fail-closed;
//! - compares every policy field the request names with the worker's: a disagreement is refused
//!   naming the field and the worker's value (a request may only be stricter on thresholds and
//!   timing floors); a request that names its platform declares all of its policy, so a field it
//!   leaves out (approval, breaker) is one it drops, and is refused too;
//! - records the digests of what runs; starts (or re-configures) the environment's circuit
//!   breaker with the worker's settings.
//!
//! `verify_identity` verifies an approval decision's identity against the worker's approval
//! policy (approvers, requester ≠ approver).

use crate::config::{Config, Environment};
use crate::identity::{self, Verifier};
use proto::{
    AuthorizeRequest, AuthorizedRelease, DeployRequest, IdentityRequest, IdentityVerdict,
    ReleaseRecord, ShiftRequest,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use workflows::names;

/// The worker's configuration and identity key, and the issuers' keys it has fetched.
pub struct AuthorityActivities {
    cfg: Config,
    key: Option<crypto_box::SecretKey>,
    verifier: Verifier,
    /// The image preflight's HTTP client, built on first use.
    registry_http: std::sync::OnceLock<reqwest::Client>,
}

/// How long the image preflight may take in all (the authorisation has 30 s).
const PREFLIGHT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Why an authorisation did not happen: a refusal (never retried) or an outage (retried).
enum No {
    Refused(String),
    Unavailable(String),
}

impl From<String> for No {
    fn from(s: String) -> Self {
        No::Refused(s)
    }
}

impl No {
    fn into_error(self) -> ActivityError {
        match self {
            No::Refused(why) => activities::error::Failure::InvalidInput(why),
            No::Unavailable(why) => activities::error::Failure::Unavailable(why),
        }
        .into_activity_error()
    }
}

impl AuthorityActivities {
    /// The worker's authority from its configuration and its environment (the identity key).
    pub fn new(cfg: Config) -> Result<Self, String> {
        let var = &cfg.identity.private_key_env;
        let key = match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            Some(v) => Some(identity::secret_key(&v).map_err(|e| format!("{var}: {e}"))?),
            None if !cfg.identity.issuers.is_empty() => {
                return Err(format!(
                    "{}: identity.issuers are configured but {var} (the worker's private key) is not set",
                    cfg.file
                ));
            }
            None => None,
        };
        if let Some(k) = &key {
            let public = base64_public(k);
            if !cfg.identity.worker_key.is_empty() && public != cfg.identity.worker_key.trim() {
                return Err(format!(
                    "{}: identity.worker_key is not the public key of {var}",
                    cfg.file
                ));
            }
        }
        Ok(Self {
            cfg,
            key,
            verifier: Verifier::new(),
            registry_http: std::sync::OnceLock::new(),
        })
    }

    pub fn environments(&self) -> Vec<String> {
        self.cfg.environments.keys().cloned().collect()
    }

    fn environment(&self, name: &str) -> Result<&Environment, No> {
        self.cfg.environments.get(name).ok_or_else(|| {
            No::Refused(format!(
                "environment {name:?} is not served by this worker (its configuration names: {})",
                self.environments().join(", ")
            ))
        })
    }

    /// Who acts: the identity in a sealed token for `purpose`, or an asserted name where the
    /// environment allows it. (identity, how it was verified)
    async fn identity(
        &self,
        env_name: &str,
        sealed: &str,
        asserted: &str,
        purpose: &str,
        required: &std::collections::BTreeMap<String, String>,
    ) -> Result<(String, String), No> {
        let env = self.environment(env_name)?;
        if sealed.is_empty() {
            if !env.asserted_identities {
                return Err(No::Refused(format!(
                    "environment {env_name} accepts only verified identities: present an OIDC ID token ({} or GitHub Actions' with `id-token: write`); an asserted name (--as {asserted:?}) is refused there",
                    identity::TOKEN_ENV
                )));
            }
            if asserted.trim().is_empty() {
                return Err(No::Refused(
                    "no identity: pass --as NAME (or set CUTOVER_USER) or present an ID token"
                        .into(),
                ));
            }
            return Ok((asserted.to_owned(), "asserted".to_owned()));
        }
        let Some(key) = &self.key else {
            return Err(No::Refused(format!(
                "this worker has no identity key ({}): it cannot open ID tokens",
                self.cfg.identity.private_key_env
            )));
        };
        let token = identity::open(key, sealed, purpose)?;
        match self
            .verifier
            .verify(&self.cfg.identity.issuers, &token)
            .await
        {
            Ok(v) => {
                if let Some(why) = v.lacks(required) {
                    return Err(No::Refused(format!("in {env_name}: {why}")));
                }
                if !asserted.is_empty() && asserted != v.identity {
                    return Err(No::Refused(format!(
                        "the name given ({asserted:?}) is not the token's identity ({:?})",
                        v.identity
                    )));
                }
                Ok((v.identity, format!("oidc {}", v.issuer)))
            }
            Err(Ok(why)) => Err(No::Refused(why)),
            Err(Err(outage)) => Err(No::Unavailable(format!(
                "the issuer's keys could not be fetched: {outage}"
            ))),
        }
    }

    async fn authorize(
        &self,
        ctx: &ActivityContext,
        req: AuthorizeRequest,
    ) -> Result<AuthorizedRelease, No> {
        let workflow_id = ctx
            .info()
            .workflow_id
            .clone()
            .unwrap_or(req.workflow_id.clone());
        if let Some(m) = req.migrate {
            return self.authorize_migrate(ctx, m, &workflow_id).await;
        }
        if let Some(r) = req.rollback {
            return self.authorize_rollback(ctx, r, &workflow_id).await;
        }
        let (release, shift) = match (req.deploy, req.shift) {
            (Some(d), None) => (d, None),
            (None, Some(s)) => (release_of(&s), Some(s)),
            _ => {
                return Err(No::Refused(
                    "a release is a deploy or a shift request".into(),
                ));
            }
        };
        let env_name = release.environment.clone();
        self.environment(&env_name)?;
        Self::one_at_a_time(
            &workflow_id,
            names::deploy_workflow_id(&env_name),
            "a release",
            &env_name,
        )?;
        if release.deployment_id.trim().is_empty() {
            return Err(No::Refused("deployment_id is empty".into()));
        }
        let mut resolved = self.cfg.resolve_release(&release)?;
        // The requester's token names this deployment and exactly this content.
        let digest = record(&resolved, String::new(), String::new()).digest;
        let (requester, verified) = self
            .identity(
                &env_name,
                &release.sealed_token,
                &release.requested_by,
                &identity::start_purpose(&env_name, &release.deployment_id, &digest),
                &self.environment(&env_name)?.start_claims,
            )
            .await?;
        resolved.requested_by.clone_from(&requester);
        if let Some(m) = &mut resolved.migrate {
            m.requested_by.clone_from(&requester);
        }
        let full = release.platform.is_some();
        let (mut deploy, mut shift) = match shift {
            None => (policy::settle(&release, &resolved, full, &env_name)?, None),
            Some(s) => {
                let mut theirs = self.cfg.shift_request(&resolved).map_err(No::Refused)?;
                theirs.breaker = resolved.breaker.clone();
                let settled = policy::settle(&s, &theirs, s.platform.is_some(), &env_name)?;
                (resolved.clone(), Some(settled))
            }
        };
        // Image preflight: the release runs (and the approval names) the digests the
        // registries hold now.
        if self.resolves_images(&env_name)? {
            let pinned = self.pin_images(&deploy.services).await?;
            for s in &mut deploy.services {
                s.image.clone_from(&pinned[&s.name]);
            }
            if let Some(sh) = &mut shift {
                for s in &mut sh.services {
                    if let Some(p) = pinned.get(&s.name) {
                        s.image.clone_from(p);
                    }
                }
            }
        }
        if let Some(b) = &deploy.breaker {
            let client = ctx.client();
            crate::breaker_cmd::ensure_config(&client, b.clone(), &ctx.info().task_queue)
                .await
                .map_err(|e| No::Unavailable(e.message))?;
        }
        let record = record(&deploy, requester, verified);
        tracing::info!(
            environment = env_name,
            deployment = deploy.deployment_id,
            requester = record.requester,
            verified = record.verified,
            digest = record.digest,
            "release authorized"
        );
        Ok(AuthorizedRelease {
            deploy: Some(deploy),
            shift,
            record: Some(record),
            ..Default::default()
        })
    }

    /// Whether the environment's images are resolved to digests before a release starts (on
    /// Kubernetes unless its configuration says `resolve_images = false`, never in production).
    fn resolves_images(&self, env: &str) -> Result<bool, No> {
        Ok(self
            .environment(env)?
            .platform
            .kubernetes()
            .is_some_and(|k| k.resolve_images))
    }

    /// Each service's image pinned to the digest its registry holds now: the distinct
    /// references resolved at once, all within [`PREFLIGHT_DEADLINE`] (inside the activity's
    /// 30 s); a missing or refused image stops the release, named (the first service in the
    /// release's order), and an unanswered one is retried.
    async fn pin_images(
        &self,
        services: &[proto::ServicePlan],
    ) -> Result<std::collections::BTreeMap<String, String>, No> {
        use crate::registry::Unresolved;
        let logins = crate::registry::Logins::from_env().map_err(No::Refused)?;
        let http = self.registry_http.get_or_init(crate::registry::client);
        let mut distinct: Vec<&str> = services.iter().map(|s| s.image.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let lookups = futures::future::join_all(
            distinct
                .iter()
                .map(|r| crate::registry::resolve(http, r, &logins)),
        );
        let results = tokio::time::timeout(PREFLIGHT_DEADLINE, lookups)
            .await
            .map_err(|_| {
                No::Unavailable(format!(
                    "image preflight: the registries did not answer within {} s",
                    PREFLIGHT_DEADLINE.as_secs()
                ))
            })?;
        let resolved: std::collections::BTreeMap<&str, Result<String, Unresolved>> =
            distinct.into_iter().zip(results).collect();
        let mut out = std::collections::BTreeMap::new();
        for s in services {
            let pinned = resolved[s.image.as_str()].clone().map_err(|e| match e {
                Unresolved::Refused(w) => No::Refused(format!("image preflight: {}: {w}", s.name)),
                Unresolved::Unavailable(w) => {
                    No::Unavailable(format!("image preflight: {}: {w}", s.name))
                }
            })?;
            tracing::info!(service = s.name, image = s.image, pinned, "image resolved");
            out.insert(s.name.clone(), pinned);
        }
        Ok(out)
    }

    /// The run's workflow id is the environment's one for `what` (the server then keeps it
    /// one at a time).
    fn one_at_a_time(workflow_id: &str, expected: String, what: &str, env: &str) -> Result<(), No> {
        if workflow_id != expected {
            return Err(No::Refused(format!(
                "workflow id {workflow_id:?}: {what} of {env} runs as {expected:?} (one at a time per environment)"
            )));
        }
        Ok(())
    }

    /// Whether this run is a child of the environment's release (which the worker authorised,
    /// identity and approval included): the server's record of its parent, not the request.
    async fn child_of_release(ctx: &ActivityContext, env: &str) -> Result<bool, No> {
        use temporalio_client::grpc::WorkflowService;
        use temporalio_client::tonic::Request;
        use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
        use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeWorkflowExecutionRequest;
        let info = ctx.info();
        let mut client = ctx.client();
        let described = client
            .describe_workflow_execution(Request::new(DescribeWorkflowExecutionRequest {
                namespace: info.namespace.clone(),
                execution: Some(WorkflowExecution {
                    workflow_id: info.workflow_id.clone().unwrap_or_default(),
                    run_id: info.workflow_run_id.clone().unwrap_or_default(),
                }),
            }))
            .await
            .map_err(|e| {
                No::Unavailable(format!("the run could not be described: {}", e.message()))
            })?
            .into_inner();
        let parent = described
            .workflow_execution_info
            .and_then(|i| i.parent_execution)
            .map(|p| p.workflow_id);
        Ok(parent.as_deref() == Some(names::deploy_workflow_id(env).as_str()))
    }

    /// A migration run (`cutover migrate run`, or a release's phase): the database, bucket and
    /// timeouts from the worker's configuration; the files' markers as their SQL says. Run on
    /// its own (not by a release), it needs the requester's identity, and where the environment
    /// requires approval only the expand phase may run outside a release (contract and
    /// rollback SQL pass through a release's approval gate).
    async fn authorize_migrate(
        &self,
        ctx: &ActivityContext,
        m: proto::MigrateRequest,
        workflow_id: &str,
    ) -> Result<AuthorizedRelease, No> {
        let env_name = m.environment.clone();
        let env = self.environment(&env_name)?;
        Self::one_at_a_time(
            workflow_id,
            names::migrate_workflow_id(&env_name),
            "a migration run",
            &env_name,
        )?;
        let mut requester = m.requested_by.clone();
        if !Self::child_of_release(ctx, &env_name).await? {
            if env.approval.required && m.phase != "expand" {
                return Err(No::Refused(format!(
                    "a {} migration run on its own is refused in {env_name}, which requires approval: contract and rollback SQL run as part of a release, after its approval gate",
                    m.phase
                )));
            }
            let purpose = identity::migrate_purpose(&env_name, &m.deployment_id, &m.phase);
            requester = self
                .identity(
                    &env_name,
                    &m.sealed_token,
                    &m.requested_by,
                    &purpose,
                    &env.start_claims,
                )
                .await?
                .0;
        }
        let mut theirs = self
            .cfg
            .migrate_request_of(
                &env_name,
                &m.phase,
                &m.deployment_id,
                &requester,
                Vec::new(),
            )
            .map_err(No::Refused)?;
        theirs.migrations = crate::config::reparse(&m.migrations);
        theirs.target_version = m.target_version;
        let full = !m.database_url_env.is_empty();
        let mut settled = policy::settle(&m, &theirs, full, &env_name)?;
        settled.requested_by = requester;
        settled.sealed_token.clear();
        Ok(AuthorizedRelease {
            migrate: Some(settled),
            ..Default::default()
        })
    }

    /// A rollback: the platform and the services from the worker's configuration; on its own
    /// (`cutover rollback`, not a release's), the requester's identity.
    async fn authorize_rollback(
        &self,
        ctx: &ActivityContext,
        r: proto::RollbackRequest,
        workflow_id: &str,
    ) -> Result<AuthorizedRelease, No> {
        let env_name = r.environment.clone();
        let env = self.environment(&env_name)?;
        Self::one_at_a_time(
            workflow_id,
            names::rollback_workflow_id(&env_name),
            "a rollback",
            &env_name,
        )?;
        let mut requester = r.requested_by.clone();
        if !Self::child_of_release(ctx, &env_name).await? {
            let purpose = identity::rollback_purpose(&env_name, &r.deployment_id);
            requester = self
                .identity(
                    &env_name,
                    &r.sealed_token,
                    &r.requested_by,
                    &purpose,
                    &env.rollback_claims,
                )
                .await?
                .0;
        }
        let services = self
            .cfg
            .plan_services(&env_name, "rollback", &Default::default())
            .map_err(No::Refused)?;
        let floor = env.timings.ready_timeout_secs;
        let theirs = proto::RollbackRequest {
            platform: Some(self.cfg.platform_target(env)),
            services,
            ready_timeout_secs: r.ready_timeout_secs.clamp(floor, floor.saturating_mul(10)),
            ..r.clone()
        };
        let mut settled = policy::settle(&r, &theirs, r.platform.is_some(), &env_name)?;
        settled.requested_by = requester;
        settled.sealed_token.clear();
        Ok(AuthorizedRelease {
            rollback: Some(settled),
            ..Default::default()
        })
    }

    async fn verify(&self, req: IdentityRequest) -> Result<IdentityVerdict, No> {
        let env = self.environment(&req.environment)?;
        let purpose = identity::decision_purpose(&req.action, &req.deployment_id, &req.digest);
        let refused = |why: String| {
            Ok(IdentityVerdict {
                refused: why,
                ..Default::default()
            })
        };
        let (who, how) = match self
            .identity(
                &req.environment,
                &req.sealed_token,
                &req.asserted,
                &purpose,
                &env.approve_claims,
            )
            .await
        {
            Ok(id) => id,
            Err(No::Refused(why)) => return refused(why),
            Err(e) => return Err(e),
        };
        if !env.approval.approvers.contains(&who) {
            return refused(format!(
                "{who:?} may not decide deployments to {} (approvers: {})",
                req.environment,
                env.approval.approvers.join(", ")
            ));
        }
        let distinct = env
            .approval
            .distinct_from_requester
            .unwrap_or(env.production);
        if req.action == "approve" && distinct && who == req.requester {
            return refused(format!(
                "{who:?} requested deployment {} and may not approve it too",
                req.deployment_id
            ));
        }
        Ok(IdentityVerdict {
            identity: who,
            verified: how,
            refused: String::new(),
        })
    }
}

#[activities]
impl AuthorityActivities {
    #[activity(name = names::AUTHORIZE_RELEASE)]
    pub async fn authorize_release(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: AuthorizeRequest,
    ) -> Result<AuthorizedRelease, ActivityError> {
        self.authorize(&ctx, req).await.map_err(No::into_error)
    }

    #[activity(name = names::VERIFY_IDENTITY)]
    pub async fn verify_identity(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: IdentityRequest,
    ) -> Result<IdentityVerdict, ActivityError> {
        self.verify(req).await.map_err(No::into_error)
    }
}

fn base64_public(k: &crypto_box::SecretKey) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(k.public_key().as_bytes())
}

/// The release a canary request carries, as a deploy request (policy left as sent).
fn release_of(s: &ShiftRequest) -> DeployRequest {
    DeployRequest {
        deployment_id: s.deployment_id.clone(),
        environment: s.environment.clone(),
        revision: s.revision.clone(),
        requested_by: s.requested_by.clone(),
        services: s.services.clone(),
        migrate: s.migrate.clone(),
        sealed_token: s.sealed_token.clone(),
        ..Default::default()
    }
}

fn sha256(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    format!("sha256:{:x}", h.finalize())
}

/// The digests of what a release runs: its templates and migrations, its image references,
/// and the release digest approvals name (revision, both digests).
pub fn record(d: &DeployRequest, requester: String, verified: String) -> ReleaseRecord {
    let mut content: Vec<&[u8]> = Vec::new();
    let mut services: Vec<_> = d.services.iter().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    for s in &services {
        content.extend([
            b"template".as_slice(),
            s.name.as_bytes(),
            s.manifest.as_bytes(),
        ]);
    }
    let files = d
        .migrate
        .as_ref()
        .map(|m| m.migrations.as_slice())
        .unwrap_or_default();
    let versions: Vec<String> = files.iter().map(|f| f.version.to_string()).collect();
    for (f, v) in files.iter().zip(&versions) {
        content.extend([
            b"migration".as_slice(),
            v.as_bytes(),
            f.file.as_bytes(),
            f.up_sql.as_bytes(),
            f.down_sql.as_bytes(),
        ]);
    }
    let content_digest = sha256(&content);
    let images: std::collections::BTreeMap<String, String> = d
        .services
        .iter()
        .map(|s| (s.name.clone(), s.image.clone()))
        .collect();
    let image_parts: Vec<&[u8]> = images
        .iter()
        .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()])
        .collect();
    let images_digest = sha256(&image_parts);
    let digest = sha256(&[
        d.environment.as_bytes(),
        d.revision.as_bytes(),
        content_digest.as_bytes(),
        images_digest.as_bytes(),
    ]);
    ReleaseRecord {
        digest,
        content_digest,
        images_digest,
        images,
        requester,
        verified,
        revision: d.revision.clone(),
    }
}

/// The comparison of a request's policy with the worker's.
pub mod policy {
    use super::*;

    /// Fields that describe the release, not its policy: taken from the request as they are.
    const RELEASE: [&str; 18] = [
        "deployment_id",
        "environment",
        "revision",
        "requested_by",
        "sealed_token",
        // A migration run's and a rollback's own.
        "migrations",
        "phase",
        "target_version",
        "to_color",
        "reason",
        "ready_timeout_secs",
        "migrate.migrations",
        "migrate.phase",
        "migrate.deployment_id",
        "migrate.requested_by",
        "migrate.environment",
        "migrate.target_version",
        "services",
    ];

    /// Fields a request may set stricter than the worker (true: higher is stricter).
    /// Higher values are capped at [`STRICTER_CAP`] times the worker's (a request must not hold
    /// the environment's one-at-a-time lock for days, nor demand traffic it never gets).
    const STRICTER: [(&str, bool); 6] = [
        ("thresholds.max_error_ratio", false),
        ("thresholds.max_p95_ms", false),
        ("thresholds.min_requests", true),
        ("timings.validation_window_secs", true),
        ("timings.keep_warm_secs", true),
        ("step_hold_secs", true),
    ];
    pub const STRICTER_CAP: f64 = 10.0;

    /// The worker's `theirs` with the request's stricter values, or every disagreement.
    /// `full`: the request declares all of its policy (it names its platform), so a field it
    /// leaves empty where the worker has one is dropped, and refused.
    pub fn settle<T: serde::Serialize + serde::de::DeserializeOwned>(
        request: &T,
        theirs: &T,
        full: bool,
        env: &str,
    ) -> Result<T, String> {
        let req = serde_json::to_value(request).map_err(|e| e.to_string())?;
        let mut worker = serde_json::to_value(theirs).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        walk("", &req, &mut worker, full, env, &mut out);
        services(&req, &worker, env, &mut out);
        if !out.is_empty() {
            return Err(format!(
                "the request disagrees with the worker's configuration of {env}: {}",
                out.join("; ")
            ));
        }
        serde_json::from_value(worker).map_err(|e| e.to_string())
    }

    fn default(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.values().all(default),
        }
    }

    fn show(v: &Value) -> String {
        let s = match v {
            Value::Null => "none".to_owned(),
            v => v.to_string(),
        };
        if s.chars().count() > 160 {
            format!("{}…", s.chars().take(160).collect::<String>())
        } else {
            s
        }
    }

    fn walk(
        path: &str,
        req: &Value,
        worker: &mut Value,
        full: bool,
        env: &str,
        out: &mut Vec<String>,
    ) {
        if RELEASE.contains(&path) {
            return;
        }
        match (req, &mut *worker) {
            (Value::Object(r), Value::Object(w)) => {
                for (k, rv) in r {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match w.get_mut(k) {
                        Some(wv) => walk(&p, rv, wv, full, env, out),
                        None if default(rv) || RELEASE.contains(&p.as_str()) => {}
                        None => out.push(format!("{p}: not a field the worker knows")),
                    }
                }
            }
            (r, w) => {
                if r == w || (default(r) && (!full || default(w))) {
                    return;
                }
                if let (Some(rn), Some(wn)) = (r.as_f64(), w.as_f64())
                    && let Some((_, higher)) = STRICTER.iter().find(|(p, _)| *p == path)
                {
                    let stricter = if *higher {
                        rn > wn
                    } else {
                        rn < wn && rn > 0.0
                    };
                    if stricter && *higher && rn > wn.max(1.0) * STRICTER_CAP {
                        out.push(format!(
                            "{path}: the request's {} is more than {STRICTER_CAP} times the worker's {}",
                            show(r),
                            show(w)
                        ));
                        return;
                    }
                    if stricter {
                        *w = r.clone();
                        return;
                    }
                    out.push(format!(
                        "{path}: the request's {} is looser than the worker's {}",
                        show(r),
                        show(w)
                    ));
                    return;
                }
                out.push(format!(
                    "{path}: the request says {}, the worker's configuration of {env} says {}",
                    show(r),
                    show(w)
                ));
            }
        }
    }

    /// The services a request names: known to the worker, and (beyond image and template)
    /// shaped as the worker's configuration says.
    fn services(req: &Value, worker: &Value, env: &str, out: &mut Vec<String>) {
        let (Some(rs), Some(ws)) = (
            req.get("services").and_then(Value::as_array),
            worker.get("services").and_then(Value::as_array),
        ) else {
            return;
        };
        const OWN: [&str; 5] = ["name", "image", "version", "manifest", "revision"];
        for r in rs {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            let Some(w) = ws
                .iter()
                .find(|w| w.get("name").and_then(Value::as_str) == Some(name))
            else {
                out.push(format!(
                    "services: {name:?} is not a service of the worker's configuration"
                ));
                continue;
            };
            let (Some(r), Some(w)) = (r.as_object(), w.as_object()) else {
                continue;
            };
            for (k, rv) in r {
                if OWN.contains(&k.as_str()) || default(rv) {
                    continue;
                }
                let wv = w.get(k).cloned().unwrap_or(Value::Null);
                if *rv != wv {
                    out.push(format!(
                        "services.{name}.{k}: the request says {}, the worker's configuration of {env} says {}",
                        show(rv),
                        show(&wv)
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let text = format!(
            "{}\n[environments.production]\nplatform = {{ kind = \"local\", admin_url = \"http://127.0.0.1:9400\" }}\nproduction = true\napproval = {{ required = true, approvers = [\"alice\"] }}\nthresholds = {{ max_error_ratio = 0.01, max_p95_ms = 500, min_requests = 20 }}\n",
            testkit_free_services()
        );
        Config::parse(&text, "cutover.toml").unwrap()
    }

    fn testkit_free_services() -> &'static str {
        "[services.risk-management]\n[services.api-gateway]\ndepends_on = [\"risk-management\"]\n"
    }

    fn worker_request() -> DeployRequest {
        cfg()
            .deploy_request("production", "v2", &Default::default(), "carol", "d1")
            .unwrap()
    }

    #[test]
    fn a_request_equal_to_the_worker_passes_and_a_reduced_one_is_completed() {
        let theirs = worker_request();
        let settled = policy::settle(&theirs, &theirs, true, "production").unwrap();
        assert_eq!(settled, theirs);
        let reduced = DeployRequest {
            deployment_id: "d1".into(),
            environment: "production".into(),
            revision: "v2".into(),
            requested_by: "carol".into(),
            ..Default::default()
        };
        let settled = policy::settle(&reduced, &theirs, false, "production").unwrap();
        assert_eq!(settled, theirs);
    }

    #[test]
    fn each_disagreement_is_named_with_the_workers_value() {
        let theirs = worker_request();
        let mut r = theirs.clone();
        r.approval.as_mut().unwrap().required = false;
        r.production = false;
        r.thresholds.as_mut().unwrap().max_error_ratio = 0.5;
        let e = policy::settle(&r, &theirs, true, "production").unwrap_err();
        assert!(e.contains("approval.required: the request says false, the worker's configuration of production says true"), "{e}");
        assert!(e.contains("production: the request says false"), "{e}");
        assert!(
            e.contains(
                "thresholds.max_error_ratio: the request's 0.5 is looser than the worker's 0.01"
            ),
            "{e}"
        );
        // Stricter is allowed, and adopted.
        let mut r = theirs.clone();
        r.thresholds.as_mut().unwrap().max_error_ratio = 0.001;
        let settled = policy::settle(&r, &theirs, true, "production").unwrap();
        assert_eq!(settled.thresholds.unwrap().max_error_ratio, 0.001);
        // A full request that leaves approval out drops it.
        let mut r = theirs.clone();
        r.approval = None;
        let e = policy::settle(&r, &theirs, true, "production").unwrap_err();
        assert!(e.contains("approval: the request says none"), "{e}");
    }

    #[test]
    fn stricter_values_are_capped_and_the_rest_must_match() {
        let theirs = worker_request();
        let mut r = theirs.clone();
        r.timings.as_mut().unwrap().validation_window_secs = 10 * 3600 * 24;
        let e = policy::settle(&r, &theirs, true, "production").unwrap_err();
        assert!(
            e.contains(
                "timings.validation_window_secs: the request's 864000 is more than 10 times"
            ),
            "{e}"
        );
        let mut r = theirs.clone();
        r.perf.as_mut().unwrap().requests = 1_000_000;
        let e = policy::settle(&r, &theirs, true, "production").unwrap_err();
        assert!(e.contains("perf.requests: the request says 1000000"), "{e}");
        let mut r = theirs.clone();
        r.thresholds.as_mut().unwrap().max_p95_ms = 0;
        let e = policy::settle(&r, &theirs, true, "production").unwrap_err();
        assert!(
            e.contains("thresholds.max_p95_ms: the request's 0 is looser"),
            "{e}"
        );
    }

    #[test]
    fn the_digest_changes_with_any_template_migration_or_image() {
        let d = worker_request();
        let base = record(&d, "carol".into(), "asserted".into());
        let mut t = d.clone();
        t.services[0].manifest = "kind: Deployment".into();
        let mut i = d.clone();
        i.services[0].image = "jts/risk-management:v3".into();
        let (rt, ri) = (
            record(&t, "c".into(), "a".into()),
            record(&i, "c".into(), "a".into()),
        );
        assert_ne!(base.digest, rt.digest);
        assert_ne!(base.content_digest, rt.content_digest);
        assert_eq!(base.images_digest, rt.images_digest);
        assert_ne!(base.digest, ri.digest);
        assert_eq!(base.content_digest, ri.content_digest);
        assert!(base.digest.starts_with("sha256:") && base.digest.len() == 71);
    }
}
