//! The walk over one file: every statement parsed by libpg_query, located (line, text),
//! described as the locks it takes and the work it does under them (`transaction`), checked
//! against the rules on whole statements, and applied to the schema model. ALTER TABLE
//! subcommands go to `alter_table`.

use super::alter_table::alter_table;
use super::exprs::{self, qualified, qualified_list, rel};
use super::schema::{CheckConstraint, Column, Schema};
use super::transaction::{Held, Lock, Op, Work};
use super::{Class, Finding, Severity};
use crate::files::Migration;
use pg_query::NodeEnum;
use pg_query::protobuf::{ConstrType, DropBehavior, Node, ObjectType, TransactionStmtKind};
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

/// What a finding says, before the file, line and statement are added.
#[derive(Default)]
pub(super) struct Raw {
    pub rule: &'static str,
    pub severity: Option<Severity>,
    pub class: Option<Class>,
    pub table: String,
    pub lock: Option<Lock>,
    pub rewrite: bool,
    pub scan: bool,
    pub message: String,
    pub alternative: String,
}

pub(super) struct Ctx<'a> {
    pub m: &'a Migration,
    findings: Vec<Finding>,
    line: usize,
    statement: String,
    /// Tables created by this file (empty while it runs: nothing to block).
    pub new_tables: BTreeSet<String>,
    /// A non-zero statement_timeout set by the file itself.
    statement_timeout: bool,
}

impl Ctx<'_> {
    pub(super) fn is_new(&self, table: &str) -> bool {
        self.new_tables.contains(table)
    }

    pub(super) fn push(&mut self, r: Raw) {
        let severity = r.severity.unwrap_or(Severity::Error);
        let class = r.class.unwrap_or(Class::Unsafe);
        let blocking =
            severity == Severity::Error && (class != Class::Contract || !self.m.contract);
        let message = if class == Class::Contract && blocking {
            format!(
                "{}; this file is not marked `-- cutover: contract` (first line)",
                r.message
            )
        } else {
            r.message
        };
        self.findings.push(Finding {
            file: self.m.file.clone(),
            line: self.line,
            statement: self.statement.clone(),
            rule: r.rule.to_owned(),
            severity,
            class,
            table: r.table,
            lock: r.lock.map(|l| l.name().to_owned()),
            rewrite: r.rewrite,
            scan: r.scan,
            message,
            alternative: r.alternative,
            blocking,
        });
    }

    /// A statement PostgreSQL refuses to run as written (or that fails on existing rows).
    pub(super) fn fails(&mut self, rule: &'static str, table: &str, message: String, alt: &str) {
        self.push(Raw {
            rule,
            table: table.to_owned(),
            message,
            alternative: alt.to_owned(),
            ..Raw::default()
        });
    }

    /// A statement that breaks the live version at once (whatever the file's phase).
    pub(super) fn breaks(&mut self, rule: &'static str, table: &str, message: String, alt: &str) {
        // Unsafe, like a statement that cannot run: an error whatever the file's phase.
        self.fails(rule, table, message, alt);
    }

    /// A statement the previous version cannot live with: only in a contract file.
    pub(super) fn contract(&mut self, rule: &'static str, table: &str, message: String, alt: &str) {
        self.push(Raw {
            rule,
            class: Some(Class::Contract),
            table: table.to_owned(),
            message,
            alternative: alt.to_owned(),
            ..Raw::default()
        });
    }

    pub(super) fn warn(
        &mut self,
        rule: &'static str,
        table: &str,
        lock: Option<Lock>,
        message: String,
        alt: &str,
    ) {
        self.push(Raw {
            rule,
            severity: Some(Severity::Warning),
            class: Some(Class::Expand),
            table: table.to_owned(),
            lock,
            message,
            alternative: alt.to_owned(),
            ..Raw::default()
        });
    }
}

fn kind(node: &NodeEnum) -> &'static str {
    match node {
        NodeEnum::AlterTableStmt(_) => "ALTER TABLE",
        NodeEnum::UpdateStmt(_) => "UPDATE",
        NodeEnum::DeleteStmt(_) => "DELETE",
        NodeEnum::InsertStmt(_) => "INSERT",
        NodeEnum::IndexStmt(_) => "CREATE INDEX",
        NodeEnum::ReindexStmt(_) => "REINDEX",
        NodeEnum::LockStmt(_) => "LOCK TABLE",
        NodeEnum::CreateTableAsStmt(_) => "CREATE TABLE AS",
        NodeEnum::AlterDomainStmt(_) => "ALTER DOMAIN",
        NodeEnum::SelectStmt(_) => "SELECT",
        NodeEnum::ClusterStmt(_) => "CLUSTER",
        NodeEnum::VacuumStmt(_) => "VACUUM",
        _ => "this statement",
    }
}

