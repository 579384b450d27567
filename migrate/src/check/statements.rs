//! The walk over one file: every statement parsed by libpg_query, located (line, text), and
//! checked against the rules on whole statements (timeouts, indexes, drops, renames, TRUNCATE,
//! VACUUM FULL, CLUSTER); ALTER TABLE subcommands go to `alter_table`.

use super::alter_table::alter_cmd;
use super::{Class, Finding};
use crate::files::Migration;
use pg_query::NodeEnum;
use pg_query::protobuf::{DropBehavior, ObjectType, TransactionStmtKind};
use std::collections::BTreeSet;

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

pub(super) struct Ctx<'a> {
    m: &'a Migration,
    findings: Vec<Finding>,
    line: usize,
    statement: String,
}

impl Ctx<'_> {
    pub(super) fn flag(&mut self, rule: &str, class: Class, message: String, alternative: &str) {
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

pub(super) fn check_file(
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
