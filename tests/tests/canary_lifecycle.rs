//! The canary shares the release lifecycle with blue-green (patch `release-v2`): checks before
//! any live traffic, an approval gate with reject and timeout, and `cutover rollback` during a
//! step or the keep-warm period. Local platform, real Prometheus, real Temporal and worker.

mod common;

use common::canary::*;
use common::moves;
use serde_json::Value;
use std::time::Duration;
use testkit::{ConfigOpts, Env, Load};

fn events(s: &Value) -> Vec<String> {
    s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap_or("").to_owned())
        .collect()
}

fn weight_moves(env: &Env) -> Vec<String> {
    moves(env)
        .into_iter()
        .filter(|m| m.contains("/weights/"))
        .collect()
}

fn with_approval_timeout(env: &mut Env, secs: u64) {
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let cfg = cfg.replace(
        "ready_timeout_secs = 20 }",
        &format!("ready_timeout_secs = 20, approval_timeout_secs = {secs} }}"),
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.reconfigure();
}

fn decide(env: &Env, verb: &str, who: &str, id: &str) -> testkit::Run {
    env.cli(&[
        verb,
        "staging",
        "--deployment",
        id,
        "--revision",
        "v3",
        "--as",
        who,
        "--comment",
        "not during the auction",
    ])
}

/// The canary colour never took a user request: no weight moved, every green weight is 0, and
/// the load saw no failure. Prints the figures.
fn assert_no_live_traffic(env: &Env, stats: &testkit::LoadStats, what: &str) {
    let moved = weight_moves(env);
    assert!(moved.is_empty(), "{:?}", moves(env));
    assert!(weights_on(env, "green").iter().all(|w| *w == 0));
    assert_eq!(stats.failed, 0, "{stats:?}");
    eprintln!(
        "{what}: {} served, {} failed, weight moves {}",
        stats.ok,
        stats.failed,
        moved.len()
    );
}

/// `cutover rollback` while the canary runs (with `--wait` or not): it ends rolled back, with
/// the reason, every service on blue and no failed request. Prints the figures.
fn roll_back_to_blue(env: &Env, load: Load, and_wait: bool, what: &str) {
    let reason = format!("{what} by the desk");
    let mut args = vec!["rollback", "staging", "--reason", &reason, "--as", "ops"];
    if and_wait {
        args.push("--wait");
    }
    let r = env.cli(&args);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("rollback taken by the running deployment"),
        "{r:?}"
    );
    let s = wait(env, "the end", Duration::from_secs(60), done);
    let stats = load.stop();
    assert_eq!(s["outcome"], "rolled_back", "{s}");
    let want = format!("rollback requested by ops: {reason}");
    assert!(s["reason"].as_str().unwrap().contains(&want), "{s}");
    assert!(weights_on(env, "green").iter().all(|w| *w == 0));
    assert!(
        common::all_on(env, "blue"),
        "{:?}",
        env.platform.active_colors()
    );
    assert_eq!(stats.failed, 0, "{stats:?}");
    eprintln!(
        "{what}: revert {} ms, {} served, {} failed",
        s["revert_ms"], stats.ok, stats.failed
    );
}

fn approval_opts() -> ConfigOpts {
    ConfigOpts {
        approval: true,
        min_requests: 10,
        ..Default::default()
    }
}

