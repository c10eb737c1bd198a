//! The audit trail's repository: batched appends and filtered reads of the
//! append-only `audit_event` table (the database refuses updates and deletes).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::entities::audit_event;
use super::DbError;
use crate::audit::AuditEvent;

/// Filters of an audit read; `None` = any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Username or AE title.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub surface: Option<String>,
    pub outcome: Option<String>,
    pub study_uid: Option<String>,
    pub patient_id: Option<String>,
    /// Only rows with an id above this (for paging through an export).
    pub after_id: Option<i64>,
    pub limit: u64,
}

/// One stored audit row.
pub type AuditRow = audit_event::Model;

/// Append events in one transaction.
pub async fn append(db: &DatabaseConnection, events: &[AuditEvent]) -> Result<(), DbError> {
    if events.is_empty() {
        return Ok(());
    }
    let txn = db.begin().await?;
    for chunk in events.chunks(200) {
        let rows = chunk.iter().map(|e| audit_event::ActiveModel {
            at: Set(e.at),
            actor_kind: Set(e.actor_kind.as_str().to_string()),
            actor: Set(e.actor.clone()),
            user_id: Set(e.user_id),
            role: Set(e.role.clone()),
            centre_id: Set(e.centre_id),
            remote_ip: Set(e.remote_ip.clone()),
            surface: Set(e.surface.as_str().to_string()),
            action: Set(e.action.clone()),
            outcome: Set(e.outcome.as_str().to_string()),
            status: Set(e.status),
            patient_id: Set(e.patient_id.clone()),
            study_uid: Set(e.study_uid.clone()),
            series_uid: Set(e.series_uid.clone()),
            sop_uid: Set(e.sop_uid.clone()),
            detail: Set(e.detail.clone()),
            ..Default::default()
        });
        audit_event::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Rows matching `f`, oldest first.
pub async fn list(db: &DatabaseConnection, f: &AuditFilter) -> Result<Vec<AuditRow>, DbError> {
    use audit_event::Column as C;
    let mut q = audit_event::Entity::find();
    if let Some(v) = f.from {
        q = q.filter(C::At.gte(v));
    }
    if let Some(v) = f.to {
        q = q.filter(C::At.lt(v));
    }
    if let Some(v) = &f.actor {
        q = q.filter(C::Actor.eq(v.as_str()));
    }
    if let Some(v) = &f.action {
        q = q.filter(C::Action.eq(v.as_str()));
    }
    if let Some(v) = &f.surface {
        q = q.filter(C::Surface.eq(v.as_str()));
    }
    if let Some(v) = &f.outcome {
        q = q.filter(C::Outcome.eq(v.as_str()));
    }
    if let Some(v) = &f.study_uid {
        q = q.filter(C::StudyUid.eq(v.as_str()));
    }
    if let Some(v) = &f.patient_id {
        q = q.filter(C::PatientId.eq(v.as_str()));
    }
    if let Some(v) = f.after_id {
        q = q.filter(C::Id.gt(v));
    }
    Ok(q.order_by_asc(C::Id).limit(f.limit.max(1)).all(db).await?)
}
