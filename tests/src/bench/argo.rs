//! `cutover-bench --only argo`: cutover and Argo Rollouts side by side on the same test cluster
//! (the control plane, kwok and the fake kubelet's real stand-ins, Traefik as the Gateway API
//! implementation, Prometheus with Kubernetes discovery), the same four JTS services, the same
//! steady load through the gateway, the same faults; five scenarios run once by each, one world
//! (namespace, Prometheus, load) per run, one after another. Prints a table.
//!
//! Argo Rollouts is the published controller (scripts/argo-rollouts-build.sh: v1.10.1), run
//! against the test API server in namespaced mode, one Rollout per service: blue-green with
//! active and preview Services and pre- and post-promotion analysis; canary by replica count
//! (the Gateway API traffic-router plugin is not served by this machine's Go module proxy, see
//! the script): the HTTPRoute sends to one Service over stable and canary pods, so a step's share
//! is the canary's share of the pods; both analysed by a
//! Prometheus AnalysisTemplate with cutover's queries and thresholds (error ratio <= 0.01, p95 <=
//! 800 ms, 1 s interval; 4 measurements after promotion, as cutover's 4 s validation window).
//! Argo Rollouts has no notion of a release of several services: "all four" is four Rollouts
//! whose specs change in one `kubectl apply`.
//!
//! Client-side figures come from the load (20 requests a second to each service) and from
//! sessions (5 a second on average, at random times: api-gateway, then order-execution, as a
//! client placing an order), so a time is good to about 50 ms.

use crate::argo_env::{ARGO_ROLLOUTS_VERSION, ArgoEnv};
use crate::kube_env::{KubeEnv, SERVICES, live_host};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{Answer, GatewayLoad};

/// Sessions a second (api-gateway, then order-execution).
const SESSION_RATE: u32 = 5;
/// How long the load goes on once a release has settled, for the final state.
const TAIL: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------------------------
// Sessions: a client calling api-gateway and then order-execution.

/// One session: when it started (since the load's start) and the version each call reached ("" for
/// a failed call).
#[derive(Clone, Debug)]
struct Session {
    sent: Duration,
    gateway: String,
    orders: String,
}

impl Session {
    fn mixed(&self) -> bool {
        !self.gateway.is_empty() && !self.orders.is_empty() && self.gateway != self.orders
    }

    fn failed_calls(&self) -> usize {
        usize::from(self.gateway.is_empty()) + usize::from(self.orders.is_empty())
    }
}

/// Random (Poisson) arrival times, `rate` a second on average. Sessions sent on a fixed tick lock
/// into phase with the gateway's weighted round robin, which is deterministic: at a 10 % weight
/// every tenth request of a route goes to the new version, and a session whose calls always take
/// the same places in that cycle never sees it (a cutover canary run printed 0 of 83 mixed
/// sessions while each service sent a quarter of its requests to v2).
struct Arrivals {
    mean: f64,
    state: u64,
}

impl Arrivals {
    /// Seeded from the clock: each run's arrivals differ.
    fn new(rate: u32) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            mean: 1.0 / f64::from(rate),
            state: seed | 1,
        }
    }

    /// The next uniform number in (0, 1] (splitmix64).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Time to the next arrival: exponential with the mean 1 / rate.
    fn next_gap(&mut self) -> Duration {
        Duration::from_secs_f64(-self.uniform().ln() * self.mean)
    }
}