#[test]
fn a_canary_waits_for_approval_before_any_live_traffic_and_a_rejection_ends_it() {
    let (env, _prom) =
        canary_env_with("canary-reject", "", &[10, 50, 100], 2, 60, &approval_opts());
    let load = Load::start(&env.platform.services, 20);
    let id = start(&env);
    let s = wait(&env, "the approval gate", Duration::from_secs(60), |s| {
        s["phase"] == "awaiting_approval"
    });
    // The canary colour passed its smoke and performance checks; no traffic moved yet.
    assert_eq!(s["percent"], 0, "{s}");
    let checks = s["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["name"] == "smoke")
            && checks.iter().any(|c| c["name"] == "performance"),
        "{s}"
    );
    assert!(checks.iter().all(|c| c["outcome"] == "passed"), "{s}");
    assert!(weight_moves(&env).is_empty(), "{:?}", moves(&env));

    // The same policy check as blue-green: the requester of a production release may not
    // decide it, nor may someone off the list.
    let r = decide(&env, "approve", "mallory", &id);
    assert!(
        r.code != 0 && r.stderr.contains("\"mallory\" may not approve"),
        "{r:?}"
    );
    let r = decide(&env, "reject", "alice", &id);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("rejected by alice"), "{r:?}");
    // One decision only: refused while the run winds down, or once it has ended.
    let r = decide(&env, "approve", "bob", &id);
    assert!(
        r.code != 0
            && (r.stderr.contains("not awaiting approval")
                || r.stderr.contains("no deployment is running")),
        "{r:?}"
    );

    let s = wait(&env, "the end", Duration::from_secs(60), done);
    let stats = load.stop();
    assert_eq!(s["outcome"], "rejected", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("rejected by alice: not during the auction"),
        "{s}"
    );
    assert_eq!(s["approvals"].as_array().unwrap().len(), 1, "{s}");
    assert!(common::all_on(&env, "blue"));
    assert_no_live_traffic(&env, &stats, "rejected canary");
    common::record_fixture(&env, "deploy-staging", "canary_rejected");
}

#[test]
fn an_unanswered_canary_approval_times_out_and_the_canary_never_takes_traffic() {
    let (mut env, _prom) =
        canary_env_with("canary-timeout", "", &[10, 100], 2, 60, &approval_opts());
    with_approval_timeout(&mut env, 3);
    start(&env);
    let s = wait(&env, "the end", Duration::from_secs(90), done);
    assert_eq!(s["outcome"], "failed", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("no approval within 3s"),
        "{s}"
    );
    assert!(weight_moves(&env).is_empty(), "{:?}", moves(&env));
    assert!(common::all_on(&env, "blue"));
    // The canary colour was stopped.
    assert!(
        events(&s).iter().any(|e| e.contains("stopped green")),
        "{s}"
    );
}

#[test]
fn a_canary_whose_colour_fails_its_smoke_check_never_receives_live_traffic() {
    let opts = ConfigOpts {
        min_requests: 10,
        ..Default::default()
    };
    let (env, _prom) = canary_env_with(
        "canary-smoke",
        "v3@order-execution=error_rate:1.0",
        &[10, 100],
        2,
        60,
        &opts,
    );
    let load = Load::start(&env.platform.services, 20);
    start(&env);
    let s = wait(&env, "the end", Duration::from_secs(90), done);
    let stats = load.stop();
    assert_eq!(s["outcome"], "failed", "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("smoke check failed on green") && reason.contains("order-execution"),
        "{s}"
    );
    assert_eq!(s["percent"], 0, "{s}");
    assert!(
        s["decisions"].as_array().unwrap().is_empty(),
        "no analysis ran: {s}"
    );
    assert_no_live_traffic(&env, &stats, "smoke-failed canary");
    common::record_fixture(&env, "deploy-staging", "canary_smoke_failed");
}

#[test]
fn cutover_rollback_during_a_canary_step_puts_all_traffic_back_on_the_stable_colour() {
    let opts = ConfigOpts {
        min_requests: 10,
        ..Default::default()
    };
    let (env, _prom) = canary_env_with("canary-rb-step", "", &[10, 25, 100], 60, 120, &opts);
    let load = Load::start(&env.platform.services, 50);
    start(&env);
    wait(&env, "step 1", Duration::from_secs(60), |s| {
        s["percent"] == 10
    });
    assert!(weights_on(&env, "green").iter().all(|w| *w == 10));
    roll_back_to_blue(&env, load, false, "rollback during a step");
}

#[test]
fn cutover_rollback_during_the_keep_warm_period_brings_the_stable_colour_back() {
    let opts = ConfigOpts {
        min_requests: 10,
        keep_warm_secs: 300,
        ..Default::default()
    };
    let (env, _prom) = canary_env_with("canary-rb-warm", "", &[50, 100], 2, 60, &opts);
    let load = Load::start(&env.platform.services, 50);
    start(&env);
    let s = wait(&env, "the warm period", Duration::from_secs(90), |s| {
        s["phase"] == "warm"
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert!(!s["warm_until"].as_str().unwrap().is_empty(), "{s}");
    assert!(common::all_on(&env, "green"));
    roll_back_to_blue(&env, load, true, "rollback during keep-warm");
    common::record_fixture(&env, "deploy-staging", "canary_rolled_back_when_warm");
}
