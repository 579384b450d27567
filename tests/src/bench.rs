//! `cutover-bench`: the benchmark command (and, with `--demo`, the demo). Starts the real
//! Temporal dev server, local platforms and the worker, drives steady traffic, and prints figures:
//!
//! - switch duration of all four services (first to last route change) and failed requests
//!   during a deployment at steady load;
//! - time from a failed check to all traffic back on the old colour;
//! - a canary whose v4 fails 5 % of one service's requests, analysed through a real Prometheus
//!   (1 s scrapes, 1 s analysis interval): first bad scrape → failed analysis (breach to decision)
//!   and failed analysis → all weights on stable (decision to stable);
//! - failed check → all traffic back over 20 reverts in the validation window (p50, p99);
//! - how long a run takes to resume after `kill -9` of its worker, per phase where the kill
//!   lands, restarted at once and with a second worker already running;
//! - the Kubernetes platform through a real gateway (`--only kubernetes`, see bench/kube.rs):
//!   cutover window as clients see it, failed requests, failed check → previous version, canary
//!   breach → decision → stable;
//! - the migration safety check on a folder of 500 migrations (`--only migrate-check`);
//! - cutover and Argo Rollouts side by side on the test cluster, five scenarios, a table
//!   (`--only argo`, see bench/argo.rs; not part of the full run);
//! - 100 deployments at once in 100 environments (`--envs N`), each rolled back by its
//!   validation window: worker RSS and CPU time, failed check → rollback decision (p50, p99),
//!   history events per deployment.
//!
//! Timings vary with the machine; they are printed, never asserted.

#[path = "bench/argo.rs"]
mod argo;
#[path = "argo_env.rs"]
mod argo_env;
#[path = "bench/kube.rs"]
mod kube;
#[path = "kube_env.rs"]
mod kube_env;
#[path = "bench/migrate_check.rs"]
mod migrate_check;
#[path = "bench/resume.rs"]
mod resume;
#[path = "bench/scale.rs"]
mod scale;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{
    ConfigOpts, Load, Platform, Temporal, Worker, config_text, rss_bytes, run_cli, scratch_dir,
    wait_until,
};

fn status(temporal: &str, config: &std::path::Path, env: &str) -> Option<Value> {
    let r = run_cli(temporal, config, &["status", env, "--json"]);
    (r.code == 0)
        .then(|| serde_json::from_str(&r.stdout).ok())
        .flatten()
}

/// An event's time, in ms since the epoch.
fn millis(event: &Value) -> Option<f64> {
    event["eventTime"]
        .as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64)
}

