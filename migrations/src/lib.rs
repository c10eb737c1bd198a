//! Glia's index schema as sea-orm migrations: the same code creates it on SQLite and
//! on PostgreSQL. Run by `glia migrate` and at every start-up.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_index;
mod m20261122_000002_counters;
mod m20261202_000003_dicomweb;
mod m20261202_000004_sequences;
mod m20261202_000005_jobs;
mod m20261202_000006_audit;
mod m20261202_000008_ai;
mod m20261202_000009_identity;

/// All migrations, oldest first.
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_index::Migration),
            Box::new(m20261122_000002_counters::Migration),
            Box::new(m20261202_000003_dicomweb::Migration),
            Box::new(m20261202_000004_sequences::Migration),
            Box::new(m20261202_000005_jobs::Migration),
            Box::new(m20261202_000006_audit::Migration),
            Box::new(m20261202_000008_ai::Migration),
            Box::new(m20261202_000009_identity::Migration),
        ]
    }
}
