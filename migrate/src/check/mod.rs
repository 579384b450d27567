//! The safety check. Every statement is parsed by libpg_query (PostgreSQL's own parser) and
//! walked, ALTER TABLE subcommands included. SQL that does not parse fails the check.
//!
//! Rules (PostgreSQL 15; what squawk and strong_migrations catch, and then some):
//!
//! | rule | class |
//! | --- | --- |
//! | `index-without-concurrently`, `drop-index-without-concurrently` | unsafe |
//! | `concurrently-in-transaction` | unsafe (cannot run as written) |
//! | `volatile-default`, `stored-generated-column`, `column-type-change` | unsafe (table rewrite) |
//! | `set-not-null` (without a validated `CHECK (col IS NOT NULL)`) | unsafe |
//! | `constraint-without-not-valid` (FOREIGN KEY, CHECK) | unsafe |
//! | `add-unique-or-primary-key` (without `USING INDEX`) | unsafe |
//! | `not-null-column-without-default` | unsafe |
//! | `vacuum-full`, `cluster`, `truncate-cascade` | unsafe |
//! | `rename-column`, `rename-table` | unsafe (breaks the live version) |
//! | `missing-lock-timeout`, `missing-statement-timeout` | unsafe |
//! | `unparseable` | unsafe (fail closed) |
//! | `drop-column`, `drop-table`, `drop-not-null`, `truncate` | contract |
//!
//! Statements on a table created earlier in the same file are not flagged for locks or rewrites
//! (the table is new and empty).
//!
//! Layout: the report and the run over files are here; `statements` walks each file's statements
//! (and holds the rules on whole statements), `alter_table` the rules on ALTER TABLE subcommands.

mod alter_table;
mod statements;

use crate::files::Migration;
use serde::{Deserialize, Serialize};
use statements::check_file;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Safe while the old version still runs.
    Expand,
    /// Safe only after the old colour is gone and the rollback window has closed.
    Contract,
    /// Locks or rewrites in a way that stalls trading, or cannot run as written.
    Unsafe,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub statement: String,
    pub rule: String,
    pub class: Class,
    pub message: String,
    /// The safe way to get the same result.
    pub alternative: String,
    /// True when this finding makes the check fail: any unsafe statement, and a contract
    /// statement in a file not marked `-- cutover: contract`.
    pub blocking: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileReport {
    pub file: String,
    pub version: i64,
    /// The file's phase: contract when marked so, else expand.
    pub phase: String,
    /// The worst class of its statements.
    pub class: Option<Class>,
    pub statements: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub findings: Vec<Finding>,
    pub ok: bool,
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{}:{}: {} [{}{}] {}\n    statement:   {}\n    alternative: {}\n",
                f.file,
                f.line,
                match f.class {
                    Class::Unsafe => "unsafe",
                    Class::Contract => "contract",
                    Class::Expand => "expand",
                },
                f.rule,
                if f.blocking {
                    ""
                } else {
                    ", allowed in this contract file"
                },
                f.message,
                f.statement,
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

pub fn check_migrations(migrations: &[Migration]) -> Report {
    let mut report = Report {
        ok: true,
        ..Default::default()
    };
    // Validated `CHECK (col IS NOT NULL)` constraints seen so far, across files in order:
    // they make a later SET NOT NULL safe.
    let mut validated_not_null: BTreeSet<(String, String)> = BTreeSet::new();
    for m in migrations {
        let (findings, statements) = check_file(m, &mut validated_not_null);
        let class = findings
            .iter()
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

    const T: &str = "SET lock_timeout = '2s';\nSET statement_timeout = '30s';\n";

    #[test]
    fn lines_and_statements_are_reported() {
        let r = check(&format!(
            "{T}\n-- why\nALTER TABLE orders\n  DROP COLUMN note;\n"
        ));
        let f = &r.findings[0];
        assert_eq!(f.rule, "drop-column");
        assert_eq!(f.line, 5);
        assert_eq!(f.statement, "ALTER TABLE orders DROP COLUMN note");
        assert!(f.blocking && !r.ok);
    }
}
