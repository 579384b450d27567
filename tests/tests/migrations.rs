//! Database migrations against a real PostgreSQL 15 and a real S3-compatible server (s3s-fs),
//! driven through the Temporal dev server and the `cutover worker`.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::db::{MigrationWorld, Postgres, S3};
use testkit::{Run, Temporal, Worker, run_cli, scratch_dir};

fn repo() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

struct MigEnv {
    dir: PathBuf,
    pg: Postgres,
    s3: S3,
    temporal: Temporal,
    worker: Worker,
    config: PathBuf,
}

impl MigEnv {
    /// `migrations`: the folder of files; `on_failure`: down | restore.
    fn start(name: &str, migrations: &Path, on_failure: &str, worker_env: &[(&str, &str)]) -> Self {
        let dir = scratch_dir(&format!("mig-{name}"));
        let world = MigrationWorld::start(&dir, migrations, on_failure);
        let mut envs = world.worker_env();
        let MigrationWorld { pg, s3, config } = world;
        let temporal = Temporal::start(&dir);
        for (k, v) in worker_env {
            envs.push((k.to_string(), v.to_string()));
        }
        envs.push(("CUTOVER_CONFIG".into(), config.display().to_string()));
        let refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let worker = Worker::start(&temporal.address(), &refs);
        Self {
            dir,
            pg,
            s3,
            temporal,
            worker,
            config,
        }
    }

