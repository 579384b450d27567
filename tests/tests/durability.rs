//! Crashes: `kill -9` of the worker and a restart of the Temporal server mid-deployment. The run
//! resumes where it was, no traffic move happens twice, and the outcome equals an uninterrupted
//! run's.

mod common;

use common::*;
use std::time::Duration;
use testkit::{ConfigOpts, Env, Load};

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

#[test]
fn worker_killed_during_the_validation_window_resumes_after_restart() {
    let opts = ConfigOpts {
        validation_window_secs: 6,
        ..Default::default()
    };
    let mut env = Env::start("kill-validation", "", &opts, &[]);
    let load = Load::start(&env.platform.services, 20);
    let started = env.cli(&["deploy", "staging", "--revision", "v2", "--as", "ci"]);
    assert_eq!(started.code, 0, "{started:?}");
    wait_phase(&env, "validating", Duration::from_secs(30));
    env.worker.kill9();
    std::thread::sleep(Duration::from_millis(500));
    env.worker.spawn();
    assert_clean_success(&env, load);
}

#[test]
fn temporal_server_restart_mid_run_gives_the_same_outcome() {
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
