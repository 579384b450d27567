//! `cutover deploy ENV --strategy canary` and `cutover canary status | promote | pause | resume`.
//! The canary runs under the environment's deployment workflow id (`deploy-<env>`), so one
//! deployment per environment holds whichever strategy it uses.

use crate::commands::{CmdError, CmdResult, exit, root_message};
use crate::temporal::Settings;
use proto::{DeployRequest, ShiftControl, ShiftRequest, ShiftStatus};
use std::time::Duration;
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowQueryOptions,
    WorkflowSignalOptions, WorkflowStartOptions,
};
use workflows::{ShiftWorkflow, names};

pub async fn start(
    settings: &Settings,
    client: &Client,
    req: &DeployRequest,
    shift: ShiftRequest,
    task_queue: &str,
    wait: bool,
) -> CmdResult {
    let workflow_id = names::deploy_workflow_id(&req.environment);
    let opts = WorkflowStartOptions::new(task_queue.to_owned(), workflow_id.clone())
        .task_timeout(workflows::options::WORKFLOW_TASK_TIMEOUT)
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .static_summary(format!(
            "canary {} → {} ({})",
            req.revision, req.environment, req.deployment_id
        ))
        .build();
    let handle = client.get_workflow_handle::<ShiftWorkflow>(workflow_id.clone());
    let run_id = match client.start_workflow(ShiftWorkflow::run, shift, opts).await {
        Ok(h) => h.run_id().map(str::to_owned).unwrap_or_default(),
        Err(temporalio_client::errors::WorkflowStartError::AlreadyStarted { run_id, .. }) => {
            // The same deployment id means this very request already started it (a start RPC
            // retried after its answer was lost, or the command re-run): starting is idempotent.
            match status_of(client, &req.environment).await {
                Ok(s) if s.deployment_id == req.deployment_id && s.outcome.is_empty() => {
                    eprintln!(
                        "cutover: canary {} was already started (phase {}); following it",
                        s.deployment_id, s.phase
                    );
                    run_id.unwrap_or_default()
                }
                _ => {
                    return Err(CmdError::failed(format!(
                        "refused: a deployment is already running in {} as workflow {workflow_id}; wait for it, or `cutover abort {}`",
                        req.environment, req.environment
                    )));
                }
            }
        }
        Err(other) => {
            return Err(CmdError::failed(format!(
                "cannot start the canary: {other}"
            )));
        }
    };
    println!("workflow_id: {workflow_id}");
    println!("run_id: {run_id}");
    println!("deployment_id: {}", req.deployment_id);
    println!("strategy: canary");
    println!("ui: {}", settings.ui_link(&workflow_id, &run_id));
    if !wait {
        return Ok(exit::SUCCEEDED);
    }
    let result = handle.get_result(Default::default()).await;
    let s = status_of(client, &req.environment).await.ok();
    if let Some(s) = &s {
        print_status(s, false);
    }
    match result {
        Ok(_) => Ok(exit::SUCCEEDED),
        Err(e) => {
            let msg = root_message(&e);
            Ok(match s.as_ref().map(|s| s.outcome.as_str()) {
                Some("rolled_back") => {
                    eprintln!("cutover: canary rolled back: {msg}");
                    exit::ROLLED_BACK
                }
                Some("aborted") => exit::REJECTED_OR_ABORTED,
                _ => return Err(CmdError::failed(format!("canary failed: {msg}"))),
            })
        }
    }
}

pub async fn status_of(client: &Client, environment: &str) -> Result<ShiftStatus, CmdError> {
    client
        .get_workflow_handle::<ShiftWorkflow>(names::deploy_workflow_id(environment))
        .query(ShiftWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| {
            CmdError::failed(format!(
                "no canary status for {environment}: {}",
                root_message(&e)
            ))
        })
}

fn print_status(s: &ShiftStatus, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(s).unwrap_or_default());
        return;
    }
    println!(
        "canary {} in {}: phase {}, {}% on {} (stable {}), outcome {}{}",
        s.deployment_id,
        s.environment,
        s.phase,
        s.percent,
        s.canary_color,
        s.stable_color,
        if s.outcome.is_empty() {
            "-"
        } else {
            &s.outcome
        },
        if s.paused { ", PAUSED" } else { "" }
    );
    if let Some(r) = &s.release {
        crate::commands::print_release(r);
    }
    if let Some(d) = s.decisions.last() {
        println!(
            "last analysis at {}% {}: {} {}",
            d.percent, d.at, d.outcome, d.detail
        );
        for a in &d.services {
            println!(
                "  {:<16} requests {:>8.0}  errors {:>6.2}%  p95 {:>7.1} ms  share {:>5.1}%  {}",
                a.service,
                a.canary_requests,
                a.error_ratio * 100.0,
                a.p95_ms,
                a.share_pct,
                a.outcome
            );
        }
    }
    if !s.reason.is_empty() {
        println!("reason: {}", s.reason);
    }
    if s.revert_ms > 0.0 {
        println!("revert_ms: {:.0}", s.revert_ms);
    }
}

pub async fn status(settings: &Settings, environment: &str, json: bool) -> CmdResult {
    let client = settings.connect("cutover-cli").await?;
    show(&client, environment, json).await
}

/// Prints the environment's canary (also `cutover status` when the release is a canary).
pub async fn show(client: &Client, environment: &str, json: bool) -> CmdResult {
    let s = status_of(client, environment).await?;
    print_status(&s, json);
    Ok(exit::SUCCEEDED)
}

/// promote | pause | resume.
pub async fn control(
    settings: &Settings,
    environment: &str,
    verb: &str,
    c: ShiftControl,
) -> CmdResult {
    if c.by.trim().is_empty() {
        return Err(CmdError::usage("who: pass --as NAME or set CUTOVER_USER"));
    }
    let client = settings.connect(&format!("cutover-cli:{}", c.by)).await?;
    let handle =
        client.get_workflow_handle::<ShiftWorkflow>(names::deploy_workflow_id(environment));
    match verb {
        "promote" => {
            let answer = handle
                .execute_update(
                    ShiftWorkflow::promote,
                    c,
                    WorkflowExecuteUpdateOptions::default(),
                )
                .await
                .map_err(|e| CmdError::failed(format!("promote refused: {}", root_message(&e))))?;
            println!("{answer}");
        }
        "pause" | "resume" => {
            let sig = if verb == "pause" {
                handle
                    .signal(ShiftWorkflow::pause, c, WorkflowSignalOptions::default())
                    .await
            } else {
                handle
                    .signal(ShiftWorkflow::resume, c, WorkflowSignalOptions::default())
                    .await
            };
            sig.map_err(|e| CmdError::failed(format!("{verb}: {}", root_message(&e))))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            println!("{verb} sent to {}", names::deploy_workflow_id(environment));
        }
        other => return Err(CmdError::usage(format!("unknown canary verb {other}"))),
    }
    Ok(exit::SUCCEEDED)
}
