//! `IndexRepo`: every read and write of the study index goes through here.
//!
//! Writing an instance of a series this process has seen is one INSERT: triggers (see
//! the migrations) keep the per-level counters, ModalitiesInStudy, SOPClassesInStudy
//! and received-at times, atomically with it. A new series (or a replacement) is one
//! transaction: upsert patient, study and series, then the instance. On SQLite writes
//! are serialised by a process-wide lock (one writer anyway; no `SQLITE_BUSY` on lock
//! upgrades), and the one-INSERT path runs on a connection of its own outside the pool
//! (`db::writer`); on PostgreSQL the triggers' row locks keep concurrent counters exact.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, QueryTrait, TransactionTrait,
};
use tokio::sync::Mutex;

use super::entities::{instance, patient, sequence_item, series, study};
use super::record::{fuzzy_person_name, normalize_person_name, InstanceRecord};
use super::writer::SqliteWriter;
use super::DbError;
use crate::config::DuplicatePolicy;

/// Result of writing an instance into the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new instance row was written.
    Inserted,
    /// The SOP Instance UID was already indexed and the policy is `keep`: nothing written.
    Duplicate,
    /// The old row was replaced; its blob (returned) is no longer referenced.
    Replaced { old_blob_key: String },
}

/// Row counts per level (for `/health`).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, PartialEq, Eq)]
pub struct IndexCounts {
    pub patients: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
}

/// Where an instance lives, as the retrieve paths need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInstance {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub blob_key: String,
    pub size_bytes: i64,
}

/// What the series cache remembers: enough to index another instance of the series
/// with one INSERT, and to notice an instance that disagrees with its series.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KnownSeries {
    series_id: i64,
    study_uid: String,
    patient_id: String,
    issuer: String,
}

/// Bound on remembered series (cleared when full; a miss only costs the slow path).
const SERIES_CACHE_MAX: usize = 50_000;

/// The repository over the index database.
#[derive(Clone)]
pub struct IndexRepo {
    pub(super) db: DatabaseConnection,
    pub(super) write_lock: Option<Arc<Mutex<()>>>,
    /// SQLite: the fast path's own connection (see `db::writer`); `None` = the pool.
    writer: Option<Arc<SqliteWriter>>,
    series_cache: Arc<std::sync::Mutex<std::collections::HashMap<String, KnownSeries>>>,
}

impl IndexRepo {
    pub fn new(db: DatabaseConnection) -> Self {
        let write_lock = match db.get_database_backend() {
            DbBackend::Sqlite => Some(Arc::new(Mutex::new(()))),
            _ => None,
        };
        Self {
            db,
            write_lock,
            writer: None,
            series_cache: Arc::default(),
        }
    }

    /// On SQLite, give the one-INSERT fast path a connection of its own (`url` is the
    /// pool's `database.url`); a no-op on other backends.
    pub async fn with_sqlite_writer(mut self, url: &str) -> Result<Self, DbError> {
        if self.db.get_database_backend() == DbBackend::Sqlite {
            self.writer = Some(Arc::new(SqliteWriter::open(url).await?));
        }
        Ok(self)
    }

    fn known_series(&self, rec: &InstanceRecord) -> Option<i64> {
        let cache = self.series_cache.lock().ok()?;
        let k = cache.get(&rec.series_instance_uid)?;
        (k.study_uid == rec.study_instance_uid
            && k.patient_id == rec.patient_id
            && k.issuer == rec.issuer_of_patient_id)
            .then_some(k.series_id)
    }

