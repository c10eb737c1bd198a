//! The audit trail: every access to patient data — DIMSE store/find/move/get and
//! every HTTP read or change — becomes one [`AuditEvent`] (who, from where, what,
//! when, outcome), appended to the database's `audit_event` table.
//!
//! Surfaces call [`Audit::record`]; a single writer task batches events into one
//! transaction per burst so auditing never serialises requests on the index.
//! [`Audit::flush`] waits until everything recorded so far is committed (tests,
//! shutdown). Audit rows may hold patient identifiers and UIDs (that is their
//! purpose, and only admins read them); log lines never do.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use crate::db::audit as repo;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// An authenticated HTTP user.
    User,
    /// A DICOM application entity (calling AE title).
    Ae,
    /// An unauthenticated HTTP client.
    Anonymous,
    /// Glia itself (AI pipeline, maintenance).
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Ae => "ae",
            ActorKind::Anonymous => "anonymous",
            ActorKind::System => "system",
        }
    }
}

/// Which surface the access came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Dimse,
    DicomWeb,
    Api,
    Internal,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Dimse => "dimse",
            Surface::DicomWeb => "dicomweb",
            Surface::Api => "api",
            Surface::Internal => "internal",
        }
    }
}

/// How the access ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused by access control (unknown AE, missing role, invisible study ...).
    Denied,
    /// Allowed but failed (bad input, not found, server error).
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// One access. Build with [`AuditEvent::new`] and the `with_*`-style setters.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub actor_kind: ActorKind,
    /// Username or calling AE title.
    pub actor: Option<String>,
    pub user_id: Option<i64>,
    pub role: Option<String>,
    pub centre_id: Option<i64>,
    pub remote_ip: Option<String>,
    pub surface: Surface,
    /// What was done, e.g. `store`, `find`, `move`, `get`, `qido`, `wado`, `stow`,
    /// `metadata`, `login`, `user.create`.
    pub action: String,
    pub outcome: Outcome,
    /// HTTP status code or DIMSE status.
    pub status: Option<i32>,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub sop_uid: Option<String>,
    /// Short free text (query keys, reason of a denial); never a token or password.
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event happening now; everything else unset (actor anonymous, outcome success).
    pub fn new(surface: Surface, action: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            actor_kind: ActorKind::Anonymous,
            actor: None,
            user_id: None,
            role: None,
            centre_id: None,
            remote_ip: None,
            surface,
            action: action.into(),
            outcome: Outcome::Success,
            status: None,
            patient_id: None,
            study_uid: None,
            series_uid: None,
            sop_uid: None,
            detail: None,
        }
    }

    /// The actor is a DICOM AE.
    pub fn ae(mut self, calling_ae: &str) -> Self {
        self.actor_kind = ActorKind::Ae;
        self.actor = Some(calling_ae.to_string());
        self
    }

    /// The actor is a user.
    pub fn user(mut self, id: i64, username: &str, role: &str) -> Self {
        self.actor_kind = ActorKind::User;
        self.user_id = Some(id);
        self.actor = Some(username.to_string());
        self.role = Some(role.to_string());
        self
    }

    /// The actor is Glia itself.
    pub fn system(mut self, component: &str) -> Self {
        self.actor_kind = ActorKind::System;
        self.actor = Some(component.to_string());
        self
    }

    pub fn centre(mut self, centre_id: Option<i64>) -> Self {
        self.centre_id = centre_id;
        self
    }

    pub fn from_ip(mut self, ip: Option<std::net::IpAddr>) -> Self {
        self.remote_ip = ip.map(|i| i.to_string());
        self
    }

    pub fn outcome(mut self, outcome: Outcome, status: Option<i32>) -> Self {
        self.outcome = outcome;
        self.status = status;
        self
    }

    pub fn patient(mut self, patient_id: Option<&str>) -> Self {
        self.patient_id = patient_id.filter(|s| !s.is_empty()).map(str::to_string);
        self
    }

    pub fn study(mut self, uid: Option<&str>) -> Self {
        self.study_uid = uid.filter(|s| !s.is_empty()).map(str::to_string);
        self
    }

    pub fn series(mut self, uid: Option<&str>) -> Self {
        self.series_uid = uid.filter(|s| !s.is_empty()).map(str::to_string);
        self
    }

    pub fn instance(mut self, uid: Option<&str>) -> Self {
        self.sop_uid = uid.filter(|s| !s.is_empty()).map(str::to_string);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        let mut d: String = detail.into();
        if d.len() > 1024 {
            let mut cut = 1024;
            while !d.is_char_boundary(cut) {
                cut -= 1;
            }
            d.truncate(cut);
        }
        self.detail = Some(d);
        self
    }
}

