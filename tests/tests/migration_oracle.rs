//! The lock oracle: every case of the migration corpus (`migrate/tests/corpus/`) applied to a
//! real PostgreSQL 15 by cutover's own runner (`activities::migrations::apply`: the same
//! transaction, `SET LOCAL` timeouts and `-- no-transaction` handling as `cutover migrate run`),
//! on a fresh copy of a fixture database of 0.05 to 3 million rows per table, while fifteen
//! sessions run the previous release's reads and writes against every table.
//!
//! Measured per case: how long the sessions waited for locks (each runs with lock_timeout
//! 20 ms and retries at once, so a wait is timed from its first refused attempt to the first
//! answer), whether a table was rewritten (its relfilenode changed and it still has rows), and
//! whether the previous release's queries still work afterwards on a new connection. The
//! measurement must give the case's label; the check's verdict against the measurement is
//! printed as a confusion matrix (`cargo test -p tests --test migration_oracle --
//! --nocapture`). `migrate/tests/corpus.rs` holds the check to the same labels without a server.

use migrate::corpus::{self, Case, Outcome};
use proto::{ApplyRequest, MigrateRequest, MigrationFile};
use sqlx::{Connection, PgConnection, Row};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::db::Postgres;
use testkit::scratch_dir;

const URL_ENV: &str = "CUTOVER_ORACLE_DATABASE_URL";
/// A wait this long or longer counts as blocking. Under it: a catalog lock held for the moment a
/// transactional file takes to commit (up to 54 ms seen under CI load). Blocking cases wait for
/// a scan of a table, so the fixture's tables are sized for it: at 1.5 million rows a CI run on
/// this machine scanned fills under a domain's lock in 99 ms; at 3 million the shortest blocking
/// waits measured were 165 to 170 ms (ledger.entries, which stays at 300 000 rows).
const BLOCKED: Duration = Duration::from_millis(100);

fn corpus_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .parent()
    .unwrap()
    .join("migrate/tests/corpus")
}

/// Which rows a session's query names.
/// Which rows a writer of the previous release touches. The writers of tables that whole-table
/// statements lock row by row pick rows near the start of the table, which such a statement
/// locks first: the one writer then waits for nearly all of it. Spread over the table, it met
/// the locks anywhere from early to late, and the same case measured very different waits from
/// run to run (a DELETE of every entry running 182 ms: 96 ms; update-every-row: 255 ms, then
/// 129 ms; update-batch-too-large: 968 ms, then 143 ms).
#[derive(Clone, Copy)]
enum Rows {
    /// 1 to 10 in turn (rows every table has).
    First,
    /// A random order with status 'new' (every tenth) among the first 50 000: the rows partial
    /// backfills touch first (a batch of ids 1 to 100 000, a scan for 'new' orders).
    NewOrder,
    /// A random account among the first 5 000 (a tenth).
    Account,
    /// A random fill with qty over 90 (ids ending in 90 to 99).
    BigFill,
    /// A random ledger entry of a 'new' order (every tenth) in the first tenth of the table.
    Entry,
}

impl Rows {
    fn pick(self, n: u64, rng: &mut u64) -> u64 {
        // xorshift64: repeatable per session, spread over the table.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let r = *rng;
        match self {
            Rows::First => n % 10 + 1,
            Rows::NewOrder => 10 * (1 + r % 5_000),
            Rows::Account => 1 + r % 5_000,
            Rows::BigFill => 100 * (r % 15_000) + 90 + (r >> 32) % 10,
            Rows::Entry => 10 * (1 + r % 3_000),
        }
    }
}

