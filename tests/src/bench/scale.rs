//! Many environments at once: `n` deployments started together, one per environment, each with
//! its own local platform, each a release whose strategy-engine fails live requests after the
//! switch, so every one must be rolled back by its validation window. Prints the worker's RSS and
//! CPU time, the delay between the failed check and the rollback decision (from each history),
//! and history events per deployment.

use super::resume::percentiles;
use super::{mb, millis, status, trace};
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

/// Busy CPU time of the whole machine so far, in seconds (/proc/stat: all but idle and iowait).
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = ticks.get(3).unwrap_or(&0.0) + ticks.get(4).unwrap_or(&0.0);
    (ticks.iter().sum::<f64>() - idle) / 100.0
}

/// From a rolled-back release's history, the failed check (the activity completed just before
/// the switch back was scheduled) → the switch back scheduled (the decision), in ms, split into
/// the workflow task's wait (check completed → a worker started the task) and the worker's work
/// (task started → completed with the switch back scheduled).
fn decision_ms(events: &[serde_json::Value]) -> Option<(f64, f64, f64)> {
    let back = events.iter().rposition(|e| {
        e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
            && e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "switch_traffic"
    })?;
    let check = events[..back]
        .iter()
        .rposition(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_COMPLETED")?;
    let started = events[check..back]
        .iter()
        .rposition(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_STARTED")?
        + check;
    let (c, t, d) = (
        millis(&events[check])?,
        millis(&events[started])?,
        millis(&events[back])?,
    );
    Some((d - c, t - c, d - t))
}

fn s_reason(addr: &str, config: &Path, env: &str) -> String {
    status(addr, config, env)
        .and_then(|s| s["reason"].as_str().map(str::to_owned))
        .unwrap_or_default()
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
    let c = config.display().to_string();
    let worker = Worker::start(&addr, &[("CUTOVER_CONFIG", &c)]);
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_bytes(worker.pid());
    let cpu_before = cpu_secs(worker.pid());
    let server_before = cpu_secs(temporal.pid());
    let machine_before = machine_busy_secs();
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
    // One visibility count per second (no `cutover status` per environment: 100 CLI processes
    // and 100 query tasks a round would load the machine and the worker being measured).
    let running_query = format!(
        "WorkflowType = '{}' AND ExecutionStatus = 'Running'",
        workflows::names::DEPLOY_WORKFLOW
    );
    loop {
        let running = temporal.count(&running_query).unwrap_or(n as u64) as usize;
        peak = peak.max(rss_bytes(worker.pid()));
        most_running = most_running.max(running);
        if running == 0 || begun.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let all_done = begun.elapsed();
    let cpu = cpu_secs(worker.pid()) - cpu_before;
    let server_cpu = cpu_secs(temporal.pid()) - server_before;
    let machine_cpu = machine_busy_secs() - machine_before;
    let failed: u64 = loads.into_iter().map(|l| l.stop().failed).sum();
    let mut delays = Vec::new();
    let mut events = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut reasons = Vec::new();
    for (env, _) in &envs {
        let h = temporal.history(&format!("deploy-{env}"));
        events.push(h.len() as f64);
        if let Some(d) = decision_ms(&h) {
            if std::env::var_os("CUTOVER_BENCH_TRACE").is_some() && d.0 > 2000.0 {
                let tail = h.len().saturating_sub(16);
                trace(env, &h[tail..], millis(&h[tail]).unwrap_or(0.0));
            }
            delays.push(d);
        }
        let o = status(&addr, &config, env)
            .and_then(|s| s["outcome"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if o != "rolled_back" && reasons.len() < 5 {
            reasons.push(format!("{env}: {o}: {}", s_reason(&addr, &config, env)));
        }
        *outcomes.entry(o).or_default() += 1;
    }
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let total: Vec<f64> = delays.iter().map(|d| d.0).collect();
    let wait: Vec<f64> = delays.iter().map(|d| d.1).collect();
    let work: Vec<f64> = delays.iter().map(|d| d.2).collect();
    let (d50, d99, dmax) = percentiles(&total);
    let (w50, w99, _) = percentiles(&wait);
    let (k50, k99, _) = percentiles(&work);
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
        "worker RSS idle {:.1} MB, peak {:.1} MB; worker CPU time {cpu:.1} s (Temporal dev server {server_cpu:.1} s, whole machine {machine_cpu:.1} s of {:.1} s available)",
        mb(idle_rss),
        mb(peak),
        all_done.as_secs_f64()
            * std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
    );
    println!(
        "failed check → rollback decision: p50 {d50:.0} ms, p99 {d99:.0} ms, max {dmax:.0} ms (n={})",
        delays.len()
    );
    println!(
        "  of which the workflow task waited (check completed → task started) p50 {w50:.0} / p99 {w99:.0} ms, and the worker's work (started → decision) p50 {k50:.0} / p99 {k99:.0} ms"
    );
    for r in &reasons {
        println!("  not rolled back: {r}");
    }
    println!("history events per deployment: p50 {e50:.0}, max {emax:.0}");
    println!("requests failed (served by v3 before its rollback): {failed}");
}
