//! The circuit breaker of an environment (workflow `breaker-<env>`), driven through the CLI:
//! manual trips, failure streaks, overrides that end on their own, in-flight canaries held at
//! their step, and trips from a real Prometheus (firing alerts, SLO burn rate) and freeze
//! windows in the environment's time zone.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testkit::prom::Prometheus;
use testkit::{ConfigOpts, Env, Load};

/// Appends to the configuration; the worker reads it at start, so it restarts.
fn append(env: &mut Env, text: &str) {
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    cfg.push_str(text);
    std::fs::write(&env.config, cfg).unwrap();
    env.reconfigure();
}

fn breaker(env: &Env) -> Value {
    let r = env.cli(&["breaker", "status", "staging", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    serde_json::from_str(&r.stdout).unwrap()
}

fn wait_breaker(env: &Env, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let b = breaker(env);
        if f(&b) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {b}\nworker:\n{}",
            env.worker.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn blocking(b: &Value) -> bool {
    b["blocking"] == true
}

fn reasons(b: &Value) -> String {
    b["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x.as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

fn deploy(env: &Env, revision: &str, wait: bool) -> testkit::Run {
    let mut args = vec!["deploy", "staging", "--revision", revision, "--as", "ci"];
    if wait {
        args.push("--wait");
    }
    env.cli(&args)
}

fn metric(addr: &str, line_prefix: &str) -> Option<f64> {
    let body = testkit::blocking::rt().block_on(async {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })?;
    body.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn an_open_breaker_refuses_deploys_with_the_reason_and_an_expired_override_no_longer_applies() {
    // Port 0: the kernel picks a free port when the worker binds it, no other process can
    // take it first (a port chosen here could be taken by the Temporal server meanwhile).
    let mut env = Env::start(
        "breaker-manual",
        "v3@order-execution=error_rate:1.0",
        &ConfigOpts::default(),
        &[("CUTOVER_METRICS_ADDR", "127.0.0.1:0")],
    );
    append(
        &mut env,
        "breaker = { max_consecutive_failures = 2, probe_interval_secs = 1, max_override_secs = 120 }\n",
    );
    let metrics = env
        .worker
        .metrics_addr()
        .expect("the worker prints its metrics address before it polls");
    let b = breaker(&env);
    assert_eq!(b["open"], false, "{b}");

    // Two failed deployments in a row open it.
    for _ in 0..2 {
        let r = deploy(&env, "v3", true);
        assert_eq!(r.code, 1, "v3 fails its smoke test: {r:?}");
    }
    let b = wait_breaker(
        &env,
        "the failure streak",
        Duration::from_secs(20),
        blocking,
    );
    assert!(
        reasons(&b).contains("2 consecutive failed deployments"),
        "{b}"
    );
    let refused = deploy(&env, "v2", false);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("circuit breaker of staging is open")
            && refused.stderr.contains("2 consecutive failed deployments"),
        "{refused:?}"
    );
    // Nothing started: the environment's last deployment is still the failed v3.
    let last = status(&env).unwrap();
    assert_eq!(last["revision"], "v3", "{last}");

    // Reset clears the streak; a manual trip opens it again, with who and why.
    let r = env.cli(&[
        "breaker", "reset", "staging", "--reason", "v3 fixed", "--as", "alice",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("state: closed"), "{r:?}");
    let r = env.cli(&[
        "breaker",
        "trip",
        "staging",
        "--reason",
        "exchange incident",
        "--as",
        "alice",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let refused = deploy(&env, "v2", false);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(
        refused.stderr.contains("tripped by alice") && refused.stderr.contains("exchange incident"),
        "{refused:?}"
    );
    let gauge = metric(&metrics, "cutover_breaker_open{environment=\"staging\"}");
    assert_eq!(gauge, Some(1.0), "breaker gauge while open");

    // Overrides need a reason and an expiry within the configured maximum.
    let r = env.cli(&[
        "breaker", "override", "staging", "--for", "10m", "--reason", "hotfix", "--as", "bob",
    ]);
    assert!(r.code != 0 && r.stderr.contains("at most 120s"), "{r:?}");
    let r = env.cli(&[
        "breaker", "override", "staging", "--for", "30s", "--as", "bob",
    ]);
    assert!(r.code == 2 && r.stderr.contains("--reason"), "{r:?}");

    // With an override the deployment goes through the open breaker...
    let granted = Instant::now();
    let r = env.cli(&[
        "breaker",
        "override",
        "staging",
        "--for",
        "25s",
        "--reason",
        "hotfix for the incident",
        "--as",
        "bob",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("open (overridden)"), "{r:?}");
    let load = Load::start(&env.platform.services, 20);
    let ok = deploy(&env, "v2", true);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(load.stop().failed, 0);
    assert!(all_on(&env, "green"));
    // The worker's deployment metrics: live colour per service, each phase's duration.
    assert_eq!(
        metric(
            &metrics,
            "cutover_active_color{environment=\"staging\",service=\"api-gateway\",color=\"green\"}"
        ),
        Some(1.0)
    );
    wait_phase(&env, "done", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    let validating = loop {
        let v = metric(
            &metrics,
            "cutover_phase_duration_seconds{environment=\"staging\",phase=\"validating\"}",
        );
        if v.is_some() || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let validating = validating.expect("phase durations exported");
    println!("phase durations: validating {validating:.2} s (window 3 s)");
    assert!(validating >= 3.0, "{validating}");
    println!(
        "override: deployment through the open breaker took {:.1} s",
        granted.elapsed().as_secs_f64()
    );

    // ...and once it expires it no longer applies: refused again, with the reason.
    let b = wait_breaker(
        &env,
        "the override to expire",
        Duration::from_secs(40),
        |b| blocking(b) && b["override"].is_null(),
    );
    println!(
        "override of 25 s ended on its own after {:.1} s",
        granted.elapsed().as_secs_f64()
    );
    let events = b["events"].to_string();
    assert!(
        events.contains("override by bob expired"),
        "audited: {events}"
    );
    let refused = deploy(&env, "v4", false);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(refused.stderr.contains("exchange incident"), "{refused:?}");
    assert_eq!(status(&env).unwrap()["revision"], "v2");

    // Every change is in the audit trail, in order.
    for e in [
        "deployment",
        "2 in a row",
        "breaker OPEN",
        "reset by alice: v3 fixed",
        "tripped by alice: exchange incident",
        "override by bob until",
        "override by bob expired",
    ] {
        assert!(events.contains(e), "missing {e:?} in {events}");
    }
    record_fixture(&env, "breaker-staging", "breaker_probe_typed");
}

fn canary_status(env: &Env) -> Value {
    let r = env.cli(&["canary", "status", "staging", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    serde_json::from_str(&r.stdout).unwrap()
}

fn wait_canary(env: &Env, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = canary_status(env);
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}\nworker:\n{}",
            env.worker.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_in_flight_canary_holds_at_its_step_while_the_breaker_is_open() {
    let mut env = Env::start("breaker-canary", "", &ConfigOpts::default(), &[]);
    append(
        &mut env,
        "canary = { steps = [25, 50, 100], step_hold_secs = 4, analysis_interval_ms = 2000, share_tolerance_pct = 15, inconclusive_hold_secs = 60 }\n\
         breaker = { probe_interval_secs = 1 }\n",
    );
    let load = Load::start(&env.platform.services, 40);
    let r = env.cli(&[
        "deploy",
        "staging",
        "--strategy",
        "canary",
        "--revision",
        "v2",
        "--as",
        "ci",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    wait_canary(&env, "the 25% step", Duration::from_secs(60), |s| {
        s["percent"] == 25
    });
    let r = env.cli(&[
        "breaker",
        "trip",
        "staging",
        "--reason",
        "risk limits breached",
        "--as",
        "alice",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let held = wait_canary(&env, "the hold", Duration::from_secs(10), |s| {
        s["breaker_hold"]
            .as_str()
            .is_some_and(|h| h.contains("risk limits breached"))
    });
    let pct = held["percent"].as_u64().unwrap();
    let held_ms = held["held_ms"].as_u64().unwrap_or(0);
    // Held for more than two step durations: no step taken, the step's clock stopped.
    std::thread::sleep(Duration::from_secs(9));
    let later = canary_status(&env);
    assert_eq!(later["percent"].as_u64().unwrap(), pct, "{later}");
    assert_eq!(later["phase"], "shifting", "{later}");
    assert_eq!(
        later["held_ms"].as_u64().unwrap_or(0),
        held_ms,
        "the step's clock stays stopped: {later}"
    );
    assert!(
        later["outcome"].as_str().unwrap_or("").is_empty(),
        "{later}"
    );
    println!("canary held at {pct}% for 9 s (step hold 4 s), step clock stayed at {held_ms} ms");
    let r = env.cli(&[
        "canary", "promote", "staging", "--reason", "ship it", "--as", "bob",
    ]);
    assert!(
        r.code != 0 && r.stderr.contains("circuit breaker is open"),
        "promote is refused while held: {r:?}"
    );

    // Reset: the canary goes on to 100 % and promotes.
    let r = env.cli(&[
        "breaker",
        "reset",
        "staging",
        "--reason",
        "limits restored",
        "--as",
        "alice",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let s = wait_canary(&env, "the end", Duration::from_secs(90), |s| {
        s["phase"] == "done"
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(load.stop().failed, 0);
    let events = s["events"].to_string();
    assert!(
        events.contains("circuit breaker open, holding: tripped by alice")
            && events.contains("circuit breaker closed, going on"),
        "{events}"
    );
    record_fixture(&env, "deploy-staging", "canary_held_by_breaker");
}

/// `HH:MM` of a UTC offset's local time `delta_min` minutes from now.
fn local_hhmm(offset_hours: i64, delta_min: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let m = ((now / 60 + offset_hours * 60 + delta_min) % 1440 + 1440) % 1440;
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[test]
fn firing_alerts_slo_burn_and_freeze_windows_open_the_breaker() {
    // Live traffic on the running v1 of risk-management fails 5 % of the time.
    let mut env = Env::start(
        "breaker-prom",
        "v1@risk-management=live_error_rate:0.05",
        &ConfigOpts::default(),
        &[],
    );
    let admin = env.platform.admin.trim_start_matches("http://").to_owned();
    let rules = r#"groups:
  - name: jts
    rules:
      - alert: JTSHighErrorRatio
        expr: sum by (service) (rate(http_requests_total{code=~"5.."}[10s])) / sum by (service) (rate(http_requests_total[10s])) > 0.01
        labels: { severity: critical }
"#;
    let prom = Prometheus::start_with_rules(&env.dir, &[("router", &admin)], rules);
    // 99.9 % availability SLO: the burn rate is the error ratio over the budget (0.001).
    append(
        &mut env,
        &format!(
            "breaker = {{ probe_interval_secs = 1, alerts_url = \"{url}\", alerts = [\"JTSHighErrorRatio\"], prometheus_url = \"{url}\", burn_rate_query = 'sum(rate(http_requests_total{{code=~\"5..\"}}[10s])) / sum(rate(http_requests_total[10s])) / 0.001', max_burn_rate = 5.0 }}\n",
            url = prom.url
        ),
    );
    let b = breaker(&env);
    assert_eq!(b["open"], false, "{b}");

    let started = Instant::now();
    let load = Load::start(&env.platform.services, 40);
    let b = wait_breaker(
        &env,
        "the alert and the burn rate",
        Duration::from_secs(60),
        |b| {
            let r = reasons(b);
            r.contains("alerts firing: JTSHighErrorRatio") && r.contains("SLO burn rate")
        },
    );
    println!(
        "errors began → breaker open on alert and burn rate: {:.1} s; burn rate {:.1}",
        started.elapsed().as_secs_f64(),
        b["probe"]["burn_rate"].as_f64().unwrap_or(0.0)
    );
    let refused = deploy(&env, "v2", false);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(
        refused.stderr.contains("alerts firing: JTSHighErrorRatio")
            && refused.stderr.contains("SLO burn rate"),
        "{refused:?}"
    );

    // The errors stop (no traffic, no errors): the alert resolves and the breaker closes.
    load.stop();
    let b = wait_breaker(&env, "the alert to resolve", Duration::from_secs(60), |b| {
        b["open"] == false
    });
    let events = b["events"].to_string();
    assert!(events.contains("no alert firing any more"), "{events}");
    assert!(events.contains("breaker closed"), "{events}");

    // A freeze window that contains now, in UTC+9 (Etc/GMT-9): deploys refused while in it.
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    cfg = cfg.replace(
        "breaker = { probe_interval_secs = 1,",
        &format!(
            "breaker = {{ timezone = \"Etc/GMT-9\", freeze_windows = [{{ name = \"tokyo-market\", start = \"{}\", end = \"{}\" }}], probe_interval_secs = 1,",
            local_hhmm(9, -5),
            local_hhmm(9, 60)
        ),
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.reconfigure();
    let b = wait_breaker(&env, "the freeze window", Duration::from_secs(20), blocking);
    assert!(reasons(&b).contains("freeze window tokyo-market"), "{b}");
    let refused = deploy(&env, "v2", false);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(refused.stderr.contains("tokyo-market"), "{refused:?}");
    assert!(
        b["events"].to_string().contains("configuration updated"),
        "{b}"
    );
}

#[test]
fn a_blue_green_deployment_holds_before_its_switch_while_the_breaker_is_open() {
    let opts = ConfigOpts {
        approval: true,
        ..Default::default()
    };
    let mut env = Env::start("breaker-bluegreen", "", &opts, &[]);
    append(&mut env, "breaker = { probe_interval_secs = 1 }\n");
    let load = Load::start(&env.platform.services, 20);
    let started = env.cli(&["deploy", "staging", "--revision", "v2", "--as", "alice"]);
    assert_eq!(started.code, 0, "{started:?}");
    let id = started.field("deployment_id").unwrap();
    wait_phase(&env, "awaiting_approval", Duration::from_secs(30));
    let r = env.cli(&[
        "breaker",
        "freeze",
        "staging",
        "--reason",
        "market open",
        "--for",
        "1h",
        "--as",
        "carol",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("frozen by carol"), "{r:?}");
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
    let s = wait_phase(&env, "held", Duration::from_secs(20));
    assert!(
        s["breaker_hold"]
            .as_str()
            .is_some_and(|h| h.contains("frozen by carol")),
        "{s}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status(&env).unwrap()["phase"], "held");
    assert!(
        moves(&env).is_empty(),
        "no switch while held: {:?}",
        moves(&env)
    );
    assert!(all_on(&env, "blue"));

    let r = env.cli(&[
        "breaker",
        "freeze",
        "staging",
        "--lift",
        "--reason",
        "market settled",
        "--as",
        "carol",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("state: closed"), "{r:?}");
    let s = wait_outcome(&env, Duration::from_secs(60));
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(load.stop().failed, 0);
    assert!(all_on(&env, "green"));
    assert_eq!(moves(&env).len(), 1, "{:?}", moves(&env));
}
