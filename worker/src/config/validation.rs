//! The checks [`Config::parse`] runs after deserializing: each refusal names the file, the key
//! and why.

use super::{BreakerCfg, Config, ConfigError, Platform};

impl Config {
    fn validate_identity(&self) -> Result<(), ConfigError> {
        let id = &self.identity;
        if !id.worker_key.is_empty() && crate::identity::public_key(&id.worker_key).is_err() {
            return Err(self.invalid(
                "identity.worker_key",
                "not a base64 X25519 public key (`cutover identity keygen` makes a pair)",
            ));
        }
        for (name, i) in &id.issuers {
            let key = |k: &str| format!("identity.issuers.{name}.{k}");
            let https = url::Url::parse(&i.issuer).is_ok_and(|u| {
                u.scheme() == "https"
                    || (u.scheme() == "http"
                        && u.host_str()
                            .is_some_and(|h| h == "localhost" || h.starts_with("127.")))
            });
            if !https {
                return Err(self.invalid(
                    key("issuer"),
                    format!("{:?} is not an https URL (http only on loopback)", i.issuer),
                ));
            }
            if i.audience.is_empty() {
                return Err(self.invalid(
                    key("audience"),
                    "the audience the worker accepts is required",
                ));
            }
            if i.claim.is_empty() {
                return Err(self.invalid(
                    key("claim"),
                    "the claim that names the person is required (GitHub Actions: \"actor\")",
                ));
            }
        }
        if id.issuers.len() > 1 {
            return Err(self.invalid(
                "identity.issuers",
                "one trusted issuer: identities (approvers, requester) are compared by name, and two issuers could both name someone \"alice\"",
            ));
        }
        if !id.issuers.is_empty() && id.worker_key.is_empty() {
            return Err(self.invalid(
                "identity.worker_key",
                "trusted issuers need the worker's public key (the CLI seals ID tokens to it)",
            ));
        }
        Ok(())
    }

