//! Back-to-back releases: a release deployed while the previous one keeps its old colour warm
//! supersedes it in one command (no abort, no rollback of a healthy release), under load.

mod common;

use common::*;
use std::time::{Duration, Instant};
use testkit::{ConfigOpts, Env, Load};

fn deploy(env: &Env, revision: &str, wait: bool) -> testkit::Run {
    let mut args = vec!["deploy", "staging", "--revision", revision, "--as", "ci"];
    if wait {
        args.push("--wait");
    }
    env.cli(&args)
}

#[test]
fn three_releases_in_a_row_succeed_under_load_each_superseding_the_previous_warm_period() {
    let opts = ConfigOpts {
        keep_warm_secs: 120,
        ..Default::default()
    };
    let env = Env::start("back-to-back", "", &opts, &[]);
    let load = Load::start(&env.platform.services, 50);

    let first = deploy(&env, "v2", true);
    assert_eq!(first.code, 0, "{first:?}");
    // The moment `--wait` returns, the next release starts: it is not refused.
    let t = Instant::now();
    let second = deploy(&env, "v3", true);
    let second_secs = t.elapsed().as_secs_f64();
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stderr.contains("superseding deployment")
            && second.stderr.contains("superseded by")
            && second.stderr.contains("old colour retired"),
        "{second:?}"
    );
    // The third starts during the second's keep-warm period, without --wait.
    let second_run = second.field("run_id").unwrap();
    let s = status(&env).unwrap();
    assert_eq!(
        (s["phase"].as_str(), s["outcome"].as_str()),
        (Some("warm"), Some("succeeded")),
        "{s}"
    );
    let third = deploy(&env, "v4", false);
    assert_eq!(third.code, 0, "{third:?}");
    let id = third.field("deployment_id").unwrap();
    let s = wait_outcome(&env, Duration::from_secs(120));
    let stats = load.stop();
    assert_eq!(s["deployment_id"], id.as_str(), "{s}");
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert!(all_on(&env, "green"), "{:?}", env.platform.active_colors());
    // No release was rolled back: the only traffic moves are the three switches.
    let moved = moves(&env);
    assert_eq!(moved.len(), 3, "{moved:?}");
    assert!(moved.iter().all(|m| m.ends_with("/switch")), "{moved:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    record_fixture_run(&env, "deploy-staging", &second_run, "deploy_superseded");
    eprintln!(
        "back-to-back: 3 releases, second deploy --wait took {second_secs:.1} s including the supersede; {} served, {} failed, traffic moves {}",
        stats.ok,
        stats.failed,
        moved.len()
    );
}
