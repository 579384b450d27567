//! Migrations of the JTS database: the reversible file layout and the safety check.
//!
//! - [`files`]: `<version>_<name>.up.sql` / `.down.sql` pairs; a first line `-- cutover: contract`
//!   puts a file in the contract phase, `-- no-transaction` runs it outside a transaction.
//! - [`check`]: every statement parsed by PostgreSQL's own parser (libpg_query) and classified
//!   as expand (safe while the old version runs), contract (safe only once the old colour is
//!   gone) or unsafe (locks or rewrites that stall trading, or cannot run as written).

pub mod check;
pub mod files;

pub use check::{Class, Finding, Report, check_dir, check_migrations};
pub use files::{Migration, load_dir};