struct Sessions {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Session>>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Sessions {
    fn start(gw: &str, ns: &str, origin: Instant) -> Self {
        assert!(gw.starts_with("127."), "loopback only: {gw}");
        let rt = testkit::blocking::rt();
        let stop = Arc::new(AtomicBool::new(false));
        let got: Arc<Mutex<Vec<Session>>> = Arc::default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let calls = [
            (
                live_host(ns, "api-gateway"),
                format!("http://{gw}/api/market/status"),
            ),
            (
                live_host(ns, "order-execution"),
                format!("http://{gw}/api/orders"),
            ),
        ];
        let (stop2, got2) = (stop.clone(), got.clone());
        let handle = rt.spawn(async move {
            let mut gaps = Arrivals::new(SESSION_RATE);
            let mut next = tokio::time::Instant::now();
            let mut inflight = tokio::task::JoinSet::new();
            while !stop2.load(Ordering::Relaxed) {
                next += gaps.next_gap();
                tokio::time::sleep_until(next).await;
                let (client, calls, got) = (client.clone(), calls.clone(), got2.clone());
                inflight.spawn(async move {
                    let sent = origin.elapsed();
                    let mut versions = Vec::new();
                    for (host, url) in &calls {
                        let v = match client.get(url).header("host", host).send().await {
                            Ok(r) if r.status().is_success() => {
                                let v: Value = r.json().await.unwrap_or_default();
                                v["version"].as_str().unwrap_or_default().to_owned()
                            }
                            _ => String::new(),
                        };
                        versions.push(v);
                    }
                    got.lock().unwrap().push(Session {
                        sent,
                        gateway: versions[0].clone(),
                        orders: versions[1].clone(),
                    });
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        });
        Self {
            stop,
            got,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> Vec<Session> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = testkit::blocking::rt().block_on(h);
        }
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Sessions {
    /// A run that panicked stops its sessions too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// What one run measured.

/// The figures of one scenario run by one system.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// First answer by the new version → last by the old one, over the services that ended on
    /// the new version (ms), and how many did.
    window_ms: Option<f64>,
    moved: usize,
    /// Sessions whose two calls were answered by different versions, of all sessions, sent
    /// between the release's start and its end as the system reported it; and after its end
    /// (a release that ended mixed keeps mixing).
    mixed: (usize, usize),
    mixed_after: (usize, usize),
    /// Failed requests (load and sessions), of all; and those sent after the release ended.
    failed: (usize, usize),
    failed_after: usize,
    /// Services that failed a request after their first answer by the new version.
    failing: Vec<String>,
    /// First such failure → last answer by the new version of those services, when they all
    /// ended on the old version.
    breach_ms: Option<f64>,
    /// First such failure → last answer by the new version of any service, when all four
    /// ended on the old version.
    all_back_ms: Option<f64>,
    /// Whether clients got any answer by the new version.
    any_new: bool,
    /// Services still answering with the new version at the end while others went back.
    stayed_new: Vec<String>,
    /// Version per service in the last seconds of load.
    final_state: BTreeMap<String, String>,
    /// Operator steps left to reach one consistent, healthy release.
    manual: String,
    /// What the system itself reported (outcome, phases), and the time the release took.
    outcome: String,
    total_s: f64,
}

/// The figures from the answers of one run, times since the load's start: `from` the release's
/// start, `settled` when the system reported its end; `old` → `new` the versions.
fn figures(
    answers: &[Answer],
    sessions: &[Session],
    from: Duration,
    settled: Duration,
    old: &str,
    new: &str,
) -> Figures {
    let after: Vec<&Answer> = answers.iter().filter(|a| a.sent >= from).collect();
    let end = after.iter().map(|a| a.at).max().unwrap_or_default();
    let mut f = Figures::default();
    for s in SERVICES {
        let tail: BTreeSet<&str> = after
            .iter()
            .filter(|a| a.service == s && a.at + TAIL / 2 >= end && a.failure.is_none())
            .map(|a| a.version.as_str())
            .collect();
        let v = tail.into_iter().collect::<Vec<_>>().join("+");
        f.final_state
            .insert(s.to_owned(), if v.is_empty() { "none".into() } else { v });
    }
    let ms = |a: &&Answer| a.at.as_secs_f64() * 1000.0;
    let ended_on = |v: &str| -> Vec<&str> {
        SERVICES
            .into_iter()
            .filter(|s| f.final_state[*s] == v)
            .collect()
    };
    let moved = ended_on(new);
    f.moved = moved.len();
    if !moved.is_empty() {
        let of = |v: &str| -> Vec<f64> {
            after
                .iter()
                .filter(|a| moved.contains(&a.service.as_str()) && a.version == v)
                .map(ms)
                .collect()
        };
        let first_new = of(new).into_iter().fold(f64::MAX, f64::min);
        let last_old = of(old).into_iter().fold(f64::MIN, f64::max);
        f.window_ms = Some(last_old - first_new);
    }
    f.any_new = after.iter().any(|a| a.version == new);
    let back = ended_on(old);
    if f.any_new && !back.is_empty() {
        f.stayed_new = moved.iter().map(|s| s.to_string()).collect();
    }
    // The breach as clients saw it: the first failure of a service already answering with the
    // new version.
    let mut first_fail = f64::MAX;
    for s in SERVICES {
        let first_new = after
            .iter()
            .filter(|a| a.service == s && a.version == new)
            .map(|a| a.sent)
            .min();
        let Some(first_new) = first_new else { continue };
        let fail = after
            .iter()
            .filter(|a| a.service == s && a.failure.is_some() && a.sent >= first_new)
            .map(ms)
            .fold(f64::MAX, f64::min);
        if fail < f64::MAX {
            f.failing.push(s.to_owned());
            first_fail = first_fail.min(fail);
        }
    }
    let last_new_of = |services: &[&str]| {
        after
            .iter()
            .filter(|a| services.contains(&a.service.as_str()) && a.version == new)
            .map(ms)
            .fold(f64::MIN, f64::max)
    };
    if !f.failing.is_empty() && f.failing.iter().all(|s| back.contains(&s.as_str())) {
        let failing: Vec<&str> = f.failing.iter().map(String::as_str).collect();
        f.breach_ms = Some(last_new_of(&failing) - first_fail);
        if back.len() == 4 {
            f.all_back_ms = Some(last_new_of(&SERVICES) - first_fail);
        }
    }
    let during: Vec<&Session> = sessions
        .iter()
        .filter(|s| s.sent >= from && s.sent < settled)
        .collect();
    let later: Vec<&Session> = sessions.iter().filter(|s| s.sent >= settled).collect();
    f.mixed = (during.iter().filter(|s| s.mixed()).count(), during.len());
    f.mixed_after = (later.iter().filter(|s| s.mixed()).count(), later.len());
    let sess = during.iter().chain(later.iter());
    f.failed = (
        after.iter().filter(|a| a.failure.is_some()).count()
            + sess.clone().map(|s| s.failed_calls()).sum::<usize>(),
        after.len() + 2 * (during.len() + later.len()),
    );
    f.failed_after = after
        .iter()
        .filter(|a| a.sent >= settled && a.failure.is_some())
        .count()
        + later.iter().map(|s| s.failed_calls()).sum::<usize>();
    f
}

/// The largest share of `service`'s answers by `version` in any 2 s after `from`: what a canary
/// step gave the new version as clients saw it.
fn peak_share(answers: &[Answer], from: Duration, service: &str, version: &str) -> f64 {
    let mut buckets: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for a in answers
        .iter()
        .filter(|a| a.sent >= from && a.service == service && a.failure.is_none())
    {
        let b = buckets.entry(a.at.as_secs() / 2).or_default();
        b.1 += 1;
        if a.version == version {
            b.0 += 1;
        }
    }
    buckets
        .values()
        .filter(|(_, n)| *n >= 10)
        .map(|(v, n)| *v as f64 / *n as f64 * 100.0)
        .fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Healthy,
    PostSwitchBreach,
    /// Argo Rollouts only: as 2, with a longer post-promotion analysis.
    PostSwitchBreachLongAnalysis,
    CanaryBreach,
    Kill9,
    NeverReady,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Healthy,
        Scenario::PostSwitchBreach,
        Scenario::CanaryBreach,
        Scenario::Kill9,
        Scenario::NeverReady,
    ];

    fn title(self) -> &'static str {
        match self {
            Scenario::Healthy => "1. healthy release of all four, blue-green",
            Scenario::PostSwitchBreach => {
                "2. blue-green; strategy-engine v2 fails 5 % of live requests after the switch"
            }
            Scenario::PostSwitchBreachLongAnalysis => {
                "2b. as 2, Argo Rollouts only, its post-promotion analysis 10 measurements (to 10 s after the switch) instead of cutover's 4"
            }
            Scenario::CanaryBreach => "3. canary 10/25/50/75/100 %; order-execution v2 fails 5 %",
            Scenario::Kill9 => {
                "4. as 1, the worker / the controller killed (kill -9) at the first v2 answer, restarted 0.5 s later"
            }
            Scenario::NeverReady => "5. blue-green; risk-management v2 never becomes ready",
        }
    }

    /// JTS_FAULTS of the world's stand-ins.
    fn faults(self) -> &'static str {
        match self {
            Scenario::PostSwitchBreach | Scenario::PostSwitchBreachLongAnalysis => {
                "v2@strategy-engine=live_error_rate:0.05"
            }
            Scenario::CanaryBreach => "v2@order-execution=live_error_rate:0.05",
            Scenario::NeverReady => "v2@risk-management=never_ready:true",
            _ => "",
        }
    }

    fn canary(self) -> bool {
        self == Scenario::CanaryBreach
    }

    /// Measurements of Argo's post-promotion analysis (one a second from 1 s after the
    /// promotion): cutover's 4 s window, or longer.
    fn validation_measurements(self) -> u32 {
        if self == Scenario::PostSwitchBreachLongAnalysis {
            10
        } else {
            4
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::PostSwitchBreach => "breach",
            Scenario::PostSwitchBreachLongAnalysis => "breach-long",
            Scenario::CanaryBreach => "canary",
            Scenario::Kill9 => "kill9",
            Scenario::NeverReady => "unready",
        }
    }
}

/// Waits for the first answer by `version` in `load`, up to `timeout`.
fn first_answer_by(load: &GatewayLoad, from: Duration, version: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if load
            .answers()
            .iter()
            .any(|a| a.sent >= from && a.version == version)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn cutover_run(sc: Scenario) -> Figures {
    let mut env = KubeEnv::start_full(
        &format!("cmp-cutover-{}", sc.slug()),
        &[],
        1,
        false,
        sc.faults(),
    );
    let origin = env.load.as_ref().unwrap().started;
    let sessions = Sessions::start(&env.c.gateway.http, &env.ns, origin);
    std::thread::sleep(Duration::from_secs(2));
    let from = origin.elapsed();
    let begun = Instant::now();
    let mut args = vec!["deploy", "staging", "--as", "bench", "--revision", "v2"];
    if sc.canary() {
        args.extend(["--strategy", "canary"]);
    }
    let run = env.cli(&args);
    assert_eq!(run.code, 0, "{run:?}");
    let mut note = String::new();
    if sc == Scenario::Kill9 {
        let seen = first_answer_by(
            env.load.as_ref().unwrap(),
            from,
            "v2",
            Duration::from_secs(120),
        );
        assert!(seen, "no v2 answer within 120 s");
        env.worker.kill9();
        let killed = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        env.worker.spawn();
        env.wait_status("outcome", Duration::from_secs(300), |s| {
            !s["outcome"].as_str().unwrap_or("").is_empty()
        });
        note = format!("; kill → outcome {:.1} s", killed.elapsed().as_secs_f64());
    }
    let s = env.wait_status("outcome", Duration::from_secs(300), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    let total_s = begun.elapsed().as_secs_f64();
    let settled = origin.elapsed();
    std::thread::sleep(TAIL);
    let answers = env.stop_load();
    let sessions = sessions.stop();
    let mut f = figures(&answers, &sessions, from, settled, "v1", "v2");
    f.total_s = total_s;
    // What cutover reports, and whether an operator has anything left to do: a run that ended
    // (succeeded, or reverted / failed with every service back on v1) leaves nothing to clear.
    let colors = env.active_colors();
    let one_colour = colors.values().collect::<BTreeSet<_>>().len() == 1;
    let phase = s["phase"].as_str().unwrap_or("").to_owned();
    f.outcome = format!(
        "outcome {}, phase {phase}, active colours {}{note}",
        s["outcome"].as_str().unwrap_or("?"),
        if one_colour {
            "one for all four"
        } else {
            "mixed"
        }
    );
    f.manual = manual_steps(&f, 0, !one_colour);
    if sc.canary() {
        f.outcome.push_str(&format!(
            "; order-execution's peak v2 share {:.0} %",
            peak_share(&answers, from, "order-execution", "v2")
        ));
    }
    // Its pods stop; later worlds' Prometheus no longer scrapes them.
    env.c
        .kubectl(&["delete", "namespace", &env.ns, "--wait=false"]);
    f
}

/// What an operator has left to do once the system says the release has ended: undo the
/// aborted Rollouts, bring back those promoted while another went back (one `kubectl apply` of
/// the four v1 specs does both), find a failing version left live that nothing reported.
fn manual_steps(f: &Figures, aborted: usize, mixed_colours: bool) -> String {
    let mut steps = Vec::new();
    if aborted > 0 {
        steps.push(format!("undo {aborted} aborted Rollout(s)"));
    }
    if !f.stayed_new.is_empty() {
        steps.push(format!(
            "roll back {} promoted ({})",
            f.stayed_new.len(),
            f.stayed_new.join(", ")
        ));
    }
    if aborted > 0 || !f.stayed_new.is_empty() {
        steps.push("one `kubectl apply` of the four v1 specs does both".into());
    }
    let live_failing: Vec<&String> = f
        .failing
        .iter()
        .filter(|s| f.final_state.get(*s).is_some_and(|v| v == "v2"))
        .collect();
    if !live_failing.is_empty() && f.failed_after > 0 {
        steps.push(format!(
            "notice and roll back {} v2, left live failing {} requests after the end (nothing reported it)",
            live_failing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            f.failed_after
        ));
    }
    if mixed_colours {
        steps.push("services on different colours".into());
    }
    if steps.is_empty() {
        "0".into()
    } else {
        steps.join("; ")
    }
}

// ---------------------------------------------------------------------------------------------
fn argo_run(sc: Scenario) -> Figures {
    let mut env = ArgoEnv::start(
        &format!("cmp-argo-{}", sc.slug()),
        sc.faults(),
        sc.canary(),
        sc.validation_measurements(),
    );
    let origin = env.load.as_ref().unwrap().started;
    let sessions = Sessions::start(&env.c.gateway.http, &env.ns, origin);
    std::thread::sleep(Duration::from_secs(2));
    let from = origin.elapsed();
    let begun = Instant::now();
    env.apply(&env.rollouts("v2"));
    // The new spec must be seen before "settled" means anything.
    std::thread::sleep(Duration::from_secs(1));
    let mut note = String::new();
    if sc == Scenario::Kill9 {
        let seen = first_answer_by(
            env.load.as_ref().unwrap(),
            from,
            "v2",
            Duration::from_secs(120),
        );
        assert!(seen, "no v2 answer within 120 s\n{}", env.log_tail());
        env.kill9();
        let killed = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        env.spawn_controller();
        env.wait_settled(Duration::from_secs(300));
        note = format!("; kill → settled {:.1} s", killed.elapsed().as_secs_f64());
    }
    let st = env.wait_settled(Duration::from_secs(300));
    let total_s = begun.elapsed().as_secs_f64();
    let settled = origin.elapsed();
    std::thread::sleep(TAIL);
    let answers = env.load.take().unwrap().stop();
    let sessions = sessions.stop();
    let mut f = figures(&answers, &sessions, from, settled, "v1", "v2");
    f.total_s = total_s;
    let aborted: Vec<&String> = st.iter().filter(|(_, s)| s.1).map(|(n, _)| n).collect();
    let phases: BTreeMap<&str, usize> = st.values().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.0.as_str()).or_default() += 1;
        m
    });
    f.outcome = format!(
        "Rollouts {}{}; AnalysisRuns {}{note}",
        phases
            .iter()
            .map(|(p, n)| format!("{n} {p}"))
            .collect::<Vec<_>>()
            .join(", "),
        if aborted.is_empty() {
            String::new()
        } else {
            format!(
                " (aborted: {})",
                aborted
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        env.analysis_runs()
    );
    // An aborted Rollout stays Degraded with v2 in its spec until an operator undoes (or
    // re-applies v1) or retries it.
    f.manual = manual_steps(&f, aborted.len(), false);
    if sc.canary() {
        f.outcome.push_str(&format!(
            "; order-execution's peak v2 share {:.0} %",
            peak_share(&answers, from, "order-execution", "v2")
        ));
    }
    f
}

// ---------------------------------------------------------------------------------------------
// The table.

fn state_text(f: &Figures) -> String {
    let vs: BTreeSet<&String> = f.final_state.values().collect();
    if vs.len() == 1 {
        return format!("all four on {}", vs.into_iter().next().unwrap());
    }
    f.final_state
        .iter()
        .map(|(s, v)| format!("{s} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.1}×", a / b),
        _ => "—".into(),
    }
}

fn window_text(f: &Figures) -> String {
    match f.window_ms {
        Some(w) if f.moved == 4 => format!("{w:.0} ms"),
        Some(w) => format!("{w:.0} ms ({} of 4 moved)", f.moved),
        None if f.breach_ms.is_some() || f.any_new => "— (ended with all four on v1)".into(),
        None => "— (no v2 answer reached clients)".into(),
    }
}

/// First failed request of a service answering with v2 → that service (those services) back
/// on v1, and → all four on v1.
fn breach_text(f: &Figures, sc: Scenario) -> String {
    if matches!(sc, Scenario::Healthy | Scenario::Kill9) {
        return "— (no breach)".into();
    }
    let failing = f.failing.join(", ");
    let mut t = match (f.breach_ms, f.failing.is_empty()) {
        (Some(b), _) => format!("{failing} on v1 {b:.0} ms"),
        (None, true) if !f.any_new => "— (no v2 answer reached clients)".into(),
        (None, true) => "— (no request failed)".into(),
        (None, false) => format!("never: {failing} v2 stayed live"),
    };
    match (f.all_back_ms, f.stayed_new.is_empty()) {
        (Some(a), _) => t.push_str(&format!("; all four on v1 {a:.0} ms")),
        (None, false) => t.push_str(&format!(
            "; all four never ({} stay on v2)",
            f.stayed_new.join(", ")
        )),
        (None, true) => {}
    }
    t
}

fn mixed_text(f: &Figures) -> String {
    let mut t = format!("{} of {} during the release", f.mixed.0, f.mixed.1);
    if f.mixed_after.0 > 0 {
        t.push_str(&format!(
            "; {} of {} after it (mixed for good)",
            f.mixed_after.0, f.mixed_after.1
        ));
    }
    t
}

/// One run; a run that fails (a world that does not start, a release that never settles) is a
/// row saying so, and the others still run.
fn guarded(sc: Scenario, system: &str, run: fn(Scenario) -> Figures) -> Figures {
    eprintln!("== {} — {system}", sc.title());
    match std::panic::catch_unwind(|| run(sc)) {
        Ok(f) => {
            eprintln!("   {f:?}");
            f
        }
        Err(e) => {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let why = why.lines().next().unwrap_or_default().to_owned();
            Figures {
                outcome: format!("RUN FAILED: {why}"),
                manual: "?".into(),
                ..Default::default()
            }
        }
    }
}

/// `scenarios`: which of 1..=5 (all when empty); `systems`: "cutover", "argo" (both when empty).
pub fn run(scenarios: &[usize], systems: &[String]) {
    let version = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(testkit::cluster::repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let temporal = std::process::Command::new(testkit::temporal_cli())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("\n## cutover and Argo Rollouts side by side (issue 14)");
    println!(
        "cutover {version} (`cutover deploy staging --revision v2 [--strategy canary]`, worker on `{temporal}`), Argo Rollouts {ARGO_ROLLOUTS_VERSION} (blue-green; canary by replica count: the Gateway API plugin is not served here) (`kubectl apply --server-side` of the four Rollouts at v2; controller: --namespaced --leader-elect=false); Kubernetes {}, Traefik {}, Prometheus (1 s scrapes); load 20 req/s per service + {SESSION_RATE} sessions/s at random (Poisson) times (api-gateway then order-execution) through the gateway",
        testkit::cluster::K8S_VERSION,
        testkit::cluster::TRAEFIK_VERSION,
    );
    let wants = |s: &str| systems.is_empty() || systems.iter().any(|x| x == s);
    let mut rows = Vec::new();
    for (i, sc) in Scenario::ALL.into_iter().enumerate() {
        if !scenarios.is_empty() && !scenarios.contains(&(i + 1)) {
            continue;
        }
        let c = wants("cutover").then(|| guarded(sc, "cutover", cutover_run));
        let a = wants("argo").then(|| guarded(sc, "Argo Rollouts", argo_run));
        rows.push((sc, c, a));
        if sc == Scenario::PostSwitchBreach && wants("argo") {
            let long = Scenario::PostSwitchBreachLongAnalysis;
            rows.push((long, None, Some(guarded(long, "Argo Rollouts", argo_run))));
        }
    }
    println!();
    println!(
        "| scenario | system | cutover window, all four (first v2 → last v1) | sessions on mixed versions (api-gateway then order-execution) | failed requests | breach (first failed request of a service on v2) → back on v1 | final state | manual steps left | release took | what the system reported |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (sc, c, a) in &rows {
        for (name, f) in [("cutover", c), ("Argo Rollouts", a)] {
            let Some(f) = f else { continue };
            println!(
                "| {} | {name} | {} | {} | {} of {} | {} | {} | {} | {:.1} s | {} |",
                sc.title(),
                window_text(f),
                mixed_text(f),
                f.failed.0,
                f.failed.1,
                breach_text(f, *sc),
                state_text(f),
                f.manual,
                f.total_s,
                f.outcome
            );
        }
    }
    println!();
    println!(
        "Ratios, Argo Rollouts ÷ cutover (the machine is noisy; both ran here, one after the other):"
    );
    for (sc, c, a) in &rows {
        let (Some(c), Some(a)) = (c, a) else { continue };
        println!(
            "- {}: release took {}, failed requests {}, sessions on mixed versions during the release {}, breach → failing service on v1 {}, cutover window {}",
            sc.title(),
            ratio(Some(a.total_s), Some(c.total_s)),
            ratio(Some(a.failed.0 as f64), Some(c.failed.0 as f64)),
            ratio(Some(a.mixed.0 as f64), Some(c.mixed.0 as f64)),
            ratio(a.breach_ms, c.breach_ms),
            match c.window_ms {
                Some(w) if w < 50.0 => format!(
                    "— (cutover's {w:.0} ms is within the load's 50 ms resolution; Argo's {})",
                    window_text(a)
                ),
                _ => ratio(a.window_ms, c.window_ms),
            },
        );
    }
    println!(
        "- all four as one unit: cutover releases the four services in one workflow (one switch, one rollback); Argo Rollouts has no such unit — four Rollouts, each promoted or aborted on its own (see the final states above)."
    );
    println!(
        "- database migrations: a phase of cutover's release (`cutover migrate`, verified backup first); Argo Rollouts has none — not run for either here: a migration would be a Job run by another tool before the apply, outside the Rollout's analysis and abort."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer by `version` of `service` at `ms` (sent 10 ms before); "" version: a failure.
    fn ans(service: &str, ms: u64, version: &str) -> Answer {
        Answer {
            service: service.into(),
            sent: Duration::from_millis(ms.saturating_sub(10)),
            at: Duration::from_millis(ms),
            instance: String::new(),
            version: version.into(),
            color: String::new(),
            failure: version.is_empty().then(|| "500".into()),
        }
    }

    /// Every service answering every 50 ms from 0 to 6 s, by `version_of(service, ms)`.
    fn load(version_of: impl Fn(&str, u64) -> &'static str) -> Vec<Answer> {
        let mut v = Vec::new();
        for ms in (0..=6000).step_by(50) {
            for s in SERVICES {
                v.push(ans(s, ms, version_of(s, ms)));
            }
        }
        v
    }

    fn session(ms: u64, gateway: &str, orders: &str) -> Session {
        Session {
            sent: Duration::from_millis(ms),
            gateway: gateway.into(),
            orders: orders.into(),
        }
    }

    const END: Duration = Duration::from_millis(3000);

    #[test]
    fn a_clean_cut_of_all_four_has_a_negative_window_and_ends_on_the_new_version() {
        // The four services move between 1000 and 1100 ms (the last v1 at 1000, the first v2
        // at 1050: a 50 ms gap, negative window); one session crossed the cut.
        let answers = load(|_, ms| if ms <= 1000 { "v1" } else { "v2" });
        let sessions = vec![
            session(900, "v1", "v1"),
            session(1000, "v1", "v2"),
            session(2000, "v2", "v2"),
            session(4000, "v2", "v2"),
        ];
        let f = figures(
            &answers,
            &sessions,
            Duration::from_millis(500),
            END,
            "v1",
            "v2",
        );
        assert_eq!(f.moved, 4);
        assert_eq!(f.window_ms.map(|w| w.round()), Some(-50.0));
        assert_eq!(f.mixed, (1, 3));
        assert_eq!(f.mixed_after, (0, 1));
        assert_eq!(f.failed.0, 0);
        assert!(f.final_state.values().all(|v| v == "v2"), "{f:?}");
        assert_eq!(f.breach_ms, None);
        assert!(f.stayed_new.is_empty() && f.failing.is_empty());
        assert_eq!(manual_steps(&f, 0, false), "0");
    }

    #[test]
    fn one_service_rolled_back_alone_leaves_the_others_on_the_new_version() {
        // strategy-engine: v2 from 1050, a failure at 1500, back on v1 from 2050; the rest stay
        // on v2 (and their sessions stay mixed after the end).
        let answers = load(|s, ms| match (s, ms) {
            (_, ..=1000) => "v1",
            ("strategy-engine", 1500) => "",
            ("strategy-engine", 2050..) => "v1",
            _ => "v2",
        });
        let f = figures(
            &answers,
            &[session(4000, "v2", "v1")],
            Duration::ZERO,
            END,
            "v1",
            "v2",
        );
        assert_eq!(f.final_state["strategy-engine"], "v1");
        assert_eq!(f.moved, 3);
        assert_eq!(f.failed, (1, answers.len() + 2));
        assert_eq!(f.failing, ["strategy-engine"]);
        // First failure (1500) → last v2 answer of strategy-engine (2000); never all four.
        assert_eq!(f.breach_ms.map(|b| b.round()), Some(500.0));
        assert_eq!(f.all_back_ms, None);
        assert_eq!(f.stayed_new.len(), 3);
        assert_eq!(f.mixed_after, (1, 1));
        let text = breach_text(&f, Scenario::PostSwitchBreach);
        assert!(
            text.starts_with("strategy-engine on v1 500 ms; all four never"),
            "{text}"
        );
        let manual = manual_steps(&f, 1, false);
        assert!(
            manual.contains("undo 1 aborted") && manual.contains("roll back 3 promoted"),
            "{manual}"
        );
    }

    #[test]
    fn a_failing_version_left_live_is_a_manual_step() {
        // strategy-engine v2 fails at 1500 and 4000 (after the end) and stays live.
        let answers = load(|s, ms| match (s, ms) {
            (_, ..=1000) => "v1",
            ("strategy-engine", 1500 | 4000) => "",
            _ => "v2",
        });
        let f = figures(&answers, &[], Duration::ZERO, END, "v1", "v2");
        assert_eq!(f.failing, ["strategy-engine"]);
        assert_eq!(f.breach_ms, None);
        assert_eq!(f.failed_after, 1);
        assert_eq!(
            breach_text(&f, Scenario::PostSwitchBreach),
            "never: strategy-engine v2 stayed live"
        );
        assert!(manual_steps(&f, 0, false).contains("notice and roll back strategy-engine v2"));
    }

    #[test]
    fn all_four_back_after_a_breach_is_timed_to_the_last_new_answer_anywhere() {
        // All four on v2 from 1050; strategy-engine fails at 1500; all back on v1 from 2050,
        // api-gateway's last v2 at 2100.
        let answers = load(|s, ms| match (s, ms) {
            (_, ..=1000) => "v1",
            ("strategy-engine", 1500) => "",
            ("api-gateway", 2050..=2100) => "v2",
            (_, 2050..) => "v1",
            _ => "v2",
        });
        let f = figures(&answers, &[], Duration::ZERO, END, "v1", "v2");
        assert_eq!(f.breach_ms.map(|b| b.round()), Some(500.0));
        assert_eq!(f.all_back_ms.map(|b| b.round()), Some(600.0));
        assert_eq!(window_text(&f), "— (ended with all four on v1)");
    }

    #[test]
    fn a_release_that_never_moved_has_no_window() {
        let answers = load(|_, _| "v1");
        let f = figures(&answers, &[], Duration::ZERO, END, "v1", "v2");
        assert_eq!(f.moved, 0);
        assert_eq!(f.window_ms, None);
        assert_eq!(state_text(&f), "all four on v1");
        assert_eq!(window_text(&f), "— (no v2 answer reached clients)");
        assert_eq!(
            breach_text(&f, Scenario::NeverReady),
            "— (no v2 answer reached clients)"
        );
    }

    #[test]
    fn peak_share_is_the_busiest_two_seconds() {
        // order-execution: v2 answers every other request between 2 and 4 s.
        let answers = load(|s, ms| {
            if s == "order-execution" && (2000..4000).contains(&ms) && ms % 100 == 0 {
                "v2"
            } else {
                "v1"
            }
        });
        let p = peak_share(&answers, Duration::ZERO, "order-execution", "v2");
        assert_eq!(p.round(), 50.0);
    }

    /// Session arrivals are Poisson at the rate asked: mean gap 1 / rate, and as spread as an
    /// exponential (standard deviation about the mean), not a fixed tick.
    #[test]
    fn arrivals_are_random_at_the_rate() {
        let mut a = Arrivals::new(5);
        let gaps: Vec<f64> = (0..20_000).map(|_| a.next_gap().as_secs_f64()).collect();
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((mean - 0.2).abs() < 0.01, "mean gap {mean}");
        assert!((sd / mean - 1.0).abs() < 0.05, "sd / mean {}", sd / mean);
        assert!(gaps.iter().all(|g| g.is_finite() && *g >= 0.0));
    }
}
