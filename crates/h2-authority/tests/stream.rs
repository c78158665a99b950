//! Byte-stream tests of `AuthorityRepair`: scripted client bytes in, and the
//! bytes h2 would read out, checked frame by frame and decoded with an
//! independent HPACK decoder (`loona-hpack`) that starts with an empty table.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use h2_authority::{AuthorityRepair, RepairMode, RepairStats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

fn frame(ty: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.push(ty);
    v.push(flags);
    v.extend_from_slice(&sid.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn lit_str(out: &mut Vec<u8>, s: &[u8]) {
    // 7-bit prefix length, non-Huffman.
    if s.len() < 127 {
        out.push(s.len() as u8);
    } else {
        out.push(127);
        let mut rest = s.len() - 127;
        while rest >= 128 {
            out.push((rest as u8 & 0x7f) | 0x80);
            rest >>= 7;
        }
        out.push(rest as u8);
    }
    out.extend_from_slice(s);
}

/// Literal without indexing, new name.
fn lit(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    lit_str(out, name);
    lit_str(out, value);
}

/// A gRPC request block with the given raw `:authority` representation in the middle.
fn request(authority_repr: &[u8]) -> Vec<u8> {
    let mut b = vec![0x83, 0x86, 0x04]; // POST, http, :path (name idx 4, w/o indexing)
    lit_str(&mut b, b"/grpc.health.v1.Health/Check");
    b.extend_from_slice(authority_repr);
    b.push(0x0f);
    b.push(0x10); // content-type: index 31 = 15 + 16 -> 4-bit prefix 15, then 16
    lit_str(&mut b, b"application/grpc");
    lit(&mut b, b"te", b"trailers");
    b
}

fn grpc_data(sid: u32) -> Vec<u8> {
    frame(DATA, END_STREAM, sid, &[0, 0, 0, 0, 0])
}

fn settings() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[0, 4, 0, 0x10, 0, 0])
}

/// A reader that yields scripted chunks, optionally returning `Pending`
/// (with an immediate wake) before each chunk. Writes are discarded.
struct Scripted {
    chunks: VecDeque<Vec<u8>>,
    pending_first: bool,
    pend_next: bool,
}

