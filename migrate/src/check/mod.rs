//! The safety check. Every statement is parsed by libpg_query (PostgreSQL's own parser) and
//! classified by what PostgreSQL 15 does when it runs: which lock it takes on which table, whether
//! it scans or rewrites the table or builds an index while holding it, and whether the previous
//! release's queries still work afterwards. SQL that does not parse fails the check.
//!
//! The check follows the schema through the files in order ([`schema`]): column types as
//! written, nullability, defaults, constraints and whether they are validated, indexes, views,
//! domains, functions' volatility, and which tables each file creates, all schema qualified
//! (`public` when unqualified). A transactional file holds every lock it takes until it commits,
//! so a statement that scans, rewrites, builds or backfills is judged with every lock the file
//! already holds ([`transaction`]); a `-- no-transaction` file releases them after each
//! statement.
//!
//! Findings carry a rule id, a severity (`error` fails the check, `warning` does not), the
//! lock and table, whether the table is rewritten or scanned, and an alternative that is safe
//! when followed literally. The rules, their ids and what each is grounded in are listed in
//! README.md (the "safety check" part of "Database migrations"); `migrate/tests/corpus/` holds the labelled cases
//! and `tests/tests/migration_oracle.rs` measures each on a real PostgreSQL.
//!
//! Layout: the report and the run over files are here; `schema` the model of the database the
//! files build, `statements` the rules on whole statements, `alter_table` the rules on ALTER
//! TABLE subcommands, `exprs` expressions and type names, `transaction` the locks a file holds.

mod alter_table;
mod exprs;
mod schema;
mod statements;
mod transaction;

use crate::files::Migration;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use schema::Schema;

/// The version of the JSON report (`cutover migrate check --format json`); bumped only when a
/// field changes meaning or disappears.
pub const REPORT_FORMAT: &str = "cutover.migrate.check/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Safe while the old version still runs.
    Expand,
    /// Safe only after the old colour is gone and the rollback window has closed.
    Contract,
    /// Blocks reads or writes for as long as a scan, rewrite, index build or backfill takes,
    /// breaks the live version, or cannot run as written.
    Unsafe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; does not fail the check.
    Warning,
    /// Fails the check (for a contract rule: outside a `-- cutover: contract` file).
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The file's name as on disk.
    pub file: String,
    pub line: usize,
    pub statement: String,
    pub rule: String,
    pub severity: Severity,
    pub class: Class,
    /// The table the finding is about, schema qualified (empty when none).
    pub table: String,
    /// The lock mode that blocks others, as PostgreSQL names it (`ACCESS EXCLUSIVE`, `SHARE`,
    /// ...), when the finding is about a lock.
    pub lock: Option<String>,
    /// The statement rewrites the table (a new relfilenode).
    pub rewrite: bool,
    /// The statement reads every row of the table (validation, backfill) without rewriting it.
    pub scan: bool,
    pub message: String,
    /// The safe way to get the same result.
    pub alternative: String,
    /// True when this finding makes the check fail: an error, and a contract statement in a
    /// file not marked `-- cutover: contract`.
    pub blocking: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileReport {
    pub file: String,
    pub version: i64,
    /// The file's phase: contract when marked so, else expand.
    pub phase: String,
    /// The worst class of its blocking findings (expand when none).
    pub class: Option<Class>,
    pub statements: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: String,
    pub files: Vec<FileReport>,
    pub findings: Vec<Finding>,
    pub ok: bool,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            format: REPORT_FORMAT.into(),
            files: Vec::new(),
            findings: Vec::new(),
            ok: true,
        }
    }
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let mut facts = Vec::new();
            if let Some(l) = &f.lock {
                facts.push(format!("{l} lock on {}", f.table));
            }
            if f.rewrite {
                facts.push("rewrites the table".into());
            } else if f.scan {
                facts.push("scans the table".into());
            }
            out.push_str(&format!(
                "{}:{}: {} {} [{}{}] {}\n    statement:   {}\n{}    alternative: {}\n",
                f.file,
                f.line,
                match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                match f.class {
                    Class::Unsafe => "unsafe",
                    Class::Contract => "contract",
                    Class::Expand => "expand",
                },
                f.rule,
                if f.class == Class::Contract && !f.blocking {
                    ", allowed in this contract file"
                } else {
                    ""
                },
                f.message,
                f.statement,
                if facts.is_empty() {
                    String::new()
                } else {
                    format!("    postgres:    {}\n", facts.join(", "))
                },
                f.alternative
            ));
        }
        let blocking = self.findings.iter().filter(|f| f.blocking).count();
        out.push_str(&format!(
            "{} files, {} findings, {} blocking: {}\n",
            self.files.len(),
            self.findings.len(),
            blocking,
            if self.ok { "ok" } else { "FAILED" }
        ));
        out
    }
}

pub fn check_dir(dir: &Path) -> Result<Report, crate::files::FilesError> {
    Ok(check_migrations(&crate::files::load_dir(dir)?))
}

/// Checks the files in order, each against the schema the files before it built.
pub fn check_migrations(migrations: &[Migration]) -> Report {
    check_with_schema(Schema::default(), migrations)
}

/// Checks the files in order, starting from `schema` (what is already in the database).
pub fn check_with_schema(mut schema: Schema, migrations: &[Migration]) -> Report {
    let mut report = Report::default();
    for m in migrations {
        let (findings, statements) = statements::check_file(m, &mut schema);
        let class = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.class)
            .max()
            .or(if statements > 0 {
                Some(Class::Expand)
            } else {
                None
            });
        report.files.push(FileReport {
            file: m.file.clone(),
            version: m.version,
            phase: if m.contract { "contract" } else { "expand" }.into(),
            class,
            statements,
        });
        if findings.iter().any(|f| f.blocking) {
            report.ok = false;
        }
        report.findings.extend(findings);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::migration;

    fn check(sql: &str) -> Report {
        check_migrations(&[migration(1, "t", sql.to_owned(), String::new())])
    }

    #[test]
    fn lines_and_statements_are_reported() {
        let r = check("\n-- why\nALTER TABLE orders\n  DROP COLUMN note;\n");
        let f = &r.findings[0];
        assert_eq!(f.rule, "drop-column");
        assert_eq!(f.line, 3);
        assert_eq!(f.statement, "ALTER TABLE orders DROP COLUMN note");
        assert_eq!(f.table, "public.orders");
        assert!(f.blocking && !r.ok);
    }

    #[test]
    fn the_json_report_has_the_documented_fields() {
        let r = check("ALTER TABLE orders ALTER COLUMN qty TYPE bigint;\n");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["format"], REPORT_FORMAT);
        let f = &v["findings"][0];
        for key in [
            "file",
            "line",
            "statement",
            "rule",
            "severity",
            "class",
            "table",
            "lock",
            "rewrite",
            "scan",
            "message",
            "alternative",
            "blocking",
        ] {
            assert!(f.get(key).is_some(), "{key} missing from {f}");
        }
        assert_eq!(f["rule"], "table-rewrite");
        assert_eq!(f["severity"], "error");
        assert_eq!(f["lock"], "ACCESS EXCLUSIVE");
        assert_eq!(f["rewrite"], true);
    }
}
