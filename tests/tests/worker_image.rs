//! The worker's image, built here from worker/Dockerfile with a daemonless builder (buildah,
//! chroot isolation; scripts/worker-image.sh, on a Debian base made by debootstrap because no
//! image registry is reachable from this machine) around the freshly built `cutover`: what is
//! inside and how it runs.

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn script(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(root().join("scripts/worker-image.sh"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

fn run(image: &str, cmd: &[&str]) -> (bool, String, String) {
    let mut args = vec!["run", image];
    args.extend_from_slice(cmd);
    script(&args)
}

#[test]
fn the_worker_image_holds_this_cutover_and_pg_dump_15_and_runs_as_a_non_root_user() {
    let binary = testkit::bin("cutover");
    let (ok, out, err) = script(&["build", &binary.display().to_string()]);
    assert!(ok, "the image did not build:\n{err}");
    let image = out.lines().last().unwrap().to_owned();

    // One container (vfs copies the whole image for each): what is inside, as the image's user.
    let probe = r#"set -u
echo "sum=$(sha256sum /usr/local/bin/cutover | cut -d ' ' -f 1)"
echo "help=$(/usr/local/bin/cutover worker --help | grep -c -- --config)"
echo "pg_dump=$(pg_dump --version)"
echo "pg_restore=$(pg_restore --version)"
echo "uid=$(id -u)"
if touch /etc/cutover-probe 2>/dev/null; then echo etc=writable; else echo etc=read-only; fi
if touch "$TMPDIR/probe"; then echo tmp=writable; else echo tmp=read-only; fi
"#;
    let (ok, out, err) = run(&image, &["sh", "-c", probe]);
    assert!(ok, "{out}\n{err}");
    let facts: std::collections::BTreeMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).collect();
    println!("{facts:#?}");
    // The binary is exactly the one built, and it runs there (Debian 12's glibc).
    let want = format!(
        "{:x}",
        sha2::Sha256::digest(std::fs::read(&binary).unwrap())
    );
    assert_eq!(facts["sum"], want);
    assert_ne!(facts["help"], "0", "`cutover worker --help` in the image");
    // The backup's tools, of the major version the JTS database runs.
    for tool in ["pg_dump", "pg_restore"] {
        assert!(
            facts[tool].contains("(PostgreSQL) 15."),
            "{tool} is not PostgreSQL 15: {}",
            facts[tool]
        );
    }
    // Non-root; nothing writable but /tmp (the manifest makes the root filesystem read-only
    // too and mounts an emptyDir there).
    assert_eq!(facts["uid"], "10001");
    assert_eq!(facts["etc"], "read-only");
    assert_eq!(facts["tmp"], "writable");

    // What Kubernetes runs: the worker with the mounted configuration, the metrics port.
    let (ok, inspect, err) = script(&["inspect", &image]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let config = &v["OCIv1"]["config"];
    assert_eq!(config["User"], "10001:10001", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/cutover"])
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["worker", "--config", "/etc/cutover/cutover.toml"])
    );
    assert!(config["ExposedPorts"]["9464/tcp"].is_object(), "{config}");
    let deployment = std::fs::read_to_string(root().join("k8s/worker/deployment.yaml")).unwrap();
    assert!(deployment.contains("runAsUser: 10001") && deployment.contains("containerPort: 9464"));
}
