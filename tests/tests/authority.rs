//! The worker is the authority (real Temporal dev server, local platform, the `cutover worker`
//! with its own configuration): requests that disagree with the worker's policy are refused
//! before anything changes; approvals name the release digest; identities come from OIDC ID
//! tokens of a test issuer (keys generated here, JWKS served on 127.0.0.1) verified by the
//! worker; the migration check runs again in the worker; a release started with the
//! `temporal` CLI alone from the README's input runs like one started by `cutover deploy`; and
//! no token, key or database URL appears in any history, log or status.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testkit::{ConfigOpts, Env, Run, bin, temporal_cli};

const DB_URL: &str = "postgres://jts:s3cr3t-db-password@127.0.0.1:1/jts";

/// A test OIDC issuer: an RSA key made by openssl, its JWKS served on 127.0.0.1.
struct Issuer {
    url: String,
    pem: Vec<u8>,
    /// A second key with the same key id: its signatures do not verify.
    forged: Vec<u8>,
}

const KID: &str = "test-key-1";

fn rsa_key(dir: &Path, name: &str) -> (Vec<u8>, String) {
    let path = dir.join(name);
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl genpkey: {out:?}");
    let modulus = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs");
    let hex = String::from_utf8_lossy(&modulus.stdout)
        .trim()
        .trim_start_matches("Modulus=")
        .to_owned();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    (std::fs::read(&path).unwrap(), B64URL.encode(bytes))
}

impl Issuer {
    fn start(dir: &Path) -> Self {
        let (pem, n) = rsa_key(dir, "issuer.pem");
        let (forged, _) = rsa_key(dir, "forged.pem");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let discovery = json!({ "issuer": url, "jwks_uri": format!("{url}/jwks") }).to_string();
        let jwks = json!({ "keys": [{ "kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256", "n": n, "e": "AQAB" }] })
            .to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let body = if req.starts_with("GET /.well-known/openid-configuration") {
                    &discovery
                } else {
                    &jwks
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, pem, forged }
    }

    fn token_with(&self, claims: Value, key: &[u8]) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(KID.to_owned());
        let k = jsonwebtoken::EncodingKey::from_rsa_pem(key).unwrap();
        jsonwebtoken::encode(&h, &claims, &k).unwrap()
    }

    fn claims(&self, actor: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({
            "iss": self.url, "aud": "cutover", "sub": format!("repo:jts/trading:{actor}"),
            "actor": actor, "repository": "jts/trading", "environment": "production-approval",
            "iat": now, "exp": now + 300,
        })
    }

    fn token(&self, actor: &str) -> String {
        self.token_with(self.claims(actor), &self.pem)
    }
}

