//! Property tests of `tyk_coprocess::unknown`: random Objects, random unknown
//! fields injected at random places, a random change through the prost
//! struct, then the output is checked message by message.
//!
//! The checks use their own schema-less wire reader and prost-reflect's
//! descriptors (not the crate's schema tables) to decide what is unknown.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor};
use tyk_coprocess::unknown::{collect, decode, encode_with_unknown};
use tyk_coprocess::{
    AccessDefinition, AccessSpec, BasicAuthData, Header, JwtData, MiniRequestObject, Monitor,
    Object, ResponseObject, ReturnOverrides, SessionState,
};

static POOL: LazyLock<DescriptorPool> =
    LazyLock::new(|| DescriptorPool::decode(tyk_coprocess::FILE_DESCRIPTOR_SET).unwrap());

fn object_desc() -> MessageDescriptor {
    POOL.get_message_by_name("coprocess.Object").unwrap()
}

// ---------------------------------------------------------------------------
// Schema-less wire reading.

fn varint(b: &[u8], p: &mut usize) -> u64 {
    let mut v = 0u64;
    for i in 0..10 {
        let c = b[*p];
        *p += 1;
        v |= u64::from(c & 0x7f) << (7 * i);
        if c < 0x80 {
            break;
        }
    }
    v
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One top-level field of a message: number, wire type, the whole field's
/// byte range and (for wire type 2) the payload range.
#[derive(Clone, Copy, Debug)]
struct F {
    num: u32,
    wt: u8,
    start: usize,
    end: usize,
    payload: (usize, usize),
}

fn skip(b: &[u8], p: &mut usize, num: u32, wt: u8) {
    match wt {
        0 => {
            varint(b, p);
        }
        1 => *p += 8,
        5 => *p += 4,
        2 => {
            let n = varint(b, p) as usize;
            *p += n;
        }
        3 => loop {
            let t = varint(b, p);
            let (n, w) = ((t >> 3) as u32, (t & 7) as u8);
            if w == 4 {
                assert_eq!(n, num, "group end");
                break;
            }
            skip(b, p, n, w);
        },
        _ => panic!("wire type {wt}"),
    }
}

fn fields(b: &[u8]) -> Vec<F> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let start = p;
        let t = varint(b, &mut p);
        let (num, wt) = ((t >> 3) as u32, (t & 7) as u8);
        let mut payload = (0, 0);
        if wt == 2 {
            let n = varint(b, &mut p) as usize;
            payload = (p, p + n);
            p += n;
        } else {
            skip(b, &mut p, num, wt);
        }
        out.push(F {
            num,
            wt,
            start,
            end: p,
            payload,
        });
    }
    out
}

/// Whether wire type `wt` is what field `num` of `desc` is declared with.
fn is_known(desc: &MessageDescriptor, num: u32, wt: u8) -> bool {
    let Some(f) = desc.get_field(num) else {
        return false;
    };
    let kind = f.kind();
    let natural = kind.wire_type() as u8;
    let packable = !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_));
    wt == natural || (wt == 2 && f.is_list() && packable)
}

/// The unknown fields of a message, each as its complete bytes.
fn unknowns_of(b: &[u8], desc: &MessageDescriptor) -> Vec<Vec<u8>> {
    fields(b)
        .into_iter()
        .filter(|f| !is_known(desc, f.num, f.wt))
        .map(|f| b[f.start..f.end].to_vec())
        .collect()
}

// ---------------------------------------------------------------------------
// Sites: the messages of an Object, by location.

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Step {
    /// Singular message field.
    Field(u32),
    /// The map entry of a string-keyed map field.
    Entry(u32, Vec<u8>),
    /// The (message) value of a map entry.
    Value(u32, Vec<u8>),
    /// The i-th element of a repeated message field.
    Elem(u32, usize),
}

type Site = Vec<Step>;

fn key_of(entry: &[u8]) -> Vec<u8> {
    let mut key = Vec::new();
    for f in fields(entry) {
        if f.num == 1 && f.wt == 2 {
            key = entry[f.payload.0..f.payload.1].to_vec();
        }
    }
    key
}