/// Handle to the audit writer; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    events: mpsc::Sender<Box<AuditEvent>>,
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

/// Events queued before `record` waits for the writer (back-pressure, never loss).
const QUEUE: usize = 8192;
/// Most events written per transaction.
const BATCH: usize = 1000;
/// How long the writer waits for more events before writing a batch.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

impl Audit {
    /// Start the writer task on the current runtime. It runs until every handle
    /// is dropped, writing whatever is still queued first.
    pub fn start(db: DatabaseConnection) -> Self {
        let (events, rx) = mpsc::channel(QUEUE);
        let (flushes, flush_rx) = mpsc::channel(64);
        tokio::spawn(writer(db, rx, flush_rx));
        Self { events, flushes }
    }

    /// Record one event (queued; committed shortly after, in order).
    pub async fn record(&self, event: AuditEvent) {
        if self.events.send(Box::new(event)).await.is_err() {
            tracing::error!("audit writer has stopped; an audit event was not recorded");
        }
    }

    /// Wait until every event recorded before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn writer(
    db: DatabaseConnection,
    mut events: mpsc::Receiver<Box<AuditEvent>>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut batch: Vec<AuditEvent> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // Idle until an event or a flush arrives.
        let open = tokio::select! {
            e = events.recv() => e.map(|e| batch.push(*e)).is_some(),
            f = flushes.recv() => f.map(|w| waiters.push(w)).is_some(),
        };
        // Linger so that a stream of accesses (C-STORE per instance, a viewer's
        // requests) costs one transaction per burst. Events arriving meanwhile wait in
        // the channel without waking the writer; only a flush cuts the wait short.
        if open && waiters.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                f = flushes.recv() => waiters.extend(f),
            }
        }
        // Flushes taken now are answered after every event queued before them.
        while let Ok(w) = flushes.try_recv() {
            waiters.push(w);
        }
        loop {
            while batch.len() < BATCH {
                match events.try_recv() {
                    Ok(e) => batch.push(*e),
                    Err(_) => break,
                }
            }
            let full = batch.len() >= BATCH;
            write_batch(&db, &mut batch).await;
            if !full {
                break;
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if !open {
            // Every handle is gone and what was queued is written.
            return;
        }
    }
}

/// Append `batch` in one transaction (retrying a failing database for a while),
/// leaving it empty.
async fn write_batch(db: &DatabaseConnection, batch: &mut Vec<AuditEvent>) {
    let mut attempt = 0u32;
    while !batch.is_empty() {
        match repo::append(db, batch).await {
            Ok(()) => batch.clear(),
            Err(e) if attempt < 10 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "audit write failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                    .await;
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "audit events could not be written");
                batch.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rows(db: &DatabaseConnection) -> usize {
        let f = repo::AuditFilter {
            limit: 100_000,
            ..Default::default()
        };
        repo::list(db, &f).await.unwrap().len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_waits_for_everything_recorded_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/a.db", dir.path().display());
        let db = crate::db::open(&url, 2).await.unwrap();
        let audit = Audit::start(db.clone());
        // More than one transaction's worth, from several tasks at once.
        let mut tasks = Vec::new();
        for t in 0..4 {
            let a = audit.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..(BATCH / 2 + 7) {
                    a.record(AuditEvent::new(Surface::Dimse, "store").detail(format!("{t}/{i}")))
                        .await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        audit.flush().await;
        assert_eq!(rows(&db).await, 4 * (BATCH / 2 + 7));
        // Events recorded after a flush are written too, and dropping the last handle
        // writes what is still queued.
        audit.record(AuditEvent::new(Surface::Api, "login")).await;
        audit.flush().await;
        assert_eq!(rows(&db).await, 4 * (BATCH / 2 + 7) + 1);
        audit.record(AuditEvent::new(Surface::Api, "logout")).await;
        drop(audit);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while rows(&db).await < 4 * (BATCH / 2 + 7) + 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "queued event lost at drop"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
