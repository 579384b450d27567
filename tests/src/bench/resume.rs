//! Crash and revert figures: how long a run takes to resume after its worker dies, per phase
//! where the kill lands (starting, checking, validating, a canary's hold: `shifting`), with the
//! worker restarted at once and with a second worker already running; and failed check → all
//! traffic back over many reverts. Kills during migrations are shown by `migrations.rs` (a real
//! PostgreSQL and S3 server), not here.

use super::status;
use std::path::Path;
use std::time::{Duration, SystemTime};
use testkit::{ConfigOpts, Load, Platform, Temporal, Worker, config_text, run_cli, wait_until};

const RUN: &str = "deploy-staging";

/// p50, p99 and max of `v` (nearest rank).
pub fn percentiles(v: &[f64]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    s.sort_by(f64::total_cmp);
    let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    (rank(0.50), rank(0.99), s[s.len() - 1])
}

fn wait_done(addr: &str, config: &Path) {
    wait_until("the release to finish", Duration::from_secs(120), || {
        status(addr, config, "staging").is_some_and(|s| s["phase"] == "done")
    });
}

/// Deploys `revision` (its faults set the phase's length), kills the worker holding the run once
/// the run is in `phase`, and returns how long the run took to resume: from the restart, or with
/// `spare` running, from the kill, to the next workflow task completed (from the history).
fn one_kill(
    temporal: &Temporal,
    config: &Path,
    worker: &mut Worker,
    spare: Option<&mut Worker>,
    revision: &str,
    phase: &str,
) -> (f64, f64) {
    let addr = temporal.address();
    let mut args = vec!["deploy", "staging", "--revision", revision, "--as", "bench"];
    if phase == "shifting" {
        args.extend(["--strategy", "canary"]);
    }
    let r = run_cli(&addr, config, &args);
    assert_eq!(r.code, 0, "{r:?}");
    wait_until(phase, Duration::from_secs(60), || {
        status(&addr, config, "staging").is_some_and(|s| s["phase"] == phase)
    });
    // The run is held by the worker that took its last workflow task.
    let holder = temporal.task_workers(RUN).pop().unwrap_or_default();
    let from = match spare {
        Some(spare) => {
            let victim = if holder.ends_with(&format!("@{}", spare.pid())) {
                spare
            } else {
                worker
            };
            let at = SystemTime::now();
            victim.kill9();
            victim.spawn();
            at
        }
        None => {
            worker.kill9();
            let at = SystemTime::now();
            worker.spawn();
            at
        }
    };
    let mut resumed = None;
    wait_until("the run to resume", Duration::from_secs(60), || {
        resumed = temporal.resumed_ms(RUN, from);
        resumed.is_some()
    });
    let taken = temporal.taken_over_ms(RUN, from).unwrap_or(f64::NAN);
    wait_done(&addr, config);
    if std::env::var_os("CUTOVER_BENCH_TRACE").is_some() {
        let t0 = from
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let h = temporal.history(RUN);
        let near: Vec<_> = h
            .into_iter()
            .filter(|e| super::millis(e).is_some_and(|t| t > t0 - 3000.0 && t < t0 + 6000.0))
            .collect();
        eprintln!(
            "--- {phase}: the events around the kill (0 = restart, or the kill with a second worker)"
        );
        super::trace(phase, &near, t0);
    }
    (taken, resumed.unwrap_or(f64::NAN))
}

/// Per phase: `runs` kills with the worker restarted at once, and `runs` with a second worker
/// running (the holder killed, then restarted for the next round).
pub fn resume(dir: &Path, runs: usize) {
    let dir = dir.join("resume");
    std::fs::create_dir_all(&dir).unwrap();
    let temporal = Temporal::start(&dir);
    // v5 takes 2 s to become ready, v6 answers in 150 ms (a longer performance check).
    let platform = Platform::start("v5=slow_start_ms:2000;v6=latency_ms:150", 2);
    let opts = ConfigOpts {
        replicas: 2,
        validation_window_secs: 4,
        keep_warm_secs: 1,
        min_requests: 3,
        ..Default::default()
    };
    let config = dir.join("cutover-resume.toml");
    // Canary holds of 3 s per step, analysed from the local router's counters every second.
    let canary = "canary = { steps = [10, 50, 100], step_hold_secs = 3, analysis_interval_ms = 1000, share_tolerance_pct = 10, inconclusive_hold_secs = 30, provider = \"local\", window_secs = 3 }\n";
    let text = config_text(&[("staging", &platform.admin)], &opts) + canary;
    std::fs::write(&config, text).unwrap();
    let addr = temporal.address();
    let mut worker = Worker::start(&addr, &[]);
    let load = Load::start(&platform.services, 20);
    println!(
        "\n== resume after kill -9 of the worker, from the restart (or, with a second worker running, from the kill) to the first task a worker started and to the next workflow task completed, from the history =="
    );
    for (phase, revision) in [
        ("starting", "v5"),
        ("checking", "v6"),
        ("validating", "v7"),
        ("shifting", "v8"),
    ] {
        let alone: Vec<(f64, f64)> = (0..runs)
            .map(|_| one_kill(&temporal, &config, &mut worker, None, revision, phase))
            .collect();
        let mut spare = Worker::start(&addr, &[]);
        let paired: Vec<(f64, f64)> = (0..runs)
            .map(|_| {
                one_kill(
                    &temporal,
                    &config,
                    &mut worker,
                    Some(&mut spare),
                    revision,
                    phase,
                )
            })
            .collect();
        drop(spare);
        for (how, v) in [
            ("restarted at once", &alone),
            ("second worker running", &paired),
        ] {
            let taken: Vec<f64> = v.iter().map(|x| x.0).collect();
            let next: Vec<f64> = v.iter().map(|x| x.1).collect();
            let (t50, t99, tmax) = percentiles(&taken);
            let (n50, n99, nmax) = percentiles(&next);
            println!(
                "killed while {phase:<10} {how:<22}: taken over p50 {t50:.0} / p99 {t99:.0} / max {tmax:.0} ms; next workflow task completed p50 {n50:.0} / p99 {n99:.0} / max {nmax:.0} ms (n={runs})"
            );
        }
    }
    let stats = load.stop();
    println!(
        "requests served: {}, failed: {} (every release succeeded)",
        stats.ok, stats.failed
    );
}

/// `runs` releases whose strategy-engine fails live requests after the switch, each rolled back
/// by the validation window: failed check → all traffic back, from the status.
pub fn reverts(addr: &str, config: &Path, platform: &Platform, runs: usize) {
    let load = Load::start(&platform.services, 50);
    let mut ms = Vec::new();
    for _ in 0..runs {
        let r = run_cli(
            addr,
            config,
            &[
                "deploy",
                "staging",
                "--revision",
                "v3",
                "--as",
                "bench",
                "--wait",
            ],
        );
        assert_eq!(r.code, 3, "v3 is rolled back: {r:?}");
        let s = status(addr, config, "staging").unwrap_or_default();
        ms.push(s["revert_ms"].as_f64().unwrap_or(f64::NAN));
    }
    let stats = load.stop();
    let (p50, p99, max) = percentiles(&ms);
    println!(
        "\n== {runs} reverts during the validation window (failed check → all traffic back) =="
    );
    println!("p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");
    println!(
        "requests served: {}, failed: {} (served by v3 before each rollback)",
        stats.ok, stats.failed
    );
}
