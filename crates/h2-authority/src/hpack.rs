//! A small HPACK (RFC 7541) decoder with dynamic table and Huffman support,
//! and a literal-only encoder that never touches the peer's dynamic table.

use std::collections::VecDeque;

use crate::huffman;

/// RFC 7541 Appendix A.
pub(crate) const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Per-entry overhead counted in the table size (RFC 7541 section 4.1).
const ENTRY_OVERHEAD: usize = 32;
/// The protocol's initial SETTINGS_HEADER_TABLE_SIZE.
pub(crate) const DEFAULT_TABLE_SIZE: usize = 4096;
/// Largest dynamic table size update we accept from a peer. The real limit is
/// the server's SETTINGS_HEADER_TABLE_SIZE, which h2 will enforce itself; this
/// one only bounds our memory.
pub(crate) const MAX_TABLE_SIZE: usize = 64 * 1024;

/// HPACK decoding errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The block ended in the middle of a representation.
    #[error("truncated header block")]
    Truncated,
    /// An integer did not fit.
    #[error("integer overflow")]
    IntegerOverflow,
    /// Index 0 or past the end of the tables.
    #[error("invalid table index {0}")]
    InvalidIndex(usize),
    /// A dynamic table size update above the allowed maximum.
    #[error("table size update {0} too large")]
    TableSizeTooLarge(usize),
    /// A dynamic table size update after the first field of a block.
    #[error("table size update after a header field")]
    LateSizeUpdate,
    /// Bad Huffman string.
    #[error(transparent)]
    Huffman(#[from] huffman::HuffmanError),
    /// The consumer of the decoded fields refused to go on.
    #[error("header block too large once decoded")]
    TooLarge,
}

/// How a field was represented by the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repr {
    /// Indexed field (section 6.1).
    Indexed,
    /// Literal with incremental indexing (6.2.1).
    Incremental,
    /// Literal without indexing (6.2.2).
    WithoutIndexing,
    /// Literal never indexed (6.2.3).
    NeverIndexed,
}

/// One decoded header field, borrowed from the block, the tables or scratch buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: &'a [u8],
    pub(crate) repr: Repr,
}

/// Something found in a header block.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    /// A dynamic table size update (section 6.3).
    SizeUpdate(usize),
    /// A header field.
    Field(Field<'a>),
}

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The decoder's dynamic table (section 2.3.2). Front = most recent = index 62.
#[derive(Debug, Default)]
struct DynTable {
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl DynTable {
    fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        if index == 0 {
            return None;
        }
        if index <= STATIC_TABLE.len() {
            return Some(STATIC_TABLE[index - 1]);
        }
        self.entries
            .get(index - STATIC_TABLE.len() - 1)
            .map(|(n, v)| (&**n, &**v))
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }

    fn set_max(&mut self, max: usize) {
        self.max_size = max;
        self.evict_to(max);
    }

    fn insert(&mut self, name: Box<[u8]>, value: Box<[u8]>) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // An entry larger than the table empties it (section 4.4).
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.entries.push_front((name, value));
    }
}

