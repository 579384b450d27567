//! Canary analysis: per service, the canary's error ratio, p95 and request count over a window,
//! and the observed share of traffic on the canary. Two providers:
//!
//! - `local`: the local router's live counters (deltas from the previous window's snapshot);
//! - `prometheus`: PromQL over the HTTP API, queries templated in configuration.
//!
//! Missing data, query errors or too little traffic are *inconclusive*, never healthy.

use crate::checks::{self, FAILED, INCONCLUSIVE, PASSED};
use crate::error::Failure;
use crate::platform::Platform;
use proto::{
    AnalysisRequest, AnalysisResult, CheckResult, MetricsSnapshot, ServiceAnalysis, Thresholds,
};
use std::time::Duration;

// `namespace="{namespace}"`: on Kubernetes the pods' series carry their namespace (Prometheus'
// service discovery adds it); on the local platform {namespace} is empty, which matches series
// without the label.
pub const DEFAULT_REQUESTS_QUERY: &str = r#"sum(rate(http_requests_total{namespace="{namespace}",service="{service}",color="{color}"}[{window}]))"#;
pub const DEFAULT_ERRORS_QUERY: &str = r#"sum(rate(http_requests_total{namespace="{namespace}",service="{service}",color="{color}",code=~"5.."}[{window}]))"#;
pub const DEFAULT_P95_QUERY: &str = r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="{namespace}",service="{service}",color="{color}"}[{window}])))"#;

fn outcome_of(services: &[ServiceAnalysis]) -> String {
    if services.iter().any(|s| s.outcome == FAILED) {
        FAILED.into()
    } else if services.iter().any(|s| s.outcome == INCONCLUSIVE) {
        INCONCLUSIVE.into()
    } else {
        PASSED.into()
    }
}

fn share_ok(req: &AnalysisRequest, services: &[ServiceAnalysis]) -> bool {
    services.iter().all(|s| {
        (s.share_pct - req.target_percent as f64).abs() <= req.share_tolerance_pct.max(1) as f64
    })
}

/// One service's verdict from its canary figures.
fn verdict(
    service: &str,
    canary_color: &str,
    requests: f64,
    errors: f64,
    p95_ms: Option<f64>,
    share_pct: f64,
    th: &Thresholds,
) -> ServiceAnalysis {
    let r = checks::judge(
        "analysis",
        service,
        canary_color,
        requests.round() as u64,
        errors.round() as u64,
        p95_ms,
        th,
        true,
    );
    // A p95 threshold with no p95 figure (query answered nothing) is not a pass.
    let (outcome, detail) = if r.outcome == PASSED && th.max_p95_ms > 0 && p95_ms.is_none() {
        (
            INCONCLUSIVE.to_owned(),
            format!("no p95 data ({} requests)", requests.round()),
        )
    } else {
        (r.outcome, r.detail)
    };
    ServiceAnalysis {
        service: service.to_owned(),
        canary_requests: requests,
        error_ratio: if requests > 0.0 {
            errors / requests
        } else {
            0.0
        },
        p95_ms: p95_ms.unwrap_or(0.0),
        share_pct,
        outcome,
        detail: format!("{detail}; canary share {share_pct:.1}%"),
    }
}

pub async fn analyze(
    http: &reqwest::Client,
    platform: &Platform,
    req: &AnalysisRequest,
) -> Result<AnalysisResult, Failure> {
    let provider = req.provider.clone().unwrap_or_default();
    match provider.kind.as_str() {
        "" | "local" => local(platform, req).await,
        "prometheus" => Ok(prometheus(http, &provider, req).await),
        other => Err(Failure::InvalidInput(format!(
            "analysis provider {other:?}: expected \"local\" or \"prometheus\""
        ))),
    }
}

