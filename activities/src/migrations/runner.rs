//! The migration runner: plan, the safety check, apply, revert and verify.
//!
//! - `schema_migrations` records each applied file: version, name, checksum, deployment, time.
//!   `SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1` is the applied version.
//! - Each migration runs in its own transaction with `lock_timeout` and `statement_timeout`,
//!   under a session advisory lock, and records itself in the same transaction: a crash either
//!   commits both or neither, so a retry never applies a file twice or half.
//! - A `-- no-transaction` file runs statement by statement with session timeouts; a
//!   CONCURRENTLY index build runs without `statement_timeout` unless the file sets one.

use super::{connect, db_err};
use crate::error::Failure;
use proto::{
    ApplyRequest, ApplyResult, CheckSummary, MigratePlan, MigrateRequest, MigrationFile,
    VerifyReport,
};
use sqlx::{Connection, PgConnection, Row};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Advisory lock key of cutover migrations (one runner per database at a time).
const LOCK_KEY: i64 = 0x0063_7574_6f76_6572; // "cutover"

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version bigint PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    deployment_id text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms bigint NOT NULL DEFAULT 0
)";

/// SQL that is not a literal: migration files (reviewed, and checked by `cutover migrate
/// check`), and statements built here from numbers and index names read from the catalog.
fn audited(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

async fn applied_rows(conn: &mut PgConnection) -> Result<BTreeMap<i64, String>, Failure> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| db_err("read schema_migrations", e))?;
    if !exists {
        return Ok(BTreeMap::new());
    }
    let rows = sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_err("read schema_migrations", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
        .collect())
}

/// The files of the request's phase.
pub fn phase_files(req: &MigrateRequest) -> Vec<&MigrationFile> {
    req.migrations
        .iter()
        .filter(|m| match req.phase.as_str() {
            "expand" => !m.contract,
            "contract" => m.contract,
            _ => true,
        })
        .collect()
}

/// Current version, what this phase would apply, checksums of what is applied unchanged, and
/// no session that would block the locks.
pub async fn plan(req: &MigrateRequest) -> Result<MigratePlan, Failure> {
    let mut conn = connect(req).await?;
    let applied = applied_rows(&mut conn).await?;
    let mut changed = Vec::new();
    for m in &req.migrations {
        if let Some(sum) = applied.get(&m.version)
            && sum != &m.checksum
        {
            changed.push(format!(
                "{} was applied with checksum {} but the file now has {}",
                m.file,
                &sum[..12.min(sum.len())],
                &m.checksum[..12.min(m.checksum.len())]
            ));
        }
    }
    let known: Vec<i64> = req.migrations.iter().map(|m| m.version).collect();
    for v in applied.keys() {
        if !known.contains(v) {
            changed.push(format!(
                "version {v} is applied in the database but has no file in this release"
            ));
        }
    }
    if !changed.is_empty() {
        return Err(Failure::InvalidInput(format!(
            "applied migrations changed: {}",
            changed.join("; ")
        )));
    }
    let pending: Vec<i64> = phase_files(req)
        .into_iter()
        .filter(|m| !applied.contains_key(&m.version))
        .map(|m| m.version)
        .collect();
    // An expand run must not leave an earlier contract file behind (versions are an order).
    if req.phase == "contract" {
        let missing: Vec<i64> = req
            .migrations
            .iter()
            .filter(|m| !m.contract && !applied.contains_key(&m.version))
            .map(|m| m.version)
            .collect();
        if !missing.is_empty() {
            return Err(Failure::InvalidInput(format!(
                "contract phase before expand: versions {missing:?} are not applied yet"
            )));
        }
    }
    let blockers: Vec<String> = sqlx::query(
        "SELECT pid, coalesce(application_name, ''), state,
                extract(epoch FROM now() - coalesce(xact_start, query_start))::bigint
           FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND (state = 'idle in transaction'
                 OR (state = 'active' AND now() - xact_start > interval '60 seconds'))",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| db_err("read pg_stat_activity", e))?
    .iter()
    .map(|r| {
        format!(
            "pid {} ({}) {} for {} s",
            r.get::<i32, _>(0),
            r.get::<String, _>(1),
            r.get::<Option<String>, _>(2).unwrap_or_default(),
            r.get::<Option<i64>, _>(3).unwrap_or_default()
        )
    })
    .collect();
    let current = applied.keys().next_back().copied().unwrap_or(0);
    Ok(MigratePlan {
        current_version: current,
        pending,
        applied: applied.keys().copied().collect(),
        blockers,
    })
}

/// The safety check over the files of the request's phase (and the ones before them, which
/// the check needs to follow validated constraints).
pub fn check(req: &MigrateRequest) -> CheckSummary {
    let files: Vec<migrate::Migration> = req
        .migrations
        .iter()
        .map(|m| {
            migrate::files::migration(m.version, &m.name, m.up_sql.clone(), m.down_sql.clone())
        })
        .collect();
    let report = migrate::check_migrations(&files);
    CheckSummary {
        ok: report.ok,
        blocking: report.findings.iter().filter(|f| f.blocking).count() as u32,
        text: report.text(),
    }
}

async fn lock(conn: &mut PgConnection, ctx_beat: &mut impl FnMut(&str)) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_err("advisory lock", e))?;
        if got {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::Unavailable(
                "another migration run holds the migration lock".into(),
            ));
        }
        ctx_beat("waiting for the migration lock");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn unlock(conn: &mut PgConnection) {
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await;
}

