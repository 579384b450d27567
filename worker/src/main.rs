//! `cutover`: durable, zero-downtime deployments of the JTS services on Temporal.

use clap::{Parser, Subcommand};
use proto::{AbortRequest, ApprovalDecision};
use std::path::PathBuf;
use worker::commands::{self, CmdError, DeployArgs, RollbackArgs};
use worker::config::Config;
use worker::temporal::{self, Settings};

/// Durable, zero-downtime deployments of the JTS services, as Temporal workflows.
///
/// Temporal connection: TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE
/// (default "default"), TEMPORAL_API_KEY (never printed). TLS is on whenever the address is not
/// a loopback one (plaintext only to the local dev server; TEMPORAL_TLS=true|false decides for a
/// loopback address); TEMPORAL_TLS_CA (PEM of the server's CA), TEMPORAL_TLS_CERT and
/// TEMPORAL_TLS_KEY (mTLS client certificate), TEMPORAL_TLS_SERVER_NAME. CUTOVER_TEMPORAL_UI sets
/// the UI base URL for links (default http://localhost:8233).
///
/// Identity: CUTOVER_ID_TOKEN (an OIDC ID token; in GitHub Actions with `id-token: write` the
/// CLI asks for one itself, audience CUTOVER_OIDC_AUDIENCE or the configured issuer's), sealed
/// to the worker's key (identity.worker_key, or CUTOVER_WORKER_KEY). Without a token, --as NAME
/// (or CUTOVER_USER / USER) is an asserted identity, accepted only where the worker's
/// configuration sets asserted_identities.
#[derive(Parser)]
#[command(name = "cutover", version, about, long_about)]
struct Cli {
    /// Configuration file (environments, services, checks).
    #[arg(
        long,
        global = true,
        env = "CUTOVER_CONFIG",
        default_value = "cutover.toml"
    )]
    config: PathBuf,
    /// Temporal task queue of the cutover worker.
    #[arg(long, global = true, default_value = temporal::DEFAULT_TASK_QUEUE)]
    task_queue: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker: executes the Deploy, Rollback, GradualShift and Migrate workflows and
    /// their activities. Its own configuration (--config, read once: a change takes a restart)
    /// decides every release's policy: the environments it serves, platform and namespace,
    /// production, approval and approvers, thresholds and timing floors, database and bucket,
    /// breaker, trusted OIDC issuers; a request that disagrees is refused naming the field.
    /// Reads its identity key from the variable identity.private_key_env names (default
    /// CUTOVER_IDENTITY_KEY), the Slack-compatible webhook URL from CUTOVER_SLACK_WEBHOOK_URL;
    /// serves deployment metrics (Prometheus text, /metrics) on CUTOVER_METRICS_ADDR when set.
    Worker,
    /// OIDC identities: the worker's key pair.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Start a deployment of all services to an environment; prints the workflow id. A release
    /// still in progress in the environment refuses it; one in its keep-warm period is
    /// superseded (ends the period early, outcome unchanged) and this one starts.
    Deploy {
        /// Environment from the configuration file.
        environment: String,
        /// Release revision (also the default image tag).
        #[arg(long)]
        revision: String,
        /// Image of one service for this release, SERVICE=IMAGE; repeatable. Others use the
        /// configured image pattern.
        #[arg(long = "image", value_name = "SERVICE=IMAGE")]
        images: Vec<String>,
        /// Who requests the deployment.
        #[arg(long = "as", env = "CUTOVER_USER", default_value_t = default_user())]
        requested_by: String,
        /// Deployment id (default: generated).
        #[arg(long)]
        deployment_id: Option<String>,
        /// Follow progress until the outcome is known; exit 0 on success, 3 on rollback, 4
        /// when rejected or aborted, 1 on failure. It does not wait for the old colour's
        /// keep-warm period: the next deploy supersedes that period (the old colour retires,
        /// contract migrations run) instead of being refused. (Exit 5, with or without
        /// --wait: refused by the environment's open circuit breaker; nothing was started.)
        #[arg(long)]
        wait: bool,
        /// blue-green (switch all four at once) or canary (gradual shift with analysis, steps
        /// from the environment's `canary` settings).
        #[arg(long, default_value = "blue-green")]
        strategy: String,
    },
    /// Approve the deployment waiting at the approval gate.
    Approve(DecisionArgs),
    /// Reject the deployment waiting at the approval gate.
    Reject(DecisionArgs),
    /// Abort the running deployment, blue-green or canary (before any traffic moved: stop the
    /// new colour; after: roll back).
    Abort {
        /// Environment whose running deployment is aborted.
        environment: String,
        /// Why (kept in the workflow history and the notification).
        #[arg(long)]
        reason: String,
        /// Who aborts.
        #[arg(long = "as", env = "CUTOVER_USER", default_value_t = default_user())]
        by: String,
    },
    /// Show the deployment of an environment: phase, colours, services, checks, approvals (a
    /// canary is shown as `cutover canary status` shows it).
    Status {
        /// Environment to show (its latest deployment, running or finished).
        environment: String,
        /// Print the full status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the images of an environment's latest release, one SERVICE=IMAGE@sha256:… per line,
    /// only if that release succeeded with REVISION (exit 1 otherwise): what the next
    /// environment deploys (`cutover deploy --image`), by digest, never a tag.
    Images {
        /// Environment whose release passed (e.g. development before staging).
        environment: String,
        /// The revision that release must have been.
        #[arg(long)]
        revision: String,
    },
    /// Roll an environment back to its previous colour (capacity first, then traffic).
    Rollback {
        /// Environment to roll back.
        environment: String,
        /// Why (kept in the workflow history and the notification).
        #[arg(long)]
        reason: String,
        /// Colour to return to (default: the one not live).
        #[arg(long)]
        to: Option<String>,
        /// Who requests the rollback.
        #[arg(long = "as", env = "CUTOVER_USER", default_value_t = default_user())]
        by: String,
        /// Wait for the rollback to finish.
        #[arg(long)]
        wait: bool,
    },
    /// Validate the configuration file and print each environment's plan.
    CheckConfig,
    /// Print a release's Kubernetes manifests on one colour (Deployments, PodDisruptionBudgets,
    /// active and preview Services, ingress), rendered from k8s/jts/ as the worker renders them.
    /// Bootstrap an environment with `cutover render ENV --revision REV | kubectl apply
    /// --server-side -f -`.
    Render {
        /// A kubernetes environment from the configuration file.
        environment: String,
        /// Release revision (also the default image tag).
        #[arg(long)]
        revision: String,
        /// Image of one service, SERVICE=IMAGE; repeatable.
        #[arg(long = "image", value_name = "SERVICE=IMAGE")]
        images: Vec<String>,
        /// Colour the Deployments are rendered for.
        #[arg(long, default_value = "blue")]
        color: String,
        /// Colour the active Services select (the preview Services select the other).
        #[arg(long, default_value = "blue")]
        active: String,
    },
    /// Kubernetes Secrets from environment variables (as GitHub Actions exposes secrets).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Controls of a running canary (`deploy --strategy canary`).
    #[command(subcommand)]
    Canary(CanaryCommand),
    /// Database migrations: the safety check, the plan, and durable runs with backup.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// The environment's circuit breaker: while open, `deploy` is refused (exit 5) and a
    /// running deployment holds (a canary at its step, blue-green before its switch).
    #[command(subcommand)]
    Breaker(BreakerCommand),
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Print a new X25519 key pair: `private:` goes into the worker's secret
    /// (CUTOVER_IDENTITY_KEY), `public:` into identity.worker_key of the configuration.
    Keygen,
}