impl Scripted {
    fn new(input: &[u8], chunk: usize, pending: bool) -> Self {
        Self {
            chunks: input.chunks(chunk.max(1)).map(<[u8]>::to_vec).collect(),
            pending_first: pending,
            pend_next: pending,
        }
    }
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pend_next {
            self.pend_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pend_next = self.pending_first;
        if let Some(mut c) = self.chunks.pop_front() {
            let n = c.len().min(buf.remaining());
            buf.put_slice(&c[..n]);
            if n < c.len() {
                c.drain(..n);
                self.chunks.push_front(c);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs `input` through the adapter; returns the output, final mode and stats.
async fn run_with(
    input: &[u8],
    chunk: usize,
    read_size: usize,
    pending: bool,
) -> (Vec<u8>, RepairMode, RepairStats) {
    let stats = RepairStats::new();
    let mut a = AuthorityRepair::with_stats(Scripted::new(input, chunk, pending), stats.clone());
    let mut out = Vec::new();
    let mut buf = vec![0u8; read_size];
    loop {
        let n = a.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    (out, a.mode(), stats)
}

/// Runs with one big read, and checks that 1-byte chunks, 1-byte reads,
/// odd sizes and Pending interleaving all give the same bytes and mode.
async fn run(input: &[u8]) -> (Vec<u8>, RepairMode, RepairStats) {
    let (out, mode, stats) = run_with(input, usize::MAX, 1 << 20, false).await;
    for (chunk, read_size, pending) in [
        (1, 1, false),
        (1, 1 << 16, true),
        (7, 3, true),
        (1 << 20, 1, false),
        (13, 100, false),
    ] {
        let (o, m, _) = run_with(input, chunk, read_size, pending).await;
        assert_eq!(o, out, "chunk={chunk} read={read_size} pending={pending}");
        assert_eq!(m, mode);
    }
    (out, mode, stats)
}

#[derive(Debug, PartialEq, Eq)]
struct Frame {
    ty: u8,
    flags: u8,
    sid: u32,
    payload: Vec<u8>,
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    assert_eq!(&bytes[..24], PREFACE);
    let mut rest = &bytes[24..];
    let mut v = Vec::new();
    while !rest.is_empty() {
        assert!(rest.len() >= 9, "truncated frame header");
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        assert!(rest.len() >= 9 + len, "truncated frame payload");
        v.push(Frame {
            ty: rest[3],
            flags: rest[4],
            sid: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]),
            payload: rest[9..9 + len].to_vec(),
        });
        rest = &rest[9 + len..];
    }
    v
}

type Headers = Vec<(String, String)>;

/// What the server sees: header lists per block (decoded with a fresh
/// independent decoder) and the other frames.
fn server_view(bytes: &[u8]) -> (Vec<Headers>, Vec<Frame>) {
    let mut dec = loona_hpack::Decoder::new();
    let mut blocks = Vec::new();
    let mut others = Vec::new();
    let mut open: Option<Vec<u8>> = None;
    for f in frames(bytes) {
        assert!(f.payload.len() <= 16_384, "frame over 16384 bytes");
        match f.ty {
            HEADERS | CONTINUATION => {
                let mut frag = open.take().unwrap_or_default();
                let mut p = &f.payload[..];
                if f.ty == HEADERS {
                    assert!(frag.is_empty());
                    let mut pad = 0;
                    if f.flags & PADDED != 0 {
                        pad = p[0] as usize;
                        p = &p[1..];
                    }
                    if f.flags & PRIORITY != 0 {
                        p = &p[5..];
                    }
                    p = &p[..p.len() - pad];
                }
                frag.extend_from_slice(p);
                if f.flags & END_HEADERS != 0 {
                    let list = dec.decode(&frag).expect("server-side HPACK decode failed");
                    blocks.push(
                        list.into_iter()
                            .map(|(n, v)| {
                                (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                            })
                            .collect(),
                    );
                } else {
                    open = Some(frag);
                }
            }
            _ => {
                assert!(open.is_none(), "frame inside header block");
                others.push(f);
            }
        }
    }
    (blocks, others)
}

fn authority(h: &Headers) -> Option<&str> {
    h.iter()
        .find(|(n, _)| n == ":authority")
        .map(|(_, v)| v.as_str())
}

fn expected_request() -> Headers {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

fn conn(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

#[tokio::test]
async fn empty_indexed_authority_is_removed_and_lengths_fixed() {
    let block = request(&[0x81]);
    let input = conn(&[
        settings(),
        frame(HEADERS, END_HEADERS, 1, &block),
        grpc_data(1),
    ]);
    let (out, mode, stats) = run(&input).await;
    assert_eq!(mode, RepairMode::Repairing);
    assert_eq!(stats.connections_repaired(), 1);
    assert_eq!(stats.header_blocks_rewritten(), 1);
    assert_ne!(out, input);
    let f = frames(&out);
    assert_eq!(f.len(), 3);
    assert_eq!(f[0].payload, settings()[9..]);
    assert_eq!((f[1].ty, f[1].flags, f[1].sid), (HEADERS, END_HEADERS, 1));
    assert_eq!(f[2], frames(&conn(&[grpc_data(1)]))[0]);
    let (blocks, _) = server_view(&out);
    assert_eq!(blocks, vec![expected_request()]);
}

#[tokio::test]
async fn incrementally_indexed_invalid_authority_and_later_references() {
    // Block 1: `:authority: /tmp/x.sock` with incremental indexing (name idx 1),
    // plus `x-trace: abc` with incremental indexing. Dynamic table after it:
    // 62 = x-trace, 63 = :authority.
    let mut auth = vec![0x41];
    lit_str(&mut auth, b"/tmp/x.sock");
    let mut b1 = request(&auth);
    b1.push(0x40);
    lit_str(&mut b1, b"x-trace");
    lit_str(&mut b1, b"abc");
    // Block 2 references both from the dynamic table, and Huffman-codes a
    // literal (RFC 7541 C.4.2 "no-cache", cache-control name index 24).
    let mut b2 = request(&[0x80 | 63]);
    b2.push(0x80 | 62);
    b2.extend_from_slice(&[0x0f, 0x09, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]);
    // Block 3: a fresh, valid authority (Huffman "www.example.com", C.4.1):
    // kept, as the connection is in repair mode.
    let b3 = request(&[
        0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
    ]);
    let input = conn(&[
        settings(),
        frame(HEADERS, END_HEADERS, 1, &b1),
        grpc_data(1),
        frame(HEADERS, END_HEADERS, 3, &b2),
        grpc_data(3),
        frame(HEADERS, END_HEADERS, 5, &b3),
        grpc_data(5),
    ]);
    let (out, mode, stats) = run(&input).await;
    assert_eq!(mode, RepairMode::Repairing);
    assert_eq!(stats.header_blocks_rewritten(), 3);
    let (blocks, others) = server_view(&out);
    assert_eq!(blocks.len(), 3);
    let mut e1 = expected_request();
    e1.push(("x-trace".into(), "abc".into()));
    assert_eq!(blocks[0], e1);
    let mut e2 = expected_request();
    e2.push(("x-trace".into(), "abc".into()));
    e2.push(("cache-control".into(), "no-cache".into()));
    assert_eq!(blocks[1], e2);
    assert_eq!(authority(&blocks[2]), Some("www.example.com"));
    assert_eq!(others.len(), 4);
}

#[tokio::test]
async fn valid_or_absent_authority_passes_through_identically() {
    let mut auth = vec![0x01];
    lit_str(&mut auth, b"localhost:50051");
    for block in [request(&auth), request(&[])] {
        // A later block with an empty authority is NOT repaired: the
        // decision is made once per connection, on the first block.
        let input = conn(&[
            settings(),
            frame(HEADERS, END_HEADERS, 1, &block),
            grpc_data(1),
            frame(HEADERS, END_HEADERS, 3, &request(&[0x81])),
            grpc_data(3),
        ]);
        let (out, mode, stats) = run(&input).await;
        assert_eq!(out, input);
        assert_eq!(mode, RepairMode::PassThrough);
        assert_eq!(stats.connections_repaired(), 0);
        assert_eq!(stats.header_blocks_rewritten(), 0);
    }
}

#[tokio::test]
async fn padded_priority_headers_are_normalised() {
    let block = request(&[0x81]);
    let mut payload = vec![7u8]; // pad length
    payload.extend_from_slice(&[0x80, 0, 0, 0, 16]); // exclusive dep on 0, weight 16
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0; 7]);
    let input = conn(&[frame(
        HEADERS,
        END_STREAM | END_HEADERS | PADDED | PRIORITY,
        1,
        &payload,
    )]);
    let (out, _, _) = run(&input).await;
    let f = frames(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].flags, END_STREAM | END_HEADERS);
    let (blocks, _) = server_view(&out);
    assert_eq!(blocks, vec![expected_request()]);
}

#[tokio::test]
async fn block_over_continuations_is_reassembled() {
    let block = request(&[0x81]);
    let (a, rest) = block.split_at(5);
    let (b, c) = rest.split_at(9);
    let input = conn(&[
        frame(HEADERS, END_STREAM, 1, a),
        frame(CONTINUATION, 0, 1, b),
        frame(CONTINUATION, END_HEADERS, 1, c),
        frame(PING, 0, 0, &[1; 8]),
    ]);
    let (out, mode, _) = run(&input).await;
    assert_eq!(mode, RepairMode::Repairing);
    let f = frames(&out);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].ty, f[0].flags), (HEADERS, END_STREAM | END_HEADERS));
    assert_eq!(f[1].ty, PING);
    assert_eq!(server_view(&out).0, vec![expected_request()]);
}