    fn invalid(&self, key: impl Into<String>, why: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.into(),
            why: why.into(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.services.is_empty() {
            return Err(self.invalid("services", "at least one service is required"));
        }
        if self.environments.is_empty() {
            return Err(self.invalid("environments", "at least one environment is required"));
        }
        for (name, s) in &self.services {
            if !is_dns_label(name) {
                return Err(self.invalid(
                    format!("services.{name}"),
                    "service names are DNS labels: lowercase letters, digits and '-'",
                ));
            }
            for d in &s.depends_on {
                if !self.services.contains_key(d) {
                    return Err(self.invalid(
                        format!("services.{name}.depends_on"),
                        format!("unknown service {d:?}"),
                    ));
                }
            }
            for (key, path) in [
                ("readiness_path", &s.readiness_path),
                ("health_path", &s.health_path),
            ] {
                if !path.starts_with('/') {
                    return Err(self.invalid(
                        format!("services.{name}.{key}"),
                        format!("{path:?} must start with '/'"),
                    ));
                }
            }
            if let Some(p) = s.smoke.iter().find(|p| !p.starts_with('/')) {
                return Err(self.invalid(
                    format!("services.{name}.smoke"),
                    format!("{p:?} must start with '/'"),
                ));
            }
            if s.replicas == 0 {
                return Err(self.invalid(format!("services.{name}.replicas"), "must be at least 1"));
            }
            let r = &s.resources;
            for (key, q) in [
                ("cpu_request", &r.cpu_request),
                ("cpu_limit", &r.cpu_limit),
                ("memory_request", &r.memory_request),
                ("memory_limit", &r.memory_limit),
            ] {
                if !is_quantity(q) {
                    return Err(self.invalid(
                        format!("services.{name}.resources.{key}"),
                        format!("{q:?} is not a Kubernetes quantity (e.g. \"250m\", \"512Mi\")"),
                    ));
                }
            }
            if s.warm_replicas > s.replicas {
                return Err(self.invalid(
                    format!("services.{name}.warm_replicas"),
                    format!("{} is more than replicas ({})", s.warm_replicas, s.replicas),
                ));
            }
        }
        self.order()?;
        self.validate_identity()?;
        for (env, e) in &self.environments {
            let key = |k: &str| format!("environments.{env}.{k}");
            if !is_dns_label(env) {
                return Err(self.invalid(
                    format!("environments.{env}"),
                    "environment names are DNS labels: lowercase letters, digits and '-'",
                ));
            }
            if e.production && e.approval.distinct_from_requester == Some(false) {
                return Err(self.invalid(
                    key("approval.distinct_from_requester"),
                    "in a production environment the approver is never the requester",
                ));
            }
            if e.asserted_identities && e.production {
                return Err(self.invalid(
                    key("asserted_identities"),
                    "a production environment accepts only verified identities (OIDC ID tokens)",
                ));
            }
            match &e.platform {
                Platform::Local(l) => {
                    let u = &l.admin_url;
                    if url::Url::parse(u).map(|u| u.scheme() == "http" || u.scheme() == "https")
                        != Ok(true)
                    {
                        return Err(self.invalid(
                            key("platform.admin_url"),
                            format!("{u:?} is not an http(s) URL"),
                        ));
                    }
                }
                Platform::Kubernetes(p) => {
                    if e.production && !p.resolve_images {
                        return Err(self.invalid(
                            key("platform.resolve_images"),
                            "a production environment deploys only images resolved to digests by the image preflight",
                        ));
                    }
                    if !is_dns_label(&p.namespace) {
                        return Err(self.invalid(
                            key("platform.namespace"),
                            "a Kubernetes namespace is required",
                        ));
                    }
                    if !["gateway", "istio"].contains(&p.canary_routing.as_str()) {
                        return Err(self.invalid(
                            key("platform.canary_routing"),
                            format!("{:?}: expected \"gateway\" or \"istio\"", p.canary_routing),
                        ));
                    }
                    if p.gateway.is_empty() || !is_dns_label(&p.gateway) {
                        return Err(self.invalid(
                            key("platform.gateway"),
                            format!("{:?} is not a Gateway name", p.gateway),
                        ));
                    }
                    if !p.gateway_namespace.is_empty() && !is_dns_label(&p.gateway_namespace) {
                        return Err(self.invalid(
                            key("platform.gateway_namespace"),
                            format!("{:?} is not a namespace", p.gateway_namespace),
                        ));
                    }
                    for (k, t) in [
                        ("platform.route_host", &p.route_host),
                        ("platform.preview_host", &p.preview_host),
                    ] {
                        if t.is_empty() {
                            continue;
                        }
                        let sample = t.replace("{service}", "svc").replace("{namespace}", "ns");
                        let labels: Vec<&str> = sample.split('.').collect();
                        let numeric = labels.iter().all(|l| l.chars().all(|c| c.is_ascii_digit()));
                        if !labels.iter().all(|l| is_dns_label(l)) || t.contains("://") || numeric {
                            return Err(self.invalid(
                                key(k),
                                format!(
                                    "{t:?} is not a host name template ({{service}}, {{namespace}})"
                                ),
                            ));
                        }
                        if !t.contains("{service}") {
                            return Err(self.invalid(
                                key(k),
                                format!(
                                    "{t:?} has no {{service}}: every service needs its own host"
                                ),
                            ));
                        }
                        if p.canary_routing != "gateway" {
                            return Err(self.invalid(
                                key(k),
                                "route hosts are HTTPRoutes: they need canary_routing = \"gateway\"",
                            ));
                        }
                    }
                    if !p.route_host.is_empty() && p.route_host == p.preview_host {
                        return Err(self.invalid(
                            key("platform.preview_host"),
                            "the preview host must differ from the live one",
                        ));
                    }
                    if p.route_host.is_empty() != p.preview_host.is_empty() {
                        return Err(self.invalid(
                            key("platform.preview_host"),
                            "route_host and preview_host go together (a live and a preview route per service)",
                        ));
                    }
                    if !p.gateway_address.is_empty()
                        && p.gateway_address.parse::<std::net::SocketAddr>().is_err()
                    {
                        return Err(self.invalid(
                            key("platform.gateway_address"),
                            format!("{:?} is not IP:port", p.gateway_address),
                        ));
                    }
                    let sample = p
                        .preview_url
                        .replace("{service}", "svc")
                        .replace("{namespace}", "ns");
                    if url::Url::parse(&sample)
                        .map(|u| u.scheme() == "http" || u.scheme() == "https")
                        != Ok(true)
                    {
                        return Err(self.invalid(
                            key("platform.preview_url"),
                            format!("{:?} is not an http(s) URL template", p.preview_url),
                        ));
                    }
                }
            }
            if let Some(d) = &e.database {
                let ok_var = !d.url_env.is_empty()
                    && d.url_env
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !ok_var {
                    return Err(self.invalid(
                        key("database.url_env"),
                        format!(
                            "{:?}: name an environment variable (A-Z, 0-9, _) that holds the database URL, not the URL",
                            d.url_env
                        ),
                    ));
                }
                if d.bucket.is_empty() {
                    return Err(self.invalid(key("database.bucket"), "a backup bucket is required"));
                }
                if !["down", "restore"].contains(&d.on_failure.as_str()) {
                    return Err(self.invalid(
                        key("database.on_failure"),
                        format!("{:?}: expected \"down\" or \"restore\"", d.on_failure),
                    ));
                }
                if d.part_size_mb < 5 {
                    return Err(
                        self.invalid(key("database.part_size_mb"), "S3 parts are at least 5 MiB")
                    );
                }
            }
            let c = &e.canary;
            if c.steps.last() != Some(&100)
                || c.steps.windows(2).any(|w| w[0] >= w[1])
                || c.steps.iter().any(|p| *p == 0 || *p > 100)
            {
                return Err(self.invalid(
                    key("canary.steps"),
                    format!(
                        "{:?}: increasing percentages from 1 to 100, ending at 100",
                        c.steps
                    ),
                ));
            }
            if !["local", "prometheus"].contains(&c.provider.as_str()) {
                return Err(self.invalid(
                    key("canary.provider"),
                    format!("{:?}: expected \"local\" or \"prometheus\"", c.provider),
                ));
            }
            if c.provider == "local" && e.platform.kubernetes().is_some() {
                return Err(self.invalid(
                    key("canary.provider"),
                    "\"local\" reads the local platform's router and cannot judge a Kubernetes environment: set provider = \"prometheus\" and prometheus_url (it judges the canary and the post-switch window)",
                ));
            }
            if c.provider == "prometheus"
                && url::Url::parse(&c.prometheus_url)
                    .map(|u| u.scheme() == "http" || u.scheme() == "https")
                    != Ok(true)
            {
                return Err(self.invalid(
                    key("canary.prometheus_url"),
                    format!("{:?} is not an http(s) URL", c.prometheus_url),
                ));
            }
            if c.approval_at_percent != 0 && !c.steps.contains(&c.approval_at_percent) {
                return Err(self.invalid(
                    key("canary.approval_at_percent"),
                    format!("{} is not one of the steps", c.approval_at_percent),
                ));
            }
            if let Some(b) = &e.breaker {
                self.check_breaker(env, b)?;
            }
            let t = &e.thresholds;
            if !(0.0..=1.0).contains(&t.max_error_ratio) {
                return Err(self.invalid(
                    key("thresholds.max_error_ratio"),
                    format!(
                        "{} is not a ratio between 0 and 1 (1% is 0.01)",
                        t.max_error_ratio
                    ),
                ));
            }
            if t.min_requests == 0 {
                return Err(self.invalid(
                    key("thresholds.min_requests"),
                    "must be at least 1: no traffic is no data, never health",
                ));
            }
            if e.performance.requests > 0 && e.performance.concurrency == 0 {
                return Err(self.invalid(key("performance.concurrency"), "must be at least 1"));
            }
            if !e.performance.path.is_empty() && !e.performance.path.starts_with('/') {
                return Err(self.invalid(key("performance.path"), "must start with '/'"));
            }
            if e.approval.required && e.approval.approvers.is_empty() {
                return Err(self.invalid(
                    key("approval.approvers"),
                    "approval is required but nobody may approve",
                ));
            }
            let tm = &e.timings;
            if tm.check_interval_ms < 100 {
                return Err(self.invalid(key("timings.check_interval_ms"), "must be at least 100"));
            }
            if tm.ready_timeout_secs == 0 || tm.approval_timeout_secs == 0 {
                return Err(self.invalid(
                    key("timings"),
                    "ready_timeout_secs and approval_timeout_secs must be at least 1",
                ));
            }
            for svc in e.replicas.keys() {
                if !self.services.contains_key(svc) {
                    return Err(self.invalid(key(&format!("replicas.{svc}")), "unknown service"));
                }
            }
            if let Some((svc, _)) = e.replicas.iter().find(|(_, r)| **r == 0) {
                return Err(self.invalid(key(&format!("replicas.{svc}")), "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Services in dependency order (dependencies first; ties by name), or the cycle.
    pub fn order(&self) -> Result<Vec<String>, ConfigError> {
        let mut done: Vec<String> = Vec::new();
        while done.len() < self.services.len() {
            let next = self
                .services
                .iter()
                .find(|(n, s)| !done.contains(n) && s.depends_on.iter().all(|d| done.contains(d)));
            match next {
                Some((n, _)) => done.push(n.clone()),
                None => {
                    let stuck: Vec<&String> =
                        self.services.keys().filter(|n| !done.contains(n)).collect();
                    return Err(self.invalid(
                        "services.*.depends_on",
                        format!("dependency cycle among {stuck:?}"),
                    ));
                }
            }
        }
        Ok(done)
    }

    fn check_breaker(&self, env: &str, b: &BreakerCfg) -> Result<(), ConfigError> {
        let key = |k: &str| format!("environments.{env}.breaker.{k}");
        if let Err(e) = jiff::tz::TimeZone::get(&b.timezone) {
            return Err(self.invalid(
                key("timezone"),
                format!("{:?} is not a known IANA time zone: {e}", b.timezone),
            ));
        }
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        for (i, w) in b.freeze_windows.iter().enumerate() {
            let k = |f: &str| key(&format!("freeze_windows[{i}].{f}"));
            if w.name.trim().is_empty() {
                return Err(self.invalid(k("name"), "a window needs a name"));
            }
            if let Some(d) = w.days.iter().find(|d| !DAYS.contains(&d.as_str())) {
                return Err(self.invalid(
                    k("days"),
                    format!("{d:?}: expected one of {}", DAYS.join(", ")),
                ));
            }
            for (f, v) in [("start", &w.start), ("end", &w.end)] {
                activities::breaker::hhmm(v).map_err(|e| self.invalid(k(f), e))?;
            }
            if w.start == w.end {
                return Err(self.invalid(k("end"), "equals start: the window would be empty"));
            }
        }
        let http = |u: &str| {
            url::Url::parse(u).map(|u| u.scheme() == "http" || u.scheme() == "https") == Ok(true)
        };
        if !b.alerts_url.is_empty() && !http(&b.alerts_url) {
            return Err(self.invalid(
                key("alerts_url"),
                format!("{:?} is not an http(s) URL", b.alerts_url),
            ));
        }
        if !["prometheus", "alertmanager"].contains(&b.alerts_api.as_str()) {
            return Err(self.invalid(
                key("alerts_api"),
                format!(
                    "{:?}: expected \"prometheus\" or \"alertmanager\"",
                    b.alerts_api
                ),
            ));
        }
        if !b.alerts.is_empty() && b.alerts_url.is_empty() {
            return Err(self.invalid(key("alerts"), "alert names need alerts_url"));
        }
        if !b.burn_rate_query.is_empty() {
            if !http(&b.prometheus_url) {
                return Err(self.invalid(
                    key("prometheus_url"),
                    format!(
                        "{:?} is not an http(s) URL (burn_rate_query needs it)",
                        b.prometheus_url
                    ),
                ));
            }
            if b.max_burn_rate.is_nan() || b.max_burn_rate <= 0.0 {
                return Err(self.invalid(
                    key("max_burn_rate"),
                    "burn_rate_query needs a limit above 0 (e.g. 14.4)",
                ));
            }
        }
        if b.probe_interval_secs == 0 {
            return Err(self.invalid(key("probe_interval_secs"), "must be at least 1"));
        }
        if b.max_override_secs == 0 {
            return Err(self.invalid(key("max_override_secs"), "must be at least 1"));
        }
        Ok(())
    }
}

/// A Kubernetes quantity as the API server accepts it: digits with an optional decimal part and
/// an optional suffix (m, k, Ki, M, Mi, G, Gi, ...).
fn is_quantity(q: &str) -> bool {
    let digits_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(digits_end);
    !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit())
        && ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::super::tests::GOOD;
    use super::*;

    #[test]
    fn production_takes_only_verified_distinct_identities_from_one_issuer() {
        let prod = GOOD.replace(
            "approval = { required = true, approvers = [\"alice\"] }",
            "approval = { required = true, approvers = [\"alice\"] }\nproduction = true",
        );
        assert!(Config::parse(&prod, "c.toml").is_ok());
        let e = Config::parse(&format!("{prod}asserted_identities = true\n"), "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("environments.staging.asserted_identities: a production environment accepts only verified identities"), "{e}");
        let kube = prod.replace(
            "platform = { kind = \"local\", admin_url = \"http://127.0.0.1:9400\" }",
            "platform = { kind = \"kubernetes\", namespace = \"jts\", resolve_images = false }",
        );
        assert_ne!(kube, prod);
        let e = Config::parse(&kube, "c.toml").unwrap_err().to_string();
        assert!(
            e.contains("environments.staging.platform.resolve_images: a production environment deploys only images resolved to digests"),
            "{e}"
        );
        // Without the key (on by default) that check passes (the next one, the canary's
        // provider on Kubernetes, is what this sample then fails).
        let resolving = kube.replace(", resolve_images = false", "");
        let e = Config::parse(&resolving, "c.toml").unwrap_err().to_string();
        assert!(
            !e.contains("resolve_images") && e.contains("canary.provider"),
            "{e}"
        );
        let e = Config::parse(
            &prod.replace(
                "approvers = [\"alice\"] }",
                "approvers = [\"alice\"], distinct_from_requester = false }",
            ),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("the approver is never the requester"), "{e}");
        let (_, public) = crate::identity::keygen();
        let issuer = |n: &str| {
            format!(
                "[identity.issuers.{n}]\nissuer = \"https://{n}.example\"\naudience = \"cutover\"\nclaim = \"actor\"\n"
            )
        };
        let two = format!(
            "{GOOD}\n[identity]\nworker_key = \"{public}\"\n{}{}",
            issuer("a"),
            issuer("b")
        );
        let e = Config::parse(&two, "c.toml").unwrap_err().to_string();
        assert!(e.contains("identity.issuers: one trusted issuer"), "{e}");
        let one = format!(
            "{GOOD}\n[identity]\nworker_key = \"{public}\"\n{}",
            issuer("a")
        );
        assert!(Config::parse(&one, "c.toml").is_ok());
        let e = Config::parse(&one.replace(&public, "not-a-key"), "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("identity.worker_key: not a base64 X25519 public key"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let e = Config::parse(
            &GOOD.replace("approvers = [\"alice\"]", "approvers = []"),
            "c.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: environments.staging.approval.approvers: approval is required but nobody may approve"
        );
        let e = Config::parse(&GOOD.replace("smoke =", "smoek ="), "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml: ") && e.contains("smoek"), "{e}");
        let e = Config::parse(
            &GOOD.replace(
                "[\"risk-management\"]\n[services.api",
                "[\"api-gateway\"]\n[services.api",
            ),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dependency cycle"), "{e}");
        let e = Config::parse(
            &GOOD.replace("kind = \"local\"", "kind = \"nomad\""),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("c.toml: ")
                && e.contains("unknown variant `nomad`")
                && e.contains("`local`")
                && e.contains("`kubernetes`"),
            "{e}"
        );
        // Each kind takes only its own keys.
        let e = Config::parse(
            &GOOD.replace(
                "kind = \"local\",",
                "kind = \"local\", namespace = \"jts-staging\",",
            ),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `namespace`"), "{e}");
        let e = Config::parse(
            &GOOD.replace(
                "kind = \"local\", admin_url = \"http://127.0.0.1:9400\"",
                "kind = \"kubernetes\"",
            ),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("environments.staging.platform.namespace") && e.contains("required"),
            "{e}"
        );
    }

    #[test]
    fn a_kubernetes_environment_needs_a_metrics_source_and_valid_gateway_keys() {
        let k8s = |extra_platform: &str, canary: &str| {
            let text = GOOD.replace(
                "kind = \"local\", admin_url = \"http://127.0.0.1:9400\"",
                &format!("kind = \"kubernetes\", namespace = \"jts-staging\"{extra_platform}"),
            );
            Config::parse(&format!("{text}{canary}"), "c.toml")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let prom = "[environments.staging.canary]\nprovider = \"prometheus\"\nprometheus_url = \"http://p:9090\"\n";
        // The default provider is the local router's: refused on Kubernetes, naming the key.
        let e = k8s("", "").unwrap_err();
        assert!(
            e.contains("environments.staging.canary.provider") && e.contains("prometheus"),
            "{e}"
        );
        assert!(k8s("", prom).is_ok());
        let hosts = ", route_host = \"{service}.jts.example\", preview_host = \"{service}-preview.jts.example\", gateway_address = \"127.0.0.1:8000\"";
        assert!(k8s(hosts, prom).is_ok());
        let e = k8s(
            ", route_host = \"http://{service}\", preview_host = \"x.example\"",
            prom,
        )
        .unwrap_err();
        assert!(
            e.contains("environments.staging.platform.route_host"),
            "{e}"
        );
        let e = k8s(", route_host = \"{service}.jts.example\"", prom).unwrap_err();
        assert!(
            e.contains("environments.staging.platform.preview_host"),
            "{e}"
        );
        let e = k8s(
            ", route_host = \"jts.example\", preview_host = \"p.jts.example\"",
            prom,
        )
        .unwrap_err();
        assert!(e.contains("route_host") && e.contains("{service}"), "{e}");
        let same = ", route_host = \"{service}.a\", preview_host = \"{service}.a\"";
        let e = k8s(same, prom).unwrap_err();
        assert!(
            e.contains("platform.preview_host") && e.contains("differ"),
            "{e}"
        );
        let istio = ", canary_routing = \"istio\", route_host = \"{service}.a\", preview_host = \"{service}-p.a\"";
        let e = k8s(istio, prom).unwrap_err();
        assert!(
            e.contains("platform.route_host") && e.contains("gateway"),
            "{e}"
        );
        let e = k8s(", gateway = \"Not A Name\"", prom).unwrap_err();
        assert!(e.contains("environments.staging.platform.gateway"), "{e}");
        let e = k8s(&format!("{hosts}, gateway_namespace = \"_x\""), prom).unwrap_err();
        assert!(e.contains("platform.gateway_namespace"), "{e}");
        let e = k8s(
            ", route_host = \"{service}.a\", preview_host = \"{service}-p.a\", gateway_address = \"localhost\"",
            prom,
        )
        .unwrap_err();
        assert!(e.contains("platform.gateway_address"), "{e}");
    }

    #[test]
    fn breaker_settings_are_checked_naming_the_key() {
        let with = |b: &str| {
            Config::parse(&format!("{GOOD}breaker = {{ {b} }}\n"), "c.toml")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(with("timezone = \"Europe/London\", freeze_windows = [{ name = \"open\", days = [\"mon\"], start = \"07:55\", end = \"08:10\" }]").is_ok());
        let cases = [
            (
                "timezone = \"Mars/Olympus\"",
                "breaker.timezone",
                "Mars/Olympus",
            ),
            (
                "freeze_windows = [{ name = \"x\", days = [\"monday\"], start = \"09:00\", end = \"10:00\" }]",
                "breaker.freeze_windows[0].days",
                "monday",
            ),
            (
                "freeze_windows = [{ name = \"x\", start = \"9:00\", end = \"10:00\" }]",
                "breaker.freeze_windows[0].start",
                "HH:MM",
            ),
            (
                "alerts_url = \"prometheus:9090\"",
                "breaker.alerts_url",
                "http(s)",
            ),
            (
                "alerts_api = \"grafana\"",
                "breaker.alerts_api",
                "alertmanager",
            ),
            (
                "burn_rate_query = \"x\", prometheus_url = \"http://p:9090\"",
                "breaker.max_burn_rate",
                "above 0",
            ),
            (
                "max_override_secs = 0",
                "breaker.max_override_secs",
                "at least 1",
            ),
            ("colour = 1", "breaker", "colour"),
        ];
        for (b, key, why) in cases {
            let e = with(b).unwrap_err();
            assert!(
                e.starts_with("c.toml: ") && e.contains(key) && e.contains(why),
                "{b}: {e}"
            );
        }
    }
}
