//! `GET /health` (also `/api/health`): liveness with index counts.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::app::AppState;

/// Health of the node.
#[derive(Debug, Object)]
pub struct Health {
    /// `ok`, or `degraded` when the index cannot be read.
    pub status: String,
    /// Glia's version.
    pub version: String,
    pub patients: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The node is healthy.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The index is unreachable.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

/// Health resource.
pub struct HealthApi {
    pub state: AppState,
}

#[OpenApi]
impl HealthApi {
    /// Node health and the number of patients, studies, series and instances.
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> HealthResponse {
        let version = env!("CARGO_PKG_VERSION").to_string();
        match self.state.repo.counts().await {
            Ok(c) => HealthResponse::Ok(Json(Health {
                status: "ok".into(),
                version,
                patients: c.patients,
                studies: c.studies,
                series: c.series,
                instances: c.instances,
            })),
            Err(e) => {
                tracing::error!(error = %e, "health check cannot read the index");
                HealthResponse::Unavailable(Json(Health {
                    status: "degraded".into(),
                    version,
                    patients: 0,
                    studies: 0,
                    series: 0,
                    instances: 0,
                }))
            }
        }
    }
}
