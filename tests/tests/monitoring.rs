//! Monitoring: the alert rules pass their promtool unit tests, the PrometheusRule carries the
//! same groups as the plain rule file, and the Grafana dashboard references only metrics that
//! the router or the worker really export (read from their /metrics endpoints).

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::{Platform, Temporal, Worker, scratch_dir};

fn repo() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    let dir = repo().join("k8s/monitoring");
    let check = Command::new("promtool")
        .args(["check", "rules", "rules.yaml"])
        .current_dir(&dir)
        .output()
        .expect("promtool (Debian prometheus) runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let test = Command::new("promtool")
        .args(["test", "rules", "tests/rules_test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(test.status.success(), "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_prometheus_rule_carries_the_same_groups_as_the_rule_file() {
    let rules = std::fs::read_to_string(repo().join("k8s/monitoring/rules.yaml")).unwrap();
    let cr = std::fs::read_to_string(repo().join("k8s/monitoring/prometheusrule.yaml")).unwrap();
    let groups = &rules[rules.find("groups:").unwrap()..];
    let spec = &cr[cr.find("spec:\n").unwrap() + "spec:\n".len()..];
    let unindented: String = spec
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(unindented.trim_end(), groups.trim_end());
}

/// Metric names in a PromQL expression (identifiers followed by `{`, `[`, `)` or a space that
/// are not functions, keywords or label names).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut in_braces = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '{' {
            in_braces += 1;
        } else if c == '}' {
            in_braces -= 1;
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                i += 1;
            }
        } else if (c.is_ascii_alphabetic() || c == '_') && in_braces == 0 {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let next = bytes[i..].iter().find(|c| !c.is_whitespace()).copied();
            let keyword = [
                "by",
                "without",
                "and",
                "or",
                "unless",
                "on",
                "ignoring",
                "group_left",
                "group_right",
                "bool",
                "offset",
            ]
            .contains(&word.as_str());
            let function = next == Some('(');
            let prev_by = expr[..expr.char_indices().nth(start).map(|(b, _)| b).unwrap_or(0)]
                .trim_end()
                .ends_with('(')
                && expr[..expr.char_indices().nth(start).map(|(b, _)| b).unwrap_or(0)]
                    .trim_end()
                    .trim_end_matches('(')
                    .trim_end()
                    .ends_with("by");
            if word.contains('_') && !keyword && !function && !prev_by && !word.starts_with("__") {
                out.insert(word);
            }
            continue;
        }
        i += 1;
    }
    out
}

fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap().to_owned();
            if parts.next() == Some("histogram") {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            names.insert(name);
        }
    }
    names
}

#[test]
fn the_dashboard_has_a_stable_uid_and_uses_only_exported_metrics() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("k8s/monitoring/grafana/cutover-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(dash["uid"], "cutover-deployments");
    let mut exprs: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    let annotations = dash["annotations"]["list"].as_array().unwrap();
    assert!(annotations.iter().any(|a| {
        a["expr"]
            .as_str()
            .unwrap_or("")
            .contains("cutover_deployments_started_total")
    }));
    for a in annotations {
        exprs.push(a["expr"].as_str().unwrap().to_owned());
    }
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for m in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "cutover_canary_weight_ratio",
        "cutover_deployments_finished_total",
        "cutover_deployments_started_total",
        "cutover_breaker_open",
        "cutover_phase_duration_seconds",
        "cutover_phase_started_timestamp_seconds",
        "cutover_active_color",
    ] {
        assert!(used.contains(m), "{m} not found among {used:?}");
    }

    // What the router and the worker really export.
    let dir = scratch_dir("monitoring");
    let platform = Platform::start("", 1);
    let router = testkit::blocking::rt().block_on(async {
        reqwest::get(format!("{}/metrics", platform.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let temporal = Temporal::start(&dir);
    let config = dir.join("cutover.toml");
    let text = testkit::config_text(&[("staging", &platform.admin)], &Default::default());
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let worker = Worker::start(
        &temporal.address(),
        &[
            ("CUTOVER_METRICS_ADDR", "127.0.0.1:0"),
            ("CUTOVER_CONFIG", &config),
        ],
    );
    let mut addr = String::new();
    testkit::wait_until(
        "the worker's metrics address",
        std::time::Duration::from_secs(60),
        || {
            addr = worker.metrics_addr().unwrap_or_default();
            !addr.is_empty()
        },
    );
    let mut worker_text = String::new();
    testkit::wait_until("worker metrics", std::time::Duration::from_secs(20), || {
        worker_text = testkit::blocking::rt()
            .block_on(async {
                reqwest::get(format!("http://{addr}/metrics"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()
            })
            .unwrap_or_default();
        worker_text.contains("# TYPE")
    });
    let mut available = exported(&router);
    available.extend(exported(&worker_text));
    let missing: Vec<&String> = used.iter().filter(|m| !available.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses metrics nobody exports: {missing:?}\nexported: {available:?}"
    );
}
