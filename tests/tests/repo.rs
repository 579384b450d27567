//! Checks on the repository's GitHub Actions files: the deployment workflows the users expect exist,
//! every action is pinned by commit SHA, every job has a timeout and no token permissions beyond
//! what it declares, inputs reach scripts only through the environment, and every `cutover` verb
//! they call exists in the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

fn workflow_files() -> Vec<(String, String)> {
    let dir = root().join(".github/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_four_deployment_workflows_and_ci_exist() {
    let names: Vec<String> = workflow_files().into_iter().map(|(n, _)| n).collect();
    for want in [
        "deploy-dev.yml",
        "deploy-staging.yml",
        "deploy-production.yml",
        "rollback-production.yml",
        "ci.yml",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing .github/workflows/{want}; have {names:?}"
        );
    }
}

#[test]
fn actions_are_pinned_jobs_have_timeouts_and_no_default_permissions() {
    let mut files = workflow_files();
    files.push((
        "actions/cutover/action.yml".into(),
        std::fs::read_to_string(root().join(".github/actions/cutover/action.yml")).unwrap(),
    ));
    for (name, text) in &files {
        // Indent of the `run: |` key whose block scalar we are in, if any.
        let mut run_block: Option<usize> = None;
        for (n, line) in text.lines().enumerate() {
            let indent = line.len() - line.trim_start().len();
            if run_block.is_some_and(|i| indent <= i && !line.trim().is_empty()) {
                run_block = None;
            }
            let t = line.trim_start().trim_start_matches("- ");
            let in_script = run_block.is_some() || t.starts_with("run:");
            if t.starts_with("run: |") {
                run_block = Some(indent);
            }
            if let Some(target) = t.strip_prefix("uses:") {
                let target = target.split('#').next().unwrap().trim();
                if target.starts_with("./") {
                    continue;
                }
                let sha = target.rsplit_once('@').map(|(_, r)| r).unwrap_or("");
                assert!(
                    sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                    "{name}:{}: `{target}` is not pinned to a full commit SHA",
                    n + 1
                );
            }
            // Untrusted inputs must not be spliced into shell text.
            if in_script {
                assert!(
                    !(t.contains("${{ inputs.") || t.contains("${{ github.event.")),
                    "{name}:{}: an expression is expanded inside a script; pass it through env",
                    n + 1
                );
            }
        }
        if name.starts_with("actions/") {
            continue;
        }
        assert!(
            text.lines().any(|l| l == "permissions: {}"),
            "{name}: the workflow must start from `permissions: {{}}`"
        );
        let jobs = text.matches("\n    runs-on:").count();
        let timeouts = text.matches("\n    timeout-minutes:").count();
        assert!(jobs > 0, "{name}: no jobs");
        assert_eq!(jobs, timeouts, "{name}: every job needs timeout-minutes");
    }
}

#[test]
fn every_cutover_verb_the_workflows_call_exists() {
    let help = Command::new(testkit::bin("cutover"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut files = workflow_files();
    files.push((
        "actions/cutover/action.yml".into(),
        std::fs::read_to_string(root().join(".github/actions/cutover/action.yml")).unwrap(),
    ));
    let mut seen = 0;
    for (name, text) in &files {
        for line in text.lines() {
            let Some(rest) = line.trim_start().split("cutover ").nth(1) else {
                continue;
            };
            if line.trim_start().starts_with('#')
                || line.contains("name:")
                || line.contains("description:")
            {
                continue;
            }
            let verb = rest.split_whitespace().next().unwrap_or("");
            if !verb.chars().all(|c| c.is_ascii_lowercase() || c == '-') || verb.is_empty() {
                continue;
            }
            seen += 1;
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
                "{name}: `cutover {verb}` is not a command of the CLI:\n{help}"
            );
            // The full line must parse: run it with --help appended would accept anything, so
            // check the options it uses are documented for that verb.
            let sub = Command::new(testkit::bin("cutover"))
                .args([verb, "--help"])
                .output()
                .unwrap();
            let sub = String::from_utf8_lossy(&sub.stdout).into_owned();
            for opt in rest.split_whitespace().filter(|w| w.starts_with("--")) {
                assert!(
                    sub.contains(opt),
                    "{name}: `cutover {verb}` has no option {opt}"
                );
            }
        }
    }
    assert!(
        seen >= 5,
        "expected the workflows to call cutover; found {seen} calls"
    );
}
