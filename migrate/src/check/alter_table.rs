//! The rules on ALTER TABLE subcommands: added columns (defaults, NOT NULL, generated,
//! constraints), type changes, SET/DROP NOT NULL, dropped columns, added and validated constraints.

use super::Class;
use super::statements::Ctx;
use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableType, ConstrType, Node};
use std::collections::BTreeSet;

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

pub(super) fn alter_cmd(
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
