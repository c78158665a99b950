//! Keep the fields our protos do not know through decode → modify → encode.
//!
//! A gateway newer than our `proto/` files may send fields we do not know.
//! prost drops them when it decodes, so a plugin that changes an `Object` would
//! silently strip them from the reply (Python's protobuf, the reference,
//! keeps them). The fix has two halves:
//!
//! * [`collect`] walks the received bytes with the schema once and records the
//!   unknown fields of every message, by location. When there are none (the
//!   normal case) it allocates nothing and returns `Ok(None)`.
//! * [`encode_with_unknown`] encodes the (modified) [`Object`] with prost and
//!   splices the recorded fields back into the messages they came from.
//!
//! [`decode`] combines `collect` with a prost decode that also accepts known
//! fields sent with an unexpected wire type (prost rejects those; upb and
//! protobuf-go keep them as unknown fields, and so do we).
//!
//! # What counts as unknown
//!
//! A field whose number the message does not define, or a known field whose
//! wire type does not fit its declaration (packed and unpacked encodings of
//! packable repeated fields both fit). Groups are unknown fields like any
//! other; the bytes of every unknown field (tag, value, group body and end tag)
//! are kept exactly as received.
//!
//! # Where they go back
//!
//! Unknown fields are written after the known fields of their message, in the
//! order they arrived (what upb, protobuf-go and C++ protobuf do when they
//! re-encode). A message gets its unknown fields back only if it still exists
//! in the object being encoded:
//!
//! * singular sub-messages (`request`, `session.basic_auth_data`, …): if the
//!   field is still set. A sub-message sent several times (merged by decoders)
//!   gets the unknown fields of all its occurrences.
//! * map entries and map values (`session.access_rights["api1"]`): if the key
//!   is still in the map. With duplicate keys the last entry wins, as in every
//!   decoder, and so do its unknown fields.
//! * elements of repeated message fields (`response.multivalue_headers[i]`,
//!   `access_rights[..].allowed_urls[i]`): by identity, not position. The
//!   identity of an element is the value of its field 1 when that is a
//!   singular scalar (`Header.key`, `AccessSpec.url`), plus its ordinal among
//!   the elements with the same value (the 2nd `Set-Cookie` header stays the
//!   2nd). So the unknown fields follow an element when other elements are
//!   added, removed or reordered, and are dropped when the element is removed
//!   or its key is changed. A message type without such a field 1 has the
//!   same (empty) identity for every element, which makes the rule "by index".
//!
//! Unknown fields of a map *entry* (not of its value) are an odd case: upb
//! moves such an entry to the parent's unknown fields (the map does not get the
//! key), protobuf-go and prost ignore them. We keep them in the entry and put
//! them back into the re-encoded entry of the same key.
//!
//! # Design
//!
//! A schema-driven splice, not the "append a sparse message and let merge
//! semantics do it" trick: appending cannot reach elements of repeated fields
//! (an appended element is a new element), it duplicates map values, and it
//! produces non-canonical output (singular fields twice) that sends every
//! reader down its slow merge path. The splice walks the prost encoding only
//! along the messages that have unknown fields, copies every other field as
//! one block, and rewrites the length prefixes of the rebuilt messages (sizes
//! are computed first, so the output is written once, without temporary
//! buffers). When all unknown fields are top-level they are simply appended.

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;

use crate::Object;
use crate::json::{
    Key, MAX_DEPTH, WireError, WireErrorKind, entry_key, put_varint, read_tag, read_value,
    skip_field, wire_ok,
};
use crate::schema::{Card, Kind, SCHEMA, Schema};

/// The unknown fields of an encoded `coprocess.Object`, by location.
///
/// Owns copies of the unknown bytes (and of the keys that locate them), so it
/// does not borrow the received buffer and can be held across `await`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFields {
    root: Node,
    /// Some unknown field is a known field number with the wrong wire type;
    /// prost refuses such input, so [`decode`] strips them first.
    wrong_wire_type: bool,
}

impl UnknownFields {
    /// Total size of the unknown fields, in bytes.
    pub fn len(&self) -> usize {
        self.root.total_len()
    }

    /// Whether there are no unknown bytes (never true for a value returned
    /// by [`collect`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether some unknown field is a known field sent with an unexpected
    /// wire type (prost cannot decode such input; use [`decode`]).
    pub fn has_wrong_wire_type(&self) -> bool {
        self.wrong_wire_type
    }
}