/// The previous release's queries: (what, SQL with `{k}` for the row, which rows, reads a row).
/// Readers read rows every table has; writers insert new rows and update rows spread over the
/// table, among them the rows the corpus's backfills touch. The final check after the
/// migration runs each once with k = 4 (40 for the orders and entries it updates).
const OLD_RELEASE: &[(&str, &str, Rows, bool)] = &[
    (
        "read orders",
        "SELECT id, account_id, symbol, side, qty, price, status, note, venue, ref, created_at FROM orders WHERE id = {k}",
        Rows::First,
        true,
    ),
    (
        "read accounts",
        "SELECT id, name, region, created_at FROM accounts WHERE id = {k}",
        Rows::First,
        true,
    ),
    (
        "read fills",
        "SELECT id, order_id, qty, filled_at FROM fills WHERE id = {k}",
        Rows::First,
        true,
    ),
    (
        "read ledger.entries",
        "SELECT id, order_id, amount, memo FROM ledger.entries WHERE id = {k}",
        Rows::First,
        true,
    ),
    (
        "read ticks",
        "SELECT id, seq, symbol, px FROM ticks WHERE id = {k}",
        Rows::First,
        true,
    ),
    (
        "read audit_log",
        "SELECT id, at, event FROM audit_log WHERE id = {k}",
        Rows::First,
        true,
    ),
    (
        "read open_orders",
        "SELECT id, symbol FROM open_orders WHERE id = {k} * 10",
        Rows::First,
        true,
    ),
    (
        "insert orders",
        "INSERT INTO orders (account_id, symbol, side, qty, price, note) VALUES ({k}, 'SYM7', 'buy', 5, 10.5, 'old release')",
        Rows::First,
        false,
    ),
    (
        "update orders",
        "UPDATE orders SET note = 'touched', status = 'new' WHERE id = {k}",
        Rows::NewOrder,
        false,
    ),
    (
        "update accounts",
        "UPDATE accounts SET name = 'acct' WHERE id = {k}",
        Rows::Account,
        false,
    ),
    (
        "insert fills",
        "INSERT INTO fills (order_id, qty) VALUES ({k}, 3)",
        Rows::First,
        false,
    ),
    (
        "update fills",
        "UPDATE fills SET filled_at = now() WHERE id = {k}",
        Rows::BigFill,
        false,
    ),
    (
        "insert ledger.entries",
        "INSERT INTO ledger.entries (order_id, amount) VALUES ({k}, 1.00)",
        Rows::First,
        false,
    ),
    (
        "update ledger.entries",
        "UPDATE ledger.entries SET memo = 'seen' WHERE id = {k}",
        Rows::Entry,
        false,
    ),
    (
        "insert audit_log",
        "INSERT INTO audit_log (event) VALUES ('old release')",
        Rows::First,
        false,
    ),
];

fn sql(q: &str, k: u64) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(q.replace("{k}", &k.to_string()))
}

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(&'static str, Duration)>>,
}

/// One session per old-release query, each in a loop until stopped: the longest lock wait.
async fn start_load(url: &str) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, (what, q, rows, _)) in OLD_RELEASE.iter().enumerate() {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql("SET lock_timeout = '20ms'; SET statement_timeout = '10s'; SET application_name = 'old-release'")
            .execute(&mut conn)
            .await
            .unwrap();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut longest = Duration::ZERO;
            let mut waiting: Option<Instant> = None;
            let mut n: u64 = 0;
            let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1);
            let mut k = rows.pick(n, &mut rng);
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                if stopping && waiting.is_none() {
                    break;
                }
                let t0 = Instant::now();
                match sqlx::raw_sql(sql(q, k)).execute(&mut conn).await {
                    Ok(_) => {
                        if let Some(s) = waiting.take() {
                            longest = longest.max(s.elapsed());
                        }
                        n += 1;
                        k = rows.pick(n, &mut rng);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                        waiting.get_or_insert(t0);
                        if stopping
                            && waiting.is_some_and(|w| w.elapsed() > Duration::from_secs(30))
                        {
                            break;
                        }
                    }
                    // The schema changed under the old release: measured afterwards.
                    Err(_) => {
                        if let Some(s) = waiting.take() {
                            longest = longest.max(s.elapsed());
                        }
                        if stopping {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (*what, longest)
        }));
    }
    Load { stop, tasks }
}

