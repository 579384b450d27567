//! Crash and revert figures: how long a run takes to resume after its worker dies, per phase
//! where the kill lands (starting, checking, validating, a canary's hold: `shifting`), with the
//! worker restarted at once and with a second worker already running; and failed check → all
//! traffic back over many reverts. Kills during a migration use a real PostgreSQL and S3 server
//! ([`migration_kills`]).

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
    // With a second worker running, the victim comes back only once the run has resumed: a
    // worker starting up hands back its dead predecessor's attempts, which is the restart's
    // figure, not the second worker's.
    let (from, mut down) = match spare {
        Some(spare) => {
            let victim = if spare.is(&holder) { spare } else { worker };
            let at = SystemTime::now();
            victim.kill9();
            (at, Some(victim))
        }
        None => {
            worker.kill9();
            let at = SystemTime::now();
            worker.spawn();
            (at, None)
        }
    };
    let mut resumed = None;
    wait_until("the run to resume", Duration::from_secs(60), || {
        resumed = temporal.resumed_ms(RUN, from);
        resumed.is_some()
    });
    if let Some(victim) = down.take() {
        victim.spawn();
    }
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
/// running (the holder killed, then restarted once the run resumed). `timer_shift_ms`: the
/// server's `history.timerProcessorMaxTimeShift` (default 1 s): a timer the server creates due
/// sooner than that after its last read of the timer queue fires up to that late — a heartbeat
/// timeout's re-armed timer and the 200 ms retry backoff both are such timers.
pub fn resume(dir: &Path, runs: usize, timer_shift_ms: Option<usize>) {
    let dir = dir.join("resume");
    std::fs::create_dir_all(&dir).unwrap();
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
    println!(
        "\n== resume after kill -9 of the worker, from the restart (or, with a second worker running, from the kill) to the first task a worker started and to the next workflow task completed, from the history =="
    );
    let temporal = server(&dir, timer_shift_ms);
    let addr = temporal.address();
    let c = config.display().to_string();
    let mut worker = Worker::start(&addr, &[("CUTOVER_CONFIG", &c)]);
    let load = Load::start(&platform.services, 20);
    for (phase, revision) in [
        ("starting", "v5"),
        ("checking", "v6"),
        ("validating", "v7"),
        ("shifting", "v8"),
    ] {
        let alone: Vec<(f64, f64)> = (0..runs)
            .map(|_| one_kill(&temporal, &config, &mut worker, None, revision, phase))
            .collect();
        let mut spare = Worker::start(&addr, &[("CUTOVER_CONFIG", &c)]);
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
            print_row(phase, how, v);
        }
    }
    let stats = load.stop();
    println!(
        "requests served: {}, failed: {} (every release succeeded)",
        stats.ok, stats.failed
    );
    // The migration rows run their own workers (with the database's settings).
    drop(worker);
    migration_kills(&dir, &temporal, runs);
}

/// The migration rows of the resume section alone (`--only migration`).
pub fn migration(dir: &Path, runs: usize, timer_shift_ms: Option<usize>) {
    let dir = dir.join("resume");
    std::fs::create_dir_all(&dir).unwrap();
    let temporal = server(&dir, timer_shift_ms);
    migration_kills(&dir, &temporal, runs);
}