/// The unknown fields of one message and of the messages below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    /// The unknown fields of this message, concatenated in wire order.
    raw: Vec<u8>,
    /// Sub-messages holding unknown fields (directly or further down).
    children: BTreeMap<(u32, At), Node>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.raw.is_empty() && self.children.is_empty()
    }

    fn total_len(&self) -> usize {
        self.raw.len() + self.children.values().map(Node::total_len).sum::<usize>()
    }

    /// Whether some child is a value of field `num`.
    fn has_field(&self, num: u32) -> bool {
        self.children
            .range((num, At::Singular)..)
            .next()
            .is_some_and(|((n, _), _)| *n == num)
    }
}

/// Where a sub-message sits in its parent (the field number is alongside).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum At {
    /// The value of a singular message field.
    Singular,
    /// The map entry with this key (see [`key_bytes`]).
    Entry(Box<[u8]>),
    /// The element of a repeated message field with this identity: the
    /// bytes of its field 1 (see [`key_bytes`]) and its ordinal among the
    /// elements with the same field 1.
    Element(Box<[u8]>, u32),
}

/// A map key or element identity as bytes: strings and bytes as they are,
/// integers (normalized) big-endian. Within one field all keys have one kind.
fn key_bytes(key: Key<'_>) -> Box<[u8]> {
    match key {
        Key::Bytes(b) => b.into(),
        Key::Int(v) => v.to_be_bytes().into(),
    }
}

/// A failure deep in the walk: what, where, and the field names on the way
/// back up (innermost first; only built on error).
struct Fail {
    kind: WireErrorKind,
    offset: usize,
    names: Vec<&'static str>,
}

impl From<(WireErrorKind, usize)> for Fail {
    fn from((kind, offset): (WireErrorKind, usize)) -> Self {
        Fail {
            kind,
            offset,
            names: Vec::new(),
        }
    }
}

impl Fail {
    fn into_error(self, schema: &Schema) -> WireError {
        let mut path = schema
            .messages
            .get(usize::from(schema.object))
            .map_or_else(String::new, |m| m.full_name.to_string());
        for name in self.names.iter().rev() {
            path.push('.');
            path.push_str(name);
        }
        WireError {
            kind: self.kind,
            path,
            offset: self.offset,
        }
    }
}

/// Finds every unknown field (at any depth) of an encoded `coprocess.Object`.
///
/// Returns `Ok(None)` when there are none; that case costs one walk over the
/// message structure (string contents are not looked at) and no allocation.
/// Otherwise a second walk records the fields. Malformed wire bytes (bad tags,
/// lengths, groups, nesting deeper than [`MAX_DEPTH`]) are an error, with the
/// same [`WireErrorKind`]s as the JSON transcoder; UTF-8 is left to the decoder.
pub fn collect(wire: &[u8]) -> Result<Option<UnknownFields>, WireError> {
    let schema: &'static Schema = &SCHEMA;
    let walker = Collector { schema, buf: wire };
    let found = walker
        .message(schema.object, 0, wire.len(), 0, None)
        .map_err(|f| f.into_error(schema))?;
    if !found {
        return Ok(None);
    }
    let mut root = Node::default();
    let mut wrong_wire_type = false;
    let walker = Collector { schema, buf: wire };
    walker
        .message(
            schema.object,
            0,
            wire.len(),
            0,
            Some(Sink {
                node: &mut root,
                wrong_wire_type: &mut wrong_wire_type,
            }),
        )
        .map_err(|f| f.into_error(schema))?;
    if root.is_empty() {
        // Every unknown field was in a map entry a later one replaced.
        return Ok(None);
    }
    Ok(Some(UnknownFields {
        root,
        wrong_wire_type,
    }))
}

/// Where the second walk records what it finds.
struct Sink<'n> {
    node: &'n mut Node,
    wrong_wire_type: &'n mut bool,
}

struct Collector<'a> {
    schema: &'static Schema,
    buf: &'a [u8],
}

