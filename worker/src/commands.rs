//! The client verbs: each validates its input before any side effect, then talks to Temporal.

use crate::config::Config;
use crate::release_cmd::{release_handle, running_status, wait_closed_status};
use crate::temporal::Settings;
use proto::{AbortRequest, ApprovalDecision, DeployRequest, DeployStatus, RollbackRequest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowQueryOptions,
    WorkflowSignalOptions, WorkflowStartOptions,
};
use workflows::deploy::outcome;
use workflows::release::{Colour, contract};
use workflows::{DeployWorkflow, RollbackWorkflow, names};

/// Exit codes of `deploy --wait` and `rollback --wait`.
pub mod exit {
    pub const SUCCEEDED: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const ROLLED_BACK: i32 = 3;
    pub const REJECTED_OR_ABORTED: i32 = 4;
}

/// A failure of a verb: what to print and which exit code to use.
#[derive(Debug)]
pub struct CmdError {
    pub code: i32,
    pub message: String,
}

impl CmdError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: exit::FAILED,
            message: message.into(),
        }
    }
}

impl From<String> for CmdError {
    fn from(message: String) -> Self {
        Self::failed(message)
    }
}

pub type CmdResult = Result<i32, CmdError>;

/// `dep-<unix seconds>-<4 hex>`: unique enough per environment, sortable by time.
pub fn new_deployment_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mix = (now.subsec_nanos() as u64 ^ (u64::from(std::process::id()) << 16)) & 0xffff;
    format!("dep-{}-{mix:04x}", now.as_secs())
}

pub fn parse_images(pairs: &[String]) -> Result<BTreeMap<String, String>, CmdError> {
    let mut images = BTreeMap::new();
    for p in pairs {
        let (svc, reference) = p
            .split_once('=')
            .ok_or_else(|| CmdError::usage(format!("--image {p:?}: expected SERVICE=IMAGE")))?;
        images.insert(svc.to_owned(), reference.to_owned());
    }
    Ok(images)
}

pub struct DeployArgs {
    pub environment: String,
    pub revision: String,
    pub images: Vec<String>,
    pub requested_by: String,
    pub deployment_id: Option<String>,
    pub wait: bool,
    pub task_queue: String,
    /// blue-green (default) or canary.
    pub strategy: String,
}

pub fn build_deploy_request(cfg: &Config, a: &DeployArgs) -> Result<DeployRequest, CmdError> {
    let images = parse_images(&a.images)?;
    let id = a.deployment_id.clone().unwrap_or_else(new_deployment_id);
    cfg.deploy_request(&a.environment, &a.revision, &images, &a.requested_by, &id)
        .map_err(CmdError::usage)
}

