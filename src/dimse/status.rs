//! DIMSE status codes (PS3.7 Annex C, PS3.4 Annex B/C) used by Glia, by name.

/// Success.
pub const SUCCESS: u16 = 0x0000;
/// Refused / failure: out of resources (C-STORE: 0xA7xx).
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: data set does not match SOP class (C-STORE).
pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
/// Error: cannot understand.
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// Failure: unrecognized operation (PS3.7 C.4.5).
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
/// Failure: SOP class not supported (PS3.7 C.4.4).
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;

/// Map an ingest error to the C-STORE status a storage SCU expects.
pub fn for_ingest_error(e: &crate::ingest::IngestError) -> u16 {
    use crate::ingest::IngestError as E;
    match e {
        E::SopClassMismatch { .. } => DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        E::TooLarge { .. } | E::Io(_) | E::Store(_) | E::Index(_) => OUT_OF_RESOURCES,
        E::Unreadable(_)
        | E::MissingAttribute(_)
        | E::InvalidUid { .. }
        | E::SopInstanceMismatch
        | E::StudyMismatch
        | E::MetaMismatch => CANNOT_UNDERSTAND,
    }
}