impl Collector<'_> {
    /// Walk message `m` in `pos..end`. Without a sink, return `true` at the
    /// first unknown field; with one, walk everything and record.
    fn message(
        &self,
        m: u16,
        mut pos: usize,
        end: usize,
        depth: usize,
        mut sink: Option<Sink<'_>>,
    ) -> Result<bool, Fail> {
        let schema = self.schema;
        let buf = self.buf;
        if depth > MAX_DEPTH {
            return Err(Fail::from((WireErrorKind::TooDeep, pos)));
        }
        let Some(msg) = schema.messages.get(usize::from(m)) else {
            return Err(Fail::from((WireErrorKind::UnknownMessageType, pos)));
        };
        let mut found = false;
        // Ordinals of repeated-message elements per (field, identity); only
        // used while recording.
        let mut seen: HashMap<(u32, Box<[u8]>), u32> = HashMap::new();
        while pos < end {
            let tag_pos = pos;
            let (num, wt) = read_tag(buf, &mut pos, end)?;
            let known = msg.field(num);
            let Some((_, f)) = known.filter(|(_, f)| wire_ok(f, wt)) else {
                skip_field(buf, &mut pos, end, num, wt, depth)?;
                found = true;
                let Some(sink) = sink.as_mut() else {
                    return Ok(true);
                };
                sink.node
                    .raw
                    .extend_from_slice(buf.get(tag_pos..pos).unwrap_or(&[]));
                if known.is_some() {
                    *sink.wrong_wire_type = true;
                }
                continue;
            };
            let (vs, ve) = read_value(buf, &mut pos, end, wt)?;
            let sub = match (f.card, f.kind) {
                (Card::Map(entry), _) => entry,
                (_, Kind::Message(sub)) => sub,
                _ => continue,
            };
            let name: &'static str = &f.name;
            let with_name = |mut fail: Fail| {
                fail.names.push(name);
                fail
            };
            let Some(sink) = sink.as_mut() else {
                if self
                    .message(sub, vs, ve, depth + 1, None)
                    .map_err(with_name)?
                {
                    return Ok(true);
                }
                continue;
            };
            let at = match f.card {
                Card::Singular => At::Singular,
                Card::Map(_) => {
                    let kind = first_field_kind(schema, sub).unwrap_or(Kind::String);
                    At::Entry(key_bytes(entry_key(buf, kind, vs, ve)?))
                }
                Card::Repeated => {
                    let id = match first_field_kind(schema, sub) {
                        Some(kind) => key_bytes(entry_key(buf, kind, vs, ve)?),
                        None => Box::default(),
                    };
                    let n = seen.entry((num, id.clone())).or_insert(0);
                    let ordinal = *n;
                    *n = n.saturating_add(1);
                    At::Element(id, ordinal)
                }
            };
            let singular = at == At::Singular;
            let slot = (num, at);
            // A singular sub-message merges with earlier occurrences; a map
            // entry replaces an earlier one with the same key.
            let mut child = if singular {
                sink.node.children.remove(&slot).unwrap_or_default()
            } else {
                Node::default()
            };
            let child_sink = Sink {
                node: &mut child,
                wrong_wire_type: &mut *sink.wrong_wire_type,
            };
            found |= self
                .message(sub, vs, ve, depth + 1, Some(child_sink))
                .map_err(with_name)?;
            if child.is_empty() {
                sink.node.children.remove(&slot);
            } else {
                sink.node.children.insert(slot, child);
            }
        }
        Ok(found)
    }
}

/// Encodes `object` (typically decoded from received bytes and then modified)
/// and puts the unknown fields found in those bytes back where they were.
///
/// See the [module documentation](self) for which unknown fields survive which
/// changes. The known fields are exactly prost's encoding of `object`: the
/// output decodes (with prost, once the unknown fields are skipped) to an
/// `Object` equal to `object`.
pub fn encode_with_unknown(object: &Object, unknown: Option<&UnknownFields>) -> Vec<u8> {
    let mut fresh = object.encode_to_vec();
    let Some(unknown) = unknown else {
        return fresh;
    };
    let root = &unknown.root;
    if root.children.is_empty() {
        fresh.extend_from_slice(&root.raw);
        return fresh;
    }
    let splicer = Splicer { schema: &SCHEMA };
    let m = splicer.schema.object;
    let mut out = Vec::with_capacity(splicer.size(m, false, &fresh, root));
    splicer.write(m, false, &fresh, root, &mut out);
    out
}

