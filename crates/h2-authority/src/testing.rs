//! A raw HTTP/2 gRPC client for tests (feature `test-client`).
//!
//! Written from RFC 9113 / RFC 7541 so that tests can control exactly how
//! `:authority` is encoded, which no real client library allows. It speaks
//! just enough HTTP/2 for sequential unary calls on one connection: preface,
//! SETTINGS (+ACK), PING replies, flow-control credit for received DATA,
//! HPACK decoding of responses (with the crate's decoder), RST_STREAM and
//! GOAWAY reporting. It is not a general client: one call at a time.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::hpack::{self, Decoder, Event};
use crate::rewrite::PREFACE;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// HTTP/2 error code PROTOCOL_ERROR.
pub const PROTOCOL_ERROR: u32 = 0x1;

/// How the client encodes `:authority` in its request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityEncoding {
    /// No `:authority` field at all.
    Absent,
    /// Static table index 1 (`0x81`): `:authority: ""`, as grpc-go's
    /// `grpc.Dial("")` sends it (Tyk < 5.8.3).
    EmptyIndexed,
    /// Literal without indexing, name from static index 1.
    Literal(String),
    /// Literal with incremental indexing on first use, then an indexed
    /// reference to the dynamic table entry on later calls (as grpc-core
    /// does with its socket-path authority).
    Incremental(String),
}

/// Result of a unary call that got a response.
#[derive(Debug, Clone, Default)]
pub struct UnaryResponse {
    /// `:status` of the response headers.
    pub http_status: Option<u16>,
    /// `grpc-status` (trailers, or headers for trailers-only responses).
    pub grpc_status: Option<i32>,
    /// `grpc-message`, as sent (percent-encoded).
    pub grpc_message: Option<String>,
    /// The first length-prefixed message of the response body, if any.
    pub message: Option<Vec<u8>>,
    /// All response header fields.
    pub headers: Vec<(String, String)>,
    /// All trailer fields.
    pub trailers: Vec<(String, String)>,
}

