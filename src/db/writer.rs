//! The SQLite instance writer: a connection of its own, outside the pool, for the
//! one-INSERT fast path of C-STORE / STOW-RS ingest.
//!
//! sqlx's pool pings a connection every time it is handed back (and, unless turned
//! off, before it is handed out); on SQLite each ping is a round trip to the
//! connection's worker thread, so a pooled INSERT costs three thread round trips
//! instead of one. The statements are still built by sea-orm (`QueryTrait::build`);
//! this only executes them. Writes stay serialised by `IndexRepo`'s write lock, and
//! the connection only ever runs single autocommit statements, so it never holds a
//! read snapshot between them.

use std::str::FromStr;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sea_orm::sqlx::{self, ConnectOptions as _};
use sea_orm::{DbErr, RuntimeErr, Statement};
use sea_query_binder::SqlxValues;
use tokio::sync::Mutex;

use super::DbError;

/// A dedicated SQLite connection for index writes (see the module docs).
pub struct SqliteWriter {
    conn: Mutex<SqliteConnection>,
}

impl SqliteWriter {
    /// Open a second connection to the SQLite database at `url` (`sqlite://PATH`),
    /// with the same pragmas as the pool's.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| DbError::Config(format!("database.url: {e}")))?;
        let conn = super::sqlite_pragmas(opts)
            .connect()
            .await
            .map_err(sqlx_err)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Execute one statement in its own (autocommit) transaction; rows affected.
    pub async fn execute(&self, stmt: Statement) -> Result<u64, DbError> {
        let values = stmt.values.unwrap_or(sea_orm::Values(Vec::new()));
        let mut conn = self.conn.lock().await;
        let done = sqlx::query_with(&stmt.sql, SqlxValues(values))
            .execute(&mut *conn)
            .await
            .map_err(sqlx_err)?;
        Ok(done.rows_affected())
    }
}

fn sqlx_err(e: sqlx::Error) -> DbError {
    DbError::Db(DbErr::Exec(RuntimeErr::SqlxError(e)))
}