#[tokio::test]
async fn large_reencoded_block_is_split_into_continuations() {
    // Small on the wire (dynamic table references), large once re-encoded:
    // a 3000-byte value indexed once and then referenced 6 times.
    let big = "v".repeat(3000);
    let mut b = request(&[0x81]);
    b.push(0x40);
    lit_str(&mut b, b"x-big");
    lit_str(&mut b, big.as_bytes());
    for _ in 0..6 {
        b.push(0x80 | 62);
    }
    let input = conn(&[frame(HEADERS, END_STREAM | END_HEADERS, 1, &b)]);
    assert!(b.len() < 16_384);
    let (out, _, _) = run(&input).await;
    let f = frames(&out);
    assert_eq!(f.len(), 2, "expected HEADERS + 1 CONTINUATION");
    assert_eq!((f[0].ty, f[0].flags), (HEADERS, END_STREAM));
    assert_eq!(f[0].payload.len(), 16_384);
    assert_eq!(
        (f[1].ty, f[1].flags, f[1].sid),
        (CONTINUATION, END_HEADERS, 1)
    );
    let (blocks, _) = server_view(&out);
    assert_eq!(
        blocks[0]
            .iter()
            .filter(|(n, v)| n == "x-big" && *v == big)
            .count(),
        7
    );
    assert_eq!(authority(&blocks[0]), None);
}

