//! Blue-green deployments end to end: the real Temporal dev server, the `cutover` worker and CLI
//! as processes, the local platform with real stand-in processes, and real HTTP traffic.

mod common;

use common::*;
use std::time::Duration;
use testkit::{ConfigOpts, Env, Load};

#[test]
fn v2_under_steady_load_switches_all_four_with_zero_failed_requests() {
    let opts = ConfigOpts {
        replicas: 2,
        ..Default::default()
    };
    let env = Env::start("zero-failures", "", &opts, &[]);
    let load = Load::start(&env.platform.services, 50);
    let run = env.cli(&[
        "deploy",
        "staging",
        "--revision",
        "v2",
        "--as",
        "ci",
        "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let stats = load.stop();
    assert_eq!(
        stats.failed, 0,
        "failed requests during the switch: {stats:?}"
    );
    assert!(
        stats.ok > 200,
        "too little traffic to prove anything: {stats:?}"
    );
    assert!(all_on(&env, "green"), "{:?}", env.platform.active_colors());
    let state = env.platform.state();
    for (name, svc) in &state.services {
        assert_eq!(svc.colors["green"].version, "v2", "{name}");
    }
    assert_eq!(
        moves(&env).len(),
        1,
        "exactly one traffic move: {:?}",
        moves(&env)
    );
    let switch_ms: f64 = run.field("switch_ms").unwrap().parse().unwrap();
    assert!(switch_ms < 50.0, "switch of all four took {switch_ms} ms");
    // The old colour is warm at reduced size, then retired.
    testkit::wait_until("blue to retire", Duration::from_secs(20), || {
        env.platform
            .state()
            .services
            .values()
            .all(|s| s.colors["blue"].replicas == 0)
    });
    let s = wait_phase(&env, "done", Duration::from_secs(20));
    assert_eq!(s["outcome"], "succeeded");
    record_fixture(&env, "deploy-staging", "deploy_success");
}

#[test]
fn v3_failing_its_smoke_test_never_takes_traffic() {
    let env = Env::start(
        "smoke-fails",
        "v3@order-execution=error_rate:1.0",
        &ConfigOpts::default(),
        &[],
    );
    let load = Load::start(&env.platform.services, 20);
    let run = env.cli(&[
        "deploy",
        "staging",
        "--revision",
        "v3",
        "--as",
        "ci",
        "--wait",
    ]);
    let stats = load.stop();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("smoke check failed on green"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("order-execution"), "{}", run.stdout);
    assert!(
        moves(&env).is_empty(),
        "no traffic may move: {:?}",
        moves(&env)
    );
    assert!(all_on(&env, "blue"));
    assert_eq!(stats.failed, 0, "{stats:?}");
    // The failed colour is stopped.
    let state = env.platform.state();
    assert!(
        state
            .services
            .values()
            .all(|s| s.colors["green"].replicas == 0)
    );
}

#[test]
fn v3_failing_post_switch_validation_is_rolled_back() {
    let opts = ConfigOpts {
        validation_window_secs: 5,
        ..Default::default()
    };
    // Passes smoke and performance checks (they carry the check header), fails real traffic.
    let env = Env::start(
        "post-switch-fails",
        "v3@strategy-engine=live_error_rate:0.2",
        &opts,
        &[],
    );
    let load = Load::start(&env.platform.services, 40);
    let run = env.cli(&[
        "deploy",
        "staging",
        "--revision",
        "v3",
        "--as",
        "ci",
        "--wait",
    ]);
    let stats = load.stop();
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout.contains("post-switch validation failed"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("strategy-engine"), "{}", run.stdout);
    assert!(all_on(&env, "blue"), "{:?}", env.platform.active_colors());
    let m = moves(&env);
    assert_eq!(m.len(), 2, "one switch and one rollback: {m:?}");
    assert!(m[1].contains("rollback"), "{m:?}");
    let revert_ms: f64 = run.field("revert_ms").unwrap().parse().unwrap();
    assert!(revert_ms < 2000.0, "revert took {revert_ms} ms");
    // Failures are only those the faulty version served before the rollback.
    assert!(
        stats.failed > 0 && stats.failed < stats.ok / 10,
        "{stats:?}"
    );
    // The previous colour was still at full size: traffic went straight back (patch
    // `fast-revert`), no Rollback workflow (capacity first) was needed.
    let s = status(&env).unwrap();
    let events = s["events"].to_string();
    assert!(events.contains("all services back on blue"), "{events}");
    assert!(!events.contains("could not switch back"), "{events}");
    record_fixture(&env, "deploy-staging", "deploy_switched_back");
}

#[test]
fn approvals_are_validated_and_a_second_deploy_is_refused() {
    let opts = ConfigOpts {
        approval: true,
        ..Default::default()
    };
    let env = Env::start("approval", "", &opts, &[]);
    let load = Load::start(&env.platform.services, 20);
    let started = env.cli(&["deploy", "staging", "--revision", "v2", "--as", "alice"]);
    assert_eq!(started.code, 0, "{started:?}");
    let id = started.field("deployment_id").unwrap();
    wait_phase(&env, "awaiting_approval", Duration::from_secs(30));

    let second = env.cli(&["deploy", "staging", "--revision", "v9", "--as", "bob"]);
    assert_eq!(second.code, 1, "{second:?}");
    assert!(
        second.stderr.contains("already running in staging"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&id) && second.stderr.contains("deploy-staging"),
        "{}",
        second.stderr
    );
    // The same deployment started again (a CI retry, a start RPC whose answer was lost) is the
    // same deployment: no refusal, no second run.
    let again = env.cli(&[
        "deploy",
        "staging",
        "--revision",
        "v2",
        "--as",
        "alice",
        "--deployment-id",
        &id,
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("already started"), "{again:?}");
    assert_eq!(
        again.field("run_id"),
        started.field("run_id"),
        "{again:?} vs {started:?}"
    );

    let approve = |who: &str, dep: &str, rev: &str| {
        env.cli(&[
            "approve",
            "staging",
            "--deployment",
            dep,
            "--revision",
            rev,
            "--as",
            who,
        ])
    };
    let r = approve("mallory", &id, "v2");
    assert!(
        r.code != 0 && r.stderr.contains("\"mallory\" may not approve"),
        "{r:?}"
    );
    let r = approve("bob", &id, "v1");
    assert!(
        r.code != 0 && r.stderr.contains("approval is for revision \"v1\""),
        "{r:?}"
    );
    let r = approve("bob", "dep-stale", "v2");
    assert!(r.code != 0 && r.stderr.contains("stale approval"), "{r:?}");
    let r = approve("alice", &id, "v2");
    assert!(
        r.code != 0 && r.stderr.contains("requested deployment"),
        "production: requester may not approve: {r:?}"
    );
    assert!(moves(&env).is_empty(), "nothing moved before approval");

    let r = approve("bob", &id, "v2");
    assert_eq!(r.code, 0, "{r:?}");
    let s = wait_outcome(&env, Duration::from_secs(60));
    assert_eq!(load.stop().failed, 0);
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(
        s["approvals"].as_array().unwrap().len(),
        1,
        "refused approvals leave no record: {s}"
    );
    assert_eq!(s["approvals"][0]["approver"], "bob");
    assert!(all_on(&env, "green"));
    wait_phase(&env, "done", Duration::from_secs(20));
    record_fixture(&env, "deploy-staging", "deploy_approval");
}

#[test]
fn bad_input_is_refused_before_any_side_effect() {
    let env = Env::start("bad-input", "", &ConfigOpts::default(), &[]);
    let cases: [(&[&str], &str); 4] = [
        (
            &["deploy", "qa", "--revision", "v2", "--as", "ci"],
            "unknown environment \"qa\"",
        ),
        (
            &[
                "deploy",
                "staging",
                "--revision",
                "v2",
                "--as",
                "ci",
                "--image",
                "billing=jts/billing:v2",
            ],
            "unknown service \"billing\"",
        ),
        (
            &[
                "deploy",
                "staging",
                "--revision",
                "v2",
                "--as",
                "ci",
                "--image",
                "api-gateway=JTS/Gateway",
            ],
            "malformed image reference",
        ),
        (
            &["deploy", "staging", "--revision", "v 2", "--as", "ci"],
            "revision \"v 2\"",
        ),
    ];
    for (args, expected) in cases {
        let r = env.cli(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(expected), "{args:?}: {}", r.stderr);
    }
    let bad_config = env.dir.join("bad.toml");
    std::fs::write(
        &bad_config,
        std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("max_error_ratio = 0.01", "max_error_ratio = 5"),
    )
    .unwrap();
    let r = testkit::run_cli(
        &env.temporal.address(),
        &bad_config,
        &["deploy", "staging", "--revision", "v2", "--as", "ci"],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("bad.toml: environments.staging.thresholds.max_error_ratio"),
        "{}",
        r.stderr
    );
    // No workflow was started and the platform was not touched.
    assert!(common::status(&env).is_none());
    assert!(moves(&env).is_empty());
    assert!(
        env.platform
            .state()
            .services
            .values()
            .all(|s| s.colors["green"].replicas == 0)
    );
}

#[test]
fn a_failing_webhook_never_fails_a_deployment() {
    // Nothing listens on this port: every notification fails.
    let dead = format!("http://127.0.0.1:{}/hook", testkit::free_port());
    let env = Env::start(
        "webhook-down",
        "",
        &ConfigOpts::default(),
        &[("CUTOVER_SLACK_WEBHOOK_URL", &dead)],
    );
    let load = Load::start(&env.platform.services, 20);
    let run = env.cli(&[
        "deploy",
        "staging",
        "--revision",
        "v2",
        "--as",
        "ci",
        "--wait",
    ]);
    load.stop();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("could not be delivered"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("/hook"),
        "the webhook URL is a secret: {}",
        run.stdout
    );
}

#[test]
fn operator_rollback_during_the_warm_period_and_after_the_deployment_closed() {
    let opts = ConfigOpts {
        keep_warm_secs: 4,
        ..Default::default()
    };
    let env = Env::start("operator-rollback", "", &opts, &[]);
    let load = Load::start(&env.platform.services, 30);
    let run = env.cli(&[
        "deploy",
        "staging",
        "--revision",
        "v2",
        "--as",
        "ci",
        "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(all_on(&env, "green"));
    // During the warm period the running deployment takes the rollback itself.
    let run = env.cli(&[
        "rollback", "staging", "--reason", "drill", "--as", "ops", "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("rollback taken by the running deployment"),
        "{run:?}"
    );
    assert!(all_on(&env, "blue"), "{:?}", env.platform.active_colors());
    // Once no deployment runs, the Rollback workflow does it: the other colour (green, v2,
    // stopped) back to full size and ready first, then the traffic.
    let run = env.cli(&[
        "rollback",
        "staging",
        "--reason",
        "undo the drill",
        "--as",
        "ops",
        "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("workflow_id: rollback-staging"),
        "{run:?}"
    );
    assert!(run.stdout.contains("rolled back to green"), "{run:?}");
    assert!(all_on(&env, "green"), "{:?}", env.platform.active_colors());
    let state = env.platform.state();
    assert!(
        state
            .services
            .values()
            .all(|s| s.colors["green"].ready >= 1),
        "green ready: {state:?}"
    );
    let stats = load.stop();
    assert_eq!(
        stats.failed, 0,
        "no request failed through three moves: {stats:?}"
    );
    // The Rollback workflow under patch `worker-authority` (platform and services from the
    // worker's configuration).
    record_fixture(&env, "rollback-staging", "rollback_authority");
}
