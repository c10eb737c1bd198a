//! DIMSE status codes (PS3.7 Annex C, PS3.4 Annex B/C) used by Glia, by name.

/// Success.
pub const SUCCESS: u16 = 0x0000;
/// Refused / failure: out of resources (C-STORE: 0xA7xx).
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: data set does not match SOP class (C-STORE).
pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
/// Error: cannot understand.
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// C-FIND/C-MOVE/C-GET failure: identifier does not match SOP class.
pub const IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
/// C-FIND failure: unable to process (0xCxxx).
pub const UNABLE_TO_PROCESS: u16 = 0xC000;
/// Pending: matches are continuing.
pub const PENDING: u16 = 0xFF00;
/// Pending: matches are continuing, one or more optional keys were not supported.
pub const PENDING_WARNING: u16 = 0xFF01;
/// Cancel: matching / sub-operations terminated due to a C-CANCEL.
pub const CANCEL: u16 = 0xFE00;
/// C-MOVE/C-GET: refused, out of resources, unable to calculate number of matches.
pub const UNABLE_TO_CALCULATE_MATCHES: u16 = 0xA701;
/// C-MOVE/C-GET: refused, out of resources, unable to perform sub-operations.
pub const UNABLE_TO_PERFORM_SUBOPERATIONS: u16 = 0xA702;
/// C-MOVE: refused, move destination unknown.
pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
/// C-MOVE/C-GET warning: sub-operations complete, one or more failures or warnings.
pub const SUBOPERATIONS_WITH_FAILURES: u16 = 0xB000;

/// N-ACTION failure: no such action type (PS3.7 C.4.16).
pub const NO_SUCH_ACTION_TYPE: u16 = 0x0123;
/// Failure: invalid argument value (PS3.7 C.4.10).
pub const INVALID_ARGUMENT: u16 = 0x0115;
/// Failure: no such SOP instance (PS3.7 C.4.17).
pub const NO_SUCH_SOP_INSTANCE: u16 = 0x0112;
/// Failure: missing attribute (PS3.7 C.4.13).
pub const MISSING_ATTRIBUTE: u16 = 0x0120;

/// Refused: not authorized (PS3.7 C.4, 0124H "Refused: Not Authorized"): the peer
/// may not use this service (`[[dimse.peers]] services`).
pub const NOT_AUTHORIZED: u16 = 0x0124;

/// Failure: unrecognized operation (PS3.7 C.4.5).
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
/// Failure: SOP class not supported (PS3.7 C.4.4).
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;

/// Warning statuses (PS3.7 C.1): the 0xBxxx class, and 0001 (requested optional
/// attributes not supported), 0107 (attribute list error), 0116 (attribute value out
/// of range).
pub const WARNING_CLASS: u16 = 0xB000;
pub const WARNING_OPTIONAL_ATTRIBUTES: u16 = 0x0001;
pub const WARNING_ATTRIBUTE_LIST: u16 = 0x0107;
pub const WARNING_VALUE_OUT_OF_RANGE: u16 = 0x0116;

/// Is this a warning status?
pub fn is_warning(status: u16) -> bool {
    status & 0xF000 == WARNING_CLASS
        || matches!(
            status,
            WARNING_OPTIONAL_ATTRIBUTES | WARNING_ATTRIBUTE_LIST | WARNING_VALUE_OUT_OF_RANGE
        )
}

/// Map an ingest error to the C-STORE status a storage SCU expects.
pub fn for_ingest_error(e: &crate::ingest::IngestError) -> u16 {
    use crate::ingest::IngestError as E;
    match e {
        E::SopClassMismatch { .. } => DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        E::NotAuthorized => NOT_AUTHORIZED,
        E::TooLarge { .. } | E::Io(_) | E::Store(_) | E::Index(_) => OUT_OF_RESOURCES,
        E::Unreadable(_)
        | E::MissingAttribute(_)
        | E::InvalidUid { .. }
        | E::SopInstanceMismatch
        | E::StudyMismatch
        | E::MetaMismatch => CANNOT_UNDERSTAND,
    }
}
