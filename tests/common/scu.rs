//! A small DIMSE SCU on dicom-ul for driving a node in tests, able to misbehave on
//! purpose (mismatched UIDs, truncated data sets, aborts mid-object).

use dicom_dictionary_std::{tags, uids};
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;
use glia::dimse::command::{field, Command, CommandBuilder, DATA_SET_PRESENT};
use tokio::net::TcpStream;

pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

pub struct Scu {
    pub assoc: AsyncClientAssociation<TcpStream>,
    next_id: u16,
}

impl Scu {
    /// Associate proposing Verification and MR storage (explicit + implicit LE).
    pub async fn connect(addr: std::net::SocketAddr) -> Result<Scu, dicom_ul::association::Error> {
        Self::connect_with(addr, "GLIA", &[uids::VERIFICATION, uids::MR_IMAGE_STORAGE]).await
    }

    pub async fn connect_with(
        addr: std::net::SocketAddr,
        called: &str,
        abstract_syntaxes: &[&str],
    ) -> Result<Scu, dicom_ul::association::Error> {
        let mut opts = ClientAssociationOptions::new()
            .calling_ae_title("TESTSCU")
            .called_ae_title(called)
            .max_pdu_length(16_384);
        for a in abstract_syntaxes {
            opts = opts.with_presentation_context(*a, vec![EXPLICIT_LE, IMPLICIT_LE]);
        }
        let assoc = opts.establish_async(addr).await?;
        Ok(Scu { assoc, next_id: 1 })
    }

    /// The accepted presentation context for an abstract syntax.
    pub fn pc(&self, abstract_syntax: &str) -> (u8, String) {
        self.assoc
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.abstract_syntax == abstract_syntax
                    && pc.reason == PresentationContextResultReason::Acceptance
            })
            .map(|pc| (pc.id, pc.transfer_syntax.clone()))
            .expect("accepted presentation context")
    }

    fn message_id(&mut self) -> u16 {
        self.next_id += 1;
        self.next_id
    }

    async fn send_command(&mut self, pc: u8, bytes: Vec<u8>) {
        self.assoc
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: bytes,
                }],
            })
            .await
            .unwrap();
    }

    /// Send data set bytes in PDVs of at most 8 KiB; `last` marks the final fragment.
    pub async fn send_data(&mut self, pc: u8, data: &[u8], last: bool) {
        let chunks: Vec<&[u8]> = data.chunks(8192).collect();
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            self.assoc
                .send(&Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id: pc,
                        value_type: PDataValueType::Data,
                        is_last: last && i + 1 == n,
                        data: c.to_vec(),
                    }],
                })
                .await
                .unwrap();
        }
    }

    /// Wait for a response command.
    pub async fn response(&mut self) -> Command {
        let mut bytes = Vec::new();
        loop {
            match self.assoc.receive().await.expect("response") {
                Pdu::PData { data } => {
                    for p in data {
                        assert_eq!(p.value_type, PDataValueType::Command);
                        bytes.extend_from_slice(&p.data);
                        if p.is_last {
                            return Command::decode(&bytes).unwrap();
                        }
                    }
                }
                other => panic!("expected a response, got {other:?}"),
            }
        }
    }

    /// C-ECHO; returns the response.
    pub async fn echo(&mut self) -> Command {
        let (pc, _) = self.pc(uids::VERIFICATION);
        let id = self.message_id();
        let cmd = CommandBuilder::new(field::C_ECHO_RQ)
            .uid(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION)
            .us(tags::MESSAGE_ID, id)
            .us(
                tags::COMMAND_DATA_SET_TYPE,
                glia::dimse::command::NO_DATA_SET,
            )
            .encode();
        self.send_command(pc, cmd).await;
        self.response().await
    }

    /// Send a C-STORE-RQ command announcing `sop_class` / `sop_instance`.
    pub async fn store_command(&mut self, sop_class: &str, sop_instance: &str) -> u8 {
        let (pc, _) = self.pc(uids::MR_IMAGE_STORAGE);
        let id = self.message_id();
        let cmd = CommandBuilder::new(field::C_STORE_RQ)
            .uid(tags::AFFECTED_SOP_CLASS_UID, sop_class)
            .us(tags::MESSAGE_ID, id)
            .us(tags::PRIORITY, 0)
            .us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT)
            .uid(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance)
            .encode();
        self.send_command(pc, cmd).await;
        pc
    }

    /// A complete C-STORE of `data` (explicit VR LE bytes); returns (status, comment).
    pub async fn store(
        &mut self,
        sop_class: &str,
        sop_instance: &str,
        data: &[u8],
    ) -> (u16, Option<String>) {
        let pc = self.store_command(sop_class, sop_instance).await;
        self.send_data(pc, data, true).await;
        let rsp = self.response().await;
        assert_eq!(rsp.field, field::C_STORE_RSP);
        assert_eq!(
            rsp.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO),
            Some(self.next_id),
            "response names the request's message id"
        );
        (
            rsp.u16(tags::STATUS).expect("status"),
            rsp.string(tags::ERROR_COMMENT),
        )
    }

    pub async fn release(self) {
        let _ = self.assoc.release().await;
    }

    pub async fn abort(self) {
        let _ = self.assoc.abort().await;
    }
}
