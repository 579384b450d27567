//! Helpers shared by the integration test files.
#![allow(dead_code)]

// An explicit path: this file is also a test target of its own (a crate root).
#[path = "common/canary.rs"]
pub mod canary;

use serde_json::Value;
use std::time::{Duration, Instant};
use testkit::Env;

/// `cutover status staging --json`, or None while there is none.
pub fn status(env: &Env) -> Option<Value> {
    let run = env.cli(&["status", "staging", "--json"]);
    (run.code == 0)
        .then(|| serde_json::from_str(&run.stdout).ok())
        .flatten()
}

pub fn wait_phase(env: &Env, phase: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = status(env)
            && s["phase"] == phase
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for phase {phase}; last status: {:?}",
            status(env)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the deployment has an outcome and returns its status.
pub fn wait_outcome(env: &Env, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = status(env)
            && s["outcome"].as_str().is_some_and(|o| !o.is_empty())
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for an outcome; last status: {:?}",
            status(env)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn all_on(env: &Env, color: &str) -> bool {
    env.platform.active_colors().values().all(|c| c == color)
}

/// Traffic moves the platform performed (switch and weight changes that changed something).
pub fn moves(env: &Env) -> Vec<String> {
    env.platform
        .journal()
        .iter()
        .map(|j| format!("{} {}", j.kind, j.request_id))
        .collect()
}

/// With CUTOVER_RECORD_FIXTURES=1, saves the history of a run as a replay fixture (the JSON that
/// `WorkflowHistory::from_json` reads back).
pub fn record_fixture(env: &Env, workflow_id: &str, name: &str) {
    record_fixture_at(&env.temporal.address(), workflow_id, name);
}

/// `record_fixture` of one run of the workflow (not the latest).
pub fn record_fixture_run(env: &Env, workflow_id: &str, run_id: &str, name: &str) {
    record_run_at(&env.temporal.address(), workflow_id, Some(run_id), name);
}

/// Records a workflow's history from the Temporal server at `address` (see `record_fixture`).
pub fn record_fixture_at(address: &str, workflow_id: &str, name: &str) {
    record_run_at(address, workflow_id, None, name);
}

fn record_run_at(address: &str, workflow_id: &str, run_id: Option<&str>, name: &str) {
    use temporalio_client::{
        Client, ClientOptions, Connection, ConnectionOptions, WorkflowExecutionInfo,
    };
    let mode = std::env::var("CUTOVER_RECORD_FIXTURES").unwrap_or_default();
    if mode != "1" && mode != "overwrite" {
        return;
    }
    let path = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("fixtures")
    .join(format!("{name}.json"));
    // A recorded history of older code is the proof that its runs still replay: kept unless
    // asked for explicitly.
    if path.exists() && mode != "overwrite" {
        eprintln!(
            "fixture {} kept (CUTOVER_RECORD_FIXTURES=overwrite replaces it)",
            path.display()
        );
        return;
    }
    let url: url::Url = format!("http://{address}").parse().unwrap();
    let json = testkit::blocking::rt().block_on(async move {
        let conn = Connection::connect(
            ConnectionOptions::new(url)
                .identity("fixtures".to_owned())
                .build(),
        )
        .await
        .unwrap();
        let client = Client::new(conn, ClientOptions::new("default").build()).unwrap();
        WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(workflow_id)
            .maybe_run_id(run_id)
            .build()
            .bind_untyped(client)
            .fetch_history(Default::default())
            .to_json()
            .await
            .unwrap()
    });
    std::fs::write(path, json).unwrap();
}

/// The history JSON with every base64 payload (`"data": "..."`) decoded and appended.
pub fn decoded_payloads(history: &str) -> String {
    use base64::Engine;
    let mut out = history.to_owned();
    let v: Value = serde_json::from_str(history).unwrap_or_default();
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "data"
                        && let Some(s) = x.as_str()
                        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s)
                    {
                        out.push_str(&String::from_utf8_lossy(&bytes));
                        out.push('\n');
                    }
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v, &mut out);
    out
}