pub(super) fn check_file(m: &Migration, schema: &mut Schema) -> (Vec<Finding>, usize) {
    let text = &m.up_sql;
    let mut cx = Ctx {
        m,
        findings: Vec::new(),
        line: 1,
        statement: String::new(),
        new_tables: BTreeSet::new(),
        statement_timeout: false,
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
            cx.fails(
                "unparseable",
                "",
                format!("PostgreSQL cannot parse this file: {e}"),
                "fix the SQL; the check fails closed on anything it cannot parse",
            );
            return (cx.findings, 0);
        }
    };
    let mut held = Held::default();
    let statements = parsed.protobuf.stmts.len();
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let (line, stmt) = statement_text(text, raw.stmt_location as usize, raw.stmt_len as usize);
        cx.line = line;
        cx.statement = stmt;
        let ops = statement(&mut cx, schema, node);
        let what = kind(node);
        let new = cx.new_tables.clone();
        for b in held.statement(&ops, line, what, |t| new.contains(t)) {
            cx.push(Raw {
                rule: b.rule,
                table: b.table,
                lock: Some(b.lock),
                rewrite: b.rewrite,
                scan: b.scan,
                message: b.message,
                alternative: b.alternative,
                ..Raw::default()
            });
        }
        if m.no_transaction {
            held.release();
        }
    }
    (cx.findings, statements)
}

/// Tables a query reads (FROM, JOIN, subqueries).
fn tables_read(node: &NodeEnum) -> BTreeSet<String> {
    node.nodes()
        .into_iter()
        .filter_map(|(n, _, _, _)| match n {
            pg_query::NodeRef::RangeVar(r) => Some(qualified(&r.schemaname, &r.relname)),
            _ => None,
        })
        .collect()
}

fn reads(tables: BTreeSet<String>) -> Vec<Op> {
    tables
        .into_iter()
        .map(|t| Op::quiet(&t, Lock::AccessShare, Work::Scan))
        .collect()
}

