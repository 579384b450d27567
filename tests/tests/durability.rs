//! Crashes: `kill -9` of the worker and a restart of the Temporal server mid-deployment. The run
//! resumes where it was, no traffic move happens twice, and the outcome equals an uninterrupted
//! run's.

mod common;

use common::*;
use std::time::{Duration, SystemTime};
use testkit::{ConfigOpts, Env, Load, Worker, wait_every};

/// The hand-back test needs its restarted worker up within the dead attempt's 1 s heartbeat
/// timeout; with two other worlds of this file starting beside it on two cores, the restart
/// sometimes took longer and the timeout came first (its assertion then failed for the
/// machine's sake). It runs alone; the others run together.
static ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn together() -> std::sync::RwLockReadGuard<'static, ()> {
    ALONE.read().unwrap_or_else(|e| e.into_inner())
}

const RUN: &str = "deploy-staging";

fn assert_clean_success(env: &Env, load: Load) {
    let s = wait_outcome(env, Duration::from_secs(90));
    assert_eq!(s["outcome"], "succeeded", "{s}");
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(all_on(env, "green"), "{:?}", env.platform.active_colors());
    let m = moves(env);
    assert_eq!(m.len(), 1, "the switch ran exactly once: {m:?}");
}

#[test]
fn worker_killed_while_awaiting_approval_resumes_after_restart() {
    let _together = together();
    let opts = ConfigOpts {
        approval: true,
        ..Default::default()
    };
    let mut env = Env::start("kill-approval", "", &opts, &[]);
    let load = Load::start(&env.platform.services, 20);
    let started = env.cli(&["deploy", "staging", "--revision", "v2", "--as", "alice"]);
    let id = started.field("deployment_id").unwrap();
    wait_phase(&env, "awaiting_approval", Duration::from_secs(30));
    env.worker.kill9();
    env.worker.spawn();
    let r = env.cli(&[
        "approve",
        "staging",
        "--deployment",
        &id,
        "--revision",
        "v2",
        "--as",
        "bob",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_clean_success(&env, load);
}

/// `kill -9` of the worker once the run is in `phase`, a restart `pause` later; prints how long
/// the run took to resume (restart → next workflow task completed, read from the history).
fn kill_and_restart_in(env: &mut Env, phase: &str, pause: Duration) {
    wait_phase(env, phase, Duration::from_secs(60));
    env.worker.kill9();
    std::thread::sleep(pause);
    let restarted = SystemTime::now();
    env.worker.spawn();
    let mut resumed = None;
    wait_every(
        "the run to resume",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            resumed = env.temporal.resumed_ms(RUN, restarted);
            resumed.is_some()
        },
    );
    println!(
        "killed while {phase}: taken over {:.0} ms after the restart (first task started), next workflow task completed after {:.0} ms",
        env.temporal
            .taken_over_ms(RUN, restarted)
            .unwrap_or(f64::NAN),
        resumed.unwrap_or_default()
    );
}

/// A healthy v2 (its `faults` make `phase` last a while) deployed under load; the worker is
/// killed in that phase and restarted 300 ms later; the release still succeeds cleanly.
fn deploy_killed_while(name: &str, faults: &str, phase: &str) {
    let mut env = Env::start(name, faults, &ConfigOpts::default(), &[]);
    let load = Load::start(&env.platform.services, 20);
    let started = env.cli(&["deploy", "staging", "--revision", "v2", "--as", "ci"]);
    assert_eq!(started.code, 0, "{started:?}");
    kill_and_restart_in(&mut env, phase, Duration::from_millis(300));
    assert_clean_success(&env, load);
}

#[test]
fn worker_killed_while_the_new_colour_starts_resumes_after_restart() {
    let _together = together();
    // v2's instances take 3 s to become ready: the kill lands in the readiness wait.
    deploy_killed_while("kill-starting", "v2=slow_start_ms:3000", "starting");
}

#[test]
fn worker_killed_during_the_checks_resumes_after_restart() {
    let _together = together();
    // v2 answers in 150 ms: the performance check's 20 requests per service take a while.
    deploy_killed_while("kill-checking", "v2=latency_ms:150", "checking");
}

/// A restarted worker hands the attempt its dead predecessor was running back for a retry at
/// once, rather than leaving it to its heartbeat timeout: the worker is killed just after the
/// server heard the attempt's heartbeat and restarted at once, so the timeout (1 s after that
/// beat, often later) cannot come first. The retried attempt's last failure names the
/// hand-back, and the release ends as an uninterrupted one.
#[test]
fn a_restarted_worker_hands_back_the_attempt_its_dead_predecessor_was_running() {
    let _alone = ALONE.write().unwrap_or_else(|e| e.into_inner());
    // v2's instances take 6 s to become ready: the readiness wait runs while the worker dies.
    let mut env = Env::start(
        "kill-handback",
        "v2=slow_start_ms:6000",
        &ConfigOpts::default(),
        &[],
    );
    let load = Load::start(&env.platform.services, 20);
    let started = env.cli(&["deploy", "staging", "--revision", "v2", "--as", "ci"]);
    assert_eq!(started.code, 0, "{started:?}");
    // Poll until the readiness wait's heartbeat reached the server less than 150 ms ago.
    wait_every(
        "a fresh heartbeat of the readiness wait",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let running = env.temporal.running_activities(RUN);
            let now = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                * 1000.0;
            running.iter().any(|a| {
                a.kind == "wait_ready" && a.last_heartbeat_ms.is_some_and(|beat| now - beat < 150.0)
            })
        },
    );
    env.worker.kill9();
    let restarted = SystemTime::now();
    env.worker.spawn();
    assert_clean_success(&env, load);
    // The readiness wait's started event: its attempt, and the failure of the one before it.
    let events = env.temporal.history(RUN);
    // Event ids are int64: strings in proto3 JSON.
    let id = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .or_else(|| v.as_u64().map(|n| n.to_string()))
    };
    let scheduled = events
        .iter()
        .find(|e| e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "wait_ready")
        .and_then(|e| id(&e["eventId"]))
        .expect("the readiness wait was scheduled");
    let started = events
        .iter()
        .find(|e| {
            id(&e["activityTaskStartedEventAttributes"]["scheduledEventId"])
                .is_some_and(|s| s == scheduled)
        })
        .expect("the readiness wait started");
    let attempt = started["activityTaskStartedEventAttributes"]["attempt"].as_u64();
    assert!(attempt.is_some_and(|a| a >= 2), "{started}");
    let failure = &started["activityTaskStartedEventAttributes"]["lastFailure"];
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("handed back by its successor"),
        "the attempt was retried by its heartbeat timeout, not handed back: {failure}\nworker log:\n{}",
        env.worker.log_tail(30)
    );
    println!(
        "handed back: {message}; taken over {:.0} ms after the restart",
        env.temporal
            .taken_over_ms(RUN, restarted)
            .unwrap_or(f64::NAN)
    );
}

