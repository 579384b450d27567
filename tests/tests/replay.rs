//! Replays recorded histories (tests/fixtures/*.json) against the current workflow code, so a
//! change that would break an in-flight deployment fails CI. Re-record with
//! `CUTOVER_RECORD_FIXTURES=1 cargo test -p tests --test deploy --test migrations --test canary --test breaker`
//! (`--test canary_lifecycle --test back_to_back` for the histories of patch `release-v2`); `1`
//! writes only missing fixtures, `overwrite` replaces them. Keep the histories of older code:
//! they prove that runs started before a patch still replay.

use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

#[tokio::test]
async fn recorded_histories_replay_without_nondeterminism() {
    let dir = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("fixtures");
    let mut names = Vec::new();
    let mut histories = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = std::fs::read(&path).unwrap();
            histories.push(
                WorkflowHistory::from_json(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            );
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for required in [
        "deploy_success.json",
        "deploy_rolled_back.json",
        "rollback.json",
        "deploy_approval.json",
        "deploy_with_migrations.json",
        "migrate_contract.json",
        "migrate_reverted.json",
        "canary_promoted.json",
        "canary_rolled_back.json",
        "canary_held_by_breaker.json",
        "breaker.json",
        // Patch release-v2: the shared lifecycle.
        "canary_rejected.json",
        "canary_smoke_failed.json",
        "canary_rolled_back_when_warm.json",
        "deploy_superseded.json",
        // Since patches `fast-revert` and `breaker-probe-typed`.
        "deploy_switched_back.json",
        "breaker_probe_typed.json",
        // Since patch `worker-authority`: the worker authorises every run and verifies each
        // approval's identity (refused requests, OIDC approvals, hand-made input, canary,
        // migrations, rollback).
        "deploy_refused.json",
        "deploy_authority_oidc.json",
        "deploy_authority_by_hand.json",
        "deploy_authority_migrations.json",
        "migrate_authority.json",
        "canary_authority.json",
        "rollback_authority.json",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "fixture {required} is missing from {}",
            dir.display()
        );
    }
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<workflows::DeployWorkflow>()
            .unwrap()
            .register_workflow::<workflows::RollbackWorkflow>()
            .unwrap()
            .register_workflow::<workflows::MigrateWorkflow>()
            .unwrap()
            .register_workflow::<workflows::ShiftWorkflow>()
            .unwrap()
            .register_workflow::<workflows::BreakerWorkflow>()
            .unwrap()
            .build(),
    )
    .unwrap();
    let results = replayer.replay_workflows(histories).await.unwrap();
    for (name, result) in names.iter().zip(results) {
        assert!(
            result.replay_failure.is_none(),
            "{name}: {:?}",
            result.replay_failure
        );
        assert!(
            result.history.events().len() > 10,
            "{name} is too short to prove anything"
        );
    }
}