/// Byte range (payload) of the message at `step` inside `msg`, and the
/// descriptor of that message. `None` when absent. A map value that is
/// absent from a present entry is an empty message (`Some` with an empty
/// range at the end of the entry).
fn step_into(
    msg: &[u8],
    desc: &MessageDescriptor,
    step: &Step,
) -> Option<((usize, usize), MessageDescriptor)> {
    let fs = fields(msg);
    let sub_desc = |num: u32| match desc.get_field(num)?.kind() {
        Kind::Message(m) => Some(m),
        _ => None,
    };
    match step {
        Step::Field(n) => {
            let f = fs.iter().rev().find(|f| f.num == *n && f.wt == 2)?;
            Some((f.payload, sub_desc(*n)?))
        }
        Step::Elem(n, i) => {
            let f = fs.iter().filter(|f| f.num == *n && f.wt == 2).nth(*i)?;
            Some((f.payload, sub_desc(*n)?))
        }
        Step::Entry(n, k) => {
            let f = fs.iter().rev().find(|f| {
                f.num == *n && f.wt == 2 && key_of(&msg[f.payload.0..f.payload.1]) == *k
            })?;
            Some((f.payload, sub_desc(*n)?))
        }
        Step::Value(n, k) => {
            let ((s, e), entry_desc) = step_into(msg, desc, &Step::Entry(*n, k.clone()))?;
            let value_desc = match entry_desc.map_entry_value_field().kind() {
                Kind::Message(m) => m,
                _ => return None,
            };
            let entry = &msg[s..e];
            match fields(entry).iter().rev().find(|f| f.num == 2 && f.wt == 2) {
                Some(f) => Some(((s + f.payload.0, s + f.payload.1), value_desc)),
                None => Some(((e, e), value_desc)),
            }
        }
    }
}

/// The bytes and descriptor of the message at `site`.
fn locate<'b>(wire: &'b [u8], site: &[Step]) -> Option<(&'b [u8], MessageDescriptor)> {
    let mut desc = object_desc();
    let (mut s, mut e) = (0, wire.len());
    for step in site {
        let ((cs, ce), d) = step_into(&wire[s..e], &desc, step)?;
        (s, e) = (s + cs, s + ce);
        desc = d;
    }
    Some((&wire[s..e], desc))
}

/// Every message of the encoded Object `wire` (canonical: each field once).
fn sites(wire: &[u8]) -> Vec<Site> {
    let mut out = Vec::new();
    walk_sites(wire, &object_desc(), &mut Vec::new(), &mut out);
    out
}

fn walk_sites(msg: &[u8], desc: &MessageDescriptor, path: &mut Site, out: &mut Vec<Site>) {
    out.push(path.clone());
    let mut elem_counts: HashMap<u32, usize> = HashMap::new();
    for f in fields(msg) {
        if !is_known(desc, f.num, f.wt) {
            continue;
        }
        let fd = desc.get_field(f.num).unwrap();
        let Kind::Message(sub) = fd.kind() else {
            continue;
        };
        let payload = &msg[f.payload.0..f.payload.1];
        let step = if fd.is_map() {
            let key = key_of(payload);
            // The entry itself, then its value if that is a message.
            path.push(Step::Entry(f.num, key.clone()));
            out.push(path.clone());
            path.pop();
            if let Kind::Message(vd) = sub.map_entry_value_field().kind() {
                path.push(Step::Value(f.num, key.clone()));
                let (range, _) = step_into(msg, desc, &Step::Value(f.num, key)).unwrap();
                walk_sites(&msg[range.0..range.1], &vd, path, out);
                path.pop();
            }
            continue;
        } else if fd.is_list() {
            let i = elem_counts.entry(f.num).or_default();
            *i += 1;
            Step::Elem(f.num, *i - 1)
        } else {
            Step::Field(f.num)
        };
        path.push(step);
        walk_sites(payload, &sub, path, out);
        path.pop();
    }
}

