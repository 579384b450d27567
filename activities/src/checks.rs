//! Smoke, performance and live-traffic checks. Each result keeps its figures, so the status and
//! the history show why a deployment went on or stopped.

use crate::error::Failure;
use crate::platform::Platform;
use futures::StreamExt;
use proto::{CheckReport, CheckRequest, CheckResult, ServicePlan, Thresholds, WindowCheckRequest};
use std::future::Future;
use std::time::{Duration, Instant};
use wire::CHECK_HEADER;
use wire::metrics::quantile;

pub const PASSED: &str = "passed";
pub const FAILED: &str = "failed";
pub const INCONCLUSIVE: &str = "inconclusive";

async fn endpoints(
    platform: &Platform,
    svc: &ServicePlan,
    color: &str,
) -> Result<Vec<String>, Failure> {
    let eps = platform.endpoints(&svc.name, color).await?;
    if eps.is_empty() {
        return Err(Failure::NotReady(format!(
            "{} has no ready {color} instance to check",
            svc.name
        )));
    }
    Ok(eps)
}

/// Smoke requests in flight at once per service.
const SMOKE_AT_ONCE: usize = 16;

/// Every ready instance of the target colour answers its health, readiness and smoke routes.
pub async fn smoke(
    http: &reqwest::Client,
    platform: &Platform,
    req: &CheckRequest,
) -> Result<CheckReport, Failure> {
    let mut report = CheckReport {
        passed: true,
        results: Vec::new(),
    };
    let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
    let client = platform.check_client(http, &names)?;
    let http = &client;
    for svc in &req.services {
        let eps = endpoints(platform, svc, &req.color).await?;
        let mut paths = vec![svc.health_path.clone(), svc.readiness_path.clone()];
        paths.extend(svc.smoke_paths.iter().cloned());
        paths.retain(|p| !p.is_empty());
        // The service's routes on all its instances at once (up to SMOKE_AT_ONCE in flight): a
        // slow version's smoke check takes about one answer's time, not the sum of them (a
        // retried attempt after a crash repeats it).
        let routes: Vec<(String, String)> = eps
            .iter()
            .flat_map(|ep| {
                paths
                    .iter()
                    .map(move |path| (format!("{ep}{path}"), path.clone()))
            })
            .collect();
        let answers: Vec<Option<String>> = futures::stream::iter(routes)
            .map(|(url, path)| async move {
                let answer = http.get(url).header(CHECK_HEADER, "smoke").send().await;
                match answer {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("GET {path} → {}", r.status().as_u16())),
                    Err(e) => Some(format!("GET {path} → {e}")),
                }
            })
            .buffered(SMOKE_AT_ONCE)
            .collect()
            .await;
        let requests = answers.len() as u64;
        let mut failures: Vec<String> = answers.into_iter().flatten().collect();
        let errors = failures.len() as u64;
        failures.dedup();
        let passed = errors == 0;
        report.passed &= passed;
        report.results.push(CheckResult {
            name: "smoke".into(),
            service: svc.name.clone(),
            color: req.color.clone(),
            outcome: if passed { PASSED } else { FAILED }.into(),
            requests,
            errors,
            error_ratio: ratio(errors, requests),
            detail: if passed {
                format!("{} routes on {} instances answered", paths.len(), eps.len())
            } else {
                failures.join(", ")
            },
            ..Default::default()
        });
    }
    Ok(report)
}

fn ratio(errors: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    }
}

/// Sends a fixed number of requests per service at a fixed concurrency to the target colour and
/// compares error ratio and p95 latency with the environment's thresholds. `done`: services an
/// earlier attempt already judged (its heartbeat details), kept and not measured again;
/// `progress` is told every result as it is judged, `done` included.
pub async fn performance<F: Future<Output = ()>>(
    http: &reqwest::Client,
    platform: &Platform,
    req: &CheckRequest,
    done: Vec<CheckResult>,
    mut progress: impl FnMut(&[CheckResult]) -> F,
) -> Result<CheckReport, Failure> {
    let perf = req.perf.clone().unwrap_or_default();
    let th = req.thresholds.unwrap_or_default();
    let mut report = CheckReport {
        passed: true,
        results: Vec::new(),
    };
    let names: Vec<String> = req.services.iter().map(|s| s.name.clone()).collect();
    let client = platform.check_client(http, &names)?;
    let http = &client;
    if perf.requests == 0 {
        return Ok(report);
    }
    for svc in &req.services {
        let judged = done
            .iter()
            .find(|r| r.service == svc.name && r.color == req.color && r.name == "performance");
        if let Some(result) = judged {
            report.passed &= result.outcome == PASSED;
            report.results.push(result.clone());
            continue;
        }
        let eps = endpoints(platform, svc, &req.color).await?;
        let path = if perf.path.is_empty() {
            svc.smoke_paths
                .first()
                .cloned()
                .unwrap_or_else(|| svc.health_path.clone())
        } else {
            perf.path.clone()
        };
        let urls: Vec<String> = (0..perf.requests as usize)
            .map(|i| format!("{}{path}", eps[i % eps.len()]))
            .collect();
        let samples: Vec<(bool, Duration)> = futures::stream::iter(urls)
            .map(|url| async move {
                let begun = Instant::now();
                let ok = matches!(
                    http.get(url).header(CHECK_HEADER, "performance").send().await,
                    Ok(r) if r.status().is_success()
                );
                (ok, begun.elapsed())
            })
            .buffer_unordered(perf.concurrency.max(1) as usize)
            .collect()
            .await;
        let requests = samples.len() as u64;
        let errors = samples.iter().filter(|(ok, _)| !ok).count() as u64;
        let mut latencies: Vec<f64> = samples
            .iter()
            .map(|(_, d)| d.as_secs_f64() * 1000.0)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let idx = ((latencies.len() as f64 * 0.95).ceil() as usize).clamp(1, latencies.len()) - 1;
        let p95 = latencies[idx];
        let result = judge(
            "performance",
            &svc.name,
            &req.color,
            requests,
            errors,
            Some(p95),
            &th,
            false,
        );
        report.passed &= result.outcome == PASSED;
        report.results.push(result);
        progress(&report.results).await;
    }
    Ok(report)
}