pub async fn deploy(settings: &Settings, cfg: &Config, a: DeployArgs) -> CmdResult {
    // Everything is checked before the workflow starts: bad input has no side effect.
    let mut req = build_deploy_request(cfg, &a)?;
    // The requester: an OIDC ID token sealed to the worker (the worker verifies it), else the
    // asserted name (accepted only where the worker's configuration allows it).
    // The token names this deployment and exactly this release (the worker computes the same
    // digest from what it authorises).
    let digest = crate::authority::record(&req, String::new(), String::new()).digest;
    let purpose = crate::identity::start_purpose(&req.environment, &req.deployment_id, &digest);
    match crate::identity::sealed_for(Some(cfg), &purpose).await? {
        Some(sealed) => {
            req.sealed_token = sealed;
            req.requested_by.clear();
            if let Some(m) = &mut req.migrate {
                m.requested_by.clear();
            }
        }
        None if req.requested_by.trim().is_empty() => {
            return Err(CmdError::usage(format!(
                "requester identity is empty: pass --as NAME or set CUTOVER_USER (or present an OIDC ID token in {})",
                crate::identity::TOKEN_ENV
            )));
        }
        None => {}
    }
    let shift = match a.strategy.as_str() {
        "blue-green" => None,
        "canary" => {
            let mut s = cfg.shift_request(&req).map_err(CmdError::usage)?;
            s.sealed_token.clone_from(&req.sealed_token);
            s.breaker.clone_from(&req.breaker);
            Some(s)
        }
        other => {
            return Err(CmdError::usage(format!(
                "--strategy {other:?}: expected blue-green or canary"
            )));
        }
    };
    let client = settings
        .connect(&format!("cutover-cli:{}", a.requested_by))
        .await?;
    // The environment's circuit breaker: while it blocks, nothing starts.
    crate::breaker_cmd::gate(&client, cfg, &a.environment, &a.task_queue).await?;
    // A release in its keep-warm period (or finishing) makes way for this one.
    crate::release_cmd::make_way(&client, &req).await?;
    if let Some(shift) = shift {
        return crate::canary_cmd::start(settings, &client, &req, shift, &a.task_queue, a.wait)
            .await;
    }
    let workflow_id = names::deploy_workflow_id(&a.environment);
    let opts = WorkflowStartOptions::new(a.task_queue.clone(), workflow_id.clone())
        .task_timeout(workflows::options::WORKFLOW_TASK_TIMEOUT)
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .static_summary(format!(
            "{} → {} ({})",
            req.revision, req.environment, req.deployment_id
        ))
        .build();
    let run_id = match client
        .start_workflow(DeployWorkflow::run, req.clone(), opts)
        .await
    {
        Ok(h) => h.run_id().map(str::to_owned).unwrap_or_default(),
        Err(temporalio_client::errors::WorkflowStartError::AlreadyStarted { run_id, .. }) => {
            let running = running_status(&client, &a.environment).await;
            // The same deployment id means this very request already started it (a start RPC
            // retried after its answer was lost, or the command re-run): starting is idempotent.
            if let Some(s) = running
                .as_ref()
                .filter(|s| s.deployment_id == req.deployment_id)
            {
                eprintln!(
                    "cutover: deployment {} was already started (phase {}); following it",
                    s.deployment_id, s.phase
                );
                run_id.unwrap_or_default()
            } else {
                let detail = match running {
                    Some(s) => format!(
                        "deployment {} of {} requested by {} (phase {})",
                        s.deployment_id, s.revision, s.requested_by, s.phase
                    ),
                    None => "another deployment".to_owned(),
                };
                return Err(CmdError::failed(format!(
                    "refused: {detail} is already running in {} as workflow {workflow_id} (run {}); wait for it, or `cutover abort {}`",
                    a.environment,
                    run_id.unwrap_or_default(),
                    a.environment
                )));
            }
        }
        Err(e) => {
            return Err(CmdError::failed(format!(
                "cannot start the deployment: {e}"
            )));
        }
    };
    println!("workflow_id: {workflow_id}");
    println!("run_id: {run_id}");
    println!("deployment_id: {}", req.deployment_id);
    println!("ui: {}", settings.ui_link(&workflow_id, &run_id));
    if !a.wait {
        return Ok(exit::SUCCEEDED);
    }
    follow(&client, &a.environment, &req.deployment_id).await
}