/// Insert `bytes` into the message at `site` before its `pos`-th field
/// (modulo the field count + 1), fixing every enclosing length.
fn insert(
    msg: &[u8],
    desc: &MessageDescriptor,
    site: &[Step],
    bytes: &[u8],
    pos: usize,
) -> Vec<u8> {
    let Some((step, rest)) = site.split_first() else {
        let fs = fields(msg);
        let at = match fs.get(pos % (fs.len() + 1)) {
            Some(f) => f.start,
            None => msg.len(),
        };
        return [&msg[..at], bytes, &msg[at..]].concat();
    };
    let ((s, e), sub) = step_into(msg, desc, step).expect("site exists");
    if let Step::Value(n, k) = step {
        let ((es, ee), _) = step_into(msg, desc, &Step::Entry(*n, k.clone())).unwrap();
        let entry = &msg[es..ee];
        if !fields(entry).iter().any(|f| f.num == 2 && f.wt == 2) {
            // A default map value prost left out: give it a value field.
            let inner = insert(&[], &sub, rest, bytes, pos);
            let mut value = vec![0x12];
            put_varint(&mut value, inner.len() as u64);
            value.extend_from_slice(&inner);
            return replace_payload(msg, es, ee, &[entry, &value[..]].concat());
        }
    }
    let inner = insert(&msg[s..e], &sub, rest, bytes, pos);
    if let Step::Value(n, k) = step {
        // The value sits inside the entry: rebuild the entry, then the message.
        let ((es, ee), _) = step_into(msg, desc, &Step::Entry(*n, k.clone())).unwrap();
        let entry = replace_payload(&msg[es..ee], s - es, e - es, &inner);
        return replace_payload(msg, es, ee, &entry);
    }
    replace_payload(msg, s, e, &inner)
}

/// Replace the payload `s..e` of a length-delimited field of `msg` (whose
/// length prefix ends at `s`) by `new`.
fn replace_payload(msg: &[u8], s: usize, e: usize, new: &[u8]) -> Vec<u8> {
    // Find the start of the length prefix: the field whose payload is s..e.
    let f = fields(msg)
        .into_iter()
        .find(|f| f.payload == (s, e))
        .expect("payload of a field");
    let mut tag_end = f.start;
    varint(msg, &mut tag_end);
    let mut out = msg[..tag_end].to_vec();
    put_varint(&mut out, new.len() as u64);
    out.extend_from_slice(new);
    out.extend_from_slice(&msg[e..]);
    out
}

// ---------------------------------------------------------------------------
// Unknown field payloads.

#[derive(Clone, Debug)]
enum Junk {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Len(u32, Vec<u8>),
    Group(u32, Vec<(u32, u64)>, bool),
    /// A known field (picked by the index) with a wire type it does not have.
    WrongWireType(Index, u8, u64),
}

fn junk() -> impl Strategy<Value = Junk> {
    let num = 35u32..3000;
    prop_oneof![
        1 => (num.clone(), any::<u64>()).prop_map(|(n, v)| Junk::Varint(n, v)),
        1 => (num.clone(), any::<u64>()).prop_map(|(n, v)| Junk::Fixed64(n, v)),
        1 => (num.clone(), any::<u32>()).prop_map(|(n, v)| Junk::Fixed32(n, v)),
        1 => (num.clone(), vec(any::<u8>(), 0..6)).prop_map(|(n, v)| Junk::Len(n, v)),
        1 => (num, vec((1u32..40, any::<u64>()), 0..3), any::<bool>())
            .prop_map(|(n, v, nested)| Junk::Group(n, v, nested)),
        2 => (any::<Index>(), 0u8..4, any::<u64>()).prop_map(|(i, w, v)| Junk::WrongWireType(i, w, v)),
    ]
}

fn tag(out: &mut Vec<u8>, num: u32, wt: u8) {
    put_varint(out, u64::from(num) << 3 | u64::from(wt));
}