/// `cutover ARGS` with an ID token (or none) in its environment.
fn cli_as(env: &Env, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = Command::new(bin("cutover"));
    cmd.args(args)
        .env("TEMPORAL_ADDRESS", env.temporal.address())
        .env("CUTOVER_CONFIG", &env.config)
        .env_remove("CUTOVER_USER")
        .env_remove("CUTOVER_ID_TOKEN");
    if let Some(t) = token {
        cmd.env("CUTOVER_ID_TOKEN", t);
    }
    let out = cmd.output().expect("cutover runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn temporal(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new(temporal_cli())
        .args(args)
        .args(["--address", &env.temporal.address()])
        .output()
        .expect("the Temporal CLI runs")
}

fn status_of(env: &Env, environment: &str) -> Option<Value> {
    let run = env.cli(&["status", environment, "--json"]);
    (run.code == 0)
        .then(|| serde_json::from_str(&run.stdout).ok())
        .flatten()
}

fn wait_status(env: &Env, environment: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(s) = status_of(env, environment)
            && cond(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last status: {:?}\nworker log:\n{}",
            status_of(env, environment),
            env.worker.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn closed(env: &Env, workflow_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = temporal(
            env,
            &[
                "workflow",
                "describe",
                "--workflow-id",
                workflow_id,
                "--output",
                "json",
            ],
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let st = v["workflowExecutionInfo"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !st.is_empty() && !st.to_uppercase().contains("RUNNING") {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{workflow_id} still running: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every activity type the run scheduled, in order.
fn activities_scheduled(env: &Env, workflow_id: &str) -> Vec<String> {
    env.temporal
        .history(workflow_id)
        .iter()
        .filter_map(|e| {
            e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The history as text, with every payload decoded (payloads are base64 JSON).
fn history_text(env: &Env, workflow_id: &str) -> String {
    let events = env.temporal.history(workflow_id);
    common::decoded_payloads(&serde_json::to_string(&events).unwrap())
}

/// The worker's configuration: `staging` and `development` (local, asserted identities),
/// `production` (local, verified identities only, approvals from the approval job's GitHub
/// environment), `preprod` (Kubernetes, database, breaker: never reached, every request there
/// is refused before anything starts, or stopped after its authorisation).
fn configure(env: &mut Env, issuer: &Issuer, worker_key: &str, approval: bool) {
    let admin = env.platform.admin.clone();
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    if !approval {
        cfg = cfg.replace("required = true", "required = false");
    }
    cfg.push_str(&format!(
        r#"
[environments.production]
platform = {{ kind = "local", admin_url = "{admin}" }}
production = true
thresholds = {{ max_error_ratio = 0.01, max_p95_ms = 500, min_requests = 10 }}
performance = {{ requests = 20, concurrency = 4 }}
approval = {{ required = true, approvers = ["alice", "bob", "carol"] }}
# Approvals only from the approval job's GitHub environment.
approve_claims = {{ environment = "production-approval" }}
timings = {{ validation_window_secs = 3, check_interval_ms = 500, keep_warm_secs = 1, inconclusive_hold_secs = 5, ready_timeout_secs = 20 }}
replicas = {{ risk-management = 1, order-execution = 1, strategy-engine = 1, api-gateway = 1 }}

[environments.development]
asserted_identities = true
platform = {{ kind = "local", admin_url = "{admin}" }}
thresholds = {{ max_error_ratio = 0.01, max_p95_ms = 500, min_requests = 10 }}
performance = {{ requests = 20, concurrency = 4 }}
timings = {{ validation_window_secs = 3, check_interval_ms = 500, keep_warm_secs = 1, inconclusive_hold_secs = 5, ready_timeout_secs = 20 }}
replicas = {{ risk-management = 1, order-execution = 1, strategy-engine = 1, api-gateway = 1 }}

[environments.preprod]
asserted_identities = true
platform = {{ kind = "kubernetes", namespace = "jts-preprod", manifests = "{manifests}", gateway = "jts", route_host = "{{service}}.dev.jts.test", preview_host = "{{service}}-preview.dev.jts.test", resolve_images = false }}
approval = {{ required = true, approvers = ["alice", "bob"] }}
database = {{ url_env = "JTS_DATABASE_URL", migrations = "{migrations}", bucket = "jts-backups" }}
breaker = {{ max_consecutive_failures = 3, probe_interval_secs = 30 }}
canary = {{ provider = "prometheus", prometheus_url = "http://127.0.0.1:9" }}

[identity]
worker_key = "{worker_key}"
[identity.issuers.test]
issuer = "{iss}"
audience = "cutover"
claim = "actor"
required_claims = {{ repository = "jts/trading" }}
"#,
        manifests = testkit::cluster::repo_root().join("k8s/jts").display(),
        migrations = testkit::cluster::repo_root().join("db/migrations").display(),
        iss = issuer.url,
    ));
    std::fs::write(&env.config, cfg).unwrap();
    env.reconfigure();
}

fn start_env(name: &str, approval: bool) -> (Env, Issuer, String) {
    let opts = ConfigOpts {
        approval,
        keep_warm_secs: 1,
        ..Default::default()
    };
    let (private, public) = worker::identity::keygen();
    let env = Env::start(
        name,
        "",
        &opts,
        &[
            ("CUTOVER_IDENTITY_KEY", &private),
            ("JTS_DATABASE_URL", DB_URL),
        ],
    );
    let mut env = env;
    let issuer = Issuer::start(&env.dir);
    configure(&mut env, &issuer, &public, approval);
    (env, issuer, private)
}

/// Starts a hand-made request with the `temporal` CLI, as the README shows.
fn start_by_hand(env: &Env, environment: &str, input: &Value) -> std::process::Output {
    temporal(
        env,
        &[
            "workflow",
            "start",
            "--type",
            "Deploy",
            "--task-queue",
            "cutover",
            "--workflow-id",
            &format!("deploy-{environment}"),
            "--input",
            &input.to_string(),
        ],
    )
}

fn failure_message(described: &Value, env: &Env, workflow_id: &str) -> String {
    let _ = described;
    let events = env.temporal.history(workflow_id);
    events
        .iter()
        .find_map(|e| {
            e["workflowExecutionFailedEventAttributes"]["failure"]["message"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

#[test]
fn requests_that_disagree_with_the_workers_policy_are_refused_before_anything_starts() {
    let (env, _issuer, private) = start_env("authority-policy", true);
    let cfg = worker::config::Config::load(&env.config).unwrap();
    let base = cfg
        .deploy_request("preprod", "v2", &Default::default(), "ci", "dep-x")
        .unwrap();
    type Edit = fn(&mut proto::DeployRequest);
    let cases: [(&str, Edit, &str); 5] = [
        (
            "namespace",
            |r| r.platform.as_mut().unwrap().namespace = "jts-production".into(),
            "platform.namespace: the request says \"jts-production\", the worker's configuration of preprod says \"jts-preprod\"",
        ),
        (
            "approval",
            |r| r.approval.as_mut().unwrap().required = false,
            "approval.required: the request says false, the worker's configuration of preprod says true",
        ),
        (
            "database",
            |r| r.migrate.as_mut().unwrap().database_url_env = "OTHER_DATABASE_URL".into(),
            "migrate.database_url_env: the request says \"OTHER_DATABASE_URL\", the worker's configuration of preprod says \"JTS_DATABASE_URL\"",
        ),
        (
            "breaker",
            |r| r.breaker = None,
            "breaker: the request says none, the worker's configuration of preprod says {",
        ),
        (
            "unsafe migration marked safe",
            |r| {
                let m = r.migrate.as_mut().unwrap();
                // The client marks it a no-transaction contract file with a checksum; the worker
                // reads the SQL itself.
                m.migrations.push(proto::MigrationFile {
                    version: 99_990_101_000_000,
                    name: "orders_by_client".into(),
                    file: "99990101000000_orders_by_client.up.sql".into(),
                    up_sql: "CREATE INDEX orders_by_client ON orders (client_id);\n".into(),
                    down_sql: "DROP INDEX orders_by_client;\n".into(),
                    checksum: "0".repeat(64),
                    contract: true,
                    no_transaction: true,
                });
            },
            "fail the safety check",
        ),
    ];
    for (what, edit, expected) in cases {
        let mut req = base.clone();
        edit(&mut req);
        req.deployment_id = format!("dep-{}", what.replace(' ', "-"));
        let input = serde_json::to_value(&req).unwrap();
        let t0 = Instant::now();
        let out = start_by_hand(&env, "preprod", &input);
        assert!(out.status.success(), "{what}: {out:?}");
        let described = closed(&env, "deploy-preprod");
        if what == "namespace" {
            common::record_fixture(&env, "deploy-preprod", "deploy_refused");
        }
        let message = failure_message(&described, &env, "deploy-preprod");
        assert!(
            message.contains("refused by the worker") && message.contains(expected),
            "{what}: the refusal should name {expected:?}: {message}"
        );
        let scheduled = activities_scheduled(&env, "deploy-preprod");
        assert_eq!(
            scheduled,
            ["authorize_release", "notify"],
            "{what}: nothing but the authorisation (and the refusal's notification) ran"
        );
        let s = status_of(&env, "preprod").unwrap();
        assert_eq!(s["outcome"], "refused", "{what}: {s}");
        println!("{what}: refused in {:?}: {message}", t0.elapsed());
    }
    // The unmodified request is accepted: its authorisation is recorded, then the platform
    // (no Kubernetes API server here) fails its preflight.
    let mut ok = base.clone();
    ok.deployment_id = "dep-ok".into();
    let out = start_by_hand(&env, "preprod", &serde_json::to_value(&ok).unwrap());
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let scheduled = loop {
        let scheduled = activities_scheduled(&env, "deploy-preprod");
        if scheduled.iter().any(|a| a == "preflight") {
            break scheduled;
        }
        assert!(
            Instant::now() < deadline,
            "no preflight after the authorisation: {scheduled:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        scheduled.first().map(String::as_str),
        Some("authorize_release")
    );
    let s = status_of(&env, "preprod").unwrap();
    assert!(
        s["release"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{s}"
    );
    assert_eq!(s["release"]["verified"], "asserted", "{s}");
    // (No Kubernetes API server here: the preflight cannot reach one; the run is ended.)
    let out = temporal(
        &env,
        &[
            "workflow",
            "terminate",
            "--workflow-id",
            "deploy-preprod",
            "--reason",
            "test done",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // A request for an environment the worker does not serve, and one started under another
    // workflow id (outside the one-at-a-time lock), are refused too.
    let mut other = base.clone();
    other.environment = "qa".into();
    other.deployment_id = "dep-qa".into();
    start_by_hand(&env, "qa", &serde_json::to_value(&other).unwrap());
    closed(&env, "deploy-qa");
    let m = failure_message(&Value::Null, &env, "deploy-qa");
    assert!(
        m.contains("environment \"qa\" is not served by this worker"),
        "{m}"
    );
    let mut sneaky = base.clone();
    sneaky.deployment_id = "dep-sneaky".into();
    let out = temporal(
        &env,
        &[
            "workflow",
            "start",
            "--type",
            "Deploy",
            "--task-queue",
            "cutover",
            "--workflow-id",
            "sneaky-preprod",
            "--input",
            &serde_json::to_value(&sneaky).unwrap().to_string(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    closed(&env, "sneaky-preprod");
    let m = failure_message(&Value::Null, &env, "sneaky-preprod");
    assert!(
        m.contains("a release of preprod runs as \"deploy-preprod\""),
        "{m}"
    );
    // No secret in any history, log or status.
    let mut all = history_text(&env, "deploy-preprod") + &history_text(&env, "deploy-qa");
    all.push_str(&std::fs::read_to_string(&env.worker.log).unwrap_or_default());
    all.push_str(&status_of(&env, "preprod").unwrap().to_string());
    for secret in [DB_URL, "s3cr3t-db-password", private.as_str()] {
        assert!(!all.contains(secret), "a secret leaked: {secret}");
    }
}

#[test]
fn approvals_name_the_release_digest_and_come_from_verified_identities() {
    let (env, issuer, private) = start_env("authority-oidc", true);
    let carol = issuer.token("carol");
    // Production refuses an asserted requester.
    let asserted = cli_as(
        &env,
        None,
        &["deploy", "production", "--revision", "v2", "--as", "carol"],
    );
    assert_eq!(asserted.code, 0, "{asserted:?}");
    closed(&env, "deploy-production");
    let m = failure_message(&Value::Null, &env, "deploy-production");
    assert!(
        m.contains("environment production accepts only verified identities"),
        "{m}"
    );

    // A valid token is accepted: the requester is the token's identity.
    let _load = testkit::Load::start(&env.platform.services, 20);
    let started = cli_as(
        &env,
        Some(&carol),
        &["deploy", "production", "--revision", "v2"],
    );
    assert_eq!(started.code, 0, "{started:?}");
    let id = started.field("deployment_id").unwrap();
    let s = wait_status(&env, "production", "the approval gate", |s| {
        s["phase"] == "awaiting_approval"
    });
    let digest = s["release"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(s["release"]["requester"], "carol", "{s}");
    assert_eq!(
        s["release"]["verified"],
        format!("oidc {}", issuer.url),
        "{s}"
    );
    assert_eq!(s["requested_by"], "carol", "{s}");

    let approve = |token: Option<&str>, extra: &[&str]| {
        let mut args = vec![
            "approve",
            "production",
            "--deployment",
            &id,
            "--revision",
            "v2",
        ];
        args.extend_from_slice(extra);
        cli_as(&env, token, &args)
    };
    // An approval naming another digest: refused by the workflow's validator.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let r = temporal(
        &env,
        &[
            "workflow",
            "update",
            "execute",
            "--workflow-id",
            "deploy-production",
            "--name",
            "approve",
            "--input",
            &json!({ "approver": "alice", "deployment_id": id, "revision": "v2", "digest": wrong })
                .to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&r.stderr).to_string() + &String::from_utf8_lossy(&r.stdout);
    assert!(
        !r.status.success() && text.contains("approval names release"),
        "{text}"
    );
    let r = approve(Some(&issuer.token("alice")), &["--digest", &wrong]);
    assert!(
        r.code != 0 && r.stderr.contains("is not the release"),
        "{r:?}"
    );

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut aud = issuer.claims("alice");
    aud["aud"] = json!("someone-else");
    let mut expired = issuer.claims("alice");
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let other_dir = env.dir.join("other-issuer");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other_issuer = Issuer::start(&other_dir);
    let mut repo = issuer.claims("alice");
    repo["repository"] = json!("someone/fork");
    // A token from another job of the same repository (the deploy job's environment).
    let mut other_job = issuer.claims("alice");
    other_job["environment"] = json!("production");
    let refusals: Vec<(&str, String, &str)> = vec![
        (
            "wrong audience",
            issuer.token_with(aud, &issuer.pem),
            "the worker accepts \"cutover\"",
        ),
        (
            "expired",
            issuer.token_with(expired, &issuer.pem),
            "has expired",
        ),
        (
            "bad signature",
            issuer.token_with(issuer.claims("alice"), &issuer.forged),
            "signature does not verify",
        ),
        (
            "unknown issuer",
            other_issuer.token("alice"),
            "is not trusted by the worker",
        ),
        (
            "another repository",
            issuer.token_with(repo, &issuer.pem),
            "claim \"repository\" is \"someone/fork\"",
        ),
        (
            "another job's token",
            issuer.token_with(other_job, &issuer.pem),
            "in production: claim \"environment\" is \"production\"; the worker requires \"production-approval\"",
        ),
        (
            "the requester",
            carol.clone(),
            "\"carol\" requested deployment",
        ),
    ];
    for (what, token, expected) in &refusals {
        let r = approve(Some(token), &[]);
        assert!(
            r.code != 0 && r.stderr.contains(expected),
            "{what}: expected a refusal naming {expected:?}: {r:?}"
        );
        let s = status_of(&env, "production").unwrap();
        assert_eq!(
            s["approvals"],
            json!([]),
            "{what}: nothing recorded as approved: {s}"
        );
        assert_eq!(s["phase"], "awaiting_approval", "{what}: {s}");
        println!("{what}: refused: {}", r.stderr.trim());
    }
    // An asserted approver in production: refused as well.
    let r = approve(None, &["--as", "alice"]);
    assert!(
        r.code != 0 && r.stderr.contains("accepts only verified identities"),
        "{r:?}"
    );

    // The shown digest, from a verified approver: approved, and the release proceeds.
    let r = approve(Some(&issuer.token("alice")), &["--digest", &digest]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&digest),
        "the CLI shows what it approves: {}",
        r.stdout
    );
    let s = wait_status(&env, "production", "the outcome", |s| {
        s["outcome"].as_str().is_some_and(|o| !o.is_empty())
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    let a = &s["approvals"][0];
    assert_eq!(a["approver"], "alice", "{s}");
    assert_eq!(a["digest"], json!(digest), "{s}");
    assert_eq!(a["verified"], format!("oidc {}", issuer.url), "{s}");
    closed(&env, "deploy-production");
    common::record_fixture(&env, "deploy-production", "deploy_authority_oidc");

    // No token, key or database URL in any history, log line or status.
    let mut all = history_text(&env, "deploy-production");
    all.push_str(&std::fs::read_to_string(&env.worker.log).unwrap_or_default());
    all.push_str(&s.to_string());
    let mut secrets: Vec<String> = vec![carol.clone(), private.clone(), DB_URL.to_owned()];
    secrets.extend(refusals.iter().map(|(_, t, _)| t.clone()));
    // A token's signature alone would make it usable again.
    let sigs: Vec<String> = secrets
        .iter()
        .filter_map(|t| t.rsplit_once('.').map(|(_, sig)| sig.to_owned()))
        .filter(|sig| sig.len() > 20)
        .collect();
    secrets.extend(sigs);
    for secret in &secrets {
        assert!(
            !all.contains(secret.as_str()),
            "a secret leaked into history, log or status"
        );
    }
    println!(
        "history, worker log and status: {} bytes searched for {} secrets, none found",
        all.len(),
        secrets.len()
    );
}

/// The `temporal workflow start` command of the README (its `--input` JSON and workflow id).
fn readme_command() -> (String, Value) {
    let readme = std::fs::read_to_string(testkit::cluster::repo_root().join("README.md")).unwrap();
    let start = readme
        .find("temporal workflow start --type Deploy")
        .expect("the README shows the temporal CLI command");
    let text: String = readme[start..]
        .lines()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let id = text
        .split("--workflow-id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a workflow id")
        .to_owned();
    let input = text
        .split("--input '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("an --input '...' argument");
    (
        id,
        serde_json::from_str(input).expect("the README's input is JSON"),
    )
}

#[test]
fn a_release_started_with_the_temporal_cli_alone_runs_like_one_started_by_cutover_deploy() {
    let (env, _issuer, _private) = start_env("authority-by-hand", false);
    let _load = testkit::Load::start(&env.platform.services, 20);
    let (workflow_id, input) = readme_command();
    let environment = input["environment"].as_str().unwrap().to_owned();
    let revision = input["revision"].as_str().unwrap().to_owned();
    assert_eq!(workflow_id, format!("deploy-{environment}"));
    let by_cli = env.cli(&[
        "deploy",
        &environment,
        "--revision",
        &revision,
        "--as",
        "ci",
        "--wait",
    ]);
    assert_eq!(by_cli.code, 0, "{by_cli:?}");
    closed(&env, &workflow_id);
    let first = status_of(&env, &environment).unwrap();
    // The README's command, as written there: what a release is, nothing else.
    let out = start_by_hand(&env, &environment, &input);
    assert!(out.status.success(), "{out:?}");
    closed(&env, &workflow_id);
    let second = status_of(&env, &environment).unwrap();
    assert_eq!(second["deployment_id"], input["deployment_id"], "{second}");
    common::record_fixture(&env, &workflow_id, "deploy_authority_by_hand");
    let phases = |s: &Value| -> Vec<String> {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.as_str()?.split_once(" phase ").map(|(_, p)| p.to_owned()))
            .collect()
    };
    assert_eq!(first["outcome"], "succeeded", "{first}");
    assert_eq!(second["outcome"], first["outcome"], "{first}\n{second}");
    assert_eq!(phases(&second), phases(&first), "{first}\n{second}");
    assert_eq!(
        second["release"]["digest"], first["release"]["digest"],
        "same release, same digest"
    );
    assert_eq!(second["release"]["images"], first["release"]["images"]);
    for svc in second["services"].as_array().unwrap() {
        assert_eq!(svc["version"], json!(revision), "{second}");
        assert_eq!(svc["state"], first["services"][0]["state"], "{second}");
    }
    assert!(common::all_on(
        &env,
        second["active_color"].as_str().unwrap()
    ));
    println!(
        "cutover deploy: {} {:?}; the README's temporal workflow start: {} {:?}; release {}",
        first["outcome"],
        phases(&first),
        second["outcome"],
        phases(&second),
        second["release"]["digest"]
    );
}

#[test]
fn the_worker_and_the_cli_reach_temporal_over_mutual_tls_with_a_private_ca() {
    let mut env = Env::start("authority-tls", "", &ConfigOpts::default(), &[]);
    let proxy = testkit::tlsproxy::TlsProxy::start(&env.dir, &env.temporal.address());
    let (ca, cert, key) = (
        proxy.ca.display().to_string(),
        proxy.client_cert.display().to_string(),
        proxy.client_key.display().to_string(),
    );
    let config = env.config.display().to_string();
    const API_KEY: &str = "tls-test-api-key-s3cr3t";
    let tls: Vec<(&str, &str)> = vec![
        ("TEMPORAL_TLS", "true"),
        ("TEMPORAL_TLS_CA", &ca),
        ("TEMPORAL_TLS_CERT", &cert),
        ("TEMPORAL_TLS_KEY", &key),
        ("TEMPORAL_API_KEY", API_KEY),
        ("CUTOVER_CONFIG", &config),
    ];
    // The plaintext worker goes; one that reaches Temporal only through the TLS front comes.
    env.worker.kill9();
    let worker = testkit::Worker::start(&proxy.address, &tls);
    testkit::wait_until("the TLS worker polls", Duration::from_secs(60), || {
        env.temporal
            .workflow_pollers("cutover")
            .iter()
            .any(|id| worker.is(id))
    });
    let cli = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(bin("cutover"));
        cmd.args(args)
            .env("TEMPORAL_ADDRESS", &proxy.address)
            .env("CUTOVER_CONFIG", &env.config)
            .env_remove("TEMPORAL_TLS")
            .env_remove("TEMPORAL_TLS_CA")
            .env_remove("TEMPORAL_TLS_CERT")
            .env_remove("TEMPORAL_TLS_KEY");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("cutover runs")
    };
    let tls_cli: Vec<(&str, &str)> = tls[..5].to_vec();
    let _load = testkit::Load::start(&env.platform.services, 20);
    let t0 = Instant::now();
    let run = cli(
        &tls_cli,
        &[
            "deploy",
            "staging",
            "--revision",
            "v2",
            "--as",
            "ci",
            "--wait",
        ],
    );
    assert!(
        run.status.success(),
        "a release through mTLS: {run:?}\nworker log:\n{}",
        worker.log_tail(20)
    );
    println!(
        "release over mTLS with a private CA: succeeded in {:?}",
        t0.elapsed()
    );
    // Without a client certificate, with one of another CA, without the CA, or in plaintext:
    // no connection.
    let stranger = (
        proxy.stranger_cert.display().to_string(),
        proxy.stranger_key.display().to_string(),
    );
    let refused: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "no client certificate",
            vec![("TEMPORAL_TLS", "true"), ("TEMPORAL_TLS_CA", &ca)],
        ),
        (
            "a certificate of another CA",
            vec![
                ("TEMPORAL_TLS", "true"),
                ("TEMPORAL_TLS_CA", &ca),
                ("TEMPORAL_TLS_CERT", &stranger.0),
                ("TEMPORAL_TLS_KEY", &stranger.1),
            ],
        ),
        (
            "the system's roots instead of the private CA",
            vec![
                ("TEMPORAL_TLS", "true"),
                ("TEMPORAL_TLS_CERT", &cert),
                ("TEMPORAL_TLS_KEY", &key),
            ],
        ),
        ("plaintext", vec![]),
    ];
    for (what, envs) in refused {
        let out = cli(&envs, &["status", "staging"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("cannot reach Temporal"),
            "{what}: {out:?}"
        );
        println!("{what}: refused: {}", err.trim());
    }
    let ok = cli(&tls_cli, &["status", "staging"]);
    assert!(ok.status.success(), "{ok:?}");
    // Neither the API key nor the client key is in the history, the worker's log or the status.
    let mut all = history_text(&env, "deploy-staging");
    all.push_str(&std::fs::read_to_string(&worker.log).unwrap_or_default());
    all.push_str(&String::from_utf8_lossy(&ok.stdout));
    let client_key = std::fs::read_to_string(&proxy.client_key).unwrap();
    let key_body: String = client_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!all.contains(API_KEY), "the API key leaked");
    assert!(
        !all.contains(&key_body) && !all.contains(&key_body[..32]),
        "the client key leaked"
    );
}
