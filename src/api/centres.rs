//! `/api/centres/...`: diagnostic centres — list, get, create, update, deactivate.
//! Admins only; every change is audited.

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, Tags};

use super::error::{check_text, ApiError};
use super::security::{require_role, BearerAuth};
use super::users::{admin_event, change, default_limit, MAX_LIMIT};
use crate::app::AppState;
use crate::auth::service::conflict_or_db;
use crate::auth::Role;
use crate::db::identity::{Centre, CentreUpdate, NewCentre};

#[derive(Tags)]
enum CentreTags {
    /// Diagnostic centres.
    Centres,
}

/// A diagnostic centre.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CentreDto {
    pub id: i64,
    pub name: String,
    pub address: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    pub active: bool,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

impl From<Centre> for CentreDto {
    fn from(c: Centre) -> Self {
        CentreDto {
            id: c.id,
            name: c.name,
            address: c.address,
            contact_email: c.contact_email,
            contact_phone: c.contact_phone,
            active: c.active,
            created_at: c.created_at.to_rfc3339(),
            updated_at: c.updated_at.to_rfc3339(),
        }
    }
}

/// A centre to create.
#[derive(Debug, Object)]
pub struct CentreCreate {
    #[oai(validator(min_length = 1, max_length = 256))]
    pub name: String,
    pub address: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
}

/// Changes to a centre: absent fields are unchanged, `null` clears.
#[derive(Debug, Object)]
pub struct CentrePatch {
    #[oai(validator(min_length = 1, max_length = 256))]
    pub name: Option<String>,
    pub address: MaybeUndefined<String>,
    pub contact_email: MaybeUndefined<String>,
    pub contact_phone: MaybeUndefined<String>,
    pub active: Option<bool>,
}

/// Centre administration resource.
pub struct CentresApi {
    pub state: AppState,
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("no centre with id {id}"))
}

#[OpenApi(tag = "CentreTags::Centres")]
impl CentresApi {
    /// List centres, optionally only active (or inactive) ones.
    #[oai(path = "/centres", method = "get", operation_id = "list_centres")]
    async fn list(
        &self,
        auth: BearerAuth,
        active: Query<Option<bool>>,
        #[oai(default, validator(maximum(value = "1000000000")))] skip: Query<u64>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
    ) -> Result<Json<Vec<CentreDto>>, ApiError> {
        require_role(&auth.0, &[Role::Admin])?;
        let rows = self
            .state
            .auth
            .repo()
            .list_centres(
                active.0,
                skip.0.min(1_000_000_000),
                limit.0.clamp(1, MAX_LIMIT),
            )
            .await?;
        Ok(Json(rows.into_iter().map(CentreDto::from).collect()))
    }

    /// One centre.
    #[oai(path = "/centres/:id", method = "get", operation_id = "get_centre")]
    async fn get(&self, auth: BearerAuth, id: Path<i64>) -> Result<Json<CentreDto>, ApiError> {
        require_role(&auth.0, &[Role::Admin])?;
        let c = self
            .state
            .auth
            .repo()
            .centre(id.0)
            .await?
            .ok_or_else(|| not_found(id.0))?;
        Ok(Json(c.into()))
    }

    /// Create a centre (names are unique).
    #[oai(path = "/centres", method = "post", operation_id = "create_centre")]
    async fn create(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<CentreCreate>,
    ) -> Result<Json<CentreDto>, ApiError> {
        require_role(&auth.0, &[Role::Admin])?;
        let b = body.0;
        check_text(&[
            ("name", Some(b.name.as_str())),
            ("address", b.address.as_deref()),
            ("contact_email", b.contact_email.as_deref()),
            ("contact_phone", b.contact_phone.as_deref()),
        ])?;
        let c = self
            .state
            .auth
            .repo()
            .create_centre(NewCentre {
                name: b.name,
                address: b.address,
                contact_email: b.contact_email,
                contact_phone: b.contact_phone,
            })
            .await
            .map_err(conflict_or_db)?;
        self.state
            .audit
            .record(admin_event(
                &auth.0,
                req,
                "centre.create",
                format!("centre_id={}", c.id),
            ))
            .await;
        Ok(Json(c.into()))
    }

    /// Update a centre (absent fields unchanged, `null` clears).
    #[oai(
        path = "/centres/:id",
        method = "patch",
        operation_id = "update_centre"
    )]
    async fn update(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<i64>,
        body: Json<CentrePatch>,
    ) -> Result<Json<CentreDto>, ApiError> {
        require_role(&auth.0, &[Role::Admin])?;
        let b = body.0;
        check_text(&[
            ("name", b.name.as_deref()),
            ("address", b.address.value().map(String::as_str)),
            ("contact_email", b.contact_email.value().map(String::as_str)),
            ("contact_phone", b.contact_phone.value().map(String::as_str)),
        ])?;
        let c = self
            .state
            .auth
            .repo()
            .update_centre(
                id.0,
                CentreUpdate {
                    name: b.name,
                    address: change(b.address),
                    contact_email: change(b.contact_email),
                    contact_phone: change(b.contact_phone),
                    active: b.active,
                },
            )
            .await
            .map_err(conflict_or_db)?
            .ok_or_else(|| not_found(id.0))?;
        self.state
            .audit
            .record(admin_event(
                &auth.0,
                req,
                "centre.update",
                format!("centre_id={}", c.id),
            ))
            .await;
        Ok(Json(c.into()))
    }

    /// Deactivate a centre.
    #[oai(
        path = "/centres/:id/deactivate",
        method = "post",
        operation_id = "deactivate_centre"
    )]
    async fn deactivate(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<i64>,
    ) -> Result<Json<CentreDto>, ApiError> {
        require_role(&auth.0, &[Role::Admin])?;
        let c = self
            .state
            .auth
            .repo()
            .update_centre(
                id.0,
                CentreUpdate {
                    active: Some(false),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(|| not_found(id.0))?;
        self.state
            .audit
            .record(admin_event(
                &auth.0,
                req,
                "centre.deactivate",
                format!("centre_id={}", c.id),
            ))
            .await;
        Ok(Json(c.into()))
    }
}
