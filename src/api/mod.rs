//! The typed HTTP API (poem-openapi): one `#[OpenApi]` struct per resource, DTOs
//! only (never sea-orm models), no SQL in handlers (the repo layer does that).

pub mod ai;
pub mod audit;
pub mod auth;
pub mod centres;
pub mod error;
pub mod health;
pub mod security;
pub mod users;

use poem_openapi::OpenApiService;

use crate::app::AppState;

/// All API resources, combined into one OpenAPI service.
pub type ApiRoot = (
    health::HealthApi,
    ai::AiApi,
    auth::AuthApi,
    users::UsersApi,
    centres::CentresApi,
    audit::AuditApi,
);

/// Build the OpenAPI service (mounted under `/api`, spec at `/api/openapi.json`).
pub fn service(state: AppState) -> OpenApiService<ApiRoot, ()> {
    OpenApiService::new(
        (
            health::HealthApi {
                state: state.clone(),
            },
            ai::AiApi {
                state: state.clone(),
            },
            auth::AuthApi {
                state: state.clone(),
            },
            users::UsersApi {
                state: state.clone(),
            },
            centres::CentresApi {
                state: state.clone(),
            },
            audit::AuditApi { state },
        ),
        "Glia",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api")
}