    fn remember_series(&self, rec: &InstanceRecord, series_id: i64) {
        if let Ok(mut cache) = self.series_cache.lock() {
            if cache.len() >= SERIES_CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                rec.series_instance_uid.clone(),
                KnownSeries {
                    series_id,
                    study_uid: rec.study_instance_uid.clone(),
                    patient_id: rec.patient_id.clone(),
                    issuer: rec.issuer_of_patient_id.clone(),
                },
            );
        }
    }

    /// Close the pool (at shutdown, after the last write). sqlx's pool keeps a
    /// maintenance task that spins once the runtime's timers stop, so a pool still
    /// open when the runtime is dropped can keep the process from exiting.
    pub async fn close(&self) -> Result<(), DbError> {
        Ok(self.db.clone().close().await?)
    }

    /// The underlying connection (for migrations and health checks).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Is this SOP Instance UID indexed? Returns its blob key.
    pub async fn find_instance(&self, sop_uid: &str) -> Result<Option<StoredInstance>, DbError> {
        let row = instance::Entity::find()
            .filter(instance::Column::SopInstanceUid.eq(sop_uid))
            .one(&self.db)
            .await?;
        Ok(row.map(|r| StoredInstance {
            sop_instance_uid: r.sop_instance_uid,
            sop_class_uid: r.sop_class_uid,
            transfer_syntax_uid: r.transfer_syntax_uid,
            blob_key: r.blob_key,
            size_bytes: r.size_bytes,
        }))
    }

    /// May a sender whose reads are limited to `scope` add an instance to the study
    /// `study_uid`? Yes when the study is not indexed yet (it will be the sender's),
    /// else only when the scope sees it. One statement.
    pub async fn study_accepts(
        &self,
        study_uid: &str,
        scope: &crate::query::StudyScope,
    ) -> Result<bool, DbError> {
        use sea_orm::sea_query::{Alias, Expr, JoinType, SelectStatement};
        let Some(visible) = crate::query::scope::study_predicate(scope) else {
            return Ok(true);
        };
        let mut q = SelectStatement::new();
        q.expr_as(Expr::case(visible, 1).finally(0), Alias::new("visible"))
            .from_as(Alias::new("study"), Alias::new("st"))
            .join_as(
                JoinType::InnerJoin,
                Alias::new("patient"),
                Alias::new("p"),
                Expr::col((Alias::new("p"), Alias::new("id")))
                    .equals((Alias::new("st"), Alias::new("patient_fk"))),
            )
            .and_where(
                Expr::col((Alias::new("st"), Alias::new("study_instance_uid"))).eq(study_uid),
            )
            .limit(1);
        let stmt = self.db.get_database_backend().build(&q);
        match self.db.query_one(stmt).await? {
            None => Ok(true),
            Some(row) => Ok(row.try_get::<i32>("", "visible")? == 1),
        }
    }

    /// Counts of rows per level.
    pub async fn counts(&self) -> Result<IndexCounts, DbError> {
        Ok(IndexCounts {
            patients: patient::Entity::find().count(&self.db).await?,
            studies: study::Entity::find().count(&self.db).await?,
            series: series::Entity::find().count(&self.db).await?,
            instances: instance::Entity::find().count(&self.db).await?,
        })
    }

    /// Write one instance (with its patient, study, series) in one transaction.
    pub async fn insert_instance(
        &self,
        rec: &InstanceRecord,
        blob_key: &str,
        policy: DuplicatePolicy,
    ) -> Result<InsertOutcome, DbError> {
        // PostgreSQL may pick this transaction as a deadlock victim when associations
        // store into one study concurrently (the counter triggers lock series, study
        // and patient rows): it was rolled back whole, so it is simply retried.
        let mut attempt = 0u32;
        loop {
            match self.insert_instance_once(rec, blob_key, policy).await {
                Err(DbError::Db(e)) if attempt < 8 && is_transient(&e) => {
                    attempt += 1;
                    let jitter = u64::from(uuid::Uuid::new_v4().as_u128() as u8 % 20);
                    tokio::time::sleep(std::time::Duration::from_millis(
                        5 * u64::from(attempt) + jitter,
                    ))
                    .await;
                }
                other => return other,
            }
        }
    }

    async fn insert_instance_once(
        &self,
        rec: &InstanceRecord,
        blob_key: &str,
        policy: DuplicatePolicy,
    ) -> Result<InsertOutcome, DbError> {
        let _guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        // Fast path: a known series and the keep policy: one INSERT.
        if policy == DuplicatePolicy::Keep {
            if let Some(series_id) = self.known_series(rec) {
                let insert = instance::Entity::insert(instance_row(rec, series_id, blob_key))
                    .on_conflict(
                        OnConflict::column(instance::Column::SopInstanceUid)
                            .do_nothing()
                            .to_owned(),
                    )
                    .do_nothing();
                let inserted = match &self.writer {
                    Some(w) => w.execute(insert.build(DbBackend::Sqlite)).await? > 0,
                    None => matches!(
                        insert.exec_without_returning(&self.db).await?,
                        sea_orm::TryInsertResult::Inserted(n) if n > 0
                    ),
                };
                return Ok(if inserted {
                    InsertOutcome::Inserted
                } else {
                    InsertOutcome::Duplicate
                });
            }
        }
        let txn = self.db.begin().await?;
        let (outcome, series_id) = match insert_in_txn(&txn, rec, blob_key, policy).await {
            Ok(x) => x,
            Err(e) => {
                let _ = txn.rollback().await;
                return Err(e);
            }
        };
        if outcome == InsertOutcome::Duplicate {
            txn.rollback().await?;
        } else {
            txn.commit().await?;
        }
        if let Some(id) = series_id {
            self.remember_series(rec, id);
        }
        Ok(outcome)
    }
}

