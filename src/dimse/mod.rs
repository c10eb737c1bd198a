//! The DIMSE surface: a DICOM upper-layer listener (dicom-ul PDU codec on tokio) and
//! one file per service. Layers, bottom up: `connection` (PDU framing), `association`
//! (negotiation), `command` + `status` (named constants, command sets), `handler`
//! (per-association message loop), one file per service (`echo`, `store`, `find`,
//! `cmove`, `cget`, `commit`, with `retrieve` + `suboperations` + `client` (and the shared
//! `crate::transcode`) under
//! the last two), and `server` (the listeners, plain and `tls`: association cap,
//! TCP_NODELAY, drain). `access` decides who may associate and use which service;
//! `audit` records every access in the audit trail.

pub mod access;
pub mod association;
pub mod audit;
pub mod cget;
pub mod client;
pub mod cmove;
pub mod command;
pub mod commit;
pub mod connection;
pub mod echo;
pub mod find;
pub mod handler;
pub mod retrieve;
pub mod server;
pub mod sop;
pub mod status;
pub mod store;
pub mod suboperations;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{DimseConfig, QueryConfig};
use crate::db::IndexRepo;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::store::BlobStore;

pub use server::DimseServer;

/// What every association needs.
pub struct DimseContext {
    pub config: DimseConfig,
    pub query: QueryConfig,
    pub ingestor: Ingestor,
    pub repo: IndexRepo,
    pub store: BlobStore,
    pub metrics: Arc<Metrics>,
    /// Storage Commitment marks the committed studies complete for the AI pipeline.
    pub ai_trigger: crate::ai::worker::AiTrigger,
    /// Who may associate and use which service (built from `config` and the node mode).
    pub access: access::AccessPolicy,
    /// The audit trail writer.
    pub audit: crate::audit::Audit,
}

impl DimseContext {
    pub fn association_timeout(&self) -> Duration {
        Duration::from_secs(self.config.association_timeout_secs)
    }

    /// Count a failure status in the metrics.
    pub fn count_failure(&self, status: u16) {
        self.metrics
            .dimse_failures
            .with_label_values(&[&format!("{status:04X}")])
            .inc();
    }
}
