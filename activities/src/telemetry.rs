//! The worker's own Prometheus metrics about deployments, in base units, served by
//! `cutover worker` on `CUTOVER_METRICS_ADDR` (`/metrics`). Activities update them as they run:
//! notifications mark starts and outcomes, weight changes and analyses set gauges.

use proto::PhaseMark;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Every metric the worker exports, with its type and help (the dashboard test reads this).
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "cutover_deployments_started_total",
        "counter",
        "Deployments started, by environment.",
    ),
    (
        "cutover_deployments_finished_total",
        "counter",
        "Deployments finished, by environment and result (succeeded, failed, rolled_back, rejected, aborted).",
    ),
    (
        "cutover_rollbacks_total",
        "counter",
        "Rollbacks, by environment.",
    ),
    (
        "cutover_deployment_running",
        "gauge",
        "1 while a deployment of the environment runs.",
    ),
    (
        "cutover_deployment_started_timestamp_seconds",
        "gauge",
        "Unix time the environment's running or last deployment started.",
    ),
    (
        "cutover_deployment_duration_seconds",
        "gauge",
        "Duration of the environment's last finished deployment, in seconds.",
    ),
    (
        "cutover_canary_weight_ratio",
        "gauge",
        "Share of a service's traffic on the canary colour (0 to 1).",
    ),
    (
        "cutover_analysis_error_ratio",
        "gauge",
        "Last canary analysis: error ratio of the canary, by environment and service.",
    ),
    (
        "cutover_analysis_p95_seconds",
        "gauge",
        "Last canary analysis: p95 latency of the canary, in seconds.",
    ),
    (
        "cutover_analysis_requests",
        "gauge",
        "Last canary analysis: canary requests in the window.",
    ),
    (
        "cutover_active_color",
        "gauge",
        "1 for the colour that takes a service's traffic after the last switch, 0 for the other.",
    ),
    (
        "cutover_breaker_open",
        "gauge",
        "1 while the environment's circuit breaker blocks deployments (open and not overridden).",
    ),
    (
        "cutover_breaker_tripped",
        "gauge",
        "1 while the environment's circuit breaker has a reason to be open, overridden or not.",
    ),
    (
        "cutover_breaker_override_active",
        "gauge",
        "1 while an override lets deployments through an open breaker.",
    ),
    (
        "cutover_phase_duration_seconds",
        "gauge",
        "Duration of each phase of the environment's last deployment, in seconds (the current phase: so far).",
    ),
    (
        "cutover_phase_started_timestamp_seconds",
        "gauge",
        "Unix time each phase of the environment's last deployment began (dashboard annotations).",
    ),
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Store {
    values: BTreeMap<(&'static str, Labels), f64>,
    /// Deployments already counted as finished / rolled back (a deployment notifies more than
    /// once: its rollback child, the warm period, a late contract phase).
    finished: std::collections::BTreeSet<String>,
    rolled_back: std::collections::BTreeSet<String>,
}

fn store() -> &'static Mutex<Store> {
    static S: OnceLock<Mutex<Store>> = OnceLock::new();
    S.get_or_init(Mutex::default)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn set(name: &'static str, labels: Labels, v: f64) {
    store().lock().unwrap().values.insert((name, labels), v);
}

fn add(name: &'static str, labels: Labels, v: f64) {
    *store()
        .lock()
        .unwrap()
        .values
        .entry((name, labels))
        .or_default() += v;
}

fn get(name: &'static str, labels: &Labels) -> f64 {
    store()
        .lock()
        .unwrap()
        .values
        .get(&(name, labels.clone()))
        .copied()
        .unwrap_or(0.0)
}

/// From a notification's event: starts, outcomes (once per deployment), rollbacks.
pub fn on_event(environment: &str, deployment_id: &str, event: &str) {
    let env: Labels = vec![("environment", environment.to_owned())];
    let key = format!("{environment}/{deployment_id}");
    match event {
        "started" => {
            add("cutover_deployments_started_total", env.clone(), 1.0);
            set("cutover_deployment_running", env.clone(), 1.0);
            set("cutover_deployment_started_timestamp_seconds", env, now());
        }
        "succeeded" | "failed" | "rolled_back" | "rejected" | "aborted" => {
            {
                let mut s = store().lock().unwrap();
                if s.finished.len() > 10_000 {
                    s.finished.clear();
                    s.rolled_back.clear();
                }
                if event == "rolled_back"
                    && (deployment_id.is_empty() || s.rolled_back.insert(key.clone()))
                {
                    *s.values
                        .entry(("cutover_rollbacks_total", env.clone()))
                        .or_default() += 1.0;
                }
                if deployment_id.is_empty() || !s.finished.insert(key) {
                    return;
                }
            }
            let mut l = env.clone();
            l.push(("result", event.to_owned()));
            add("cutover_deployments_finished_total", l, 1.0);
            let started = get("cutover_deployment_started_timestamp_seconds", &env);
            if started > 0.0 {
                set(
                    "cutover_deployment_duration_seconds",
                    env.clone(),
                    now() - started,
                );
            }
            set("cutover_deployment_running", env, 0.0);
        }
        _ => {}
    }
}

pub fn on_weight(environment: &str, service: &str, canary_percent: u32) {
    set(
        "cutover_canary_weight_ratio",
        vec![
            ("environment", environment.to_owned()),
            ("service", service.to_owned()),
        ],
        canary_percent as f64 / 100.0,
    );
}

pub fn on_analysis(environment: &str, service: &str, error_ratio: f64, p95_ms: f64, requests: f64) {
    let l: Labels = vec![
        ("environment", environment.to_owned()),
        ("service", service.to_owned()),
    ];
    set("cutover_analysis_error_ratio", l.clone(), error_ratio);
    set("cutover_analysis_p95_seconds", l.clone(), p95_ms / 1000.0);
    set("cutover_analysis_requests", l, requests);
}

pub fn on_color(environment: &str, service: &str, color: &str) {
    for c in workflows::release::Colour::ALL.iter().map(|c| c.as_str()) {
        set(
            "cutover_active_color",
            vec![
                ("environment", environment.to_owned()),
                ("service", service.to_owned()),
                ("color", c.to_owned()),
            ],
            f64::from(u8::from(c == color)),
        );
    }
}

pub fn on_breaker(environment: &str, blocking: bool, open: bool, overridden: bool) {
    let l: Labels = vec![("environment", environment.to_owned())];
    set(
        "cutover_breaker_open",
        l.clone(),
        f64::from(u8::from(blocking)),
    );
    set(
        "cutover_breaker_tripped",
        l.clone(),
        f64::from(u8::from(open)),
    );
    set(
        "cutover_breaker_override_active",
        l,
        f64::from(u8::from(overridden)),
    );
}

/// Phase durations of a deployment from the phases it entered (typed marks, in order).
pub fn on_phases(environment: &str, phases: &[PhaseMark], finished: SystemTime) {
    let marks: Vec<(String, f64)> = phases
        .iter()
        .map(|m| (m.phase.clone(), m.at_unix_ms as f64 / 1000.0))
        .collect();
    let end = finished
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    let mut begun: BTreeMap<String, f64> = BTreeMap::new();
    for (i, (name, start)) in marks.iter().enumerate() {
        begun.insert(name.clone(), *start);
        if name == "done" {
            continue;
        }
        let next = marks.get(i + 1).map_or(end, |m| m.1);
        *totals.entry(name.clone()).or_default() += (next - start).max(0.0);
    }
    {
        // A new deployment: forget the previous one's phases.
        let mut s = store().lock().unwrap();
        s.values.retain(|(n, l), _| {
            !(matches!(
                *n,
                "cutover_phase_duration_seconds" | "cutover_phase_started_timestamp_seconds"
            ) && l.first().is_some_and(|(_, e)| e == environment)
                && !begun.contains_key(l.get(1).map_or("", |(_, p)| p.as_str())))
        });
    }
    for (phase, at) in begun {
        set(
            "cutover_phase_started_timestamp_seconds",
            vec![("environment", environment.to_owned()), ("phase", phase)],
            at,
        );
    }
    for (phase, secs) in totals {
        set(
            "cutover_phase_duration_seconds",
            vec![("environment", environment.to_owned()), ("phase", phase)],
            secs,
        );
    }
}

/// Prometheus text exposition of every metric (HELP and TYPE even before a first value).
pub fn render() -> String {
    let s = store().lock().unwrap();
    let mut out = String::new();
    for (name, kind, help) in METRICS {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for ((n, labels), v) in &s.values {
            if n != name {
                continue;
            }
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {v}", l.join(","));
        }
    }
    out
}