fn file(req: &MigrateRequest, version: i64) -> Result<&MigrationFile, Failure> {
    req.migrations
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| Failure::InvalidInput(format!("no migration file for version {version}")))
}

fn timeouts(req: &MigrateRequest, local: bool) -> String {
    let scope = if local { "LOCAL " } else { "" };
    format!(
        "SET {scope}lock_timeout = '{}ms'; SET {scope}statement_timeout = '{}ms'",
        req.lock_timeout_ms.max(1),
        req.statement_timeout_ms
    )
}

/// Whether a statement builds an index CONCURRENTLY (CREATE INDEX, REINDEX), or sets
/// statement_timeout.
fn concurrently_or_timeout(stmt: &str) -> (bool, bool) {
    let Ok(parsed) = pg_query::parse(stmt, pg_query::ParserOptions::DEFAULT) else {
        return (false, false);
    };
    let node = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .and_then(|n| n.node.as_ref());
    match node {
        Some(pg_query::NodeEnum::IndexStmt(i)) => (i.concurrent, false),
        Some(pg_query::NodeEnum::ReindexStmt(r)) => (
            r.params.iter().any(|p| {
                matches!(&p.node, Some(pg_query::NodeEnum::DefElem(d)) if d.defname == "concurrently")
            }),
            false,
        ),
        Some(pg_query::NodeEnum::VariableSetStmt(v)) => (false, v.name == "statement_timeout"),
        _ => (false, false),
    }
}

/// Index names a file creates (to clean up what a crashed CONCURRENTLY build left invalid).
fn created_indexes(sql: &str) -> Vec<String> {
    let Ok(parsed) = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) else {
        return Vec::new();
    };
    parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|s| match s.stmt.as_ref().and_then(|n| n.node.as_ref()) {
            Some(pg_query::NodeEnum::IndexStmt(i)) if !i.idxname.is_empty() => {
                Some(i.idxname.clone())
            }
            _ => None,
        })
        .collect()
}

/// Applies one migration, exactly once.
pub async fn apply(
    req: &ApplyRequest,
    beat: &mut impl FnMut(&str),
) -> Result<ApplyResult, Failure> {
    let m_req = req
        .migrate
        .as_ref()
        .ok_or_else(|| Failure::InvalidInput("apply without its migration run".into()))?;
    let m = file(m_req, req.version)?;
    let mut conn = connect(m_req).await?;
    sqlx::raw_sql(CREATE_TABLE)
        .execute(&mut conn)
        .await
        .map_err(|e| db_err("create schema_migrations", e))?;
    lock(&mut conn, beat).await?;
    let result = apply_locked(&mut conn, m_req, m).await;
    unlock(&mut conn).await;
    result
}