/// Deadlock victim or serialization failure (SQLSTATE 40P01 / 40001): safe to retry.
fn is_transient(e: &sea_orm::DbErr) -> bool {
    let msg = e.to_string();
    msg.contains("deadlock detected")
        || msg.contains("could not serialize")
        || msg.contains("40P01")
        || msg.contains("40001")
}

fn instance_row(rec: &InstanceRecord, series_id: i64, blob_key: &str) -> instance::ActiveModel {
    instance::ActiveModel {
        series_fk: Set(series_id),
        sop_instance_uid: Set(rec.sop_instance_uid.clone()),
        sop_class_uid: Set(rec.sop_class_uid.clone()),
        instance_number: Set(rec.instance_number),
        content_date: Set(rec.content_date.clone()),
        content_time: Set(rec.content_time.clone()),
        rows: Set(rec.rows),
        columns: Set(rec.columns),
        number_of_frames: Set(rec.number_of_frames),
        bits_allocated: Set(rec.bits_allocated),
        photometric_interpretation: Set(rec.photometric_interpretation.clone()),
        transfer_syntax_uid: Set(rec.transfer_syntax_uid.clone()),
        size_bytes: Set(rec.size_bytes),
        blob_key: Set(blob_key.to_string()),
        source_ae: Set(rec.source_ae.clone()),
        received_at: Set(Utc::now()),
        metadata: Set(rec.metadata.clone()),
        layout: Set(rec.layout.clone()),
        ..Default::default()
    }
}

