//! Wire bytes → canonical proto3 JSON, without decoding into structs.
//!
//! The walker reads protobuf wire bytes with the schema of the `coprocess`
//! protos and writes JSON as it goes. The result, parsed as JSON, equals what
//! Python's `google.protobuf.json_format.MessageToJson` prints for the same
//! bytes (upb parsing semantics): camelCase names, enum names (unknown numbers
//! as numbers), 64-bit integers as strings, base64 bytes, Python `repr` floats,
//! `ensure_ascii` string escapes, defaults omitted, unknown fields skipped.
//! [`JsonStyle::Pretty`] is byte-for-byte Python's `json.dumps(indent=2)`
//! layout; only the order of map entries can differ (upb's map order is
//! random per process; ours is wire order).
//!
//! # Non-canonical input
//!
//! A single streaming pass cannot print a singular field that occurs twice
//! (last value wins, sub-messages merge), a repeated or map field whose
//! occurrences are not contiguous, or a map with a duplicate key (last wins).
//! The walker detects these cheaply (a bitmask of seen fields per message, the
//! previous field, and the keys of the current map) and
//! then rebuilds a canonical encoding of the message (the slow path) and walks
//! that instead. Senders that marshal normally never hit the slow path.
//!
//! # Streaming
//!
//! [`object_to_json_writer`] prints into an [`std::io::Write`] in pieces of
//! tens of kilobytes, long strings and bytes included, so a 40 MB Object is
//! logged without ever holding its 50 MB of JSON. Because printed output
//! cannot be taken back, it checks the input (and detects non-canonical
//! encodings) in a first pass that prints nothing.
//!
//! # Limits
//!
//! Nesting (sub-messages, map entries and groups together) is limited to
//! [`MAX_DEPTH`] levels, like upb's default. A `oneof` is printed as its
//! individual fields (the `coprocess` protos have none).

use std::fmt::Write as _;
use std::io;

use base64::Engine as _;

use crate::schema::{Card, Field, Kind, NONE, SCHEMA, Schema};

/// Deepest nesting of messages, map entries and groups that is accepted
/// (the default of upb, which Python's protobuf uses).
pub const MAX_DEPTH: usize = 100;

/// Layout of the JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsonStyle {
    /// Exactly Python's `json.dumps(indent=2)` (what `MessageToJson` prints):
    /// members separated by `",\n"` and indented by two spaces per level,
    /// `": "` between key and value, `{}`/`[]` when empty, no final newline.
    #[default]
    Pretty,
    /// No whitespace at all (`{"hookType":"Pre",...}`), for one-line logs.
    Compact,
}

pub use crate::wire::ObjectSummary;

/// What is wrong with the wire bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireErrorKind {
    /// The input ends inside a tag, value or group.
    #[error("truncated input")]
    Truncated,
    /// A varint has more than 10 bytes.
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    /// A length-delimited value claims more bytes than its message has left.
    #[error("length runs past the end of the enclosing message")]
    LengthOutOfBounds,
    /// A tag with field number 0.
    #[error("field number 0")]
    FieldNumberZero,
    /// A tag that does not fit in 32 bits.
    #[error("field number out of range")]
    FieldNumberOutOfRange,
    /// Wire type 6 or 7.
    #[error("invalid wire type {0}")]
    InvalidWireType(u8),
    /// An end-group tag outside a group, or for another field number.
    #[error("end-group tag without a matching start-group")]
    UnbalancedGroupEnd,
    /// A packed repeated fixed-width field whose length is not a multiple
    /// of the element size.
    #[error("packed field length is not a multiple of the element size")]
    BadPackedLength,
    /// A `string` field (or map key/value) that is not valid UTF-8.
    #[error("invalid UTF-8 in a string field")]
    InvalidUtf8,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// [`message_to_json`] was asked for a message type the schema lacks.
    #[error("unknown message type")]
    UnknownMessageType,
}

/// Malformed wire bytes: what is wrong, where (field path) and at which byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {kind} in {path} at byte {offset}")]
pub struct WireError {
    /// What is wrong.
    pub kind: WireErrorKind,
    /// The message and the field being read, e.g. `coprocess.Object.request.url`
    /// (map entries appear as `.key` / `.value`).
    pub path: String,
    /// Offset in the input of the item that is wrong.
    pub offset: usize,
}

/// Transcode an encoded `coprocess.Object` into proto3 JSON appended to `out`,
/// and return the summary facts. On error `out` is left as it was.
pub fn object_to_json<'a>(
    wire: &'a [u8],
    style: JsonStyle,
    out: &mut Vec<u8>,
) -> Result<ObjectSummary<'a>, WireError> {
    transcode(SCHEMA.object, wire, style, out, true)
}

/// Transcode an encoded `coprocess.Object` into proto3 JSON written to `w`
/// (the same text as [`object_to_json`]), holding at most a few tens of
/// kilobytes of output at a time whatever the size of the Object.
///
/// Nothing is written when `wire` is malformed: the error is
/// [`io::ErrorKind::InvalidData`] with the [`WireError`] inside (see
/// [`io::Error::get_ref`]). Write errors are returned as they are.
pub fn object_to_json_writer(
    wire: &[u8],
    style: JsonStyle,
    w: &mut dyn io::Write,
) -> io::Result<()> {
    stream(SCHEMA.object, wire, style, w)
}

/// Output is handed to the writer once it reaches this many bytes.
const SPILL_AT: usize = 32 * 1024;
/// Longer strings are escaped this many input bytes at a time when streaming.
const STRING_PIECE: usize = 16 * 1024;
/// Longer bytes values are base64-encoded this many input bytes at a time
/// when streaming; a multiple of 3, so the pieces need no padding.
const BASE64_PIECE: usize = 12 * 1024;

