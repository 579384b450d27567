//! Database migrations against PostgreSQL (sqlx), backups with pg_dump to S3 (aws-sdk-s3).
//!
//! - The DSN is read from the worker's environment variable named in the request: it never
//!   travels in a payload, an error or a log line (errors name the variable, not the value).
//!
//! Layout: `runner` (plan, check, apply, revert, verify) and `backup` (pg_dump to S3 in parts,
//! read-back, restore); the connection they share is here.

mod backup;
mod runner;

pub use backup::{FAULT_UPLOAD_PART_DELAY_MS, UploadProgress, backup, restore, s3_client};
pub use runner::{apply, check, phase_files, plan, revert, verify};

use crate::error::Failure;
use proto::MigrateRequest;
use sqlx::{Connection, PgConnection};

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
