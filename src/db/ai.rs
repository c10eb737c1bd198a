//! The AI pipeline's repository: stable-study detection (a compare-and-set on
//! `study.ai_checked_at` committed together with the job it queues, so each burst
//! of instances triggers exactly one job whichever node sees it first), the study
//! facts a job reads, and `ai_result` rows (a new result supersedes the study's
//! current one; superseded rows are kept).

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};

use super::entities::{ai_result, instance, series, study};
use super::jobs::JobQueue;
use super::DbError;

/// A study that has received nothing for a while and is not handled for its
/// latest instance yet.
#[derive(Debug, Clone, PartialEq)]
pub struct StableStudy {
    pub id: i64,
    pub study_uid: String,
    pub last_received_at: DateTime<Utc>,
    /// Whether it was handled before (then a new job means a late instance).
    pub checked_before: bool,
}

/// Studies whose last instance arrived before `cutoff` and that were not handed to
/// the pipeline for that instance yet, oldest first.
pub async fn stable_studies(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<StableStudy>, DbError> {
    let rows = study::Entity::find()
        .filter(study::Column::LastReceivedAt.lt(cutoff))
        .filter(
            Condition::any()
                .add(study::Column::AiCheckedAt.is_null())
                .add(
                    Expr::col(study::Column::AiCheckedAt)
                        .lt(Expr::col(study::Column::LastReceivedAt)),
                ),
        )
        .order_by_asc(study::Column::LastReceivedAt)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| StableStudy {
            id: s.id,
            study_uid: s.study_instance_uid,
            last_received_at: s.last_received_at,
            checked_before: s.ai_checked_at.is_some(),
        })
        .collect())
}

/// Mark `s` handled for its `last_received_at` and, when `job` is given, queue that
/// job, in one transaction. Returns whether this caller won the study (another
/// node, or a newer instance, makes the compare-and-set fail and nothing happens).
pub async fn claim_stable(
    db: &DatabaseConnection,
    s: &StableStudy,
    job: Option<(&str, &str, i32)>,
) -> Result<Option<Option<i64>>, DbError> {
    let txn = db.begin().await?;
    let won = study::Entity::update_many()
        .col_expr(study::Column::AiCheckedAt, Expr::value(s.last_received_at))
        .filter(study::Column::Id.eq(s.id))
        .filter(study::Column::LastReceivedAt.eq(s.last_received_at))
        .filter(
            Condition::any()
                .add(study::Column::AiCheckedAt.is_null())
                .add(study::Column::AiCheckedAt.lt(s.last_received_at)),
        )
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if !won {
        txn.rollback().await?;
        return Ok(None);
    }
    let id = match job {
        Some((kind, payload, attempts)) => {
            JobQueue::enqueue_on(&txn, kind, &s.study_uid, payload, attempts).await?
        }
        None => None,
    };
    txn.commit().await?;
    Ok(Some(id))
}

/// The study's `last_received_at`, or `None` when the study is unknown.
pub async fn study_stamp(
    db: &DatabaseConnection,
    study_uid: &str,
) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(study::Entity::find()
        .filter(study::Column::StudyInstanceUid.eq(study_uid))
        .one(db)
        .await?
        .map(|s| s.last_received_at))
}

/// After a job stored its output: mark the study handled up to now unless an
/// instance from elsewhere (any source but `own_source`) arrived after `input_stamp`
/// (then the study stays pending and is picked up again once stable).
pub async fn settle_after_output(
    db: &DatabaseConnection,
    study_uid: &str,
    input_stamp: DateTime<Utc>,
    own_source: &str,
) -> Result<bool, DbError> {
    let Some(st) = study::Entity::find()
        .filter(study::Column::StudyInstanceUid.eq(study_uid))
        .one(db)
        .await?
    else {
        return Ok(false);
    };
    let foreign = instance::Entity::find()
        .filter(
            instance::Column::SeriesFk.in_subquery(
                series::Entity::find()
                    .select_only()
                    .column(series::Column::Id)
                    .filter(series::Column::StudyFk.eq(st.id))
                    .into_query(),
            ),
        )
        .filter(instance::Column::ReceivedAt.gt(input_stamp))
        .filter(
            Condition::any()
                .add(instance::Column::SourceAe.is_null())
                .add(instance::Column::SourceAe.ne(own_source)),
        )
        .count(db)
        .await?;
    let stamp = if foreign == 0 {
        st.last_received_at
    } else {
        input_stamp
    };
    study::Entity::update_many()
        .col_expr(study::Column::AiCheckedAt, Expr::value(stamp))
        .filter(study::Column::Id.eq(st.id))
        .exec(db)
        .await?;
    Ok(foreign == 0)
}

/// One series of a study, as series selection first sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    pub series_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<i32>,
    pub description: Option<String>,
    pub num_instances: i64,
}

/// The series of a study, by series number.
pub async fn series_of_study(
    db: &DatabaseConnection,
    study_uid: &str,
) -> Result<Vec<SeriesSummary>, DbError> {
    let Some(st) = study::Entity::find()
        .filter(study::Column::StudyInstanceUid.eq(study_uid))
        .one(db)
        .await?
    else {
        return Ok(Vec::new());
    };
    Ok(series::Entity::find()
        .filter(series::Column::StudyFk.eq(st.id))
        .order_by_asc(series::Column::SeriesNumber)
        .order_by_asc(series::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|s| SeriesSummary {
            series_uid: s.series_instance_uid,
            modality: s.modality,
            series_number: s.series_number,
            description: s.series_description,
            num_instances: s.num_instances,
        })
        .collect())
}

