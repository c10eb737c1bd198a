//! The durable job queue, in the index database (`job` table): jobs survive restarts
//! and are shared by every node on one database.
//!
//! A worker claims a job atomically — on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
//! several nodes never take the same job; on SQLite the single writer makes the one
//! `UPDATE ... RETURNING` atomic — heartbeats while it runs, and ends it as succeeded,
//! skipped (with a reason, not retried) or failed (retried with exponential backoff up
//! to its attempt limit). A running job whose heartbeat stops (its worker died) is
//! put back in the queue by [`JobQueue::requeue_stale`]. At most one job per
//! (kind, key) is active (queued or running) at a time; updates from a worker that
//! lost its claim are refused.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};

use super::entities::job;
use super::DbError;

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "skipped" => JobState::Skipped,
            _ => return None,
        })
    }
}

/// A job as the queue's users see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    /// What the job is about (e.g. a study's UID); one active job per (kind, key).
    pub key: String,
    /// Job-specific parameters (JSON).
    pub payload: String,
    pub state: JobState,
    /// Human-readable reason of a skip or failure (never patient data).
    pub reason: Option<String>,
    /// 0..=100.
    pub progress: f64,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_after: DateTime<Utc>,
    pub claimed_by: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<job::Model> for Job {
    type Error = DbError;
    fn try_from(m: job::Model) -> Result<Self, DbError> {
        Ok(Job {
            state: JobState::parse(&m.state)
                .ok_or_else(|| DbError::Config(format!("unknown job state {:?}", m.state)))?,
            id: m.id,
            kind: m.kind,
            key: m.key,
            payload: m.payload,
            reason: m.reason,
            progress: m.progress,
            attempts: m.attempts,
            max_attempts: m.max_attempts,
            run_after: m.run_after,
            claimed_by: m.claimed_by,
            heartbeat_at: m.heartbeat_at,
            created_at: m.created_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
        })
    }
}

/// The delay before attempt `attempts + 1` after a failure: 2^attempts × `base`,
/// capped at one hour.
pub fn backoff(attempts: i32, base: Duration) -> Duration {
    let factor = 1u32 << attempts.clamp(0, 16) as u32;
    (base * factor).min(Duration::from_secs(3600))
}