impl Load {
    async fn finish(self) -> Vec<(&'static str, Duration)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}

fn file(m: &migrate::Migration) -> MigrationFile {
    MigrationFile {
        version: m.version,
        name: m.name.clone(),
        file: m.file.clone(),
        up_sql: m.up_sql.clone(),
        down_sql: m.down_sql.clone(),
        checksum: m.checksum.clone(),
        contract: m.contract,
        no_transaction: m.no_transaction,
    }
}

/// cutover's runner, as `cutover migrate run` applies a file.
async fn apply(files: &[migrate::Migration], version: i64) -> Result<(), String> {
    apply_with(files, version, 60_000).await
}

async fn apply_with(
    files: &[migrate::Migration],
    version: i64,
    statement_timeout_ms: u64,
) -> Result<(), String> {
    let req = ApplyRequest {
        migrate: Some(MigrateRequest {
            environment: "oracle".into(),
            deployment_id: "oracle".into(),
            requested_by: "oracle".into(),
            database_url_env: URL_ENV.into(),
            migrations: files.iter().map(file).collect(),
            phase: "all".into(),
            lock_timeout_ms: 2000,
            statement_timeout_ms,
            ..Default::default()
        }),
        version,
    };
    activities::migrations::apply(&req, &mut |_| {})
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Each table's relfilenode and row estimate.
async fn relfilenodes(conn: &mut PgConnection) -> BTreeMap<String, (i64, f64)> {
    sqlx::query(
        "SELECT n.nspname || '.' || c.relname, c.relfilenode::bigint, c.reltuples::float8 FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND n.nspname IN ('public', 'ledger')",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>(0), (r.get::<i64, _>(1), r.get::<f64, _>(2))))
    .collect()
}

/// The previous release's queries once each, on a new connection: what fails.
async fn old_release_breaks(url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let mut broken = Vec::new();
    for (what, q, rows, reads) in OLD_RELEASE {
        let k = match rows {
            Rows::NewOrder | Rows::Entry => 40,
            Rows::BigFill => 94,
            _ => 4,
        };
        match sqlx::query(sql(q, k)).fetch_all(&mut conn).await {
            Ok(rows) if *reads && rows.is_empty() => broken.push(format!("{what}: row gone")),
            Ok(_) => {}
            Err(e) => broken.push(format!("{what}: {e}")),
        }
    }
    broken
}

struct Measured {
    outcome: Outcome,
    blocked: Duration,
    blocked_by: &'static str,
    rewritten: Vec<String>,
    broken: Vec<String>,
    error: Option<String>,
    took: Duration,
}

/// A fresh copy of the fixture as database `oracle`.
async fn fresh(admin: &mut PgConnection) {
    sqlx::raw_sql("DROP DATABASE IF EXISTS oracle WITH (FORCE)")
        .execute(&mut *admin)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE DATABASE oracle TEMPLATE fixture")
        .execute(&mut *admin)
        .await
        .unwrap();
}

async fn measure(
    admin: &mut PgConnection,
    url: &str,
    case: &Case,
    fixture: &migrate::Migration,
) -> Measured {
    fresh(admin).await;
    let mut files = vec![fixture.clone()];
    files.extend(case.earlier.iter().cloned());
    files.push(case.migration.clone());
    for e in &case.earlier {
        apply(&files, e.version)
            .await
            .unwrap_or_else(|err| panic!("{}: earlier file {}: {err}", case.name, e.file));
    }
    let mut conn = PgConnection::connect(url).await.unwrap();
    let before = relfilenodes(&mut conn).await;
    let load = start_load(url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let result = apply(&files, case.migration.version).await;
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waits = load.finish().await;
    let after = relfilenodes(&mut conn).await;
    let mut rewritten = Vec::new();
    for (t, (node, _)) in &after {
        let Some((was, rows)) = before.get(t) else {
            continue;
        };
        if was != node {
            // A new relfilenode holding the rows: a rewrite (TRUNCATE's new file is empty).
            let now: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or(0);
            if now as f64 >= rows / 2.0 {
                rewritten.push(t.clone());
            }
        }
    }
    drop(conn);
    let broken = old_release_breaks(url).await;
    let (blocked_by, blocked) = waits
        .iter()
        .max_by_key(|(_, d)| *d)
        .copied()
        .unwrap_or(("", Duration::ZERO));
    let error = result.err();
    let outcome = if error.is_some() {
        Outcome::Fails
    } else if !rewritten.is_empty() {
        Outcome::Rewrites
    } else if blocked >= BLOCKED {
        Outcome::Blocks
    } else if !broken.is_empty() {
        Outcome::Breaks
    } else {
        Outcome::Safe
    };
    Measured {
        outcome,
        blocked,
        blocked_by,
        rewritten,
        broken,
        error,
        took,
    }
}

#[test]
fn every_corpus_label_is_what_postgres_does() {
    // cutover's runner reads the database URL from the environment variable the request names:
    // the measurement runs in a child process of this test binary, started with it set.
    if let Ok(url) = std::env::var(URL_ENV) {
        return oracle(&url);
    }
    let dir = scratch_dir("migration-oracle");
    let pg = Postgres::start(&dir);
    pg.psql("postgres", "ALTER SYSTEM SET timezone = 'UTC'");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "every_corpus_label_is_what_postgres_does",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            URL_ENV,
            format!("postgres://postgres@127.0.0.1:{}/oracle", pg.port),
        )
        .status()
        .unwrap();
    assert!(status.success(), "the oracle failed: its output is above");
}

fn oracle(url: &str) {
    let admin_url = url.replace("/oracle", "/postgres");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases = corpus::load(&corpus_dir()).unwrap();
    let fixture = corpus::fixture(&corpus_dir());
    let started = Instant::now();
    rt.block_on(async {
        // The fixture: its schema through the runner (recorded as version 1) and its rows, in
        // `oracle`, which then becomes the template `fixture`.
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        for drop in ["DROP DATABASE IF EXISTS oracle WITH (FORCE)", "DROP DATABASE IF EXISTS fixture"] {
            sqlx::raw_sql(drop).execute(&mut admin).await.unwrap();
        }
        sqlx::raw_sql("CREATE DATABASE oracle").execute(&mut admin).await.unwrap();
        apply(std::slice::from_ref(&fixture), 1).await.unwrap();
        let mut conn = PgConnection::connect(url).await.unwrap();
        let data = std::fs::read_to_string(corpus_dir().join("fixture-data.sql")).unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(data)).execute(&mut conn).await.unwrap();
        sqlx::raw_sql("VACUUM ANALYZE").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        sqlx::raw_sql("ALTER DATABASE oracle RENAME TO fixture").execute(&mut admin).await.unwrap();
        println!("fixture loaded in {:.1} s", started.elapsed().as_secs_f64());
        let mut wrong = Vec::new();
        let mut matrix: BTreeMap<(Outcome, &str), usize> = BTreeMap::new();
        println!(
            "{:<58} {:<9} {:<9} {:>9} {:<22} {:<7} {:>7}",
            "case", "label", "measured", "blocked", "longest wait", "rewrite", "ran"
        );
        for case in &cases {
            let m = measure(&mut admin, url, case, &fixture).await;
            println!(
                "{:<58} {:<9} {:<9} {:>6} ms {:<22} {:<7} {:>4} ms{}{}",
                case.name,
                case.expect.name(),
                m.outcome.name(),
                m.blocked.as_millis(),
                m.blocked_by,
                if m.rewritten.is_empty() { "no" } else { "yes" },
                m.took.as_millis(),
                m.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default(),
                if m.broken.is_empty() { String::new() } else { format!("  old release: {}", m.broken.join("; ")) },
            );
            // The check's verdict on the same files, against what was measured.
            let mut all = vec![fixture.clone()];
            all.extend(case.earlier.iter().cloned());
            all.push(case.migration.clone());
            let report = migrate::check_migrations(&all);
            let own: Vec<_> = report.findings.iter().filter(|f| f.file == case.migration.file).collect();
            let verdict = if own.iter().any(|f| f.blocking && f.class == migrate::Class::Unsafe) {
                "unsafe"
            } else if own.iter().any(|f| f.class == migrate::Class::Contract && f.severity == migrate::Severity::Error) {
                "contract"
            } else {
                "passes"
            };
            *matrix.entry((m.outcome, verdict)).or_default() += 1;
            if m.outcome != case.expect {
                wrong.push(format!(
                    "{}: labelled {}, measured {} (blocked {} ms by {}, rewritten {:?}, error {:?}, old release {:?})",
                    case.name,
                    case.expect.name(),
                    m.outcome.name(),
                    m.blocked.as_millis(),
                    m.blocked_by,
                    m.rewritten,
                    m.error,
                    m.broken
                ));
            }
        }
        println!(
            "\noracle: {} cases in {:.0} s; rows: measured outcome, columns: the check's verdict",
            cases.len(),
            started.elapsed().as_secs_f64()
        );
        println!("{:<10} {:>8} {:>9} {:>7}", "", "passes", "contract", "unsafe");
        for o in Outcome::ALL {
            println!(
                "{:<10} {:>8} {:>9} {:>7}",
                o.name(),
                matrix.get(&(o, "passes")).unwrap_or(&0),
                matrix.get(&(o, "contract")).unwrap_or(&0),
                matrix.get(&(o, "unsafe")).unwrap_or(&0)
            );
        }
        println!("labels the measurement contradicts: {}", wrong.len());
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));

        // The runner's statement_timeout (here 50 ms) bounds a transactional index build, but
        // never cancels a CONCURRENTLY build (which would leave an INVALID index).
        fresh(&mut admin).await;
        let plain = migrate::files::migration(2, "plain", "CREATE INDEX orders_symbol ON orders (symbol);\n".into(), String::new());
        let cic = migrate::files::migration(3, "cic", "-- no-transaction\nCREATE INDEX CONCURRENTLY orders_symbol ON orders (symbol);\n".into(), String::new());
        let files = [fixture.clone(), plain, cic];
        let err = apply_with(&files, 2, 50).await.expect_err("a 50 ms statement_timeout cancels the plain build");
        assert!(err.contains("statement timeout"), "{err}");
        apply_with(&files, 3, 50).await.expect("the CONCURRENTLY build runs without the 50 ms timeout");
        let mut conn = PgConnection::connect(url).await.unwrap();
        let valid: bool = sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_symbol'::regclass")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(valid);
        println!("statement_timeout 50 ms: plain CREATE INDEX cancelled ({err}); CREATE INDEX CONCURRENTLY built, valid");
    });
}