fn stream(msg: u16, wire: &[u8], style: JsonStyle, w: &mut dyn io::Write) -> io::Result<()> {
    let schema: &Schema = &SCHEMA;
    let invalid = |e: WireError| io::Error::new(io::ErrorKind::InvalidData, e);
    // Pass 1: check everything and look for non-canonical encodings, since
    // what pass 2 writes cannot be taken back.
    let mut nothing = Vec::new();
    let mut check = Walker::<false>::new(schema, wire, &mut nothing, false, true, false);
    check.message(msg, 0, wire.len(), 0).map_err(invalid)?;
    let canon;
    let input = if check.needs_slow {
        canon = canonicalize(schema, msg, wire, 0).map_err(|(kind, offset)| {
            invalid(WireError {
                kind,
                path: schema.messages[usize::from(msg)].full_name.to_string(),
                offset,
            })
        })?;
        &canon[..]
    } else {
        wire
    };
    let mut buf = Vec::with_capacity(SPILL_AT + STRING_PIECE);
    let mut walker = Walker::<true>::new(
        schema,
        input,
        &mut buf,
        style == JsonStyle::Pretty,
        false,
        false,
    );
    walker.sink = Some(&mut *w);
    walker.spill_at = SPILL_AT;
    let res = walker.message(msg, 0, input.len(), 0);
    let failed = walker.io_error.take();
    drop(walker);
    res.map_err(invalid)?;
    match failed {
        Some(e) => Err(e),
        None => w.write_all(&buf),
    }
}

/// Check that `wire` is a well-formed `coprocess.Object` (same checks as
/// [`object_to_json`]) and return its summary, without writing JSON.
pub fn validate_object(wire: &[u8]) -> Result<ObjectSummary<'_>, WireError> {
    let schema: &Schema = &SCHEMA;
    let mut sink = Vec::new();
    let mut w = Walker::<false>::new(schema, wire, &mut sink, false, false, true);
    w.message(schema.object, 0, wire.len(), 0)?;
    Ok(w.summary)
}

/// Transcode an encoded message of type `full_name` (e.g. `coprocess.Event`)
/// into proto3 JSON appended to `out`. On error `out` is left as it was.
pub fn message_to_json(
    full_name: &str,
    wire: &[u8],
    style: JsonStyle,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let Some(msg) = SCHEMA.message_index(full_name) else {
        return Err(WireError {
            kind: WireErrorKind::UnknownMessageType,
            path: full_name.to_owned(),
            offset: 0,
        });
    };
    transcode(msg, wire, style, out, false).map(|_| ())
}

/// The name of a `coprocess.HookType` value (`Some("Pre")` for 1), or `None`
/// for a number the enum does not define.
pub fn hook_type_name(v: i32) -> Option<&'static str> {
    let schema: &'static Schema = &SCHEMA;
    schema.enums[usize::from(schema.hook_type_enum)].name(v)
}

/// `Pre`, `Response`, … or the number for a value the enum does not know
/// (as MessageToJson prints it); borrowed, so logging it allocates nothing.
pub fn hook_type_label(v: i32) -> std::borrow::Cow<'static, str> {
    match hook_type_name(v) {
        Some(name) => std::borrow::Cow::Borrowed(name),
        None => std::borrow::Cow::Owned(v.to_string()),
    }
}

fn transcode<'a>(
    msg: u16,
    wire: &'a [u8],
    style: JsonStyle,
    out: &mut Vec<u8>,
    capture: bool,
) -> Result<ObjectSummary<'a>, WireError> {
    let schema: &Schema = &SCHEMA;
    let pretty = style == JsonStyle::Pretty;
    let start = out.len();
    let mut w = Walker::<true>::new(schema, wire, out, pretty, true, capture);
    let res = w.message(msg, 0, wire.len(), 0);
    let (summary, needs_slow) = (w.summary, w.needs_slow);
    if let Err(e) = res {
        out.truncate(start);
        return Err(e);
    }
    if !needs_slow {
        return Ok(summary);
    }
    // The whole input has been validated by now; rebuild it canonically and
    // print that. What was written during the first pass is discarded.
    out.truncate(start);
    let canon = canonicalize(schema, msg, wire, 0).map_err(|(kind, offset)| WireError {
        kind,
        path: schema.messages[usize::from(msg)].full_name.to_string(),
        offset,
    })?;
    let mut w = Walker::<true>::new(schema, &canon, out, pretty, false, false);
    if let Err(e) = w.message(msg, 0, canon.len(), 0) {
        out.truncate(start);
        return Err(e);
    }
    Ok(summary)
}

// ---------------------------------------------------------------------------
// Low-level wire reading. Positions are absolute offsets into one buffer;
// errors carry the offset of the offending item.

pub(crate) type Raw<T> = Result<T, (WireErrorKind, usize)>;

#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize, end: usize) -> Raw<u64> {
    let start = *pos;
    // Fast path: one-byte varints are most tags and lengths.
    if start < end
        && let Some(&b) = buf.get(start)
        && b < 0x80
    {
        *pos = start + 1;
        return Ok(u64::from(b));
    }
    let mut v = 0u64;
    for i in 0..10 {
        let p = start + i;
        let b = match buf.get(p) {
            Some(&b) if p < end => b,
            _ => return Err((WireErrorKind::Truncated, start)),
        };
        // Bits beyond 64 in the 10th byte are ignored, as upb does.
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos = p + 1;
            return Ok(v);
        }
    }
    Err((WireErrorKind::VarintTooLong, start))
}

/// Read a tag; returns (field number, wire type). Wire type 4 is returned to
/// the caller, which knows whether a group is open.
#[inline]
pub(crate) fn read_tag(buf: &[u8], pos: &mut usize, end: usize) -> Raw<(u32, u8)> {
    let start = *pos;
    let tag = read_varint(buf, pos, end)?;
    let tag = u32::try_from(tag).map_err(|_| (WireErrorKind::FieldNumberOutOfRange, start))?;
    let (num, wt) = (tag >> 3, (tag & 7) as u8);
    if num == 0 {
        return Err((WireErrorKind::FieldNumberZero, start));
    }
    if wt > 5 {
        return Err((WireErrorKind::InvalidWireType(wt), start));
    }
    Ok((num, wt))
}

/// Read the value of wire type 0, 1, 2 or 5; returns its byte range (for
/// wire type 2 the payload, without the length prefix).
#[inline]
pub(crate) fn read_value(buf: &[u8], pos: &mut usize, end: usize, wt: u8) -> Raw<(usize, usize)> {
    let start = *pos;
    match wt {
        0 => {
            read_varint(buf, pos, end)?;
            Ok((start, *pos))
        }
        1 | 5 => {
            let n = if wt == 1 { 8 } else { 4 };
            if end - start < n {
                return Err((WireErrorKind::Truncated, start));
            }
            *pos = start + n;
            Ok((start, start + n))
        }
        2 => {
            let len = read_varint(buf, pos, end)?;
            let s = *pos;
            if len > (end - s) as u64 {
                return Err((WireErrorKind::LengthOutOfBounds, start));
            }
            *pos = s + len as usize;
            Ok((s, *pos))
        }
        _ => Err((WireErrorKind::InvalidWireType(wt), start)),
    }
}