/// A result to record.
#[derive(Debug, Clone)]
pub struct NewResult {
    pub study_uid: String,
    pub job_id: Option<i64>,
    pub seg_series_uid: String,
    pub seg_sop_uid: String,
    pub reference_series_uid: String,
    pub input_series: String,
    pub model_name: String,
    pub model_version: String,
    pub measurements: String,
    pub report_findings: String,
    pub report_text: String,
    pub timings: String,
}

/// A stored result.
pub type AiResultRow = ai_result::Model;

/// Record a result as the study's current one, superseding the previous current
/// result (kept, marked `superseded`). A job that already recorded its result
/// (retried after its worker died) gets that row back instead.
pub async fn record_result(db: &DatabaseConnection, r: NewResult) -> Result<i64, DbError> {
    let txn = db.begin().await?;
    if let Some(job_id) = r.job_id {
        if let Some(existing) = ai_result::Entity::find()
            .filter(ai_result::Column::JobId.eq(job_id))
            .one(&txn)
            .await?
        {
            txn.rollback().await?;
            return Ok(existing.id);
        }
    }
    let now = Utc::now();
    ai_result::Entity::update_many()
        .col_expr(ai_result::Column::State, Expr::value("superseded"))
        .col_expr(ai_result::Column::SupersededAt, Expr::value(now))
        .filter(ai_result::Column::StudyUid.eq(&r.study_uid))
        .filter(ai_result::Column::State.eq("current"))
        .exec(&txn)
        .await?;
    let res = ai_result::Entity::insert(ai_result::ActiveModel {
        study_uid: Set(r.study_uid),
        job_id: Set(r.job_id),
        state: Set("current".into()),
        seg_series_uid: Set(r.seg_series_uid),
        seg_sop_uid: Set(r.seg_sop_uid),
        reference_series_uid: Set(r.reference_series_uid),
        input_series: Set(r.input_series),
        model_name: Set(r.model_name),
        model_version: Set(r.model_version),
        measurements: Set(r.measurements),
        report_findings: Set(r.report_findings),
        report_text: Set(r.report_text),
        report_status: Set("preliminary".into()),
        timings: Set(r.timings),
        created_at: Set(now),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(res.last_insert_id)
}

/// A study's results, newest first (current and superseded).
pub async fn results_of_study(
    db: &DatabaseConnection,
    study_uid: &str,
) -> Result<Vec<AiResultRow>, DbError> {
    Ok(ai_result::Entity::find()
        .filter(ai_result::Column::StudyUid.eq(study_uid))
        .order_by_desc(ai_result::Column::Id)
        .all(db)
        .await?)
}

/// One result by id.
pub async fn result(db: &DatabaseConnection, id: i64) -> Result<Option<AiResultRow>, DbError> {
    Ok(ai_result::Entity::find_by_id(id).one(db).await?)
}

/// A radiologist verifies a preliminary report (optionally with an edited text).
/// Returns false when there is no such result.
pub async fn verify_result(
    db: &DatabaseConnection,
    id: i64,
    verified_by: &str,
    text: Option<&str>,
) -> Result<bool, DbError> {
    let mut upd = ai_result::Entity::update_many()
        .col_expr(ai_result::Column::ReportStatus, Expr::value("verified"))
        .col_expr(ai_result::Column::VerifiedBy, Expr::value(verified_by))
        .col_expr(ai_result::Column::VerifiedAt, Expr::value(Utc::now()));
    if let Some(t) = text {
        upd = upd.col_expr(ai_result::Column::ReportText, Expr::value(t));
    }
    Ok(upd
        .filter(ai_result::Column::Id.eq(id))
        .exec(db)
        .await?
        .rows_affected
        == 1)
}

/// The study of `study_uid` if it was not handed to the pipeline for its latest
/// instance yet (for an explicit "study complete" signal, e.g. Storage Commitment).
pub async fn pending_study(
    db: &DatabaseConnection,
    study_uid: &str,
) -> Result<Option<StableStudy>, DbError> {
    Ok(study::Entity::find()
        .filter(study::Column::StudyInstanceUid.eq(study_uid))
        .one(db)
        .await?
        .filter(|s| s.ai_checked_at.is_none_or(|c| c < s.last_received_at))
        .map(|s| StableStudy {
            id: s.id,
            study_uid: s.study_instance_uid,
            last_received_at: s.last_received_at,
            checked_before: s.ai_checked_at.is_some(),
        }))
}

/// The distinct studies of the given SOP instances.
pub async fn studies_of_instances(
    db: &DatabaseConnection,
    sop_uids: &[String],
) -> Result<Vec<String>, DbError> {
    if sop_uids.is_empty() {
        return Ok(Vec::new());
    }
    let series_ids: Vec<i64> = instance::Entity::find()
        .select_only()
        .column(instance::Column::SeriesFk)
        .filter(instance::Column::SopInstanceUid.is_in(sop_uids.iter().map(String::as_str)))
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let study_ids: Vec<i64> = series::Entity::find()
        .select_only()
        .column(series::Column::StudyFk)
        .filter(series::Column::Id.is_in(series_ids))
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    Ok(study::Entity::find()
        .select_only()
        .column(study::Column::StudyInstanceUid)
        .filter(study::Column::Id.is_in(study_ids))
        .into_tuple()
        .all(db)
        .await?)
}
