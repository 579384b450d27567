//! The words of a release as types. Each is stored and shown as the same snake_case string as
//! before (histories, `status --json`, notifications), so recorded fixtures still replay.

macro_rules! words {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// Where a release is, as `status` and the Temporal UI show it.
    Phase {
        Preflight => "preflight",
        Migrating => "migrating",
        Starting => "starting",
        Checking => "checking",
        AwaitingApproval => "awaiting_approval",
        /// Blue-green: the circuit breaker holds the switch.
        Held => "held",
        Switching => "switching",
        Validating => "validating",
        /// Canary: weights moving step by step.
        Shifting => "shifting",
        Promoting => "promoting",
        Warm => "warm",
        RollingBack => "rolling_back",
        Done => "done",
    }
}

words! {
    /// How a release ended.
    Outcome {
        Succeeded => "succeeded",
        RolledBack => "rolled_back",
        Failed => "failed",
        Rejected => "rejected",
        Aborted => "aborted",
        /// The worker's configuration refused the request (patch `worker-authority`).
        Refused => "refused",
    }
}

impl Outcome {
    /// The failure type the run ends with (none for a success).
    pub const fn failure_type(self) -> &'static str {
        use crate::failures::*;
        match self {
            Outcome::Succeeded => "",
            Outcome::RolledBack => DEPLOYMENT_ROLLED_BACK,
            Outcome::Failed => DEPLOYMENT_FAILED,
            Outcome::Rejected => DEPLOYMENT_REJECTED,
            Outcome::Aborted => DEPLOYMENT_ABORTED,
            Outcome::Refused => RELEASE_REFUSED,
        }
    }

    /// Outcomes that count against the environment's circuit breaker streak, and reset it.
    pub const fn reaches_breaker(self) -> bool {
        matches!(
            self,
            Outcome::Succeeded | Outcome::Failed | Outcome::RolledBack
        )
    }
}

words! {
    /// A check's or an analysis's verdict. Anything unreadable is inconclusive, never passed.
    Verdict { Passed => "passed", Failed => "failed", Inconclusive => "inconclusive" }
}

impl Verdict {
    pub fn of(text: &str) -> Verdict {
        Verdict::parse(text).unwrap_or(Verdict::Inconclusive)
    }
}

words! {
    /// The size a colour is scaled to.
    ScaleTarget { Full => "full", Warm => "warm", Stopped => "stopped" }
}

words! {
    /// The two colours a service's versions alternate between.
    Colour { Blue => "blue", Green => "green" }
}

impl Colour {
    /// The colour that is not this one.
    pub const fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }
}

words! {
    /// Where an environment's services run.
    PlatformKind {
        /// Real processes behind the local router (the embedded default, the demo).
        Local => "local",
        /// Deployments, Services and routes through the Kubernetes API.
        Kubernetes => "kubernetes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_round_trips_through_its_text_and_json() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(*p));
            assert_eq!(
                serde_json::to_string(p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
        }
        assert_eq!(Phase::AwaitingApproval.as_str(), "awaiting_approval");
        assert_eq!(Outcome::RolledBack.as_str(), "rolled_back");
        assert_eq!(ScaleTarget::parse("warm"), Some(ScaleTarget::Warm));
        assert_eq!(ScaleTarget::parse("purple"), None);
        for c in Colour::ALL {
            assert_eq!(Colour::parse(c.as_str()), Some(*c));
            assert_eq!(c.other().other(), *c);
            assert_ne!(c.other(), *c);
        }
        assert_eq!(
            PlatformKind::parse("kubernetes"),
            Some(PlatformKind::Kubernetes)
        );
        assert_eq!(PlatformKind::parse("docker"), None);
    }

    #[test]
    fn an_unknown_verdict_is_inconclusive_never_passed() {
        assert_eq!(Verdict::of("passed"), Verdict::Passed);
        assert_eq!(Verdict::of(""), Verdict::Inconclusive);
        assert_eq!(Verdict::of("PASSED"), Verdict::Inconclusive);
    }
}