/// Prints `events` with their times from `t0` (ms since the epoch), for `CUTOVER_BENCH_TRACE=1`.
fn trace(label: &str, events: &[Value], t0: f64) {
    for e in events {
        let attrs = [
            &e["activityTaskScheduledEventAttributes"]["activityType"]["name"],
            &e["workflowTaskStartedEventAttributes"]["identity"],
            &e["activityTaskStartedEventAttributes"]["attempt"],
            &e["workflowTaskTimedOutEventAttributes"]["timeoutType"],
            &e["activityTaskTimedOutEventAttributes"]["failure"]["message"],
        ];
        let detail: Vec<String> = attrs
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| v.to_string())
            .collect();
        eprintln!(
            "{label} {:>+8.0} ms {} {}",
            millis(e).unwrap_or(0.0) - t0,
            e["eventType"].as_str().unwrap_or(""),
            detail.join(" ")
        );
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let demo = std::env::args().any(|a| a == "--demo");
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: cutover-bench [--demo] [--envs N] [--runs N] [--only resume|migration|scale|reverts|kubernetes|argo|migrate-check] [--timer-shift MS]\n  prints deployment figures; --demo runs the demo instead;\n  --envs N: deployments at once in the scale section (default 100);\n  --runs N: kills per phase and setup in the resume section (default 5);\n  --only SECTION: run that section alone (reverts: --runs N reverts, at least 20; kubernetes: --runs N blue-green releases, default 3, through the test cluster's gateway; migrate-check: the migration check on 500 files, --runs N times; argo: cutover and Argo Rollouts side by side, five scenarios, a table; needs scripts/argo-rollouts-build.sh; --scenarios 1,3 and --systems cutover|argo narrow it)\n  --timer-shift MS: the resume section's Temporal server with history.timerProcessorMaxTimeShift at MS ms (the server's default is 1000: timers due sooner than that can fire up to that late)\n  CUTOVER_BENCH_TRACE=1: also print the history events around each kill and slow decision"
        );
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    // The value after `name`, if given.
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: usize| {
        flag(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}"))
        })
    };
    let envs = number("--envs", 100);
    // `--runs N`: kills per phase and per setup in the resume section.
    let runs = number("--runs", 5);
    // `--timer-shift MS`: the resume section's server setting (see resume::resume).
    let shift = flag("--timer-shift").map(|_| number("--timer-shift", 1000));
    // `--only resume` or `--only scale`: that section alone.
    let only = flag("--only");
    if let Some(section) = only {
        let dir = scratch_dir(&format!("bench-{section}"));
        match section.as_str() {
            "resume" => resume::resume(&dir, runs, shift),
            "migration" => resume::migration(&dir, runs, shift),
            "scale" => scale::scale(&dir, envs),
            "reverts" => {
                let (temporal, platform, config) = staging(&dir);
                let c = config.display().to_string();
                let _worker = Worker::start(&temporal.address(), &[("CUTOVER_CONFIG", &c)]);
                resume::reverts(&temporal.address(), &config, &platform, runs.max(20));
            }
            "kubernetes" => kube::run(number("--runs", 3)),
            "argo" => {
                let list = |name: &str| -> Vec<String> {
                    flag(name)
                        .map(|v| v.split(',').map(str::to_owned).collect())
                        .unwrap_or_default()
                };
                let scenarios: Vec<usize> = list("--scenarios")
                    .iter()
                    .map(|n| match n.parse() {
                        Ok(n @ 1..=5) => n,
                        _ => panic!("--scenarios takes numbers 1 to 5, not {n:?}"),
                    })
                    .collect();
                let systems = list("--systems");
                if let Some(bad) = systems.iter().find(|s| *s != "cutover" && *s != "argo") {
                    panic!("--systems takes cutover and/or argo, not {bad:?}");
                }
                argo::run(&scenarios, &systems)
            }
            "migrate-check" => migrate_check::run(&dir, runs),
            other => {
                panic!(
                    "--only {other}: expected resume, migration, scale, reverts, kubernetes, argo or migrate-check"
                )
            }
        }
        return;
    }
    let dir = scratch_dir(if demo { "demo" } else { "bench" });
    let (mut temporal, platform, config) = staging(&dir);
    if demo {
        // The demo shows the UI: restart the same server with it.
        temporal.restart_with_ui();
    }
    let c = config.display().to_string();
    let mut worker = Worker::start(&temporal.address(), &[("CUTOVER_CONFIG", &c)]);
    let addr = temporal.address();
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_bytes(worker.pid());

    println!(
        "local platform: v1 live on blue; services: {:?}",
        platform.services
    );
    let load = Load::start(&platform.services, 50);
    let run = run_cli(
        &addr,
        &config,
        &[
            "deploy",
            "staging",
            "--revision",
            "v2",
            "--as",
            "demo",
            "--wait",
        ],
    );
    let during = load.stats();
    let s = status(&addr, &config, "staging").unwrap_or_default();
    let run_id = run.field("run_id").unwrap_or_default();
    println!("\n== deploy v2 to all four services under steady load (50 req/s per service) ==");
    println!(
        "outcome: {} (exit {})",
        s["outcome"].as_str().unwrap_or("?"),
        run.code
    );
    println!("requests served: {}", during.ok);
    println!("requests failed: {}", during.failed);
    println!(
        "switch duration (first to last service): {:.3} ms",
        s["switch_ms"].as_f64().unwrap_or(-1.0)
    );
    println!("colours now: {:?}", platform.active_colors());
    if demo {
        println!(
            "Temporal UI: http://127.0.0.1:{}/namespaces/default/workflows/deploy-staging/{run_id}/history",
            temporal.ui_port
        );
    }
    wait_until(
        "v2 deployment to retire blue",
        Duration::from_secs(60),
        || status(&addr, &config, "staging").is_some_and(|s| s["phase"] == "done"),
    );

    let before = load.stats();
    let run = run_cli(
        &addr,
        &config,
        &[
            "deploy",
            "staging",
            "--revision",
            "v3",
            "--as",
            "demo",
            "--wait",
        ],
    );
    let after = load.stop();
    let s = status(&addr, &config, "staging").unwrap_or_default();
    println!("\n== deploy v3 (strategy-engine fails 20% of live requests) ==");
    println!(
        "outcome: {} (exit {}): {}",
        s["outcome"].as_str().unwrap_or("?"),
        run.code,
        s["reason"].as_str().unwrap_or("")
    );
    if !run.stderr.is_empty() {
        println!("cutover said: {}", run.stderr.trim());
    }
    println!("requests served: {}", after.ok - before.ok);
    println!(
        "requests failed (served by v3 before the rollback): {}",
        after.failed - before.failed
    );
    println!(
        "time from failed check to all traffic back on green: {:.0} ms",
        s["revert_ms"].as_f64().unwrap_or(-1.0)
    );
    println!("colours now: {:?}", platform.active_colors());
    if demo {
        println!(
            "Temporal UI: http://127.0.0.1:{}/namespaces/default/workflows/deploy-staging/{}/history",
            temporal.ui_port,
            run.field("run_id").unwrap_or_default()
        );
        println!("\npress Enter to stop the demo");
        let _ = std::io::stdin().read_line(&mut String::new());
        return;
    }

    resume::reverts(&addr, &config, &platform, 20);
    canary_breach(&dir, &addr, &config, &platform, &mut worker);
    resume::resume(&dir, runs, shift);

    println!("\n== worker memory ==");
    println!("worker RSS idle: {:.1} MB", mb(idle_rss));
    drop(worker);
    // The scale section runs its own server.
    drop(temporal);
    scale::scale(&dir, envs);
    kube::run(3);
}

