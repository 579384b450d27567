//! `cutover-bench --only kubernetes`: the Kubernetes platform measured through the gateway (the
//! test cluster, Traefik, the fake kubelet's real stand-ins, Prometheus with Kubernetes
//! discovery), as clients see it: 20 requests a second to each of the four services, so a
//! client-seen time is good to about 50 ms (a negative window: the cut fell between two requests).
//!
//! - blue-green under load, `--runs N` releases in a row: the cutover window per service and for
//!   all four (first answer by the new version → last by the old), failed requests;
//! - a release whose strategy-engine fails 5 % of live requests after the switch: failed check
//!   (the rollback decision) → all traffic on the previous version, as the workflow measured it
//!   and as clients saw it (the last answer by the new version);
//! - a canary failing 5 % on order-execution: first bad scrape → decision, decision → stable.

use crate::kube_env::{KubeEnv, event_ms, report_cutover};
use serde_json::Value;
use std::time::Duration;
use testkit::Answer;

fn unix_ms() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64
}

/// Unix ms at which the load started (its answers' `at` count from there).
fn load_origin(env: &KubeEnv) -> f64 {
    unix_ms() - env.load.as_ref().unwrap().started.elapsed().as_secs_f64() * 1000.0
}

fn wait_outcome(env: &KubeEnv) -> Value {
    env.wait_status("outcome", Duration::from_secs(240), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn run(runs: usize) {
    println!("\n## Kubernetes through the gateway (Traefik, 20 req/s per service)");
    blue_green(runs);
    window_breach();
    canary_breach();
}

fn blue_green(runs: usize) {
    let mut env = KubeEnv::start("bench-bluegreen", &[], 1);
    let mut windows = Vec::new();
    let mut failed = 0;
    let mut total = 0;
    for i in 0..runs {
        let (old, new) = (format!("v{}", i + 1), format!("v{}", i + 2));
        let from = env.load.as_ref().unwrap().started.elapsed();
        let run = env.cli(&["deploy", "staging", "--as", "bench", "--revision", &new]);
        assert_eq!(run.code, 0, "{run:?}");
        let s = wait_outcome(&env);
        assert_eq!(s["outcome"], "succeeded", "{s}");
        // Wait out the keep-warm period so the next release starts from a retired colour.
        env.wait_status("warm period over", Duration::from_secs(60), |s| {
            s["phase"] == "done"
        });
        let answers: Vec<Answer> = env
            .load
            .as_ref()
            .unwrap()
            .answers()
            .into_iter()
            .filter(|a| a.at >= from)
            .collect();
        windows.push(report_cutover(&answers, from, &old, &new));
        failed += answers.iter().filter(|a| a.failure.is_some()).count();
        total += answers.len();
    }
    env.stop_load();
    println!(
        "blue-green, {runs} releases of all four: cutover window for all four as clients saw it p50 {:.0} / max {:.0} ms (negative: a clean cut); {failed} of {total} requests failed (target: window <= 250 ms, 0 failed)",
        pct(&mut windows.clone(), 0.5),
        pct(&mut windows, 1.0),
    );
}

fn window_breach() {
    let mut env = KubeEnv::start_full(
        "bench-breach",
        &[],
        1,
        false,
        "v3@strategy-engine=live_error_rate:0.05",
    );
    let origin = load_origin(&env);
    let run = env.cli(&["deploy", "staging", "--as", "bench", "--revision", "v3"]);
    assert_eq!(run.code, 0, "{run:?}");
    let s = wait_outcome(&env);
    std::thread::sleep(Duration::from_secs(2));
    let answers = env.stop_load();
    let decided = event_ms(&s, "rolling back to").unwrap_or(f64::NAN) - origin;
    let last_new = answers
        .iter()
        .filter(|a| a.version == "v3")
        .map(|a| a.at.as_secs_f64() * 1000.0)
        .fold(f64::MIN, f64::max);
    let failed = answers.iter().filter(|a| a.failure.is_some()).count();
    println!(
        "failed post-switch check (strategy-engine 5 % errors, Prometheus analysis) → all traffic on v1: workflow {} ms, clients' last v3 answer {:.0} ms after the decision; outcome {}; {failed} of {} requests failed (v3's injected errors while live) (target: revert <= 2 s)",
        s["revert_ms"],
        last_new - decided,
        s["outcome"],
        answers.len()
    );
}

fn canary_breach() {
    let mut env = KubeEnv::start_full(
        "bench-canary",
        &[],
        1,
        false,
        "v2@order-execution=live_error_rate:0.05",
    );
    let origin = load_origin(&env);
    let begun = unix_ms();
    let run = env.cli(&[
        "deploy",
        "staging",
        "--as",
        "bench",
        "--revision",
        "v2",
        "--strategy",
        "canary",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let s = wait_outcome(&env);
    std::thread::sleep(Duration::from_secs(2));
    let answers = env.stop_load();
    let first_bad = env.prom.first_increase_ms(
        &format!(
            "http_requests_total{{namespace=\"{}\",service=\"order-execution\",color=\"green\",code=~\"5..\"}}",
            env.ns
        ),
        begun,
    );
    let decided = event_ms(&s, "rolling back to");
    let last_new = answers
        .iter()
        .filter(|a| a.version == "v2")
        .map(|a| a.at.as_secs_f64() * 1000.0 + origin)
        .fold(f64::MIN, f64::max);
    let (Some(first_bad), Some(decided)) = (first_bad, decided) else {
        println!("canary breach: no decision measured ({})", s["reason"]);
        return;
    };
    println!(
        "canary, order-execution 5 % errors: first bad scrape → decision {:.0} ms (analysis interval 1000 ms, scrape 1000 ms); decision → all weights on stable: workflow {} ms, clients' last v2 answer {:.0} ms after the decision; {} of {} requests failed",
        decided - first_bad,
        s["revert_ms"],
        last_new - decided,
        answers.iter().filter(|a| a.failure.is_some()).count(),
        answers.len(),
    );
}