#[tokio::test]
async fn control_and_data_frames_are_untouched_in_repair_mode() {
    let mut data = vec![0u8, 0, 0, 0x30, 0];
    data.extend((0..0x3000).map(|i| i as u8));
    let others = [
        settings(),
        frame(SETTINGS, 1, 0, &[]),
        frame(PING, 0, 0, b"12345678"),
        frame(WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]),
        frame(DATA, 0, 1, &data),
        frame(WINDOW_UPDATE, 0, 1, &[0, 0, 0x10, 0]),
        frame(DATA, END_STREAM, 1, &[]),
        frame(0xfa, 0x5a, 7, b"unknown frame type"),
    ];
    let input = conn(&[
        others[0].clone(),
        others[1].clone(),
        frame(HEADERS, END_HEADERS, 1, &request(&[0x81])),
        others[2].clone(),
        others[3].clone(),
        others[4].clone(),
        others[5].clone(),
        others[6].clone(),
        others[7].clone(),
        frame(HEADERS, END_STREAM | END_HEADERS, 3, &request(&[0x81])),
    ]);
    let (out, _, _) = run(&input).await;
    let (blocks, seen) = server_view(&out);
    assert_eq!(blocks, vec![expected_request(), expected_request()]);
    let expected: Vec<Frame> = others
        .iter()
        .flat_map(|f| frames(&conn(std::slice::from_ref(f))))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn size_updates_and_never_indexed_are_preserved() {
    // Size update to 2048 first, then a never-indexed authorization field.
    let mut b = vec![0x3f, 0xe1, 0x0f]; // 31 + 2017 = 2048
    b.extend_from_slice(&request(&[0x81]));
    b.push(0x10);
    lit_str(&mut b, b"authorization");
    lit_str(&mut b, b"secret");
    let input = conn(&[frame(HEADERS, END_STREAM | END_HEADERS, 1, &b)]);
    let (out, _, _) = run(&input).await;
    let f = frames(&out);
    assert_eq!(&f[0].payload[..3], &[0x3f, 0xe1, 0x0f]);
    // authorization is static name 23: never-indexed with 4-bit prefix 15 + 8.
    let p = &f[0].payload;
    let tail = &p[p.len() - 9..];
    assert_eq!(tail, &[0x1f, 0x08, 6, b's', b'e', b'c', b'r', b'e', b't']);
    let mut e = expected_request();
    e.push(("authorization".into(), "secret".into()));
    assert_eq!(server_view(&out).0, vec![e]);
}

#[tokio::test]
async fn trailers_blocks_are_reencoded_in_repair_mode() {
    let mut t = Vec::new();
    lit(&mut t, b"grpc-status", b"0");
    let input = conn(&[
        frame(HEADERS, END_HEADERS, 1, &request(&[0x81])),
        frame(DATA, 0, 1, &[0, 0, 0, 0, 0]),
        frame(HEADERS, END_STREAM | END_HEADERS, 1, &t),
    ]);
    let (out, _, stats) = run(&input).await;
    assert_eq!(stats.header_blocks_rewritten(), 2);
    let (blocks, _) = server_view(&out);
    assert_eq!(
        blocks[1],
        vec![("grpc-status".to_string(), "0".to_string())]
    );
}

#[tokio::test]
async fn unparseable_input_is_forwarded_raw() {
    // Not HTTP/2.
    let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    // HPACK error (index 70 does not exist) in the first block.
    let bad_index = conn(&[frame(HEADERS, END_HEADERS, 1, &[0x80 | 70])]);
    // Header block interrupted by a PING.
    let interrupted = conn(&[
        frame(HEADERS, 0, 1, &request(&[0x81])),
        frame(PING, 0, 0, &[0; 8]),
    ]);
    // EOF in the middle of a HEADERS frame, and in a frame header.
    let mut truncated = conn(&[frame(HEADERS, END_HEADERS, 1, &request(&[0x81]))]);
    truncated.truncate(truncated.len() - 3);
    let half_header = conn(&[vec![0, 0, 4, HEADERS, END_HEADERS]]);
    // Bad padding (pad length beyond the payload).
    let bad_pad = conn(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 0x82])]);
    for (name, input) in [
        ("http1", http1),
        ("bad index", bad_index),
        ("interrupted", interrupted),
        ("truncated", truncated),
        ("half header", half_header),
        ("bad padding", bad_pad),
    ] {
        let (out, mode, _) = run(&input).await;
        assert_eq!(out, input, "{name}");
        assert_eq!(mode, RepairMode::PassThrough, "{name}");
    }
    // Short input that is a prefix of the preface: forwarded at EOF.
    let (out, _, _) = run(b"PRI * HT").await;
    assert_eq!(out, b"PRI * HT");
}

#[tokio::test]
async fn fallback_in_repair_mode_forwards_raw_bytes() {
    let bad = frame(HEADERS, END_HEADERS, 3, &[0x80 | 99]);
    let input = conn(&[
        frame(HEADERS, END_STREAM | END_HEADERS, 1, &request(&[0x81])),
        bad.clone(),
        frame(PING, 0, 0, &[2; 8]),
    ]);
    let (out, mode, stats) = run(&input).await;
    assert_eq!(mode, RepairMode::PassThrough);
    assert_eq!(stats.fallbacks(), 1);
    let mut tail = bad;
    tail.extend_from_slice(&frame(PING, 0, 0, &[2; 8]));
    assert!(out.ends_with(&tail));
}
