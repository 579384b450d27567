//! Many environments at once: `n` deployments started together, one per environment, each with
//! its own local platform, each a release whose strategy-engine fails live requests after the
//! switch, so every one must be rolled back by its validation window. Prints the worker's RSS and
//! CPU time, the delay between the failed check and the rollback decision (from each history),
//! and history events per deployment.

use super::resume::percentiles;
use super::{mb, status};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{ConfigOpts, Load, Platform, Temporal, Worker, config_text, rss_bytes, run_cli};

/// CPU time (user + system) of a process so far, in seconds (from /proc; 100 ticks per second).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, /proc/pid/stat).
    let tick = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    (tick(14).unwrap_or(0.0) + tick(15).unwrap_or(0.0)) / 100.0
}

fn millis(event: &serde_json::Value) -> Option<f64> {
    event["eventTime"]
        .as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64)
}

/// From a rolled-back release's history: the failed check (the activity completed just before
/// the switch back was scheduled) → the switch back scheduled (the decision), in ms.
fn decision_ms(events: &[serde_json::Value]) -> Option<f64> {
    let back = events.iter().rposition(|e| {
        e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
            && e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "switch_traffic"
    })?;
    let check = events[..back]
        .iter()
        .rposition(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_COMPLETED")?;
    Some(millis(&events[back])? - millis(&events[check])?)
}

pub fn scale(dir: &Path, n: usize) {
    let dir = dir.join("scale");
    std::fs::create_dir_all(&dir).unwrap();
    let temporal = Temporal::start(&dir);
    let addr = temporal.address();
    let platforms: Vec<Platform> = (0..n)
        .map(|_| Platform::start("v3@strategy-engine=live_error_rate:0.3", 1))
        .collect();
    let envs: Vec<(String, String)> = platforms
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("env{i}"), p.admin.clone()))
        .collect();
    let env_refs: Vec<(&str, &str)> = envs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let opts = ConfigOpts {
        replicas: 1,
        validation_window_secs: 30,
        min_requests: 3,
        ..Default::default()
    };
    let config = dir.join("cutover-scale.toml");
    std::fs::write(&config, config_text(&env_refs, &opts)).unwrap();
    let worker = Worker::start(&addr, &[]);
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_bytes(worker.pid());
    let cpu_before = cpu_secs(worker.pid());
    let loads: Vec<Load> = platforms
        .iter()
        .map(|p| Load::start(&p.services, 1))
        .collect();
    let begun = Instant::now();
    // Every `cutover deploy` at once, each from its own thread.
    std::thread::scope(|s| {
        for (env, _) in &envs {
            let (addr, config) = (&addr, &config);
            s.spawn(move || {
                let r = run_cli(
                    addr,
                    config,
                    &["deploy", env, "--revision", "v3", "--as", "bench"],
                );
                assert_eq!(r.code, 0, "{r:?}");
            });
        }
    });
    let started_in = begun.elapsed();
    let (mut peak, mut most_running) = (0, 0);
    loop {
        let running = envs
            .iter()
            .filter(|(e, _)| {
                status(&addr, &config, e)
                    .and_then(|s| s["outcome"].as_str().map(str::is_empty))
                    .unwrap_or(true)
            })
            .count();
        peak = peak.max(rss_bytes(worker.pid()));
        most_running = most_running.max(running);
        if running == 0 || begun.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let all_done = begun.elapsed();
    let cpu = cpu_secs(worker.pid()) - cpu_before;
    let failed: u64 = loads.into_iter().map(|l| l.stop().failed).sum();
    let mut delays = Vec::new();
    let mut events = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (env, _) in &envs {
        let h = temporal.history(&format!("deploy-{env}"));
        events.push(h.len() as f64);
        delays.extend(decision_ms(&h));
        let o = status(&addr, &config, env)
            .and_then(|s| s["outcome"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *outcomes.entry(o).or_default() += 1;
    }
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (d50, d99, dmax) = percentiles(&delays);
    let (e50, _, emax) = percentiles(&events);
    println!(
        "\n== {n} deployments at once in {n} environments (each a release rolled back by its validation window) =="
    );
    println!(
        "started in {:.1} s; up to {most_running} running at once; all finished in {:.1} s; outcomes {outcomes:?}",
        started_in.as_secs_f64(),
        all_done.as_secs_f64()
    );
    println!(
        "machine: {} cores, load average {} (every environment's platform, stand-ins and traffic run here too)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_avg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "worker RSS idle {:.1} MB, peak {:.1} MB; worker CPU time {cpu:.1} s",
        mb(idle_rss),
        mb(peak)
    );
    println!(
        "failed check → rollback decision: p50 {d50:.0} ms, p99 {d99:.0} ms, max {dmax:.0} ms (n={})",
        delays.len()
    );
    println!("history events per deployment: p50 {e50:.0}, max {emax:.0}");
    println!("requests failed (served by v3 before its rollback): {failed}");
}
