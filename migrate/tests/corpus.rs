//! The corpus: unsafe and contract migrations, each flagged with the right rule and a safe
//! alternative; safe migrations that pass. Every rule appears at least once.

use migrate::files::migration;
use migrate::{Class, check_migrations};

const T: &str = "SET lock_timeout = '2s';\nSET statement_timeout = '30s';\n";

fn findings(sql: &str, contract: bool, no_tx: bool) -> Vec<(String, Class, bool)> {
    let mut text = String::new();
    if contract {
        text.push_str("-- cutover: contract\n");
    }
    if no_tx {
        text.push_str("-- no-transaction\n");
    }
    text.push_str(sql);
    let r = check_migrations(&[migration(7, "case", text, String::new())]);
    for f in &r.findings {
        assert!(!f.alternative.is_empty(), "{f:?} has no alternative");
        assert!(!f.statement.is_empty() && f.line >= 1, "{f:?}");
        assert_eq!(f.file, "7_case.up.sql");
    }
    assert_eq!(r.ok, r.findings.iter().all(|f| !f.blocking));
    r.findings
        .into_iter()
        .map(|f| (f.rule, f.class, f.blocking))
        .collect()
}

fn rules(sql: &str) -> Vec<String> {
    findings(sql, false, false)
        .into_iter()
        .map(|f| f.0)
        .collect()
}

/// (SQL after the timeouts, the one rule it must raise)
const UNSAFE: &[(&str, &str)] = &[
    (
        "CREATE INDEX orders_symbol ON orders (symbol);",
        "index-without-concurrently",
    ),
    (
        "CREATE UNIQUE INDEX orders_ref ON orders (ref);",
        "index-without-concurrently",
    ),
    (
        "DROP INDEX orders_symbol;",
        "drop-index-without-concurrently",
    ),
    (
        "CREATE INDEX CONCURRENTLY orders_symbol ON orders (symbol);",
        "concurrently-in-transaction",
    ),
    (
        "DROP INDEX CONCURRENTLY orders_symbol;",
        "concurrently-in-transaction",
    ),
    (
        "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        "volatile-default",
    ),
    (
        "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();",
        "volatile-default",
    ),
    (
        "ALTER TABLE orders ADD COLUMN seen timestamptz DEFAULT clock_timestamp();",
        "volatile-default",
    ),
    (
        "ALTER TABLE orders ADD COLUMN total numeric GENERATED ALWAYS AS (qty * price) STORED;",
        "stored-generated-column",
    ),
    (
        "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
        "column-type-change",
    ),
    (
        "ALTER TABLE orders ALTER COLUMN symbol TYPE varchar(8);",
        "column-type-change",
    ),
    (
        "ALTER TABLE orders ALTER COLUMN symbol SET NOT NULL;",
        "set-not-null",
    ),
    (
        "ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id);",
        "constraint-without-not-valid",
    ),
    (
        "ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0);",
        "constraint-without-not-valid",
    ),
    (
        "ALTER TABLE orders ADD COLUMN account_id bigint REFERENCES accounts (id);",
        "constraint-without-not-valid",
    ),
    (
        "ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE (ref);",
        "add-unique-or-primary-key",
    ),
    (
        "ALTER TABLE fills ADD PRIMARY KEY (id);",
        "add-unique-or-primary-key",
    ),
    (
        "ALTER TABLE orders ADD COLUMN venue text NOT NULL;",
        "not-null-column-without-default",
    ),
    ("VACUUM FULL orders;", "vacuum-full"),
    ("CLUSTER orders USING orders_pkey;", "cluster"),
    ("TRUNCATE orders CASCADE;", "truncate-cascade"),
    (
        "ALTER TABLE orders RENAME COLUMN qty TO quantity;",
        "rename-column",
    ),
    ("ALTER TABLE orders RENAME TO trades;", "rename-table"),
];

const CONTRACT: &[(&str, &str)] = &[
    ("ALTER TABLE orders DROP COLUMN note;", "drop-column"),
    ("DROP TABLE legacy_orders;", "drop-table"),
    (
        "ALTER TABLE orders ALTER COLUMN note DROP NOT NULL;",
        "drop-not-null",
    ),
    ("TRUNCATE order_audit;", "truncate"),
];

#[test]
fn every_unsafe_statement_is_flagged_with_its_rule() {
    for (sql, rule) in UNSAFE {
        let f = findings(&format!("{T}{sql}\n"), false, false);
        assert!(
            f.iter()
                .any(|(r, c, b)| r == rule && *c == Class::Unsafe && *b),
            "{sql}: expected {rule}, got {f:?}"
        );
        // And nothing else is claimed of it except what the rule implies.
        assert!(
            f.iter().all(|(_, c, _)| *c == Class::Unsafe),
            "{sql}: {f:?}"
        );
    }
}