/// The slow path, inside a transaction: upsert the levels, insert the instance.
/// Returns the outcome and the series row id (for the cache) when it is consistent.
async fn insert_in_txn(
    txn: &DatabaseTransaction,
    rec: &InstanceRecord,
    blob_key: &str,
    policy: DuplicatePolicy,
) -> Result<(InsertOutcome, Option<i64>), DbError> {
    let now = Utc::now();
    let mut outcome = InsertOutcome::Inserted;
    if let Some(old) = instance::Entity::find()
        .filter(instance::Column::SopInstanceUid.eq(&rec.sop_instance_uid))
        .one(txn)
        .await?
    {
        match policy {
            DuplicatePolicy::Keep => return Ok((InsertOutcome::Duplicate, None)),
            DuplicatePolicy::Replace => {
                // Triggers decrement the counters.
                instance::Entity::delete_by_id(old.id).exec(txn).await?;
                outcome = InsertOutcome::Replaced {
                    old_blob_key: old.blob_key,
                };
            }
        }
    }

    let (patient, _) = upsert_patient(txn, rec, now).await?;
    let (study, study_created) = upsert_study(txn, rec, patient.id, now).await?;
    if study_created {
        insert_sequence_items(txn, rec, 2, study.id).await?;
    }
    let mut consistent = true;
    if study.patient_fk != patient.id {
        consistent = false;
        tracing::warn!(
            study_row = study.id,
            "study is already indexed under another patient; the instance joins the existing study"
        );
    }
    let (series, series_created) = upsert_series(txn, rec, study.id, now).await?;
    // Lock order: every path takes series, then study, then patient rows (the order of
    // the counter triggers of an instance INSERT), so concurrent stores into one study
    // never deadlock — PostgreSQL would find a deadlock only after `deadlock_timeout`
    // (1 s) and the retry would cost as much again. A series this transaction did not
    // create may be written by a concurrent one-INSERT store: take its row now, before
    // the instance INSERT's trigger reaches the study. (NO KEY UPDATE: what the
    // trigger's UPDATE takes; it does not block foreign-key checks.)
    if !series_created && txn.get_database_backend() == DbBackend::Postgres {
        series::Entity::find_by_id(series.id)
            .lock(sea_orm::sea_query::LockType::NoKeyUpdate)
            .one(txn)
            .await?;
    }
    if series_created {
        insert_sequence_items(txn, rec, 3, series.id).await?;
    }
    if series.study_fk != study.id {
        consistent = false;
        tracing::warn!(
            series_row = series.id,
            "series is already indexed under another study; the instance joins the existing series"
        );
    }

    let inserted = instance::Entity::insert(instance_row(rec, series.id, blob_key))
        .on_conflict(
            OnConflict::column(instance::Column::SopInstanceUid)
                .do_nothing()
                .to_owned(),
        )
        .do_nothing()
        .exec_without_returning(txn)
        .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        // Another association indexed the same SOP Instance UID concurrently.
        return Ok((InsertOutcome::Duplicate, None));
    }
    Ok((outcome, consistent.then_some(series.id)))
}