/// Skip the value of an unknown field (groups included, up to `MAX_DEPTH`).
pub(crate) fn skip_field(
    buf: &[u8],
    pos: &mut usize,
    end: usize,
    num: u32,
    wt: u8,
    depth: usize,
) -> Raw<()> {
    match wt {
        3 => {
            let start = *pos;
            if depth >= MAX_DEPTH {
                return Err((WireErrorKind::TooDeep, start));
            }
            loop {
                if *pos >= end {
                    return Err((WireErrorKind::Truncated, start));
                }
                let tag_pos = *pos;
                let (n, w) = read_tag(buf, pos, end)?;
                if w == 4 {
                    if n == num {
                        return Ok(());
                    }
                    return Err((WireErrorKind::UnbalancedGroupEnd, tag_pos));
                }
                skip_field(buf, pos, end, n, w, depth + 1)?;
            }
        }
        4 => Err((WireErrorKind::UnbalancedGroupEnd, *pos)),
        _ => read_value(buf, pos, end, wt).map(|_| ()),
    }
}

/// Whether a field of this kind and cardinality accepts this wire type;
/// anything else is treated as an unknown field (upb and protobuf-go do so).
#[inline]
pub(crate) fn wire_ok(f: &Field, wt: u8) -> bool {
    let natural = f.kind.wire_type();
    wt == natural || (wt == 2 && f.card == Card::Repeated && f.kind.packable())
}

#[inline]
fn le_u64(buf: &[u8], s: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = buf.get(s..s + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

#[inline]
fn le_u32(buf: &[u8], s: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = buf.get(s..s + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

/// The raw numeric value of a scalar: varint value or fixed-width bits.
#[inline]
fn scalar_bits(buf: &[u8], kind: Kind, s: usize, e: usize) -> u64 {
    match kind.wire_type() {
        1 => le_u64(buf, s),
        5 => u64::from(le_u32(buf, s)),
        2 => 0,
        _ => {
            let mut p = s;
            read_varint(buf, &mut p, e).unwrap_or(0)
        }
    }
}

/// Whether the raw value is the proto3 default of its kind (omitted).
#[inline]
fn is_default(kind: Kind, bits: u64, len: usize) -> bool {
    match kind {
        Kind::String | Kind::Bytes => len == 0,
        Kind::Message(_) => false,
        // 32-bit kinds: upb truncates the varint.
        Kind::Int32 | Kind::UInt32 | Kind::SInt32 | Kind::Enum(_) | Kind::Float => bits as u32 == 0,
        Kind::Fixed32 | Kind::SFixed32 => bits as u32 == 0,
        // -0.0 has bits set, so it is printed (as upb does).
        _ => bits == 0,
    }
}

/// A map key, normalized so that equal keys compare equal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Key<'b> {
    Bytes(&'b [u8]),
    Int(u64),
}

fn normalize_key(kind: Kind, bits: u64) -> u64 {
    match kind {
        Kind::Int32 | Kind::SFixed32 => bits as u32 as i32 as i64 as u64,
        Kind::UInt32 | Kind::Fixed32 => u64::from(bits as u32),
        Kind::SInt32 => zigzag32(bits as u32) as i64 as u64,
        Kind::SInt64 => zigzag64(bits) as u64,
        Kind::Bool => u64::from(bits != 0),
        _ => bits,
    }
}

#[inline]
fn zigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

#[inline]
fn zigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The key of one encoded map entry (last key field wins; absent = default).
pub(crate) fn entry_key<'b>(buf: &'b [u8], key_kind: Kind, s: usize, e: usize) -> Raw<Key<'b>> {
    let want = key_kind.wire_type();
    let mut key = None;
    let mut pos = s;
    while pos < e {
        let (n, wt) = read_tag(buf, &mut pos, e)?;
        if n == 1 && wt == want {
            key = Some(read_value(buf, &mut pos, e, wt)?);
        } else {
            skip_field(buf, &mut pos, e, n, wt, 0)?;
        }
    }
    Ok(match (key, key_kind) {
        (Some((ks, ke)), Kind::String | Kind::Bytes) => Key::Bytes(buf.get(ks..ke).unwrap_or(&[])),
        (None, Kind::String | Kind::Bytes) => Key::Bytes(&[]),
        (Some((ks, ke)), k) => Key::Int(normalize_key(k, scalar_bits(buf, k, ks, ke))),
        (None, _) => Key::Int(0),
    })
}

// ---------------------------------------------------------------------------
// The streaming walker.

/// Open container of the field currently being streamed (repeated or map).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Array,
    Map,
}

/// Maps up to this size detect a duplicate key by fingerprint.
const SMALL_MAP: usize = 8;

/// Duplicate-key detection for the map being streamed. The first
/// [`SMALL_MAP`] keys are kept as fingerprints (a match is confirmed by
/// rereading the entries so far); past that, a hash set holds the keys
/// (randomly seeded, since header names come from clients), so a map of n
/// entries costs O(n) whatever n is. Small on the stack: it is set up in
/// every message frame.
struct MapKeys<'a> {
    fps: [u64; SMALL_MAP],
    len: usize,
    /// Where the map's first entry starts.
    run_start: usize,
    large: Option<std::collections::HashSet<Key<'a>>>,
}

/// Entries of map field `num` (keys of kind `key_kind`) in `from..to`.
#[derive(Clone, Copy)]
struct Run {
    num: u32,
    key_kind: Kind,
    from: usize,
    to: usize,
}

impl MapKeys<'_> {
    fn new() -> Self {
        MapKeys {
            fps: [0; SMALL_MAP],
            len: 0,
            run_start: 0,
            large: None,
        }
    }

    fn reset(&mut self, run_start: usize) {
        self.len = 0;
        self.run_start = run_start;
        self.large = None;
    }

    /// Equal keys have equal fingerprints; different ones rarely do.
    #[inline]
    fn fingerprint(key: &Key<'_>) -> u64 {
        match *key {
            Key::Int(v) => v,
            Key::Bytes(b) => {
                let word = |s: &[u8]| {
                    let mut w = [0u8; 8];
                    w[..s.len()].copy_from_slice(s);
                    u64::from_le_bytes(w)
                };
                let n = b.len();
                let head = word(&b[..n.min(8)]);
                let tail = word(&b[n.saturating_sub(8)..]);
                head ^ tail.rotate_left(29) ^ (n as u64).rotate_left(56)
            }
        }
    }
}

