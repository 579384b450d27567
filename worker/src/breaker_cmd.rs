//! `cutover breaker status | trip | reset | freeze | override`, and the gate `cutover deploy`
//! passes before it starts anything.
//!
//! The breaker of an environment is the long-running workflow `breaker-<env>`. Every command
//! that touches it first makes sure it runs (start with id-conflict policy UseExisting) and
//! hands it the configuration from `cutover.toml` (a change is audited in its history).

use crate::commands::{CmdError, CmdResult, exit, root_message};
use crate::config::Config;
use crate::temporal::Settings;
use proto::{BreakerAction, BreakerRequest, BreakerStatus};
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowQueryOptions,
    WorkflowSignalOptions, WorkflowStartOptions,
};
use workflows::{BreakerWorkflow, names};

/// Exit code of `cutover deploy` refused by an open breaker.
pub const EXIT_BREAKER_OPEN: i32 = 5;

/// "90s", "30m", "2h", "1d" or plain seconds.
pub fn parse_duration(s: &str) -> Result<u64, CmdError> {
    let bad = || {
        CmdError::usage(format!(
            "--for {s:?}: expected a duration like 90s, 30m, 2h, 1d"
        ))
    };
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    Ok(n * mult)
}

/// Starts the environment's breaker if it is not running, and hands it the configuration.
/// None when the environment has no `breaker` section.
async fn ensure(
    client: &Client,
    cfg: &Config,
    environment: &str,
    task_queue: &str,
) -> Result<bool, CmdError> {
    let Some(config) = cfg.breaker_config(environment).map_err(CmdError::usage)? else {
        return Ok(false);
    };
    ensure_config(client, config, task_queue).await?;
    Ok(true)
}

/// Starts the breaker of `config.environment` if it is not running, and hands it `config`
/// (the worker does this with its own configuration before every release).
pub async fn ensure_config(
    client: &Client,
    config: proto::BreakerConfig,
    task_queue: &str,
) -> Result<(), CmdError> {
    let environment = config.environment.clone();
    let id = names::breaker_workflow_id(&environment);
    let opts = WorkflowStartOptions::new(task_queue.to_owned(), id.clone())
        .task_timeout(workflows::options::WORKFLOW_TASK_TIMEOUT)
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .static_summary(format!("circuit breaker of {environment}"))
        .build();
    let req = BreakerRequest {
        config: Some(config.clone()),
        carried: None,
    };
    client
        .start_workflow(BreakerWorkflow::run, req, opts)
        .await
        .map_err(|e| CmdError::failed(format!("cannot start the breaker {id}: {e}")))?;
    client
        .get_workflow_handle::<BreakerWorkflow>(id.clone())
        .signal(
            BreakerWorkflow::configure,
            config,
            WorkflowSignalOptions::default(),
        )
        .await
        .map_err(|e| CmdError::failed(format!("cannot configure the breaker {id}: {e}")))?;
    Ok(())
}

async fn query(client: &Client, environment: &str) -> Result<BreakerStatus, CmdError> {
    client
        .get_workflow_handle::<BreakerWorkflow>(names::breaker_workflow_id(environment))
        .query(BreakerWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| {
            CmdError::failed(format!(
                "no circuit breaker for {environment} (add [environments.{environment}.breaker] to the configuration): {}",
                root_message(&e)
            ))
        })
}

/// Before `cutover deploy` starts anything: refused with the reasons while the breaker blocks.
pub async fn gate(
    client: &Client,
    cfg: &Config,
    environment: &str,
    task_queue: &str,
) -> Result<(), CmdError> {
    ensure(client, cfg, environment, task_queue).await?;
    let verdict = activities::breaker::check(client, environment)
        .await
        .map_err(|e| CmdError::failed(e.to_string()))?;
    if verdict.blocking {
        return Err(CmdError {
            code: EXIT_BREAKER_OPEN,
            message: format!(
                "refused: the circuit breaker of {environment} is open: {}. Nothing was started. \
                 See `cutover breaker status {environment}`; to deploy anyway: \
                 `cutover breaker override {environment} --reason TEXT --for 30m`",
                verdict.reason
            ),
        });
    }
    Ok(())
}

