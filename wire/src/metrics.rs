//! Histogram arithmetic shared by the local router's statistics and the activities' checks.

/// The p-quantile of a cumulative histogram, interpolated linearly inside its bucket as
/// Prometheus' `histogram_quantile` does. `None` when there are no observations.
pub fn quantile(q: f64, buckets: &[f64], cumulative: &[u64], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut prev_bound = 0.0;
    let mut prev_count = 0u64;
    for (le, count) in buckets.iter().zip(cumulative) {
        if (*count as f64) >= rank {
            let in_bucket = (*count - prev_count) as f64;
            if in_bucket == 0.0 {
                return Some(*le);
            }
            return Some(prev_bound + (le - prev_bound) * ((rank - prev_count as f64) / in_bucket));
        }
        prev_bound = *le;
        prev_count = *count;
    }
    // Above the highest finite bucket: Prometheus answers the highest finite bound.
    buckets.last().copied()
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn interpolates_inside_the_bucket_like_prometheus() {
        let buckets = [0.1, 0.2, 0.4];
        // 10 observations up to 0.1 s, 10 more up to 0.2 s, none above.
        let cumulative = [10, 20, 20];
        assert_eq!(quantile(0.5, &buckets, &cumulative, 20), Some(0.1));
        let p75 = quantile(0.75, &buckets, &cumulative, 20).unwrap();
        assert!((p75 - 0.15).abs() < 1e-9, "p75 {p75}");
        assert_eq!(quantile(0.95, &buckets, &cumulative, 0), None);
        // Observations above the highest finite bucket: its bound.
        assert_eq!(quantile(0.99, &buckets, &[1, 2, 3], 10), Some(0.4));
    }
}
