//! Database migrations against PostgreSQL (sqlx), backups with pg_dump to S3 (aws-sdk-s3).
//!
//! - The DSN is read from the worker's environment variable named in the request: it never
//!   travels in a payload, an error or a log line (errors name the variable, not the value).
//! - `schema_migrations` records each applied file: version, name, checksum, deployment, time.
//!   `SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1` is the applied version.
//! - Each migration runs in its own transaction with `lock_timeout` and `statement_timeout`,
//!   under a session advisory lock, and records itself in the same transaction: a crash either
//!   commits both or neither, so a retry never applies a file twice or half.
//! - The backup is `pg_dump --format=custom`, uploaded in parts; every part is heartbeated so a
//!   retry after a crash resumes the same upload, and the object is read back (size, SHA-256).

use crate::error::Failure;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use proto::{
    ApplyRequest, ApplyResult, BackupResult, CheckSummary, MigratePlan, MigrateRequest,
    MigrationFile, RestoreRequest, VerifyReport,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, Row};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Advisory lock key of cutover migrations (one runner per database at a time).
const LOCK_KEY: i64 = 0x0063_7574_6f76_6572; // "cutover"

/// Fault hook for tests, named as such: sleep this long after each uploaded part (so a test can
/// kill the worker in the middle of an upload).
pub const FAULT_UPLOAD_PART_DELAY_MS: &str = "CUTOVER_FAULT_UPLOAD_PART_DELAY_MS";

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

fn dsn(req: &MigrateRequest) -> Result<String, Failure> {
    if req.database_url_env.is_empty() {
        return Err(Failure::InvalidInput(
            "the environment names no database (database.url_env)".into(),
        ));
    }
    std::env::var(&req.database_url_env)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Failure::InvalidInput(format!(
                "the worker's environment variable {} (the database URL) is not set",
                req.database_url_env
            ))
        })
}

/// A sqlx error without the DSN: sqlx never prints it, but be explicit about what we show.
fn db_err(what: &str, e: sqlx::Error) -> Failure {
    match &e {
        sqlx::Error::Database(d) => Failure::MigrationFailed(format!(
            "{what}: {} (SQLSTATE {})",
            d.message(),
            d.code().unwrap_or_default()
        )),
        _ => Failure::Unavailable(format!("{what}: {e}")),
    }
}