/// With a second worker on the task queue, the one holding the run is killed during the
/// validation window of a release that must roll back: the other finishes it, rolling back once.
#[test]
fn with_two_workers_the_survivor_rolls_back_once_when_the_other_dies_mid_validation() {
    let _together = together();
    let opts = ConfigOpts {
        validation_window_secs: 6,
        ..Default::default()
    };
    let mut env = Env::start(
        "two-workers",
        "v3@strategy-engine=live_error_rate:0.2",
        &opts,
        &[],
    );
    let config = env.config.display().to_string();
    let mut second = Worker::start(&env.temporal.address(), &[("CUTOVER_CONFIG", &config)]);
    let load = Load::start(&env.platform.services, 40);
    let started = env.cli(&["deploy", "staging", "--revision", "v3", "--as", "ci"]);
    assert_eq!(started.code, 0, "{started:?}");
    wait_phase(&env, "validating", Duration::from_secs(60));
    // The worker that took the run's last workflow task holds it (its sticky queue).
    let holder = env
        .temporal
        .task_workers(RUN)
        .pop()
        .expect("a workflow task was started");
    let killed = SystemTime::now();
    let survivor_is_second = if env.worker.is(&holder) {
        env.worker.kill9();
        true
    } else {
        assert!(second.is(&holder), "{holder}");
        second.kill9();
        false
    };
    let survivor = if survivor_is_second {
        &second
    } else {
        &env.worker
    };
    let s = wait_outcome(&env, Duration::from_secs(90));
    let stats = load.stop();
    assert_eq!(s["outcome"], "rolled_back", "{s}");
    assert!(all_on(&env, "blue"), "{:?}", env.platform.active_colors());
    let m = moves(&env);
    assert_eq!(m.len(), 2, "one switch and one rollback: {m:?}");
    assert!(m[1].contains("rollback"), "{m:?}");
    // The survivor did the rest: every workflow task after the kill is its own.
    let after = env.temporal.task_workers(RUN);
    assert!(after.last().is_some_and(|w| survivor.is(w)), "{after:?}");
    // The survivor's retried attempt reset the run's sticky queue: the workflow task after it
    // did not wait out the dead worker's sticky timeout.
    let events = env.temporal.history(RUN);
    if let Some(retried) = events.iter().position(|e| {
        e["activityTaskStartedEventAttributes"]["attempt"]
            .as_u64()
            .is_some_and(|a| a >= 2)
    }) {
        let sticky_timeouts: Vec<_> = events[retried..]
            .iter()
            .filter(|e| {
                e["workflowTaskTimedOutEventAttributes"]["timeoutType"]
                    == "TIMEOUT_TYPE_SCHEDULE_TO_START"
            })
            .collect();
        assert!(sticky_timeouts.is_empty(), "{sticky_timeouts:?}");
    }
    println!(
        "two workers, holder killed while validating: taken over {:.0} ms after the kill, next workflow task completed after {:.0} ms; {} requests failed of {} (the release's own errors before the rollback)",
        env.temporal.taken_over_ms(RUN, killed).unwrap_or(f64::NAN),
        env.temporal.resumed_ms(RUN, killed).unwrap_or_default(),
        stats.failed,
        stats.ok + stats.failed,
    );
}

#[test]
fn worker_killed_during_the_validation_window_resumes_after_restart() {
    let _together = together();
    let opts = ConfigOpts {
        validation_window_secs: 6,
        ..Default::default()
    };
    let mut env = Env::start("kill-validation", "", &opts, &[]);
    let load = Load::start(&env.platform.services, 20);
    let started = env.cli(&["deploy", "staging", "--revision", "v2", "--as", "ci"]);
    assert_eq!(started.code, 0, "{started:?}");
    kill_and_restart_in(&mut env, "validating", Duration::from_millis(500));
    assert_clean_success(&env, load);
}

#[test]
fn temporal_server_restart_mid_run_gives_the_same_outcome() {
    let _together = together();
    let opts = ConfigOpts {
        validation_window_secs: 6,
        ..Default::default()
    };
    let mut env = Env::start("temporal-restart", "", &opts, &[]);
    let load = Load::start(&env.platform.services, 20);
    let started = env.cli(&["deploy", "staging", "--revision", "v2", "--as", "ci"]);
    assert_eq!(started.code, 0, "{started:?}");
    wait_phase(&env, "validating", Duration::from_secs(30));
    env.temporal.restart();
    assert_clean_success(&env, load);
}