fn value(out: &mut Vec<u8>, num: u32, wt: u8, v: u64) {
    tag(out, num, wt);
    match wt {
        0 => put_varint(out, v),
        1 => out.extend_from_slice(&v.to_le_bytes()),
        5 => out.extend_from_slice(&(v as u32).to_le_bytes()),
        2 => {
            let b = v.to_le_bytes();
            let n = (v % 9) as usize;
            put_varint(out, n as u64);
            out.extend_from_slice(&b[..n.min(8)]);
            if n > 8 {
                out.push(0);
            }
        }
        3 => {
            value(out, 1, 0, v);
            tag(out, num, 4);
        }
        _ => unreachable!(),
    }
}

/// Encode `j` for a message of type `desc`; the bool says it is a known field
/// with the wrong wire type.
fn encode_junk(j: &Junk, desc: &MessageDescriptor) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    match j {
        Junk::Varint(n, v) => value(&mut out, *n, 0, *v),
        Junk::Fixed64(n, v) => value(&mut out, *n, 1, *v),
        Junk::Fixed32(n, v) => value(&mut out, *n, 5, u64::from(*v)),
        Junk::Len(n, b) => {
            tag(&mut out, *n, 2);
            put_varint(&mut out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Junk::Group(n, inner, nested) => {
            tag(&mut out, *n, 3);
            for (m, v) in inner {
                value(&mut out, *m, [0, 1, 5][(*v % 3) as usize], *v);
            }
            if *nested {
                value(&mut out, n + 1, 3, 7);
            }
            tag(&mut out, *n, 4);
        }
        Junk::WrongWireType(i, w, v) => {
            let fs: Vec<_> = desc.fields().collect();
            let f = &fs[i.index(fs.len())];
            let wrong: Vec<u8> = [0u8, 1, 2, 3, 5]
                .into_iter()
                .filter(|&wt| !is_known(desc, f.number(), wt))
                .collect();
            let wt = wrong[usize::from(*w) % wrong.len()];
            value(&mut out, f.number(), wt, *v);
            return (out, true);
        }
    }
    (out, false)
}

// ---------------------------------------------------------------------------
// Objects.

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{0,2}",
        "[a-zA-Z0-9 _/-]{0,10}",
        Just("é中😀".to_owned())
    ]
}

fn smap() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map("[a-d]{0,2}", text(), 0..3)
}

fn access_definition() -> impl Strategy<Value = AccessDefinition> {
    prop_oneof![
        1 => Just(AccessDefinition::default()),
        3 => access_definition_full(),
    ]
}

fn access_definition_full() -> impl Strategy<Value = AccessDefinition> {
    (
        text(),
        text(),
        vec(text(), 0..2),
        vec(("/[ab]{0,1}", vec(text(), 0..2)), 0..4),
    )
        .prop_map(|(api_name, api_id, versions, urls)| AccessDefinition {
            api_name,
            api_id,
            versions,
            allowed_urls: urls
                .into_iter()
                .map(|(url, methods)| AccessSpec { url, methods })
                .collect(),
        })
}

fn session() -> impl Strategy<Value = SessionState> {
    (
        (
            any::<i64>(),
            any::<f64>(),
            text(),
            smap(),
            vec(text(), 0..2),
        ),
        btree_map("[a-c]{0,2}", access_definition(), 0..3),
        (
            proptest::option::of((text(), text())),
            proptest::option::of(text()),
            proptest::option::of(vec(any::<f64>(), 0..3)),
        ),
    )
        .prop_map(
            |((lc, rate, org, md, tags), ar, (ba, jwt, mon))| SessionState {
                last_check: lc,
                rate,
                org_id: org,
                metadata: md,
                tags,
                access_rights: ar,
                basic_auth_data: ba.map(|(password, hash)| BasicAuthData { password, hash }),
                jwt_data: jwt.map(|secret| JwtData { secret }),
                monitor: mon.map(|trigger_limits| Monitor { trigger_limits }),
                ..Default::default()
            },
        )
}