/// One piece of a message being rebuilt.
enum Part<'b, 'n> {
    /// Fields copied as they are.
    Copy(&'b [u8]),
    /// A sub-message with unknown fields below it: `tag` bytes, the message
    /// type, its current encoding and its unknown fields.
    Nested {
        tag: &'b [u8],
        msg: u16,
        /// `msg` is a map entry type.
        entry: bool,
        body: &'b [u8],
        node: &'n Node,
    },
}

/// Tag of field 2 (the value of a map entry), length-delimited.
const MAP_VALUE_TAG: &[u8] = &[2 << 3 | 2];

struct Splicer {
    schema: &'static Schema,
}

impl Splicer {
    /// Split the encoding `buf` of message `m` into copied runs and
    /// sub-messages that have a counterpart in `node`.
    ///
    /// In a map entry (`entry`) the value is a message even when prost
    /// leaves it out (it does for a default value); unknown fields of such a
    /// value get an empty value field to live in.
    fn parts<'b, 'n>(
        &self,
        m: u16,
        entry: bool,
        buf: &'b [u8],
        node: &'n Node,
        f: &mut dyn FnMut(Part<'b, 'n>),
    ) {
        let schema = self.schema;
        let end = buf.len();
        let mut copy_from = 0;
        let mut pos = 0;
        let mut value_seen = false;
        let mut seen: HashMap<(u32, Box<[u8]>), u32> = HashMap::new();
        let Some(msg) = schema.messages.get(usize::from(m)) else {
            f(Part::Copy(buf));
            return;
        };
        while pos < end {
            let tag_pos = pos;
            // prost's output is well-formed; should it not be, the rest is
            // copied as it is.
            let Ok((num, wt)) = read_tag(buf, &mut pos, end) else {
                break;
            };
            let tag_end = pos;
            let Ok((vs, ve)) = read_value(buf, &mut pos, end, wt) else {
                break;
            };
            let Some((_, field)) = msg.field(num).filter(|(_, fd)| wire_ok(fd, wt)) else {
                continue;
            };
            if !node.has_field(num) {
                continue;
            }
            let (sub, is_entry, at) = match (field.card, field.kind) {
                (Card::Singular, Kind::Message(sub)) => {
                    value_seen |= num == 2;
                    (sub, false, At::Singular)
                }
                (Card::Map(entry), _) => {
                    let kind = first_field_kind(schema, entry).unwrap_or(Kind::String);
                    let Ok(key) = entry_key(buf, kind, vs, ve) else {
                        continue;
                    };
                    (entry, true, At::Entry(key_bytes(key)))
                }
                (Card::Repeated, Kind::Message(sub)) => {
                    let id = match first_field_kind(schema, sub) {
                        Some(kind) => match entry_key(buf, kind, vs, ve) {
                            Ok(key) => key_bytes(key),
                            Err(_) => continue,
                        },
                        None => Box::default(),
                    };
                    let n = seen.entry((num, id.clone())).or_insert(0);
                    let ordinal = *n;
                    *n = n.saturating_add(1);
                    (sub, false, At::Element(id, ordinal))
                }
                _ => continue,
            };
            let Some(child) = node.children.get(&(num, at)) else {
                continue;
            };
            if copy_from < tag_pos {
                f(Part::Copy(buf.get(copy_from..tag_pos).unwrap_or(&[])));
            }
            f(Part::Nested {
                tag: buf.get(tag_pos..tag_end).unwrap_or(&[]),
                msg: sub,
                entry: is_entry,
                body: buf.get(vs..ve).unwrap_or(&[]),
                node: child,
            });
            copy_from = pos;
        }
        if copy_from < end {
            f(Part::Copy(buf.get(copy_from..).unwrap_or(&[])));
        }
        if entry
            && !value_seen
            && let Some(child) = node.children.get(&(2, At::Singular))
            && let Some((_, value)) = msg.field(2)
            && let Kind::Message(sub) = value.kind
        {
            f(Part::Nested {
                tag: MAP_VALUE_TAG,
                msg: sub,
                entry: false,
                body: &[],
                node: child,
            });
        }
    }