pub fn print_status(s: &BreakerStatus, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(s).unwrap_or_else(|e| e.to_string())
        );
        return;
    }
    let state = match (s.open, s.blocking) {
        (_, true) => "open",
        (true, false) => "open (overridden)",
        (false, _) => "closed",
    };
    println!("environment: {}", s.environment);
    println!("state: {state}");
    println!("blocking: {}", s.blocking);
    for r in &s.reasons {
        println!("reason: {r}");
    }
    if let Some(o) = &s.r#override {
        println!("override: by {} until {}: {}", o.by, o.until, o.reason);
    }
    println!("consecutive_failures: {}", s.consecutive_failures);
    if let Some(p) = &s.probe {
        println!(
            "probe: at {} firing [{}] burn_rate {} window {:?}{}",
            p.at,
            p.firing.join(", "),
            if p.burn_rate_known {
                format!("{:.3}", p.burn_rate)
            } else {
                "n/a".into()
            },
            p.window,
            if p.errors.is_empty() {
                String::new()
            } else {
                format!(" errors [{}]", p.errors.join("; "))
            }
        );
    }
    for e in s.events.iter().rev().take(10).rev() {
        println!("  {e}");
    }
}

pub async fn status(
    settings: &Settings,
    cfg: &Config,
    environment: &str,
    task_queue: &str,
    json: bool,
) -> CmdResult {
    cfg.environment(environment).map_err(CmdError::usage)?;
    let client = settings.connect("cutover-cli").await?;
    ensure(&client, cfg, environment, task_queue).await?;
    let s = query(&client, environment).await?;
    print_status(&s, json);
    Ok(exit::SUCCEEDED)
}

/// trip | reset | freeze | override: an Update, validated by the workflow (who, why, expiry).
pub async fn action(
    settings: &Settings,
    cfg: &Config,
    environment: &str,
    task_queue: &str,
    verb: &str,
    a: BreakerAction,
) -> CmdResult {
    cfg.environment(environment).map_err(CmdError::usage)?;
    if a.by.trim().is_empty() {
        return Err(CmdError::usage("who: pass --as NAME or set CUTOVER_USER"));
    }
    if a.reason.trim().is_empty() {
        return Err(CmdError::usage(
            "--reason TEXT is required (it is kept in the audit trail)",
        ));
    }
    if verb == "override" && a.for_secs == 0 {
        return Err(CmdError::usage("an override needs an expiry: --for 30m"));
    }
    let client = settings.connect(&format!("cutover-cli:{}", a.by)).await?;
    if !ensure(&client, cfg, environment, task_queue).await? {
        return Err(CmdError::usage(format!(
            "environment {environment} has no circuit breaker: add [environments.{environment}.breaker] to {}",
            cfg.file
        )));
    }
    let handle =
        client.get_workflow_handle::<BreakerWorkflow>(names::breaker_workflow_id(environment));
    let opts = WorkflowExecuteUpdateOptions::default;
    let result = match verb {
        "trip" => {
            handle
                .execute_update(BreakerWorkflow::trip, a, opts())
                .await
        }
        "reset" => {
            handle
                .execute_update(BreakerWorkflow::reset, a, opts())
                .await
        }
        "freeze" => {
            handle
                .execute_update(BreakerWorkflow::freeze, a, opts())
                .await
        }
        "override" => {
            handle
                .execute_update(BreakerWorkflow::override_open, a, opts())
                .await
        }
        other => return Err(CmdError::usage(format!("unknown breaker verb {other}"))),
    };
    let s =
        result.map_err(|e| CmdError::failed(format!("{verb} refused: {}", root_message(&e))))?;
    print_status(&s, false);
    Ok(exit::SUCCEEDED)
}
