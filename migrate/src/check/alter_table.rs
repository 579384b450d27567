//! The rules on ALTER TABLE subcommands, by what PostgreSQL 15 does: the lock each takes
//! (AlterTableGetLockLevel; one ALTER TABLE holds the strongest of its subcommands'), and
//! whether it rewrites the table, scans it (validation, SET NOT NULL) or builds an index.

use super::exprs::{self, Rewrite, TypeSpec, Volatility, rel};
use super::schema::{CheckConstraint, Column, Schema};
use super::statements::{Ctx, is};
use super::transaction::{Lock, Op, Work};
use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableCmd, AlterTableType as A, ConstrType as C, Constraint, Node};

const LATER: &str = "in a later migration (or a `-- no-transaction` file)";

pub(super) fn alter_table(
    cx: &mut Ctx<'_>,
    schema: &mut Schema,
    table: &str,
    cmds: &[Node],
) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut strongest = Lock::AccessShare;
    for cmd in cmds {
        let Some(NodeEnum::AlterTableCmd(c)) = &cmd.node else {
            continue;
        };
        let (lock, more) = subcommand(cx, schema, table, c);
        strongest = strongest.max(lock);
        ops.extend(more);
        if !ops.iter().any(|o| o.table == table) {
            ops.push(Op::instant(table, lock));
        }
    }
    // The statement holds the strongest lock of its subcommands on the table while any of them
    // works.
    for o in ops.iter_mut().filter(|o| o.table == table) {
        o.lock = o.lock.max(strongest);
    }
    ops
}

/// Whether an index of the migrations covers the column.
fn indexed(schema: &Schema, table: &str, column: &str) -> bool {
    schema
        .indexes
        .values()
        .any(|(t, cols)| t == table && cols.iter().any(|c| c == column))
}

fn rewrite(table: &str, rule: &'static str, message: String, alternative: &str) -> Op {
    Op::long(
        table,
        Lock::AccessExclusive,
        Work::Rewrite,
        rule,
        message,
        alternative,
    )
}

fn scan(table: &str, lock: Lock, rule: &'static str, message: String, alternative: &str) -> Op {
    Op::long(table, lock, Work::Scan, rule, message, alternative)
}