/// Judges one series against thresholds. With fewer requests than the minimum the answer is
/// inconclusive — unless the errors already exceed what a full window could absorb.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    name: &str,
    service: &str,
    color: &str,
    requests: u64,
    errors: u64,
    p95_ms: Option<f64>,
    th: &Thresholds,
    enforce_minimum: bool,
) -> CheckResult {
    let error_ratio = ratio(errors, requests);
    let p95 = p95_ms.unwrap_or(0.0);
    let mut breaches = Vec::new();
    let enough = !enforce_minimum || requests >= th.min_requests;
    if enough && error_ratio > th.max_error_ratio {
        breaches.push(format!(
            "error ratio {:.2}% > {:.2}%",
            error_ratio * 100.0,
            th.max_error_ratio * 100.0
        ));
    }
    if !enough && errors as f64 > th.max_error_ratio * th.min_requests as f64 {
        breaches.push(format!(
            "{errors} errors in {requests} requests already exceed {:.2}% of the {} minimum",
            th.max_error_ratio * 100.0,
            th.min_requests
        ));
    }
    if enough && th.max_p95_ms > 0 && p95 > th.max_p95_ms as f64 {
        breaches.push(format!("p95 {p95:.1} ms > {} ms", th.max_p95_ms));
    }
    let (outcome, detail) = if !breaches.is_empty() {
        (FAILED, breaches.join(", "))
    } else if !enough {
        (
            INCONCLUSIVE,
            format!(
                "only {requests} requests, need {} to judge",
                th.min_requests
            ),
        )
    } else {
        (
            PASSED,
            format!(
                "{requests} requests, error ratio {:.2}%, p95 {p95:.1} ms",
                error_ratio * 100.0
            ),
        )
    };
    CheckResult {
        name: name.into(),
        service: service.into(),
        color: color.into(),
        outcome: outcome.into(),
        requests,
        errors,
        error_ratio,
        p95_ms: p95,
        detail,
        ..Default::default()
    }
}

/// Live traffic on the new colour since the switch (now minus the baseline snapshot).
pub fn window(req: &WindowCheckRequest, now: &proto::MetricsSnapshot) -> CheckReport {
    let th = req.thresholds.unwrap_or_default();
    let empty = proto::MetricsSnapshot::default();
    let base = req.baseline.as_ref().unwrap_or(&empty);
    let mut report = CheckReport {
        passed: true,
        results: Vec::new(),
    };
    for name in &req.services {
        let cur = now.services.get(name).cloned().unwrap_or_default();
        let before = base.services.get(name).cloned().unwrap_or_default();
        let requests = cur.requests.saturating_sub(before.requests);
        let errors = cur.errors.saturating_sub(before.errors);
        let buckets: Vec<u64> = cur
            .bucket_counts
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(before.bucket_counts.get(i).copied().unwrap_or(0)))
            .collect();
        let p95 = quantile(0.95, &now.buckets, &buckets, requests).map(|s| s * 1000.0);
        let result = judge(
            "validation",
            name,
            &req.color,
            requests,
            errors,
            p95,
            &th,
            true,
        );
        report.passed &= result.outcome == PASSED;
        report.results.push(result);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th() -> Thresholds {
        Thresholds {
            max_error_ratio: 0.01,
            max_p95_ms: 500,
            min_requests: 100,
        }
    }

    #[test]
    fn too_little_traffic_is_never_healthy() {
        let r = judge("validation", "a", "green", 10, 0, Some(1.0), &th(), true);
        assert_eq!(r.outcome, INCONCLUSIVE);
        let r = judge("validation", "a", "green", 10, 5, Some(1.0), &th(), true);
        assert_eq!(
            r.outcome, FAILED,
            "5 errors exceed 1% of any 100-request window"
        );
    }

    #[test]
    fn thresholds_are_ratios_and_p95() {
        assert_eq!(
            judge("v", "a", "g", 1000, 10, Some(10.0), &th(), true).outcome,
            PASSED
        );
        assert_eq!(
            judge("v", "a", "g", 1000, 11, Some(10.0), &th(), true).outcome,
            FAILED
        );
        let slow = judge("v", "a", "g", 1000, 0, Some(501.0), &th(), true);
        assert_eq!(slow.outcome, FAILED);
        assert!(slow.detail.contains("p95"), "{}", slow.detail);
    }
}