struct Walker<'s, 'a, 'o, const EMIT: bool> {
    schema: &'s Schema,
    input: &'a [u8],
    out: &'o mut Vec<u8>,
    /// When streaming: where `out` is emptied once it holds `spill_at` bytes.
    sink: Option<&'o mut dyn io::Write>,
    spill_at: usize,
    /// The first write error; output after it is discarded.
    io_error: Option<io::Error>,
    pretty: bool,
    indent: usize,
    /// Look for non-canonical encodings (off on the canonical re-walk).
    detect: bool,
    needs_slow: bool,
    capture: bool,
    summary: ObjectSummary<'a>,
    /// (message, field being read) per nesting level, for error paths.
    levels: [(u16, u16); MAX_DEPTH + 2],
}

const SPACES: &[u8; 64] = b"                                                                ";

impl<'s, 'a, 'o, const EMIT: bool> Walker<'s, 'a, 'o, EMIT> {
    fn new(
        schema: &'s Schema,
        input: &'a [u8],
        out: &'o mut Vec<u8>,
        pretty: bool,
        detect: bool,
        capture: bool,
    ) -> Self {
        Walker {
            schema,
            input,
            out,
            sink: None,
            spill_at: usize::MAX,
            io_error: None,
            pretty,
            indent: 0,
            detect,
            needs_slow: false,
            capture,
            summary: ObjectSummary::default(),
            levels: [(NONE, NONE); MAX_DEPTH + 2],
        }
    }

    /// Build the error with the path of the levels up to `depth`.
    #[cold]
    fn error(&self, (kind, offset): (WireErrorKind, usize), depth: usize) -> WireError {
        let mut path = String::new();
        for &(m, f) in self.levels.iter().take(depth + 1) {
            let Some(msg) = self.schema.messages.get(usize::from(m)) else {
                break;
            };
            if path.is_empty() {
                path.push_str(&msg.full_name);
            }
            match msg.fields.get(usize::from(f)) {
                Some(field) => {
                    path.push('.');
                    path.push_str(&field.name);
                }
                None => break,
            }
        }
        WireError { kind, path, offset }
    }

    // --- output helpers (no-ops when not emitting) ---

    /// When streaming, hand the output to the writer once there is enough.
    #[inline]
    fn spill(&mut self) {
        if EMIT && self.out.len() >= self.spill_at {
            self.spill_now();
        }
    }

    #[cold]
    fn spill_now(&mut self) {
        if let Some(w) = self.sink.as_deref_mut() {
            if self.io_error.is_none()
                && let Err(e) = w.write_all(self.out)
            {
                self.io_error = Some(e);
            }
            self.out.clear();
        }
    }

