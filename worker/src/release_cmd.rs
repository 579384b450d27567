//! The environment's running release, whichever strategy it runs, addressed through the
//! contract every release answers (`workflows::release::contract`), and how a new release makes
//! way for itself.

use crate::commands::{CmdError, root_message};
use proto::{AbortRequest, DeployRequest};
use std::time::{Duration, Instant};
use temporalio_client::{Client, WorkflowHandle, WorkflowQueryOptions, WorkflowSignalOptions};
use temporalio_common::UntypedWorkflow;
use workflows::names;
use workflows::release::contract::{self, Summary};
use workflows::release::{Outcome, Phase};

/// How long a superseded release may take to retire its old colour and run its contract
/// migrations before the new deploy gives up waiting.
const SUPERSEDE_WAIT: Duration = Duration::from_secs(600);
/// A release recorded before `supersede` existed never acknowledges it.
const ACK_WAIT: Duration = Duration::from_secs(15);

pub fn release_handle(
    client: &Client,
    environment: &str,
) -> WorkflowHandle<Client, UntypedWorkflow> {
    client.get_workflow_handle::<UntypedWorkflow>(names::deploy_workflow_id(environment))
}

/// The status of the environment's running release; None when none runs.
pub async fn running_status(client: &Client, environment: &str) -> Option<Summary> {
    let handle = release_handle(client, environment);
    let desc = handle.describe(Default::default()).await.ok()?;
    if desc.status() != temporalio_client::WorkflowExecutionStatus::Running {
        return None;
    }
    handle
        .query(contract::STATUS, (), WorkflowQueryOptions::default())
        .await
        .ok()
}

/// Waits until the environment's release has closed (at most `limit`); its last status.
pub async fn wait_closed(
    client: &Client,
    environment: &str,
    limit: Duration,
) -> Result<Summary, CmdError> {
    let deadline = Instant::now() + limit;
    while running_status(client, environment).await.is_some() {
        if Instant::now() >= deadline {
            return Err(CmdError::failed(format!(
                "the release of {environment} did not close within {} s; see `cutover status {environment}`",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    release_handle(client, environment)
        .query(contract::STATUS, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| {
            CmdError::failed(format!(
                "cannot read the deployment's status: {}",
                root_message(&e)
            ))
        })
}

/// The status of the environment's release once it has closed, however long that takes.
pub async fn wait_closed_status(client: &Client, environment: &str) -> Result<Summary, CmdError> {
    wait_closed(client, environment, Duration::from_secs(7 * 86_400)).await
}

/// Before a deploy starts. A running release whose outcome is known is either finishing (wait
/// until it closes) or in its keep-warm period: it is superseded — it retires the old colour,
/// runs its contract migrations, and closes with its outcome unchanged — so a release deployed
/// right after `deploy --wait` returned is never refused. A release still in progress (or this
/// very deployment) is left alone: the start that follows refuses (or follows) it.
pub async fn make_way(client: &Client, req: &DeployRequest) -> Result<(), CmdError> {
    let env = &req.environment;
    let Some(s) = running_status(client, env).await else {
        return Ok(());
    };
    if s.deployment_id == req.deployment_id || s.outcome.is_empty() {
        return Ok(());
    }
    // A release that has reached `done` is only closing: wait for it.
    if s.outcome == Outcome::Succeeded.as_str() && s.phase != Phase::Done.as_str() {
        eprintln!(
            "cutover: superseding deployment {} (succeeded; old colour warm until {}): ending its keep-warm period",
            s.deployment_id, s.warm_until
        );
        let note = AbortRequest {
            by: req.requested_by.clone(),
            reason: format!("{} ({})", req.deployment_id, req.revision),
        };
        let sent = release_handle(client, env)
            .signal(contract::SUPERSEDE, note, WorkflowSignalOptions::default())
            .await;
        match sent {
            Ok(()) => acknowledged(client, env, &s).await?,
            // It closed between the status and the signal: nothing left to supersede.
            Err(_) if running_status(client, env).await.is_none() => {}
            Err(e) => {
                return Err(CmdError::failed(format!(
                    "cannot supersede {}: {}",
                    s.deployment_id,
                    root_message(&e)
                )));
            }
        }
    }
    let end = wait_closed(client, env, SUPERSEDE_WAIT).await?;
    let last = end
        .events
        .iter()
        .rev()
        .find(|e| e.contains("superseded by"))
        .cloned()
        .unwrap_or_else(|| format!("{} {}", end.outcome, end.reason));
    eprintln!("cutover: deployment {} closed: {last}", end.deployment_id);
    Ok(())
}

/// The superseded release says so in its events (or closes) within ACK_WAIT; a release
/// recorded before `supersede` existed does neither.
async fn acknowledged(client: &Client, env: &str, s: &Summary) -> Result<(), CmdError> {
    let deadline = Instant::now() + ACK_WAIT;
    loop {
        match running_status(client, env).await {
            None => return Ok(()),
            Some(now) if now.events.iter().any(|e| e.contains("superseded by")) => return Ok(()),
            Some(_) if Instant::now() >= deadline => {
                return Err(CmdError::failed(format!(
                    "refused: deployment {} is in its keep-warm period until {} and started before releases could supersede it; deploy after that time",
                    s.deployment_id, s.warm_until
                )));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