/// The subcommand's lock on `table`, and its operations (on `table` and others).
fn subcommand(
    cx: &mut Ctx<'_>,
    schema: &mut Schema,
    table: &str,
    c: &AlterTableCmd,
) -> (Lock, Vec<Op>) {
    let sub = c.subtype;
    let def = c.def.as_ref().and_then(|d| d.node.as_ref());
    let new = cx.is_new(table);
    let col = c.name.as_str();
    let ael = Lock::AccessExclusive;
    if sub == A::AtAddColumn as i32 {
        let Some(NodeEnum::ColumnDef(cd)) = def else {
            return (ael, Vec::new());
        };
        return add_column(cx, schema, table, cd);
    }
    if sub == A::AtAlterColumnType as i32 {
        let Some(NodeEnum::ColumnDef(cd)) = def else {
            return (ael, Vec::new());
        };
        let new_ty = TypeSpec::from(&cd.type_name);
        let old = schema.column(table, col).map(|c| c.ty.clone());
        if let Some(column) = schema.column_mut(table, col) {
            column.ty = new_ty.clone();
        }
        if new {
            return (ael, Vec::new());
        }
        let views = schema.views_reading(table, col);
        if !views.is_empty() {
            cx.fails(
                "type-change-under-view",
                table,
                format!("PostgreSQL refuses to change the type of {table}.{col}: view {} reads it", views.join(", ")),
                "add a column of the new type and move the view to it, or drop and recreate the view in the same migration (a contract change if the live version reads it)",
            );
            return (ael, Vec::new());
        }
        let shown_old = old
            .as_ref()
            .map(|t| t.shown())
            .unwrap_or_else(|| "its current type".into());
        let verdict = if cd.raw_default.is_some() {
            // ALTER ... TYPE ... USING expr: computed row by row.
            Rewrite::Yes
        } else if let Some(old) = &old {
            exprs::type_change(old, &new_ty)
        } else {
            // The migrations do not show the column's type: assume the worst.
            Rewrite::Yes
        };
        return match verdict {
            Rewrite::No => (ael, Vec::new()),
            Rewrite::OnlyUnless(cond) if indexed(schema, table, col) => (
                ael,
                vec![Op::long(
                    table,
                    ael,
                    Work::Build,
                    "index-rebuild",
                    format!(
                        "{table}.{col} from {shown_old} to {}: even without a table rewrite (only when {cond}), every index on {col} is rebuilt holding an ACCESS EXCLUSIVE lock",
                        new_ty.shown()
                    ),
                    "add a column of the new type, write both, backfill in batches, build its index CONCURRENTLY, switch reads; drop the old column in a contract migration",
                )],
            ),
            Rewrite::OnlyUnless(cond) => {
                cx.warn(
                    "type-change-depends-on-time-zone",
                    table,
                    Some(ael),
                    format!("{table}.{col} from {shown_old} to {}: PostgreSQL skips the rewrite only when {cond}", new_ty.shown()),
                    "run the migration with TimeZone = 'UTC' (the database or the role's setting), or add a column of the new type and backfill it in batches",
                );
                (ael, Vec::new())
            }
            Rewrite::Yes => (
                ael,
                vec![rewrite(
                    table,
                    "table-rewrite",
                    format!(
                        "changing {table}.{col} from {shown_old} to {} rewrites {table} and its indexes holding an ACCESS EXCLUSIVE lock",
                        new_ty.shown()
                    ),
                    "add a column of the new type, write both, backfill in batches, switch reads; drop the old column in a contract migration",
                )],
            ),
        };
    }
    if sub == A::AtSetNotNull as i32 {
        let known = schema.column(table, col).cloned();
        let proven = schema
            .tables
            .get(table)
            .is_some_and(|t| t.proves_not_null(col));
        if let Some(column) = schema.column_mut(table, col) {
            column.not_null = true;
        }
        if new || known.is_some_and(|c| c.not_null) || proven {
            return (ael, Vec::new());
        }
        return (
            ael,
            vec![scan(
                table,
                ael,
                "set-not-null-scan",
                format!(
                    "SET NOT NULL checks every row of {table} for a NULL {col} holding an ACCESS EXCLUSIVE lock"
                ),
                &format!(
                    "ADD CONSTRAINT {}_{col}_not_null CHECK ({col} IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it {LATER}, then SET NOT NULL: PostgreSQL proves it from the validated constraint without a scan",
                    table.rsplit('.').next().unwrap_or(table)
                ),
            )],
        );
    }
    if sub == A::AtDropNotNull as i32 {
        if let Some(column) = schema.column_mut(table, col) {
            column.not_null = false;
        }
        if !new {
            cx.push(super::statements::Raw {
                rule: "drop-not-null",
                severity: Some(super::Severity::Warning),
                class: Some(super::Class::Contract),
                table: table.to_owned(),
                message: format!("after DROP NOT NULL the new version may write NULL into {table}.{col}, which the previous version does not expect to read"),
                alternative: "drop NOT NULL in a contract migration, after the old colour is retired".into(),
                ..Default::default()
            });
        }
        return (ael, Vec::new());
    }
    if sub == A::AtColumnDefault as i32 {
        let known = schema.column(table, col).cloned();
        if let Some(column) = schema.column_mut(table, col) {
            column.has_default = def.is_some();
        }
        if def.is_none() && !new && known.as_ref().is_some_and(|c| c.not_null && c.has_default) {
            cx.contract(
                "drop-default-not-null",
                table,
                format!("{table}.{col} is NOT NULL: once its default is dropped, the previous version's inserts that leave it out fail"),
                "drop the default in a contract migration, after the old colour is retired",
            );
        }
        return (ael, Vec::new());
    }
    if sub == A::AtDropConstraint as i32 {
        if let Some(t) = schema.tables.get_mut(table) {
            t.checks.remove(col);
        }
        return (ael, Vec::new());
    }
    if sub == A::AtDropColumn as i32 {
        if let Some(t) = schema.tables.get_mut(table) {
            t.columns.remove(col);
        }
        if !new {
            cx.contract(
                "drop-column",
                table,
                format!("dropping {table}.{col} breaks the version that still reads it"),
                "stop using the column first; drop it in a contract migration after the old colour is retired",
            );
        }
        return (ael, Vec::new());
    }
    if sub == A::AtAddConstraint as i32 {
        let Some(NodeEnum::Constraint(k)) = def else {
            return (ael, Vec::new());
        };
        return add_constraint(cx, schema, table, k);
    }
    if sub == A::AtValidateConstraint as i32 {
        let ops = vec![Op::quiet(table, Lock::ShareUpdateExclusive, Work::Scan)];
        if let Some(t) = schema.tables.get_mut(table)
            && let Some(k) = t.checks.get_mut(col)
        {
            k.validated = true;
        }
        return (Lock::ShareUpdateExclusive, ops);
    }
    if sub == A::AtSetLogged as i32
        || sub == A::AtSetUnLogged as i32
        || sub == A::AtSetTableSpace as i32
        || sub == A::AtSetAccessMethod as i32
    {
        if new {
            return (ael, Vec::new());
        }
        let what = if sub == A::AtSetLogged as i32 {
            "SET LOGGED"
        } else if sub == A::AtSetUnLogged as i32 {
            "SET UNLOGGED"
        } else if sub == A::AtSetTableSpace as i32 {
            "SET TABLESPACE"
        } else {
            "SET ACCESS METHOD"
        };
        return (
            ael,
            vec![rewrite(
                table,
                "table-rewrite",
                format!("{what} rewrites {table} holding an ACCESS EXCLUSIVE lock"),
                "leave it alone in a release: create the table with the persistence and storage it needs, and move data into it in batches",
            )],
        );
    }
    let trig = [
        A::AtEnableTrig,
        A::AtEnableAlwaysTrig,
        A::AtEnableReplicaTrig,
        A::AtDisableTrig,
        A::AtEnableTrigAll,
        A::AtDisableTrigAll,
        A::AtEnableTrigUser,
        A::AtDisableTrigUser,
    ];
    if trig.iter().any(|t| *t as i32 == sub) {
        return (Lock::ShareRowExclusive, Vec::new());
    }
    let sue = [
        A::AtSetStatistics,
        A::AtClusterOn,
        A::AtDropCluster,
        A::AtSetRelOptions,
        A::AtResetRelOptions,
        A::AtReplaceRelOptions,
    ];
    if sue.iter().any(|t| *t as i32 == sub) {
        return (Lock::ShareUpdateExclusive, Vec::new());
    }
    (ael, Vec::new())
}