fn request() -> impl Strategy<Value = MiniRequestObject> {
    (
        smap(),
        smap(),
        text(),
        text(),
        proptest::option::of((any::<i32>(), smap())),
    )
        .prop_map(|(headers, params, body, url, ro)| MiniRequestObject {
            headers,
            params,
            body,
            url,
            return_overrides: ro.map(|(response_code, headers)| ReturnOverrides {
                response_code,
                headers,
                ..Default::default()
            }),
            ..Default::default()
        })
}

fn header() -> impl Strategy<Value = Header> {
    ("[A-C]{0,1}", vec(text(), 0..2)).prop_map(|(key, values)| Header { key, values })
}

fn response() -> impl Strategy<Value = ResponseObject> {
    (any::<i32>(), smap(), vec(header(), 0..5)).prop_map(|(status_code, headers, mv)| {
        ResponseObject {
            status_code,
            headers,
            multivalue_headers: mv,
            ..Default::default()
        }
    })
}

fn object() -> impl Strategy<Value = Object> {
    (
        0i32..6,
        text(),
        proptest::option::of(request()),
        proptest::option::of(session()),
        smap(),
        smap(),
        proptest::option::of(response()),
    )
        .prop_map(
            |(hook_type, hook_name, request, session, metadata, spec, response)| Object {
                hook_type,
                hook_name,
                request,
                session,
                metadata,
                spec,
                response,
            },
        )
}

/// A change a plugin might make.
#[derive(Clone, Debug)]
enum Change {
    None,
    HookName(String),
    AddHeader(Index, Header),
    RemoveHeader(Index),
    RenameHeader(Index, String),
    ReverseHeaders,
    RemoveSession,
    RemoveRequest,
    RemoveResponse,
    ReplaceAccessRight(String, AccessDefinition),
    RemoveAccessRight(Index),
    RemoveAllowedUrl(Index, Index),
    SetSpec(String, String),
    RemoveSpec(Index),
    ClearAll,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::None),
        text().prop_map(Change::HookName),
        (any::<Index>(), header()).prop_map(|(i, h)| Change::AddHeader(i, h)),
        any::<Index>().prop_map(Change::RemoveHeader),
        (any::<Index>(), "[A-C]").prop_map(|(i, k)| Change::RenameHeader(i, k)),
        Just(Change::ReverseHeaders),
        Just(Change::RemoveSession),
        Just(Change::RemoveRequest),
        Just(Change::RemoveResponse),
        ("[a-c]{0,2}", access_definition()).prop_map(|(k, v)| Change::ReplaceAccessRight(k, v)),
        any::<Index>().prop_map(Change::RemoveAccessRight),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Change::RemoveAllowedUrl(a, b)),
        ("[a-d]{0,2}", text()).prop_map(|(k, v)| Change::SetSpec(k, v)),
        any::<Index>().prop_map(Change::RemoveSpec),
        Just(Change::ClearAll),
    ]
}

fn nth_key<V>(m: &BTreeMap<String, V>, i: &Index) -> Option<String> {
    m.keys().nth(i.index(m.len().max(1))).cloned()
}