/// The resume section's Temporal dev server, its timer shift printed.
fn server(dir: &Path, timer_shift_ms: Option<usize>) -> Temporal {
    let setting = timer_shift_ms.map(|ms| format!("history.timerProcessorMaxTimeShift=\"{ms}ms\""));
    println!(
        "Temporal dev server: history.timerProcessorMaxTimeShift {}",
        timer_shift_ms.map_or("1s (the default)".to_owned(), |ms| format!("{ms} ms"))
    );
    Temporal::start_with(dir, &setting.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Kills during a migration: each run adds a migration that sleeps 2 s inside its transaction,
/// and the worker running it is killed there (restarted at once, or with a second worker
/// running, restarted once the run resumed). The retried attempt waits for PostgreSQL to end
/// the dead worker's session (its migration lock), then applies the migration again: the next
/// workflow task completes after that, the run is taken over before.
fn migration_kills(dir: &Path, temporal: &Temporal, runs: usize) {
    const MIGRATE: &str = "migrate-staging";
    let dir = dir.join("migration");
    let files = dir.join("migrations");
    std::fs::create_dir_all(&files).unwrap();
    let world = testkit::db::MigrationWorld::start(&dir, &files, "down");
    let (pg, config) = (&world.pg, &world.config);
    let mut envs = world.worker_env();
    envs.push(("CUTOVER_CONFIG".into(), config.display().to_string()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let addr = temporal.address();
    let mut worker = Worker::start(&addr, &envs);
    let mut version = 0;
    let mut one = |worker: &mut Worker, mut spare: Option<&mut Worker>| -> (f64, f64) {
        version += 1;
        std::fs::write(
            files.join(format!("{version}_slow.up.sql")),
            format!("SET lock_timeout = '2s';\nCREATE TABLE ledger_{version} (id bigint PRIMARY KEY);\nSELECT pg_sleep(2);\n"),
        )
        .unwrap();
        std::fs::write(
            files.join(format!("{version}_slow.down.sql")),
            format!("DROP TABLE ledger_{version};\n"),
        )
        .unwrap();
        let r = std::process::Command::new(testkit::bin("cutover"))
            .args([
                "migrate", "run", "staging", "--phase", "all", "--as", "bench",
            ])
            .env("TEMPORAL_ADDRESS", &addr)
            .env("CUTOVER_CONFIG", config)
            .env("JTS_DATABASE_URL", &pg.url)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let mut runner = String::new();
        wait_until("the migration to run", Duration::from_secs(60), || {
            runner = temporal
                .running_activities(MIGRATE)
                .into_iter()
                .find(|a| a.kind == "apply_migration")
                .map(|a| a.worker)
                .unwrap_or_default();
            !runner.is_empty()
                && pg.psql("jts", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%' AND state = 'active' AND application_name = 'cutover'") == "1"
        });
        let from = match spare.as_deref_mut() {
            Some(spare) => {
                let at = SystemTime::now();
                if spare.is(&runner) {
                    spare.kill9();
                } else {
                    worker.kill9();
                }
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
        wait_until("the migration to resume", Duration::from_secs(60), || {
            resumed = temporal.resumed_ms(MIGRATE, from);
            resumed.is_some()
        });
        if let Some(spare) = spare {
            for w in [spare, worker] {
                if w.pid() == 0 {
                    w.spawn();
                }
            }
        }
        let taken = temporal.taken_over_ms(MIGRATE, from).unwrap_or(f64::NAN);
        wait_until("the migration to finish", Duration::from_secs(120), || {
            temporal
                .history(MIGRATE)
                .last()
                .is_some_and(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED")
        });
        let applied = pg.psql(
            "jts",
            &format!("SELECT to_regclass('ledger_{version}') IS NOT NULL"),
        );
        assert_eq!(applied, "t", "migration {version} applied after the kill");
        (taken, resumed.unwrap_or(f64::NAN))
    };
    let alone: Vec<(f64, f64)> = (0..runs).map(|_| one(&mut worker, None)).collect();
    let mut spare = Worker::start(&addr, &envs);
    let paired: Vec<(f64, f64)> = (0..runs)
        .map(|_| one(&mut worker, Some(&mut spare)))
        .collect();
    for (how, v) in [
        ("restarted at once", &alone),
        ("second worker running", &paired),
    ] {
        print_row("migrating", how, v);
    }
}

/// One line of the resume table: taken over and next workflow task completed, p50/p99/max.
fn print_row(phase: &str, how: &str, v: &[(f64, f64)]) {
    let taken: Vec<f64> = v.iter().map(|x| x.0).collect();
    let next: Vec<f64> = v.iter().map(|x| x.1).collect();
    let (t50, t99, tmax) = percentiles(&taken);
    let (n50, n99, nmax) = percentiles(&next);
    println!(
        "killed while {phase:<10} {how:<22}: taken over p50 {t50:.0} / p99 {t99:.0} / max {tmax:.0} ms; next workflow task completed p50 {n50:.0} / p99 {n99:.0} / max {nmax:.0} ms (n={})",
        v.len()
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
