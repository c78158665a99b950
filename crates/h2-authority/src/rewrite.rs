//! The sans-I/O core: an incremental rewriter of the client-to-server
//! HTTP/2 byte stream.

use crate::hpack::{self, Decoder, Event, Repr};

/// The HTTP/2 client connection preface (RFC 9113 section 3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest frame payload we emit: the minimum SETTINGS_MAX_FRAME_SIZE,
/// which every HTTP/2 server accepts.
pub(crate) const MAX_FRAME_PAYLOAD: usize = 16_384;
/// Cap on a buffered (still encoded) header block, frame headers included.
pub(crate) const MAX_BLOCK: usize = 1 << 20;
/// Cap on a re-encoded header block.
pub(crate) const MAX_REENCODED: usize = 1 << 20;

const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// What the rewriter decided for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Still waiting for the first header block.
    Undecided,
    /// Everything is forwarded unchanged from now on.
    PassThrough,
    /// Every header block is re-encoded.
    Repair,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Matching the preface; the number of bytes matched so far.
    Preface(usize),
    /// Collecting a 9-byte frame header into `head`.
    FrameHeader,
    /// Streaming the payload of a frame we do not touch.
    Payload(usize),
    /// Buffering the payload of a HEADERS/CONTINUATION frame into `raw`.
    HeaderPayload(usize),
    /// Forwarding everything verbatim.
    Raw,
}

/// Why the rewriter gave up and forwarded raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Fallback {
    #[error("not an HTTP/2 connection preface")]
    NotHttp2,
    #[error("header block larger than {MAX_BLOCK} bytes")]
    BlockTooLarge,
    #[error("frame other than CONTINUATION inside a header block")]
    InterruptedBlock,
    #[error("malformed padding or priority in HEADERS")]
    BadHeadersFrame,
    #[error("HPACK: {0}")]
    Hpack(#[from] hpack::DecodeError),
}

/// What happened to the latest complete header block (for the adapter's
/// logging and counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockOutcome {
    /// The connection switched to repair mode on this block; carries the
    /// offending authority value.
    StartedRepair(Vec<u8>),
    /// The rewriter gave up and forwards raw bytes.
    Fallback(Fallback),
}

#[derive(Debug, Clone, Copy)]
struct OpenBlock {
    stream_id: u32,
    end_stream: bool,
    /// Start in `raw` of the frame being buffered.
    frame_start: usize,
    /// Type and flags of the frame being buffered.
    frame_type: u8,
    frame_flags: u8,
}

/// Incremental rewriter; feed it client bytes, it appends server-bound bytes.
#[derive(Debug)]
pub(crate) struct Rewriter {
    phase: Phase,
    verdict: Verdict,
    head: [u8; FRAME_HEADER],
    head_len: usize,
    block: Option<OpenBlock>,
    /// Raw bytes (frame headers included) of the open header block.
    raw: Vec<u8>,
    /// Ranges in `raw` holding the HPACK fragment of each frame.
    frags: Vec<(usize, usize)>,
    /// Fragments joined, when a block spans several frames.
    joined: Vec<u8>,
    /// Re-encoded fragment.
    encoded: Vec<u8>,
    decoder: Decoder,
    /// Set when something noteworthy happened; taken by the adapter.
    outcome: Option<BlockOutcome>,
    /// Header blocks re-encoded so far.
    pub(crate) blocks_rewritten: u64,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    pub(crate) fn new() -> Self {
        Self {
            phase: Phase::Preface(0),
            verdict: Verdict::Undecided,
            head: [0; FRAME_HEADER],
            head_len: 0,
            block: None,
            raw: Vec::new(),
            frags: Vec::new(),
            joined: Vec::new(),
            encoded: Vec::new(),
            decoder: Decoder::new(),
            outcome: None,
            blocks_rewritten: 0,
        }
    }

    /// True once everything from now on is forwarded verbatim.
    pub(crate) fn is_raw(&self) -> bool {
        self.phase == Phase::Raw
    }

    pub(crate) fn verdict(&self) -> Verdict {
        self.verdict
    }

