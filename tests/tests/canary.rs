//! Gradual traffic shift on the local platform with a real Prometheus scraping the router
//! (1 s scrape interval), driven through Temporal and the `cutover worker`.

mod common;

use common::canary::*;
use serde_json::Value;
use std::time::Duration;
use testkit::Load;

#[test]
fn a_healthy_canary_goes_from_10_to_100_percent_and_promotes() {
    let (env, _prom) = canary_env("canary-healthy", "", 3, 60);
    let load = Load::start(&env.platform.services, 50);
    start(&env);
    let s = wait(&env, "the end", Duration::from_secs(240), done);
    let stats = load.stop();
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(
        common::all_on(&env, "green"),
        "{:?}",
        env.platform.active_colors()
    );
    // At every step, the analyses that counted saw the observed share within tolerance.
    let decisions = s["decisions"].as_array().unwrap();
    for pct in [10u64, 25, 50, 75, 100] {
        let counted: Vec<&Value> = decisions
            .iter()
            .filter(|d| {
                d["percent"].as_u64() == Some(pct) && d["outcome"] == "passed" && d["detail"] == ""
            })
            .collect();
        assert!(
            counted.len() >= 3,
            "{pct}%: {} counted analyses",
            counted.len()
        );
        for d in &counted {
            for a in d["services"].as_array().unwrap() {
                let share = a["share_pct"].as_f64().unwrap();
                assert!((share - pct as f64).abs() <= 8.0, "{pct}%: {a}");
            }
        }
        let shares: Vec<f64> = counted
            .iter()
            .flat_map(|d| {
                d["services"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["share_pct"].as_f64().unwrap())
            })
            .collect();
        eprintln!(
            "step {pct}%: {} analyses counted, observed share {:.1}..{:.1}%",
            counted.len(),
            shares.iter().cloned().fold(f64::MAX, f64::min),
            shares.iter().cloned().fold(f64::MIN, f64::max)
        );
    }
    eprintln!(
        "healthy canary: {} served, {} failed",
        stats.ok, stats.failed
    );
    common::record_fixture(&env, "deploy-staging", "canary_promoted");
    common::record_fixture(&env, "deploy-staging", "canary_authority");
}

