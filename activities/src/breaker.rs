//! The circuit breaker's I/O: its probe (firing alerts from Prometheus or Alertmanager, an SLO
//! burn-rate query, the freeze window of the environment's time zone), the check preflight does
//! before a deployment, and outcome reports from deployments' notifications.

use crate::error::Failure;
use crate::telemetry;
use proto::{
    BreakerConfig, BreakerProbe, BreakerStatus, BreakerVerdict, FreezeWindow, Notification,
    ProbeUnread,
};
use std::collections::BTreeSet;
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowQueryOptions,
    WorkflowSignalOptions, errors::WorkflowInteractionError,
};
use workflows::{BreakerWorkflow, names};

/// One reading of every source the configuration names. A source that cannot be read is
/// reported in `errors` (the workflow keeps that source's last verdict).
pub async fn probe(http: &reqwest::Client, c: &BreakerConfig) -> BreakerProbe {
    let mut p = BreakerProbe {
        at: jiff::Timestamp::now().to_string(),
        ..Default::default()
    };
    let mut unread = ProbeUnread::default();
    if !c.alerts_url.is_empty() {
        match firing_alerts(http, c).await {
            Ok(f) => p.firing = f,
            Err(e) => {
                p.errors.push(format!("alerts: {e}"));
                unread.alerts = true;
            }
        }
    }
    if !c.burn_rate_query.is_empty() {
        match crate::analysis::instant(http, &c.prometheus_url, &c.burn_rate_query).await {
            Ok(Some(v)) => {
                p.burn_rate = v;
                p.burn_rate_known = true;
            }
            Ok(None) => {}
            Err(e) => {
                p.errors.push(format!("burn rate: {e}"));
                unread.burn_rate = true;
            }
        }
    }
    if !c.windows.is_empty() {
        match active_window(c, jiff::Timestamp::now()) {
            Ok(w) => p.window = w,
            Err(e) => {
                p.errors.push(format!("freeze windows: {e}"));
                unread.freeze_windows = true;
            }
        }
    }
    p.unread = Some(unread);
    p
}

