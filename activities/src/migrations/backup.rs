//! Backups before a migration run, and the restore that undoes a failed one.
//!
//! - The backup is `pg_dump --format=custom`, uploaded in parts; every part is heartbeated so a
//!   retry after a crash resumes the same upload, and the object is read back (size, SHA-256).

use super::{connect, db_err, dsn};
use crate::error::Failure;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use proto::{BackupResult, MigrateRequest, RestoreRequest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Fault hook for tests, named as such: sleep this long after each uploaded part (so a test can
/// kill the worker in the middle of an upload).
pub const FAULT_UPLOAD_PART_DELAY_MS: &str = "CUTOVER_FAULT_UPLOAD_PART_DELAY_MS";

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