/// The bench's world: a Temporal dev server, a local platform whose v3 fails 20 % and v4 5 % of
/// strategy-engine's live requests, and the configuration of its `staging` environment.
fn staging(dir: &Path) -> (Temporal, Platform, PathBuf) {
    let temporal = Temporal::start(dir);
    let platform = Platform::start(
        "v3@strategy-engine=live_error_rate:0.2;v4@strategy-engine=live_error_rate:0.05",
        2,
    );
    let opts = ConfigOpts {
        replicas: 2,
        validation_window_secs: 5,
        min_requests: 20,
        ..Default::default()
    };
    let config = dir.join("cutover.toml");
    std::fs::write(&config, config_text(&[("staging", &platform.admin)], &opts)).unwrap();
    (temporal, platform, config)
}

fn unix_ms(rfc3339: &str) -> f64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond() as f64)
        .unwrap_or(f64::NAN)
}

/// A canary of v4 (strategy-engine fails 5 % of live requests) judged through a real Prometheus:
/// breach (first scrape holding a canary error) → decision (the failed analysis) → stable (all
/// weights back).
fn canary_breach(
    dir: &std::path::Path,
    addr: &str,
    config: &std::path::Path,
    platform: &Platform,
    worker: &mut Worker,
) {
    let admin = platform.admin.trim_start_matches("http://").to_owned();
    let prom = testkit::prom::Prometheus::start(dir, &[("router", &admin)]);
    let mut cfg = std::fs::read_to_string(config).unwrap();
    cfg.push_str(&format!(
        "canary = {{ steps = [10, 25, 50, 75, 100], step_hold_secs = 30, analysis_interval_ms = 1000, share_tolerance_pct = 8, inconclusive_hold_secs = 60, provider = \"prometheus\", prometheus_url = \"{}\", window_secs = 5 }}\n",
        prom.url
    ));
    let canary_config = dir.join("cutover-canary.toml");
    std::fs::write(&canary_config, cfg).unwrap();
    // The worker reads its configuration at start: the canary's settings take a restart.
    worker.set_env("CUTOVER_CONFIG", &canary_config.display().to_string());
    worker.restart();
    let load = Load::start(&platform.services, 50);
    let run = run_cli(
        addr,
        &canary_config,
        &[
            "deploy",
            "staging",
            "--strategy",
            "canary",
            "--revision",
            "v4",
            "--as",
            "bench",
            "--wait",
        ],
    );
    let stats = load.stop();
    let r = run_cli(
        addr,
        &canary_config,
        &["canary", "status", "staging", "--json"],
    );
    let s: Value = serde_json::from_str(&r.stdout).unwrap_or_default();
    println!(
        "\n== canary v4 (strategy-engine fails 5% of live requests), Prometheus analysis every 1 s, scrapes every 1 s =="
    );
    println!(
        "outcome: {} (exit {}): {}",
        s["outcome"].as_str().unwrap_or("?"),
        run.code,
        s["reason"].as_str().unwrap_or("")
    );
    println!("requests served: {}, failed: {}", stats.ok, stats.failed);
    let canary = s["canary_color"].as_str().unwrap_or("green").to_owned();
    // The breach: the first scrape after the canary took traffic in which its error counter
    // grew (the colour served errors earlier, in the v3 run).
    let started_ms = s["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_str())
        .find(|e| e.contains("step 1:"))
        .map(|e| unix_ms(e.split_whitespace().next().unwrap_or("")))
        .unwrap_or(f64::NAN);
    let first_bad_ms = prom
        .first_increase_ms(
            &format!(
                r#"http_requests_total{{service="strategy-engine",color="{canary}",code=~"5.."}}"#
            ),
            started_ms,
        )
        .unwrap_or(f64::NAN);
    let decision_ms = s["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .find(|d| d["outcome"] == "failed")
        .map(|d| unix_ms(d["at"].as_str().unwrap_or("")))
        .unwrap_or(f64::NAN);
    let stable_ms = s["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_str())
        .find(|e| e.contains("all services back on"))
        .map(|e| unix_ms(e.split_whitespace().next().unwrap_or("")))
        .unwrap_or(f64::NAN);
    println!(
        "breach to decision (first bad scrape → failed analysis): {:.0} ms",
        decision_ms - first_bad_ms
    );
    println!(
        "decision to stable (failed analysis → all weights on stable): {:.0} ms",
        stable_ms - decision_ms
    );
    println!(
        "first bad scrape → all traffic on stable: {:.0} ms (bound: analysis interval 1000 ms + scrape interval 1000 ms)",
        stable_ms - first_bad_ms
    );
}