fn add_column(
    cx: &mut Ctx<'_>,
    schema: &mut Schema,
    table: &str,
    cd: &pg_query::protobuf::ColumnDef,
) -> (Lock, Vec<Op>) {
    let ael = Lock::AccessExclusive;
    let ty = TypeSpec::from(&cd.type_name);
    let name = cd.colname.clone();
    let mut not_null = cd.is_not_null;
    let mut default = cd.raw_default.clone();
    let mut generated_stored = !cd.generated.is_empty();
    let mut identity = !cd.identity.is_empty();
    let mut checks = Vec::new();
    let mut fks = Vec::new();
    let mut unique = false;
    for k in &cd.constraints {
        let Some(NodeEnum::Constraint(k)) = &k.node else {
            continue;
        };
        if is(k, C::ConstrNotnull) || is(k, C::ConstrPrimary) {
            not_null = true;
        }
        if is(k, C::ConstrDefault) {
            default = k.raw_expr.clone();
        }
        if is(k, C::ConstrGenerated) {
            generated_stored = true;
        }
        if is(k, C::ConstrIdentity) {
            identity = true;
        }
        if is(k, C::ConstrCheck) {
            checks.push(k.clone());
        }
        if is(k, C::ConstrForeign) {
            fks.push(k.clone());
        }
        if is(k, C::ConstrPrimary) || is(k, C::ConstrUnique) {
            unique = true;
        }
    }
    let declared = schema.functions.clone();
    let volatile = default
        .as_ref()
        .map(|d| exprs::volatility(d, &declared))
        .filter(|(v, _)| *v == Volatility::Volatile);
    let has_default = default.is_some() || identity || ty.is_serial() || generated_stored;
    schema.add_column(
        table,
        &name,
        Column {
            ty: ty.clone(),
            not_null: not_null || identity,
            has_default,
        },
    );
    if cx.is_new(table) {
        return (ael, Vec::new());
    }
    let q = format!("{table}.{name}");
    let mut ops = Vec::new();
    let rewrite_op = if generated_stored {
        Some(rewrite(
            table,
            "stored-generated-column",
            format!(
                "a STORED generated column computes {q} for every row, rewriting {table} holding an ACCESS EXCLUSIVE lock"
            ),
            "add a plain nullable column, backfill it in batches, keep it up to date from the application or a trigger",
        ))
    } else if identity {
        Some(rewrite(
            table,
            "identity-column",
            format!(
                "an identity column takes a value from its sequence for every existing row of {table}, rewriting it holding an ACCESS EXCLUSIVE lock"
            ),
            "add a nullable bigint column, backfill it in batches, make it NOT NULL through a validated CHECK, then ALTER COLUMN ... ADD GENERATED BY DEFAULT AS IDENTITY (START WITH above the highest backfilled value; catalog only)",
        ))
    } else if ty.is_serial() {
        Some(rewrite(
            table,
            "serial-column",
            format!(
                "a {} column's default is nextval(), which is volatile: every existing row of {table} gets a value, rewriting it holding an ACCESS EXCLUSIVE lock",
                ty.shown()
            ),
            "CREATE SEQUENCE, add the column without a default, SET DEFAULT nextval(...) in a second statement (new rows only), backfill existing rows in batches",
        ))
    } else {
        volatile.map(|(_, f)| {
            rewrite(
                table,
                "volatile-default",
                format!("DEFAULT {f} is volatile (or not known to be immutable or stable): adding {q} writes a value into every row, rewriting {table} holding an ACCESS EXCLUSIVE lock"),
                "add the column without a default (or with a constant or stable one), SET DEFAULT in a second statement (new rows only), backfill existing rows in batches",
            )
        })
    };
    let rewrite_op = rewrite_op.or_else(|| {
        schema.domain_of(&ty).filter(|d| schema.constrained_domains.contains(d)).map(|d| {
            rewrite(
                table,
                "constrained-domain-column",
                format!("{q} is of domain {d}, which has constraints: PostgreSQL 15 checks them on every row, rewriting {table} holding an ACCESS EXCLUSIVE lock"),
                "add the column with the domain's base type, backfill in batches, add a CHECK ... NOT VALID and VALIDATE CONSTRAINT in a later migration; or add the constraint to the domain after the column exists",
            )
        })
    });
    let rewrites = rewrite_op.is_some();
    ops.extend(rewrite_op);
    if not_null && !has_default {
        cx.fails(
            "not-null-column-without-default",
            table,
            format!("NOT NULL column {q} without a default fails on the rows {table} already has, and the live version's inserts leave it out"),
            "add it nullable (or with a constant DEFAULT), backfill in batches, then a validated CHECK (col IS NOT NULL) and SET NOT NULL in later migrations",
        );
    }
    if unique {
        ops.push(Op::long(
            table,
            ael,
            Work::Build,
            "unique-index-build",
            format!("a UNIQUE or PRIMARY KEY column builds its index from every row of {table} holding an ACCESS EXCLUSIVE lock"),
            "add the column, CREATE UNIQUE INDEX CONCURRENTLY alone in a `-- no-transaction` file, then ADD CONSTRAINT ... UNIQUE USING INDEX ...",
        ));
    }
    if !rewrites && !checks.is_empty() {
        ops.push(scan(
            table,
            ael,
            "constraint-scan",
            format!("the CHECK on new column {q} is tested against every row of {table} holding an ACCESS EXCLUSIVE lock"),
            &format!("add the column first, then ADD CONSTRAINT ... CHECK (...) NOT VALID, and VALIDATE CONSTRAINT {LATER}"),
        ));
    }
    for k in &fks {
        let target = rel(&k.pktable);
        // Without a default every value is NULL: PostgreSQL adds the key without checking rows.
        if default.is_some() && !rewrites {
            ops.push(scan(
                table,
                Lock::ShareRowExclusive,
                "constraint-scan",
                format!("the FOREIGN KEY on new column {q} (with a default) is checked against {target} for every row, holding ACCESS EXCLUSIVE on {table} and SHARE ROW EXCLUSIVE on {target}"),
                &format!("add the column, then ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, and VALIDATE CONSTRAINT {LATER}"),
            ));
        }
        ops.push(Op::instant(&target, Lock::ShareRowExclusive));
    }
    (ael, ops)
}

