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

use crate::files::Migration;
use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableType, ConstrType, DropBehavior, Node, ObjectType, TransactionStmtKind,
};
use serde::{Deserialize, Serialize};
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

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The statement's own text, without leading blank or comment lines, on one line.
fn statement_text(text: &str, loc: usize, len: usize) -> (usize, String) {
    let end = if len == 0 {
        text.len()
    } else {
        (loc + len).min(text.len())
    };
    let raw = &text[loc.min(text.len())..end];
    let mut skip = 0;
    for line in raw.split_inclusive('\n') {
        let t = line.trim();
        if t.is_empty() || t.starts_with("--") {
            skip += line.len();
        } else {
            break;
        }
    }
    let body = raw[skip..].trim();
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let shown = if one_line.chars().count() > 160 {
        format!("{}…", one_line.chars().take(160).collect::<String>())
    } else {
        one_line
    };
    (line_of(text, loc + skip), shown)
}

fn rel_name(r: &Option<pg_query::protobuf::RangeVar>) -> String {
    r.as_ref().map(|r| r.relname.clone()).unwrap_or_default()
}

fn func_names(node: &Node, out: &mut Vec<String>) {
    // Walks an expression for function calls (defaults are small expressions).
    let Some(n) = &node.node else { return };
    match n {
        NodeEnum::FuncCall(f) => {
            if let Some(Node {
                node: Some(NodeEnum::String(s)),
            }) = f.funcname.last()
            {
                out.push(s.sval.to_lowercase());
            }
            for a in &f.args {
                func_names(a, out);
            }
        }
        NodeEnum::TypeCast(t) => {
            if let Some(a) = &t.arg {
                func_names(a, out);
            }
        }
        NodeEnum::AExpr(e) => {
            if let Some(l) = &e.lexpr {
                func_names(l, out);
            }
            if let Some(r) = &e.rexpr {
                func_names(r, out);
            }
        }
        NodeEnum::CoalesceExpr(c) => {
            for a in &c.args {
                func_names(a, out);
            }
        }
        _ => {}
    }
}

const VOLATILE: [&str; 10] = [
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
    "statement_timestamp",
    "setseed",
];

fn type_name(t: &Option<pg_query::protobuf::TypeName>) -> (String, usize) {
    let Some(t) = t else {
        return (String::new(), 0);
    };
    let name = t
        .names
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .next_back()
        .unwrap_or_default();
    (name, t.typmods.len())
}

/// `CHECK (col IS NOT NULL)`: the column, if the expression is exactly that.
fn is_not_null_check(expr: &Option<Box<Node>>) -> Option<String> {
    let e = expr.as_ref()?;
    let NodeEnum::NullTest(t) = e.node.as_ref()? else {
        return None;
    };
    if t.nulltesttype != pg_query::protobuf::NullTestType::IsNotNull as i32 {
        return None;
    }
    let NodeEnum::ColumnRef(c) = t.arg.as_ref()?.node.as_ref()? else {
        return None;
    };
    match c.fields.last()?.node.as_ref()? {
        NodeEnum::String(s) => Some(s.sval.clone()),
        _ => None,
    }
}

struct Ctx<'a> {
    m: &'a Migration,
    findings: Vec<Finding>,
    line: usize,
    statement: String,
}

impl Ctx<'_> {
    fn flag(&mut self, rule: &str, class: Class, message: String, alternative: &str) {
        let blocking = match class {
            Class::Unsafe => true,
            Class::Contract => !self.m.contract,
            Class::Expand => false,
        };
        let message = if class == Class::Contract && !self.m.contract {
            format!("{message}; this file is not marked `-- cutover: contract` (first line)")
        } else {
            message
        };
        self.findings.push(Finding {
            file: self.m.file.clone(),
            line: self.line,
            statement: self.statement.clone(),
            rule: rule.to_owned(),
            class,
            message,
            alternative: alternative.to_owned(),
            blocking,
        });
    }
}

