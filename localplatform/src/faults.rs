//! Fault knobs of the stand-in service, chosen per version (and optionally per service).
//!
//! `JTS_FAULTS` holds entries separated by `;`, each `VERSION[@SERVICE]=knob:value,knob:value`:
//!
//! ```text
//! v3=error_rate:1.0
//! v4@order-execution=live_error_rate:0.05;v5=latency_ms:800,slow_start_ms:2000
//! ```
//!
//! Knobs: `latency_ms`, `live_latency_ms` (only real traffic, as below), `error_rate` (all
//! requests), `live_error_rate` (only requests without the
//! `x-cutover-check` header, i.e. real traffic rather than cutover's own checks), `slow_start_ms`,
//! `crash_after_ms`, `never_ready` (1 or true).

use std::time::Duration;

// Header that cutover's smoke and performance checks send (shared with them through `wire`).
pub use wire::CHECK_HEADER;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub latency: Duration,
    pub live_latency: Duration,
    pub error_rate: f64,
    pub live_error_rate: f64,
    pub slow_start: Duration,
    pub crash_after: Option<Duration>,
    pub never_ready: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultsError {
    #[error("JTS_FAULTS entry {0:?} has no '=': expected VERSION[@SERVICE]=knob:value")]
    MissingEquals(String),
    #[error("JTS_FAULTS knob {0:?} is not knob:value")]
    MissingColon(String),
    #[error("JTS_FAULTS knob {knob:?} has invalid value {value:?}")]
    BadValue { knob: String, value: String },
    #[error(
        "JTS_FAULTS knob {0:?} is unknown (known: latency_ms, live_latency_ms, error_rate, live_error_rate, slow_start_ms, crash_after_ms, never_ready)"
    )]
    UnknownKnob(String),
}

/// The knobs that apply to `service` at `version`; a service-specific entry wins over a
/// version-wide one.
pub fn faults_for(spec: &str, service: &str, version: &str) -> Result<Faults, FaultsError> {
    let mut general = None;
    let mut specific = None;
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (target, knobs) = entry
            .split_once('=')
            .ok_or_else(|| FaultsError::MissingEquals(entry.to_owned()))?;
        let parsed = parse_knobs(knobs)?;
        match target.trim().split_once('@') {
            Some((v, s)) if v == version && s == service => specific = Some(parsed),
            None if target.trim() == version => general = Some(parsed),
            _ => {}
        }
    }
    Ok(specific.or(general).unwrap_or_default())
}

fn parse_knobs(knobs: &str) -> Result<Faults, FaultsError> {
    let mut f = Faults::default();
    for knob in knobs.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let (name, value) = knob
            .split_once(':')
            .ok_or_else(|| FaultsError::MissingColon(knob.to_owned()))?;
        let bad = || FaultsError::BadValue {
            knob: name.to_owned(),
            value: value.to_owned(),
        };
        let ms = || {
            value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| bad())
        };
        let ratio = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(bad)
        };
        match name {
            "latency_ms" => f.latency = ms()?,
            "live_latency_ms" => f.live_latency = ms()?,
            "error_rate" => f.error_rate = ratio()?,
            "live_error_rate" => f.live_error_rate = ratio()?,
            "slow_start_ms" => f.slow_start = ms()?,
            "crash_after_ms" => f.crash_after = Some(ms()?),
            "never_ready" => f.never_ready = matches!(value, "1" | "true"),
            other => return Err(FaultsError::UnknownKnob(other.to_owned())),
        }
    }
    Ok(f)
}

/// Deterministic error spreading: request `n` (0-based) fails when it crosses the next multiple
/// of `1 / rate`, so a rate of 0.05 fails exactly one request in twenty.
pub fn nth_fails(n: u64, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_specific_entry_wins() {
        let spec = "v3=error_rate:1.0; v3@order-execution=live_error_rate:0.05,latency_ms:20,live_latency_ms:700";
        let general = faults_for(spec, "api-gateway", "v3").unwrap();
        assert_eq!(general.error_rate, 1.0);
        let specific = faults_for(spec, "order-execution", "v3").unwrap();
        assert_eq!(specific.error_rate, 0.0);
        assert_eq!(specific.live_error_rate, 0.05);
        assert_eq!(specific.latency, Duration::from_millis(20));
        assert_eq!(specific.live_latency, Duration::from_millis(700));
        assert_eq!(
            faults_for(spec, "api-gateway", "v2").unwrap(),
            Faults::default()
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(matches!(
            faults_for("v3", "a", "v3"),
            Err(FaultsError::MissingEquals(_))
        ));
        assert!(matches!(
            faults_for("v3=error_rate:2", "a", "v3"),
            Err(FaultsError::BadValue { .. })
        ));
        assert!(matches!(
            faults_for("v3=boom:1", "a", "v3"),
            Err(FaultsError::UnknownKnob(_))
        ));
    }

    #[test]
    fn error_rate_is_exact_over_a_window() {
        let failed = (0..1000).filter(|n| nth_fails(*n, 0.05)).count();
        assert_eq!(failed, 50);
        assert_eq!((0..1000).filter(|n| nth_fails(*n, 1.0)).count(), 1000);
        assert_eq!((0..1000).filter(|n| nth_fails(*n, 0.0)).count(), 0);
    }
}
