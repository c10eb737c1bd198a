//! A tiny HTTP/1.1 client for the integration tests (no reqwest): one request per
//! connection (`Connection: close`), the request written while the response is read
//! (a server may answer before it has read the whole body), responses with a
//! Content-Length, chunked or delimited by the connection's end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a test waits for a whole response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bearer tokens of the nodes under test, by HTTP address (see [`register_token`]).
static TOKENS: Mutex<Option<HashMap<SocketAddr, String>>> = Mutex::new(None);

/// Send `token` as `Authorization: Bearer` on every request to `addr` that does not
/// name an Authorization header itself (the test harness registers an admin token for
/// every node it starts; tests of access control pass their own header).
pub fn register_token(addr: SocketAddr, token: &str) {
    TOKENS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(addr, token.to_string());
}

/// The token registered for `addr`, if any.
pub fn token_for(addr: SocketAddr) -> Option<String> {
    TOKENS.lock().unwrap().as_ref()?.get(&addr).cloned()
}

/// The header value that means "send no credentials" to [`request`].
pub const ANONYMOUS: (&str, &str) = ("Authorization", "");

/// A parsed response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as an image (panics with the status and body when it is not).
    pub fn image(&self) -> image::DynamicImage {
        image::load_from_memory(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an image ({e}): status {} {:?}",
                self.status,
                self.text().chars().take(300).collect::<String>()
            )
        })
    }

    /// The parts of a multipart/related body: (part Content-Type, part body).
    pub fn parts(&self) -> Vec<(String, Vec<u8>)> {
        multipart_parts(self.header("content-type").unwrap_or(""), &self.body)
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// Send `method path` with `headers` and `body`. A Content-Length is added unless
/// the headers name one or a Transfer-Encoding (then `body` is sent as given; see
/// [`chunked`]). `Host` and `Connection: close` are added.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let named_auth = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    if !named_auth {
        if let Some(t) = token_for(addr) {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
    }
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("authorization") && v.is_empty() {
            continue;
        }
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    let framed = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    send_raw(addr, raw, false).await
}

/// `GET path` with `headers`.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    request(addr, "GET", path, headers, &[]).await
}

/// Write `raw` bytes (a whole request, or a deliberately broken one), then, with
/// `close_write`, shut the sending half; read and parse the response. Write errors
/// are ignored (the server may have answered and closed already).
pub async fn send_raw(
    addr: SocketAddr,
    raw: Vec<u8>,
    close_write: bool,
) -> std::io::Result<HttpResponse> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&raw).await;
        if close_write {
            let _ = wr.shutdown().await;
        }
        // Keep the half open until the response is read.
        wr
    });
    let mut out = Vec::new();
    tokio::time::timeout(RESPONSE_TIMEOUT, rd.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))??;
    let _ = writer.await;
    parse_response(&out)
}

/// Encode `body` with chunked transfer coding, `chunk` bytes a chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 8 + 8);
    for c in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse a whole response as read up to the connection's end.
pub fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| invalid("no complete response head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("response head"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len)
            .ok_or_else(|| invalid("body shorter than its Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or_else(|| invalid("chunk size line"))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| invalid("chunk"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let data = rest.get(..size).ok_or_else(|| invalid("truncated chunk"))?;
        out.extend_from_slice(data);
        rest = rest
            .get(size + 2..)
            .ok_or_else(|| invalid("truncated chunk"))?;
    }
}

/// Split a multipart/related body into (part Content-Type, part body), by the
/// boundary named in `content_type`.
pub fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("multipart Content-Type with a boundary")
        .trim_matches('"')
        .to_string();
    let delim = format!("--{boundary}").into_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(start) = find(&body[pos..], &delim).map(|p| p + pos) {
        let after = start + delim.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let head_end = find(&body[after..], b"\r\n\r\n").expect("part head") + after;
        let head = String::from_utf8_lossy(&body[after..head_end]).to_ascii_lowercase();
        let part_ct = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type:"))
            .unwrap_or("")
            .trim()
            .to_string();
        let next = find(&body[head_end..], &delim).expect("next boundary") + head_end;
        out.push((part_ct, body[head_end + 4..next - 2].to_vec()));
        pos = next;
    }
    out
}