    fn cli(&self, args: &[&str]) -> Run {
        let out = std::process::Command::new(testkit::bin("cutover"))
            .args(args)
            .env("TEMPORAL_ADDRESS", self.temporal.address())
            .env("CUTOVER_CONFIG", &self.config)
            .env("JTS_DATABASE_URL", &self.pg.url)
            .env_remove("CUTOVER_USER")
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn status(&self) -> Option<Value> {
        let r = self.cli(&["migrate", "status", "staging", "--json"]);
        (r.code == 0)
            .then(|| serde_json::from_str(&r.stdout).ok())
            .flatten()
    }

    fn wait_status(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status()
                && f(&s)
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}\nworker log:\n{}",
                self.status(),
                self.worker.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn version(&self) -> String {
        self.pg.psql(
            "jts",
            "SELECT coalesce((SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1)::text, 'none')",
        )
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

const T: &str = "SET lock_timeout = '2s';\nSET statement_timeout = '30s';\n";

#[test]
fn expand_then_contract_with_a_verified_backup_and_a_readable_version() {
    let env = MigEnv::start("phases", &repo().join("db/migrations"), "down", &[]);
    let plan = env.cli(&["migrate", "plan", "staging"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(plan.stdout.contains("current version: 0"), "{plan:?}");
    assert!(
        plan.stdout.contains(
            "expand (before the switch):   [20261101000001, 20261102000001, 20261103000001]"
        ),
        "{plan:?}"
    );
    assert!(
        plan.stdout.contains("contract (after retirement): not yet"),
        "{plan:?}"
    );
    let run = env.cli(&[
        "migrate",
        "run",
        "staging",
        "--phase",
        "expand",
        "--as",
        "ci",
        "--deployment-id",
        "dep-1",
        "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}\n{}", env.worker.log_tail(30));
    // The expand phase applied every file not marked contract, and nothing else.
    assert_eq!(env.version(), "20261103000001");
    let rows = env.pg.psql(
        "jts",
        "SELECT version || ' ' || name || ' ' || deployment_id || ' ' || length(checksum) FROM schema_migrations ORDER BY version",
    );
    assert_eq!(
        rows,
        "20261101000001 create_orders dep-1 64\n20261102000001 risk_limits dep-1 64\n20261103000001 orders_symbol_index dep-1 64"
    );
    assert_eq!(env.pg.psql("jts", "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'"), "1");
    assert_eq!(
        env.pg.psql(
            "jts",
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_symbol'::regclass"
        ),
        "t"
    );
    // The backup is in the bucket, its size and checksum as the run recorded them.
    let s = env.status().unwrap();
    let key = s["backup"]["key"].as_str().unwrap().to_owned();
    let size = s["backup"]["size"].as_u64().unwrap();
    let objects = env.s3.objects();
    assert!(
        objects.iter().any(|(k, sz)| k == &key && *sz == size),
        "{key} ({size} bytes) not in {objects:?}"
    );
    // The contract phase applies the rest.
    let run = env.cli(&[
        "migrate", "run", "staging", "--phase", "contract", "--as", "ci", "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(env.version(), "20261104000001");
    assert_eq!(env.pg.psql("jts", "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'"), "0");
    // Nothing left: a second run does nothing.
    let run = env.cli(&[
        "migrate", "run", "staging", "--phase", "all", "--as", "ci", "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("outcome nothing_to_do"), "{run:?}");
    // `migrate rollback --to` reverts newest first with the down files.
    let run = env.cli(&[
        "migrate",
        "rollback",
        "staging",
        "--to",
        "20261102000001",
        "--as",
        "ops",
        "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(env.version(), "20261102000001");
    assert_eq!(
        env.pg.psql(
            "jts",
            "SELECT count(*) FROM pg_class WHERE relname = 'orders_symbol'"
        ),
        "0"
    );
    // Secrets never reach the history: the database URL travels as a variable name only.
    let history = std::process::Command::new(testkit::temporal_cli())
        .args([
            "workflow",
            "show",
            "--workflow-id",
            "migrate-staging",
            "--address",
            &env.temporal.address(),
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let history = common::decoded_payloads(&String::from_utf8_lossy(&history.stdout));
    assert!(
        history.contains("JTS_DATABASE_URL"),
        "the history shows payloads"
    );
    assert!(
        !history.contains(&env.pg.url),
        "the database URL leaked into the history"
    );
    assert!(
        !history.contains(testkit::db::S3_SECRET_KEY),
        "the S3 secret leaked"
    );
}

/// Three files; the third creates a table, inserts, then fails midway.
fn failing_set(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    write(
        dir,
        "1_base.up.sql",
        &format!(
            "{T}CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);\nINSERT INTO accounts VALUES (1, 'desk-1');\n"
        ),
    );
    write(dir, "1_base.down.sql", "DROP TABLE accounts;\n");
    write(
        dir,
        "2_limits.up.sql",
        &format!(
            "{T}CREATE TABLE risk_limits (account_id bigint PRIMARY KEY, max_notional numeric NOT NULL);\nALTER TABLE accounts ADD COLUMN desk text;\n"
        ),
    );
    write(
        dir,
        "2_limits.down.sql",
        "ALTER TABLE accounts DROP COLUMN desk;\nDROP TABLE risk_limits;\n",
    );
    write(
        dir,
        "3_broken.up.sql",
        &format!(
            "{T}CREATE TABLE fills (id bigint PRIMARY KEY);\nINSERT INTO fills VALUES (1);\nALTER TABLE accounts ADD COLUMN region text DEFAULT 'eu';\nINSERT INTO fills VALUES (1);\n"
        ),
    );
    write(
        dir,
        "3_broken.down.sql",
        "DROP TABLE fills;\nALTER TABLE accounts DROP COLUMN region;\n",
    );
}

#[test]
fn a_migration_failing_midway_leaves_the_schema_exactly_as_before() {
    for on_failure in ["down", "restore"] {
        let dir = scratch_dir(&format!("mig-files-{on_failure}"));
        failing_set(&dir);
        let env = MigEnv::start(&format!("midway-{on_failure}"), &dir, on_failure, &[]);
        // An existing database with data and an unrelated table.
        env.pg.psql("jts", "CREATE TABLE audit (id serial PRIMARY KEY, at timestamptz DEFAULT now()); INSERT INTO audit DEFAULT VALUES;");
        let before = env.pg.schema_dump();
        let data_before = env.pg.psql("jts", "SELECT count(*) FROM audit");
        let run = env.cli(&[
            "migrate", "run", "staging", "--phase", "all", "--as", "ci", "--wait",
        ]);
        assert_eq!(run.code, 1, "{run:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            all.contains("3_broken.up.sql failed and was rolled back"),
            "{all}"
        );
        assert!(all.contains("duplicate key"), "{all}");
        let expected = if on_failure == "down" {
            "reverted"
        } else {
            "restored"
        };
        assert!(all.contains(&format!("outcome {expected}")), "{all}");
        let after = env.pg.schema_dump();
        // schema_migrations itself is cutover's bookkeeping: with down files it stays (empty);
        // a restore brings back the database as it was, without it.
        if on_failure == "down" {
            assert_eq!(
                env.pg.psql("jts", "SELECT count(*) FROM schema_migrations"),
                "0"
            );
        }
        assert_eq!(
            blocks(&before, "schema_migrations"),
            blocks(&after, "schema_migrations"),
            "schema differs after a failed run ({on_failure})"
        );
        assert_eq!(
            env.pg.psql("jts", "SELECT count(*) FROM audit"),
            data_before
        );
        eprintln!(
            "{on_failure}: schema identical ({} lines compared)",
            before.lines().count()
        );
        if on_failure == "down" {
            common::record_fixture_at(
                &env.temporal.address(),
                "migrate-staging",
                "migrate_reverted",
            );
        }
    }
}

/// The statements of a schema dump (blank-line separated blocks), without one table's.
fn blocks(dump: &str, table: &str) -> Vec<String> {
    dump.split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .filter(|b| {
            !b.contains(&format!("public.{table} ")) && !b.contains(&format!("public.{table}\n"))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn kill_9_during_apply_applies_each_migration_exactly_once() {
    let dir = scratch_dir("mig-files-kill-apply");
    write(
        &dir,
        "1_slow.up.sql",
        &format!(
            "{T}CREATE TABLE ledger (id bigint PRIMARY KEY, note text);\nINSERT INTO ledger VALUES (1, 'once');\nSELECT pg_sleep(6);\nINSERT INTO ledger VALUES (2, 'once');\n"
        ),
    );
    write(&dir, "1_slow.down.sql", "DROP TABLE ledger;\n");
    write(
        &dir,
        "2_next.up.sql",
        &format!("{T}ALTER TABLE ledger ADD COLUMN booked_at timestamptz;\n"),
    );
    write(
        &dir,
        "2_next.down.sql",
        "ALTER TABLE ledger DROP COLUMN booked_at;\n",
    );
    let mut env = MigEnv::start("kill-apply", &dir, "down", &[]);
    let run = env.cli(&["migrate", "run", "staging", "--phase", "all", "--as", "ci"]);
    assert_eq!(run.code, 0, "{run:?}");
    // Kill the worker while the first migration's transaction is inside pg_sleep.
    testkit::wait_until("the migration is running", Duration::from_secs(60), || {
        env.pg.psql("jts", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(6)%' AND state = 'active' AND application_name = 'cutover'") == "1"
    });
    env.worker.kill9();
    // The server notices the dead client (client_connection_check_interval) and rolls back.
    testkit::wait_until(
        "the dead worker's transaction is gone",
        Duration::from_secs(30),
        || {
            env.pg.psql(
                "jts",
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cutover'",
            ) == "0"
        },
    );
    assert_eq!(
        env.pg.psql("jts", "SELECT to_regclass('ledger') IS NULL"),
        "t",
        "nothing half-applied"
    );
    env.worker.restart();
    let s = env.wait_status("outcome", Duration::from_secs(120), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(
        env.pg.psql(
            "jts",
            "SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM ledger"
        ),
        "1:once,2:once"
    );
    assert_eq!(
        env.pg.psql(
            "jts",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations"
        ),
        "1,2"
    );
}

#[test]
fn kill_9_during_the_backup_upload_resumes_and_the_backup_is_verified() {
    let dir = scratch_dir("mig-files-kill-upload");
    write(
        &dir,
        "1_col.up.sql",
        &format!("{T}ALTER TABLE big ADD COLUMN tag text;\n"),
    );
    write(&dir, "1_col.down.sql", "ALTER TABLE big DROP COLUMN tag;\n");
    // Fault hook (named as such): 1.5 s after each 5 MiB part, so the kill lands mid-upload.
    let mut env = MigEnv::start(
        "kill-upload",
        &dir,
        "down",
        &[("CUTOVER_FAULT_UPLOAD_PART_DELAY_MS", "1500")],
    );
    // ~20 MB of incompressible data: four or more parts.
    env.pg.psql("jts", "CREATE TABLE big AS SELECT g AS id, decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex') AS payload FROM generate_series(1, 300000) g");
    let run = env.cli(&["migrate", "run", "staging", "--phase", "all", "--as", "ci"]);
    assert_eq!(run.code, 0, "{run:?}");
    // Wait until at least one part is uploaded (heartbeat details of the pending backup).
    let temporal = env.temporal.address();
    testkit::wait_until("a part uploaded", Duration::from_secs(90), || {
        uploaded_parts(&temporal) >= 1
    });
    let parts_before = uploaded_parts(&temporal);
    env.worker.kill9();
    env.worker.remove_env("CUTOVER_FAULT_UPLOAD_PART_DELAY_MS");
    env.worker.restart();
    let s = env.wait_status("outcome", Duration::from_secs(180), |s| {
        !s["outcome"].as_str().unwrap_or("").is_empty()
    });
    assert_eq!(s["outcome"], "succeeded", "{s}");
    let b = &s["backup"];
    assert_eq!(b["resumed"], true, "the retry resumed the upload: {b}");
    assert!(b["parts"].as_u64().unwrap() >= 4, "{b}");
    // The object in the bucket: the size the run verified, and a dump pg_restore can read.
    let key = b["key"].as_str().unwrap();
    let path = env.s3.root.join("jts-backups").join(key);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, b["size"].as_u64().unwrap());
    let listed = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public big"));
    assert_eq!(env.version(), "1");
    eprintln!(
        "backup resumed after kill -9 with {parts_before} of {} parts uploaded; {} bytes verified",
        b["parts"], b["size"]
    );
    let _ = &env.dir;
}

/// Parts the pending backup activity has heartbeated (via `temporal workflow describe`).
fn uploaded_parts(temporal: &str) -> usize {
    let out = std::process::Command::new(testkit::temporal_cli())
        .args([
            "workflow",
            "describe",
            "--workflow-id",
            "migrate-staging",
            "--address",
            temporal,
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if let Ok(p) = std::env::var("CUTOVER_TEST_DUMP_DESCRIBE")
        && v["pendingActivities"].is_array()
    {
        let _ = std::fs::write(p, &out.stdout);
    }
    let Some(pending) = v["pendingActivities"].as_array() else {
        return 0;
    };
    for a in pending {
        // The CLI shows each heartbeat payload decoded: here, the JSON progress document.
        for d in a["heartbeatDetails"].as_array().into_iter().flatten() {
            let progress: Value = match d {
                Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
                other => other.clone(),
            };
            if let Some(parts) = progress["parts"].as_array() {
                return parts.len();
            }
        }
    }
    0
}

#[test]
fn migrate_check_on_its_own_exits_non_zero_on_unsafe_files_and_prints_json() {
    let dir = scratch_dir("mig-check-cli");
    write(
        &dir,
        "5_idx.up.sql",
        &format!("{T}CREATE INDEX orders_symbol ON orders (symbol);\n"),
    );
    write(&dir, "5_idx.down.sql", "DROP INDEX orders_symbol;\n");
    let cfg = repo().join("cutover.toml");
    let run = run_cli(
        "127.0.0.1:1",
        &cfg,
        &[
            "migrate",
            "check",
            &dir.display().to_string(),
            "--format",
            "json",
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["format"], "cutover.migrate.check/v1");
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "index-build-blocks-writes");
    assert_eq!(f["line"], 3);
    assert_eq!(f["file"], "5_idx.up.sql");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["lock"], "SHARE");
    assert_eq!(f["table"], "public.orders");
    assert_eq!(f["rewrite"], false);
    assert!(f["alternative"].as_str().unwrap().contains("CONCURRENTLY"));
    let run = run_cli(
        "127.0.0.1:1",
        &cfg,
        &[
            "migrate",
            "check",
            &repo().join("db/migrations").display().to_string(),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = run_cli("127.0.0.1:1", &cfg, &["migrate", "check", "/nonexistent"]);
    assert_eq!(run.code, 2, "{run:?}");
}

/// A Deploy with the repository's migrations on the local platform: expand before the new colour
/// starts, contract after the old colour is retired; zero failed requests throughout.
/// A database and a bucket for a release's migrations: the servers, and the worker's
/// environment that reaches them.
struct ReleaseDb {
    pg: Postgres,
    _s3: S3,
    worker_env: Vec<(String, String)>,
}

impl ReleaseDb {
    fn start(name: &str) -> Self {
        let dir = scratch_dir(name);
        let pg = Postgres::start(&dir);
        let s3 = S3::start(&dir, "jts-backups");
        let mut worker_env: Vec<(String, String)> = s3.env();
        worker_env.push(("JTS_DATABASE_URL".into(), pg.url.clone()));
        Self {
            pg,
            _s3: s3,
            worker_env,
        }
    }

    fn worker_env(&self) -> Vec<(&str, &str)> {
        self.worker_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The environment's `database` section: the repository's migrations.
    fn configure(config: &Path) {
        let mut cfg = std::fs::read_to_string(config).unwrap();
        cfg.push_str(&format!(
            "database = {{ url_env = \"JTS_DATABASE_URL\", migrations = \"{}\", bucket = \"jts-backups\", path_style = true, part_size_mb = 5 }}\n",
            repo().join("db/migrations").display()
        ));
        std::fs::write(config, cfg).unwrap();
    }

    /// Every file of the release applied, recorded with its deployment.
    fn assert_migrated(&self, deployment_id: &str) {
        let version = self.pg.psql(
            "jts",
            "SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1",
        );
        assert_eq!(version, "20261104000001");
        let sql = format!(
            "SELECT count(*) FROM schema_migrations WHERE deployment_id = '{deployment_id}'"
        );
        assert_eq!(self.pg.psql("jts", &sql), "4");
    }
}

/// The events of a status, and where the first containing `needle` stands.
fn event_at(s: &Value) -> impl Fn(&str) -> usize {
    let events: Vec<String> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    move |needle: &str| {
        events
            .iter()
            .position(|e| e.contains(needle))
            .unwrap_or_else(|| panic!("no event {needle:?} in {events:#?}"))
    }
}

#[test]
fn deploy_runs_expand_before_the_new_colour_and_contract_after_retirement() {
    let db = ReleaseDb::start("mig-deploy-db");
    let opts = testkit::ConfigOpts {
        keep_warm_secs: 2,
        ..Default::default()
    };
    let mut env = testkit::Env::start("mig-deploy", "", &opts, &db.worker_env());
    ReleaseDb::configure(&env.config);
    env.reconfigure();
    let load = testkit::Load::start(&env.platform.services, 30);
    let run = std::process::Command::new(testkit::bin("cutover"))
        .args([
            "deploy",
            "staging",
            "--revision",
            "v2",
            "--as",
            "ci",
            "--wait",
        ])
        .env("TEMPORAL_ADDRESS", env.temporal.address())
        .env("CUTOVER_CONFIG", &env.config)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let s = common::wait_outcome(&env, Duration::from_secs(60));
    let stats = load.stop();
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    // Wait for the end of the run (contract runs after the warm period).
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = common::status(&env).unwrap();
        if s["phase"] == "done" {
            break s;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let at = event_at(&s);
    assert!(
        at("migrations expand succeeded") < at("phase starting"),
        "{s}"
    );
    assert!(
        at("retired blue") < at("migrations contract succeeded"),
        "{s}"
    );
    db.assert_migrated(s["deployment_id"].as_str().unwrap());
    common::record_fixture(&env, "deploy-staging", "deploy_with_migrations");
    common::record_fixture(&env, "migrate-staging", "migrate_contract");
    // Since patch `worker-authority`: both runs authorised by the worker first.
    common::record_fixture(&env, "deploy-staging", "deploy_authority_migrations");
    common::record_fixture(&env, "migrate-staging", "migrate_authority");
}

#[test]
fn a_canary_runs_expand_before_its_first_step_and_contract_after_the_stable_colour_retires() {
    let db = ReleaseDb::start("mig-canary-db");
    let opts = testkit::ConfigOpts {
        min_requests: 10,
        keep_warm_secs: 2,
        ..Default::default()
    };
    let (mut env, _prom) = common::canary::canary_env_for(
        "mig-canary",
        "",
        &[10, 100],
        (2, 60),
        &opts,
        &db.worker_env(),
    );
    ReleaseDb::configure(&env.config);
    env.reconfigure();
    let load = testkit::Load::start(&env.platform.services, 30);
    let id = common::canary::start(&env);
    let s = common::canary::wait(
        &env,
        "the end",
        Duration::from_secs(120),
        common::canary::done,
    );
    let stats = load.stop();
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    let at = event_at(&s);
    // Expand before the canary colour starts, so before 10 % of live traffic reaches it.
    assert!(
        at("migrations expand succeeded") < at("phase starting"),
        "{s}"
    );
    assert!(at("phase starting") < at("step 1: 10% on green"), "{s}");
    // Contract only once the stable colour is gone.
    assert!(
        at("stopped blue") < at("migrations contract succeeded"),
        "{s}"
    );
    let migrations = s["migrations"].as_str().unwrap();
    assert!(
        migrations.contains("expand succeeded") && migrations.contains("contract succeeded"),
        "{s}"
    );
    db.assert_migrated(&id);
    eprintln!(
        "canary with migrations: expand at event {}, first step at {}, contract at {}; {} served, {} failed",
        at("migrations expand succeeded"),
        at("step 1: 10% on green"),
        at("migrations contract succeeded"),
        stats.ok,
        stats.failed
    );
}