/// A stateful HPACK decoder for one direction of one connection.
#[derive(Debug)]
pub(crate) struct Decoder {
    table: DynTable,
    max_allowed: usize,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with an empty table of the protocol default size.
    pub(crate) fn new() -> Self {
        Self {
            table: DynTable {
                max_size: DEFAULT_TABLE_SIZE,
                ..DynTable::default()
            },
            max_allowed: MAX_TABLE_SIZE,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Number of entries in the dynamic table (for tests).
    #[cfg(test)]
    pub(crate) fn dynamic_len(&self) -> usize {
        self.table.entries.len()
    }

    /// Decodes a complete header block, calling `f` for every representation
    /// in order. The dynamic table is updated as the RFC requires; on error it
    /// may be left partially updated (the connection is unusable anyway).
    pub(crate) fn decode<F>(&mut self, mut block: &[u8], mut f: F) -> Result<(), DecodeError>
    where
        F: FnMut(Event<'_>) -> Result<(), DecodeError>,
    {
        let mut fields_seen = false;
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                // 6.1 Indexed header field.
                let index = decode_int(&mut block, 7)?;
                let (name, value) = self
                    .table
                    .get(index)
                    .ok_or(DecodeError::InvalidIndex(index))?;
                fields_seen = true;
                f(Event::Field(Field {
                    name,
                    value,
                    repr: Repr::Indexed,
                }))?;
            } else if first & 0xe0 == 0x20 {
                // 6.3 Dynamic table size update.
                let size = decode_int(&mut block, 5)?;
                if fields_seen {
                    return Err(DecodeError::LateSizeUpdate);
                }
                if size > self.max_allowed {
                    return Err(DecodeError::TableSizeTooLarge(size));
                }
                self.table.set_max(size);
                f(Event::SizeUpdate(size))?;
            } else {
                let (prefix, repr) = if first & 0xc0 == 0x40 {
                    (6, Repr::Incremental)
                } else if first & 0xf0 == 0x10 {
                    (4, Repr::NeverIndexed)
                } else {
                    (4, Repr::WithoutIndexing)
                };
                fields_seen = true;
                let name_index = decode_int(&mut block, prefix)?;
                let Self {
                    table,
                    name_buf,
                    value_buf,
                    ..
                } = self;
                let name: &[u8] = if name_index == 0 {
                    read_string(&mut block, name_buf)?
                } else {
                    table
                        .get(name_index)
                        .ok_or(DecodeError::InvalidIndex(name_index))?
                        .0
                };
                let value = read_string(&mut block, value_buf)?;
                if repr == Repr::Incremental {
                    let name: Box<[u8]> = name.into();
                    let value: Box<[u8]> = value.into();
                    f(Event::Field(Field {
                        name: &name,
                        value: &value,
                        repr,
                    }))?;
                    table.insert(name, value);
                } else {
                    f(Event::Field(Field { name, value, repr }))?;
                }
            }
        }
        Ok(())
    }
}

/// Decodes an integer with an `n`-bit prefix (section 5.1), advancing `buf`.
fn decode_int(buf: &mut &[u8], n: u32) -> Result<usize, DecodeError> {
    let (&first, mut rest) = buf.split_first().ok_or(DecodeError::Truncated)?;
    let max_prefix = (1usize << n) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value == max_prefix {
        let mut shift = 0u32;
        loop {
            let (&b, r) = rest.split_first().ok_or(DecodeError::Truncated)?;
            rest = r;
            // Four continuation bytes carry values up to 2^28, far beyond any
            // length, index or table size we accept; more is an overflow.
            if shift > 21 {
                return Err(DecodeError::IntegerOverflow);
            }
            value += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    *buf = rest;
    Ok(value)
}

/// Reads a string literal (section 5.2); Huffman strings are decoded into `scratch`.
fn read_string<'b: 'r, 's: 'r, 'r>(
    buf: &mut &'b [u8],
    scratch: &'s mut Vec<u8>,
) -> Result<&'r [u8], DecodeError> {
    let huffman = buf.first().ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = decode_int(buf, 7)?;
    if len > buf.len() {
        return Err(DecodeError::Truncated);
    }
    let (raw, rest) = buf.split_at(len);
    *buf = rest;
    if huffman {
        scratch.clear();
        huffman::decode(raw, scratch)?;
        Ok(scratch)
    } else {
        Ok(raw)
    }
}

/// Appends an integer with an `n`-bit prefix; `flags` holds the bits above the prefix.
pub(crate) fn encode_int(out: &mut Vec<u8>, n: u32, flags: u8, value: usize) {
    let max_prefix = (1usize << n) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a raw (non-Huffman) string literal.
pub(crate) fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, 7, 0, s.len());
    out.extend_from_slice(s);
}

/// Index of the first static table entry with this name.
pub(crate) fn static_name_index(name: &[u8]) -> Option<usize> {
    Some(match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"content-type" => 31,
        b"user-agent" => 58,
        b"te" | b"grpc-timeout" | b"grpc-encoding" | b"grpc-accept-encoding" => return None,
        _ => {
            return STATIC_TABLE
                .iter()
                .position(|(n, _)| *n == name)
                .map(|i| i + 1);
        }
    })
}

/// Appends a literal representation that leaves the decoder's dynamic table
/// untouched: "without indexing", or "never indexed" when `never_indexed`
/// (an intermediary must keep that representation, RFC 7541 section 6.2.3).
pub(crate) fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], never_indexed: bool) {
    let flags = if never_indexed { 0x10 } else { 0x00 };
    match static_name_index(name) {
        Some(i) => encode_int(out, 4, flags, i),
        None => {
            out.push(flags);
            encode_str(out, name);
        }
    }
    encode_str(out, value);
}