/// The sequence items of a new study (`level` 2) or series (3), from its first instance.
async fn insert_sequence_items(
    txn: &DatabaseTransaction,
    rec: &InstanceRecord,
    level: i16,
    owner_fk: i64,
) -> Result<(), DbError> {
    let rows: Vec<sequence_item::ActiveModel> = rec
        .sequence_items
        .iter()
        .filter(|v| v.level == level)
        .map(|v| sequence_item::ActiveModel {
            level: Set(level),
            owner_fk: Set(owner_fk),
            sequence_tag: Set(v.sequence_tag),
            item: Set(v.item),
            attr_tag: Set(v.attr_tag),
            value: Set(v.value.clone()),
            ..Default::default()
        })
        .collect();
    if !rows.is_empty() {
        sequence_item::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn upsert_patient(
    txn: &DatabaseTransaction,
    rec: &InstanceRecord,
    now: chrono::DateTime<Utc>,
) -> Result<(patient::Model, bool), DbError> {
    let find = || {
        patient::Entity::find()
            .filter(patient::Column::PatientId.eq(&rec.patient_id))
            .filter(patient::Column::IssuerOfPatientId.eq(&rec.issuer_of_patient_id))
    };
    let mut created = false;
    if find().one(txn).await?.is_none() {
        let res = patient::Entity::insert(patient::ActiveModel {
            patient_id: Set(rec.patient_id.clone()),
            issuer_of_patient_id: Set(rec.issuer_of_patient_id.clone()),
            patient_name: Set(rec.patient_name.clone()),
            patient_name_norm: Set(rec.patient_name.as_deref().map(normalize_person_name)),
            patient_name_fuzzy: Set(rec.patient_name.as_deref().map(fuzzy_person_name)),
            patient_birth_date: Set(rec.patient_birth_date.clone()),
            patient_sex: Set(rec.patient_sex.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([
                patient::Column::PatientId,
                patient::Column::IssuerOfPatientId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .do_nothing()
        .exec_without_returning(txn)
        .await?;
        created = matches!(res, sea_orm::TryInsertResult::Inserted(n) if n > 0);
    }
    let row = find()
        .one(txn)
        .await?
        .ok_or_else(|| DbError::Db(sea_orm::DbErr::RecordNotFound("patient".into())))?;
    if !created && row.patient_name != rec.patient_name {
        // Stored anyway; the first name seen stays in the index. No PHI in the log.
        tracing::warn!(
            patient_row = row.id,
            "patient-level conflict: same PatientID, different PatientName"
        );
    }
    Ok((row, created))
}

async fn upsert_study(
    txn: &DatabaseTransaction,
    rec: &InstanceRecord,
    patient_fk: i64,
    now: chrono::DateTime<Utc>,
) -> Result<(study::Model, bool), DbError> {
    let find = || {
        // Not locked here: see the lock order in `insert_in_txn`.
        study::Entity::find().filter(study::Column::StudyInstanceUid.eq(&rec.study_instance_uid))
    };
    let mut created = false;
    if find().one(txn).await?.is_none() {
        let res = study::Entity::insert(study::ActiveModel {
            patient_fk: Set(patient_fk),
            study_instance_uid: Set(rec.study_instance_uid.clone()),
            study_date: Set(rec.study_date.clone()),
            study_time: Set(rec.study_time.clone()),
            accession_number: Set(rec.accession_number.clone()),
            study_id: Set(rec.study_id.clone()),
            referring_physician_name: Set(rec.referring_physician_name.clone()),
            referring_physician_name_norm: Set(rec
                .referring_physician_name
                .as_deref()
                .map(normalize_person_name)),
            referring_physician_name_fuzzy: Set(rec
                .referring_physician_name
                .as_deref()
                .map(fuzzy_person_name)),
            study_description: Set(rec.study_description.clone()),
            institution_name: Set(rec.institution_name.clone()),
            modalities_in_study: Set(String::new()),
            sop_classes_in_study: Set(String::new()),
            specific_character_set: Set(rec.specific_character_set.clone()),
            created_at: Set(now),
            last_received_at: Set(now),
            centre_id: Set(rec.centre_id),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::column(study::Column::StudyInstanceUid)
                .do_nothing()
                .to_owned(),
        )
        .do_nothing()
        .exec_without_returning(txn)
        .await?;
        created = matches!(res, sea_orm::TryInsertResult::Inserted(n) if n > 0);
    }
    let row = find()
        .one(txn)
        .await?
        .ok_or_else(|| DbError::Db(sea_orm::DbErr::RecordNotFound("study".into())))?;
    Ok((row, created))
}

async fn upsert_series(
    txn: &DatabaseTransaction,
    rec: &InstanceRecord,
    study_fk: i64,
    now: chrono::DateTime<Utc>,
) -> Result<(series::Model, bool), DbError> {
    let find = || {
        series::Entity::find()
            .filter(series::Column::SeriesInstanceUid.eq(&rec.series_instance_uid))
    };
    let mut created = false;
    if find().one(txn).await?.is_none() {
        let res = series::Entity::insert(series::ActiveModel {
            study_fk: Set(study_fk),
            series_instance_uid: Set(rec.series_instance_uid.clone()),
            modality: Set(rec.modality.clone()),
            series_number: Set(rec.series_number),
            series_description: Set(rec.series_description.clone()),
            body_part_examined: Set(rec.body_part_examined.clone()),
            protocol_name: Set(rec.protocol_name.clone()),
            series_date: Set(rec.series_date.clone()),
            series_time: Set(rec.series_time.clone()),
            performed_procedure_step_start_date: Set(rec
                .performed_procedure_step_start_date
                .clone()),
            frame_of_reference_uid: Set(rec.frame_of_reference_uid.clone()),
            laterality: Set(rec.laterality.clone()),
            manufacturer: Set(rec.manufacturer.clone()),
            station_name: Set(rec.station_name.clone()),
            created_at: Set(now),
            last_received_at: Set(now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::column(series::Column::SeriesInstanceUid)
                .do_nothing()
                .to_owned(),
        )
        .do_nothing()
        .exec_without_returning(txn)
        .await?;
        created = matches!(res, sea_orm::TryInsertResult::Inserted(n) if n > 0);
    }
    let row = find()
        .one(txn)
        .await?
        .ok_or_else(|| DbError::Db(sea_orm::DbErr::RecordNotFound("series".into())))?;
    Ok((row, created))
}
