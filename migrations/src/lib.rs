//! Glia's index schema.
pub use sea_orm_migration::prelude::*;
