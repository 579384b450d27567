//! The check against the labelled corpus (`migrate/tests/corpus/`, labels measured on
//! PostgreSQL 15 by `tests/tests/migration_oracle.rs`): every case's verdict must agree with
//! its label; the confusion matrix is printed (`cargo test -p migrate --test corpus --
//! --nocapture`).

use migrate::corpus::{self, Case, Outcome};
use migrate::{Class, Finding, Severity, check_migrations};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/corpus")
}

/// The findings on the case's own file, checked after the fixture and the earlier files.
fn findings(case: &Case) -> Vec<Finding> {
    let mut files = vec![corpus::fixture(&dir())];
    files.extend(case.earlier.iter().cloned());
    files.push(case.migration.clone());
    let report = check_migrations(&files);
    report
        .findings
        .into_iter()
        .filter(|f| f.file == case.migration.file)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Passes,
    Contract,
    Unsafe,
}

fn verdict(f: &[Finding]) -> Verdict {
    if f.iter().any(|f| f.blocking && f.class == Class::Unsafe) {
        Verdict::Unsafe
    } else if f
        .iter()
        .any(|f| f.class == Class::Contract && f.severity == Severity::Error)
    {
        Verdict::Contract
    } else {
        Verdict::Passes
    }
}

/// Whether the check's findings say what the measurement saw.
fn agrees(case: &Case, f: &[Finding]) -> Result<(), String> {
    let v = verdict(f);
    let ok = match case.expect {
        Outcome::Safe => v == Verdict::Passes,
        Outcome::Breaks => {
            if case.migration.contract {
                v == Verdict::Contract && !f.iter().any(|f| f.blocking)
            } else {
                v != Verdict::Passes
            }
        }
        Outcome::Blocks => v == Verdict::Unsafe && f.iter().any(|f| f.blocking && f.lock.is_some()),
        Outcome::Rewrites => v == Verdict::Unsafe && f.iter().any(|f| f.blocking && f.rewrite),
        Outcome::Fails => v == Verdict::Unsafe,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{}: labelled {}, the check says {v:?}:\n{}",
            case.name,
            case.expect.name(),
            f.iter()
                .map(|f| format!(
                    "  {} {:?} {:?} blocking={} lock={:?} rewrite={}: {}",
                    f.rule, f.severity, f.class, f.blocking, f.lock, f.rewrite, f.message
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }
}

#[test]
fn the_check_agrees_with_every_measured_label() {
    let cases = corpus::load(&dir()).unwrap();
    let mut matrix: BTreeMap<(Outcome, Verdict), usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for case in &cases {
        let f = findings(case);
        for x in &f {
            assert!(
                !x.alternative.is_empty(),
                "{}: {x:?} has no alternative",
                case.name
            );
            assert!(
                !x.statement.is_empty() && x.line >= 1,
                "{}: {x:?}",
                case.name
            );
        }
        *matrix.entry((case.expect, verdict(&f))).or_default() += 1;
        if let Err(e) = agrees(case, &f) {
            wrong.push(e);
        }
    }
    println!(
        "corpus: {} cases; rows: measured outcome, columns: the check's verdict",
        cases.len()
    );
    println!(
        "{:<10} {:>8} {:>9} {:>7}",
        "", "passes", "contract", "unsafe"
    );
    for o in Outcome::ALL {
        println!(
            "{:<10} {:>8} {:>9} {:>7}",
            o.name(),
            matrix.get(&(o, Verdict::Passes)).unwrap_or(&0),
            matrix.get(&(o, Verdict::Contract)).unwrap_or(&0),
            matrix.get(&(o, Verdict::Unsafe)).unwrap_or(&0)
        );
    }
    println!("disagreements: {}", wrong.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(cases.len() >= 120, "only {} cases", cases.len());
    // Every kind the corpus must cover, with safe and unsafe cases.
    for kind in [
        "indexes",
        "reindex",
        "lock_table",
        "backfills",
        "persistence",
        "exclusion",
        "domains",
        "identity_serial",
        "defaults",
        "transactions",
        "new_tables",
        "contract",
        "type_changes",
        "constraints",
        "columns",
    ] {
        let of: Vec<&Case> = cases.iter().filter(|c| c.kind == kind).collect();
        assert!(
            of.iter().any(|c| c.expect == Outcome::Safe)
                && of.iter().any(|c| c.expect != Outcome::Safe),
            "{kind}: needs safe and unsafe cases"
        );
    }
}

#[test]
fn the_fixture_is_clean_history() {
    let r = check_migrations(&[corpus::fixture(&dir())]);
    assert!(r.findings.is_empty(), "{}", r.text());
}

fn case_findings(earlier: &[&str], sql: &str) -> Vec<Finding> {
    let mut files = vec![corpus::fixture(&dir())];
    for (i, e) in earlier.iter().enumerate() {
        files.push(migrate::files::migration(
            2 + i as i64,
            "earlier",
            (*e).to_owned(),
            String::new(),
        ));
    }
    let v = 2 + earlier.len() as i64;
    files.push(migrate::files::migration(
        v,
        "case",
        sql.to_owned(),
        String::new(),
    ));
    check_migrations(&files)
        .findings
        .into_iter()
        .filter(|f| f.file == format!("{v}_case.up.sql"))
        .collect()
}

#[test]
fn messages_state_types_as_written_and_the_lock_held() {
    let f = case_findings(
        &[],
        "ALTER TABLE orders ALTER COLUMN note TYPE varchar(32);\n",
    );
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].message.contains("from varchar(64) to varchar(32)"),
        "{}",
        f[0].message
    );
    assert_eq!(f[0].lock.as_deref(), Some("ACCESS EXCLUSIVE"));
    assert_eq!(f[0].table, "public.orders");
    // The transaction rule names the statement that took the lock, and advice that is safe when
    // followed literally.
    let f = case_findings(
        &[],
        "ALTER TABLE orders ADD CONSTRAINT c CHECK (qty > 0) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT c;\n",
    );
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule, "long-statement-under-held-lock");
    assert_eq!(f[0].line, 2);
    assert!(f[0].message.contains("(line 1)"), "{}", f[0].message);
    assert!(
        f[0].alternative.contains("later migration"),
        "{}",
        f[0].alternative
    );
    // SET NOT NULL's advice is the split pattern, never one transaction.
    let f = case_findings(&[], "ALTER TABLE orders ALTER COLUMN note SET NOT NULL;\n");
    assert!(
        f[0].alternative
            .contains("in a later migration (or a `-- no-transaction` file)")
    );
}

#[test]
fn file_names_are_reported_as_on_disk() {
    let dir = std::env::temp_dir().join(format!("cutover-check-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0007_idx.up.sql"),
        "CREATE INDEX o ON orders (symbol);\n",
    )
    .unwrap();
    std::fs::write(dir.join("0007_idx.down.sql"), "DROP INDEX o;\n").unwrap();
    let r = migrate::check_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(r.findings[0].file, "0007_idx.up.sql");
    assert_eq!(r.files[0].file, "0007_idx.up.sql");
}

#[test]
fn sql_that_does_not_parse_fails_closed() {
    let f = case_findings(&[], "ALTER TABLE orders ADD COLUMN;\n");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule, "unparseable");
    assert!(f[0].blocking);
}

#[test]
fn the_repository_migrations_pass_the_check() {
    let dir = dir()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("db/migrations");
    let report = migrate::check_dir(&dir).unwrap();
    assert!(report.ok, "{}", report.text());
    assert!(report.files.len() >= 4);
    assert!(report.files.iter().any(|f| f.phase == "contract"));
}
