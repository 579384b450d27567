//! Image preflight against a real OCI registry (the CNCF distribution registry, started here;
//! images pushed with crane): tags resolve to the digests the registry holds, anonymously or
//! with the worker's credentials, and a missing or refused image is named. (A release through
//! the preflight on Kubernetes: tests/kubernetes.rs.)

use std::time::Duration;
use testkit::registry::Registry;
use worker::registry::{Login, Logins, Unresolved, resolve};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn tags_resolve_to_the_registrys_digests_anonymously_and_only_with_the_right_credentials() {
    let dir = testkit::scratch_dir("images-resolve");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let none = Logins::default();

    // Anonymous registry.
    let mut open = Registry::start(&dir.join("open"), None);
    let digest = open.push("jts/api-gateway", "v2");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let tagged = format!("{}/jts/api-gateway:v2", open.host);
    let pinned = rt.block_on(resolve(&http(), &tagged, &none)).unwrap();
    assert_eq!(pinned, format!("{tagged}@{digest}"));
    // A tag moved to another image resolves to the new digest.
    let other = open.push("jts/api-gateway", "v2-next");
    open.crane(&[
        "tag",
        &format!("{}/jts/api-gateway:v2-next", open.host),
        "v2",
    ]);
    let moved = rt.block_on(resolve(&http(), &tagged, &none)).unwrap();
    assert_eq!(moved, format!("{tagged}@{other}"));
    assert_ne!(other, digest);
    // A reference with a digest: checked to exist, kept as written.
    let by_digest = format!("{}/jts/api-gateway@{digest}", open.host);
    assert_eq!(
        rt.block_on(resolve(&http(), &by_digest, &none)).unwrap(),
        by_digest
    );
    // Missing: a tag, a repository, a digest.
    for (reference, says) in [
        (
            format!("{}/jts/api-gateway:v9", open.host),
            "no manifest v9",
        ),
        (
            format!("{}/jts/no-such-service:v2", open.host),
            "in repository jts/no-such-service",
        ),
        (
            format!("{}/jts/api-gateway@sha256:{}", open.host, "0".repeat(64)),
            "does not exist",
        ),
    ] {
        match rt.block_on(resolve(&http(), &reference, &none)) {
            Err(Unresolved::Refused(e)) => {
                assert!(
                    e.contains(&format!("image {reference} does not exist")) && e.contains(says),
                    "{e}"
                );
                println!("missing: {e}");
            }
            other => panic!("{reference}: {other:?}"),
        }
    }

    // A registry behind htpasswd: nothing without credentials, the wrong password refused, the
    // right one (read from the Docker config.json crane logged in with) accepted.
    let mut private = Registry::start(&dir.join("private"), Some(("ci-puller", "pull-s3cret")));
    let digest = private.push("jts/order-execution", "v2");
    let reference = format!("{}/jts/order-execution:v2", private.host);
    match rt.block_on(resolve(&http(), &reference, &none)) {
        Err(Unresolved::Refused(e)) => {
            assert!(
                e.contains("requires credentials and the worker has none")
                    && e.contains("CUTOVER_REGISTRY_AUTH_FILE"),
                "{e}"
            );
            println!("without credentials: {e}");
        }
        other => panic!("{other:?}"),
    }
    let wrong = Logins::single(&private.host, Login::new("ci-puller", "not-the-password"));
    match rt.block_on(resolve(&http(), &reference, &wrong)) {
        Err(Unresolved::Refused(e)) => {
            assert!(e.contains("refused the worker's credentials"), "{e}");
            assert!(!e.contains("not-the-password"), "{e}");
            println!("wrong credentials: {e}");
        }
        other => panic!("{other:?}"),
    }
    let text = std::fs::read_to_string(private.auth_file()).unwrap();
    let logins = Logins::parse(&text).unwrap();
    let pinned = rt.block_on(resolve(&http(), &reference, &logins)).unwrap();
    assert_eq!(pinned, format!("{reference}@{digest}"));

    // A registry that does not answer is worth another try, not a refusal.
    drop(open);
    match rt.block_on(resolve(&http(), &tagged, &none)) {
        Err(Unresolved::Unavailable(e)) => assert!(e.contains("did not answer"), "{e}"),
        other => panic!("{other:?}"),
    }
}
