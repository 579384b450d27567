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
            // `cutover ` as a command (not in a path or URL such as `jts-platform/cutover`).
            let t = line.trim_start();
            let Some(at) = t.match_indices("cutover ").map(|(i, _)| i).find(|&i| {
                i == 0 || t[..i].ends_with(|c: char| c.is_whitespace() || c == '(' || c == '`')
            }) else {
                continue;
            };
            let rest = &t[at + "cutover ".len()..];
            if line.trim_start().starts_with('#')
                || line.contains("name:")
                || line.contains("description:")
            {
                continue;
            }
            // Global options (`--config FILE`, `--task-queue QUEUE`) may come before the verb.
            let mut words = rest.split_whitespace().peekable();
            while words
                .peek()
                .is_some_and(|w| *w == "--config" || *w == "--task-queue")
            {
                words.next();
                words.next();
            }
            let verb = words.next().unwrap_or("");
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

/// The rows of scripts/install-tools.sh's table: (file glob, Debian package).
fn install_table() -> Vec<(String, String)> {
    let script = std::fs::read_to_string(root().join("scripts/install-tools.sh")).unwrap();
    script
        .lines()
        .filter_map(|l| {
            let row = l.trim().strip_prefix("\"/")?.strip_suffix('"')?;
            let mut parts = row.split('|');
            Some((format!("/{}", parts.next()?), parts.next()?.to_owned()))
        })
        .collect()
}

/// Every `google/protobuf/*.proto` that protoc reads while building proto/ and the temporalio
/// crates must be a file the install script checks for and installs (protoc-compiler alone
/// ships none of them); the report names each file, its package, and whether it is here.
#[test]
fn the_install_script_provides_every_well_known_proto_the_build_imports() {
    let meta = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        meta.status.success(),
        "{}",
        String::from_utf8_lossy(&meta.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    let protos_crate = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "temporalio-protos")
        .map(|p| {
            Path::new(p["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf()
        })
        .expect("temporalio-protos is a dependency");
    let mut imports = std::collections::BTreeSet::new();
    for dir in [protos_crate.clone(), root().join("proto")] {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "proto") {
                    for line in std::fs::read_to_string(&p).unwrap().lines() {
                        if let Some(rest) = line.trim().strip_prefix("import \"google/protobuf/") {
                            imports.insert(format!(
                                "google/protobuf/{}",
                                rest.split('"').next().unwrap()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        imports.contains("google/protobuf/field_mask.proto"),
        "the scan found the temporalio-protos sources in {}: {imports:?}",
        protos_crate.display()
    );
    let table = install_table();
    let mut problems = vec![];
    for import in &imports {
        let file = format!("/usr/include/{import}");
        let row = table.iter().find(|(f, _)| *f == file);
        let here = Path::new(&file).exists();
        println!(
            "{file:<50} {:<18} {}",
            row.map_or("NOT IN THE SCRIPT", |(_, pkg)| pkg.as_str()),
            if here { "present" } else { "missing" }
        );
        if row.is_none() || !here {
            problems.push(file);
        }
    }
    assert!(
        problems.is_empty(),
        "not provided by scripts/install-tools.sh: {problems:?}"
    );
}

/// `install-tools.sh --check` finds every file of its table on this machine (what CI and the two
/// README commands rely on), and its table names the packages the README says it installs.
#[test]
fn the_install_check_passes_and_the_readme_names_its_packages() {
    let out = Command::new("bash")
        .arg(root().join("scripts/install-tools.sh"))
        .arg("--check")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(out.status.success(), "missing files:\n{report}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (_, pkg) in install_table() {
        assert!(
            readme.contains(&format!("`{pkg}`")),
            "README does not name the package {pkg}"
        );
    }
}
