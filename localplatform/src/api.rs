//! JSON types of the platform's admin API (`/v1/...`). They live in [`wire::api`], which the
//! activities' client shares without depending on this crate.

pub use wire::api::*;
