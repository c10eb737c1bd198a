//! The typed HTTP API (poem-openapi): one `#[OpenApi]` struct per resource, DTOs
//! only (never sea-orm models), no SQL in handlers (the repo layer does that).

pub mod ai;
pub mod health;

use poem_openapi::OpenApiService;

use crate::app::AppState;

/// All API resources, combined into one OpenAPI service.
pub type ApiRoot = (health::HealthApi, ai::AiApi);

/// Build the OpenAPI service (mounted under `/api`, spec at `/api/openapi.json`).
pub fn service(state: AppState) -> OpenApiService<ApiRoot, ()> {
    OpenApiService::new(
        (
            health::HealthApi {
                state: state.clone(),
            },
            ai::AiApi { state },
        ),
        "Glia",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api")
}