async fn local(platform: &Platform, req: &AnalysisRequest) -> Result<AnalysisResult, Failure> {
    let th = req.thresholds.unwrap_or_default();
    let canary = platform.snapshot(&req.canary_color, &req.services).await?;
    let stable = platform.snapshot(&req.stable_color, &req.services).await?;
    let empty = MetricsSnapshot::default();
    let base_c = req.baseline_canary.as_ref().unwrap_or(&empty);
    let base_s = req.baseline_stable.as_ref().unwrap_or(&empty);
    let mut services = Vec::new();
    for name in &req.services {
        let delta = |now: &MetricsSnapshot, base: &MetricsSnapshot| {
            let cur = now.services.get(name).cloned().unwrap_or_default();
            let before = base.services.get(name).cloned().unwrap_or_default();
            let buckets: Vec<u64> = cur
                .bucket_counts
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(before.bucket_counts.get(i).copied().unwrap_or(0)))
                .collect();
            (
                cur.requests.saturating_sub(before.requests),
                cur.errors.saturating_sub(before.errors),
                buckets,
            )
        };
        let (cr, ce, cb) = delta(&canary, base_c);
        let (sr, _, _) = delta(&stable, base_s);
        let share = if cr + sr > 0 {
            cr as f64 * 100.0 / (cr + sr) as f64
        } else {
            0.0
        };
        let p95 = wire::metrics::quantile(0.95, &canary.buckets, &cb, cr).map(|s| s * 1000.0);
        services.push(verdict(
            name,
            &req.canary_color,
            cr as f64,
            ce as f64,
            p95,
            share,
            &th,
        ));
    }
    Ok(AnalysisResult {
        outcome: outcome_of(&services),
        share_ok: share_ok(req, &services),
        services,
        canary: Some(canary),
        stable: Some(stable),
    })
}

/// One instant query; None when Prometheus answers with no sample (missing data).
pub async fn instant(http: &reqwest::Client, base: &str, q: &str) -> Result<Option<f64>, String> {
    let url = url::Url::parse_with_params(
        &format!("{}/api/v1/query", base.trim_end_matches('/')),
        &[("query", q)],
    )
    .map_err(|e| format!("Prometheus URL {base:?}: {e}"))?;
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("Prometheus unreachable: {}", e.without_url()))?;
    let status = resp.status();
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| format!("Prometheus answered {status}: {e}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "query failed: {}",
            v["error"].as_str().unwrap_or("unknown error")
        ));
    }
    if v["data"]["resultType"] == "scalar" {
        return Ok(v["data"]["result"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|x| x.is_finite()));
    }
    let Some(sample) = v["data"]["result"].as_array().and_then(|r| r.first()) else {
        return Ok(None);
    };
    let value = sample["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|x| x.is_finite());
    Ok(value)
}

fn fill(t: &str, default: &str, service: &str, color: &str, window: u64, ns: &str) -> String {
    let t = if t.is_empty() { default } else { t };
    t.replace("{service}", service)
        .replace("{color}", color)
        .replace("{window}", &format!("{window}s"))
        .replace("{namespace}", ns)
}