fn check_file(
    m: &Migration,
    validated_not_null: &mut BTreeSet<(String, String)>,
) -> (Vec<Finding>, usize) {
    let text = &m.up_sql;
    let mut cx = Ctx {
        m,
        findings: Vec::new(),
        line: 1,
        statement: String::new(),
    };
    let parsed = match pg_query::parse(text, pg_query::ParserOptions::DEFAULT) {
        Ok(p) => p,
        Err(e) => {
            cx.statement = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            cx.flag(
                "unparseable",
                Class::Unsafe,
                format!("PostgreSQL cannot parse this file: {e}"),
                "fix the SQL; the check fails closed on anything it cannot parse",
            );
            return (cx.findings, 0);
        }
    };
    let mut new_tables: BTreeSet<String> = BTreeSet::new();
    // NOT VALID check constraints added in this file, by name: (table, column).
    let mut pending_checks: Vec<(String, String, String)> = Vec::new();
    let (mut lock_timeout, mut statement_timeout) = (false, false);
    let mut timeouts_flagged = false;
    let statements = parsed.protobuf.stmts.len();
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let (line, stmt) = statement_text(text, raw.stmt_location as usize, raw.stmt_len as usize);
        cx.line = line;
        cx.statement = stmt;
        // Statements that take locks on existing objects need both timeouts set before them.
        let locks = matches!(
            node,
            NodeEnum::AlterTableStmt(_)
                | NodeEnum::IndexStmt(_)
                | NodeEnum::DropStmt(_)
                | NodeEnum::RenameStmt(_)
                | NodeEnum::TruncateStmt(_)
                | NodeEnum::VacuumStmt(_)
                | NodeEnum::ClusterStmt(_)
        );
        if locks && !timeouts_flagged {
            let target = match node {
                NodeEnum::AlterTableStmt(a) => rel_name(&a.relation),
                NodeEnum::IndexStmt(i) => rel_name(&i.relation),
                _ => String::new(),
            };
            if target.is_empty() || !new_tables.contains(&target) {
                if !lock_timeout {
                    cx.flag(
                        "missing-lock-timeout",
                        Class::Unsafe,
                        "takes a lock with no lock_timeout set before it: a lock queued behind a long transaction blocks every query on the table".into(),
                        "start the file with SET lock_timeout = '2s'; (cutover also sets it per migration)",
                    );
                }
                if !statement_timeout {
                    cx.flag(
                        "missing-statement-timeout",
                        Class::Unsafe,
                        "runs with no statement_timeout set before it".into(),
                        "start the file with SET statement_timeout = '30s';",
                    );
                }
                timeouts_flagged = true;
            }
        }
        match node {
            NodeEnum::VariableSetStmt(v) => match v.name.as_str() {
                "lock_timeout" => lock_timeout = true,
                "statement_timeout" => statement_timeout = true,
                _ => {}
            },
            NodeEnum::TransactionStmt(t) => {
                let k = t.kind;
                if m.no_transaction
                    && (k == TransactionStmtKind::TransStmtBegin as i32
                        || k == TransactionStmtKind::TransStmtStart as i32)
                {
                    cx.flag(
                        "concurrently-in-transaction",
                        Class::Unsafe,
                        "a `-- no-transaction` file opens a transaction".into(),
                        "remove BEGIN/COMMIT: cutover runs each statement of this file on its own",
                    );
                }
            }
            NodeEnum::CreateStmt(c) => {
                new_tables.insert(rel_name(&c.relation));
            }
            NodeEnum::IndexStmt(i) => {
                let table = rel_name(&i.relation);
                if i.concurrent && !m.no_transaction {
                    cx.flag(
                        "concurrently-in-transaction",
                        Class::Unsafe,
                        "CREATE INDEX CONCURRENTLY cannot run inside a transaction block".into(),
                        "put it alone in a file whose first line is `-- no-transaction`",
                    );
                } else if !i.concurrent && !new_tables.contains(&table) {
                    cx.flag(
                        "index-without-concurrently",
                        Class::Unsafe,
                        format!("CREATE INDEX on {table} blocks writes to it for the whole build"),
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ... in a `-- no-transaction` file",
                    );
                }
            }
            NodeEnum::DropStmt(d) => {
                let t = d.remove_type;
                if t == ObjectType::ObjectIndex as i32 {
                    if d.concurrent && !m.no_transaction {
                        cx.flag(
                            "concurrently-in-transaction",
                            Class::Unsafe,
                            "DROP INDEX CONCURRENTLY cannot run inside a transaction block".into(),
                            "put it alone in a file whose first line is `-- no-transaction`",
                        );
                    } else if !d.concurrent {
                        cx.flag(
                            "drop-index-without-concurrently",
                            Class::Unsafe,
                            "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table".into(),
                            "DROP INDEX CONCURRENTLY IF EXISTS ... in a `-- no-transaction` file",
                        );
                    }
                } else if t == ObjectType::ObjectTable as i32 {
                    cx.flag(
                        "drop-table",
                        Class::Contract,
                        "dropping a table breaks the version that still reads it".into(),
                        "drop it in a contract migration, after the old colour is retired",
                    );
                }
            }
            NodeEnum::RenameStmt(r) => {
                let what = r.rename_type;
                if what == ObjectType::ObjectColumn as i32 {
                    cx.flag(
                        "rename-column",
                        Class::Unsafe,
                        format!(
                            "renaming {}.{} breaks the live version at once",
                            rel_name(&r.relation),
                            r.subname
                        ),
                        "add the new column, write both, backfill, switch reads; drop the old one in a contract migration",
                    );
                } else if what == ObjectType::ObjectTable as i32 {
                    cx.flag(
                        "rename-table",
                        Class::Unsafe,
                        format!("renaming {} breaks the live version at once", rel_name(&r.relation)),
                        "create the new table (or a view under the new name), move readers, drop the old name in a contract migration",
                    );
                }
            }
            NodeEnum::TruncateStmt(t) => {
                if t.behavior == DropBehavior::DropCascade as i32 {
                    cx.flag(
                        "truncate-cascade",
                        Class::Unsafe,
                        "TRUNCATE ... CASCADE also empties every table that references these"
                            .into(),
                        "delete the rows you mean in batches, table by table",
                    );
                } else {
                    cx.flag(
                        "truncate",
                        Class::Contract,
                        "TRUNCATE removes data the live version may still read".into(),
                        "run it in a contract migration, after the old colour is retired",
                    );
                }
            }
            NodeEnum::VacuumStmt(v) => {
                let full = v
                    .options
                    .iter()
                    .any(|o| matches!(&o.node, Some(NodeEnum::DefElem(d)) if d.defname == "full"));
                if full {
                    cx.flag(
                        "vacuum-full",
                        Class::Unsafe,
                        "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock".into(),
                        "plain VACUUM (or pg_repack, outside the release)",
                    );
                }
            }
            NodeEnum::ClusterStmt(_) => {
                cx.flag(
                    "cluster",
                    Class::Unsafe,
                    "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock".into(),
                    "leave physical order alone in a release (pg_repack outside it)",
                );
            }
            NodeEnum::AlterTableStmt(a) => {
                let table = rel_name(&a.relation);
                let new = new_tables.contains(&table);
                for cmd in &a.cmds {
                    let Some(NodeEnum::AlterTableCmd(c)) = &cmd.node else {
                        continue;
                    };
                    alter_cmd(
                        &mut cx,
                        &table,
                        new,
                        c,
                        validated_not_null,
                        &mut pending_checks,
                    );
                }
            }
            _ => {}
        }
    }
    (cx.findings, statements)
}