    /// Size of message `m` (encoded as `buf`) once `node` is spliced in.
    fn size(&self, m: u16, entry: bool, buf: &[u8], node: &Node) -> usize {
        if node.children.is_empty() {
            return buf.len() + node.raw.len();
        }
        let mut total = node.raw.len();
        self.parts(m, entry, buf, node, &mut |part| match part {
            Part::Copy(b) => total += b.len(),
            Part::Nested {
                tag,
                msg,
                entry,
                body,
                node,
            } => {
                let n = self.size(msg, entry, body, node);
                total += tag.len() + varint_len(n as u64) + n;
            }
        });
        total
    }

    /// Append message `m` (encoded as `buf`) with `node` spliced in.
    fn write(&self, m: u16, entry: bool, buf: &[u8], node: &Node, out: &mut Vec<u8>) {
        if node.children.is_empty() {
            out.extend_from_slice(buf);
            out.extend_from_slice(&node.raw);
            return;
        }
        self.parts(m, entry, buf, node, &mut |part| match part {
            Part::Copy(b) => out.extend_from_slice(b),
            Part::Nested {
                tag,
                msg,
                entry,
                body,
                node,
            } => {
                out.extend_from_slice(tag);
                put_varint(out, self.size(msg, entry, body, node) as u64);
                self.write(msg, entry, body, node, out);
            }
        });
        out.extend_from_slice(&node.raw);
    }
}

/// The kind of field 1 of message `m` if it is a singular scalar (the key of
/// a map entry, the identity of a repeated element).
fn first_field_kind(schema: &Schema, m: u16) -> Option<Kind> {
    let (_, f) = schema.messages.get(usize::from(m))?.field(1)?;
    match (f.card, f.kind) {
        (Card::Singular, Kind::Message(_)) => None,
        (Card::Singular, kind) => Some(kind),
        _ => None,
    }
}

fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Why [`decode`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a well-formed protobuf message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// prost refused the known fields (e.g. a string that is not UTF-8).
    #[error("decoding coprocess.Object: {0}")]
    Prost(#[from] prost::DecodeError),
}

/// Decodes an encoded `coprocess.Object` and collects its unknown fields,
/// for a later [`encode_with_unknown`].
///
/// Unlike `Object::decode`, accepts known fields sent with an unexpected wire
/// type (they are unknown fields, as in upb and protobuf-go): when there are
/// any, the known fields are decoded from a copy without the unknown fields.
pub fn decode(wire: &[u8]) -> Result<(Object, Option<UnknownFields>), DecodeError> {
    let unknown = collect(wire)?;
    let object = match &unknown {
        Some(u) if u.wrong_wire_type => {
            let schema: &'static Schema = &SCHEMA;
            let known = known_only(schema, schema.object, wire, 0);
            Object::decode(known.as_slice())?
        }
        _ => Object::decode(wire)?,
    };
    Ok((object, unknown))
}

/// The encoding of message `m` in `buf` without its unknown fields, at any
/// depth. `buf` has been validated by [`collect`]; should a read fail
/// anyway, the rest of that message is dropped.
fn known_only(schema: &Schema, m: u16, buf: &[u8], depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let Some(msg) = schema.messages.get(usize::from(m)) else {
        return out;
    };
    let end = buf.len();
    let mut pos = 0;
    while pos < end {
        let tag_pos = pos;
        let Ok((num, wt)) = read_tag(buf, &mut pos, end) else {
            break;
        };
        let Some((_, f)) = msg.field(num).filter(|(_, f)| wire_ok(f, wt)) else {
            if skip_field(buf, &mut pos, end, num, wt, depth).is_err() {
                break;
            }
            continue;
        };
        let tag_end = pos;
        let Ok((vs, ve)) = read_value(buf, &mut pos, end, wt) else {
            break;
        };
        let sub = match (f.card, f.kind) {
            (Card::Map(entry), _) => Some(entry),
            (_, Kind::Message(sub)) => Some(sub),
            _ => None,
        };
        match sub {
            Some(sub) if depth < MAX_DEPTH => {
                let inner = known_only(schema, sub, buf.get(vs..ve).unwrap_or(&[]), depth + 1);
                out.extend_from_slice(buf.get(tag_pos..tag_end).unwrap_or(&[]));
                put_varint(&mut out, inner.len() as u64);
                out.extend_from_slice(&inner);
            }
            _ => out.extend_from_slice(buf.get(tag_pos..pos).unwrap_or(&[])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_put_varint() {
        for v in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(varint_len(v), b.len(), "{v}");
        }
    }
}