    /// Print a string, in pieces when streaming a long one.
    fn emit_string(&mut self, text: &str) {
        if text.len() <= STRING_PIECE || self.sink.is_none() {
            write_json_string(self.out, text);
            return;
        }
        self.out.push(b'"');
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = STRING_PIECE.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            write_json_chars(self.out, piece);
            self.spill();
            rest = tail;
        }
        self.out.push(b'"');
    }

    /// Print a bytes value as a base64 string, in pieces when streaming.
    fn emit_base64(&mut self, data: &[u8]) {
        let piece = if self.sink.is_some() {
            BASE64_PIECE
        } else {
            data.len().max(1)
        };
        self.out.push(b'"');
        for chunk in data.chunks(piece) {
            let out = &mut *self.out;
            let start = out.len();
            let n = base64::encoded_len(chunk.len(), true).unwrap_or(0);
            out.resize(start + n, 0);
            let written = base64::engine::general_purpose::STANDARD
                .encode_slice(chunk, &mut out[start..])
                .unwrap_or(0);
            out.truncate(start + written);
            self.spill();
        }
        self.out.push(b'"');
    }

    #[inline]
    fn raw(&mut self, b: &[u8]) {
        if EMIT {
            self.out.extend_from_slice(b);
        }
    }

    #[inline]
    fn newline(&mut self) {
        if EMIT && self.pretty {
            self.out.push(b'\n');
            let mut n = self.indent * 2;
            while n > 0 {
                let k = n.min(SPACES.len());
                self.out.extend_from_slice(&SPACES[..k]);
                n -= k;
            }
        }
    }

    /// Open `{` or `[`.
    #[inline]
    fn open(&mut self, c: u8) {
        if EMIT {
            self.out.push(c);
            self.indent += 1;
        }
    }

    /// Close `}` or `]`; `empty` if nothing was written inside.
    #[inline]
    fn close(&mut self, c: u8, empty: bool) {
        if EMIT {
            self.indent -= 1;
            if !empty {
                self.newline();
            }
            self.out.push(c);
        }
    }

    /// Separator before a member or element.
    #[inline]
    fn sep(&mut self, first: &mut bool) {
        if EMIT {
            if !*first {
                self.out.push(b',');
            }
            self.newline();
        }
        *first = false;
    }

    #[inline]
    fn key(&mut self, first: &mut bool, json_key: &[u8]) {
        self.sep(first);
        if EMIT {
            self.out.extend_from_slice(json_key);
            self.colon();
        }
    }

    #[inline]
    fn colon(&mut self) {
        if EMIT {
            if self.pretty {
                self.out.extend_from_slice(b": ");
            } else {
                self.out.push(b':');
            }
        }
    }

    /// Validate a string value (always) and print it (when emitting).
    #[inline]
    fn string(&mut self, s: usize, e: usize) -> Raw<&'a str> {
        let input: &'a [u8] = self.input;
        let bytes = input.get(s..e).unwrap_or(&[]);
        let text = std::str::from_utf8(bytes)
            .map_err(|err| (WireErrorKind::InvalidUtf8, s + err.valid_up_to()))?;
        if EMIT {
            self.emit_string(text);
        }
        Ok(text)
    }

    /// Print a scalar value (never a message) whose bytes are `s..e`.
    fn scalar(&mut self, kind: Kind, s: usize, e: usize) -> Raw<()> {
        if let Kind::String = kind {
            return self.string(s, e).map(|_| ());
        }
        if !EMIT {
            return Ok(());
        }
        let bits = scalar_bits(self.input, kind, s, e);
        let mut ib = itoa::Buffer::new();
        let out = &mut *self.out;
        match kind {
            Kind::Double => write_py_f64(out, f64::from_bits(bits)),
            Kind::Float => write_py_f32(out, f32::from_bits(bits as u32)),
            Kind::Int32 | Kind::SFixed32 => {
                out.extend_from_slice(ib.format(bits as u32 as i32).as_bytes())
            }
            Kind::UInt32 | Kind::Fixed32 => {
                out.extend_from_slice(ib.format(bits as u32).as_bytes())
            }
            Kind::SInt32 => out.extend_from_slice(ib.format(zigzag32(bits as u32)).as_bytes()),
            Kind::Int64 | Kind::SFixed64 => quoted(out, ib.format(bits as i64)),
            Kind::UInt64 | Kind::Fixed64 => quoted(out, ib.format(bits)),
            Kind::SInt64 => quoted(out, ib.format(zigzag64(bits))),
            Kind::Bool => out.extend_from_slice(if bits != 0 { b"true" } else { b"false" }),
            Kind::Enum(en) => {
                let v = bits as u32 as i32;
                match self
                    .schema
                    .enums
                    .get(usize::from(en))
                    .and_then(|d| d.name(v))
                {
                    // Enum value names are identifiers: no escaping needed.
                    Some(name) => quoted(out, name),
                    None => out.extend_from_slice(ib.format(v).as_bytes()),
                }
            }
            Kind::Bytes => {
                let input: &'a [u8] = self.input;
                self.emit_base64(input.get(s..e).unwrap_or(&[]));
            }
            Kind::String | Kind::Message(_) => {}
        }
        Ok(())
    }

    /// Walk the message `m` in `pos..end`, printing it as a JSON object.
    fn message(
        &mut self,
        m: u16,
        mut pos: usize,
        end: usize,
        depth: usize,
    ) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return Err(self.error((WireErrorKind::TooDeep, pos), depth.saturating_sub(1)));
        }
        let schema = self.schema;
        let input = self.input;
        let Some(msg) = schema.messages.get(usize::from(m)) else {
            return Err(self.error((WireErrorKind::UnknownMessageType, pos), depth));
        };
        self.levels[depth] = (m, NONE);
        let root_object = self.capture && depth == 0;
        self.open(b'{');
        let mut first = true;
        // Non-canonical detection: fields seen (bit = index mod 64; a false
        // positive only costs the slow path) and the previous known field.
        let mut seen = 0u64;
        let mut prev = usize::MAX;
        let mut open = Open::None;
        let mut open_first = true;
        let mut map_keys = MapKeys::new();

        while pos < end {
            self.spill();
            let tag_pos = pos;
            self.levels[depth].1 = NONE;
            let (num, wt) = read_tag(input, &mut pos, end).map_err(|e| self.error(e, depth))?;
            let Some((fi, f)) = msg.field(num).filter(|(_, f)| wire_ok(f, wt)) else {
                skip_field(input, &mut pos, end, num, wt, depth)
                    .map_err(|e| self.error(e, depth))?;
                continue;
            };
            self.levels[depth].1 = fi as u16;
            if fi != prev {
                match open {
                    Open::Array => self.close(b']', open_first),
                    Open::Map => self.close(b'}', open_first),
                    Open::None => {}
                }
                open = Open::None;
                let bit = 1u64 << (fi & 63);
                if seen & bit != 0 {
                    self.needs_slow = true;
                }
                seen |= bit;
                prev = fi;
            } else if f.card == Card::Singular {
                self.needs_slow = true;
            }
            let (s, e) = read_value(input, &mut pos, end, wt).map_err(|e| self.error(e, depth))?;
            match f.card {
                Card::Singular => {
                    if let Kind::Message(sub) = f.kind {
                        self.key(&mut first, &f.json_key);
                        self.message(sub, s, e, depth + 1)?;
                    } else {
                        let bits = scalar_bits(input, f.kind, s, e);
                        if root_object {
                            self.capture_field(fi, f.kind, bits, s, e)
                                .map_err(|err| self.error(err, depth))?;
                        }
                        // Omitted defaults need no UTF-8 check: they are empty.
                        if f.presence || !is_default(f.kind, bits, e - s) {
                            self.key(&mut first, &f.json_key);
                            self.scalar(f.kind, s, e)
                                .map_err(|err| self.error(err, depth))?;
                        }
                    }
                }
                Card::Repeated => {
                    if open == Open::None {
                        // Opened lazily: an empty packed run prints nothing.
                        open_first = true;
                    }
                    if wt == 2 && f.kind.packable() {
                        self.packed(f, &mut open, &mut open_first, &mut first, s, e)
                            .map_err(|err| self.error(err, depth))?;
                    } else {
                        if open == Open::None {
                            self.key(&mut first, &f.json_key);
                            self.open(b'[');
                            open = Open::Array;
                        }
                        self.sep(&mut open_first);
                        if let Kind::Message(sub) = f.kind {
                            self.message(sub, s, e, depth + 1)?;
                        } else {
                            self.scalar(f.kind, s, e)
                                .map_err(|err| self.error(err, depth))?;
                        }
                    }
                }
                Card::Map(entry) => {
                    if open == Open::None {
                        self.key(&mut first, &f.json_key);
                        self.open(b'{');
                        open = Open::Map;
                        open_first = true;
                        map_keys.reset(tag_pos);
                    }
                    let capture_spec = root_object && fi == schema.obj_spec;
                    let (key_kind, key) =
                        self.map_entry(entry, &mut open_first, s, e, depth + 1, capture_spec)?;
                    if self.detect
                        && !self.needs_slow
                        && self.seen_before(&mut map_keys, num, key_kind, tag_pos, key)
                    {
                        self.needs_slow = true;
                    }
                }
            }
        }
        match open {
            Open::Array => self.close(b']', open_first),
            Open::Map => self.close(b'}', open_first),
            Open::None => {}
        }
        self.levels[depth].1 = NONE;
        self.close(b'}', first);
        Ok(())
    }

    /// Whether `key`, of the entry at `at` of map field `num`, occurred
    /// earlier in the map; remembers it.
    #[inline]
    fn seen_before(
        &self,
        keys: &mut MapKeys<'a>,
        num: u32,
        key_kind: Kind,
        at: usize,
        key: Key<'a>,
    ) -> bool {
        if let Some(set) = &mut keys.large {
            return !set.insert(key);
        }
        let earlier = Run {
            num,
            key_kind,
            from: keys.run_start,
            to: at,
        };
        let fp = MapKeys::fingerprint(&key);
        if keys.len < SMALL_MAP {
            let dup = keys.fps[..keys.len].contains(&fp) && self.confirm(earlier, key);
            keys.fps[keys.len] = fp;
            keys.len += 1;
            return dup;
        }
        // A big map: from now on, a hash set of every key.
        match self.key_set(earlier) {
            Some(mut set) => {
                let dup = !set.insert(key);
                keys.large = Some(set);
                dup
            }
            // Already validated; a failure to reread only means "maybe".
            None => true,
        }
    }

    /// A fingerprint matched: is `key` really among the `earlier` keys?
    #[cold]
    #[inline(never)]
    fn confirm(&self, earlier: Run, key: Key<'a>) -> bool {
        self.run_keys(earlier).any(|k| k.is_none_or(|k| k == key))
    }

    /// The keys of a run of entries as a set (`None` if one cannot be reread).
    #[cold]
    #[inline(never)]
    fn key_set(&self, run: Run) -> Option<std::collections::HashSet<Key<'a>>> {
        self.run_keys(run).collect()
    }

    /// The keys of the entries in `run`, which were validated already
    /// (`None`: the bytes could not be reread).
    fn run_keys(&self, run: Run) -> impl Iterator<Item = Option<Key<'a>>> + use<'a, 's, 'o, EMIT> {
        let input: &'a [u8] = self.input;
        let Run {
            num,
            key_kind,
            from: mut pos,
            to,
        } = run;
        std::iter::from_fn(move || {
            while pos < to {
                let Ok((n, wt)) = read_tag(input, &mut pos, to) else {
                    pos = to;
                    return Some(None);
                };
                if n == num && wt == 2 {
                    let Ok((s, e)) = read_value(input, &mut pos, to, wt) else {
                        pos = to;
                        return Some(None);
                    };
                    return Some(entry_key(input, key_kind, s, e).ok());
                }
                if skip_field(input, &mut pos, to, n, wt, 0).is_err() {
                    pos = to;
                    return Some(None);
                }
            }
            None
        })
    }

    /// Record the summary facts of a top-level Object field.
    fn capture_field(&mut self, fi: usize, kind: Kind, bits: u64, s: usize, e: usize) -> Raw<()> {
        if fi == self.schema.obj_hook_type {
            self.summary.hook_type = bits as u32 as i32;
        } else if fi == self.schema.obj_hook_name && kind == Kind::String {
            let input: &'a [u8] = self.input;
            self.summary.hook_name = std::str::from_utf8(input.get(s..e).unwrap_or(&[]))
                .map_err(|err| (WireErrorKind::InvalidUtf8, s + err.valid_up_to()))?;
        }
        Ok(())
    }

    /// Print the elements of one packed run.
    fn packed(
        &mut self,
        f: &Field,
        open: &mut Open,
        open_first: &mut bool,
        first: &mut bool,
        s: usize,
        e: usize,
    ) -> Raw<()> {
        let width = match f.kind.wire_type() {
            1 => 8,
            5 => 4,
            _ => 0,
        };
        if width != 0 && !(e - s).is_multiple_of(width) {
            return Err((WireErrorKind::BadPackedLength, s));
        }
        let mut p = s;
        while p < e {
            let vs = p;
            if width == 0 {
                read_varint(self.input, &mut p, e)?;
            } else {
                p += width;
            }
            self.spill();
            if *open == Open::None {
                self.key(first, &f.json_key);
                self.open(b'[');
                *open = Open::Array;
            }
            self.sep(open_first);
            self.scalar(f.kind, vs, p)?;
        }
        Ok(())
    }

    /// Walk one map entry in `s..e` and print `"key": value`.
    #[inline(always)]
    fn map_entry(
        &mut self,
        entry: u16,
        open_first: &mut bool,
        s: usize,
        e: usize,
        depth: usize,
        capture_spec: bool,
    ) -> Result<(Kind, Key<'a>), WireError> {
        if depth > MAX_DEPTH {
            return Err(self.error((WireErrorKind::TooDeep, s), depth - 1));
        }
        let schema = self.schema;
        let input: &'a [u8] = self.input;
        let Some(em) = schema.messages.get(usize::from(entry)) else {
            return Err(self.error((WireErrorKind::UnknownMessageType, s), depth - 1));
        };
        let (Some(kf), Some(vf)) = (em.fields.first(), em.fields.get(1)) else {
            return Err(self.error((WireErrorKind::UnknownMessageType, s), depth - 1));
        };
        self.levels[depth] = (entry, NONE);
        let (kw, vw) = (kf.kind.wire_type(), vf.kind.wire_type());
        let mut key = None;
        let mut val = None;
        let mut pos = s;
        while pos < e {
            let (n, wt) = read_tag(input, &mut pos, e).map_err(|err| self.error(err, depth))?;
            if n == 1 && wt == kw {
                self.levels[depth].1 = 0;
                key =
                    Some(read_value(input, &mut pos, e, wt).map_err(|err| self.error(err, depth))?);
            } else if n == 2 && wt == vw {
                self.levels[depth].1 = 1;
                let v = read_value(input, &mut pos, e, wt).map_err(|err| self.error(err, depth))?;
                if val.is_some() && matches!(vf.kind, Kind::Message(_)) {
                    // Repeated message value: the occurrences merge.
                    self.needs_slow = true;
                }
                val = Some(v);
            } else {
                self.levels[depth].1 = NONE;
                skip_field(input, &mut pos, e, n, wt, depth)
                    .map_err(|err| self.error(err, depth))?;
            }
        }
        // Key: validate, print as a JSON string.
        self.sep(open_first);
        self.levels[depth].1 = 0;
        let (ks, ke) = key.unwrap_or((e, e));
        let k = match kf.kind {
            Kind::String => {
                let text = self.string(ks, ke).map_err(|err| self.error(err, depth))?;
                Key::Bytes(text.as_bytes())
            }
            Kind::Bytes => Key::Bytes(input.get(ks..ke).unwrap_or(&[])),
            kind => {
                let bits = if key.is_some() {
                    scalar_bits(input, kind, ks, ke)
                } else {
                    0
                };
                if EMIT {
                    // Non-string keys print as strings: "12", "true".
                    self.out.push(b'"');
                    match kind {
                        Kind::Bool => self.raw(if bits != 0 { b"true" } else { b"false" }),
                        _ if key.is_some() => self.scalar_unquoted(kind, ks, ke),
                        _ => self.raw(b"0"),
                    }
                    self.out.push(b'"');
                }
                Key::Int(normalize_key(kind, bits))
            }
        };
        self.colon();
        // Value (a missing value prints as the default).
        self.levels[depth].1 = 1;
        match (vf.kind, val) {
            (Kind::Message(sub), Some((vs, ve))) => self.message(sub, vs, ve, depth + 1)?,
            (Kind::Message(sub), None) => self.message(sub, e, e, depth + 1)?,
            (kind, Some((vs, ve))) => {
                if capture_spec && kind == Kind::String {
                    let text =
                        std::str::from_utf8(input.get(vs..ve).unwrap_or(&[])).map_err(|err| {
                            self.error((WireErrorKind::InvalidUtf8, vs + err.valid_up_to()), depth)
                        })?;
                    match k {
                        Key::Bytes(b"APIID") => self.summary.api_id = text,
                        Key::Bytes(b"OrgID") => self.summary.org_id = text,
                        _ => {}
                    }
                }
                self.scalar(kind, vs, ve)
                    .map_err(|err| self.error(err, depth))?
            }
            (kind, None) => {
                if capture_spec {
                    match k {
                        Key::Bytes(b"APIID") => self.summary.api_id = "",
                        Key::Bytes(b"OrgID") => self.summary.org_id = "",
                        _ => {}
                    }
                }
                if EMIT {
                    write_default(self.out, self.schema, kind);
                }
            }
        }
        self.levels[depth] = (NONE, NONE);
        Ok((kf.kind, k))
    }

    /// Print an integer scalar without the quotes 64-bit kinds get.
    fn scalar_unquoted(&mut self, kind: Kind, s: usize, e: usize) {
        let bits = scalar_bits(self.input, kind, s, e);
        let mut ib = itoa::Buffer::new();
        let text = match kind {
            Kind::Int32 | Kind::SFixed32 => ib.format(bits as u32 as i32),
            Kind::UInt32 | Kind::Fixed32 => ib.format(bits as u32),
            Kind::SInt32 => ib.format(zigzag32(bits as u32)),
            Kind::SInt64 => ib.format(zigzag64(bits)),
            Kind::Int64 | Kind::SFixed64 => ib.format(bits as i64),
            _ => ib.format(bits),
        };
        self.out.extend_from_slice(text.as_bytes());
    }
}

