//! The labelled corpus of migrations (`migrate/tests/corpus/`): what the check is held to, and
//! what `tests/tests/migration_oracle.rs` measures on a real PostgreSQL 15.
//!
//! - `fixture.sql`: the schema every case starts from (the first migration; the check reads it
//!   as history), `fixture-data.sql` the rows the oracle loads into it (not a migration).
//! - `cases/<kind>.sql`: cases of one kind, each starting with `-- case: <name>`, then header
//!   lines `-- expect: safe|blocks|rewrites|breaks|fails`, optionally `-- file: no-transaction`
//!   or `-- file: contract` (the case's first line becomes that marker) and `-- why: ...`; then
//!   the SQL. A line `-- earlier:` starts a migration applied before the case (history, not
//!   measured) and `-- migration:` the case itself.
//!
//! What a label means, as the oracle measures it (first that applies): `fails` the migration
//! errors; `rewrites` the table's relfilenode changed; `blocks` a concurrent reader or writer
//! waited 100 ms or more for a lock; `breaks` a query of the previous release fails (or no
//! longer finds its row) afterwards; `safe` none of these.

use crate::files::{Migration, migration};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Safe,
    Breaks,
    Blocks,
    Rewrites,
    Fails,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Safe,
        Outcome::Breaks,
        Outcome::Blocks,
        Outcome::Rewrites,
        Outcome::Fails,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Safe => "safe",
            Outcome::Breaks => "breaks",
            Outcome::Blocks => "blocks",
            Outcome::Rewrites => "rewrites",
            Outcome::Fails => "fails",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Case {
    /// `<kind>/<name>`.
    pub name: String,
    pub kind: String,
    pub expect: Outcome,
    pub why: String,
    /// Migrations applied before the case (not measured), then the case's own.
    pub earlier: Vec<Migration>,
    pub migration: Migration,
}

/// The fixture schema as the first migration (version 1).
pub fn fixture(dir: &Path) -> Migration {
    let sql = std::fs::read_to_string(dir.join("fixture.sql")).expect("corpus fixture.sql");
    migration(1, "fixture", sql, String::new())
}

/// Every case of `dir/cases/*.sql`, in file and then case order.
pub fn load(dir: &Path) -> Result<Vec<Case>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("cases"))
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let kind = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut current: Option<(String, Vec<&str>)> = None;
        let mut blocks = Vec::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("-- case: ") {
                if let Some(c) = current.take() {
                    blocks.push(c);
                }
                current = Some((name.trim().to_owned(), Vec::new()));
            } else if let Some((_, lines)) = current.as_mut() {
                lines.push(line);
            }
        }
        blocks.extend(current);
        for (name, lines) in blocks {
            cases.push(case(&kind, &name, &lines)?);
        }
    }
    Ok(cases)
}

fn case(kind: &str, name: &str, lines: &[&str]) -> Result<Case, String> {
    let full = format!("{kind}/{name}");
    let mut expect = None;
    let mut why = String::new();
    let mut marker = String::new();
    let mut earlier: Vec<String> = Vec::new();
    let mut body = String::new();
    let mut in_earlier = false;
    for l in lines {
        if let Some(v) = l.strip_prefix("-- expect: ") {
            expect = Some(
                Outcome::parse(v.trim())
                    .ok_or_else(|| format!("{full}: unknown expectation {v:?}"))?,
            );
        } else if let Some(v) = l.strip_prefix("-- why: ") {
            why = v.trim().to_owned();
        } else if let Some(v) = l.strip_prefix("-- file: ") {
            marker = match v.trim() {
                "no-transaction" => "-- no-transaction\n".into(),
                "contract" => "-- cutover: contract\n".into(),
                other => return Err(format!("{full}: unknown file marker {other:?}")),
            };
        } else if l.trim() == "-- earlier:" {
            in_earlier = true;
            earlier.push(String::new());
        } else if l.trim() == "-- migration:" {
            in_earlier = false;
        } else if in_earlier {
            let e = earlier.last_mut().unwrap();
            e.push_str(l);
            e.push('\n');
        } else {
            body.push_str(l);
            body.push('\n');
        }
    }
    let expect = expect.ok_or_else(|| format!("{full}: no `-- expect:` line"))?;
    if body.trim().is_empty() {
        return Err(format!("{full}: no SQL"));
    }
    let earlier: Vec<Migration> = earlier
        .into_iter()
        .enumerate()
        .map(|(i, sql)| {
            let no_tx = sql.lines().any(|l| l.trim() == "-- no-transaction");
            let sql = if no_tx {
                format!(
                    "-- no-transaction\n{}",
                    sql.replace("-- no-transaction\n", "")
                )
            } else {
                sql
            };
            migration(
                2 + i as i64,
                &format!("earlier{}", i + 1),
                sql,
                String::new(),
            )
        })
        .collect();
    let version = 2 + earlier.len() as i64;
    let file_name = name.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    Ok(Case {
        name: full,
        kind: kind.to_owned(),
        expect,
        why,
        migration: migration(
            version,
            &file_name,
            format!("{marker}{body}"),
            String::new(),
        ),
        earlier,
    })
}
