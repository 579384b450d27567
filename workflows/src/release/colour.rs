//! A colour's part of the release: the requests that size it, the checks it passes before any
//! live traffic, the Rollback child that brings the previous colour back, and the migration
//! phases around it (expand before the new colour takes traffic, contract after the old retires).

use super::journal::{event, now};
use super::{Event, Release, ScaleTarget, Stop, Undo, Verdict};
use crate::activities::CutoverActivities as Act;
use crate::failures::innermost;
use crate::migrate::MigrateWorkflow;
use crate::names;
use crate::options;
use crate::rollback::RollbackWorkflow;
use crate::time::rfc3339;
use proto::{CheckReport, CheckRequest, CheckResult, ColorRequest, RollbackRequest};
use temporalio_sdk::{ChildWorkflowOptions, WorkflowContext};

/// The request that scales `color` to `target`.
pub fn request(template: &ColorRequest, color: &str, target: ScaleTarget) -> ColorRequest {
    ColorRequest {
        color: color.to_owned(),
        warm_size: target == ScaleTarget::Warm,
        stop: target == ScaleTarget::Stopped,
        ..template.clone()
    }
}

/// Starts a colour at full size and waits until every instance is ready; why not, if not.
pub async fn start_and_wait_ready<W: Release>(
    ctx: &WorkflowContext<W>,
    colour: ColorRequest,
) -> Result<(), String> {
    let ready_timeout = std::time::Duration::from_secs(colour.timeout_secs.max(1));
    ctx.execute_activity(
        Act::start_color,
        colour.clone(),
        options::start_instances(ready_timeout),
    )
    .await
    .map_err(|e| innermost(&e))?;
    ctx.execute_activity(Act::wait_ready, colour, options::long_wait(ready_timeout))
        .await
        .map_err(|e| innermost(&e))
}

/// Keeps one live row per (check, service, colour) in `rows`, stamped `at`.
pub fn merge_checks(rows: &mut Vec<CheckResult>, report: &CheckReport, at: &str) {
    for r in &report.results {
        let mut r = r.clone();
        r.at = at.to_owned();
        match rows
            .iter_mut()
            .find(|c| c.name == r.name && c.service == r.service && c.color == r.color)
        {
            Some(existing) => *existing = r,
            None => rows.push(r),
        }
    }
}

