//! `/api/audit`: the audit trail for administrators — filtered pages as JSON and a
//! JSON-lines export of the same filters. Reading the trail is itself audited.

use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::error::ApiError;
use super::security::{client_ip, require_role, BearerAuth};
use crate::app::AppState;
use crate::audit::{AuditEvent, Surface};
use crate::auth::Role;
use crate::db::audit::{AuditFilter, AuditRow};

/// Largest page of `GET /api/audit`.
const MAX_PAGE: u64 = 1000;
/// Rows per database read of an export.
const EXPORT_CHUNK: u64 = 5000;

/// One recorded access.
#[derive(Debug, Object, serde::Serialize)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditEventDto {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// `user`, `ae`, `anonymous` or `system`.
    pub actor_kind: String,
    /// Username or calling AE title.
    pub actor: Option<String>,
    pub user_id: Option<i64>,
    pub role: Option<String>,
    pub centre_id: Option<i64>,
    pub remote_ip: Option<String>,
    /// `dimse`, `dicomweb`, `api` or `internal`.
    pub surface: String,
    pub action: String,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    /// HTTP status or DIMSE status.
    pub status: Option<i32>,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub sop_uid: Option<String>,
    pub detail: Option<String>,
}

impl From<AuditRow> for AuditEventDto {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            at: r.at.to_rfc3339(),
            actor_kind: r.actor_kind,
            actor: r.actor,
            user_id: r.user_id,
            role: r.role,
            centre_id: r.centre_id,
            remote_ip: r.remote_ip,
            surface: r.surface,
            action: r.action,
            outcome: r.outcome,
            status: r.status,
            patient_id: r.patient_id,
            study_uid: r.study_uid,
            series_uid: r.series_uid,
            sop_uid: r.sop_uid,
            detail: r.detail,
        }
    }
}

#[derive(ApiResponse)]
enum ExportResponse {
    /// One JSON object per line (`application/x-ndjson`).
    #[oai(status = 200, content_type = "application/x-ndjson")]
    Ok(PlainText<String>),
}

/// The audit trail resource.
pub struct AuditApi {
    pub state: AppState,
}

fn parse_time(
    name: &str,
    v: Option<String>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    ApiError::bad_request("bad_parameter", format!("{name}: not an RFC 3339 time"))
                })
        })
        .transpose()
}

#[allow(clippy::too_many_arguments)]
fn filter(
    from: Option<String>,
    to: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    surface: Option<String>,
    outcome: Option<String>,
    study_uid: Option<String>,
    patient_id: Option<String>,
    after_id: Option<i64>,
    limit: u64,
) -> Result<AuditFilter, ApiError> {
    Ok(AuditFilter {
        from: parse_time("from", from)?,
        to: parse_time("to", to)?,
        actor,
        action,
        surface,
        outcome,
        study_uid,
        patient_id,
        after_id,
        limit,
    })
}

impl AuditApi {
    async fn record_read(&self, req: &Request, who: &crate::auth::Principal, action: &str) {
        let ev = AuditEvent::new(Surface::Api, action)
            .user(who.user_id, &who.username, who.role.as_str())
            .from_ip(client_ip(req));
        self.state.audit.record(ev).await;
    }
}

#[OpenApi(prefix_path = "/audit", tag = "AuditTags::Audit")]
impl AuditApi {
    /// Audit events, oldest first, filtered (admins only). Page with `after_id`
    /// (the last id of the previous page).
    #[oai(path = "/", method = "get", operation_id = "audit_list")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// Earliest time (RFC 3339).
        from: Query<Option<String>>,
        /// Latest time (RFC 3339).
        to: Query<Option<String>>,
        /// Username or AE title.
        actor: Query<Option<String>>,
        action: Query<Option<String>>,
        surface: Query<Option<String>>,
        outcome: Query<Option<String>>,
        study_uid: Query<Option<String>>,
        patient_id: Query<Option<String>>,
        after_id: Query<Option<i64>>,
        /// At most this many (default 100, at most 1000).
        limit: Query<Option<u64>>,
    ) -> Result<Json<Vec<AuditEventDto>>, ApiError> {
        require_role(&auth.0, &[Role::Admin])?;
        let f = filter(
            from.0,
            to.0,
            actor.0,
            action.0,
            surface.0,
            outcome.0,
            study_uid.0,
            patient_id.0,
            after_id.0,
            limit.0.unwrap_or(100).clamp(1, MAX_PAGE),
        )?;
        let rows = crate::db::audit::list(self.state.repo.connection(), &f)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        self.record_read(req, &auth.0, "audit.read").await;
        Ok(Json(rows.into_iter().map(AuditEventDto::from).collect()))
    }

    /// The filtered audit trail as JSON lines (admins only), every matching event.
    #[oai(path = "/export", method = "get", operation_id = "audit_export")]
    #[allow(clippy::too_many_arguments)]
    async fn export(
        &self,
        req: &Request,
        auth: BearerAuth,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        actor: Query<Option<String>>,
        action: Query<Option<String>>,
        surface: Query<Option<String>>,
        outcome: Query<Option<String>>,
        study_uid: Query<Option<String>>,
        patient_id: Query<Option<String>>,
    ) -> Result<ExportResponse, ApiError> {
        require_role(&auth.0, &[Role::Admin])?;
        let mut f = filter(
            from.0,
            to.0,
            actor.0,
            action.0,
            surface.0,
            outcome.0,
            study_uid.0,
            patient_id.0,
            None,
            EXPORT_CHUNK,
        )?;
        let mut out = String::new();
        loop {
            let rows = crate::db::audit::list(self.state.repo.connection(), &f)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            let n = rows.len() as u64;
            for r in rows {
                f.after_id = Some(r.id);
                let line = serde_json::to_string(&AuditEventDto::from(r))
                    .map_err(|e| ApiError::internal(&e))?;
                out.push_str(&line);
                out.push('\n');
            }
            if n < EXPORT_CHUNK {
                break;
            }
        }
        self.record_read(req, &auth.0, "audit.export").await;
        Ok(ExportResponse::Ok(PlainText(out)))
    }
}

#[derive(poem_openapi::Tags)]
enum AuditTags {
    /// The audit trail (administrators).
    Audit,
}