/// The queue, for one worker identity (`node`, e.g. host name + process id).
#[derive(Clone)]
pub struct JobQueue {
    db: DatabaseConnection,
    node: String,
    /// Base of the retry backoff.
    retry_base: Duration,
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl JobQueue {
    pub fn new(db: DatabaseConnection, node: impl Into<String>, retry_base: Duration) -> Self {
        Self {
            db,
            node: node.into(),
            retry_base,
        }
    }

    /// This queue's worker identity.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A statement with `$n` placeholders: PostgreSQL's, and SQLite takes `$n` as a
    /// named parameter numbered by first appearance (the statements here number their
    /// parameters in order of first appearance, so a value can be used twice).
    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.db.get_database_backend(), sql, values)
    }

    /// Queue a job. `None` when an active job of the same kind and key exists (nothing
    /// is queued then).
    pub async fn enqueue(
        &self,
        kind: &str,
        key: &str,
        payload: &str,
        max_attempts: i32,
    ) -> Result<Option<i64>, DbError> {
        Self::enqueue_on(&self.db, kind, key, payload, max_attempts).await
    }

    /// [`JobQueue::enqueue`] on a given connection or transaction, so that queueing
    /// commits together with the change that calls for the job.
    pub async fn enqueue_on<C: ConnectionTrait>(
        conn: &C,
        kind: &str,
        key: &str,
        payload: &str,
        max_attempts: i32,
    ) -> Result<Option<i64>, DbError> {
        let now = Utc::now();
        let row = conn
            .query_one(Statement::from_sql_and_values(
                conn.get_database_backend(),
                "INSERT INTO job (kind, key, payload, state, progress, attempts, max_attempts, \
                 run_after, created_at) VALUES ($1, $2, $3, 'queued', 0, 0, $4, $5, $5) \
                 ON CONFLICT DO NOTHING RETURNING id",
                vec![
                    kind.into(),
                    key.into(),
                    payload.into(),
                    max_attempts.max(1).into(),
                    now.into(),
                ],
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "id")).transpose()?)
    }

    /// Put this node's running jobs back in the queue: called at start-up, when
    /// nothing of this node can still be running them (its previous run died or
    /// was stopped mid-job). Returns how many.
    pub async fn requeue_own(&self) -> Result<u64, DbError> {
        let now = Utc::now();
        let requeued = self
            .db
            .execute(self.stmt(
                "UPDATE job SET state = 'queued', claimed_by = NULL, run_after = $1, \
                 reason = 'node restarted while running; retrying' \
                 WHERE state = 'running' AND claimed_by = $2 AND attempts < max_attempts",
                vec![now.into(), self.node.clone().into()],
            ))
            .await?
            .rows_affected();
        let failed = self
            .db
            .execute(self.stmt(
                "UPDATE job SET state = 'failed', finished_at = $1, \
                 reason = 'node restarted while running; no attempts left' \
                 WHERE state = 'running' AND claimed_by = $2",
                vec![now.into(), self.node.clone().into()],
            ))
            .await?
            .rows_affected();
        Ok(requeued + failed)
    }

    /// Claim the oldest due queued job of one of `kinds` for this worker.
    pub async fn claim(&self, kinds: &[&str]) -> Result<Option<Job>, DbError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let now = Utc::now();
        let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 3)).collect();
        let lock = match self.db.get_database_backend() {
            DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
            _ => "",
        };
        let sql = format!(
            "UPDATE job SET state = 'running', claimed_by = $1, heartbeat_at = $2, \
             started_at = $2, attempts = attempts + 1, progress = 0 \
             WHERE id = (SELECT id FROM job WHERE state = 'queued' AND run_after <= $2 \
             AND kind IN ({}) ORDER BY run_after, id LIMIT 1{lock}) RETURNING id",
            placeholders.join(", ")
        );
        let mut values: Vec<Value> = vec![self.node.clone().into(), now.into()];
        values.extend(kinds.iter().map(|k| Value::from(*k)));
        let Some(row) = self.db.query_one(self.stmt(&sql, values)).await? else {
            return Ok(None);
        };
        let id: i64 = row.try_get("", "id")?;
        self.get(id).await
    }

    /// A job by id.
    pub async fn get(&self, id: i64) -> Result<Option<Job>, DbError> {
        job::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(Job::try_from)
            .transpose()
    }

    /// Jobs, newest first, optionally of one kind / state / key.
    pub async fn list(
        &self,
        kind: Option<&str>,
        state: Option<JobState>,
        key: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Job>, DbError> {
        let mut q = job::Entity::find().order_by_desc(job::Column::Id);
        if let Some(k) = kind {
            q = q.filter(job::Column::Kind.eq(k));
        }
        if let Some(s) = state {
            q = q.filter(job::Column::State.eq(s.as_str()));
        }
        if let Some(k) = key {
            q = q.filter(job::Column::Key.eq(k));
        }
        q.limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Job::try_from)
            .collect()
    }

    /// Update a running job this worker holds; `false` when it no longer holds it.
    async fn update_held(
        &self,
        id: i64,
        set: &str,
        mut values: Vec<Value>,
    ) -> Result<bool, DbError> {
        let n = values.len();
        let sql = format!(
            "UPDATE job SET {set} WHERE id = ${} AND state = 'running' AND claimed_by = ${}",
            n + 1,
            n + 2
        );
        values.push(id.into());
        values.push(self.node.clone().into());
        let res = self.db.execute(self.stmt(&sql, values)).await?;
        Ok(res.rows_affected() == 1)
    }

    /// Record liveness and progress (0..=100).
    pub async fn heartbeat(&self, id: i64, progress: f64) -> Result<bool, DbError> {
        self.update_held(
            id,
            "heartbeat_at = $1, progress = $2",
            vec![Utc::now().into(), progress.clamp(0.0, 100.0).into()],
        )
        .await
    }

    /// The job is done.
    pub async fn succeed(&self, id: i64) -> Result<bool, DbError> {
        self.update_held(
            id,
            "state = 'succeeded', progress = 100, finished_at = $1, reason = NULL",
            vec![Utc::now().into()],
        )
        .await
    }

    /// The job does not apply (e.g. not a brain MRI): ended, not retried.
    pub async fn skip(&self, id: i64, reason: &str) -> Result<bool, DbError> {
        self.update_held(
            id,
            "state = 'skipped', finished_at = $1, reason = $2",
            vec![Utc::now().into(), reason.into()],
        )
        .await
    }

    /// The attempt failed: queued again after a backoff while attempts remain, else
    /// failed for good.
    pub async fn fail(&self, id: i64, reason: &str) -> Result<bool, DbError> {
        let Some(job) = self.get(id).await? else {
            return Ok(false);
        };
        let now = Utc::now();
        if job.attempts < job.max_attempts {
            let at = now + chrono_of(backoff(job.attempts - 1, self.retry_base));
            self.update_held(
                id,
                "state = 'queued', run_after = $1, reason = $2, claimed_by = NULL",
                vec![at.into(), reason.into()],
            )
            .await
        } else {
            self.update_held(
                id,
                "state = 'failed', finished_at = $1, reason = $2",
                vec![now.into(), reason.into()],
            )
            .await
        }
    }

    /// Put back running jobs whose heartbeat is older than `timeout` (their worker
    /// died): queued again, or failed when out of attempts. Returns how many.
    pub async fn requeue_stale(&self, timeout: Duration) -> Result<u64, DbError> {
        let now = Utc::now();
        let cutoff = now - chrono_of(timeout);
        let requeued = self
            .db
            .execute(self.stmt(
                "UPDATE job SET state = 'queued', claimed_by = NULL, run_after = $1, \
                 reason = 'worker lost (no heartbeat); retrying' \
                 WHERE state = 'running' AND heartbeat_at < $2 AND attempts < max_attempts",
                vec![now.into(), cutoff.into()],
            ))
            .await?
            .rows_affected();
        let failed = self
            .db
            .execute(self.stmt(
                "UPDATE job SET state = 'failed', finished_at = $1, \
                 reason = 'worker lost (no heartbeat); no attempts left' \
                 WHERE state = 'running' AND heartbeat_at < $2",
                vec![now.into(), cutoff.into()],
            ))
            .await?
            .rows_affected();
        Ok(requeued + failed)
    }

    /// Queued jobs per kind (for metrics).
    pub async fn queued(&self, kind: &str) -> Result<u64, DbError> {
        use sea_orm::PaginatorTrait;
        Ok(job::Entity::find()
            .filter(job::Column::Kind.eq(kind))
            .filter(job::Column::State.eq(JobState::Queued.as_str()))
            .count(&self.db)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_secs(10);
        assert_eq!(backoff(0, b), Duration::from_secs(10));
        assert_eq!(backoff(1, b), Duration::from_secs(20));
        assert_eq!(backoff(3, b), Duration::from_secs(80));
        assert_eq!(backoff(30, b), Duration::from_secs(3600));
    }
}