#[test]
fn contract_statements_fail_outside_contract_files_and_pass_inside() {
    for (sql, rule) in CONTRACT {
        let outside = findings(&format!("{T}{sql}\n"), false, false);
        assert_eq!(
            outside,
            vec![(rule.to_string(), Class::Contract, true)],
            "{sql}"
        );
        let inside = findings(&format!("{T}{sql}\n"), true, false);
        assert_eq!(
            inside,
            vec![(rule.to_string(), Class::Contract, false)],
            "{sql}"
        );
    }
}

#[test]
fn missing_timeouts_are_flagged_and_set_ones_are_not() {
    let r = rules("ALTER TABLE orders ADD COLUMN note text;\n");
    assert_eq!(r, ["missing-lock-timeout", "missing-statement-timeout"]);
    let r = rules("SET lock_timeout = '1s';\nALTER TABLE orders ADD COLUMN note text;\n");
    assert_eq!(r, ["missing-statement-timeout"]);
    let r = rules(
        "SET LOCAL lock_timeout = '1s';\nSET LOCAL statement_timeout = '5s';\nALTER TABLE orders ADD COLUMN note text;\n",
    );
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn sql_that_does_not_parse_fails_closed() {
    let f = findings(
        &format!("{T}ALTER TABLE orders ADD COLUMN;\n"),
        false,
        false,
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, "unparseable");
    assert!(f[0].2);
}

#[test]
fn a_no_transaction_file_must_not_open_a_transaction() {
    let f = findings(
        &format!("{T}BEGIN;\nCREATE INDEX CONCURRENTLY o ON orders (symbol);\nCOMMIT;\n"),
        false,
        true,
    );
    assert!(
        f.iter().any(|x| x.0 == "concurrently-in-transaction"),
        "{f:?}"
    );
}

#[test]
fn safe_migrations_pass() {
    let safe = [
        // New tables and their indexes and constraints: nothing to lock or rewrite.
        "CREATE TABLE fills (id bigint PRIMARY KEY, order_id bigint NOT NULL, qty int NOT NULL CHECK (qty > 0));\nCREATE INDEX fills_order ON fills (order_id);\nALTER TABLE fills ADD CONSTRAINT fills_order_fk FOREIGN KEY (order_id) REFERENCES orders (id);",
        // Nullable column; constant default (no rewrite since PostgreSQL 11); stable default.
        "ALTER TABLE orders ADD COLUMN note text;",
        "ALTER TABLE orders ADD COLUMN venue text NOT NULL DEFAULT 'XNAS';",
        "ALTER TABLE orders ADD COLUMN created_at timestamptz DEFAULT now();",
        // Constraints added NOT VALID, validated separately.
        "ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;",
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_account_fk;",
        // SET NOT NULL after a validated CHECK (col IS NOT NULL).
        "ALTER TABLE orders ADD CONSTRAINT symbol_nn CHECK (symbol IS NOT NULL) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT symbol_nn;\nALTER TABLE orders ALTER COLUMN symbol SET NOT NULL;",
        // Unique constraint from an index built concurrently beforehand.
        "ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE USING INDEX orders_ref_idx;",
        // varchar -> text is binary coercible.
        "ALTER TABLE orders ALTER COLUMN symbol TYPE text;",
        "VACUUM orders;",
        "INSERT INTO venues (code) VALUES ('XNAS') ON CONFLICT DO NOTHING;",
    ];
    for sql in safe {
        let r = rules(&format!("{T}{sql}\n"));
        assert!(r.is_empty(), "{sql}: {r:?}");
    }
    // CONCURRENTLY in a `-- no-transaction` file.
    for sql in [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_symbol ON orders (symbol);",
        "DROP INDEX CONCURRENTLY IF EXISTS orders_symbol;",
    ] {
        let f = findings(&format!("{T}{sql}\n"), false, true);
        assert!(f.is_empty(), "{sql}: {f:?}");
    }
}

#[test]
fn the_repository_migrations_pass_the_check() {
    let dir = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .parent()
    .unwrap()
    .join("db/migrations");
    let report = migrate::check_dir(&dir).unwrap();
    assert!(report.ok, "{}", report.text());
    assert!(report.files.len() >= 4);
    assert!(report.files.iter().any(|f| f.phase == "contract"));
}