    pub(crate) fn take_outcome(&mut self) -> Option<BlockOutcome> {
        self.outcome.take()
    }

    /// Switches to verbatim forwarding, flushing whatever is held back.
    fn go_raw(&mut self, out: &mut Vec<u8>, why: Option<Fallback>) {
        out.extend_from_slice(&self.raw);
        out.extend_from_slice(&self.head[..self.head_len]);
        self.raw = Vec::new();
        self.frags = Vec::new();
        self.joined = Vec::new();
        self.encoded = Vec::new();
        self.head_len = 0;
        self.block = None;
        self.phase = Phase::Raw;
        if self.verdict == Verdict::Undecided || why.is_some() {
            self.verdict = Verdict::PassThrough;
        }
        if let Some(why) = why {
            self.outcome = Some(BlockOutcome::Fallback(why));
        }
    }

    /// End of input: flush anything held back.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.phase != Phase::Raw {
            self.go_raw(out, None);
        }
    }

    /// Processes `input`, appending the bytes to forward to `out`.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.phase {
                Phase::Raw => {
                    out.extend_from_slice(input);
                    return;
                }
                Phase::Preface(matched) => {
                    let take = (PREFACE.len() - matched).min(input.len());
                    let (chunk, rest) = input.split_at(take);
                    if chunk != &PREFACE[matched..matched + take] {
                        // Bytes matched so far were already forwarded.
                        self.go_raw(out, Some(Fallback::NotHttp2));
                        continue;
                    }
                    out.extend_from_slice(chunk);
                    input = rest;
                    self.phase = if matched + take == PREFACE.len() {
                        Phase::FrameHeader
                    } else {
                        Phase::Preface(matched + take)
                    };
                }
                Phase::FrameHeader => {
                    let take = (FRAME_HEADER - self.head_len).min(input.len());
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&input[..take]);
                    self.head_len += take;
                    input = &input[take..];
                    if self.head_len == FRAME_HEADER {
                        self.start_frame(out);
                    }
                }
                Phase::Payload(remaining) => {
                    let take = remaining.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.phase = if take == remaining {
                        Phase::FrameHeader
                    } else {
                        Phase::Payload(remaining - take)
                    };
                }
                Phase::HeaderPayload(remaining) => {
                    let take = remaining.min(input.len());
                    self.raw.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if take == remaining {
                        self.end_header_frame(out);
                    } else {
                        self.phase = Phase::HeaderPayload(remaining - take);
                    }
                }
            }
        }
    }

    /// A frame header is complete in `self.head`.
    fn start_frame(&mut self, out: &mut Vec<u8>) {
        let h = self.head;
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let frame_type = h[3];
        let flags = h[4];
        let stream_id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;

        let is_header_frame = match (frame_type, self.block) {
            (TYPE_CONTINUATION, Some(b)) if b.stream_id == stream_id => true,
            (_, Some(_)) => {
                // RFC 9113 6.10: nothing may interrupt a header block. Let h2 say so.
                self.go_raw(out, Some(Fallback::InterruptedBlock));
                return;
            }
            (TYPE_HEADERS, None) => true,
            // Stray CONTINUATION or any other frame: forward, h2 judges it.
            _ => false,
        };
        self.head_len = 0;
        if !is_header_frame {
            out.extend_from_slice(&h);
            self.phase = if len == 0 {
                Phase::FrameHeader
            } else {
                Phase::Payload(len)
            };
            return;
        }
        if self.raw.len() + FRAME_HEADER + len > MAX_BLOCK {
            self.head_len = FRAME_HEADER;
            self.go_raw(out, Some(Fallback::BlockTooLarge));
            return;
        }
        let frame_start = self.raw.len();
        self.raw.extend_from_slice(&h);
        let block = self.block.get_or_insert(OpenBlock {
            stream_id,
            end_stream: flags & FLAG_END_STREAM != 0,
            frame_start,
            frame_type,
            frame_flags: flags,
        });
        block.frame_start = frame_start;
        block.frame_type = frame_type;
        block.frame_flags = flags;
        if len == 0 {
            self.end_header_frame(out);
        } else {
            self.phase = Phase::HeaderPayload(len);
        }
    }

    /// A HEADERS or CONTINUATION frame is fully buffered in `raw`.
    fn end_header_frame(&mut self, out: &mut Vec<u8>) {
        self.phase = Phase::FrameHeader;
        let Some(block) = self.block else {
            return;
        };
        let mut start = block.frame_start + FRAME_HEADER;
        let mut end = self.raw.len();
        if block.frame_type == TYPE_HEADERS {
            if block.frame_flags & FLAG_PADDED != 0 {
                let Some(&pad) = self.raw.get(start) else {
                    return self.go_raw(out, Some(Fallback::BadHeadersFrame));
                };
                start += 1;
                end = match end.checked_sub(usize::from(pad)) {
                    Some(e) => e,
                    None => return self.go_raw(out, Some(Fallback::BadHeadersFrame)),
                };
            }
            if block.frame_flags & FLAG_PRIORITY != 0 {
                start += 5;
            }
            if start > end {
                return self.go_raw(out, Some(Fallback::BadHeadersFrame));
            }
        }
        self.frags.push((start, end));
        if block.frame_flags & FLAG_END_HEADERS != 0 {
            self.end_block(out, block);
        }
    }

    /// A whole header block is buffered: decide, re-encode or forward.
    fn end_block(&mut self, out: &mut Vec<u8>, block: OpenBlock) {
        let fragment: &[u8] = if let [(s, e)] = self.frags[..] {
            &self.raw[s..e]
        } else {
            self.joined.clear();
            for &(s, e) in &self.frags {
                self.joined.extend_from_slice(&self.raw[s..e]);
            }
            &self.joined
        };

        self.encoded.clear();
        let encoded = &mut self.encoded;
        let mut invalid_authority: Option<Vec<u8>> = None;
        let result = self.decoder.decode(fragment, |event| {
            match event {
                Event::SizeUpdate(size) => hpack::encode_size_update(encoded, size),
                Event::Field(f) => {
                    if f.name == b":authority" && http::uri::Authority::try_from(f.value).is_err() {
                        if invalid_authority.is_none() {
                            invalid_authority = Some(f.value.to_vec());
                        }
                        return Ok(());
                    }
                    hpack::encode_literal(encoded, f.name, f.value, f.repr == Repr::NeverIndexed);
                }
            }
            if encoded.len() > MAX_REENCODED {
                return Err(hpack::DecodeError::TooLarge);
            }
            Ok(())
        });
        if let Err(e) = result {
            return self.go_raw(out, Some(Fallback::Hpack(e)));
        }

        if self.verdict == Verdict::Undecided {
            match invalid_authority {
                None => return self.go_raw(out, None),
                Some(value) => {
                    self.verdict = Verdict::Repair;
                    self.outcome = Some(BlockOutcome::StartedRepair(value));
                }
            }
        }

        // Re-emit the block: HEADERS then CONTINUATIONs, no padding/priority.
        let mut chunks = self.encoded.chunks(MAX_FRAME_PAYLOAD).peekable();
        let empty: &[u8] = &[];
        let mut first = true;
        loop {
            let chunk = match chunks.next() {
                Some(c) => c,
                None if first => empty,
                None => break,
            };
            let last = chunks.peek().is_none();
            let (frame_type, mut flags) = if first {
                let f = if block.end_stream { FLAG_END_STREAM } else { 0 };
                (TYPE_HEADERS, f)
            } else {
                (TYPE_CONTINUATION, 0)
            };
            if last {
                flags |= FLAG_END_HEADERS;
            }
            let len = chunk.len() as u32;
            out.extend_from_slice(&len.to_be_bytes()[1..]);
            out.push(frame_type);
            out.push(flags);
            out.extend_from_slice(&block.stream_id.to_be_bytes());
            out.extend_from_slice(chunk);
            first = false;
            if last {
                break;
            }
        }
        self.blocks_rewritten += 1;
        self.raw.clear();
        self.frags.clear();
        self.block = None;
    }
}