/// Why a call produced no response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server reset our stream.
    #[error("stream reset with error code {0:#x}")]
    Reset(u32),
    /// The server closed the connection before answering.
    #[error("GOAWAY with error code {code:#x} (last stream {last_stream_id}): {debug}")]
    GoAway {
        /// Error code.
        code: u32,
        /// Last stream the server processed.
        last_stream_id: u32,
        /// Debug data, lossily decoded.
        debug: String,
    },
    /// Transport error, including EOF.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl CallError {
    /// The HTTP/2 error code of a reset or GOAWAY.
    pub fn h2_code(&self) -> Option<u32> {
        match self {
            CallError::Reset(c) => Some(*c),
            CallError::GoAway { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A raw HTTP/2 client connection.
#[derive(Debug)]
pub struct RawH2Client<S> {
    io: S,
    next_stream_id: u32,
    decoder: Decoder,
    /// Our encoder's dynamic table: authority values we inserted, newest first.
    inserted: Vec<String>,
    rbuf: Vec<u8>,
}

struct Frame {
    ty: u8,
    flags: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawH2Client<S> {
    /// Sends the preface and an empty SETTINGS frame.
    pub async fn handshake(mut io: S) -> io::Result<Self> {
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        io.write_all(&out).await?;
        io.flush().await?;
        Ok(Self {
            io,
            next_stream_id: 1,
            decoder: Decoder::new(),
            inserted: Vec::new(),
            rbuf: Vec::new(),
        })
    }

    /// Encodes the request header block for `path`.
    pub fn request_block(&mut self, path: &str, authority: &AuthorityEncoding) -> Vec<u8> {
        let mut b = Vec::new();
        b.push(0x83); // :method POST
        b.push(0x86); // :scheme http
        hpack::encode_literal(&mut b, b":path", path.as_bytes(), false);
        match authority {
            AuthorityEncoding::Absent => {}
            AuthorityEncoding::EmptyIndexed => b.push(0x81),
            AuthorityEncoding::Literal(v) => {
                hpack::encode_literal(&mut b, b":authority", v.as_bytes(), false)
            }
            AuthorityEncoding::Incremental(v) => {
                if let Some(pos) = self.inserted.iter().position(|x| x == v) {
                    hpack::encode_int(&mut b, 7, 0x80, 62 + pos);
                } else {
                    hpack::encode_int(&mut b, 6, 0x40, 1);
                    hpack::encode_str(&mut b, v.as_bytes());
                    self.inserted.insert(0, v.clone());
                    // Mirror the decoder's eviction at the default 4096 bytes.
                    let mut size = 0;
                    self.inserted.retain(|x| {
                        size += 32 + ":authority".len() + x.len();
                        size <= hpack::DEFAULT_TABLE_SIZE
                    });
                }
            }
        }
        hpack::encode_literal(&mut b, b"content-type", b"application/grpc", false);
        hpack::encode_literal(&mut b, b"te", b"trailers", false);
        b
    }

    /// A unary gRPC call: HEADERS, one DATA frame with END_STREAM, then read
    /// the response. `message` is the serialized request message.
    pub async fn unary(
        &mut self,
        path: &str,
        authority: &AuthorityEncoding,
        message: &[u8],
    ) -> Result<UnaryResponse, CallError> {
        let block = self.request_block(path, authority);
        self.unary_raw_block(&block, message).await
    }

    /// Like [`unary`](Self::unary) with a caller-made HPACK header block
    /// (sent as one HEADERS frame, so it must be at most 16384 bytes).
    pub async fn unary_raw_block(
        &mut self,
        block: &[u8],
        message: &[u8],
    ) -> Result<UnaryResponse, CallError> {
        let mut body = Vec::with_capacity(5 + message.len());
        body.push(0);
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        self.unary_body(block, &[&body]).await
    }

    /// A call whose request body is `frames`, each sent as one DATA frame
    /// exactly as given (no gRPC length prefix is added; the last one ends
    /// the stream, and an empty list sends an empty DATA frame). For testing
    /// how a server treats broken gRPC framing.
    pub async fn unary_body(
        &mut self,
        block: &[u8],
        frames: &[&[u8]],
    ) -> Result<UnaryResponse, CallError> {
        let id = self.next_stream_id;
        self.next_stream_id += 2;
        let mut out = Vec::new();
        frame(&mut out, HEADERS, END_HEADERS, id, block);
        match frames.split_last() {
            Some((last, rest)) => {
                for f in rest {
                    frame(&mut out, DATA, 0, id, f);
                }
                frame(&mut out, DATA, END_STREAM, id, last);
            }
            None => frame(&mut out, DATA, END_STREAM, id, &[]),
        }
        self.io.write_all(&out).await?;
        self.io.flush().await?;
        self.read_response(id).await
    }

    async fn read_frame(&mut self) -> Result<Frame, CallError> {
        loop {
            if self.rbuf.len() >= 9 {
                let len = (usize::from(self.rbuf[0]) << 16)
                    | (usize::from(self.rbuf[1]) << 8)
                    | usize::from(self.rbuf[2]);
                if self.rbuf.len() >= 9 + len {
                    let f = Frame {
                        ty: self.rbuf[3],
                        flags: self.rbuf[4],
                        stream_id: u32::from_be_bytes([
                            self.rbuf[5],
                            self.rbuf[6],
                            self.rbuf[7],
                            self.rbuf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.rbuf[9..9 + len].to_vec(),
                    };
                    self.rbuf.drain(..9 + len);
                    return Ok(f);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                return Err(
                    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed").into(),
                );
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, ty: u8, flags: u8, stream_id: u32, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::new();
        frame(&mut out, ty, flags, stream_id, payload);
        self.io.write_all(&out).await?;
        self.io.flush().await
    }

    fn decode_block(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, CallError> {
        let mut fields = Vec::new();
        self.decoder
            .decode(block, |e| {
                if let Event::Field(f) = e {
                    fields.push((
                        String::from_utf8_lossy(f.name).into_owned(),
                        String::from_utf8_lossy(f.value).into_owned(),
                    ));
                }
                Ok(())
            })
            .map_err(|e| CallError::Protocol(format!("HPACK: {e}")))?;
        Ok(fields)
    }

    async fn read_response(&mut self, id: u32) -> Result<UnaryResponse, CallError> {
        let mut resp = UnaryResponse::default();
        let mut body = Vec::new();
        let mut block: Option<(u32, bool, Vec<u8>)> = None;
        let mut blocks_seen = 0;
        loop {
            let f = self.read_frame().await?;
            if let Some((sid, _, _)) = &block
                && (f.ty != CONTINUATION || f.stream_id != *sid)
            {
                return Err(CallError::Protocol("interrupted header block".into()));
            }
            match f.ty {
                SETTINGS if f.flags & ACK == 0 => self.send(SETTINGS, ACK, 0, &[]).await?,
                PING if f.flags & ACK == 0 => self.send(PING, ACK, 0, &f.payload).await?,
                GOAWAY => {
                    let p = &f.payload;
                    if p.len() < 8 {
                        return Err(CallError::Protocol("short GOAWAY".into()));
                    }
                    let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                    let code = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                    if code != 0 || last < id {
                        return Err(CallError::GoAway {
                            code,
                            last_stream_id: last,
                            debug: String::from_utf8_lossy(&p[8..]).into_owned(),
                        });
                    }
                }
                RST_STREAM if f.stream_id == id => {
                    let p = &f.payload;
                    if p.len() != 4 {
                        return Err(CallError::Protocol("bad RST_STREAM".into()));
                    }
                    return Err(CallError::Reset(u32::from_be_bytes([
                        p[0], p[1], p[2], p[3],
                    ])));
                }
                DATA if f.stream_id == id => {
                    let mut p = &f.payload[..];
                    if f.flags & PADDED != 0 {
                        let pad = usize::from(*p.first().unwrap_or(&0));
                        p = p.get(1..p.len().saturating_sub(pad)).unwrap_or(&[]);
                    }
                    body.extend_from_slice(p);
                    if !f.payload.is_empty() {
                        let credit = (f.payload.len() as u32).to_be_bytes();
                        self.send(WINDOW_UPDATE, 0, 0, &credit).await?;
                        if f.flags & END_STREAM == 0 {
                            self.send(WINDOW_UPDATE, 0, id, &credit).await?;
                        }
                    }
                    if f.flags & END_STREAM != 0 {
                        break;
                    }
                }
                HEADERS | CONTINUATION => {
                    let (sid, end_stream, mut frag) = match block.take() {
                        Some(b) => b,
                        None if f.ty == HEADERS => {
                            (f.stream_id, f.flags & END_STREAM != 0, Vec::new())
                        }
                        None => return Err(CallError::Protocol("stray CONTINUATION".into())),
                    };
                    let mut p = &f.payload[..];
                    if f.ty == HEADERS {
                        let mut pad = 0;
                        if f.flags & PADDED != 0 {
                            pad = usize::from(*p.first().unwrap_or(&0));
                            p = &p[1..];
                        }
                        if f.flags & PRIORITY != 0 {
                            p = &p[5.min(p.len())..];
                        }
                        p = &p[..p.len().saturating_sub(pad)];
                    }
                    frag.extend_from_slice(p);
                    if f.flags & END_HEADERS == 0 {
                        block = Some((sid, end_stream, frag));
                        continue;
                    }
                    // Decode every block to keep the HPACK table in sync.
                    let fields = self.decode_block(&frag)?;
                    if sid != id {
                        continue;
                    }
                    if blocks_seen == 0 {
                        resp.headers = fields;
                    } else {
                        resp.trailers = fields;
                    }
                    blocks_seen += 1;
                    if end_stream {
                        break;
                    }
                }
                _ => {}
            }
        }
        for (name, value) in resp.headers.iter().chain(resp.trailers.iter()) {
            match name.as_str() {
                ":status" => resp.http_status = value.parse().ok(),
                "grpc-status" => resp.grpc_status = value.parse().ok(),
                "grpc-message" => resp.grpc_message = Some(value.clone()),
                _ => {}
            }
        }
        if body.len() >= 5 {
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            resp.message = body.get(5..5 + len).map(<[u8]>::to_vec);
        }
        Ok(resp)
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}
