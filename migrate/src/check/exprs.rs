//! Names, type names and expressions: schema-qualified relation names, type names as written
//! (`varchar(255)`, not `varchar`), and the volatility of a default expression.

use pg_query::NodeEnum;
use pg_query::protobuf::{Node, RangeVar, TypeName, a_const};
use std::collections::BTreeMap;

/// `schema.name`, `public` when unqualified (the default search_path).
pub(super) fn qualified(schema: &str, name: &str) -> String {
    format!(
        "{}.{name}",
        if schema.is_empty() { "public" } else { schema }
    )
}

pub(super) fn rel(r: &Option<RangeVar>) -> String {
    r.as_ref()
        .map(|r| qualified(&r.schemaname, &r.relname))
        .unwrap_or_default()
}

/// The strings of a name list (`ledger.entries` → ["ledger", "entries"]).
pub(super) fn names(list: &[Node]) -> Vec<String> {
    list.iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// A qualified name from a name list of one or two parts.
pub(super) fn qualified_list(list: &[Node]) -> String {
    let n = names(list);
    match n.as_slice() {
        [name] => qualified("", name),
        [schema, name] => qualified(schema, name),
        [.., schema, name] => qualified(schema, name),
        [] => String::new(),
    }
}

/// A column type: its internal name (`varchar`, `int4`, a domain's qualified name...) and
/// modifiers, and how it is written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeSpec {
    pub name: String,
    /// The schema named in the type (empty for built-in types written without one).
    pub schema: String,
    pub mods: Vec<i64>,
    pub array: bool,
}