/// The JSON of a missing map value of a scalar kind.
fn write_default(out: &mut Vec<u8>, schema: &Schema, kind: Kind) {
    let text: &[u8] = match kind {
        Kind::Double | Kind::Float => b"0.0",
        Kind::Int64 | Kind::UInt64 | Kind::SInt64 | Kind::Fixed64 | Kind::SFixed64 => b"\"0\"",
        Kind::Bool => b"false",
        Kind::String | Kind::Bytes => b"\"\"",
        Kind::Enum(en) => {
            match schema.enums.get(usize::from(en)).and_then(|d| d.name(0)) {
                Some(name) => quoted(out, name),
                None => out.push(b'0'),
            }
            return;
        }
        Kind::Message(_) => b"{}",
        _ => b"0",
    };
    out.extend_from_slice(text);
}

#[inline]
fn quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

// ---------------------------------------------------------------------------
// Text formatting: Python `json.dumps(ensure_ascii=True)` strings and
// `repr(float)`.

/// Bytes that cannot be copied verbatim: controls, `"`, `\`, DEL, non-ASCII.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i < 0x20 || i == b'"' as usize || i == b'\\' as usize || i >= 0x7f;
        i += 1;
    }
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
fn push_u_escape(out: &mut Vec<u8>, u: u32) {
    out.extend_from_slice(&[
        b'\\',
        b'u',
        HEX[((u >> 12) & 0xf) as usize],
        HEX[((u >> 8) & 0xf) as usize],
        HEX[((u >> 4) & 0xf) as usize],
        HEX[(u & 0xf) as usize],
    ]);
}