fn alter_cmd(
    cx: &mut Ctx<'_>,
    table: &str,
    new: bool,
    c: &pg_query::protobuf::AlterTableCmd,
    validated_not_null: &mut BTreeSet<(String, String)>,
    pending_checks: &mut Vec<(String, String, String)>,
) {
    let sub = c.subtype;
    let def = c.def.as_ref().and_then(|d| d.node.as_ref());
    if sub == AlterTableType::AtAddColumn as i32 {
        let Some(NodeEnum::ColumnDef(col)) = def else {
            return;
        };
        let mut not_null = col.is_not_null;
        let mut default = col.raw_default.clone();
        let mut stored_generated = !col.generated.is_empty();
        for k in &col.constraints {
            let Some(NodeEnum::Constraint(k)) = &k.node else {
                continue;
            };
            let t = k.contype;
            if t == ConstrType::ConstrNotnull as i32 {
                not_null = true;
            } else if t == ConstrType::ConstrDefault as i32 {
                default = k.raw_expr.clone();
            } else if t == ConstrType::ConstrGenerated as i32 {
                stored_generated = true;
            } else if (t == ConstrType::ConstrForeign as i32 || t == ConstrType::ConstrCheck as i32)
                && !new
                && !k.skip_validation
            {
                cx.flag(
                    "constraint-without-not-valid",
                    Class::Unsafe,
                    format!("a constraint on new column {table}.{} is validated against every row under lock", col.colname),
                    "add the column first, then ADD CONSTRAINT ... NOT VALID and VALIDATE CONSTRAINT in a later statement",
                );
            } else if (t == ConstrType::ConstrUnique as i32
                || t == ConstrType::ConstrPrimary as i32)
                && !new
            {
                cx.flag(
                    "add-unique-or-primary-key",
                    Class::Unsafe,
                    format!("a UNIQUE/PRIMARY KEY column builds its index under lock on {table}"),
                    "add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX",
                );
            }
        }
        if new {
            return;
        }
        if stored_generated {
            cx.flag(
                "stored-generated-column",
                Class::Unsafe,
                format!("a STORED generated column rewrites {table}"),
                "add a plain nullable column, backfill it in batches, keep it up to date from the application or a trigger",
            );
        }
        if let Some(d) = &default {
            let mut names = Vec::new();
            func_names(d, &mut names);
            if let Some(v) = names.iter().find(|n| VOLATILE.contains(&n.as_str())) {
                cx.flag(
                    "volatile-default",
                    Class::Unsafe,
                    format!("DEFAULT {v}() is volatile: adding {}.{} rewrites the table", table, col.colname),
                    "add the column without a default (or with a constant one), set the default in a second statement, backfill in batches",
                );
            }
        }
        if not_null && default.is_none() && !stored_generated {
            cx.flag(
                "not-null-column-without-default",
                Class::Unsafe,
                format!("NOT NULL column {table}.{} without a default fails on existing rows and breaks inserts of the live version", col.colname),
                "add it nullable (or with a constant DEFAULT), backfill, then add a validated CHECK and SET NOT NULL",
            );
        }
    } else if sub == AlterTableType::AtAlterColumnType as i32 {
        if new {
            return;
        }
        let Some(NodeEnum::ColumnDef(col)) = def else {
            return;
        };
        let (ty, mods) = type_name(&col.type_name);
        let binary_coercible = (ty == "text" || ty == "varchar") && mods == 0;
        if !binary_coercible {
            cx.flag(
                "column-type-change",
                Class::Unsafe,
                format!("changing the type of {table}.{} to {ty} rewrites the table under an ACCESS EXCLUSIVE lock", c.name),
                "add a column of the new type, write both, backfill in batches, switch reads; drop the old column in a contract migration",
            );
        }
    } else if sub == AlterTableType::AtSetNotNull as i32 {
        if new || validated_not_null.contains(&(table.to_owned(), c.name.clone())) {
            return;
        }
        cx.flag(
            "set-not-null",
            Class::Unsafe,
            format!("SET NOT NULL on {table}.{} scans the whole table under an ACCESS EXCLUSIVE lock", c.name),
            "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT ...; then SET NOT NULL (PostgreSQL skips the scan)",
        );
    } else if sub == AlterTableType::AtDropNotNull as i32 {
        cx.flag(
            "drop-not-null",
            Class::Contract,
            format!("after DROP NOT NULL on {table}.{} the new version may write NULLs the old one cannot read", c.name),
            "drop NOT NULL in a contract migration, after the old colour is retired",
        );
    } else if sub == AlterTableType::AtDropColumn as i32 {
        cx.flag(
            "drop-column",
            Class::Contract,
            format!("dropping {table}.{} breaks the version that still reads it", c.name),
            "stop using the column first; drop it in a contract migration after the old colour is retired",
        );
    } else if sub == AlterTableType::AtAddConstraint as i32 {
        let Some(NodeEnum::Constraint(k)) = def else {
            return;
        };
        let t = k.contype;
        if t == ConstrType::ConstrCheck as i32 {
            if let Some(col) = is_not_null_check(&k.raw_expr)
                && k.skip_validation
            {
                pending_checks.push((k.conname.clone(), table.to_owned(), col));
            }
            if !k.skip_validation && !new {
                cx.flag(
                    "constraint-without-not-valid",
                    Class::Unsafe,
                    format!("ADD CONSTRAINT {} CHECK validates every row of {table} under lock", k.conname),
                    "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT ... in a separate statement",
                );
            }
        } else if t == ConstrType::ConstrForeign as i32 {
            if !k.skip_validation && !new {
                cx.flag(
                    "constraint-without-not-valid",
                    Class::Unsafe,
                    format!("ADD CONSTRAINT {} FOREIGN KEY validates every row of {table} and locks both tables", k.conname),
                    "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT ... in a separate statement",
                );
            }
        } else if (t == ConstrType::ConstrUnique as i32 || t == ConstrType::ConstrPrimary as i32)
            && k.indexname.is_empty()
            && !new
        {
            cx.flag(
                "add-unique-or-primary-key",
                Class::Unsafe,
                format!("ADD CONSTRAINT {} builds a unique index on {table} while blocking writes", k.conname),
                "CREATE UNIQUE INDEX CONCURRENTLY ... (in a `-- no-transaction` file), then ADD CONSTRAINT ... UNIQUE USING INDEX ...",
            );
        }
    } else if sub == AlterTableType::AtValidateConstraint as i32
        && let Some(pos) = pending_checks
            .iter()
            .position(|(name, t, _)| name == &c.name && t == table)
    {
        let (_, t, col) = pending_checks.remove(pos);
        validated_not_null.insert((t, col));
    }
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
