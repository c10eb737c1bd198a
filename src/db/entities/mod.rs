//! sea-orm entities of the index tables (see the migrations crate for the schema).
//! Used only inside `db`: protocol surfaces get DTOs, never these models.

pub mod ai_result;
pub mod audit_event;
pub mod instance;
pub mod job;
pub mod patient;
pub mod sequence_item;
pub mod series;
pub mod study;