/// Appends a dynamic table size update.
pub(crate) fn encode_size_update(out: &mut Vec<u8>, size: usize) {
    encode_int(out, 5, 0x20, size);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dec: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
        let mut v = Vec::new();
        dec.decode(block, |e| {
            if let Event::Field(f) = e {
                v.push((
                    String::from_utf8_lossy(f.name).into_owned(),
                    String::from_utf8_lossy(f.value).into_owned(),
                ));
            }
            Ok(())
        })?;
        Ok(v)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn integers_round_trip() {
        for n in 1..=8u32 {
            for v in [0usize, 1, 30, 31, 126, 127, 128, 255, 1337, 16_384, 1 << 20] {
                let mut out = Vec::new();
                encode_int(&mut out, n, 0, v);
                let mut s = &out[..];
                assert_eq!(decode_int(&mut s, n).unwrap(), v, "n={n} v={v}");
                assert!(s.is_empty());
            }
        }
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        encode_int(&mut out, 5, 0, 1337);
        assert_eq!(out, [31, 154, 10]);
        let mut s: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode_int(&mut s, 7), Err(DecodeError::IntegerOverflow));
        let mut s: &[u8] = &[0x7f, 0x80];
        assert_eq!(decode_int(&mut s, 7), Err(DecodeError::Truncated));
    }

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        let mut d = Decoder::new();
        let b1 = b"\x82\x86\x84\x41\x0fwww.example.com";
        assert_eq!(
            collect(&mut d, b1).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let b2 = b"\x82\x86\x84\xbe\x58\x08no-cache";
        assert_eq!(
            collect(&mut d, b2).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        let b3 = b"\x82\x87\x85\xbf\x40\x0acustom-key\x0ccustom-value";
        assert_eq!(
            collect(&mut d, b3).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(d.dynamic_len(), 3);
        assert_eq!(d.table.size, 164);
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::new();
        let b1 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        assert_eq!(
            collect(&mut d, &b1).unwrap()[3],
            (":authority".to_string(), "www.example.com".to_string())
        );
        let b2 = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        let got = collect(&mut d, &b2).unwrap();
        assert_eq!(got[3].1, "www.example.com");
        assert_eq!(got[4], ("cache-control".into(), "no-cache".into()));
    }

    #[test]
    fn eviction_and_size_updates() {
        let mut d = Decoder::new();
        // Size update to 0 clears, then a new entry larger than the table is dropped.
        collect(&mut d, b"\x41\x01a").unwrap();
        assert_eq!(d.dynamic_len(), 1);
        collect(&mut d, b"\x20").unwrap();
        assert_eq!(d.dynamic_len(), 0);
        collect(&mut d, b"\x41\x01a").unwrap();
        assert_eq!(d.dynamic_len(), 0);
        assert_eq!(collect(&mut d, b"\xbe"), Err(DecodeError::InvalidIndex(62)));
        // Size update after a field is illegal.
        assert_eq!(
            collect(&mut d, b"\x82\x20"),
            Err(DecodeError::LateSizeUpdate)
        );
        let mut big = Vec::new();
        encode_size_update(&mut big, MAX_TABLE_SIZE + 1);
        assert!(matches!(
            collect(&mut d, &big),
            Err(DecodeError::TableSizeTooLarge(_))
        ));
        // Table of 64 bytes holds one 33-byte entry; the second evicts the first.
        let mut d = Decoder::new();
        let mut b = Vec::new();
        encode_size_update(&mut b, 64);
        collect(&mut d, &b).unwrap();
        collect(&mut d, b"\x40\x01x\x00").unwrap();
        collect(&mut d, b"\x40\x01y\x00").unwrap();
        assert_eq!(d.dynamic_len(), 1);
        assert_eq!(collect(&mut d, b"\xbe").unwrap(), pairs(&[("y", "")]));
    }

    #[test]
    fn literal_encoding_round_trips() {
        let mut out = Vec::new();
        encode_literal(&mut out, b":path", b"/grpc.health.v1.Health/Check", false);
        encode_literal(&mut out, b"te", b"trailers", false);
        encode_literal(&mut out, b"authorization", b"secret", true);
        let mut d = Decoder::new();
        let mut reprs = Vec::new();
        let mut v = Vec::new();
        d.decode(&out, |e| {
            if let Event::Field(f) = e {
                reprs.push(f.repr);
                v.push((f.name.to_vec(), f.value.to_vec()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(
            reprs,
            [
                Repr::WithoutIndexing,
                Repr::WithoutIndexing,
                Repr::NeverIndexed
            ]
        );
        assert_eq!(v[2], (b"authorization".to_vec(), b"secret".to_vec()));
        assert_eq!(d.dynamic_len(), 0);
    }

    #[test]
    fn static_name_index_matches_table() {
        for (i, (name, _)) in STATIC_TABLE.iter().enumerate() {
            let first = STATIC_TABLE.iter().position(|(n, _)| n == name).unwrap() + 1;
            assert_eq!(static_name_index(name), Some(first), "{i}");
            assert!(first <= i + 1);
        }
        assert_eq!(static_name_index(b"grpc-timeout"), None);
    }

    #[test]
    fn truncated_inputs_error_instead_of_panicking() {
        let full = b"\x82\x86\x84\x41\x0fwww.example.com\x40\x0acustom-key\x0ccustom-value";
        for cut in 0..full.len() {
            let mut d = Decoder::new();
            // Any prefix either decodes (cut on a boundary) or errors cleanly.
            let _ = collect(&mut d, &full[..cut]);
        }
    }
}