fn apply(o: &mut Object, c: &Change) {
    match c {
        Change::None => {}
        Change::HookName(s) => o.hook_name = format!("{s}!"),
        Change::AddHeader(i, h) => {
            let mv = &mut o.response.get_or_insert_default().multivalue_headers;
            mv.insert(i.index(mv.len() + 1), h.clone());
        }
        Change::RemoveHeader(i) => {
            if let Some(r) = &mut o.response
                && !r.multivalue_headers.is_empty()
            {
                let n = r.multivalue_headers.len();
                r.multivalue_headers.remove(i.index(n));
            }
        }
        Change::RenameHeader(i, k) => {
            if let Some(r) = &mut o.response
                && !r.multivalue_headers.is_empty()
            {
                let n = r.multivalue_headers.len();
                r.multivalue_headers[i.index(n)].key = k.clone();
            }
        }
        Change::ReverseHeaders => {
            if let Some(r) = &mut o.response {
                r.multivalue_headers.reverse();
            }
        }
        Change::RemoveSession => o.session = None,
        Change::RemoveRequest => o.request = None,
        Change::RemoveResponse => o.response = None,
        Change::ReplaceAccessRight(k, v) => {
            o.session
                .get_or_insert_default()
                .access_rights
                .insert(k.clone(), v.clone());
        }
        Change::RemoveAccessRight(i) => {
            if let Some(s) = &mut o.session
                && let Some(k) = nth_key(&s.access_rights, i)
            {
                s.access_rights.remove(&k);
            }
        }
        Change::RemoveAllowedUrl(i, j) => {
            if let Some(s) = &mut o.session
                && let Some(k) = nth_key(&s.access_rights, i)
                && let Some(ad) = s.access_rights.get_mut(&k)
                && !ad.allowed_urls.is_empty()
            {
                let n = ad.allowed_urls.len();
                ad.allowed_urls.remove(j.index(n));
            }
        }
        Change::SetSpec(k, v) => {
            o.spec.insert(k.clone(), v.clone());
        }
        Change::RemoveSpec(i) => {
            if let Some(k) = nth_key(&o.spec, i) {
                o.spec.remove(&k);
            }
        }
        Change::ClearAll => *o = Object::default(),
    }
}

// ---------------------------------------------------------------------------
// Where a message of the old Object is in the new one.

/// The identity of the element at `site` (last step `Elem`): its field 1
/// (string) and ordinal among equal field 1 values, as the module documents.
fn element_identity(wire: &[u8], site: &[Step]) -> Option<(Vec<u8>, usize)> {
    let (Step::Elem(n, i), parent) = site.split_last()? else {
        return None;
    };
    let (msg, _) = locate(wire, parent)?;
    let keys: Vec<Vec<u8>> = fields(msg)
        .into_iter()
        .filter(|f| f.num == *n && f.wt == 2)
        .map(|f| key_of(&msg[f.payload.0..f.payload.1]))
        .collect();
    let key = keys.get(*i)?.clone();
    let ordinal = keys[..*i].iter().filter(|k| **k == key).count();
    Some((key, ordinal))
}

