//! The workflows' inputs built from the configuration: a release's `DeployRequest` (services in
//! dependency order, images, templates, migrations), the `ShiftRequest` of a canary, the
//! `PlatformTarget`, the `MigrateRequest` and the breaker's `BreakerConfig`.

use super::{Config, Environment, KubernetesPlatformCfg, Platform};
use crate::image;
use proto::{
    ApprovalPolicy, DeployRequest, PerfCheck, PlatformTarget, Resources, ServicePlan, Thresholds,
    Timings,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

impl Config {
    pub fn environment(&self, env: &str) -> Result<&Environment, String> {
        self.environments.get(env).ok_or_else(|| {
            format!(
                "unknown environment {env:?} in {} (known: {})",
                self.file,
                self.environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// The Breaker workflow's configuration for an environment that has a `breaker` section.
    pub fn breaker_config(&self, env_name: &str) -> Result<Option<proto::BreakerConfig>, String> {
        let env = self.environment(env_name)?;
        Ok(env.breaker.as_ref().map(|b| proto::BreakerConfig {
            environment: env_name.to_owned(),
            timezone: b.timezone.clone(),
            windows: b
                .freeze_windows
                .iter()
                .map(|w| proto::FreezeWindow {
                    name: w.name.clone(),
                    days: w.days.clone(),
                    start: w.start.clone(),
                    end: w.end.clone(),
                })
                .collect(),
            alerts_url: b.alerts_url.clone(),
            alerts_api: b.alerts_api.clone(),
            alerts: b.alerts.clone(),
            prometheus_url: b.prometheus_url.clone(),
            burn_rate_query: b.burn_rate_query.clone(),
            max_burn_rate: b.max_burn_rate,
            max_consecutive_failures: b.max_consecutive_failures,
            probe_interval_secs: b.probe_interval_secs,
            max_override_secs: b.max_override_secs,
        }))
    }

    pub fn platform_target(&self, env: &Environment) -> PlatformTarget {
        // (The analysis provider rides along so the post-switch window on Kubernetes is judged
        // by the same metrics source as the canary.)
        let kind = env.platform.kind().as_str().to_owned();
        match &env.platform {
            Platform::Local(l) => PlatformTarget {
                kind,
                admin_url: l.admin_url.clone(),
                ..Default::default()
            },
            Platform::Kubernetes(k) => PlatformTarget {
                kind,
                namespace: k.namespace.clone(),
                kube_context: k.context.clone(),
                preview_url: k.preview_url.clone(),
                canary_routing: k.canary_routing.clone(),
                ingress_host: if k.ingress_host.is_empty() {
                    format!("jts.{}.example", k.namespace.trim_start_matches("jts-"))
                } else {
                    k.ingress_host.clone()
                },
                analysis: Some(analysis_provider(&env.canary)),
                gateway_name: k.gateway.clone(),
                gateway_namespace: k.gateway_namespace.clone(),
                route_host: k.route_host.clone(),
                preview_host: k.preview_host.clone(),
                gateway_address: k.gateway_address.clone(),
                ..Default::default()
            },
        }
    }

    /// The GradualShift workflow's input for a release.
    pub fn shift_request(&self, d: &DeployRequest) -> Result<proto::ShiftRequest, String> {
        let env = self.environment(&d.environment)?;
        let c = &env.canary;
        Ok(proto::ShiftRequest {
            deployment_id: d.deployment_id.clone(),
            environment: d.environment.clone(),
            revision: d.revision.clone(),
            requested_by: d.requested_by.clone(),
            platform: d.platform.clone(),
            services: d.services.clone(),
            steps: c.steps.clone(),
            step_hold_secs: c.step_hold_secs,
            analysis_interval_ms: c.analysis_interval_ms,
            share_tolerance_pct: c.share_tolerance_pct,
            thresholds: d.thresholds,
            inconclusive_hold_secs: c.inconclusive_hold_secs,
            provider: Some(analysis_provider(c)),
            approval_at_percent: c.approval_at_percent,
            approval: d.approval.clone(),
            timings: d.timings,
            perf: d.perf.clone(),
            migrate: d.migrate.clone(),
            sealed_token: d.sealed_token.clone(),
            breaker: d.breaker.clone(),
        })
    }

    /// The Migrate workflow's input for an environment: every migration file of the release.
    pub fn migrate_request(
        &self,
        env_name: &str,
        phase: &str,
        deployment_id: &str,
        requested_by: &str,
    ) -> Result<proto::MigrateRequest, String> {
        let d = self.database(env_name)?;
        let base = Path::new(&self.file).parent().unwrap_or(Path::new("."));
        let dir = base.join(&d.migrations);
        let files = migrate::load_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let files = files
            .into_iter()
            .map(|m| proto::MigrationFile {
                version: m.version,
                name: m.name,
                file: m.file,
                up_sql: m.up_sql,
                down_sql: m.down_sql,
                checksum: m.checksum,
                contract: m.contract,
                no_transaction: m.no_transaction,
            })
            .collect();
        self.migrate_request_of(env_name, phase, deployment_id, requested_by, files)
    }

    fn database(&self, env_name: &str) -> Result<&super::DatabaseCfg, String> {
        self.environment(env_name)?
            .database
            .as_ref()
            .ok_or_else(|| {
                format!(
                    "{}: environments.{env_name}.database is not configured",
                    self.file
                )
            })
    }

    /// The Migrate workflow's input for an environment with the release's migration files
    /// (the worker's: from the request, never from its own disk).
    pub fn migrate_request_of(
        &self,
        env_name: &str,
        phase: &str,
        deployment_id: &str,
        requested_by: &str,
        migrations: Vec<proto::MigrationFile>,
    ) -> Result<proto::MigrateRequest, String> {
        let d = self.database(env_name)?;
        Ok(proto::MigrateRequest {
            environment: env_name.to_owned(),
            deployment_id: deployment_id.to_owned(),
            requested_by: requested_by.to_owned(),
            database_url_env: d.url_env.clone(),
            migrations,
            phase: phase.to_owned(),
            backup: Some(proto::BackupTarget {
                bucket: d.bucket.clone(),
                prefix: d.prefix.clone(),
                path_style: d.path_style,
                part_size_bytes: d.part_size_mb * 1024 * 1024,
            }),
            on_failure: d.on_failure.clone(),
            lock_timeout_ms: d.lock_timeout_ms,
            statement_timeout_ms: d.statement_timeout_ms,
            target_version: 0,
            sealed_token: String::new(),
        })
    }

    /// The folder of a Kubernetes environment's templates (relative to the configuration file).
    pub fn manifests_dir(&self, k: &KubernetesPlatformCfg) -> PathBuf {
        let base = Path::new(&self.file).parent().unwrap_or(Path::new("."));
        base.join(&k.manifests)
    }

    /// Reads each service's template from the release's manifests folder (kubernetes only).
    /// A missing template is refused here, before anything starts.
    pub fn attach_manifests(
        &self,
        env_name: &str,
        plans: &mut [ServicePlan],
    ) -> Result<(), String> {
        let env = self.environment(env_name)?;
        let Some(k) = env.platform.kubernetes() else {
            return Ok(());
        };
        let dir = self.manifests_dir(k);
        for plan in plans {
            let path = dir.join(format!("{}.yaml", plan.name));
            plan.manifest = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "{}: the template of {} is missing or unreadable: {e} (environments.{env_name}.platform.manifests)",
                    path.display(),
                    plan.name
                )
            })?;
        }
        Ok(())
    }

    /// Every service of the environment, in dependency order, with the release's images.
    /// `images` overrides the default image per service; unknown services and malformed
    /// references are refused here, before anything starts.
    pub fn plan_services(
        &self,
        env_name: &str,
        revision: &str,
        images: &BTreeMap<String, String>,
    ) -> Result<Vec<ServicePlan>, String> {
        let env = self.environment(env_name)?;
        for svc in images.keys() {
            if !self.services.contains_key(svc) {
                return Err(format!(
                    "unknown service {svc:?} (known: {})",
                    self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let order = self.order().map_err(|e| e.to_string())?;
        let mut plans = Vec::new();
        for name in order {
            let s = &self.services[&name];
            let reference = match images.get(&name) {
                Some(r) => r.clone(),
                None => s
                    .image
                    .clone()
                    .unwrap_or_else(|| self.defaults.image.clone())
                    .replace("{service}", &name)
                    .replace("{revision}", revision),
            };
            let parsed = image::parse(&reference).map_err(|e| format!("{name}: {e}"))?;
            let replicas = env.replicas.get(&name).copied().unwrap_or(s.replicas);
            plans.push(ServicePlan {
                name: name.clone(),
                image: reference,
                version: parsed.version(),
                replicas,
                warm_replicas: s.warm_replicas.min(replicas),
                readiness_path: s.readiness_path.clone(),
                health_path: s.health_path.clone(),
                smoke_paths: s.smoke.clone(),
                depends_on: s.depends_on.clone(),
                revision: revision.to_owned(),
                manifest: String::new(),
                resources: Some(Resources {
                    cpu_request: s.resources.cpu_request.clone(),
                    cpu_limit: s.resources.cpu_limit.clone(),
                    memory_request: s.resources.memory_request.clone(),
                    memory_limit: s.resources.memory_limit.clone(),
                }),
            });
        }
        Ok(plans)
    }

    /// The Deploy workflow's input for a release, or why it cannot be made: the services'
    /// templates and the migrations read from the release's files (the CLI).
    pub fn deploy_request(
        &self,
        env_name: &str,
        revision: &str,
        images: &BTreeMap<String, String>,
        requested_by: &str,
        deployment_id: &str,
    ) -> Result<DeployRequest, String> {
        let env = self.environment(env_name)?;
        check_revision(revision)?;
        let mut services = self.plan_services(env_name, revision, images)?;
        self.attach_manifests(env_name, &mut services)?;
        let migrations = match &env.database {
            None => None,
            Some(_) => Some(
                self.migrate_request(env_name, "expand", deployment_id, requested_by)?
                    .migrations,
            ),
        };
        self.complete(
            env_name,
            revision,
            requested_by,
            deployment_id,
            services,
            migrations,
        )
    }

    /// The Deploy workflow's input completed from this configuration for a release as a
    /// request carries it (the worker): images and templates from the request's services,
    /// migrations from its files; everything else from here.
    pub fn resolve_release(&self, release: &DeployRequest) -> Result<DeployRequest, String> {
        let env_name = &release.environment;
        let env = self.environment(env_name)?;
        check_revision(&release.revision)?;
        let images: BTreeMap<String, String> = release
            .services
            .iter()
            .filter(|s| !s.image.is_empty())
            .map(|s| (s.name.clone(), s.image.clone()))
            .collect();
        for s in &release.services {
            if !self.services.contains_key(&s.name) {
                return Err(format!(
                    "services: unknown service {:?} (the worker's configuration has: {})",
                    s.name,
                    self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let mut services = self.plan_services(env_name, &release.revision, &images)?;
        if env.platform.kubernetes().is_some() {
            for plan in &mut services {
                let template = release
                    .services
                    .iter()
                    .find(|s| s.name == plan.name)
                    .map(|s| s.manifest.clone())
                    .unwrap_or_default();
                if template.trim().is_empty() {
                    return Err(format!(
                        "services.{0}.manifest: the release carries no template of {0} (`cutover deploy` sends k8s/jts/{0}.yaml)",
                        plan.name
                    ));
                }
                plan.manifest = template;
            }
        }
        let migrations = match (&env.database, &release.migrate) {
            (None, Some(m)) if !m.migrations.is_empty() => {
                return Err(format!(
                    "migrate: environment {env_name} has no database in the worker's configuration; the release carries {} migration files",
                    m.migrations.len()
                ));
            }
            (None, _) => None,
            (Some(_), m) => Some(m.as_ref().map(|m| m.migrations.clone()).unwrap_or_default()),
        };
        self.complete(
            env_name,
            &release.revision,
            &release.requested_by,
            &release.deployment_id,
            services,
            migrations,
        )
    }

    /// Policy from this configuration around a release's services and migrations; the
    /// migrations pass the safety check here (fail-closed), before anything starts.
    fn complete(
        &self,
        env_name: &str,
        revision: &str,
        requested_by: &str,
        deployment_id: &str,
        services: Vec<ServicePlan>,
        migrations: Option<Vec<proto::MigrationFile>>,
    ) -> Result<DeployRequest, String> {
        let env = self.environment(env_name)?;
        let migrate = match migrations {
            None => None,
            Some(files) => {
                let m = self.migrate_request_of(
                    env_name,
                    "expand",
                    deployment_id,
                    requested_by,
                    files,
                )?;
                let parsed = parsed(&m.migrations);
                let report = migrate::check_migrations(&parsed);
                if !report.ok {
                    return Err(format!(
                        "the release's migrations fail the safety check:\n{}",
                        report.text()
                    ));
                }
                // Markers and checksums as the SQL says, whatever the request claimed.
                let mut m = m;
                m.migrations = reparse(&m.migrations);
                Some(m)
            }
        };
        let t = &env.timings;
        Ok(DeployRequest {
            deployment_id: deployment_id.to_owned(),
            environment: env_name.to_owned(),
            revision: revision.to_owned(),
            requested_by: requested_by.to_owned(),
            platform: Some(self.platform_target(env)),
            services,
            thresholds: Some(Thresholds {
                max_error_ratio: env.thresholds.max_error_ratio,
                max_p95_ms: env.thresholds.max_p95_ms,
                min_requests: env.thresholds.min_requests,
            }),
            perf: Some(PerfCheck {
                requests: env.performance.requests,
                concurrency: env.performance.concurrency,
                path: env.performance.path.clone(),
            }),
            approval: Some(ApprovalPolicy {
                required: env.approval.required,
                approvers: env.approval.approvers.clone(),
                distinct_from_requester: env
                    .approval
                    .distinct_from_requester
                    .unwrap_or(env.production),
            }),
            timings: Some(Timings {
                ready_timeout_secs: t.ready_timeout_secs,
                validation_window_secs: t.validation_window_secs,
                check_interval_ms: t.check_interval_ms,
                keep_warm_secs: t.keep_warm_secs,
                approval_timeout_secs: t.approval_timeout_secs,
                inconclusive_hold_secs: t.inconclusive_hold_secs,
            }),
            production: env.production,
            migrate,
            sealed_token: String::new(),
            breaker: self.breaker_config(env_name)?,
        })
    }
}

/// The migration files as their SQL says (markers `-- cutover: contract`, `-- no-transaction`,
/// checksums), whatever a request claimed about them; file names as sent.
fn parsed(files: &[proto::MigrationFile]) -> Vec<migrate::Migration> {
    files
        .iter()
        .map(|f| {
            let mut p =
                migrate::files::migration(f.version, &f.name, f.up_sql.clone(), f.down_sql.clone());
            if !f.file.is_empty() {
                p.file.clone_from(&f.file);
            }
            p
        })
        .collect()
}

/// [`parsed`], as the workflows' messages.
pub fn reparse(files: &[proto::MigrationFile]) -> Vec<proto::MigrationFile> {
    parsed(files)
        .into_iter()
        .map(|p| proto::MigrationFile {
            version: p.version,
            name: p.name,
            file: p.file,
            up_sql: p.up_sql,
            down_sql: p.down_sql,
            checksum: p.checksum,
            contract: p.contract,
            no_transaction: p.no_transaction,
        })
        .collect()
}

/// A revision names an image tag and a Git revision: `[A-Za-z0-9._-]`, not empty.
fn check_revision(revision: &str) -> Result<(), String> {
    if revision.is_empty()
        || !revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "revision {revision:?} must be non-empty and made of [A-Za-z0-9._-]"
        ));
    }
    Ok(())
}

/// The environment's metrics source, as the canary's analysis and (on Kubernetes) the
/// post-switch window use it.
fn analysis_provider(c: &super::schema::CanaryCfg) -> proto::AnalysisProvider {
    proto::AnalysisProvider {
        kind: c.provider.clone(),
        prometheus_url: c.prometheus_url.clone(),
        window_secs: c.window_secs,
        requests_query: c.requests_query.clone(),
        errors_query: c.errors_query.clone(),
        p95_query: c.p95_query.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::GOOD;
    use super::*;

    #[test]
    fn resolves_dependency_order_and_images() {
        let cfg = Config::parse(GOOD, "cutover.toml").unwrap();
        let req = cfg
            .deploy_request("staging", "v2", &BTreeMap::new(), "ci", "d1")
            .unwrap();
        let names: Vec<_> = req.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["risk-management", "order-execution", "api-gateway"]);
        assert_eq!(req.services[0].image, "jts/risk-management:v2");
        assert_eq!(req.services[0].version, "v2");
    }

    #[test]
    fn bad_release_input_is_refused() {
        let cfg = Config::parse(GOOD, "cutover.toml").unwrap();
        let e = cfg
            .deploy_request("prod", "v2", &BTreeMap::new(), "ci", "d")
            .unwrap_err();
        assert!(e.contains("unknown environment \"prod\""), "{e}");
        let images = BTreeMap::from([("billing".to_owned(), "jts/billing:v2".to_owned())]);
        let e = cfg
            .deploy_request("staging", "v2", &images, "ci", "d")
            .unwrap_err();
        assert!(e.contains("unknown service \"billing\""), "{e}");
        let images = BTreeMap::from([("api-gateway".to_owned(), "JTS/api:v2".to_owned())]);
        let e = cfg
            .deploy_request("staging", "v2", &images, "ci", "d")
            .unwrap_err();
        assert!(e.contains("malformed image reference"), "{e}");
    }
}
