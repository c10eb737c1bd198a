//! PDU framing over one connection (plain TCP or DICOM TLS: any
//! `AsyncRead + AsyncWrite` byte stream), on dicom-ul's PDU codec.
//!
//! Reads the 6-byte PDU header first and refuses a PDU larger than our limit before
//! reading its body (dicom-ul's own reader would buffer up to ~4 GiB). Every read and
//! write is bounded by a timeout. Each PDU goes out in one write (TCP_NODELAY is set
//! by the listener).

use std::time::Duration;

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PDU_HEADER_SIZE};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest non-P-DATA PDU we read (A-ASSOCIATE-RQ with many contexts).
const MAX_CONTROL_PDU: u32 = 1 << 20;
const PDATA_TF: u8 = 0x04;

/// Errors at the upper-layer framing level.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("connection closed by peer")]
    Closed,
    #[error("timed out")]
    Timeout,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("PDU of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: u32, limit: u32 },
    #[error("malformed PDU: {0}")]
    Malformed(String),
}

/// The byte stream under a connection: a `TcpStream`, or a TLS stream over one.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// One DICOM upper-layer connection.
pub struct Connection {
    stream: Box<dyn Transport>,
    /// Bytes read ahead by [`Connection::input_ready`], consumed before the stream.
    ahead: Vec<u8>,
    /// The peer closed (or broke) the stream while reading ahead.
    ahead_eof: bool,
    buf: Vec<u8>,
    read_timeout: Duration,
    write_timeout: Duration,
    /// Largest P-DATA-TF body we accept.
    pub max_pdu_length: u32,
    /// Largest P-DATA-TF body the peer accepts (from its A-ASSOCIATE-RQ).
    pub peer_max_pdu_length: u32,
}

impl Connection {
    /// Wrap a byte stream (plain TCP or TLS).
    pub fn new(
        stream: impl Transport + 'static,
        max_pdu_length: u32,
        read_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        Self {
            stream: Box::new(stream),
            ahead: Vec::new(),
            ahead_eof: false,
            buf: Vec::with_capacity(64 * 1024),
            read_timeout,
            write_timeout,
            max_pdu_length,
            peer_max_pdu_length: 16_384,
        }
    }

    /// Read one PDU (`read_timeout` bounds the wait).
    pub async fn read_pdu(&mut self) -> Result<Pdu, ConnectionError> {
        let timeout = self.read_timeout;
        match tokio::time::timeout(timeout, self.read_pdu_inner()).await {
            Ok(r) => r,
            Err(_) => Err(ConnectionError::Timeout),
        }
    }

    /// Fill `dst` from the read-ahead bytes, then from the stream.
    async fn read_exact_into(&mut self, dst: &mut [u8]) -> std::io::Result<()> {
        let from_ahead = self.ahead.len().min(dst.len());
        if from_ahead > 0 {
            dst[..from_ahead].copy_from_slice(&self.ahead[..from_ahead]);
            self.ahead.drain(..from_ahead);
        }
        if from_ahead == dst.len() {
            return Ok(());
        }
        if self.ahead_eof {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.stream
            .read_exact(&mut dst[from_ahead..])
            .await
            .map(|_| ())
    }

    async fn read_pdu_inner(&mut self) -> Result<Pdu, ConnectionError> {
        let mut header = [0u8; PDU_HEADER_SIZE as usize];
        match self.read_exact_into(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ConnectionError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        let pdu_type = header[0];
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        let limit = if pdu_type == PDATA_TF {
            // PDV item headers are part of the PDU body but not of the max length
            // negotiated for data; allow some slack for them.
            self.max_pdu_length.saturating_add(1024)
        } else {
            MAX_CONTROL_PDU
        };
        if len > limit {
            return Err(ConnectionError::TooLarge { len, limit });
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&header);
        buf.resize(PDU_HEADER_SIZE as usize + len as usize, 0);
        let body = self
            .read_exact_into(&mut buf[PDU_HEADER_SIZE as usize..])
            .await;
        self.buf = buf;
        match body {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ConnectionError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        let codec_limit = len.max(dicom_ul::pdu::MINIMUM_PDU_SIZE);
        match dicom_ul::pdu::read_pdu(&self.buf[..], codec_limit, false) {
            Ok(Some(pdu)) => Ok(pdu),
            Ok(None) => Err(ConnectionError::Malformed("incomplete PDU".into())),
            Err(e) => Err(ConnectionError::Malformed(e.to_string())),
        }
    }

    /// Is input waiting (or has the peer closed the stream)? Never blocks: whatever
    /// can be read at once is kept for the next [`Connection::read_pdu`].
    pub fn input_ready(&mut self) -> bool {
        use futures::FutureExt;
        if !self.ahead.is_empty() || self.ahead_eof {
            return true;
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).now_or_never() {
            None => false,
            Some(Ok(0)) | Some(Err(_)) => {
                self.ahead_eof = true;
                true
            }
            Some(Ok(n)) => {
                self.ahead.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Write one PDU in a single write.
    pub async fn write_pdu(&mut self, pdu: &Pdu) -> Result<(), ConnectionError> {
        let mut out = Vec::with_capacity(1024);
        dicom_ul::pdu::write_pdu(&mut out, pdu)
            .map_err(|e| ConnectionError::Malformed(e.to_string()))?;
        self.write_raw(&out).await
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        match tokio::time::timeout(self.write_timeout, self.stream.write_all(bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ConnectionError::Timeout),
        }
    }

    /// Send a command set (one Command PDV, last fragment).
    pub async fn send_command(&mut self, pc_id: u8, bytes: Vec<u8>) -> Result<(), ConnectionError> {
        self.write_pdu(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: bytes,
            }],
        })
        .await
    }

    /// Send a data set, fragmented to the peer's maximum PDU length.
    pub async fn send_data_set(&mut self, pc_id: u8, bytes: &[u8]) -> Result<(), ConnectionError> {
        // PDV item: 4 length + 1 context + 1 control header; PDU header 6 bytes.
        let max_fragment = (self.peer_max_pdu_length.max(1024) - 6) as usize;
        let mut chunks = bytes.chunks(max_fragment).peekable();
        if bytes.is_empty() {
            return self
                .write_pdu(&Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id: pc_id,
                        value_type: PDataValueType::Data,
                        is_last: true,
                        data: Vec::new(),
                    }],
                })
                .await;
        }
        while let Some(chunk) = chunks.next() {
            let is_last = chunks.peek().is_none();
            let mut out = Vec::with_capacity(chunk.len() + 12);
            let item_len = (chunk.len() + 2) as u32;
            out.push(PDATA_TF);
            out.push(0);
            out.extend_from_slice(&(item_len + 4).to_be_bytes());
            out.extend_from_slice(&item_len.to_be_bytes());
            out.push(pc_id);
            out.push(if is_last { 0x02 } else { 0x00 });
            out.extend_from_slice(chunk);
            self.write_raw(&out).await?;
        }
        Ok(())
    }

    /// Shut the connection down (after A-RELEASE-RP or A-ABORT).
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}
