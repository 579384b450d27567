//! RED metrics (rate, errors, duration) in Prometheus text format, keyed by service and colour.

use crate::api::{SeriesStats, Stats};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Fixed histogram bucket upper bounds, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Series {
    by_code: BTreeMap<u16, u64>,
    bucket_counts: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// Counters per (service, colour).
#[derive(Default)]
pub struct Red {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl Red {
    /// Creates the series of a service and colour at 0 (exported before any request).
    pub fn touch(&self, service: &str, color: &str) {
        self.series
            .lock()
            .unwrap()
            .entry((service.to_owned(), color.to_owned()))
            .or_default();
    }

    pub fn record(&self, service: &str, color: &str, code: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = self.series.lock().unwrap();
        let s = map
            .entry((service.to_owned(), color.to_owned()))
            .or_default();
        *s.by_code.entry(code).or_default() += 1;
        s.count += 1;
        s.sum_seconds += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.bucket_counts[i] += 1;
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let map = self.series.lock().unwrap();
        let mut out = Stats {
            buckets: BUCKETS.to_vec(),
            series: BTreeMap::new(),
        };
        for ((service, color), s) in map.iter() {
            out.series.entry(service.clone()).or_default().insert(
                color.clone(),
                SeriesStats {
                    requests: s.count,
                    errors: s
                        .by_code
                        .iter()
                        .filter(|(c, _)| **c >= 500)
                        .map(|(_, n)| n)
                        .sum(),
                    bucket_counts: s.bucket_counts.to_vec(),
                },
            );
        }
        out
    }

    /// `http_requests_total{service,color,code}` and the `http_request_duration_seconds`
    /// histogram, in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let map = self.series.lock().unwrap();
        let mut out = String::new();
        out.push_str("# HELP http_requests_total HTTP requests served, by service, colour and status code.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for ((service, color), s) in map.iter() {
            // The 200 and 500 series exist from the first request on, at 0 until counted: a
            // counter that appears with its first error is invisible to rate() until a second
            // one, and a canary's first errors must count.
            let mut codes: std::collections::BTreeMap<String, u64> =
                [("200".to_owned(), 0), ("500".to_owned(), 0)]
                    .into_iter()
                    .collect();
            for (code, n) in &s.by_code {
                codes.insert(code.to_string(), *n);
            }
            for (code, n) in &codes {
                let _ = writeln!(
                    out,
                    "http_requests_total{{service=\"{service}\",color=\"{color}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP http_request_duration_seconds HTTP request latency, by service and colour.\n",
        );
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for ((service, color), s) in map.iter() {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{service=\"{service}\",color=\"{color}\",le=\"{le}\"}} {}",
                    s.bucket_counts[i]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{service=\"{service}\",color=\"{color}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{service=\"{service}\",color=\"{color}\"}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{service=\"{service}\",color=\"{color}\"}} {}",
                s.count
            );
        }
        out
    }
}

/// Difference `now - before` of one series (counters only grow).
pub fn delta(now: &SeriesStats, before: Option<&SeriesStats>) -> SeriesStats {
    let Some(before) = before else {
        return now.clone();
    };
    SeriesStats {
        requests: now.requests.saturating_sub(before.requests),
        errors: now.errors.saturating_sub(before.errors),
        bucket_counts: now
            .bucket_counts
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(before.bucket_counts.get(i).copied().unwrap_or(0)))
            .collect(),
    }
}

// Shared with the activities' checks through `wire`.
pub use wire::metrics::quantile;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_quantile_agree_with_what_was_recorded() {
        let red = Red::default();
        for _ in 0..90 {
            red.record("api-gateway", "blue", 200, Duration::from_millis(3));
        }
        for _ in 0..10 {
            red.record("api-gateway", "blue", 503, Duration::from_millis(300));
        }
        let text = red.render();
        assert!(
            text.contains(
                r#"http_requests_total{service="api-gateway",color="blue",code="200"} 90"#
            )
        );
        assert!(
            text.contains(
                r#"http_requests_total{service="api-gateway",color="blue",code="503"} 10"#
            )
        );
        assert!(text.contains(
            r#"http_request_duration_seconds_count{service="api-gateway",color="blue"} 100"#
        ));
        let s = &red.stats().series["api-gateway"]["blue"];
        assert_eq!((s.requests, s.errors), (100, 10));
        let p95 = quantile(0.95, &BUCKETS, &s.bucket_counts, s.requests).unwrap();
        assert!(p95 > 0.25 && p95 <= 0.5, "p95 {p95}");
        let p50 = quantile(0.5, &BUCKETS, &s.bucket_counts, s.requests).unwrap();
        assert!(p50 <= 0.005, "p50 {p50}");
        assert_eq!(quantile(0.95, &BUCKETS, &[0; 12], 0), None);
    }
}
