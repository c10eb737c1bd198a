//! Glia: a DICOM-native PACS node.
//!
//! Module map: `ai` (segmentation engine: SegResNet on candle, pipeline, phantoms,
//! training), `config` (one typed tree), `app` (start-up/shutdown), `db` (index:
//! sea-orm repo), `store` (blobs over object_store), `ingest` (the one ingest path), `dicom_json` (the
//! DICOM JSON model), `dicomweb` (STOW/QIDO/WADO-RS, WADO-URI),
//! `dimse` (DICOM upper layer + services), `http` + `api` (poem / poem-openapi),
//! `import` (bulk import), `metrics` (Prometheus).

pub mod ai;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod db;
pub mod dicom_json;
pub mod dicomweb;
pub mod dimse;
pub mod http;
pub mod import;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod store;
pub mod transcode;