/// Whether any byte of `w` needs escaping (exact, not just "maybe").
#[inline]
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let ctrl = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
    let high = (w | w.wrapping_add(ONES)) & HIGH != 0;
    ctrl || high
        || has_zero(w ^ (ONES * u64::from(b'"')))
        || has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// Append `s` as a JSON string literal escaped like Python's
/// `json.dumps(s, ensure_ascii=True)`: only `' '..='~'` verbatim, short
/// escapes for `"` `\` `\n` `\r` `\t` `\b` `\f`, `\u00XX` (lower-case hex)
/// otherwise, and surrogate pairs above U+FFFF.
pub(crate) fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_json_chars(out, s);
    out.push(b'"');
}

/// [`write_json_string`] without the quotes.
fn write_json_chars(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip 8 plain bytes at a time (SWAR): none < 0x20, >= 0x7f, '"' or '\\'.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if !word_needs_escape(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let c = bytes[i];
        if !NEEDS_ESCAPE[usize::from(c)] {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if c < 0x80 {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                _ => push_u_escape(out, u32::from(c)),
            }
            i += 1;
        } else {
            // `i` is on a char boundary: only whole chars are ever skipped.
            let ch = s
                .get(i..)
                .and_then(|t| t.chars().next())
                .unwrap_or('\u{fffd}');
            let cp = u32::from(ch);
            if cp >= 0x10000 {
                let v = cp - 0x10000;
                push_u_escape(out, 0xd800 | (v >> 10));
                push_u_escape(out, 0xdc00 | (v & 0x3ff));
            } else {
                push_u_escape(out, cp);
            }
            i += ch.len_utf8();
        }
        start = i;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or(&[]));
}

/// A small stack buffer for `{:e}` output.
struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let dst = self
            .buf
            .get_mut(self.len..self.len + s.len())
            .ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// Append a double as Python's `repr(float)` (non-finite values as the JSON
/// strings `"NaN"`, `"Infinity"`, `"-Infinity"`, as `MessageToJson` does).
pub fn write_py_f64(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(if v.is_nan() {
            b"\"NaN\""
        } else if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
        return;
    }
    write_shortest(out, v);
}

/// Append a float (32-bit) the way `MessageToJson` prints it: the shortest
/// decimal that round-trips through 32 bits, then `repr` of that double.
pub fn write_py_f32(out: &mut Vec<u8>, v: f32) {
    if !v.is_finite() {
        write_py_f64(out, f64::from(v));
        return;
    }
    write_shortest(out, v);
}

