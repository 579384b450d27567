//! A throwaway PostgreSQL server (Debian `postgresql`) and an S3-compatible server
//! (`s3s-fs`, built by scripts/s3-build.sh), both real, on 127.0.0.1, per test.

use crate::{die_with_parent, free_port, wait_until};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// The server binaries of the newest PostgreSQL Debian installed (`/usr/lib/postgresql/<major>/bin`,
/// 15 on Debian 12, 16 on Ubuntu 24.04), or `CUTOVER_PG_BIN`.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("CUTOVER_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            e.path()
                .join("bin/initdb")
                .exists()
                .then(|| (major, e.path()))
        })
        .max();
    match newest {
        Some((_, dir)) => dir.join("bin"),
        None => panic!(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin: run scripts/install-tools.sh \
             (Debian postgresql) or set CUTOVER_PG_BIN"
        ),
    }
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!("no postgres user: install Debian postgresql (scripts/install-tools.sh)")
            })
    };
    (id("-u"), id("-g"))
}

pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub url: String,
}

impl Postgres {
    /// initdb (as the postgres user, trust auth) and the server in the foreground as our child.
    pub fn start(dir: &Path) -> Self {
        let (uid, gid) = postgres_ids();
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data).unwrap();
        let chown = |p: &Path| {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(p)
                .status()
                .unwrap()
        };
        chown(dir);
        let out = Command::new(pg_bin().join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .uid(uid)
            .gid(gid)
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut pg = Self {
            child: None,
            port,
            dir: data,
            url: format!("postgres://postgres@127.0.0.1:{port}/jts"),
        };
        pg.spawn();
        pg.psql("postgres", "CREATE DATABASE jts");
        pg
    }

    fn spawn(&mut self) {
        let (uid, gid) = postgres_ids();
        let log = std::fs::File::create(self.dir.parent().unwrap().join("postgres.log")).unwrap();
        let mut cmd = Command::new(pg_bin().join("postgres"));
        cmd.arg("-D")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ])
            .uid(uid)
            .gid(gid)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // uid/gid change first, then the parent-death signal (a uid change would clear it).
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("postgres starts"));
        let port = self.port;
        wait_until(
            "postgres accepts connections",
            Duration::from_secs(30),
            || {
                Command::new(pg_bin().join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
    }

    /// Runs SQL with psql; returns stdout (unaligned, tuples only). Panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The schema of the jts database as pg_dump prints it (for before/after comparisons).
    pub fn schema_dump(&self) -> String {
        let out = Command::new("pg_dump")
            .args([
                "--schema-only",
                "--no-owner",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "jts",
            ])
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                !l.starts_with("--")
                    && !l.starts_with("\\restrict")
                    && !l.starts_with("\\unrestrict")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where scripts/s3-build.sh put s3s-fs (CUTOVER_S3S_FS overrides).
pub fn s3s_fs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CUTOVER_S3S_FS") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    cache.join("cutover-testbin/s3s-fs-0.14.1/bin/s3s-fs")
}

pub struct S3 {
    child: Option<Child>,
    pub endpoint: String,
    pub root: PathBuf,
    pub bucket: String,
}

pub const S3_ACCESS_KEY: &str = "cutover-test";
pub const S3_SECRET_KEY: &str = "cutover-test-secret";

impl S3 {
    /// s3s-fs on a free port, with one bucket.
    pub fn start(dir: &Path, bucket: &str) -> Self {
        let bin = s3s_fs_bin();
        assert!(
            bin.exists(),
            "{} is missing: run scripts/s3-build.sh",
            bin.display()
        );
        let root = dir.join("s3");
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("s3s-fs.log")).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            S3_ACCESS_KEY,
            "--secret-key",
            S3_SECRET_KEY,
        ])
        .arg(&root)
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("s3s-fs starts");
        wait_until("s3s-fs listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            bucket: bucket.to_owned(),
        }
    }

    /// The AWS_* environment a worker needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
        ]
    }

    /// Objects stored under the bucket (path relative to it, size).
    pub fn objects(&self) -> Vec<(String, u64)> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    let rel = p.strip_prefix(base).unwrap().display().to_string();
                    out.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
                }
            }
        }
        let mut out = Vec::new();
        let base = self.root.join(&self.bucket);
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What migrations run against: PostgreSQL, an S3 bucket `jts-backups`, and in `dir` a
/// `cutover.toml` whose `staging` environment migrates that database from `migrations` (its
/// failed runs undone by `on_failure`: down | restore).
pub struct MigrationWorld {
    pub pg: Postgres,
    pub s3: S3,
    pub config: PathBuf,
}

impl MigrationWorld {
    pub fn start(dir: &Path, migrations: &Path, on_failure: &str) -> Self {
        let pg = Postgres::start(dir);
        let s3 = S3::start(dir, "jts-backups");
        let config = dir.join("cutover.toml");
        std::fs::write(
            &config,
            format!(
                r#"[services.api-gateway]
smoke = ["/api/market/status"]

[environments.staging]
asserted_identities = true
platform = {{ kind = "local", admin_url = "http://127.0.0.1:1" }}
database = {{ url_env = "JTS_DATABASE_URL", migrations = "{m}", bucket = "jts-backups", prefix = "cutover/", path_style = true, part_size_mb = 5, on_failure = "{on_failure}", lock_timeout_ms = 2000, statement_timeout_ms = 20000 }}
"#,
                m = migrations.display()
            ),
        )
        .unwrap();
        Self { pg, s3, config }
    }

    /// The environment a worker needs: the S3 server's and the database URL.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let mut envs = self.s3.env();
        envs.push(("JTS_DATABASE_URL".into(), self.pg.url.clone()));
        envs
    }
}
