//! The model of the database the migrations build, followed statement by statement: what the
//! rules need to know of the tables a statement touches (types as written, nullability,
//! defaults, validated constraints, indexes, views that read columns, domains, functions'
//! volatility). Names are schema qualified. A table the files never created is unknown: the
//! rules then assume the worst PostgreSQL could do.

use super::exprs::{TypeSpec, Volatility};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default)]
pub struct Column {
    pub ty: TypeSpec,
    pub not_null: bool,
    pub has_default: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CheckConstraint {
    pub validated: bool,
    /// `CHECK (col IS NOT NULL)`: the column.
    pub not_null_of: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: BTreeMap<String, Column>,
    pub checks: BTreeMap<String, CheckConstraint>,
    /// Single-column primary keys and unique indexes: an UPDATE bounded on one is a batch.
    pub keys: BTreeSet<String>,
}

impl Table {
    /// A validated `CHECK (col IS NOT NULL)` lets SET NOT NULL skip its scan.
    pub fn proves_not_null(&self, column: &str) -> bool {
        self.checks
            .values()
            .any(|c| c.validated && c.not_null_of.as_deref() == Some(column))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
    /// Qualified index name → (table, columns).
    pub indexes: BTreeMap<String, (String, Vec<String>)>,
    /// Qualified view name → (tables it reads, column names it refers to).
    pub views: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
    /// Qualified domain name → the columns of that type: (table, column).
    pub domains: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Domains with a constraint (a column of such a type added to a table rewrites it).
    pub constrained_domains: BTreeSet<String>,
    /// Qualified enum type names.
    pub enums: BTreeSet<String>,
    /// Qualified function name → its declared volatility.
    pub functions: BTreeMap<String, Volatility>,
    pub schemas: BTreeSet<String>,
}

impl Schema {
    pub fn column(&self, table: &str, column: &str) -> Option<&Column> {
        self.tables.get(table)?.columns.get(column)
    }

    pub fn column_mut(&mut self, table: &str, column: &str) -> Option<&mut Column> {
        self.tables.get_mut(table)?.columns.get_mut(column)
    }

    /// The domain a column type names, if the files created one by that name.
    pub fn domain_of(&self, ty: &TypeSpec) -> Option<String> {
        let q = super::exprs::qualified(&ty.schema, &ty.name);
        self.domains.contains_key(&q).then_some(q)
    }

    pub fn add_column(&mut self, table: &str, name: &str, column: Column) {
        if let Some(d) = self.domain_of(&column.ty)
            && let Some(users) = self.domains.get_mut(&d)
        {
            users.insert((table.to_owned(), name.to_owned()));
        }
        self.tables
            .entry(table.to_owned())
            .or_default()
            .columns
            .insert(name.to_owned(), column);
    }

    /// Views that read `column` of `table`.
    pub fn views_reading(&self, table: &str, column: &str) -> Vec<String> {
        self.views
            .iter()
            .filter(|(_, (tables, cols))| tables.contains(table) && cols.contains(column))
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// Forgets a table and everything on it.
    pub fn drop_table(&mut self, table: &str) {
        self.tables.remove(table);
        self.indexes.retain(|_, (t, _)| t != table);
        for users in self.domains.values_mut() {
            users.retain(|(t, _)| t != table);
        }
    }

    pub fn rename_table(&mut self, from: &str, to: &str) {
        if let Some(t) = self.tables.remove(from) {
            self.tables.insert(to.to_owned(), t);
        }
        for (t, _) in self.indexes.values_mut() {
            if t == from {
                *t = to.to_owned();
            }
        }
    }
}
