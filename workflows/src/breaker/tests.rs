//! The breaker's pure decisions, without a server: evaluation (what opens it, what an override
//! and an expiry change) and taking a probe's reading (an unread source keeps its verdict).

use super::*;
use proto::BreakerConfig;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn breaker(cfg: BreakerConfig) -> BreakerWorkflow {
    let mut b = BreakerWorkflow::default();
    b.status.config = Some(cfg);
    b
}

fn grant(by: &str, until: Option<SystemTime>) -> BreakerGrant {
    BreakerGrant {
        by: by.into(),
        reason: "test".into(),
        until_unix_ms: until.map(unix_ms).unwrap_or(0),
        ..Default::default()
    }
}

#[test]
fn nothing_wrong_leaves_it_closed() {
    let mut b = breaker(BreakerConfig {
        max_burn_rate: 2.0,
        max_consecutive_failures: 3,
        ..Default::default()
    });
    b.status.consecutive_failures = 2;
    b.status.probe = Some(BreakerProbe {
        burn_rate_known: true,
        burn_rate: 1.5,
        ..Default::default()
    });
    b.evaluate(at(0));
    assert!(
        !b.status.open && !b.status.blocking,
        "{:?}",
        b.status.reasons
    );
}

#[test]
fn each_source_opens_it_with_its_reason() {
    let cfg = BreakerConfig {
        max_burn_rate: 2.0,
        max_consecutive_failures: 3,
        ..Default::default()
    };
    type Set = Box<dyn Fn(&mut BreakerStatus)>;
    let cases: Vec<(&str, Set)> = vec![
        (
            "tripped by alice",
            Box::new(|s| s.trip = Some(grant("alice", None))),
        ),
        (
            "alerts firing: JtsHighErrorRate",
            Box::new(|s| {
                s.probe = Some(BreakerProbe {
                    firing: vec!["JtsHighErrorRate".into()],
                    ..Default::default()
                })
            }),
        ),
        (
            "SLO burn rate 2.50 is above 2.00",
            Box::new(|s| {
                s.probe = Some(BreakerProbe {
                    burn_rate_known: true,
                    burn_rate: 2.5,
                    ..Default::default()
                })
            }),
        ),
        (
            "freeze window market-open",
            Box::new(|s| {
                s.probe = Some(BreakerProbe {
                    window: "market-open".into(),
                    ..Default::default()
                })
            }),
        ),
        (
            "3 consecutive failed deployments (limit 3)",
            Box::new(|s| s.consecutive_failures = 3),
        ),
        (
            "frozen by bob until lifted",
            Box::new(|s| s.freezes = vec![grant("bob", None)]),
        ),
    ];
    for (reason, set) in cases {
        let mut b = breaker(cfg.clone());
        set(&mut b.status);
        b.evaluate(at(0));
        assert!(b.status.open && b.status.blocking, "{reason}");
        assert!(
            b.status.reasons.iter().any(|r| r.starts_with(reason)),
            "{reason} not in {:?}",
            b.status.reasons
        );
    }
}

#[test]
fn an_unknown_burn_rate_or_a_zero_limit_never_opens_it() {
    let mut b = breaker(BreakerConfig {
        max_burn_rate: 0.0,
        ..Default::default()
    });
    b.status.probe = Some(BreakerProbe {
        burn_rate_known: true,
        burn_rate: 100.0,
        ..Default::default()
    });
    b.status.consecutive_failures = 50;
    b.evaluate(at(0));
    assert!(!b.status.open, "{:?}", b.status.reasons);

    let mut b = breaker(BreakerConfig {
        max_burn_rate: 1.0,
        ..Default::default()
    });
    b.status.probe = Some(BreakerProbe {
        burn_rate_known: false,
        burn_rate: 100.0,
        ..Default::default()
    });
    b.evaluate(at(0));
    assert!(!b.status.open, "{:?}", b.status.reasons);
}

#[test]
fn an_override_lets_deploys_through_until_it_expires() {
    let mut b = breaker(BreakerConfig::default());
    b.status.trip = Some(grant("alice", None));
    b.status.r#override = Some(grant("bob", Some(at(60))));
    b.evaluate(at(59));
    assert!(b.status.open && !b.status.blocking);
    assert_eq!(b.next_expiry(), Some(unix_ms(at(60))));

    b.evaluate(at(60));
    assert!(b.status.open && b.status.blocking);
    assert!(b.status.r#override.is_none());
    assert!(
        b.status
            .events
            .iter()
            .any(|e| e.ends_with("override by bob expired (it was: test)")),
        "{:?}",
        b.status.events
    );
    assert_eq!(b.next_expiry(), None);
}

#[test]
fn an_expired_freeze_ends_and_closes_the_breaker() {
    let mut b = breaker(BreakerConfig::default());
    b.status.freezes = vec![grant("bob", Some(at(30))), grant("carol", None)];
    b.evaluate(at(30));
    assert_eq!(b.status.freezes.len(), 1);
    assert!(b.status.blocking, "carol's freeze lasts until lifted");
    b.status.freezes.clear();
    b.evaluate(at(31));
    assert!(!b.status.open);
}

#[test]
fn an_unread_source_keeps_its_last_verdict_whatever_its_error_says() {
    let mut b = breaker(BreakerConfig::default());
    let first = BreakerProbe {
        firing: vec!["JtsHighErrorRate".into()],
        burn_rate_known: true,
        burn_rate: 3.0,
        window: "market-open".into(),
        ..Default::default()
    };
    b.take_probe(first, at(0), true);
    // The next probe could read the burn rate only; its errors are worded freely.
    let second = BreakerProbe {
        burn_rate_known: true,
        burn_rate: 0.5,
        errors: vec!["Alertmanager: connection refused".into(), "tz: bad".into()],
        unread: Some(ProbeUnread {
            alerts: true,
            burn_rate: false,
            freeze_windows: true,
        }),
        ..Default::default()
    };
    b.take_probe(second, at(10), true);
    let p = b.status.probe.clone().unwrap();
    assert_eq!(p.firing, vec!["JtsHighErrorRate".to_owned()]);
    assert_eq!(p.window, "market-open");
    assert_eq!(p.burn_rate, 0.5);
    assert!(
        b.status
            .events
            .iter()
            .any(|e| e.contains("probe: Alertmanager")),
        "{:?}",
        b.status.events
    );

    // A source that was read replaces the verdict: no alert firing any more.
    let third = BreakerProbe {
        window: "market-open".into(),
        unread: Some(ProbeUnread::default()),
        ..Default::default()
    };
    b.take_probe(third, at(20), true);
    assert!(b.status.probe.as_ref().unwrap().firing.is_empty());
    assert!(
        b.status
            .events
            .iter()
            .any(|e| e.ends_with("no alert firing any more"))
    );
}

#[test]
fn histories_before_the_patch_read_the_unread_sources_from_the_wording() {
    let u = legacy_unread(&["alerts: timeout".into(), "freeze windows: bad tz".into()]);
    assert!(u.alerts && !u.burn_rate && u.freeze_windows);
    let u = legacy_unread(&["probe failed: activity timed out".into()]);
    assert!(!u.alerts && !u.burn_rate && !u.freeze_windows);
}

#[test]
fn only_failed_and_rolled_back_releases_count_as_failures() {
    assert!(is_failure("failed") && is_failure("rolled_back"));
    for o in ["succeeded", "rejected", "aborted", "", "FAILED"] {
        assert!(!is_failure(o), "{o}");
    }
}