fn add_constraint(
    cx: &mut Ctx<'_>,
    schema: &mut Schema,
    table: &str,
    k: &Constraint,
) -> (Lock, Vec<Op>) {
    let ael = Lock::AccessExclusive;
    let new = cx.is_new(table);
    let name = if k.conname.is_empty() {
        "the constraint".to_owned()
    } else {
        k.conname.clone()
    };
    if is(k, C::ConstrCheck) {
        if !k.conname.is_empty() {
            schema
                .tables
                .entry(table.to_owned())
                .or_default()
                .checks
                .insert(
                    k.conname.clone(),
                    CheckConstraint {
                        validated: !k.skip_validation,
                        not_null_of: exprs::not_null_check_column(&k.raw_expr),
                    },
                );
        }
        if k.skip_validation || new {
            return (ael, Vec::new());
        }
        return (
            ael,
            vec![scan(
                table,
                ael,
                "constraint-scan",
                format!(
                    "ADD CONSTRAINT {name} CHECK tests every row of {table} holding an ACCESS EXCLUSIVE lock"
                ),
                &format!("ADD CONSTRAINT ... NOT VALID here, VALIDATE CONSTRAINT {LATER}"),
            )],
        );
    }
    if is(k, C::ConstrForeign) {
        let target = rel(&k.pktable);
        let mut ops = vec![Op::instant(&target, Lock::ShareRowExclusive)];
        if !k.skip_validation && !new {
            ops.push(scan(
                table,
                Lock::ShareRowExclusive,
                "constraint-scan",
                format!("ADD CONSTRAINT {name} FOREIGN KEY checks every row of {table} against {target} holding SHARE ROW EXCLUSIVE locks on both: writes to both wait"),
                &format!("ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID here, VALIDATE CONSTRAINT {LATER}"),
            ));
        }
        return (Lock::ShareRowExclusive, ops);
    }
    if is(k, C::ConstrExclusion) {
        if new {
            return (ael, Vec::new());
        }
        return (
            ael,
            vec![Op::long(
                table,
                ael,
                Work::Build,
                "exclusion-constraint",
                format!(
                    "ADD CONSTRAINT {name} EXCLUDE builds its index from every row of {table} holding an ACCESS EXCLUSIVE lock"
                ),
                "PostgreSQL 15 cannot add an exclusion constraint to a populated table without that lock: create a new table with the constraint and move rows in batches, or enforce the rule in the application until then",
            )],
        );
    }
    if is(k, C::ConstrPrimary) || is(k, C::ConstrUnique) {
        let primary = is(k, C::ConstrPrimary);
        if !k.indexname.is_empty() {
            // USING INDEX: catalog only, except that a primary key makes its columns NOT NULL.
            let sch = table.split('.').next().unwrap_or("public");
            let cols = schema
                .indexes
                .get(&exprs::qualified(sch, &k.indexname))
                .map(|(_, c)| c.clone());
            let t = schema.tables.get(table);
            let nullable: Vec<String> = match &cols {
                Some(cols) => cols
                    .iter()
                    .filter(|c| {
                        !t.is_some_and(|t| {
                            t.columns.get(*c).is_some_and(|c| c.not_null) || t.proves_not_null(c)
                        })
                    })
                    .cloned()
                    .collect(),
                None => vec!["(the index's columns)".into()],
            };
            if let (Some(cols), Some(t)) = (&cols, schema.tables.get_mut(table)) {
                if cols.len() == 1 {
                    t.keys.insert(cols[0].clone());
                }
                if primary {
                    for c in cols {
                        if let Some(c) = t.columns.get_mut(c) {
                            c.not_null = true;
                        }
                    }
                }
            }
            if primary && !nullable.is_empty() && !new {
                return (
                    ael,
                    vec![scan(
                        table,
                        ael,
                        "set-not-null-scan",
                        format!(
                            "PRIMARY KEY USING INDEX makes {} NOT NULL, checking every row of {table} holding an ACCESS EXCLUSIVE lock",
                            nullable.join(", ")
                        ),
                        &format!(
                            "make each column NOT NULL first without a scan: CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT {LATER}, SET NOT NULL; then ADD PRIMARY KEY USING INDEX"
                        ),
                    )],
                );
            }
            return (ael, Vec::new());
        }
        let cols = exprs::names(&k.keys);
        if let Some(t) = schema.tables.get_mut(table)
            && cols.len() == 1
        {
            t.keys.insert(cols[0].clone());
        }
        if new {
            return (ael, Vec::new());
        }
        return (
            ael,
            vec![Op::long(
                table,
                ael,
                Work::Build,
                "unique-index-build",
                format!(
                    "ADD CONSTRAINT {name} builds a unique index from every row of {table} holding an ACCESS EXCLUSIVE lock"
                ),
                "CREATE UNIQUE INDEX CONCURRENTLY ... alone in a `-- no-transaction` file, then ADD CONSTRAINT ... UNIQUE USING INDEX ... (PRIMARY KEY USING INDEX once its columns are NOT NULL)",
            )],
        );
    }
    (ael, Vec::new())
}