#[test]
fn a_canary_with_5_percent_errors_on_one_service_is_rolled_back_automatically() {
    // v3 of strategy-engine fails 5 % of live requests (the checks' own requests pass).
    let (env, prom) = canary_env(
        "canary-bad",
        "v3@strategy-engine=live_error_rate:0.05",
        30,
        60,
    );
    let load = Load::start(&env.platform.services, 50);
    start(&env);
    let s = wait(&env, "the end", Duration::from_secs(180), done);
    load.stop();
    assert_eq!(s["outcome"], "rolled_back", "{s}");
    assert!(
        s["reason"].as_str().unwrap().contains("strategy-engine"),
        "{s}"
    );
    assert!(
        common::all_on(&env, "blue"),
        "{:?}",
        env.platform.active_colors()
    );
    let state = env.platform.state();
    for (name, svc) in &state.services {
        assert_eq!(
            svc.weights.get("green").copied().unwrap_or(0),
            0,
            "{name}: {:?}",
            svc.weights
        );
    }
    // The first scrape in which the canary's error counter grew (it is exported at 0 from the
    // start and Prometheus scraped the zeros before the canary began).
    let first_bad_ms = prom
        .first_increase_ms(
            r#"http_requests_total{service="strategy-engine",color="green",code=~"5.."}"#,
            0.0,
        )
        .expect("Prometheus saw a canary error");
    let back = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .find(|e| e.contains("all services back on blue"))
        .unwrap();
    let back_ms = rfc3339_ms(back.split_whitespace().next().unwrap());
    let elapsed = back_ms - first_bad_ms;
    for d in s["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .take(5)
        .rev()
    {
        let se = d["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["service"] == "strategy-engine")
            .cloned()
            .unwrap_or_default();
        eprintln!(
            "  analysis {} (+{:.0} ms after the first bad scrape): {} strategy-engine requests {:.1} error ratio {:.3}",
            d["at"],
            rfc3339_ms(d["at"].as_str().unwrap()) - first_bad_ms,
            d["outcome"],
            se["canary_requests"].as_f64().unwrap_or(0.0),
            se["error_ratio"].as_f64().unwrap_or(0.0)
        );
    }
    eprintln!(
        "first bad scrape → all traffic on stable: {elapsed:.0} ms (analysis interval {INTERVAL_MS} ms + scrape interval 1000 ms = {} ms); revert after the breach {} ms",
        INTERVAL_MS + 1000,
        s["revert_ms"]
    );
    // Within one analysis interval plus one scrape interval, as a property rather than a timing:
    // the first analysis after the first bad scrape is the one that fails (an analysis that
    // ends after the bad sample is in Prometheus sees it; 200 ms covers ingestion), and the
    // rollback follows it directly.
    assert!(elapsed > 0.0, "{elapsed}");
    let decisions = s["decisions"].as_array().unwrap();
    let last = decisions.last().unwrap();
    assert!(
        last["outcome"] == "failed" && rfc3339_ms(last["at"].as_str().unwrap()) > first_bad_ms,
        "the failed analysis comes after the first bad scrape: {last}"
    );
    let late: Vec<&Value> = decisions
        .iter()
        .filter(|d| rfc3339_ms(d["at"].as_str().unwrap()) > first_bad_ms + 200.0)
        .filter(|d| d["outcome"] != "failed")
        .collect();
    assert!(
        late.is_empty(),
        "analyses that saw the bad scrape and did not fail: {late:?}"
    );
    common::record_fixture(&env, "deploy-staging", "canary_rolled_back");
}

#[test]
fn with_prometheus_down_no_step_is_promoted_and_the_canary_continues_when_it_returns() {
    let (env, mut prom) = canary_env("canary-promdown", "", 3, 120);
    let load = Load::start(&env.platform.services, 50);
    start(&env);
    wait(&env, "step 2", Duration::from_secs(120), |s| {
        s["percent"] == 25
    });
    prom.stop();
    let held = wait(&env, "a hold", Duration::from_secs(30), |s| {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap_or("").contains("holding at 25%"))
    });
    // While Prometheus is down, nothing moves past 25 %.
    std::thread::sleep(Duration::from_secs(6));
    let s = canary_status(&env).unwrap();
    assert_eq!(s["percent"], 25, "{s}");
    assert_eq!(s["outcome"], "", "{s}");
    assert!(
        held["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["outcome"] == "inconclusive")
    );
    prom.spawn();
    let s = wait(&env, "the end", Duration::from_secs(240), done);
    let stats = load.stop();
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(stats.failed, 0);
}

#[test]
fn kill_9_of_the_worker_during_a_hold_continues_the_hold_for_the_remaining_time_only() {
    let (mut env, _prom) = canary_env("canary-kill", "", 8, 120);
    let load = Load::start(&env.platform.services, 50);
    start(&env);
    let s = wait(&env, "4 s held at 25%", Duration::from_secs(120), |s| {
        s["percent"] == 25 && s["held_ms"].as_u64().unwrap_or(0) >= 4000
    });
    let held_before = s["held_ms"].as_u64().unwrap();
    let step_started = rfc3339_ms(s["step_started_at"].as_str().unwrap());
    env.worker.kill9();
    std::thread::sleep(Duration::from_secs(2));
    env.worker.restart();
    let s = wait(&env, "step 3", Duration::from_secs(120), |s| {
        s["percent"] == 50 || done(s)
    });
    let step3 = rfc3339_ms(s["step_started_at"].as_str().unwrap());
    let step2_secs = (step3 - step_started) / 1000.0;
    let s = wait(&env, "the end", Duration::from_secs(240), done);
    let stats = load.stop();
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(stats.failed, 0);
    // The analyses that counted toward the 25 % hold: exactly the hold's worth (8 × 1 s), the
    // ones before the kill included; a restarted hold would have counted 4 more.
    let counted = s["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["percent"] == 25 && d["outcome"] == "passed" && d["detail"] == "")
        .count();
    eprintln!(
        "step 25%: held {held_before} ms before kill -9; {counted} analyses counted for an 8 s hold at 1 s; the step lasted {step2_secs:.1} s of wall clock (2 s outage + the dead worker's heartbeat timeout)"
    );
    assert!(held_before >= 4000);
    assert_eq!(counted, 8, "the hold did not continue where it was");
}
