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

enum Msg {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
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
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(db, rx));
        Self { tx }
    }

    /// Record one event (queued; committed shortly after, in order).
    pub async fn record(&self, event: AuditEvent) {
        if self.tx.send(Msg::Event(Box::new(event))).await.is_err() {
            tracing::error!("audit writer has stopped; an audit event was not recorded");
        }
    }

    /// Wait until every event recorded before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn writer(db: DatabaseConnection, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<AuditEvent> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        // Collect for up to LINGER (or until a flush or a full batch), so a stream of
        // accesses (C-STORE per instance) costs one transaction per burst, not per event.
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e) => batch.push(*e),
                Msg::Flush(w) => waiters.push(w),
            }
            if batch.len() >= BATCH {
                break;
            }
            next = match rx.try_recv() {
                Ok(m) => Some(m),
                Err(_) if waiters.is_empty() => tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten(),
                Err(_) => None,
            };
        }
        let mut attempt = 0u32;
        while !batch.is_empty() {
            match repo::append(&db, &batch).await {
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
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