/// Prints a deployment's progress until it has an outcome; the exit code follows the outcome.
pub async fn follow(client: &Client, environment: &str, deployment_id: &str) -> CmdResult {
    let handle =
        client.get_workflow_handle::<DeployWorkflow>(names::deploy_workflow_id(environment));
    let mut printed = 0;
    let mut last_ok = Instant::now();
    loop {
        match handle
            .query(DeployWorkflow::status, (), WorkflowQueryOptions::default())
            .await
        {
            Ok(s) if s.deployment_id == deployment_id => {
                last_ok = Instant::now();
                for e in s.events.iter().skip(printed) {
                    println!("  {e}");
                }
                printed = s.events.len();
                if !s.outcome.is_empty() {
                    print_checks(&s);
                    println!(
                        "outcome: {}{}",
                        s.outcome,
                        if s.reason.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", s.reason)
                        }
                    );
                    println!("switch_ms: {:.3}", s.switch_ms);
                    if s.revert_ms > 0.0 {
                        println!("revert_ms: {:.0}", s.revert_ms);
                    }
                    return Ok(match s.outcome.as_str() {
                        outcome::SUCCEEDED => exit::SUCCEEDED,
                        outcome::ROLLED_BACK => exit::ROLLED_BACK,
                        outcome::REJECTED | outcome::ABORTED => exit::REJECTED_OR_ABORTED,
                        _ => exit::FAILED,
                    });
                }
            }
            Ok(_) => {
                return Err(CmdError::failed(format!(
                    "{environment} now runs another deployment than {deployment_id}"
                )));
            }
            Err(e) if last_ok.elapsed() > Duration::from_secs(300) => {
                return Err(CmdError::failed(format!(
                    "lost the deployment's status for 5 minutes: {e}"
                )));
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_checks(s: &DeployStatus) {
    for c in &s.checks {
        println!(
            "  check {:<11} {:<16} {:<5} {:<12} requests={} errors={} error_ratio={:.4} p95_ms={:.1} {}",
            c.name,
            c.service,
            c.color,
            c.outcome,
            c.requests,
            c.errors,
            c.error_ratio,
            c.p95_ms,
            c.detail
        );
    }
}

/// `approve` / `reject`: shows what is decided (revision, release digest, images), sends the
/// decision naming that digest with the decider's sealed ID token (or asserted name), and
/// waits until the worker has verified who took it.
pub async fn decide(
    settings: &Settings,
    cfg: Option<&Config>,
    environment: &str,
    mut decision: ApprovalDecision,
    approve: bool,
    wanted_digest: Option<String>,
) -> CmdResult {
    let client = settings.connect("cutover-cli").await?;
    let handle = release_handle(&client, environment);
    let before = handle
        .query(contract::STATUS, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| {
            CmdError::failed(format!(
                "refused: no deployment is running in {environment}: {}",
                root_message(&e)
            ))
        })?;
    let action = if approve { "approve" } else { "reject" };
    let record = before.release.clone().unwrap_or_default();
    if !record.digest.is_empty() {
        println!(
            "{action}: deployment {} of {} (requested by {})",
            before.deployment_id, before.environment, before.requested_by
        );
        println!("  release: {}", record.digest);
        println!("  content: {}", record.content_digest);
        for (svc, image) in &record.images {
            println!("  image {svc}: {image}");
        }
        if let Some(w) = &wanted_digest
            && *w != record.digest
        {
            return Err(CmdError::failed(format!(
                "refused: --digest {w} is not the release deployment {} runs ({}); nothing was sent",
                before.deployment_id, record.digest
            )));
        }
        decision.digest.clone_from(&record.digest);
        let purpose =
            crate::identity::decision_purpose(action, &decision.deployment_id, &record.digest);
        if let Some(sealed) = crate::identity::sealed_for(cfg, &purpose).await? {
            decision.sealed_token = sealed;
            decision.approver.clear();
        }
    } else if let Some(w) = &wanted_digest {
        decision.digest.clone_from(w);
    }
    if decision.sealed_token.is_empty() && decision.approver.trim().is_empty() {
        return Err(CmdError::usage(format!(
            "approver identity is empty: pass --as NAME or set CUTOVER_USER (or present an OIDC ID token in {})",
            crate::identity::TOKEN_ENV
        )));
    }
    let update = if approve {
        contract::APPROVE
    } else {
        contract::REJECT
    };
    let result = handle
        .execute_update(update, decision, WorkflowExecuteUpdateOptions::default())
        .await;
    match result {
        Ok(_) => {}
        Err(temporalio_client::errors::WorkflowUpdateError::Failed(f)) => {
            return Err(CmdError::failed(format!("refused: {}", f.message)));
        }
        Err(temporalio_client::errors::WorkflowUpdateError::NotFound(_)) => {
            return Err(CmdError::failed(format!(
                "refused: no deployment is running in {environment}"
            )));
        }
        Err(e) => return Err(CmdError::failed(format!("refused: {}", root_message(&e)))),
    }
    // The worker verifies who decided before the decision counts (worker-authority runs).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = handle
            .query(contract::STATUS, (), WorkflowQueryOptions::default())
            .await
            .map_err(|e| CmdError::failed(format!("decided, but: {}", root_message(&e))))?;
        if s.approvals.len() > before.approvals.len() {
            let last = s.approvals.last().cloned().unwrap_or_default();
            let how = if last.verified.is_empty() {
                String::new()
            } else {
                format!(", {}", last.verified)
            };
            println!(
                "{} {} by {} (revision {}{how})",
                s.deployment_id, last.decision, last.approver, last.revision
            );
            return Ok(exit::SUCCEEDED);
        }
        let refused = s.events.iter().skip(before.events.len()).find_map(|e| {
            e.split_once(&format!("{action} refused: "))
                .map(|(_, why)| why.to_owned())
        });
        if let Some(why) = refused {
            return Err(CmdError::failed(format!("refused: {why}")));
        }
        if !s.outcome.is_empty() || Instant::now() > deadline {
            return Err(CmdError::failed(format!(
                "sent, but the worker has not recorded the decision (phase {}, outcome {:?}); see `cutover status {environment}`",
                s.phase, s.outcome
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The innermost message of an error chain (what the validator or server said).
pub fn root_message(e: &(dyn std::error::Error + 'static)) -> String {
    workflows::failures::innermost(e)
}

pub async fn abort(
    settings: &Settings,
    environment: &str,
    req: AbortRequest,
    rollback: bool,
) -> CmdResult {
    let client = settings.connect(&format!("cutover-cli:{}", req.by)).await?;
    if running_status(&client, environment).await.is_none() {
        return Err(CmdError::failed(format!(
            "no deployment is running in {environment}"
        )));
    }
    let signal = if rollback {
        contract::ROLLBACK
    } else {
        contract::ABORT
    };
    let sent = release_handle(&client, environment)
        .signal(signal, req, WorkflowSignalOptions::default())
        .await;
    sent.map_err(|e| CmdError::failed(format!("cannot signal {environment}: {e}")))?;
    println!(
        "{} sent to {}",
        if rollback { "rollback" } else { "abort" },
        names::deploy_workflow_id(environment)
    );
    Ok(exit::SUCCEEDED)
}

/// The images (by digest) of `environment`'s latest release, if it succeeded with `revision`.
pub async fn images(settings: &Settings, environment: &str, revision: &str) -> CmdResult {
    let client = settings.connect("cutover-cli").await?;
    let desc = release_handle(&client, environment)
        .describe(Default::default())
        .await
        .ok();
    let started = desc.as_ref().and_then(|d| d.start_time());
    let (deployment, outcome, record) =
        if desc.is_some_and(|d| d.workflow_type() == names::SHIFT_WORKFLOW) {
            let s = crate::canary_cmd::status_of(&client, environment).await?;
            (s.deployment_id, s.outcome, s.release)
        } else {
            let s = client
                .get_workflow_handle::<DeployWorkflow>(names::deploy_workflow_id(environment))
                .query(DeployWorkflow::status, (), WorkflowQueryOptions::default())
                .await
                .map_err(|e| {
                    CmdError::failed(format!("no release in {environment}: {}", root_message(&e)))
                })?;
            (s.deployment_id, s.outcome, s.release)
        };
    let Some(r) = record.filter(|r| !r.images.is_empty()) else {
        return Err(CmdError::failed(format!(
            "{environment}'s latest release ({deployment}) recorded no images"
        )));
    };
    if r.revision != revision {
        return Err(CmdError::failed(format!(
            "{environment}'s latest release ({deployment}) is revision {:?}, not {revision:?}: deploy {revision} there first",
            r.revision
        )));
    }
    if outcome != "succeeded" {
        return Err(CmdError::failed(format!(
            "{environment}'s latest release ({deployment}, {revision}) has outcome {:?}: only a release that succeeded passes its images on",
            if outcome.is_empty() {
                "running"
            } else {
                &outcome
            }
        )));
    }
    // A rollback after it (during its keep-warm period) took the release back.
    let rollback = client
        .get_workflow_handle::<temporalio_common::UntypedWorkflow>(names::rollback_workflow_id(
            environment,
        ))
        .describe(Default::default())
        .await
        .ok()
        .and_then(|d| d.start_time());
    if let (Some(release), Some(rollback)) = (started, rollback)
        && rollback > release
    {
        return Err(CmdError::failed(format!(
            "{environment}'s latest release ({deployment}, {revision}) was rolled back after it succeeded: its images are not passed on"
        )));
    }
    let unpinned: Vec<&String> = r
        .images
        .values()
        .filter(|i| !i.contains("@sha256:"))
        .collect();
    if !unpinned.is_empty() {
        return Err(CmdError::failed(format!(
            "{environment} ran images without a digest ({}): its worker's configuration has resolve_images = false",
            unpinned
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (service, image) in &r.images {
        println!("{service}={image}");
    }
    Ok(exit::SUCCEEDED)
}

pub async fn status(settings: &Settings, environment: &str, json: bool) -> CmdResult {
    let client = settings.connect("cutover-cli").await?;
    // The environment's release may be a canary: shown as `cutover canary status` shows it.
    let desc = release_handle(&client, environment)
        .describe(Default::default())
        .await;
    if desc.is_ok_and(|d| d.workflow_type() == names::SHIFT_WORKFLOW) {
        return crate::canary_cmd::show(&client, environment, json).await;
    }
    let handle =
        client.get_workflow_handle::<DeployWorkflow>(names::deploy_workflow_id(environment));
    let s = handle
        .query(DeployWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| {
            CmdError::failed(format!(
                "no deployment status for {environment}: {}",
                root_message(&e)
            ))
        })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(exit::SUCCEEDED);
    }
    println!(
        "deployment: {} ({} → {}, requested by {})",
        s.deployment_id, s.revision, s.environment, s.requested_by
    );
    println!(
        "phase: {}   outcome: {}   live colour: {}   target: {}",
        s.phase,
        if s.outcome.is_empty() {
            "-"
        } else {
            &s.outcome
        },
        s.active_color,
        s.target_color
    );
    if !s.reason.is_empty() {
        println!("reason: {}", s.reason);
    }
    if let Some(r) = &s.release {
        print_release(r);
    }
    for svc in &s.services {
        println!(
            "  service {:<16} {:<10} {:<6} {}",
            svc.name, svc.version, svc.active_color, svc.state
        );
    }
    print_checks(&s);
    for a in &s.approvals {
        println!(
            "  {} by {} for {} at {} {}{}",
            a.decision,
            a.approver,
            a.revision,
            a.at,
            a.comment,
            if a.verified.is_empty() {
                String::new()
            } else {
                format!(" ({})", a.verified)
            }
        );
    }
    if s.switch_ms > 0.0 {
        println!("switch_ms: {:.3}", s.switch_ms);
    }
    if !s.warm_until.is_empty() {
        println!("old colour warm until: {}", s.warm_until);
    }
    Ok(exit::SUCCEEDED)
}

pub struct RollbackArgs {
    pub environment: String,
    pub reason: String,
    pub by: String,
    pub to: Option<String>,
    pub wait: bool,
    pub task_queue: String,
}

pub async fn rollback(settings: &Settings, cfg: &Config, a: RollbackArgs) -> CmdResult {
    if a.reason.trim().is_empty() {
        return Err(CmdError::usage("a rollback needs --reason"));
    }
    if let Some(c) = &a.to
        && Colour::parse(c).is_none()
    {
        return Err(CmdError::usage(format!(
            "--to {c:?}: expected blue or green"
        )));
    }
    let env = cfg.environment(&a.environment).map_err(CmdError::usage)?;
    // The release images do not matter for a rollback: it keeps each colour's version.
    let services = cfg
        .plan_services(&a.environment, "rollback", &BTreeMap::new())
        .map_err(CmdError::usage)?;
    let client = settings.connect(&format!("cutover-cli:{}", a.by)).await?;
    if running_status(&client, &a.environment).await.is_some() {
        // A running deployment owns the environment: it rolls back through its own Rollback
        // (also during its warm period). One that is already finishing closes without taking
        // the signal; then the Rollback workflow below does it.
        let id = names::deploy_workflow_id(&a.environment);
        let handle = release_handle(&client, &a.environment);
        handle
            .signal(
                contract::ROLLBACK,
                AbortRequest {
                    by: a.by.clone(),
                    reason: a.reason.clone(),
                },
                WorkflowSignalOptions::default(),
            )
            .await
            .map_err(|e| CmdError::failed(format!("cannot signal the running deployment: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let running = running_status(&client, &a.environment).await.is_some();
            let st = handle
                .query(contract::STATUS, (), WorkflowQueryOptions::default())
                .await
                .ok();
            let took = st.as_ref().is_some_and(|s| {
                s.phase == workflows::release::Phase::RollingBack.as_str()
                    || s.outcome == outcome::ROLLED_BACK
            });
            if took {
                println!("rollback taken by the running deployment {id}");
                if !a.wait {
                    return Ok(exit::SUCCEEDED);
                }
                let end = wait_closed_status(&client, &a.environment).await?;
                println!(
                    "deployment {}: {} {}",
                    end.deployment_id, end.outcome, end.reason
                );
                return Ok(if end.outcome == outcome::ROLLED_BACK {
                    exit::SUCCEEDED
                } else {
                    exit::FAILED
                });
            }
            if !running {
                break;
            }
            if Instant::now() >= deadline {
                return Err(CmdError::failed(format!(
                    "the running deployment {id} has not taken the rollback within 30 s; see `cutover status {}`",
                    a.environment
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{id} closed before taking the rollback: starting the Rollback workflow");
    }
    let mut req = RollbackRequest {
        environment: a.environment.clone(),
        platform: Some(cfg.platform_target(env)),
        services,
        to_color: a.to.clone().unwrap_or_default(),
        reason: a.reason.clone(),
        deployment_id: new_deployment_id(),
        requested_by: a.by.clone(),
        ready_timeout_secs: env.timings.ready_timeout_secs,
        sealed_token: String::new(),
    };
    // The requester: a sealed ID token (the worker verifies it), else the asserted name.
    let purpose = crate::identity::rollback_purpose(&a.environment, &req.deployment_id);
    if let Some(sealed) = crate::identity::sealed_for(Some(cfg), &purpose).await? {
        req.sealed_token = sealed;
        req.requested_by.clear();
    }
    let workflow_id = names::rollback_workflow_id(&a.environment);
    let opts = WorkflowStartOptions::new(a.task_queue.clone(), workflow_id.clone())
        .task_timeout(workflows::options::WORKFLOW_TASK_TIMEOUT)
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .static_summary(format!("rollback {}: {}", a.environment, a.reason))
        .build();
    let handle = client
        .start_workflow(RollbackWorkflow::run, req, opts)
        .await
        .map_err(|e| {
            CmdError::failed(format!("cannot start the rollback: {}", root_message(&e)))
        })?;
    let run_id = handle.run_id().map(str::to_owned).unwrap_or_default();
    println!("workflow_id: {workflow_id}");
    println!("ui: {}", settings.ui_link(&workflow_id, &run_id));
    if !a.wait {
        return Ok(exit::SUCCEEDED);
    }
    match handle.get_result(Default::default()).await {
        Ok(r) => {
            println!(
                "rolled back to {} (moved: {}) in {:.0} ms",
                r.color,
                r.moved.join(", "),
                r.revert_ms
            );
            Ok(exit::SUCCEEDED)
        }
        Err(e) => Err(CmdError::failed(format!(
            "rollback failed: {}",
            root_message(&e)
        ))),
    }
}

/// What the worker authorised: the digests approvals name, the images, who requested it.
pub fn print_release(r: &proto::ReleaseRecord) {
    println!("release: {}", r.digest);
    println!(
        "  content: {}   images: {}",
        r.content_digest, r.images_digest
    );
    for (svc, image) in &r.images {
        println!("  image {svc}: {image}");
    }
    println!("  requested by {} ({})", r.requester, r.verified);
}