pub async fn connect(req: &MigrateRequest) -> Result<PgConnection, Failure> {
    let url = dsn(req)?;
    let mut conn = PgConnection::connect(&url).await.map_err(|e| {
        Failure::Unavailable(format!(
            "cannot connect to the database of {} (from {}): {}",
            req.environment,
            req.database_url_env,
            match e {
                sqlx::Error::Database(d) => d.message().to_owned(),
                other => other.to_string().replace(&url, "<database url>"),
            }
        ))
    })?;
    // A worker that dies mid-statement must not leave its transaction running: the server
    // checks the client connection every second (PostgreSQL 14+).
    sqlx::raw_sql("SET client_connection_check_interval = '1s'; SET application_name = 'cutover'")
        .execute(&mut conn)
        .await
        .map_err(|e| db_err("session settings", e))?;
    Ok(conn)
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
        for stmt in statements {
            sqlx::raw_sql(audited(stmt.to_owned()))
                .execute(&mut *conn)
                .await
                .map_err(|e| db_err(&format!("{what} failed"), e))?;
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

// ---------------------------------------------------------------------------------------------
// Backups

/// What a backup attempt heartbeats, so the next attempt resumes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UploadProgress {
    pub key: String,
    pub upload_id: String,
    pub dump: String,
    pub size: u64,
    pub sha256: String,
    pub part_size: u64,
    /// (part number, ETag) of parts the server has.
    pub parts: Vec<(i32, String)>,
}

pub async fn s3_client(path_style: bool) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn s3_err(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Unavailable(format!("{what}: {e}"))
}

fn backup_key(req: &MigrateRequest) -> String {
    let b = req.backup.clone().unwrap_or_default();
    format!(
        "{}{}/{}-{}.pgdump",
        b.prefix, req.environment, req.deployment_id, req.phase
    )
}

fn dump_path(req: &MigrateRequest) -> PathBuf {
    std::env::temp_dir().join(format!(
        "cutover-backup-{}-{}-{}.pgdump",
        req.environment, req.deployment_id, req.phase
    ))
}

/// libpq environment for pg_dump / pg_restore from the DSN (the password never on a command line).
fn pg_env(url: &str) -> Result<Vec<(&'static str, String)>, Failure> {
    let u = url::Url::parse(url)
        .map_err(|_| Failure::InvalidInput("the database URL does not parse".into()))?;
    let mut env = vec![
        ("PGHOST", u.host_str().unwrap_or("localhost").to_owned()),
        ("PGPORT", u.port().unwrap_or(5432).to_string()),
        ("PGDATABASE", u.path().trim_start_matches('/').to_owned()),
    ];
    if !u.username().is_empty() {
        env.push(("PGUSER", u.username().to_owned()));
    }
    if let Some(p) = u.password() {
        env.push(("PGPASSWORD", p.to_owned()));
    }
    Ok(env)
}

async fn file_sha256(path: &std::path::Path) -> Result<(u64, String), Failure> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Failure::Unavailable(format!("read the dump: {e}")))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| Failure::Unavailable(format!("read the dump: {e}")))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex(&h.finalize())))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn pg_dump(req: &MigrateRequest, path: &std::path::Path) -> Result<(), Failure> {
    let url = dsn(req)?;
    let out = tokio::process::Command::new("pg_dump")
        .args(["--format=custom", "--no-owner", "--file"])
        .arg(path)
        .envs(pg_env(&url)?)
        .output()
        .await
        .map_err(|e| Failure::Unavailable(format!("pg_dump did not start: {e}")))?;
    if !out.status.success() {
        return Err(Failure::Unavailable(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// pg_dump, multipart upload with resumable progress, read-back verification.
pub async fn backup<F, Fut>(
    req: &MigrateRequest,
    previous: Option<UploadProgress>,
    mut beat: F,
) -> Result<BackupResult, Failure>
where
    F: FnMut(UploadProgress) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let target = req
        .backup
        .clone()
        .ok_or_else(|| Failure::InvalidInput("no backup target (database.backup)".into()))?;
    if target.bucket.is_empty() {
        return Err(Failure::InvalidInput(
            "database.backup.bucket is empty".into(),
        ));
    }
    let s3 = s3_client(target.path_style).await;
    let key = backup_key(req);
    let path = dump_path(req);
    let part_size = target.part_size_bytes.max(5 * 1024 * 1024);

    // Resume when the previous attempt's dump is still here, unchanged, and its upload open.
    let mut progress = None;
    if let Some(p) = previous.filter(|p| p.key == key && !p.upload_id.is_empty())
        && std::path::Path::new(&p.dump).exists()
    {
        let (size, sha) = file_sha256(std::path::Path::new(&p.dump)).await?;
        let listed = s3
            .list_parts()
            .bucket(&target.bucket)
            .key(&key)
            .upload_id(&p.upload_id)
            .send()
            .await;
        match listed {
            Ok(l) if size == p.size && sha == p.sha256 => {
                let parts: Vec<(i32, String)> = l
                    .parts()
                    .iter()
                    .map(|x| {
                        (
                            x.part_number().unwrap_or_default(),
                            x.e_tag().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                progress = Some(UploadProgress { parts, ..p });
            }
            _ => {
                let _ = s3
                    .abort_multipart_upload()
                    .bucket(&target.bucket)
                    .key(&key)
                    .upload_id(&p.upload_id)
                    .send()
                    .await;
            }
        }
    }
    let resumed = progress.is_some();
    let mut progress = match progress {
        Some(p) => p,
        None => {
            pg_dump(req, &path).await?;
            let (size, sha256) = file_sha256(&path).await?;
            let created = s3
                .create_multipart_upload()
                .bucket(&target.bucket)
                .key(&key)
                .metadata("sha256", &sha256)
                .metadata("deployment", &req.deployment_id)
                .send()
                .await
                .map_err(|e| {
                    s3_err(
                        "start the upload",
                        aws_sdk_s3::error::DisplayErrorContext(e),
                    )
                })?;
            UploadProgress {
                key: key.clone(),
                upload_id: created.upload_id().unwrap_or_default().to_owned(),
                dump: path.display().to_string(),
                size,
                sha256,
                part_size,
                parts: Vec::new(),
            }
        }
    };
    beat(progress.clone()).await;
    let delay = std::env::var(FAULT_UPLOAD_PART_DELAY_MS)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let total_parts = progress.size.div_ceil(progress.part_size).max(1) as i32;
    let mut f = tokio::fs::File::open(&progress.dump)
        .await
        .map_err(|e| Failure::Unavailable(format!("read the dump: {e}")))?;
    for n in 1..=total_parts {
        let len = (progress.size - (n as u64 - 1) * progress.part_size).min(progress.part_size);
        let mut buf = vec![0u8; len as usize];
        use tokio::io::AsyncSeekExt;
        f.seek(std::io::SeekFrom::Start(
            (n as u64 - 1) * progress.part_size,
        ))
        .await
        .map_err(|e| Failure::Unavailable(format!("read the dump: {e}")))?;
        f.read_exact(&mut buf)
            .await
            .map_err(|e| Failure::Unavailable(format!("read the dump: {e}")))?;
        if progress.parts.iter().any(|(p, _)| *p == n) {
            continue;
        }
        let up = s3
            .upload_part()
            .bucket(&target.bucket)
            .key(&key)
            .upload_id(&progress.upload_id)
            .part_number(n)
            .body(ByteStream::from(buf))
            .send()
            .await
            .map_err(|e| {
                s3_err(
                    &format!("upload part {n}"),
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        progress
            .parts
            .push((n, up.e_tag().unwrap_or_default().to_owned()));
        beat(progress.clone()).await;
        if let Some(ms) = delay {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    progress.parts.sort();
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(
            progress
                .parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(e).build())
                .collect(),
        ))
        .build();
    s3.complete_multipart_upload()
        .bucket(&target.bucket)
        .key(&key)
        .upload_id(&progress.upload_id)
        .multipart_upload(completed)
        .send()
        .await
        .map_err(|e| {
            s3_err(
                "complete the upload",
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
    // Read back: size from the server, then every byte through SHA-256.
    let head = s3
        .head_object()
        .bucket(&target.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| {
            s3_err(
                "read back the backup",
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
    let remote_size = head.content_length().unwrap_or(-1);
    if remote_size != progress.size as i64 {
        return Err(Failure::Unavailable(format!(
            "backup {key}: {remote_size} bytes on the server, {} dumped",
            progress.size
        )));
    }
    let obj = s3
        .get_object()
        .bucket(&target.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| {
            s3_err(
                "read back the backup",
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
    let mut body = obj.body.into_async_read();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body
            .read(&mut buf)
            .await
            .map_err(|e| Failure::Unavailable(format!("read back the backup: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let remote_sha = hex(&h.finalize());
    if remote_sha != progress.sha256 {
        return Err(Failure::Unavailable(format!(
            "backup {key}: checksum on the server {remote_sha} differs from the dump's {}",
            progress.sha256
        )));
    }
    let _ = tokio::fs::remove_file(&progress.dump).await;
    Ok(BackupResult {
        key,
        size: progress.size,
        sha256: progress.sha256,
        parts: progress.parts.len() as u32,
        resumed,
    })
}

/// Restores the database from a backup: pg_restore --clean in one transaction.
pub async fn restore(req: &RestoreRequest) -> Result<(), Failure> {
    let m = req
        .migrate
        .as_ref()
        .ok_or_else(|| Failure::InvalidInput("restore without its migration run".into()))?;
    let target = m.backup.clone().unwrap_or_default();
    let s3 = s3_client(target.path_style).await;
    let obj = s3
        .get_object()
        .bucket(&target.bucket)
        .key(&req.key)
        .send()
        .await
        .map_err(|e| {
            s3_err(
                "download the backup",
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
    let bytes = obj
        .body
        .collect()
        .await
        .map_err(|e| s3_err("download the backup", e))?
        .into_bytes();
    let path = std::env::temp_dir().join(format!("cutover-restore-{}.pgdump", m.deployment_id));
    tokio::fs::write(&path, &bytes)
        .await
        .map_err(|e| Failure::Unavailable(format!("write the backup: {e}")))?;
    let url = dsn(m)?;
    // One transaction: drop everything (including what the failed run created that the backup
    // does not know), then the backup's own SQL. Any error leaves the database as it was.
    let script = tokio::process::Command::new("pg_restore")
        .args(["--no-owner", "--no-privileges", "--file", "-"])
        .arg(&path)
        .output()
        .await
        .map_err(|e| Failure::Unavailable(format!("pg_restore did not start: {e}")))?;
    if !script.status.success() {
        return Err(Failure::MigrationFailed(format!(
            "pg_restore could not read the backup: {}",
            String::from_utf8_lossy(&script.stderr).trim()
        )));
    }
    let body: String = String::from_utf8_lossy(&script.stdout)
        .lines()
        .filter(|l| l.trim() != "CREATE SCHEMA public;")
        .collect::<Vec<_>>()
        .join("\n");
    // The schema comes back as it was: owner, comment and grants (PostgreSQL 15's public schema
    // has non-default ones a plain CREATE SCHEMA would lose).
    let mut conn = connect(m).await?;
    let recreate: Vec<String> = sqlx::query_scalar(
        "SELECT format('ALTER SCHEMA public OWNER TO %I;', n.nspowner::regrole::text)
         FROM pg_namespace n WHERE n.nspname = 'public'
         UNION ALL
         SELECT format('COMMENT ON SCHEMA public IS %L;', d.description)
         FROM pg_namespace n JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass
         WHERE n.nspname = 'public'
         UNION ALL
         SELECT 'REVOKE ALL ON SCHEMA public FROM PUBLIC;'
         UNION ALL
         SELECT format('GRANT %s ON SCHEMA public TO %s;', a.privilege_type,
                       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(a.grantee::regrole::text) END)
         FROM pg_namespace n, aclexplode(n.nspacl) a
         WHERE n.nspname = 'public' AND a.grantee <> n.nspowner",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| db_err("read the public schema's owner and grants", e))?;
    drop(conn);
    let sql_path = path.with_extension("sql");
    tokio::fs::write(
        &sql_path,
        format!(
            "DROP SCHEMA public CASCADE;\nCREATE SCHEMA public;\n{}\n{body}\n",
            recreate.join("\n")
        ),
    )
    .await
    .map_err(|e| Failure::Unavailable(format!("write the restore script: {e}")))?;
    let out = tokio::process::Command::new("psql")
        .args([
            "--no-psqlrc",
            "--quiet",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
            "--file",
        ])
        .arg(&sql_path)
        .envs(pg_env(&url)?)
        .output()
        .await
        .map_err(|e| Failure::Unavailable(format!("psql did not start: {e}")))?;
    let _ = tokio::fs::remove_file(&sql_path).await;
    let _ = tokio::fs::remove_file(&path).await;
    if !out.status.success() {
        return Err(Failure::MigrationFailed(format!(
            "restore failed (the database is unchanged): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
