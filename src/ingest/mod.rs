//! The one ingest path. C-STORE, `glia import`, STOW-RS and AI outputs all store
//! instances through `Ingestor::ingest`:
//!
//! spool → parse header → validate → put blob → index in one transaction → success.
//!
//! A rejected or failed instance leaves nothing behind: the spool file deletes itself,
//! a blob whose index transaction failed is deleted, and a duplicate stores nothing.

pub mod header;
pub mod layout;
pub mod spool;
pub mod structure;
pub mod uid;

use std::sync::Arc;
use std::time::Instant;

use crate::config::DuplicatePolicy;
use crate::db::{DbError, IndexRepo, InsertOutcome};
use crate::metrics::Metrics;
use crate::query::StudyScope;
use crate::store::{BlobKey, BlobStore, StoreError};
pub use spool::{MemoryLimits, Spool, SpoolFile, SpoolWriter};

/// Where an instance comes from and what the request said it is.
#[derive(Debug, Clone, Default)]
pub struct IngestContext {
    /// Calling AE title (DIMSE) or another short source label. Never PHI.
    pub source_ae: Option<String>,
    /// The sender's diagnostic centre (from its `[[dimse.peers]]` entry or user), if known.
    pub centre_id: Option<i64>,
    /// The SOP Class UID the request announced (C-STORE Affected SOP Class UID).
    pub expected_sop_class_uid: Option<String>,
    /// The SOP Instance UID the request announced.
    pub expected_sop_instance_uid: Option<String>,
    /// The Study Instance UID the request is bound to (STOW-RS `/studies/{study}`).
    pub expected_study_instance_uid: Option<String>,
    /// The existing studies the sender may add instances to (its read scope: STOW-RS
    /// users). New studies are always accepted; an existing study outside the scope is
    /// refused, so nobody can write into another centre's study. `All` for DIMSE peers
    /// and Glia itself.
    pub scope: StudyScope,
}

/// Why an instance was not stored. Messages never contain patient data or UID values.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("not a readable DICOM object: {0}")]
    Unreadable(String),
    #[error("{0} is missing")]
    MissingAttribute(&'static str),
    #[error("{name} {problem}")]
    InvalidUid {
        name: &'static str,
        problem: uid::UidProblem,
    },
    #[error("SOP Class UID of the data set ({found}) differs from the request ({expected})")]
    SopClassMismatch { expected: String, found: String },
    #[error("SOP Instance UID of the data set differs from the request")]
    SopInstanceMismatch,
    #[error("Study Instance UID of the data set differs from the request")]
    StudyMismatch,
    #[error("file meta information does not match the data set's SOP Class/Instance UID")]
    MetaMismatch,
    #[error("the study exists and the sender may not add instances to it")]
    NotAuthorized,
    #[error("object exceeds the size limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("spool I/O failed: {0}")]
    Io(String),
    #[error("blob store failed: {0}")]
    Store(#[from] StoreError),
    #[error("index failed: {0}")]
    Index(#[from] DbError),
}

impl IngestError {
    /// A stable machine-readable code (metrics, HTTP error bodies, import summary).
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Unreadable(_) => "unreadable",
            IngestError::MissingAttribute(_) => "missing_attribute",
            IngestError::InvalidUid { .. } => "invalid_uid",
            IngestError::SopClassMismatch { .. } => "sop_class_mismatch",
            IngestError::SopInstanceMismatch => "sop_instance_mismatch",
            IngestError::StudyMismatch => "study_mismatch",
            IngestError::MetaMismatch => "meta_mismatch",
            IngestError::NotAuthorized => "not_authorized",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::Io(_) => "io",
            IngestError::Store(_) => "store",
            IngestError::Index(_) => "index",
        }
    }

    /// Is this the sender's fault (bad object) rather than ours (resources)?
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            IngestError::Io(_)
                | IngestError::Store(_)
                | IngestError::Index(_)
                | IngestError::TooLarge { .. }
        )
    }
}

/// What happened to an instance that was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored.
    New { blob_key: BlobKey },
    /// Already stored; nothing was written (duplicate policy `keep`).
    Duplicate,
    /// Replaced an instance with the same SOP Instance UID (policy `replace`).
    Replaced { blob_key: BlobKey },
}

/// The UIDs of an accepted instance (valid per PS3.5 §9.1, so safe to echo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
}

/// An object parsed and validated by [`Ingestor::prepare`], not stored yet.
pub struct Prepared {
    file: SpoolFile,
    record: crate::db::InstanceRecord,
    identity: InstanceIdentity,
    scope: StudyScope,
}

