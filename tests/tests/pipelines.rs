//! The pipelines' deployer: `.github/actions/cutover/install.sh` downloads a pinned release of
//! the cutover binary from a real file server on 127.0.0.1 (Python's http.server), verifies the
//! SHA-256 the caller pinned and only then installs it; and no pipeline compiles cutover.

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

struct FileServer {
    child: Child,
    url: String,
}

impl FileServer {
    fn start(dir: &Path) -> Self {
        let port = testkit::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let probe = format!("{url}/");
        testkit::wait_until("the file server answers", Duration::from_secs(20), || {
            testkit::blocking::Client::new().status(&probe) == Some(200)
        });
        Self { child, url }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    }
}

/// Runs install.sh as the composite action does, in a fresh runner temp folder.
fn install(dir: &Path, name: &str, env: &[(&str, &str)]) -> (Output, PathBuf, PathBuf) {
    let runner_temp = dir.join(name);
    std::fs::create_dir_all(&runner_temp).unwrap();
    let github_path = runner_temp.join("github_path");
    std::fs::write(&github_path, "").unwrap();
    let out = Command::new(root().join(".github/actions/cutover/install.sh"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("RUNNER_TEMP", &runner_temp)
        .env("GITHUB_PATH", &github_path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out, runner_temp, github_path)
}

#[test]
fn the_action_installs_a_pinned_release_only_when_its_checksum_matches() {
    let dir = testkit::scratch_dir("pipelines-install");
    // A release as the release workflow publishes it: the real binary under its asset name.
    let asset = format!("cutover-linux-{}", arch());
    let release = dir.join("releases/v1.2.3");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(testkit::bin("cutover"), release.join(&asset)).unwrap();
    let bytes = std::fs::read(release.join(&asset)).unwrap();
    let sum = format!("{:x}", sha2::Sha256::digest(&bytes));
    std::fs::write(release.join("SHA256SUMS"), format!("{sum}  {asset}\n")).unwrap();
    let server = FileServer::start(&dir.join("releases"));
    let sum_var = format!("CUTOVER_SHA256_{}", arch().to_uppercase());
    let base = [
        ("CUTOVER_VERSION", "v1.2.3"),
        ("CUTOVER_RELEASE_URL", server.url.as_str()),
    ];

    // The right checksum: installed, on PATH, and it runs.
    let mut env = base.to_vec();
    env.push((&sum_var, &sum));
    let (out, temp, github_path) = install(&dir, "good", &env);
    assert!(out.status.success(), "{out:?}");
    let installed = temp.join("cutover-bin/cutover");
    assert_eq!(std::fs::read(&installed).unwrap(), bytes);
    assert_eq!(
        std::fs::read_to_string(&github_path).unwrap().trim(),
        temp.join("cutover-bin").display().to_string()
    );
    let help = Command::new(&installed).arg("--help").output().unwrap();
    assert!(help.status.success(), "{help:?}");
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());

    // A wrong checksum (one digit off): stopped, nothing installed, PATH untouched.
    let wrong = format!(
        "{}{}",
        if sum.starts_with('0') { "1" } else { "0" },
        &sum[1..]
    );
    let mut env = base.to_vec();
    env.push((&sum_var, &wrong));
    let (out, temp, github_path) = install(&dir, "wrong-sum", &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains(&format!(
            "checksum mismatch for {asset} v1.2.3: expected {wrong}, got {sum}"
        )),
        "{err}"
    );
    assert!(!temp.join("cutover-bin").exists(), "nothing installed");
    assert_eq!(std::fs::read_to_string(&github_path).unwrap(), "");
    assert_eq!(
        std::fs::read_dir(&temp).unwrap().count(),
        1,
        "only github_path is left in the runner's temp folder"
    );
    println!("wrong checksum: {}", err.trim());

    // A tampered binary under the pinned checksum: stopped the same way.
    std::fs::write(release.join(&asset), b"#!/bin/sh\necho owned\n").unwrap();
    let mut env = base.to_vec();
    env.push((&sum_var, &sum));
    let (out, temp, _) = install(&dir, "tampered", &env);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"));
    assert!(!temp.join("cutover-bin").exists());

    // Bad input, before any download: no pinned checksum, a non-release version, a release
    // URL over plain HTTP off loopback, a missing release.
    for (name, edit, says) in [
        ("no-sum", ("CUTOVER_VERSION", "v1.2.3"), "pinned SHA-256"),
        (
            "bad-version",
            ("CUTOVER_VERSION", "main"),
            "not a release tag",
        ),
        (
            "plain-http",
            ("CUTOVER_RELEASE_URL", "http://releases.example.com"),
            "must be https://",
        ),
        ("missing", ("CUTOVER_VERSION", "v9.9.9"), "download of"),
    ] {
        let mut env: Vec<(&str, &str)> =
            base.iter().filter(|(k, _)| *k != edit.0).copied().collect();
        env.push(edit);
        if name != "no-sum" {
            env.push((&sum_var, &sum));
        }
        let (out, temp, github_path) = install(&dir, name, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {out:?}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(!temp.join("cutover-bin").exists(), "{name}");
        assert_eq!(std::fs::read_to_string(&github_path).unwrap(), "");
    }
}

fn workflow(name: &str) -> String {
    std::fs::read_to_string(root().join(".github/workflows").join(name)).unwrap()
}

#[test]
fn no_pipeline_compiles_cutover_and_production_takes_the_deployer_from_its_own_commit() {
    for name in [
        "deploy-dev.yml",
        "deploy-staging.yml",
        "deploy-production.yml",
        "approve-production.yml",
        "rollback-production.yml",
    ] {
        let text = workflow(name);
        for forbidden in [
            "cargo install",
            "cargo build",
            "rustup",
            "protobuf-compiler",
        ] {
            assert!(!text.contains(forbidden), "{name} compiles: {forbidden}");
        }
        assert!(
            text.contains("version: ${{ vars.CUTOVER_VERSION }}")
                && text.contains("sha256-x86_64: ${{ vars.CUTOVER_SHA256_X86_64 }}"),
            "{name}: the deployer is the pinned, checksummed release"
        );
        if name.contains("production") || name == "deploy-staging.yml" {
            // The action comes from a sparse checkout of the workflow's own commit, before the
            // revision under deployment (release/ or repo/) is on disk.
            let action = text
                .find("uses: ./deployer/.github/actions/cutover")
                .unwrap_or_else(|| panic!("{name}: the deployer's action from deployer/"));
            let own = text
                .find("ref: ${{ github.sha }}\n          path: deployer")
                .unwrap_or_else(|| panic!("{name}: deployer/ is the workflow's own commit"));
            let data = text
                .find("path: release")
                .or_else(|| text.find("path: repo"))
                .unwrap_or_else(|| panic!("{name}: the checkout as data"));
            assert!(own < action && action < data, "{name}: order of the steps");
        }
    }
}