#[derive(Subcommand)]
enum BreakerCommand {
    /// Open or closed, every reason, override, failure streak, last probe, recent audit events.
    Status {
        /// Environment from the configuration file.
        environment: String,
        /// Print the full status (the audit trail too) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Open the breaker by hand until `reset`.
    Trip(BreakerArgs),
    /// Clear a manual trip and the failure streak (alerts, burn rate and freezes stay).
    Reset(BreakerArgs),
    /// A manual freeze for --for DURATION (or until lifted); --lift ends manual freezes.
    Freeze {
        #[command(flatten)]
        a: BreakerArgs,
        /// How long, e.g. 90s, 30m, 2h, 1d (default: until lifted).
        #[arg(long = "for")]
        for_: Option<String>,
        /// Lift every manual freeze.
        #[arg(long)]
        lift: bool,
    },
    /// Let deployments through the open breaker until the expiry (ends on its own).
    Override {
        #[command(flatten)]
        a: BreakerArgs,
        /// How long, e.g. 30m, 2h (required; at most breaker.max_override_secs).
        #[arg(long = "for")]
        for_: String,
    },
}

#[derive(clap::Args)]
struct BreakerArgs {
    /// Environment from the configuration file.
    environment: String,
    /// Why (required; kept in the breaker's audit trail).
    #[arg(long, default_value = "")]
    reason: String,
    /// Who.
    #[arg(long = "as", env = "CUTOVER_USER", default_value_t = default_user())]
    by: String,
}

#[derive(Subcommand)]
enum CanaryCommand {
    /// Phase, current weight, last analysis with its figures per service.
    Status {
        /// Environment from the configuration file.
        environment: String,
        /// Print the full status (every decision) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Skip the remaining holds and promote now (recorded with who and why).
    Promote(CanaryControl),
    /// Stop the step's clock (analysis continues; a breach still rolls back).
    Pause(CanaryControl),
    /// Restart the step's clock.
    Resume(CanaryControl),
}

#[derive(clap::Args)]
struct CanaryControl {
    /// Environment from the configuration file.
    environment: String,
    /// Why (kept in the history).
    #[arg(long, default_value = "")]
    reason: String,
    /// Who.
    #[arg(long = "as", env = "CUTOVER_USER", default_value_t = default_user())]
    by: String,
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Classify every statement of a migrations folder (PostgreSQL's own parser): expand,
    /// contract or unsafe. Exit 0 only when every file is safe for its phase.
    Check {
        /// Folder of <version>_<name>.up.sql / .down.sql files.
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        format: String,
    },
    /// Current version and what the expand and contract phases would apply (connects to the
    /// database through the environment's url_env variable), plus the safety check.
    Plan {
        /// Environment from the configuration file.
        environment: String,
    },
    /// The environment's latest migration run: step, versions, backup, events.
    Status {
        /// Environment from the configuration file.
        environment: String,
        /// Print the full status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the environment's pending migrations: check, verified backup to S3, apply, verify;
    /// on failure revert (down files) or restore, as configured.
    Run {
        /// Environment from the configuration file.
        environment: String,
        /// expand (files not marked contract), contract, or all.
        #[arg(long, default_value = "expand")]
        phase: String,
        /// Deployment id recorded with each applied file (default: generated).
        #[arg(long)]
        deployment_id: Option<String>,
        /// Who runs it.
        #[arg(long = "as", env = "CUTOVER_USER", default_value_t = default_user())]
        by: String,
        /// Wait for the outcome; exit 0 on success, 1 on failure.
        #[arg(long)]
        wait: bool,
    },
    /// Revert applied migrations newer than a version with their down files, newest first.
    Rollback {
        /// Environment from the configuration file.
        environment: String,
        /// Keep this version and everything before it (0 reverts everything).
        #[arg(long = "to")]
        to: i64,
        /// Who runs it.
        #[arg(long = "as", env = "CUTOVER_USER", default_value_t = default_user())]
        by: String,
        /// Wait for the outcome.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Server-side apply a Secret in the environment's namespace from environment variables.
    /// Prints only key names; a missing or empty variable is refused before anything is written.
    Sync {
        /// A kubernetes environment from the configuration file.
        environment: String,
        /// Name of the Secret.
        #[arg(long, default_value = "jts-secrets")]
        name: String,
        /// KEY=ENV_VAR: the Secret key and the environment variable holding its value; repeatable.
        #[arg(long = "key", value_name = "KEY=ENV_VAR", required = true)]
        keys: Vec<String>,
    },
}

#[derive(clap::Args)]
struct DecisionArgs {
    /// Environment whose deployment waits at the approval gate.
    environment: String,
    /// Deployment id, as printed by `cutover deploy` and `cutover status`.
    #[arg(long = "deployment")]
    deployment_id: String,
    /// Release revision being approved (a decision for another revision is refused).
    #[arg(long)]
    revision: String,
    /// The release digest being decided, as `cutover status` and the approval notification
    /// show it (default: the one the running release shows, printed before sending). A
    /// decision for another digest is refused.
    #[arg(long)]
    digest: Option<String>,
    /// Who decides (must be an approver of the environment; in production not the requester).
    #[arg(long = "as", env = "CUTOVER_USER", default_value_t = default_user())]
    approver: String,
    /// Free-text comment kept with the decision.
    #[arg(long, default_value = "")]
    comment: String,
}

fn default_user() -> String {
    std::env::var("USER").unwrap_or_default()
}

fn load(path: &std::path::Path) -> Result<Config, CmdError> {
    Config::load(path).map_err(|e| CmdError::usage(e.to_string()))
}

async fn run(cli: Cli) -> commands::CmdResult {
    let settings = Settings::from_env();
    match cli.command {
        Command::Worker => {
            let cfg = load(&cli.config)?;
            let authority =
                worker::authority::AuthorityActivities::new(cfg).map_err(CmdError::usage)?;
            println!(
                "serving environments: {}",
                authority.environments().join(", ")
            );
            temporal::run_worker(&settings, &cli.task_queue, authority).await?;
            Ok(0)
        }
        Command::Identity(IdentityCommand::Keygen) => {
            let (private, public) = worker::identity::keygen();
            println!("private: {private}");
            println!("public: {public}");
            Ok(0)
        }
        Command::Deploy {
            environment,
            revision,
            images,
            requested_by,
            deployment_id,
            wait,
            strategy,
        } => {
            let cfg = load(&cli.config)?;
            let args = DeployArgs {
                strategy,
                environment,
                revision,
                images,
                requested_by,
                deployment_id,
                wait,
                task_queue: cli.task_queue,
            };
            commands::deploy(&settings, &cfg, args).await
        }
        Command::Approve(d) => decision(&settings, &cli.config, d, true).await,
        Command::Reject(d) => decision(&settings, &cli.config, d, false).await,
        Command::Abort {
            environment,
            reason,
            by,
        } => commands::abort(&settings, &environment, AbortRequest { by, reason }, false).await,
        Command::Status { environment, json } => {
            commands::status(&settings, &environment, json).await
        }
        Command::Images {
            environment,
            revision,
        } => commands::images(&settings, &environment, &revision).await,
        Command::Rollback {
            environment,
            reason,
            to,
            by,
            wait,
        } => {
            let cfg = load(&cli.config)?;
            commands::rollback(
                &settings,
                &cfg,
                RollbackArgs {
                    environment,
                    reason,
                    by,
                    to,
                    wait,
                    task_queue: cli.task_queue,
                },
            )
            .await
        }
        Command::Render {
            environment,
            revision,
            images,
            color,
            active,
        } => {
            let cfg = load(&cli.config)?;
            let images = commands::parse_images(&images)?;
            print!(
                "{}",
                worker::k8s::render(&cfg, &environment, &revision, &images, &color, &active)?
            );
            Ok(0)
        }
        Command::Secrets(SecretsCommand::Sync {
            environment,
            name,
            keys,
        }) => {
            let cfg = load(&cli.config)?;
            worker::k8s::secrets_sync(&cfg, &environment, &name, &keys).await
        }
        Command::Breaker(b) => {
            let cfg = load(&cli.config)?;
            let tq = &cli.task_queue;
            let (verb, a, for_secs, lift) = match b {
                BreakerCommand::Status { environment, json } => {
                    return worker::breaker_cmd::status(&settings, &cfg, &environment, tq, json)
                        .await;
                }
                BreakerCommand::Trip(a) => ("trip", a, 0, false),
                BreakerCommand::Reset(a) => ("reset", a, 0, false),
                BreakerCommand::Freeze { a, for_, lift } => {
                    let secs = match for_ {
                        Some(d) => worker::breaker_cmd::parse_duration(&d)?,
                        None => 0,
                    };
                    ("freeze", a, secs, lift)
                }
                BreakerCommand::Override { a, for_ } => (
                    "override",
                    a,
                    worker::breaker_cmd::parse_duration(&for_)?,
                    false,
                ),
            };
            worker::breaker_cmd::action(
                &settings,
                &cfg,
                &a.environment,
                tq,
                verb,
                proto::BreakerAction {
                    by: a.by,
                    reason: a.reason,
                    for_secs,
                    lift,
                },
            )
            .await
        }
        Command::Canary(c) => {
            let (verb, ctl) = match c {
                CanaryCommand::Status { environment, json } => {
                    return worker::canary_cmd::status(&settings, &environment, json).await;
                }
                CanaryCommand::Promote(c) => ("promote", c),
                CanaryCommand::Pause(c) => ("pause", c),
                CanaryCommand::Resume(c) => ("resume", c),
            };
            worker::canary_cmd::control(
                &settings,
                &ctl.environment,
                verb,
                proto::ShiftControl {
                    by: ctl.by,
                    reason: ctl.reason,
                },
            )
            .await
        }
        Command::Migrate(m) => match m {
            MigrateCommand::Check { dir, format } => {
                worker::migrate_cmd::check(&dir, format == "json")
            }
            MigrateCommand::Plan { environment } => {
                let cfg = load(&cli.config)?;
                worker::migrate_cmd::plan(&cfg, &environment).await
            }
            MigrateCommand::Status { environment, json } => {
                worker::migrate_cmd::status(&settings, &environment, json).await
            }
            MigrateCommand::Run {
                environment,
                phase,
                deployment_id,
                by,
                wait,
            } => {
                let cfg = load(&cli.config)?;
                worker::migrate_cmd::run(
                    &settings,
                    &cfg,
                    worker::migrate_cmd::RunArgs {
                        environment,
                        phase,
                        deployment_id,
                        by,
                        wait,
                        task_queue: cli.task_queue,
                        target_version: None,
                    },
                )
                .await
            }
            MigrateCommand::Rollback {
                environment,
                to,
                by,
                wait,
            } => {
                let cfg = load(&cli.config)?;
                worker::migrate_cmd::run(
                    &settings,
                    &cfg,
                    worker::migrate_cmd::RunArgs {
                        environment,
                        phase: "rollback".into(),
                        deployment_id: None,
                        by,
                        wait,
                        task_queue: cli.task_queue,
                        target_version: Some(to),
                    },
                )
                .await
            }
        },
        Command::CheckConfig => {
            let cfg = load(&cli.config)?;
            println!("{}: valid", cli.config.display());
            println!(
                "service order: {}",
                cfg.order()
                    .map_err(|e| CmdError::usage(e.to_string()))?
                    .join(" → ")
            );
            for (name, env) in &cfg.environments {
                println!(
                    "environment {name}: platform {}, approval {}, production {}, identities {}",
                    env.platform.kind(),
                    if env.approval.required {
                        env.approval.approvers.join("/")
                    } else {
                        "none".into()
                    },
                    env.production,
                    if env.asserted_identities {
                        "verified or asserted"
                    } else {
                        "verified only"
                    }
                );
            }
            for (name, i) in &cfg.identity.issuers {
                println!(
                    "trusted issuer {name}: {} (audience {}, identity claim {})",
                    i.issuer, i.audience, i.claim
                );
            }
            Ok(0)
        }
    }
}

async fn decision(
    settings: &Settings,
    config: &std::path::Path,
    d: DecisionArgs,
    approve: bool,
) -> commands::CmdResult {
    let decision = ApprovalDecision {
        approver: d.approver,
        deployment_id: d.deployment_id,
        revision: d.revision,
        comment: d.comment,
        ..Default::default()
    };
    // The configuration only gives the worker's public key here (to seal an ID token to).
    let cfg = Config::load(config).ok();
    commands::decide(
        settings,
        cfg.as_ref(),
        &d.environment,
        decision,
        approve,
        d.digest,
    )
    .await
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUTOVER_LOG")
                .unwrap_or_else(|_| "warn,worker=info,activities=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cutover: {}", e.message);
            e.code
        }
    };
    std::process::exit(code);
}