/// Whether a WHERE clause bounds an UPDATE or DELETE to a batch by key: equality or IN on a
/// key column, or a range of at most 1 000 on it (a conjunct of an AND is enough): measured,
/// such a batch holds its row locks for milliseconds.
fn bounded_by_key(w: &Node, keys: &BTreeSet<String>) -> bool {
    let col = |n: &Option<Box<Node>>| -> Option<String> {
        match n.as_ref()?.node.as_ref()? {
            NodeEnum::ColumnRef(c) => match c.fields.last()?.node.as_ref()? {
                NodeEnum::String(s) => Some(s.sval.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    match w.node.as_ref() {
        Some(NodeEnum::BoolExpr(b))
            if b.boolop == pg_query::protobuf::BoolExprType::AndExpr as i32 =>
        {
            // A range written as `id >= a AND id < b`.
            // Both bounds on the same key column.
            let mut bounds: std::collections::BTreeMap<String, (Option<i64>, Option<i64>)> =
                Default::default();
            for a in &b.args {
                if bounded_by_key(a, keys) {
                    return true;
                }
                if let Some(NodeEnum::AExpr(e)) = a.node.as_ref()
                    && e.kind == pg_query::protobuf::AExprKind::AexprOp as i32
                    && let Some(c) = col(&e.lexpr).filter(|c| keys.contains(c))
                {
                    let op = exprs::names(&e.name).join("");
                    let v = e.rexpr.as_ref().and_then(|r| exprs::int_const(r));
                    let entry = bounds.entry(c).or_default();
                    match op.as_str() {
                        ">" | ">=" => entry.0 = v,
                        "<" | "<=" => entry.1 = v,
                        _ => {}
                    }
                }
            }
            bounds.values().any(|b| small_range(b.0, b.1))
        }
        Some(NodeEnum::AExpr(e)) => {
            let Some(c) = col(&e.lexpr) else { return false };
            if !keys.contains(&c) {
                return false;
            }
            let kind = e.kind;
            let op = exprs::names(&e.name).join("");
            if kind == pg_query::protobuf::AExprKind::AexprOp as i32 && op == "=" {
                return e.rexpr.as_ref().is_some_and(|r| {
                    matches!(
                        r.node,
                        Some(NodeEnum::AConst(_)) | Some(NodeEnum::ParamRef(_))
                    )
                });
            }
            if kind == pg_query::protobuf::AExprKind::AexprIn as i32 {
                // IN (...), not NOT IN (parsed as IN with `<>`).
                return op == "=";
            }
            if kind == pg_query::protobuf::AExprKind::AexprBetween as i32
                && let Some(Some(NodeEnum::List(l))) = e.rexpr.as_ref().map(|r| r.node.as_ref())
                && let [a, b] = l.items.as_slice()
            {
                return small_range(exprs::int_const(a), exprs::int_const(b));
            }
            false
        }
        _ => false,
    }
}

fn concurrently_in_transaction(cx: &mut Ctx<'_>, what: &str, table: &str) {
    cx.fails(
        "concurrently-in-transaction",
        table,
        format!("{what} cannot run inside a transaction block, and cutover runs this file in one"),
        "put it alone in a file whose first line is `-- no-transaction`",
    );
}

/// A range of at most 1 000 keys.
fn small_range(lo: Option<i64>, hi: Option<i64>) -> bool {
    matches!((lo, hi), (Some(l), Some(h)) if h.checked_sub(l).is_some_and(|d| (0..=1_000).contains(&d)))
}

fn statement(cx: &mut Ctx<'_>, schema: &mut Schema, node: &NodeEnum) -> Vec<Op> {
    let no_tx = cx.m.no_transaction;
    match node {
        NodeEnum::VariableSetStmt(v) => {
            if v.name == "statement_timeout" {
                let zero = v.args.iter().all(|a| match &a.node {
                    Some(NodeEnum::AConst(c)) => {
                        matches!(
                            &c.val,
                            Some(pg_query::protobuf::a_const::Val::Ival(i)) if i.ival == 0
                        ) || matches!(
                            &c.val,
                            Some(pg_query::protobuf::a_const::Val::Sval(s)) if s.sval.trim() == "0"
                        )
                    }
                    _ => false,
                });
                cx.statement_timeout = !zero;
            }
            Vec::new()
        }
        NodeEnum::TransactionStmt(t) => {
            let k = t.kind;
            if no_tx
                && (k == TransactionStmtKind::TransStmtBegin as i32
                    || k == TransactionStmtKind::TransStmtStart as i32)
            {
                cx.fails(
                    "transaction-in-no-transaction-file",
                    "",
                    "a `-- no-transaction` file opens a transaction".into(),
                    "remove BEGIN/COMMIT: cutover runs each statement of this file on its own",
                );
            }
            Vec::new()
        }
        NodeEnum::CreateSchemaStmt(s) => {
            schema.schemas.insert(s.schemaname.clone());
            Vec::new()
        }
        NodeEnum::CreateStmt(c) => {
            let table = rel(&c.relation);
            if c.if_not_exists && schema.tables.contains_key(&table) {
                // A no-op on the existing table: it is not new.
                return Vec::new();
            }
            cx.new_tables.insert(table.clone());
            schema.drop_table(&table);
            schema.tables.insert(table.clone(), Default::default());
            let mut ops = Vec::new();
            let mut pk_cols = Vec::new();
            for e in &c.table_elts {
                match &e.node {
                    Some(NodeEnum::ColumnDef(col)) => {
                        let mut column = Column {
                            ty: exprs::TypeSpec::from(&col.type_name),
                            not_null: col.is_not_null,
                            has_default: col.raw_default.is_some(),
                        };
                        for k in &col.constraints {
                            if let Some(NodeEnum::Constraint(k)) = &k.node {
                                let t = k.contype;
                                if t == ConstrType::ConstrNotnull as i32
                                    || t == ConstrType::ConstrPrimary as i32
                                {
                                    column.not_null = true;
                                }
                                if t == ConstrType::ConstrPrimary as i32 {
                                    pk_cols.push(col.colname.clone());
                                }
                                if t == ConstrType::ConstrPrimary as i32
                                    || t == ConstrType::ConstrUnique as i32
                                {
                                    schema
                                        .tables
                                        .entry(table.clone())
                                        .or_default()
                                        .keys
                                        .insert(col.colname.clone());
                                }
                                if t == ConstrType::ConstrDefault as i32
                                    || t == ConstrType::ConstrIdentity as i32
                                {
                                    column.has_default = true;
                                }
                                if t == ConstrType::ConstrForeign as i32 {
                                    let target = rel(&k.pktable);
                                    ops.push(Op::instant(&target, Lock::ShareRowExclusive));
                                }
                            }
                        }
                        if column.ty.is_serial() {
                            column.has_default = true;
                        }
                        schema.add_column(&table, &col.colname, column);
                    }
                    Some(NodeEnum::Constraint(k)) => {
                        let t = k.contype;
                        if t == ConstrType::ConstrPrimary as i32 {
                            pk_cols.extend(exprs::names(&k.keys));
                        }
                        if t == ConstrType::ConstrForeign as i32 {
                            ops.push(Op::instant(&rel(&k.pktable), Lock::ShareRowExclusive));
                        }
                        if t == ConstrType::ConstrCheck as i32 && !k.conname.is_empty() {
                            schema
                                .tables
                                .entry(table.clone())
                                .or_default()
                                .checks
                                .insert(
                                    k.conname.clone(),
                                    CheckConstraint {
                                        validated: true,
                                        not_null_of: exprs::not_null_check_column(&k.raw_expr),
                                    },
                                );
                        }
                    }
                    _ => {}
                }
            }
            if !pk_cols.is_empty()
                && let Some(r) = &c.relation
            {
                // The primary key's index, by the name PostgreSQL gives it.
                schema.indexes.insert(
                    qualified(&r.schemaname, &format!("{}_pkey", r.relname)),
                    (table.clone(), pk_cols.clone()),
                );
            }
            let t = schema.tables.entry(table.clone()).or_default();
            if pk_cols.len() == 1 {
                t.keys.insert(pk_cols[0].clone());
            }
            for c in pk_cols {
                if let Some(col) = t.columns.get_mut(&c) {
                    col.not_null = true;
                }
            }
            ops
        }
        NodeEnum::CreateTableAsStmt(c) => {
            let table = c.into.as_ref().map(|i| rel(&i.rel)).unwrap_or_default();
            if c.if_not_exists && schema.tables.contains_key(&table) {
                return Vec::new();
            }
            cx.new_tables.insert(table.clone());
            schema.tables.insert(table.clone(), Default::default());
            c.query
                .as_ref()
                .and_then(|q| q.node.as_ref())
                .map(|q| reads(tables_read(q)))
                .unwrap_or_default()
        }
        NodeEnum::ViewStmt(v) => {
            let view = rel(&v.view);
            let q = v.query.as_ref().and_then(|q| q.node.as_ref());
            let tables = q.map(tables_read).unwrap_or_default();
            let mut cols = Vec::new();
            if let Some(q) = q {
                exprs::column_refs(q, &mut cols);
            }
            schema
                .views
                .insert(view, (tables, cols.into_iter().collect()));
            Vec::new()
        }
        NodeEnum::CreateDomainStmt(d) => {
            let name = qualified_list(&d.domainname);
            if d.constraints.iter().any(|c| matches!(&c.node, Some(NodeEnum::Constraint(k)) if k.contype == ConstrType::ConstrCheck as i32 || k.contype == ConstrType::ConstrNotnull as i32)) {
                schema.constrained_domains.insert(name.clone());
            }
            schema.domains.insert(name, BTreeSet::new());
            Vec::new()
        }
        NodeEnum::CreateEnumStmt(e) => {
            schema.enums.insert(qualified_list(&e.type_name));
            Vec::new()
        }
        NodeEnum::CreateFunctionStmt(f) => {
            let mut v = exprs::Volatility::Volatile;
            for o in &f.options {
                if let Some(NodeEnum::DefElem(d)) = &o.node
                    && d.defname == "volatility"
                    && let Some(NodeEnum::String(s)) = d.arg.as_ref().and_then(|a| a.node.as_ref())
                {
                    v = match s.sval.as_str() {
                        "immutable" => exprs::Volatility::Immutable,
                        "stable" => exprs::Volatility::Stable,
                        _ => exprs::Volatility::Volatile,
                    };
                }
            }
            schema.functions.insert(qualified_list(&f.funcname), v);
            Vec::new()
        }
        NodeEnum::IndexStmt(i) => index(cx, schema, i),
        NodeEnum::DropStmt(d) => drop(cx, schema, d),
        NodeEnum::RenameStmt(r) => rename(cx, schema, r),
        NodeEnum::AlterEnumStmt(e) => {
            if !e.old_val.is_empty() {
                cx.breaks(
                    "rename-enum-value",
                    "",
                    format!(
                        "renaming value '{}' of {} to '{}' breaks the live version, which still writes and compares '{}'",
                        e.old_val,
                        qualified_list(&e.type_name),
                        e.new_val,
                        e.old_val
                    ),
                    "ADD VALUE the new label, have the new version write it and accept both, move rows in batches; stop using the old label (an enum value cannot be dropped)",
                );
            }
            Vec::new()
        }
        NodeEnum::AlterObjectSchemaStmt(a) if a.object_type == ObjectType::ObjectTable as i32 => {
            let table = rel(&a.relation);
            cx.breaks(
                "rename-table",
                &table,
                format!("moving {table} to schema {} breaks the live version at once", a.newschema),
                "create the table in the new schema (or a view there), move readers, drop the old one in a contract migration",
            );
            schema.rename_table(
                &table,
                &qualified(
                    &a.newschema,
                    &a.relation
                        .as_ref()
                        .map(|r| r.relname.clone())
                        .unwrap_or_default(),
                ),
            );
            vec![Op::instant(&table, Lock::AccessExclusive)]
        }
        NodeEnum::TruncateStmt(t) => {
            let mut ops = Vec::new();
            for r in &t.relations {
                if let Some(NodeEnum::RangeVar(r)) = &r.node {
                    let table = qualified(&r.schemaname, &r.relname);
                    if cx.is_new(&table) {
                        continue;
                    }
                    if t.behavior == DropBehavior::DropCascade as i32 {
                        cx.breaks(
                            "truncate-cascade",
                            &table,
                            format!("TRUNCATE {table} CASCADE also empties every table that references it"),
                            "delete the rows you mean in batches, table by table, outside the release",
                        );
                    } else {
                        cx.contract(
                            "truncate",
                            &table,
                            format!(
                                "TRUNCATE removes the rows of {table} the live version still reads"
                            ),
                            "run it in a contract migration, after the old colour is retired",
                        );
                    }
                    ops.push(Op::instant(&table, Lock::AccessExclusive));
                }
            }
            ops
        }
        NodeEnum::VacuumStmt(v) => {
            if !v.is_vacuumcmd {
                return Vec::new();
            }
            let full = v
                .options
                .iter()
                .any(|o| matches!(&o.node, Some(NodeEnum::DefElem(d)) if d.defname == "full"));
            let tables: Vec<String> = v
                .rels
                .iter()
                .filter_map(|r| match &r.node {
                    Some(NodeEnum::VacuumRelation(vr)) => Some(rel(&vr.relation)),
                    _ => None,
                })
                .collect();
            if !no_tx {
                cx.fails(
                    "vacuum-in-transaction",
                    tables.first().map(String::as_str).unwrap_or_default(),
                    "VACUUM cannot run inside a transaction block, and cutover runs this file in one".into(),
                    "leave VACUUM to autovacuum, or put it alone in a file whose first line is `-- no-transaction`",
                );
            }
            if full {
                return tables
                    .iter()
                    .map(|t| {
                        Op::long(
                            t,
                            Lock::AccessExclusive,
                            Work::Rewrite,
                            "vacuum-full",
                            format!("VACUUM FULL rewrites {t} holding an ACCESS EXCLUSIVE lock"),
                            "plain VACUUM, or pg_repack outside the release",
                        )
                    })
                    .collect();
            }
            Vec::new()
        }
        NodeEnum::ClusterStmt(c) => {
            let t = rel(&c.relation);
            vec![Op::long(
                &t,
                Lock::AccessExclusive,
                Work::Rewrite,
                "cluster",
                format!("CLUSTER rewrites {t} holding an ACCESS EXCLUSIVE lock"),
                "leave physical order alone in a release (pg_repack outside it)",
            )]
        }
        NodeEnum::ReindexStmt(r) => reindex(cx, schema, r),
        NodeEnum::LockStmt(l) => l
            .relations
            .iter()
            .filter_map(|r| match &r.node {
                Some(NodeEnum::RangeVar(r)) => Some(Op::instant(
                    &qualified(&r.schemaname, &r.relname),
                    Lock::from_mode(l.mode),
                )),
                _ => None,
            })
            .collect(),
        NodeEnum::UpdateStmt(u) => {
            let table = rel(&u.relation);
            let mut ops = reads(
                u.from_clause
                    .iter()
                    .filter_map(|f| f.node.as_ref())
                    .flat_map(tables_read)
                    .collect(),
            );
            ops.push(backfill(
                schema,
                &table,
                "UPDATE",
                u.where_clause.as_deref(),
            ));
            ops
        }
        NodeEnum::DeleteStmt(d) => {
            let table = rel(&d.relation);
            vec![backfill(
                schema,
                &table,
                "DELETE",
                d.where_clause.as_deref(),
            )]
        }
        NodeEnum::InsertStmt(i) => {
            let table = rel(&i.relation);
            let mut ops = vec![Op::instant(&table, Lock::RowExclusive)];
            if let Some(s) = i.select_stmt.as_ref().and_then(|s| s.node.as_ref()) {
                let mut r = tables_read(s);
                r.remove(&table);
                ops.extend(reads(r));
            }
            ops
        }
        NodeEnum::SelectStmt(_) => reads(tables_read(node)),
        NodeEnum::AlterTableStmt(a) => {
            if a.objtype != ObjectType::ObjectTable as i32 {
                return Vec::new();
            }
            alter_table(cx, schema, &rel(&a.relation), &a.cmds)
        }
        NodeEnum::AlterDomainStmt(d) => domain(cx, schema, d),
        _ => Vec::new(),
    }
}

fn backfill(schema: &Schema, table: &str, verb: &str, w: Option<&Node>) -> Op {
    let keys = schema
        .tables
        .get(table)
        .map(|t| t.keys.clone())
        .unwrap_or_default();
    if w.is_some_and(|w| bounded_by_key(w, &keys)) {
        return Op::instant(table, Lock::RowExclusive);
    }
    Op::long(
        table,
        Lock::RowExclusive,
        Work::Backfill,
        "backfill-in-migration",
        format!(
            "{verb} {} {table}: {} locks every row it changes until the file commits, and the live version's writes to those rows wait",
            if w.is_none() {
                "of every row of"
            } else {
                "with a WHERE not bounded by key on"
            },
            verb
        ),
        "backfill outside the migration in batches by key of at most 1 000 rows per transaction (e.g. WHERE id BETWEEN $1 AND $1 + 999), or one `-- no-transaction` file whose statements are such batches",
    )
}

fn index(cx: &mut Ctx<'_>, schema: &mut Schema, i: &pg_query::protobuf::IndexStmt) -> Vec<Op> {
    let table = rel(&i.relation);
    let schema_name = i
        .relation
        .as_ref()
        .map(|r| r.schemaname.clone())
        .unwrap_or_default();
    let cols: Vec<String> = i
        .index_params
        .iter()
        .filter_map(|p| match &p.node {
            Some(NodeEnum::IndexElem(e)) if !e.name.is_empty() => Some(e.name.clone()),
            _ => None,
        })
        .collect();
    let name = qualified(&schema_name, &i.idxname);
    if i.if_not_exists && !i.idxname.is_empty() && schema.indexes.contains_key(&name) {
        // IF NOT EXISTS on an index the migrations already built: nothing runs.
        return Vec::new();
    }
    if !i.idxname.is_empty() {
        schema.indexes.insert(
            qualified(&schema_name, &i.idxname),
            (table.clone(), cols.clone()),
        );
    }
    if i.unique
        && cols.len() == 1
        && i.index_params.len() == 1
        && i.where_clause.is_none()
        && let Some(t) = schema.tables.get_mut(&table)
    {
        t.keys.insert(cols[0].clone());
    }
    if cx.is_new(&table) {
        return Vec::new();
    }
    if i.concurrent {
        if !cx.m.no_transaction {
            concurrently_in_transaction(cx, "CREATE INDEX CONCURRENTLY", &table);
        } else if cx.statement_timeout {
            cx.warn(
                "statement-timeout-on-concurrently",
                &table,
                None,
                "the file sets a statement_timeout before CREATE INDEX CONCURRENTLY: a build that takes longer is cancelled and leaves an INVALID index".into(),
                "SET statement_timeout = 0 before it (keep lock_timeout: it bounds the waits for locks)",
            );
        }
        return vec![Op::quiet(&table, Lock::ShareUpdateExclusive, Work::Build)];
    }
    vec![Op::long(
        &table,
        Lock::Share,
        Work::Build,
        "index-build-blocks-writes",
        format!(
            "CREATE {}INDEX builds {} from every row of {table} holding a SHARE lock: writes wait for the whole build",
            if i.unique { "UNIQUE " } else { "" },
            if i.idxname.is_empty() {
                "the index"
            } else {
                &i.idxname
            }
        ),
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ... alone in a `-- no-transaction` file",
    )]
}

fn drop(cx: &mut Ctx<'_>, schema: &mut Schema, d: &pg_query::protobuf::DropStmt) -> Vec<Op> {
    let objects: Vec<String> = d
        .objects
        .iter()
        .filter_map(|o| match &o.node {
            Some(NodeEnum::List(l)) => Some(qualified_list(&l.items)),
            Some(NodeEnum::String(s)) => Some(qualified("", &s.sval)),
            _ => None,
        })
        .collect();
    let t = d.remove_type;
    let mut ops = Vec::new();
    for obj in objects {
        if t == ObjectType::ObjectIndex as i32 {
            let table = schema
                .indexes
                .remove(&obj)
                .map(|(t, _)| t)
                .unwrap_or_default();
            if cx.is_new(&table) {
                continue;
            }
            if d.concurrent && !cx.m.no_transaction {
                concurrently_in_transaction(cx, "DROP INDEX CONCURRENTLY", &table);
            } else if !d.concurrent {
                cx.warn(
                    "drop-index",
                    &table,
                    Some(Lock::AccessExclusive),
                    format!(
                        "DROP INDEX {obj} takes an ACCESS EXCLUSIVE lock on {} for a moment, once the queries running on it finish",
                        if table.is_empty() { "its table" } else { &table }
                    ),
                    "DROP INDEX CONCURRENTLY IF EXISTS ... alone in a `-- no-transaction` file never blocks reads or writes",
                );
                if !table.is_empty() {
                    ops.push(Op::instant(&table, Lock::AccessExclusive));
                }
            }
        } else if t == ObjectType::ObjectTable as i32 {
            if !cx.is_new(&obj) {
                cx.contract(
                    "drop-table",
                    &obj,
                    format!("dropping {obj} breaks the version that still reads it"),
                    "drop it in a contract migration, after the old colour is retired",
                );
                ops.push(Op::instant(&obj, Lock::AccessExclusive));
            }
            schema.drop_table(&obj);
        } else if t == ObjectType::ObjectView as i32 || t == ObjectType::ObjectMatview as i32 {
            cx.contract(
                "drop-view",
                &obj,
                format!("dropping view {obj} breaks the version that still reads it"),
                "drop it in a contract migration, after the old colour is retired",
            );
            schema.views.remove(&obj);
        } else if t == ObjectType::ObjectSchema as i32 {
            let s = obj.trim_start_matches("public.").to_owned();
            cx.contract(
                "drop-schema",
                "",
                format!("dropping schema {s} breaks the version that still uses it"),
                "drop it in a contract migration, after the old colour is retired",
            );
        }
    }
    ops
}

fn rename(cx: &mut Ctx<'_>, schema: &mut Schema, r: &pg_query::protobuf::RenameStmt) -> Vec<Op> {
    let what = r.rename_type;
    let table = rel(&r.relation);
    if what == ObjectType::ObjectColumn as i32 {
        if !cx.is_new(&table) {
            cx.breaks(
                "rename-column",
                &table,
                format!("renaming {table}.{} breaks the live version at once", r.subname),
                "add the new column, write both, backfill, switch reads; drop the old one in a contract migration",
            );
        }
        if let Some(t) = schema.tables.get_mut(&table)
            && let Some(c) = t.columns.remove(&r.subname)
        {
            t.columns.insert(r.newname.clone(), c);
        }
        return vec![Op::instant(&table, Lock::AccessExclusive)];
    }
    if what == ObjectType::ObjectTable as i32 || what == ObjectType::ObjectView as i32 {
        if !cx.is_new(&table) {
            cx.breaks(
                if what == ObjectType::ObjectTable as i32 { "rename-table" } else { "rename-view" },
                &table,
                format!("renaming {table} breaks the live version at once"),
                "create the new table (or a view under the new name), move readers, drop the old name in a contract migration",
            );
        }
        let schema_name = r
            .relation
            .as_ref()
            .map(|r| r.schemaname.clone())
            .unwrap_or_default();
        schema.rename_table(&table, &qualified(&schema_name, &r.newname));
        return vec![Op::instant(&table, Lock::AccessExclusive)];
    }
    if what == ObjectType::ObjectSchema as i32 {
        cx.breaks(
            "rename-schema",
            "",
            format!("renaming schema {} breaks every query of the live version that names it", r.subname),
            "create the new schema with views (or new tables) under the new names, move readers; drop the old schema in a contract migration",
        );
        let prefix = format!("{}.", r.subname);
        let moved: Vec<String> = schema
            .tables
            .keys()
            .filter(|t| t.starts_with(&prefix))
            .cloned()
            .collect();
        for t in moved {
            let to = format!("{}.{}", r.newname, &t[prefix.len()..]);
            schema.rename_table(&t, &to);
        }
        return Vec::new();
    }
    if what == ObjectType::ObjectType as i32 || what == ObjectType::ObjectDomain as i32 {
        cx.breaks(
            "rename-type",
            "",
            "renaming a type breaks the live version's casts to it at once".into(),
            "create the new type, move columns in batches; drop the old one in a contract migration",
        );
    }
    Vec::new()
}

fn reindex(cx: &mut Ctx<'_>, schema: &Schema, r: &pg_query::protobuf::ReindexStmt) -> Vec<Op> {
    let concurrently = r
        .params
        .iter()
        .any(|p| matches!(&p.node, Some(NodeEnum::DefElem(d)) if d.defname == "concurrently"));
    let kind = r.kind;
    let named = rel(&r.relation);
    let table = if kind == pg_query::protobuf::ReindexObjectType::ReindexObjectIndex as i32 {
        schema
            .indexes
            .get(&named)
            .map(|(t, _)| t.clone())
            .unwrap_or(named.clone())
    } else {
        named.clone()
    };
    if concurrently {
        if !cx.m.no_transaction {
            concurrently_in_transaction(cx, "REINDEX CONCURRENTLY", &table);
        }
        return vec![Op::quiet(&table, Lock::ShareUpdateExclusive, Work::Build)];
    }
    vec![Op::long(
        &table,
        Lock::Share,
        Work::Build,
        "reindex",
        format!(
            "REINDEX {named} rebuilds holding a SHARE lock on {table} and an ACCESS EXCLUSIVE lock on the index: writes wait, and so do reads that plan a query on {table}"
        ),
        "REINDEX ... CONCURRENTLY alone in a `-- no-transaction` file",
    )]
}

fn domain(
    cx: &mut Ctx<'_>,
    schema: &mut Schema,
    d: &pg_query::protobuf::AlterDomainStmt,
) -> Vec<Op> {
    let name = qualified_list(&d.type_name);
    if matches!(d.subtype.as_str(), "C" | "O") {
        schema.constrained_domains.insert(name.clone());
    }
    let validates = match d.subtype.as_str() {
        "C" => match d.def.as_ref().and_then(|n| n.node.as_ref()) {
            Some(NodeEnum::Constraint(k)) => !k.skip_validation,
            _ => false,
        },
        "V" | "O" => true,
        _ => false,
    };
    if !validates {
        return Vec::new();
    }
    let users: Vec<(String, String)> = schema
        .domains
        .get(&name)
        .map(|u| u.iter().cloned().collect())
        .unwrap_or_default();
    let alt = "on PostgreSQL 15 both ADD CONSTRAINT and VALIDATE CONSTRAINT on a domain hold a SHARE lock on every table using it: add CHECK (...) NOT VALID to each such table instead and VALIDATE CONSTRAINT it in a later migration";
    if !schema.domains.contains_key(&name) {
        cx.push(Raw {
            rule: "domain-constraint-scan",
            lock: Some(Lock::Share),
            scan: true,
            message: format!("ALTER DOMAIN {name} checks every column of that type in every table holding a SHARE lock on each (the migrations do not show which tables use it)"),
            alternative: alt.into(),
            ..Raw::default()
        });
        return Vec::new();
    }
    users
        .into_iter()
        .map(|(t, c)| {
            Op::long(
                &t,
                Lock::Share,
                Work::Scan,
                "domain-constraint-scan",
                format!("ALTER DOMAIN {name} checks every value of {t}.{c} holding a SHARE lock on {t}: writes wait for the scan"),
                alt,
            )
        })
        .collect()
}

/// The constraint's kind, for the ALTER TABLE rules.
pub(super) fn is(k: &pg_query::protobuf::Constraint, t: ConstrType) -> bool {
    k.contype == t as i32
}