/// The post-switch window judged by the metrics source (Kubernetes): per service, the live
/// colour's error ratio, p95 and request count over the provider's window. No provider, no data
/// or too little traffic is inconclusive, never healthy. A failure names the ratio and the query.
pub async fn window(http: &reqwest::Client, req: &proto::WindowCheckRequest) -> Vec<CheckResult> {
    let platform = req.platform.clone().unwrap_or_default();
    let provider = platform.analysis.clone().unwrap_or_default();
    if provider.kind != "prometheus" {
        return req
            .services
            .iter()
            .map(|s| CheckResult {
                name: "validation".into(),
                service: s.clone(),
                color: req.color.clone(),
                outcome: INCONCLUSIVE.into(),
                detail: format!(
                    "no metrics source (analysis provider {:?}): set canary.provider = \"prometheus\"",
                    provider.kind
                ),
                ..Default::default()
            })
            .collect();
    }
    let other = workflows::release::Colour::parse(&req.color)
        .map(|c| c.other().as_str())
        .unwrap_or("blue");
    let areq = AnalysisRequest {
        platform: Some(platform.clone()),
        provider: Some(provider.clone()),
        services: req.services.clone(),
        stable_color: other.into(),
        canary_color: req.color.clone(),
        thresholds: req.thresholds,
        ..Default::default()
    };
    let result = prometheus(http, &provider, &areq).await;
    let window = provider.window_secs.max(2);
    result
        .services
        .into_iter()
        .map(|s| {
            let q =
                |t: &str, d: &str| fill(t, d, &s.service, &req.color, window, &platform.namespace);
            let detail = if s.outcome == FAILED {
                let query = if s.detail.contains("p95") && !s.detail.contains("error ratio") {
                    q(&provider.p95_query, DEFAULT_P95_QUERY)
                } else {
                    q(&provider.errors_query, DEFAULT_ERRORS_QUERY)
                };
                let detail = s.detail.split("; canary share").next().unwrap_or_default();
                let ratio = if detail.contains("error ratio") {
                    String::new()
                } else {
                    format!(
                        " (error ratio {:.2}% of {:.0} requests)",
                        s.error_ratio * 100.0,
                        s.canary_requests
                    )
                };
                format!("{detail}{ratio} over {window}s; query: {query}")
            } else {
                s.detail
                    .split("; canary share")
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            };
            CheckResult {
                name: "validation".into(),
                service: s.service,
                color: req.color.clone(),
                outcome: s.outcome,
                detail: format!("metrics: {detail}"),
                ..Default::default()
            }
        })
        .collect()
}

async fn prometheus(
    http: &reqwest::Client,
    p: &proto::AnalysisProvider,
    req: &AnalysisRequest,
) -> AnalysisResult {
    let th = req.thresholds.unwrap_or_default();
    let window = p.window_secs.max(2);
    // Every query of every service at once: the analysis takes one round trip, not sixteen.
    let per_service = req.services.iter().map(|name| async move {
        let ns = req
            .platform
            .as_ref()
            .map(|p| p.namespace.as_str())
            .unwrap_or_default();
        let q = |t: &str, d: &str, color: &str| fill(t, d, name, color, window, ns);
        let (qc, qs, qe, qp) = (
            q(&p.requests_query, DEFAULT_REQUESTS_QUERY, &req.canary_color),
            q(&p.requests_query, DEFAULT_REQUESTS_QUERY, &req.stable_color),
            q(&p.errors_query, DEFAULT_ERRORS_QUERY, &req.canary_color),
            q(&p.p95_query, DEFAULT_P95_QUERY, &req.canary_color),
        );
        let (c, s, e, p95) = futures::join!(
            instant(http, &p.prometheus_url, &qc),
            instant(http, &p.prometheus_url, &qs),
            instant(http, &p.prometheus_url, &qe),
            instant(http, &p.prometheus_url, &qp),
        );
        let figures = (|| Ok::<_, String>((c?, s?, e?, p95?)))();
        match figures {
            Err(e) => ServiceAnalysis {
                service: name.clone(),
                outcome: INCONCLUSIVE.into(),
                detail: e,
                ..Default::default()
            },
            Ok((None, _, _, _)) => ServiceAnalysis {
                service: name.clone(),
                outcome: INCONCLUSIVE.into(),
                detail: "no data for the canary in Prometheus".into(),
                ..Default::default()
            },
            Ok((Some(c), s, e, p95)) => {
                let s = s.unwrap_or(0.0);
                let share = if c + s > 0.0 {
                    c * 100.0 / (c + s)
                } else {
                    0.0
                };
                verdict(
                    name,
                    &req.canary_color,
                    c * window as f64,
                    e.unwrap_or(0.0) * window as f64,
                    p95.map(|x| x * 1000.0),
                    share,
                    &th,
                )
            }
        }
    });
    let services: Vec<ServiceAnalysis> = futures::future::join_all(per_service).await;
    AnalysisResult {
        outcome: outcome_of(&services),
        share_ok: share_ok(req, &services),
        services,
        canary: None,
        stable: None,
    }
}
