//! DIMSE command sets (PS3.7 §9.3, §E): named command-field and data-set-type
//! constants, and encoding/decoding of command sets (always implicit VR little endian).

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Command Field values (PS3.7 Annex E).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
    pub const N_ACTION_RQ: u16 = 0x0130;
    pub const N_ACTION_RSP: u16 = 0x8130;
    /// Set on every response command field.
    pub const RESPONSE_BIT: u16 = 0x8000;
}

/// Command Data Set Type (0000,0800): this value means "no data set follows";
/// any other value means one does.
pub const NO_DATA_SET: u16 = 0x0101;
/// The value we send when a data set follows.
pub const DATA_SET_PRESENT: u16 = 0x0000;

/// Errors decoding a command set.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("command set could not be decoded: {0}")]
    Decode(String),
    #[error("command set lacks {0}")]
    Missing(&'static str),
}

/// A decoded command set.
#[derive(Debug, Clone)]
pub struct Command {
    pub obj: InMemDicomObject,
    pub field: u16,
    pub message_id: u16,
    pub has_data_set: bool,
}

fn uid_value(s: &str) -> PrimitiveValue {
    let mut s = s.to_string();
    if s.len() % 2 == 1 {
        s.push('\0');
    }
    PrimitiveValue::from(s)
}

fn text_value(s: &str) -> PrimitiveValue {
    let mut s = s.to_string();
    if s.len() % 2 == 1 {
        s.push(' ');
    }
    PrimitiveValue::from(s)
}

impl Command {
    /// Decode a command set received in Command PDVs.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        // Every declared length must fit before the parser allocates it.
        crate::ingest::structure::check_data_set(bytes, IMPLICIT_VR_LITTLE_ENDIAN.uid())
            .map_err(|e| CommandError::Decode(format!("command set structure: {e}")))?;
        let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
        let obj = InMemDicomObject::read_dataset_with_ts(bytes, &ts)
            .map_err(|e| CommandError::Decode(e.to_string()))?;
        let field = obj
            .get(tags::COMMAND_FIELD)
            .and_then(|e| e.to_int::<u16>().ok())
            .ok_or(CommandError::Missing("Command Field"))?;
        let message_id = obj
            .get(tags::MESSAGE_ID)
            .and_then(|e| e.to_int::<u16>().ok())
            .unwrap_or(0);
        let has_data_set = obj
            .get(tags::COMMAND_DATA_SET_TYPE)
            .and_then(|e| e.to_int::<u16>().ok())
            .map(|v| v != NO_DATA_SET)
            .unwrap_or(false);
        Ok(Self {
            obj,
            field,
            message_id,
            has_data_set,
        })
    }

    /// A string attribute of the command (UIDs with their padding removed).
    pub fn string(&self, tag: Tag) -> Option<String> {
        let s = self.obj.get(tag)?.to_str().ok()?;
        let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
        (!s.is_empty()).then(|| s.to_string())
    }

    /// A US attribute of the command.
    pub fn u16(&self, tag: Tag) -> Option<u16> {
        self.obj.get(tag).and_then(|e| e.to_int::<u16>().ok())
    }
}

/// Builder for response (and request) command sets.
#[derive(Debug, Default)]
pub struct CommandBuilder {
    elements: Vec<DataElement<InMemDicomObject>>,
}

impl CommandBuilder {
    pub fn new(field: u16) -> Self {
        Self::default().us(tags::COMMAND_FIELD, field)
    }

    /// A response to `rq`: command field, MessageIDBeingRespondedTo, no data set.
    pub fn response_to(field: u16, message_id: u16) -> Self {
        Self::new(field)
            .us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id)
            .us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
    }

    pub fn us(mut self, tag: Tag, v: u16) -> Self {
        self.elements
            .retain(|e: &DataElement<InMemDicomObject>| e.header().tag != tag);
        self.elements
            .push(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        self
    }

    pub fn uid(mut self, tag: Tag, v: &str) -> Self {
        self.elements
            .push(DataElement::new(tag, VR::UI, uid_value(v)));
        self
    }

    pub fn ae(mut self, tag: Tag, v: &str) -> Self {
        self.elements
            .push(DataElement::new(tag, VR::AE, text_value(v)));
        self
    }

    /// Error Comment (0000,0902), LO: truncated to 64 characters.
    pub fn error_comment(mut self, v: &str) -> Self {
        let v: String = v
            .chars()
            .filter(|c| *c != '\\' && !c.is_control())
            .take(64)
            .collect();
        self.elements.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            text_value(&v),
        ));
        self
    }

    /// Encode as an implicit-VR little-endian command set with its group length.
    pub fn encode(self) -> Vec<u8> {
        let obj = InMemDicomObject::command_from_element_iter(self.elements);
        let mut buf = Vec::with_capacity(256);
        obj.write_dataset_with_ts(&mut buf, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .expect("writing a command set into memory cannot fail");
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_roundtrip() {
        let bytes = CommandBuilder::response_to(field::C_STORE_RSP, 7)
            .uid(tags::AFFECTED_SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.1.4")
            .us(tags::STATUS, 0xA900)
            .error_comment("bad\\thing")
            .encode();
        let cmd = Command::decode(&bytes).unwrap();
        assert_eq!(cmd.field, field::C_STORE_RSP);
        assert!(!cmd.has_data_set);
        assert_eq!(cmd.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO), Some(7));
        assert_eq!(cmd.u16(tags::STATUS), Some(0xA900));
        assert_eq!(
            cmd.string(tags::AFFECTED_SOP_CLASS_UID).as_deref(),
            Some("1.2.840.10008.5.1.4.1.1.4")
        );
        assert_eq!(cmd.string(tags::ERROR_COMMENT).as_deref(), Some("badthing"));
        // group length is first and counts the rest
        assert_eq!(&bytes[0..4], &[0, 0, 0, 0]);
        let gl = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(gl, bytes.len() - 12);
    }

    #[test]
    fn a_declared_length_beyond_the_command_set_is_refused_before_parsing() {
        let mut bytes = CommandBuilder::response_to(field::C_ECHO_RSP, 1)
            .us(tags::STATUS, 0)
            .encode();
        // (0000,0902) Error Comment declaring 3.75 GiB, with no value.
        bytes.extend([0x00, 0x00, 0x02, 0x09]);
        bytes.extend(0xF000_0000u32.to_le_bytes());
        let err = Command::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("structure"), "{err}");
    }
}
