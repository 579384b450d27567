//! `cutover migrate check | plan | status | run | rollback`.

use crate::commands::{CmdError, CmdResult, exit, new_deployment_id, root_message};
use crate::config::Config;
use crate::temporal::Settings;
use proto::{MigrateRequest, MigrateStatus};
use std::path::Path;
use temporalio_client::{WorkflowIdConflictPolicy, WorkflowQueryOptions, WorkflowStartOptions};
use workflows::{MigrateWorkflow, names};

/// The safety check on a folder, on its own (CI): exit 0 only when every file is safe for its
/// phase. `json` prints the full report for machines.
pub fn check(dir: &Path, json: bool) -> CmdResult {
    let report = migrate::check_dir(dir).map_err(|e| CmdError::usage(e.to_string()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for f in &report.files {
            println!(
                "{:<48} phase {:<8} {} statements, {}",
                f.file,
                f.phase,
                f.statements,
                match f.class {
                    Some(migrate::Class::Unsafe) => "UNSAFE",
                    Some(migrate::Class::Contract) => "contract",
                    Some(migrate::Class::Expand) => "expand",
                    None => "empty",
                }
            );
        }
        print!("{}", report.text());
    }
    Ok(if report.ok {
        exit::SUCCEEDED
    } else {
        exit::FAILED
    })
}

fn request(
    cfg: &Config,
    environment: &str,
    phase: &str,
    deployment_id: &str,
    by: &str,
) -> Result<MigrateRequest, CmdError> {
    cfg.migrate_request(environment, phase, deployment_id, by)
        .map_err(CmdError::usage)
}

/// What a run would do, read from the database itself (the CLI needs the same URL variable).
pub async fn plan(cfg: &Config, environment: &str) -> CmdResult {
    let mut req = request(cfg, environment, "expand", "plan", "cli")?;
    let check = activities::migrations::check(&req);
    let expand = activities::migrations::plan(&req)
        .await
        .map_err(|e| CmdError::failed(e.to_string()))?;
    req.phase = "contract".into();
    let contract = activities::migrations::plan(&req).await;
    println!("current version: {}", expand.current_version);
    println!("expand (before the switch):   {:?}", expand.pending);
    match contract {
        Ok(c) => println!("contract (after retirement): {:?}", c.pending),
        Err(e) => println!("contract (after retirement): not yet ({e})"),
    }
    if !expand.blockers.is_empty() {
        println!("blocking sessions: {}", expand.blockers.join("; "));
    }
    print!("{}", check.text);
    Ok(if check.ok {
        exit::SUCCEEDED
    } else {
        exit::FAILED
    })
}

pub async fn status(settings: &Settings, environment: &str, json: bool) -> CmdResult {
    let client = settings.connect("cutover-cli").await?;
    let handle =
        client.get_workflow_handle::<MigrateWorkflow>(names::migrate_workflow_id(environment));
    let s = handle
        .query(MigrateWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| {
            CmdError::failed(format!(
                "no migration run for {environment}: {}",
                root_message(&e)
            ))
        })?;
    print_status(&s, json);
    Ok(exit::SUCCEEDED)
}

fn print_status(s: &MigrateStatus, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(s).unwrap_or_default());
        return;
    }
    println!(
        "migration {} of {} ({} phase): step {}, outcome {}",
        s.deployment_id,
        s.environment,
        s.phase,
        s.step,
        if s.outcome.is_empty() {
            "-"
        } else {
            &s.outcome
        }
    );
    println!(
        "version: {}   pending: {:?}   applied: {:?}   reverted: {:?}",
        s.current_version, s.pending, s.applied, s.reverted
    );
    if let Some(b) = &s.backup {
        println!("backup: {} ({} bytes, sha256 {})", b.key, b.size, b.sha256);
    }
    for e in &s.events {
        println!("  {e}");
    }
    if !s.reason.is_empty() {
        println!("reason: {}", s.reason);
    }
}

pub struct RunArgs {
    pub environment: String,
    pub phase: String,
    pub deployment_id: Option<String>,
    pub by: String,
    pub wait: bool,
    pub task_queue: String,
    /// rollback: revert everything newer than this version.
    pub target_version: Option<i64>,
}

/// Starts the Migrate workflow (one per environment at a time, enforced by the server).
pub async fn run(settings: &Settings, cfg: &Config, a: RunArgs) -> CmdResult {
    if !["expand", "contract", "all", "rollback"].contains(&a.phase.as_str()) {
        return Err(CmdError::usage(format!(
            "--phase {:?}: expected expand, contract or all",
            a.phase
        )));
    }
    let id = a.deployment_id.clone().unwrap_or_else(new_deployment_id);
    let mut req = request(cfg, &a.environment, &a.phase, &id, &a.by)?;
    // The requester: a sealed ID token (the worker verifies it), else the asserted name.
    let purpose = crate::identity::migrate_purpose(&a.environment, &id, &a.phase);
    match crate::identity::sealed_for(Some(cfg), &purpose).await? {
        Some(sealed) => {
            req.sealed_token = sealed;
            req.requested_by.clear();
        }
        None if a.by.trim().is_empty() => {
            return Err(CmdError::usage(
                "requester identity is empty: pass --as NAME or set CUTOVER_USER (or present an OIDC ID token in CUTOVER_ID_TOKEN)",
            ));
        }
        None => {}
    }
    if let Some(v) = a.target_version {
        if v < 0 {
            return Err(CmdError::usage(
                "--to must be a version (0 reverts everything)",
            ));
        }
        req.target_version = v;
    }
    let client = settings.connect(&format!("cutover-cli:{}", a.by)).await?;
    let workflow_id = names::migrate_workflow_id(&a.environment);
    let opts = WorkflowStartOptions::new(a.task_queue.clone(), workflow_id.clone())
        .task_timeout(workflows::options::WORKFLOW_TASK_TIMEOUT)
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .static_summary(format!("migrate {} ({}) {}", a.environment, a.phase, id))
        .build();
    let handle = client
        .start_workflow(MigrateWorkflow::run, req, opts)
        .await
        .map_err(|e| {
            CmdError::failed(format!("cannot start the migration: {}", root_message(&e)))
        })?;
    let run_id = handle.run_id().map(str::to_owned).unwrap_or_default();
    println!("workflow_id: {workflow_id}");
    println!("deployment_id: {id}");
    println!("ui: {}", settings.ui_link(&workflow_id, &run_id));
    if !a.wait {
        return Ok(exit::SUCCEEDED);
    }
    let result = handle.get_result(Default::default()).await;
    let s = handle
        .query(MigrateWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .ok();
    if let Some(s) = &s {
        print_status(s, false);
    }
    match result {
        Ok(_) => Ok(exit::SUCCEEDED),
        Err(e) => Err(CmdError::failed(format!(
            "migration failed: {}",
            root_message(&e)
        ))),
    }
}