/// Rust's `{:e}` prints the shortest round-tripping digits, like repr; only
/// the notation needs rewriting.
fn write_shortest(out: &mut Vec<u8>, v: impl std::fmt::LowerExp) {
    let mut b = StackBuf {
        buf: [0; 40],
        len: 0,
    };
    if write!(b, "{v:e}").is_err() {
        return;
    }
    py_repr_from_exp(out, &b.buf[..b.len]);
}

/// Rebuild Python's repr from Rust's `-d.ddde-N`: fixed notation when the
/// decimal exponent is in -4..16, otherwise `d.ddde+XX` (two-digit minimum).
fn py_repr_from_exp(out: &mut Vec<u8>, s: &[u8]) {
    let (neg, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let epos = s.iter().position(|&c| c == b'e').unwrap_or(s.len());
    let (mant, exp) = s.split_at(epos);
    let mut digits = [0u8; 24];
    let mut nd = 0;
    for &c in mant {
        if c.is_ascii_digit() && nd < digits.len() {
            digits[nd] = c;
            nd += 1;
        }
    }
    let digits = &digits[..nd.max(1)];
    let exp: i32 = std::str::from_utf8(exp.get(1..).unwrap_or(b"0"))
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    if neg {
        out.push(b'-');
    }
    let decpt = exp + 1; // value = 0.DIGITS × 10^decpt
    if digits == b"0" {
        out.extend_from_slice(b"0.0");
    } else if !(-4 < decpt && decpt <= 16) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(a).as_bytes());
    } else if decpt <= 0 {
        out.extend_from_slice(b"0.");
        for _ in 0..-decpt {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    } else {
        let d = decpt as usize;
        if d >= digits.len() {
            out.extend_from_slice(digits);
            for _ in digits.len()..d {
                out.push(b'0');
            }
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..d]);
            out.push(b'.');
            out.extend_from_slice(&digits[d..]);
        }
    }
}

// ---------------------------------------------------------------------------
// Slow path: rebuild a canonical encoding (allocates; only for odd input).

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_field(out: &mut Vec<u8>, num: u32, wt: u8, payload: &[u8]) {
    put_varint(out, u64::from(num) << 3 | u64::from(wt));
    if wt == 2 {
        put_varint(out, payload.len() as u64);
    }
    out.extend_from_slice(payload);
}

/// Canonical encoding of message `m` from `buf`: unknown and wrong-wire-type
/// fields dropped, singular scalars last-wins, singular sub-messages merged
/// (protobuf merge = parsing the concatenation), repeated fields contiguous,
/// map entries canonical and deduplicated (last wins).
fn canonicalize(schema: &Schema, m: u16, buf: &[u8], depth: usize) -> Raw<Vec<u8>> {
    if depth > MAX_DEPTH {
        return Err((WireErrorKind::TooDeep, 0));
    }
    let msg = schema
        .messages
        .get(usize::from(m))
        .ok_or((WireErrorKind::UnknownMessageType, 0))?;
    let mut occ: Vec<Vec<(u8, &[u8])>> = vec![Vec::new(); msg.fields.len()];
    let mut pos = 0;
    let end = buf.len();
    while pos < end {
        let (num, wt) = read_tag(buf, &mut pos, end)?;
        match msg.field(num) {
            Some((fi, f)) if wire_ok(f, wt) => {
                let (s, e) = read_value(buf, &mut pos, end, wt)?;
                occ[fi].push((wt, buf.get(s..e).unwrap_or(&[])));
            }
            _ => skip_field(buf, &mut pos, end, num, wt, depth)?,
        }
    }
    let mut out = Vec::with_capacity(buf.len());
    for (f, list) in msg.fields.iter().zip(&occ) {
        let Some(&(last_wt, last)) = list.last() else {
            continue;
        };
        match (f.card, f.kind) {
            (Card::Singular, Kind::Message(sub)) => {
                let merged: Vec<u8> = list.iter().flat_map(|(_, p)| p.iter().copied()).collect();
                put_field(
                    &mut out,
                    f.number,
                    2,
                    &canonicalize(schema, sub, &merged, depth + 1)?,
                );
            }
            (Card::Singular, _) => put_field(&mut out, f.number, last_wt, last),
            (Card::Repeated, Kind::Message(sub)) => {
                for (_, p) in list {
                    put_field(
                        &mut out,
                        f.number,
                        2,
                        &canonicalize(schema, sub, p, depth + 1)?,
                    );
                }
            }
            (Card::Repeated, _) => {
                for &(wt, p) in list {
                    put_field(&mut out, f.number, wt, p);
                }
            }
            (Card::Map(entry), _) => {
                let key_kind = schema
                    .messages
                    .get(usize::from(entry))
                    .and_then(|em| em.fields.first())
                    .map_or(Kind::String, |kf| kf.kind);
                let entries = list
                    .iter()
                    .map(|(_, p)| canonicalize(schema, entry, p, depth + 1))
                    .collect::<Raw<Vec<Vec<u8>>>>()?;
                // Keep the last entry of each key.
                let mut keep = vec![true; entries.len()];
                let mut keys = std::collections::HashSet::new();
                for (i, en) in entries.iter().enumerate().rev() {
                    let k = entry_key(en, key_kind, 0, en.len())?;
                    keep[i] = keys.insert(k);
                }
                for (en, k) in entries.iter().zip(keep) {
                    if k {
                        put_field(&mut out, f.number, 2, en);
                    }
                }
            }
        }
    }
    Ok(out)
}

impl std::hash::Hash for Key<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Key::Bytes(b) => b.hash(state),
            Key::Int(v) => v.hash(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_escape_check_agrees_with_table() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut w = [b'a'; 8];
                w[pos] = b;
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(w)),
                    NEEDS_ESCAPE[usize::from(b)],
                    "byte {b:#x} at {pos}"
                );
                // Neighbours that carry or borrow must not hide or fake it.
                for n in [0x00, 0x1f, 0x20, 0x7e, 0x7f, 0xff] {
                    let mut w2 = [n; 8];
                    w2[pos] = b;
                    let want = w2.iter().any(|&c| NEEDS_ESCAPE[usize::from(c)]);
                    assert_eq!(word_needs_escape(u64::from_le_bytes(w2)), want);
                }
            }
        }
    }
}