impl TypeSpec {
    pub(super) fn from(t: &Option<TypeName>) -> Self {
        let Some(t) = t else {
            return Self::default();
        };
        let n = names(&t.names);
        let (schema, name) = match n.as_slice() {
            [.., s, name] => (s.clone(), name.clone()),
            [name] => (String::new(), name.clone()),
            [] => (String::new(), String::new()),
        };
        let mods = t
            .typmods
            .iter()
            .filter_map(|m| match &m.node {
                Some(NodeEnum::AConst(c)) => match &c.val {
                    Some(a_const::Val::Ival(i)) => Some(i64::from(i.ival)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        Self {
            name: name.to_lowercase(),
            schema: if schema == "pg_catalog" {
                String::new()
            } else {
                schema
            },
            mods,
            array: !t.array_bounds.is_empty(),
        }
    }

    /// The type as SQL writes it: `varchar(255)`, `numeric(12,4)`, `integer`, `bigint[]`.
    pub fn shown(&self) -> String {
        let base = match self.name.as_str() {
            "int2" => "smallint",
            "int4" => "integer",
            "int8" => "bigint",
            "float4" => "real",
            "float8" => "double precision",
            "bool" => "boolean",
            "bpchar" => "char",
            other => other,
        };
        let mut s = if self.schema.is_empty() {
            base.to_owned()
        } else {
            format!("{}.{base}", self.schema)
        };
        if !self.mods.is_empty() {
            let m: Vec<String> = self.mods.iter().map(|m| m.to_string()).collect();
            s.push_str(&format!("({})", m.join(",")));
        }
        if self.array {
            s.push_str("[]");
        }
        s
    }

    /// serial, bigserial, smallserial: a column filled from a sequence.
    pub(super) fn is_serial(&self) -> bool {
        matches!(
            self.name.as_str(),
            "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2"
        ) && self.schema.is_empty()
    }
}

/// Whether changing a column from `old` to `new` (no USING) rewrites the table, on
/// PostgreSQL 15. `None` when it does not rewrite only under a condition the check cannot see
/// (the session time zone), with that condition.
pub(super) enum Rewrite {
    No,
    Yes,
    OnlyUnless(&'static str),
}

pub(super) fn type_change(old: &TypeSpec, new: &TypeSpec) -> Rewrite {
    if old.array != new.array {
        return Rewrite::Yes;
    }
    let text_like = |t: &TypeSpec| {
        (t.name == "text" || t.name == "varchar") && t.mods.is_empty() && t.schema.is_empty()
    };
    match (old.name.as_str(), new.name.as_str()) {
        _ if old == new => Rewrite::No,
        // Binary coercible: varchar(n) → varchar(m ≥ n), varchar → text, text → varchar.
        ("varchar" | "text", _) if text_like(new) => Rewrite::No,
        ("varchar", "varchar") => match (old.mods.first(), new.mods.first()) {
            (Some(a), Some(b)) if b >= a => Rewrite::No,
            _ => Rewrite::Yes,
        },
        ("varbit", "varbit") => match (old.mods.first(), new.mods.first()) {
            (Some(a), Some(b)) if b >= a => Rewrite::No,
            (_, None) => Rewrite::No,
            _ => Rewrite::Yes,
        },
        // numeric(p,s) → numeric(p2 ≥ p, s) or unconstrained numeric: no rewrite; a scale
        // change or a lower precision does.
        ("numeric", "numeric") => {
            if new.mods.is_empty() {
                return Rewrite::No;
            }
            let scale = |t: &TypeSpec| t.mods.get(1).copied().unwrap_or(0);
            match (old.mods.first(), new.mods.first()) {
                (Some(p), Some(p2)) if p2 >= p && scale(old) == scale(new) => Rewrite::No,
                _ => Rewrite::Yes,
            }
        }
        ("timestamp", "timestamptz") | ("timestamptz", "timestamp")
            if old.mods == new.mods || new.mods.is_empty() =>
        {
            Rewrite::OnlyUnless("the session's TimeZone is UTC")
        }
        ("cidr", "inet") => Rewrite::No,
        _ => Rewrite::Yes,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

/// Built-in functions a default may call without rewriting the table (immutable or stable in
/// pg_proc); any other function counts as volatile unless an earlier migration created it as
/// IMMUTABLE or STABLE.
const NOT_VOLATILE: &[&str] = &[
    "now",
    "statement_timestamp",
    "transaction_timestamp",
    "current_setting",
    "lower",
    "upper",
    "length",
    "char_length",
    "abs",
    "round",
    "floor",
    "ceil",
    "trunc",
    "btrim",
    "ltrim",
    "rtrim",
    "substr",
    "substring",
    "replace",
    "md5",
    "concat",
    "concat_ws",
    "format",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "date_trunc",
    "date_part",
    "make_date",
    "make_interval",
    "make_timestamp",
    "make_timestamptz",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "json_build_array",
    "array_length",
    "cardinality",
    "left",
    "right",
    "lpad",
    "rpad",
    "int4",
    "int8",
    "numeric",
    "text",
];

/// The most volatile call in an expression, with its name: `Immutable` for constants, casts and
/// operators on them.
pub(super) fn volatility(
    node: &Node,
    declared: &BTreeMap<String, Volatility>,
) -> (Volatility, String) {
    let mut worst = (Volatility::Immutable, String::new());
    walk(node, declared, &mut worst);
    worst
}

fn bump(worst: &mut (Volatility, String), v: Volatility, name: &str) {
    let rank = |v: Volatility| match v {
        Volatility::Immutable => 0,
        Volatility::Stable => 1,
        Volatility::Volatile => 2,
    };
    if rank(v) > rank(worst.0) {
        *worst = (v, name.to_owned());
    }
}

fn walk(node: &Node, declared: &BTreeMap<String, Volatility>, worst: &mut (Volatility, String)) {
    let Some(n) = &node.node else { return };
    match n {
        NodeEnum::AConst(_) | NodeEnum::ColumnRef(_) | NodeEnum::ParamRef(_) => {}
        NodeEnum::SqlvalueFunction(_) => bump(worst, Volatility::Stable, "CURRENT_TIMESTAMP"),
        NodeEnum::FuncCall(f) => {
            let parts = names(&f.funcname);
            let name = parts.last().cloned().unwrap_or_default().to_lowercase();
            let qualified_name = if parts.len() > 1 {
                qualified(&parts[0], &name)
            } else {
                qualified("", &name)
            };
            let v = if let Some(v) = declared.get(&qualified_name) {
                *v
            } else if (parts.len() == 1 || parts[0] == "pg_catalog")
                && NOT_VOLATILE.contains(&name.as_str())
            {
                Volatility::Stable
            } else {
                Volatility::Volatile
            };
            bump(worst, v, &format!("{name}()"));
            for a in &f.args {
                walk(a, declared, worst);
            }
        }
        NodeEnum::TypeCast(t) => {
            if let Some(a) = &t.arg {
                walk(a, declared, worst);
            }
        }
        NodeEnum::AExpr(e) => {
            for x in [&e.lexpr, &e.rexpr].into_iter().flatten() {
                walk(x, declared, worst);
            }
        }
        NodeEnum::BoolExpr(b) => b.args.iter().for_each(|a| walk(a, declared, worst)),
        NodeEnum::CoalesceExpr(c) => c.args.iter().for_each(|a| walk(a, declared, worst)),
        NodeEnum::MinMaxExpr(c) => c.args.iter().for_each(|a| walk(a, declared, worst)),
        NodeEnum::AArrayExpr(a) => a.elements.iter().for_each(|x| walk(x, declared, worst)),
        NodeEnum::RowExpr(r) => r.args.iter().for_each(|x| walk(x, declared, worst)),
        NodeEnum::NullTest(t) => {
            if let Some(a) = &t.arg {
                walk(a, declared, worst);
            }
        }
        NodeEnum::CaseExpr(c) => {
            for x in [&c.arg, &c.defresult].into_iter().flatten() {
                walk(x, declared, worst);
            }
            for w in &c.args {
                if let Some(NodeEnum::CaseWhen(w)) = &w.node {
                    for x in [&w.expr, &w.result].into_iter().flatten() {
                        walk(x, declared, worst);
                    }
                }
            }
        }
        // Anything else (a subquery, a construct this walk does not know): fail closed.
        _ => bump(
            worst,
            Volatility::Volatile,
            "an expression the check cannot classify",
        ),
    }
}

/// The column an expression is exactly `col IS NOT NULL` of.
pub(super) fn not_null_check_column(expr: &Option<Box<Node>>) -> Option<String> {
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

/// The column names an expression or query refers to (for views: which columns it reads).
pub(super) fn column_refs(node: &NodeEnum, out: &mut Vec<String>) {
    for (n, _, _, _) in node.nodes() {
        if let pg_query::NodeRef::ColumnRef(c) = n
            && let Some(Some(NodeEnum::String(s))) = c.fields.last().map(|f| f.node.as_ref())
        {
            out.push(s.sval.clone());
        }
    }
}

/// The literal an expression is, if it is an integer constant.
pub(super) fn int_const(node: &Node) -> Option<i64> {
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match &c.val {
            Some(a_const::Val::Ival(i)) => Some(i64::from(i.ival)),
            Some(a_const::Val::Fval(f)) => f.fval.parse().ok(),
            _ => None,
        },
        NodeEnum::TypeCast(t) => int_const(t.arg.as_ref()?),
        _ => None,
    }
}