async fn firing_alerts(http: &reqwest::Client, c: &BreakerConfig) -> Result<Vec<String>, String> {
    let base = c.alerts_url.trim_end_matches('/');
    let alertmanager = c.alerts_api == "alertmanager";
    let url = if alertmanager {
        format!("{base}/api/v2/alerts?active=true&silenced=false&inhibited=false")
    } else {
        format!("{base}/api/v1/alerts")
    };
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let body: serde_json::Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
    let alerts = if alertmanager {
        body.as_array().cloned().unwrap_or_default()
    } else {
        body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut firing = BTreeSet::new();
    for a in alerts {
        let state = if alertmanager {
            a["status"]["state"].as_str().unwrap_or("")
        } else {
            a["state"].as_str().unwrap_or("")
        };
        if state != "firing" && state != "active" {
            continue;
        }
        let name = a["labels"]["alertname"].as_str().unwrap_or("").to_owned();
        if c.alerts.is_empty() || c.alerts.contains(&name) {
            firing.insert(name);
        }
    }
    Ok(firing.into_iter().collect())
}

/// The freeze window that contains `at` in the environment's time zone, described.
pub fn active_window(c: &BreakerConfig, at: jiff::Timestamp) -> Result<String, String> {
    let tz = jiff::tz::TimeZone::get(&c.timezone)
        .map_err(|e| format!("time zone {:?}: {e}", c.timezone))?;
    let local = at.to_zoned(tz);
    let day = weekday_name(local.weekday());
    let minute = u32::from(local.hour() as u8) * 60 + u32::from(local.minute() as u8);
    for w in &c.windows {
        let (start, end) = (hhmm(&w.start)?, hhmm(&w.end)?);
        let on = |d: &str| w.days.is_empty() || w.days.iter().any(|x| x.eq_ignore_ascii_case(d));
        let inside = if start <= end {
            on(day) && minute >= start && minute < end
        } else {
            // Crosses midnight: the evening belongs to today, the morning to yesterday's window.
            let yesterday = weekday_name(local.weekday().previous());
            (on(day) && minute >= start) || (on(yesterday) && minute < end)
        };
        if inside {
            return Ok(describe(w, &c.timezone));
        }
    }
    Ok(String::new())
}

pub fn describe(w: &FreezeWindow, tz: &str) -> String {
    let days = if w.days.is_empty() {
        "every day".to_owned()
    } else {
        w.days.join(",")
    };
    format!("{} ({days} {}-{} {tz})", w.name, w.start, w.end)
}

fn weekday_name(d: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match d {
        Monday => "mon",
        Tuesday => "tue",
        Wednesday => "wed",
        Thursday => "thu",
        Friday => "fri",
        Saturday => "sat",
        Sunday => "sun",
    }
}

/// "HH:MM" to minutes after midnight.
pub fn hhmm(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time of day HH:MM");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) || s.len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// The breaker of an environment as a deployment about to start sees it. No breaker running:
/// nothing blocks.
pub async fn check(client: &Client, environment: &str) -> Result<BreakerVerdict, Failure> {
    let handle =
        client.get_workflow_handle::<BreakerWorkflow>(names::breaker_workflow_id(environment));
    match handle.describe(WorkflowDescribeOptions::default()).await {
        Ok(d) if d.status() == WorkflowExecutionStatus::Running => {}
        Ok(_) => return Ok(BreakerVerdict::default()),
        Err(WorkflowInteractionError::NotFound(_)) => return Ok(BreakerVerdict::default()),
        Err(e) => {
            return Err(Failure::Unavailable(format!(
                "cannot read the circuit breaker of {environment}: {e}"
            )));
        }
    }
    let s: BreakerStatus = handle
        .query(BreakerWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| {
            Failure::Unavailable(format!(
                "cannot read the circuit breaker of {environment}: {e}"
            ))
        })?;
    Ok(BreakerVerdict {
        blocking: s.blocking,
        reason: s.reasons.join("; "),
    })
}

/// A deployment's outcome goes to the environment's breaker (its failure streak). No breaker:
/// nothing to tell.
pub async fn report(client: &Client, n: &Notification) {
    if !matches!(n.event.as_str(), "succeeded" | "failed" | "rolled_back") {
        return;
    }
    let handle =
        client.get_workflow_handle::<BreakerWorkflow>(names::breaker_workflow_id(&n.environment));
    if let Err(e) = handle
        .signal(
            BreakerWorkflow::deployment_finished,
            n.clone(),
            WorkflowSignalOptions::default(),
        )
        .await
    {
        tracing::debug!(environment = %n.environment, error = %e, "no breaker to tell");
    }
}

/// The worker's breaker gauges.
pub fn publish(s: &BreakerStatus) {
    telemetry::on_breaker(&s.environment, s.blocking, s.open, s.r#override.is_some());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(days: &[&str], start: &str, end: &str) -> BreakerConfig {
        BreakerConfig {
            timezone: "America/New_York".into(),
            windows: vec![FreezeWindow {
                name: "market".into(),
                days: days.iter().map(|d| d.to_string()).collect(),
                start: start.into(),
                end: end.into(),
            }],
            ..Default::default()
        }
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn windows_are_judged_in_the_environments_time_zone() {
        let c = cfg(&["mon", "tue", "wed", "thu", "fri"], "09:30", "16:00");
        // Friday 2026-11-27 14:40 UTC is 09:40 in New York (EST, UTC-5): inside.
        assert!(
            active_window(&c, at("2026-11-27T14:40:00Z"))
                .unwrap()
                .starts_with("market")
        );
        // 09:20 New York: before the window.
        assert_eq!(active_window(&c, at("2026-11-27T14:20:00Z")).unwrap(), "");
        // Saturday: not a window day.
        assert_eq!(active_window(&c, at("2026-11-28T15:00:00Z")).unwrap(), "");
        // Summer time (EDT, UTC-4): 13:35 UTC is 09:35 in New York.
        assert!(
            !active_window(&c, at("2026-07-01T13:35:00Z"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_window_may_cross_midnight() {
        let c = cfg(&["fri"], "22:00", "02:00");
        // Saturday 01:00 New York belongs to Friday's window.
        assert!(
            !active_window(&c, at("2026-11-28T06:00:00Z"))
                .unwrap()
                .is_empty()
        );
        // Friday 01:00 New York belongs to Thursday's (not a window day).
        assert_eq!(active_window(&c, at("2026-11-27T06:00:00Z")).unwrap(), "");
    }

    #[test]
    fn bad_times_and_zones_are_named() {
        assert!(hhmm("9:30").is_err());
        assert!(hhmm("25:00").is_err());
        assert_eq!(hhmm("16:00").unwrap(), 960);
        let mut c = cfg(&[], "09:00", "10:00");
        c.timezone = "Mars/Olympus".into();
        let e = active_window(&c, at("2026-11-27T14:40:00Z")).unwrap_err();
        assert!(e.contains("Mars/Olympus"), "{e}");
    }
}
