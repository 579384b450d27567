//! Migrations of the JTS database: the reversible file layout and the safety check.
//!
//! - [`files`]: `<version>_<name>.up.sql` / `.down.sql` pairs; a first line `-- cutover: contract`
//!   puts a file in the contract phase, `-- no-transaction` runs it outside a transaction.
//! - [`check`]: every statement parsed by PostgreSQL's own parser (libpg_query) and classified
//!   by what PostgreSQL 15 does with it (lock, scan, rewrite, breakage of the live version):
//!   expand (safe while the old version runs), contract (safe only once the old colour is gone)
//!   or unsafe (blocks reads or writes for a scan, rewrite, build or backfill, or cannot run).
//! - [`corpus`]: the labelled migrations the check is held to and the oracle measures.

pub mod check;
pub mod corpus;
pub mod files;

pub use check::{
    Class, Finding, REPORT_FORMAT, Report, Schema, Severity, check_dir, check_migrations,
    check_with_schema,
};
pub use files::{Migration, load_dir};