/// The site in `new` of the message at `site` in `old`, if it survived.
fn map_site(old: &[u8], new: &[u8], site: &[Step]) -> Option<Site> {
    let mut out = Vec::new();
    for (d, step) in site.iter().enumerate() {
        match step {
            Step::Elem(n, _) => {
                let (key, ordinal) = element_identity(old, &site[..=d])?;
                let (msg, _) = locate(new, &out)?;
                let idx = fields(msg)
                    .into_iter()
                    .filter(|f| f.num == *n && f.wt == 2)
                    .enumerate()
                    .filter(|(_, f)| key_of(&msg[f.payload.0..f.payload.1]) == key)
                    .nth(ordinal)?
                    .0;
                out.push(Step::Elem(*n, idx));
            }
            s => out.push(s.clone()),
        }
        locate(new, &out)?;
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// The property.

/// The value of a DynamicMessage at `site` (no `Entry` steps).
fn dynamic_at(msg: &DynamicMessage, site: &[Step]) -> Option<DynamicMessage> {
    let mut cur = msg.clone();
    for step in site {
        let next = match step {
            Step::Field(n) => cur.get_field_by_number(*n)?.as_message()?.clone(),
            Step::Elem(n, i) => cur
                .get_field_by_number(*n)?
                .as_list()?
                .get(*i)?
                .as_message()?
                .clone(),
            Step::Value(n, k) => {
                let key = MapKey::String(String::from_utf8(k.clone()).ok()?);
                cur.get_field_by_number(*n)?
                    .as_map()?
                    .get(&key)?
                    .as_message()?
                    .clone()
            }
            Step::Entry(..) => return None,
        };
        cur = next;
    }
    Some(cur)
}

fn check(
    obj: &Object,
    injections: &[(Index, Junk, usize)],
    change: &Change,
) -> Result<(), TestCaseError> {
    let base = obj.encode_to_vec();
    prop_assert_eq!(collect(&base).unwrap(), None);

    // Inject.
    let all_sites = sites(&base);
    let mut wire = base.clone();
    let mut any_wrong = false;
    for (site_idx, j, pos) in injections {
        let site = &all_sites[site_idx.index(all_sites.len())];
        let (_, desc) = locate(&wire, site).unwrap();
        let (bytes, wrong) = encode_junk(j, &desc);
        any_wrong |= wrong;
        wire = insert(&wire, &object_desc(), site, &bytes, *pos);
    }

    // Decode and change.
    let unknown = collect(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(unknown.is_some(), !injections.is_empty());
    if let Some(u) = &unknown {
        prop_assert_eq!(u.has_wrong_wire_type(), any_wrong);
    }
    if !any_wrong {
        prop_assert_eq!(&Object::decode(wire.as_slice()).unwrap(), obj);
    }
    let (mut decoded, unknown2) = decode(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, obj);
    prop_assert_eq!(&unknown2, &unknown);
    apply(&mut decoded, change);
    let out = encode_with_unknown(&decoded, unknown.as_ref());

    // Known fields: exactly the changed Object.
    let (back, _) = decode(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, &decoded);
    if !any_wrong {
        prop_assert_eq!(&Object::decode(out.as_slice()).unwrap(), &decoded);
    }
    // Unchanged object: the splice must give the unknowns back, in full.
    if matches!(change, Change::None) {
        prop_assert_eq!(out.len(), wire.len());
    }

    // Unknown fields: message by message.
    let fresh = decoded.encode_to_vec();
    let mut expected: HashMap<Site, Vec<Vec<u8>>> = HashMap::new();
    for site in sites(&base) {
        let (msg, desc) = locate(&wire, &site).unwrap();
        let u = unknowns_of(msg, &desc);
        if u.is_empty() {
            continue;
        }
        if let Some(new_site) = map_site(&base, &fresh, &site) {
            prop_assert!(expected.insert(new_site, u).is_none());
        }
    }
    let out_sites = sites(&fresh);
    for site in &out_sites {
        let (msg, desc) = locate(&out, site).expect("site in output");
        let got = unknowns_of(msg, &desc);
        let want = expected.remove(site).unwrap_or_default();
        prop_assert_eq!(got, want, "site {:?}", site);
    }
    prop_assert!(expected.is_empty(), "lost: {:?}", expected);

    // The descriptor-based decoder sees them in the same messages.
    if !any_wrong {
        let dm = DynamicMessage::decode(object_desc(), out.as_slice()).unwrap();
        for site in &out_sites {
            if matches!(site.last(), Some(Step::Entry(..))) {
                continue; // prost-reflect drops unknown fields of map entries
            }
            let (msg, desc) = locate(&out, site).unwrap();
            // prost-reflect keeps unknown fields by number, then wire order.
            let mut want = unknowns_of(msg, &desc);
            want.sort_by_key(|f| fields(f)[0].num);
            let m = dynamic_at(&dm, site).expect("message in DynamicMessage");
            let got: Vec<Vec<u8>> = m
                .unknown_fields()
                .map(|f| {
                    let mut b = Vec::new();
                    f.encode(&mut b);
                    b
                })
                .collect();
            prop_assert_eq!(got, want, "DynamicMessage site {:?}", site);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn unknown_fields_survive_changes(
        obj in object(),
        injections in vec((any::<Index>(), junk(), any::<usize>()), 0..6),
        change in change(),
    ) {
        check(&obj, &injections, &change)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64), obj in object(), cut in any::<Index>(), flips in vec((any::<Index>(), any::<u8>()), 0..3)) {
        let _ = collect(&bytes);
        let _ = decode(&bytes);
        let mut wire = obj.encode_to_vec();
        wire.truncate(cut.index(wire.len() + 1));
        for (i, b) in flips {
            if !wire.is_empty() {
                let n = wire.len();
                wire[i.index(n)] ^= b;
            }
        }
        if let Ok((o, u)) = decode(&wire) {
            let out = encode_with_unknown(&o, u.as_ref());
            let (back, _) = decode(&out).unwrap();
            prop_assert_eq!(back, o);
        }
    }
}
