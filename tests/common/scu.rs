//! A small DIMSE SCU on dicom-ul for driving a node in tests, able to misbehave on
//! purpose (mismatched UIDs, truncated data sets, aborts mid-object).

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
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
    /// PDVs received but not consumed yet (a PDU may carry command and data).
    pending: std::collections::VecDeque<PDataValue>,
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
        Self::connect_ext(addr, called, abstract_syntaxes, &[]).await
    }

    /// Associate with SOP class extended negotiation items `(class, bytes)`.
    pub async fn connect_ext(
        addr: std::net::SocketAddr,
        called: &str,
        abstract_syntaxes: &[&str],
        extended: &[(&str, &[u8])],
    ) -> Result<Scu, dicom_ul::association::Error> {
        let mut opts = ClientAssociationOptions::new()
            .calling_ae_title("TESTSCU")
            .called_ae_title(called)
            .max_pdu_length(16_384);
        for a in abstract_syntaxes {
            opts = opts.with_presentation_context(*a, vec![EXPLICIT_LE, IMPLICIT_LE]);
        }
        for (class, bytes) in extended {
            opts = opts.with_extended_negotiation(*class, bytes.to_vec());
        }
        let assoc = opts.establish_async(addr).await?;
        Ok(Scu {
            assoc,
            next_id: 1,
            pending: Default::default(),
        })
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

    pub async fn send_command(&mut self, pc: u8, bytes: Vec<u8>) {
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

    /// The next PDV from the peer.
    async fn next_pdv(&mut self) -> PDataValue {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return p;
            }
            match self.assoc.receive().await.expect("response") {
                Pdu::PData { data } => self.pending.extend(data),
                other => panic!("expected P-DATA, got {other:?}"),
            }
        }
    }

    /// Wait for a response command.
    pub async fn response(&mut self) -> Command {
        let mut bytes = Vec::new();
        loop {
            let p = self.next_pdv().await;
            assert_eq!(p.value_type, PDataValueType::Command);
            bytes.extend_from_slice(&p.data);
            if p.is_last {
                return Command::decode(&bytes).unwrap();
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

/// What a C-FIND returned.
#[derive(Debug)]
pub struct FindResult {
    pub matches: Vec<dicom_object::InMemDicomObject>,
    pub pending_statuses: Vec<u16>,
    pub status: u16,
    pub comment: Option<String>,
}

impl Scu {
    /// Send a C-FIND-RQ with `identifier` on the context of `sop_class`; returns the
    /// message id used.
    pub async fn find_request(
        &mut self,
        sop_class: &str,
        identifier: &dicom_object::InMemDicomObject,
    ) -> u16 {
        let (pc, ts) = self.pc(sop_class);
        let id = self.message_id();
        let cmd = CommandBuilder::new(field::C_FIND_RQ)
            .uid(tags::AFFECTED_SOP_CLASS_UID, sop_class)
            .us(tags::MESSAGE_ID, id)
            .us(tags::PRIORITY, 0)
            .us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT)
            .encode();
        self.send_command(pc, cmd).await;
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(&ts)
            .unwrap();
        let mut data = Vec::new();
        identifier.write_dataset_with_ts(&mut data, ts).unwrap();
        self.send_data(pc, &data, true).await;
        id
    }

    /// Send a C-CANCEL-RQ for `message_id` on the context of `sop_class`.
    pub async fn cancel(&mut self, sop_class: &str, message_id: u16) {
        let (pc, _) = self.pc(sop_class);
        let cmd = CommandBuilder::new(field::C_CANCEL_RQ)
            .us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id)
            .us(
                tags::COMMAND_DATA_SET_TYPE,
                glia::dimse::command::NO_DATA_SET,
            )
            .encode();
        self.send_command(pc, cmd).await;
    }

    /// Read one response (command and, if announced, its data set).
    pub async fn response_with_data(
        &mut self,
        sop_class: &str,
    ) -> (Command, Option<dicom_object::InMemDicomObject>) {
        let cmd = self.response().await;
        if !cmd.has_data_set {
            return (cmd, None);
        }
        let (_, ts) = self.pc(sop_class);
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(&ts)
            .unwrap();
        let mut bytes = Vec::new();
        loop {
            let p = self.next_pdv().await;
            assert_eq!(p.value_type, PDataValueType::Data);
            bytes.extend_from_slice(&p.data);
            if p.is_last {
                break;
            }
        }
        let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(&bytes[..], ts).unwrap();
        (cmd, Some(obj))
    }

    /// A complete C-FIND.
    pub async fn find(
        &mut self,
        sop_class: &str,
        identifier: &dicom_object::InMemDicomObject,
    ) -> FindResult {
        self.find_request(sop_class, identifier).await;
        let mut res = FindResult {
            matches: Vec::new(),
            pending_statuses: Vec::new(),
            status: 0,
            comment: None,
        };
        loop {
            let (cmd, data) = self.response_with_data(sop_class).await;
            assert_eq!(cmd.field, field::C_FIND_RSP);
            let st = cmd.u16(tags::STATUS).unwrap();
            if st == 0xFF00 || st == 0xFF01 {
                res.pending_statuses.push(st);
                res.matches
                    .push(data.expect("pending response carries an identifier"));
            } else {
                res.status = st;
                res.comment = cmd.string(tags::ERROR_COMMENT);
                return res;
            }
        }
    }
}