/// What did not pass in a report, one line.
pub fn not_passed(report: &CheckReport) -> String {
    report
        .results
        .iter()
        .filter(|r| Verdict::of(&r.outcome) != Verdict::Passed)
        .map(|r| format!("{} {}: {}", r.service, r.name, r.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Smoke, then performance checks against `check.color` while it takes no live traffic. A
/// failed check, or an operator's stop between them, ends the release with `undo`.
pub async fn checks_before_traffic<W: Release>(
    ctx: &WorkflowContext<W>,
    check: &CheckRequest,
    undo: Undo,
) -> Result<(), Stop> {
    for name in ["smoke", "performance"] {
        let result = if name == "smoke" {
            ctx.execute_activity(Act::smoke_checks, check.clone(), options::checks())
                .await
        } else {
            ctx.execute_activity(Act::perf_checks, check.clone(), options::checks())
                .await
        };
        let failed = match result {
            Ok(report) => {
                let at = rfc3339(now(ctx));
                ctx.state_mut(|s| merge_checks(s.checks_mut(), &report, &at));
                (!report.passed).then(|| not_passed(&report))
            }
            Err(e) => Some(innermost(&e)),
        };
        if let Some(why) = failed {
            return Err(Stop::failed(
                undo,
                format!("{name} check failed on {}: {why}", check.color),
                now(ctx),
            ));
        }
        if let Some(r) = ctx.state(|s| s.control().request.clone()) {
            return Err(Stop::requested(&r, undo, now(ctx)));
        }
    }
    Ok(())
}

/// Every service back on `to` through the Rollback workflow (`rollback-<env>`): the colour's
/// capacity first, then one switch. The colour it ended on, or why it failed.
pub async fn roll_back<W: Release>(
    ctx: &WorkflowContext<W>,
    template: &ColorRequest,
    to: &str,
    reason: &str,
) -> Result<String, String> {
    let id = ctx.state(|s| s.ident());
    let rb = RollbackRequest {
        environment: id.environment.clone(),
        platform: template.platform.clone(),
        services: template.services.clone(),
        to_color: to.to_owned(),
        reason: reason.to_owned(),
        deployment_id: id.deployment_id.clone(),
        requested_by: "cutover (automatic)".to_owned(),
        ready_timeout_secs: template.timeout_secs,
        sealed_token: String::new(),
    };
    let opts = ChildWorkflowOptions::builder()
        .workflow_id(names::rollback_workflow_id(&id.environment))
        .task_timeout(options::WORKFLOW_TASK_TIMEOUT)
        .build();
    match ctx
        .start_child_workflow(RollbackWorkflow::run, rb, opts)
        .await
    {
        Ok(started) => started
            .result()
            .await
            .map(|r| r.color)
            .map_err(|e| innermost(&e)),
        Err(e) => Err(innermost(&e)),
    }
}

/// Runs one phase (`expand` or `contract`) of the release's migrations as the child workflow
/// `migrate-<env>`. Ok(None) when there is nothing to run; a failed run was reverted by the
/// Migrate workflow itself.
pub async fn migrate_phase<W: Release>(
    ctx: &WorkflowContext<W>,
    phase_name: &str,
) -> Result<Option<String>, String> {
    let Some(mut m) = ctx.state(|s| s.migrate()) else {
        return Ok(None);
    };
    if m.migrations.is_empty() {
        return Ok(None);
    }
    let id = ctx.state(|s| s.ident());
    m.phase = phase_name.to_owned();
    m.deployment_id = id.deployment_id;
    m.requested_by = id.requested_by;
    let opts = ChildWorkflowOptions::builder()
        .workflow_id(names::migrate_workflow_id(&id.environment))
        .task_timeout(options::WORKFLOW_TASK_TIMEOUT)
        .build();
    let result = match ctx
        .start_child_workflow(MigrateWorkflow::run, m, opts)
        .await
    {
        Ok(started) => started.result().await.map_err(|e| innermost(&e)),
        Err(e) => Err(innermost(&e)),
    };
    let s = result?;
    let summary = format!(
        "{phase_name} {}: applied {:?}, version {}",
        s.outcome, s.applied, s.current_version
    );
    event(ctx, Event::Migrations { summary: &summary });
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, service: &str, outcome: &str) -> CheckResult {
        CheckResult {
            name: name.into(),
            service: service.into(),
            color: "green".into(),
            outcome: outcome.into(),
            detail: format!("{name} {outcome}"),
            ..Default::default()
        }
    }

    #[test]
    fn the_three_sizes_are_three_requests() {
        let t = ColorRequest {
            timeout_secs: 30,
            ..Default::default()
        };
        let full = request(&t, "green", ScaleTarget::Full);
        let warm = request(&t, "blue", ScaleTarget::Warm);
        let stopped = request(&t, "blue", ScaleTarget::Stopped);
        assert_eq!(
            (full.warm_size, full.stop, full.color.as_str()),
            (false, false, "green")
        );
        assert_eq!((warm.warm_size, warm.stop), (true, false));
        assert_eq!((stopped.warm_size, stopped.stop), (false, true));
        assert_eq!(stopped.timeout_secs, 30);
    }

    #[test]
    fn a_check_keeps_one_live_row_and_unreadable_outcomes_are_not_passed() {
        let mut rows = Vec::new();
        let first = CheckReport {
            results: vec![
                row("smoke", "api-gateway", "passed"),
                row("smoke", "risk-management", "?"),
            ],
            passed: false,
        };
        merge_checks(&mut rows, &first, "t1");
        merge_checks(
            &mut rows,
            &CheckReport {
                results: vec![row("smoke", "api-gateway", "failed")],
                passed: false,
            },
            "t2",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].outcome.as_str(), rows[0].at.as_str()),
            ("failed", "t2")
        );
        assert_eq!(not_passed(&first), "risk-management smoke: smoke ?");
    }
}
