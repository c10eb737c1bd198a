//! sea-orm entities of the index tables (see the migrations crate for the schema).
//! Used only inside `db`: protocol surfaces get DTOs, never these models.

pub mod ai_result;
pub mod app_user;
pub mod audit_event;
pub mod centre;
pub mod instance;
pub mod job;
pub mod patient;
pub mod refresh_token;
pub mod sequence_item;
pub mod series;
pub mod study;
pub mod study_grant;
pub mod user_patient;
