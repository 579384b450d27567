//! The Argo Rollouts world that `cutover-bench --only argo` compares cutover with
//! (src/argo_env.rs): the published controller against the test cluster, the four JTS services as
//! Rollouts, analysis through Prometheus with cutover's queries and thresholds, real traffic
//! through the gateway. Guards the comparison's setup, and the behaviour the README's "compared
//! with Argo Rollouts" quotes: each Rollout is promoted or aborted on its own.

#[path = "../src/argo_env.rs"]
mod argo_env;
#[path = "../src/kube_env.rs"]
mod kube_env;

use argo_env::ArgoEnv;
use kube_env::SERVICES;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[test]
fn a_failing_post_promotion_analysis_aborts_that_rollout_alone_and_the_other_three_stay_on_v2() {
    // strategy-engine v2 fails 5 % of live requests; post-promotion analysis 10 measurements.
    let mut env = ArgoEnv::start(
        "argo-abort",
        "v2@strategy-engine=live_error_rate:0.05",
        false,
        10,
    );
    let from = env.load.as_ref().unwrap().started.elapsed();
    env.apply(&env.rollouts("v2"));
    std::thread::sleep(Duration::from_secs(1));
    let st = env.wait_settled(Duration::from_secs(180));
    let runs = env.analysis_runs();
    eprintln!("rollouts: {st:?}; analysis runs: {runs}");
    // Clients: wait (the test bed's endpoints lag under load) until strategy-engine has answered
    // only with v1 for 2 s.
    let load = env.load.as_ref().unwrap();
    testkit::wait_until(
        "strategy-engine answers with v1 only",
        Duration::from_secs(60),
        || {
            let answers = load.answers();
            let now = load.started.elapsed();
            let recent: Vec<_> = answers
                .iter()
                .filter(|a| {
                    a.service == "strategy-engine" && a.sent + Duration::from_secs(2) >= now
                })
                .collect();
            recent.len() >= 10 && recent.iter().all(|a| a.version == "v1")
        },
    );
    let answers = env.load.take().unwrap().stop();

    // The controller: strategy-engine aborted (Degraded), the others promoted.
    for s in SERVICES {
        let (phase, aborted, message) = &st[s];
        if s == "strategy-engine" {
            assert!(
                *aborted && phase == "Degraded" && message.contains("error-ratio"),
                "{s}: {phase} {message}"
            );
        } else {
            assert!(!*aborted && phase == "Healthy", "{s}: {phase} {message}");
        }
    }
    assert!(runs.contains("1 Failed"), "{runs}");
    // The clients: strategy-engine back on v1, the rest on v2, in the last 2 s of load.
    let end = answers.iter().map(|a| a.at).max().unwrap();
    let last: BTreeMap<&str, BTreeSet<&str>> = SERVICES
        .iter()
        .map(|s| {
            let vs = answers
                .iter()
                .filter(|a| a.service == *s && a.at + Duration::from_secs(2) >= end)
                .filter(|a| a.failure.is_none())
                .map(|a| a.version.as_str())
                .collect();
            (*s, vs)
        })
        .collect();
    eprintln!("versions answering at the end: {last:?}");
    for s in SERVICES {
        let want = if s == "strategy-engine" { "v1" } else { "v2" };
        assert_eq!(last[s], BTreeSet::from([want]), "{s}");
    }
    // v2 of strategy-engine did answer, and fail, before the abort: the analysis saw real errors.
    let of_v2 = |a: &&testkit::Answer| a.sent >= from && a.service == "strategy-engine";
    let v2_answers = answers
        .iter()
        .filter(of_v2)
        .filter(|a| a.version == "v2")
        .count();
    let failures = answers
        .iter()
        .filter(of_v2)
        .filter(|a| a.failure.is_some())
        .count();
    eprintln!("strategy-engine: {v2_answers} answers by v2, {failures} failed");
    assert!(v2_answers > 0, "strategy-engine v2 never answered");
    assert!(failures > 0, "no failed request: the fault never went live");
}
