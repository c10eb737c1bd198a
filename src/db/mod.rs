//! The index database: connection (SQLite with WAL, or PostgreSQL), migrations, and
//! the repository layer (`IndexRepo`) through which every other module reads and
//! writes the index, and the durable job queue (`jobs::JobQueue`). No other module
//! issues SQL.

pub mod ai;
pub mod audit;
mod backfill;
pub mod entities;
pub mod identity;
pub mod jobs;
pub mod record;
pub mod repo;
pub mod writer;

use std::path::Path;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

pub use record::InstanceRecord;
pub use repo::{IndexCounts, IndexRepo, InsertOutcome};

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("database configuration: {0}")]
    Config(String),
}

/// Connect to the index named by `url` (`sqlite://PATH` or `postgres://...`).
///
/// SQLite files are created on first start and run in WAL mode with
/// `synchronous=NORMAL` (durable across process crashes) and a busy timeout.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbError> {
    let mut url = url.to_string();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(DbError::Config(
                "sqlite needs a file path (sqlite://data/glia.db)".into(),
            ));
        }
        if let Some(parent) = Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    DbError::Config(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        if !url.contains('?') {
            url.push_str("?mode=rwc");
        }
    } else if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(DbError::Config(
            "database.url must start with sqlite:// or postgres://".into(),
        ));
    }
    // SQLite: one connection. Writes are serialised anyway, and a single connection
    // can never read from a stale WAL snapshot (a pooled connection whose statement
    // was left un-reset keeps its read transaction, and with it an old view of the
    // data and even of the schema).
    let sqlite = url.starts_with("sqlite://");
    let max_connections = if sqlite { 1 } else { max_connections.max(1) };
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(max_connections)
        .min_connections(1)
        // A pooled connection is pinged before every use: on PostgreSQL that catches a
        // connection the server dropped; an embedded SQLite connection cannot be
        // dropped, and the ping is a round trip to its worker thread per statement.
        .test_before_acquire(!sqlite)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    opts.map_sqlx_sqlite_opts(sqlite_pragmas);
    Ok(Database::connect(opts).await?)
}

/// The options every SQLite connection of the index gets (the pool's and the
/// instance writer's).
pub(crate) fn sqlite_pragmas(o: SqliteConnectOptions) -> SqliteConnectOptions {
    o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        // LIKE is case-sensitive, as DICOM matching is (PostgreSQL agrees).
        .pragma("case_sensitive_like", "ON")
        .create_if_missing(true)
}

/// Apply every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbError> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// Migrate on a dedicated connection (closed afterwards, so no connection that saw the
/// schema mid-migration is ever reused), then open the pool the node works with.
pub async fn open(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbError> {
    let admin = connect(url, 1).await?;
    migrate(&admin).await?;
    admin.close().await?;
    connect(url, max_connections).await
}

/// Human-readable backend name for logs.
pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgresql",
        DbBackend::MySql => "mysql",
    }
}