impl Prepared {
    /// The UIDs of the object (validated).
    pub fn identity(&self) -> &InstanceIdentity {
        &self.identity
    }
}

/// The ingest service shared by every surface.
#[derive(Clone)]
pub struct Ingestor {
    store: BlobStore,
    repo: IndexRepo,
    spool: Spool,
    policy: DuplicatePolicy,
    metrics: Arc<Metrics>,
    bulk_threshold: u64,
}

impl Ingestor {
    pub fn new(
        store: BlobStore,
        repo: IndexRepo,
        spool: Spool,
        policy: DuplicatePolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            repo,
            spool,
            policy,
            metrics,
            bulk_threshold: 1024,
        }
    }

    /// Binary values longer than this become BulkDataURIs in the precomputed
    /// WADO-RS metadata (`[dicomweb] bulk_data_threshold`).
    pub fn with_bulk_threshold(mut self, bytes: u64) -> Self {
        self.bulk_threshold = bytes;
        self
    }

    /// The spool new objects are written into.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Store one complete spooled Part 10 object. The spool file is consumed (and
    /// deleted) whatever the outcome.
    pub async fn ingest(&self, file: SpoolFile, ctx: IngestContext) -> Result<Stored, IngestError> {
        self.ingest_identified(file, ctx).await.map(|(s, _)| s)
    }

    /// [`Ingestor::ingest`], also returning the identity of the accepted instance (for
    /// responses that name it, e.g. STOW-RS), so callers need not parse it again.
    pub async fn ingest_identified(
        &self,
        file: SpoolFile,
        ctx: IngestContext,
    ) -> Result<(Stored, InstanceIdentity), IngestError> {
        let started = Instant::now();
        let result = self.ingest_inner(file, ctx).await;
        self.observe(&result, started);
        result
    }

    /// Count an outcome in the metrics.
    fn observe(&self, result: &Result<(Stored, InstanceIdentity), IngestError>, started: Instant) {
        match result {
            Ok((Stored::New { .. } | Stored::Replaced { .. }, _)) => {
                self.metrics.instances_stored.inc();
                self.metrics
                    .ingest_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            Ok((Stored::Duplicate, _)) => {}
            Err(e) => {
                self.metrics
                    .ingest_failures
                    .with_label_values(&[e.code()])
                    .inc();
            }
        }
    }

    async fn ingest_inner(
        &self,
        file: SpoolFile,
        ctx: IngestContext,
    ) -> Result<(Stored, InstanceIdentity), IngestError> {
        if ctx.scope.is_all() && file.bytes().is_some() {
            return self.ingest_in_one_hop(file, ctx).await;
        }
        let prepared = self.prepare_inner(file, ctx).await?;
        self.commit_inner(prepared).await
    }

    /// [`Ingestor::ingest`] for an object held in memory from a sender without a
    /// scope: parse, validate and (on a local directory store) write the blob in one
    /// blocking task, then index. The same steps in the same order as
    /// `prepare` + `commit`, with one thread hand-off instead of two.
    async fn ingest_in_one_hop(
        &self,
        file: SpoolFile,
        ctx: IngestContext,
    ) -> Result<(Stored, InstanceIdentity), IngestError> {
        let threshold = self.bulk_threshold;
        let store = self.store.clone();
        let (file, parsed) = run_blocking(move || {
            let parsed = header::parse_and_validate(&file, &ctx, threshold).and_then(|record| {
                let key = store.instance_key(
                    &record.study_instance_uid,
                    &record.series_instance_uid,
                    &record.sop_instance_uid,
                );
                let bytes = file.bytes().map(|b| &b[..]).unwrap_or_default();
                let written = store.put_local_blocking(&key, bytes)?;
                Ok((record, key, written))
            });
            (file, parsed)
        })
        .await
        .map_err(|e| IngestError::Io(e.to_string()))?;
        let (record, key, written) = parsed?;
        let size = if written {
            file.len().map_err(|e| IngestError::Io(e.to_string()))?
        } else {
            self.store.put_spooled(&key, &file).await?
        };
        drop(file);
        let id = identity_of(&record);
        self.index(record, key, size, id).await
    }

    /// The first half of [`Ingestor::ingest`]: parse and validate a spooled object
    /// (off the async runtime). Nothing is stored yet; dropping the result stores
    /// nothing. STOW-RS prepares parts while the rest of its body is still arriving.
    pub async fn prepare(
        &self,
        file: SpoolFile,
        ctx: IngestContext,
    ) -> Result<Prepared, IngestError> {
        let result = self.prepare_inner(file, ctx).await;
        if let Err(e) = &result {
            self.metrics
                .ingest_failures
                .with_label_values(&[e.code()])
                .inc();
        }
        result
    }

    async fn prepare_inner(
        &self,
        file: SpoolFile,
        ctx: IngestContext,
    ) -> Result<Prepared, IngestError> {
        let threshold = self.bulk_threshold;
        let scope = ctx.scope.clone();
        let (file, record) = tokio::task::spawn_blocking(move || {
            let rec = header::parse_and_validate(&file, &ctx, threshold);
            (file, rec)
        })
        .await
        .map_err(|e| IngestError::Io(e.to_string()))?;
        let record = record?;
        let identity = identity_of(&record);
        Ok(Prepared {
            file,
            record,
            identity,
            scope,
        })
    }

    /// The second half of [`Ingestor::ingest`]: store a prepared object (blob, then
    /// index in one transaction). With the same metrics as `ingest`.
    pub async fn commit(
        &self,
        prepared: Prepared,
    ) -> Result<(Stored, InstanceIdentity), IngestError> {
        let started = Instant::now();
        let result = self.commit_inner(prepared).await;
        self.observe(&result, started);
        result
    }

    async fn commit_inner(
        &self,
        prepared: Prepared,
    ) -> Result<(Stored, InstanceIdentity), IngestError> {
        let Prepared {
            file,
            record,
            identity: id,
            scope,
        } = prepared;
        // A restricted sender may create studies but only add to studies it can see.
        // Checked before anything is written; a study appearing between this check and
        // the index write would need its (globally unique) UID guessed in advance.
        if !scope.is_all()
            && !self
                .repo
                .study_accepts(&record.study_instance_uid, &scope)
                .await?
        {
            return Err(IngestError::NotAuthorized);
        }

        // No duplicate pre-check: the index write detects a duplicate atomically (the
        // unique SOP Instance UID), and the blob put for it is then undone. That keeps
        // new instances — nearly all of them — at one index round trip.

        let key = self.store.instance_key(
            &record.study_instance_uid,
            &record.series_instance_uid,
            &record.sop_instance_uid,
        );
        let size = self.store.put_spooled(&key, &file).await?;
        drop(file);
        self.index(record, key, size, id).await
    }

    /// The last step: index a stored blob in one transaction; the blob is removed again
    /// when the index keeps the existing instance or fails.
    async fn index(
        &self,
        record: crate::db::InstanceRecord,
        key: BlobKey,
        size: u64,
        id: InstanceIdentity,
    ) -> Result<(Stored, InstanceIdentity), IngestError> {
        match self
            .repo
            .insert_instance(&record, &key.0, self.policy)
            .await
        {
            Ok(InsertOutcome::Inserted) => {
                self.metrics.bytes_stored.inc_by(size);
                Ok((Stored::New { blob_key: key }, id))
            }
            Ok(InsertOutcome::Duplicate) => {
                self.store.delete(&key).await?;
                Ok((Stored::Duplicate, id))
            }
            Ok(InsertOutcome::Replaced { old_blob_key }) => {
                self.metrics.bytes_stored.inc_by(size);
                if let Err(e) = self.store.delete(&BlobKey(old_blob_key)).await {
                    tracing::warn!(error = %e, "replaced object's old blob could not be deleted");
                }
                Ok((Stored::Replaced { blob_key: key }, id))
            }
            Err(e) => {
                if let Err(del) = self.store.delete(&key).await {
                    tracing::error!(error = %del, key = %key, "orphan blob after failed index write");
                }
                Err(e.into())
            }
        }
    }
}

/// Run a short blocking step (parse an object held in memory, write a local blob)
/// for an async caller. On the multi-thread runtime it runs in place
/// (`block_in_place`: this worker's other tasks move to another thread while it
/// runs), which spares the caller a round trip through the blocking pool; elsewhere
/// it goes to the blocking pool.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        Ok(tokio::task::block_in_place(f))
    } else {
        tokio::task::spawn_blocking(f).await
    }
}

/// The UIDs of a parsed object.
fn identity_of(record: &crate::db::InstanceRecord) -> InstanceIdentity {
    InstanceIdentity {
        sop_class_uid: record.sop_class_uid.clone(),
        sop_instance_uid: record.sop_instance_uid.clone(),
        study_instance_uid: record.study_instance_uid.clone(),
        series_instance_uid: record.series_instance_uid.clone(),
    }
}