async fn apply_locked(
    conn: &mut PgConnection,
    req: &MigrateRequest,
    m: &MigrationFile,
) -> Result<ApplyResult, Failure> {
    let recorded: Option<String> =
        sqlx::query_scalar("SELECT checksum FROM schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_err("read schema_migrations", e))?;
    if let Some(sum) = recorded {
        if sum != m.checksum {
            return Err(Failure::InvalidInput(format!(
                "{} is recorded with another checksum",
                m.file
            )));
        }
        return Ok(ApplyResult {
            version: m.version,
            already_applied: true,
            duration_ms: 0,
        });
    }
    let started = Instant::now();
    let record = "INSERT INTO schema_migrations (version, name, checksum, deployment_id, duration_ms) VALUES ($1, $2, $3, $4, $5)";
    if m.no_transaction {
        // Statement by statement, outside a transaction (CONCURRENTLY). A previous attempt
        // that died mid-build leaves an INVALID index behind: drop it first.
        for idx in created_indexes(&m.up_sql) {
            let invalid: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                 WHERE c.relname = $1 AND NOT i.indisvalid)",
            )
            .bind(&idx)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_err("read pg_index", e))?;
            if invalid {
                sqlx::raw_sql(audited(format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS \"{}\"",
                    idx.replace('"', "")
                )))
                .execute(&mut *conn)
                .await
                .map_err(|e| db_err("drop an invalid index", e))?;
            }
        }
    }
    let record = |elapsed_ms: i64| {
        sqlx::query(record)
            .bind(m.version)
            .bind(&m.name)
            .bind(&m.checksum)
            .bind(&req.deployment_id)
            .bind(elapsed_ms)
    };
    run_file(
        conn,
        req,
        &m.up_sql,
        m.no_transaction,
        &m.file,
        started,
        record,
    )
    .await?;
    Ok(ApplyResult {
        version: m.version,
        already_applied: false,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Runs one file's SQL and then its bookkeeping statement (given the milliseconds since
/// `started`): in one transaction with `SET LOCAL` timeouts, or (`-- no-transaction`) statement
/// by statement with session timeouts.
async fn run_file<'q>(
    conn: &mut PgConnection,
    req: &MigrateRequest,
    sql: &str,
    no_transaction: bool,
    what: &str,
    started: Instant,
    bookkeeping: impl FnOnce(i64) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<(), Failure> {
    let elapsed = || started.elapsed().as_millis() as i64;
    if no_transaction {
        sqlx::raw_sql(audited(timeouts(req, false)))
            .execute(&mut *conn)
            .await
            .map_err(|e| db_err("timeouts", e))?;
        let statements = pg_query::split_with_parser(sql)
            .map_err(|e| Failure::InvalidInput(format!("{what}: {e}")))?;
        // A CONCURRENTLY build must not be cancelled by the configured statement_timeout (it
        // would leave an INVALID index): it runs without one, unless the file sets its own.
        let mut file_sets_timeout = false;
        for stmt in statements {
            let (concurrently, sets_timeout) = concurrently_or_timeout(stmt);
            file_sets_timeout |= sets_timeout;
            let unbounded = concurrently && !file_sets_timeout;
            if unbounded {
                sqlx::raw_sql("SET statement_timeout = 0")
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| db_err("timeouts", e))?;
            }
            sqlx::raw_sql(audited(stmt.to_owned()))
                .execute(&mut *conn)
                .await
                .map_err(|e| db_err(&format!("{what} failed"), e))?;
            if unbounded {
                sqlx::raw_sql(audited(timeouts(req, false)))
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| db_err("timeouts", e))?;
            }
        }
        bookkeeping(elapsed())
            .execute(&mut *conn)
            .await
            .map_err(|e| db_err("record the migration", e))?;
        return Ok(());
    }
    let mut tx = conn.begin().await.map_err(|e| db_err("begin", e))?;
    sqlx::raw_sql(audited(timeouts(req, true)))
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("timeouts", e))?;
    sqlx::raw_sql(audited(sql.to_owned()))
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err(&format!("{what} failed and was rolled back"), e))?;
    bookkeeping(elapsed())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("record the migration", e))?;
    tx.commit().await.map_err(|e| db_err("commit", e))?;
    Ok(())
}

/// Runs one migration's down file and forgets it, in one transaction; nothing when it is not
/// recorded (already reverted).
pub async fn revert(req: &ApplyRequest, beat: &mut impl FnMut(&str)) -> Result<bool, Failure> {
    let m_req = req
        .migrate
        .as_ref()
        .ok_or_else(|| Failure::InvalidInput("revert without its migration run".into()))?;
    let m = file(m_req, req.version)?;
    let mut conn = connect(m_req).await?;
    if !applied_rows(&mut conn).await?.contains_key(&m.version) {
        return Ok(false);
    }
    lock(&mut conn, beat).await?;
    let r = async {
        let down_no_tx = m
            .down_sql
            .lines()
            .take_while(|l| l.starts_with("--"))
            .any(|l| l.trim() == "-- no-transaction");
        let forget =
            |_| sqlx::query("DELETE FROM schema_migrations WHERE version = $1").bind(m.version);
        let what = format!("down of {}", m.file);
        run_file(
            &mut conn,
            m_req,
            &m.down_sql,
            down_no_tx,
            &what,
            Instant::now(),
            forget,
        )
        .await?;
        Ok::<bool, Failure>(true)
    }
    .await;
    unlock(&mut conn).await;
    r
}

/// After a run: every file of the phase recorded with its checksum; no invalid index; NOT VALID
/// constraints listed as notes.
pub async fn verify(req: &MigrateRequest) -> Result<VerifyReport, Failure> {
    let mut conn = connect(req).await?;
    let applied = applied_rows(&mut conn).await?;
    let mut problems = Vec::new();
    for m in phase_files(req) {
        match applied.get(&m.version) {
            None => problems.push(format!("{} is not recorded", m.file)),
            Some(sum) if sum != &m.checksum => {
                problems.push(format!("{} is recorded with another checksum", m.file))
            }
            _ => {}
        }
    }
    let invalid: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| db_err("read pg_index", e))?;
    for i in invalid {
        problems.push(format!(
            "index {i} is INVALID (a CONCURRENTLY build failed)"
        ));
    }
    let not_valid: Vec<String> = sqlx::query_scalar(
        "SELECT conrelid::regclass::text || '.' || conname FROM pg_constraint
          WHERE NOT convalidated AND connamespace = 'public'::regnamespace",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| db_err("read pg_constraint", e))?;
    Ok(VerifyReport {
        current_version: applied.keys().next_back().copied().unwrap_or(0),
        problems,
        notes: not_valid
            .into_iter()
            .map(|c| format!("constraint {c} is NOT VALID (validate it in a later migration)"))
            .collect(),
    })
}
