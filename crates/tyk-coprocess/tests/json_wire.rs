//! Hand-built wire inputs: errors, unknown fields, non-canonical encodings,
//! exact text formatting.

use tyk_coprocess::json::{
    JsonStyle, MAX_DEPTH, WireErrorKind, message_to_json, object_to_json, validate_object,
    write_py_f64,
};

// --- wire builders ---

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn tag(num: u32, wt: u8) -> Vec<u8> {
    varint(u64::from(num) << 3 | u64::from(wt))
}

/// Varint field.
fn vi(num: u32, v: u64) -> Vec<u8> {
    [tag(num, 0), varint(v)].concat()
}

/// Length-delimited field.
fn ld(num: u32, payload: &[u8]) -> Vec<u8> {
    [tag(num, 2), varint(payload.len() as u64), payload.to_vec()].concat()
}

/// 64-bit fixed field.
fn f64f(num: u32, v: f64) -> Vec<u8> {
    [tag(num, 1), v.to_bits().to_le_bytes().to_vec()].concat()
}

/// A map<string, string> entry.
fn entry(k: &[u8], v: &[u8]) -> Vec<u8> {
    [ld(1, k), ld(2, v)].concat()
}

fn compact(wire: &[u8]) -> String {
    let mut out = Vec::new();
    object_to_json(wire, JsonStyle::Compact, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Parse the Compact output, rejecting duplicate keys (serde_json would
/// silently keep the last one, hiding a streaming bug).
fn value(wire: &[u8]) -> serde_json::Value {
    let text = compact(wire);
    let mut de = serde_json::Deserializer::from_str(&text);
    serde::de::DeserializeSeed::deserialize(NoDupKeys, &mut de).expect("duplicate key");
    serde_json::from_str(&text).unwrap()
}

struct NoDupKeys;

impl<'de> serde::de::DeserializeSeed<'de> for NoDupKeys {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDupKeys {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_element_seed(NoDupKeys)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            if !keys.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key {k}")));
            }
            a.next_value_seed(NoDupKeys)?;
        }
        Ok(())
    }
}

fn err(wire: &[u8]) -> tyk_coprocess::json::WireError {
    let mut out = Vec::new();
    let e = object_to_json(wire, JsonStyle::Pretty, &mut out).unwrap_err();
    assert!(out.is_empty());
    // validate_object finds the same error.
    assert_eq!(validate_object(wire).unwrap_err(), e);
    e
}

// --- basics ---

#[test]
fn empty_input_is_empty_object() {
    let mut out = Vec::new();
    object_to_json(&[], JsonStyle::Pretty, &mut out).unwrap();
    assert_eq!(out, b"{}");
    assert_eq!(compact(&[]), "{}");
    let mut out = Vec::new();
    message_to_json("coprocess.Event", &[], JsonStyle::Compact, &mut out).unwrap();
    assert_eq!(out, b"{}");
}

#[test]
fn pretty_layout_matches_python_indent_2() {
    // request {} ; session { tags: ["a", "b"], monitor {} } ; spec {"k": ""}
    let session = [ld(24, b"a"), ld(24, b"b"), ld(21, b"")].concat();
    let wire = [ld(3, b""), ld(4, &session), ld(6, &entry(b"k", b""))].concat();
    let mut out = Vec::new();
    object_to_json(&wire, JsonStyle::Pretty, &mut out).unwrap();
    let want = "{\n  \"request\": {},\n  \"session\": {\n    \"tags\": [\n      \"a\",\n      \"b\"\n    ],\n    \"monitor\": {}\n  },\n  \"spec\": {\n    \"k\": \"\"\n  }\n}";
    assert_eq!(String::from_utf8(out).unwrap(), want);
    assert_eq!(
        compact(&wire),
        r#"{"request":{},"session":{"tags":["a","b"],"monitor":{}},"spec":{"k":""}}"#
    );
}

#[test]
fn scalars_and_defaults() {
    let session = [
        vi(1, i64::MIN as u64),  // last_check
        vi(5, u64::MAX),         // expires = -1
        vi(6, 0),                // quota_max explicit default: omitted
        f64f(2, 0.0),            // allowance explicit 0.0: omitted
        f64f(3, -0.0),           // rate -0.0: printed
        f64f(4, 1e20),           // per
        vi(16, 1),               // hmac_enabled
        vi(18, 0),               // is_inactive false: omitted
        vi(31, i64::MAX as u64), // max_query_depth
        ld(25, b""),             // alias empty: omitted
        ld(
            21,
            &[
                tag(1, 2),
                vec![16],
                0.0f64.to_bits().to_le_bytes().to_vec(),
                f64::NAN.to_bits().to_le_bytes().to_vec(),
            ]
            .concat(),
        ), // monitor packed [0.0, NaN]
    ]
    .concat();
    let request = [vi(0x0a, 0), ld(14, b"a"), ld(10, &vi(1, (-1i64) as u64))].concat();
    let wire = [vi(1, 0), ld(3, &request), ld(4, &session)].concat();
    assert_eq!(
        compact(&wire),
        concat!(
            r#"{"request":{"rawBody":"YQ==","returnOverrides":{"responseCode":-1}},"#,
            r#""session":{"lastCheck":"-9223372036854775808","expires":"-1","rate":-0.0,"per":1e+20,"#,
            r#""hmacEnabled":true,"maxQueryDepth":"9223372036854775807","monitor":{"triggerLimits":[0.0,"NaN"]}}}"#
        )
    );
}

#[test]
fn int32_truncates_like_upb() {
    // response_code = 2^32 - 1 as a 64-bit varint → -1; 2^32 → 0 (omitted).
    let wire = ld(3, &ld(10, &vi(1, (1u64 << 32) - 1)));
    assert_eq!(
        compact(&wire),
        r#"{"request":{"returnOverrides":{"responseCode":-1}}}"#
    );
    let wire = ld(3, &ld(10, &vi(1, 1u64 << 32)));
    assert_eq!(compact(&wire), r#"{"request":{"returnOverrides":{}}}"#);
}

#[test]
fn strings_are_escaped_like_python_ensure_ascii() {
    let s = "q\"b\\n\nr\rt\tb\u{8}f\u{c}c\u{1}d\u{7f}~ é€😀\u{2028}\u{0}";
    let wire = ld(2, s.as_bytes());
    assert_eq!(
        compact(&wire),
        r#"{"hookName":"q\"b\\n\nr\rt\tb\bf\fc\u0001d\u007f~ \u00e9\u20ac\ud83d\ude00\u2028\u0000"}"#
    );
    // Map keys too.
    let wire = ld(5, &entry("ключ".as_bytes(), b"v"));
    assert_eq!(
        compact(&wire),
        r#"{"metadata":{"\u043a\u043b\u044e\u0447":"v"}}"#
    );
}

#[test]
fn python_float_repr_table() {
    // Values and Python 3 `repr(float)` / MessageToJson text.
    let table: &[(f64, &str)] = &[
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (-1.5, "-1.5"),
        (1000.0, "1000.0"),
        (60.0, "60.0"),
        (0.1, "0.1"),
        (0.30000000000000004, "0.30000000000000004"),
        (123.456, "123.456"),
        (0.001, "0.001"),
        (0.0001, "0.0001"),
        (1e-5, "1e-05"),
        (2.5e-5, "2.5e-05"),
        (1e-9, "1e-09"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (1.5e16, "1.5e+16"),
        (9007199254740993.0, "9007199254740992.0"),
        (12345678901234567890.0, "1.2345678901234567e+19"),
        (1e20, "1e+20"),
        (1e22, "1e+22"),
        (1.5e300, "1.5e+300"),
        (1.5e308, "1.5e+308"),
        (f64::MAX, "1.7976931348623157e+308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (5e-324, "5e-324"),
        (-5e-324, "-5e-324"),
        (123456789012345.6, "123456789012345.6"),
        (f64::NAN, "\"NaN\""),
        (f64::INFINITY, "\"Infinity\""),
        (f64::NEG_INFINITY, "\"-Infinity\""),
    ];
    for &(v, want) in table {
        let mut out = Vec::new();
        write_py_f64(&mut out, v);
        assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{v:e}");
    }
}

#[test]
fn event_and_unknown_message_type() {
    let mut out = Vec::new();
    message_to_json(
        "coprocess.Event",
        &ld(1, b"{\"a\":1}"),
        JsonStyle::Compact,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, br#"{"payload":"{\"a\":1}"}"#);
    let e = message_to_json("coprocess.Nope", &[], JsonStyle::Compact, &mut out).unwrap_err();
    assert_eq!(e.kind, WireErrorKind::UnknownMessageType);
}

// --- unknown things ---

#[test]
fn unknown_enum_value_prints_number() {
    assert_eq!(compact(&vi(1, 99)), r#"{"hookType":99}"#);
    assert_eq!(compact(&vi(1, (-7i64) as u64)), r#"{"hookType":-7}"#);
    assert_eq!(compact(&vi(1, 5)), r#"{"hookType":"Response"}"#);
    assert_eq!(validate_object(&vi(1, 99)).unwrap().hook_type, 99);
    assert_eq!(tyk_coprocess::json::hook_type_name(99), None);
    assert_eq!(tyk_coprocess::json::hook_type_name(3), Some("PostKeyAuth"));
}

#[test]
fn unknown_fields_are_skipped() {
    let group = [
        tag(50, 3),
        vi(1, 5),
        ld(2, b"xx"),
        tag(51, 3),
        tag(51, 4),
        tag(50, 4),
    ]
    .concat();
    let session = [
        vi(40, 7),
        ld(11, b"org"),
        [tag(41, 5), vec![1, 2, 3, 4]].concat(),
    ]
    .concat();
    let wire = [
        vi(99, 1),
        ld(2, b"h"),
        group,
        ld(4, &session),
        f64f(1000, 1.0),
        ld(536_870_911, b"max field number"),
    ]
    .concat();
    assert_eq!(
        compact(&wire),
        r#"{"hookName":"h","session":{"orgId":"org"}}"#
    );
}

#[test]
fn wrong_wire_type_is_unknown_field() {
    // hook_type as length-delimited, hook_name as varint, request as fixed64,
    // a map as varint, rate (double) as varint: all skipped.
    let wire = [
        ld(1, b"\x01"),
        vi(2, 5),
        f64f(3, 1.0),
        vi(6, 1),
        ld(4, &vi(3, 42)),
        ld(2, b"kept"),
    ]
    .concat();
    assert_eq!(compact(&wire), r#"{"session":{},"hookName":"kept"}"#);
    // A map sent as a varint whose value happens to equal the length of what
    // follows: still skipped, and what follows is read as top-level fields
    // (Python's upb prints {"hookName": "cd"}; prost-reflect would read a
    // metadata entry "ab": "cd" instead).
    let wire = [vi(5, 8), ld(1, b"ab"), ld(2, b"cd")].concat();
    assert_eq!(compact(&wire), r#"{"hookName":"cd"}"#);
    // Invalid UTF-8 in a string field sent with the wrong wire type is not
    // a string, so not an error; a packed repeated string is not a thing either.
    let wire = [ld(3, &[tag(5, 5), vec![0xff, 0xff, 0xff, 0xff]].concat())].concat();
    assert_eq!(compact(&wire), r#"{"request":{}}"#);
}

// --- non-canonical encodings ---

#[test]
fn duplicate_singular_scalar_last_wins() {
    let wire = [ld(2, b"first"), vi(1, 1), ld(2, b"second")].concat();
    assert_eq!(
        value(&wire),
        serde_json::json!({"hookName": "second", "hookType": "Pre"})
    );
    assert_eq!(validate_object(&wire).unwrap().hook_name, "second");
    // Last value is the default: omitted.
    let wire = [vi(1, 2), vi(1, 0)].concat();
    assert_eq!(compact(&wire), "{}");
    // Adjacent duplicates.
    let wire = [ld(2, b"a"), ld(2, b"b")].concat();
    assert_eq!(compact(&wire), r#"{"hookName":"b"}"#);
}

#[test]
fn duplicate_sub_message_merges() {
    let r1 = [
        ld(5, b"/one"),
        ld(11, b"GET"),
        ld(3, b"x"),
        ld(1, &entry(b"A", b"1")),
    ]
    .concat();
    let r2 = [
        ld(5, b"/two"),
        ld(3, b"y"),
        ld(1, &entry(b"B", b"2")),
        ld(10, &vi(1, 7)),
    ]
    .concat();
    let r3 = ld(10, &ld(2, b"err"));
    let wire = [ld(3, &r1), vi(1, 1), ld(3, &r2), ld(3, &r3)].concat();
    assert_eq!(
        value(&wire),
        serde_json::json!({
            "hookType": "Pre",
            "request": {
                "url": "/two", "method": "GET", "deleteHeaders": ["x", "y"],
                "headers": {"A": "1", "B": "2"},
                "returnOverrides": {"responseCode": 7, "responseError": "err"}
            }
        })
    );
}

#[test]
fn split_repeated_field_is_joined() {
    let req = [ld(3, b"a"), ld(5, b"/u"), ld(3, b"b"), ld(3, b"c")].concat();
    assert_eq!(
        value(&ld(3, &req)),
        serde_json::json!({"request": {"deleteHeaders": ["a", "b", "c"], "url": "/u"}})
    );
    // Doubles: packed and unpacked mixed, split by another field.
    let packed = [
        tag(1, 2),
        vec![16],
        1.0f64.to_bits().to_le_bytes().to_vec(),
        2.0f64.to_bits().to_le_bytes().to_vec(),
    ]
    .concat();
    let monitor = [packed.clone(), f64f(1, 3.0), vi(9, 1), packed, ld(1, b"")].concat();
    assert_eq!(
        compact(&ld(4, &ld(21, &monitor))),
        r#"{"session":{"monitor":{"triggerLimits":[1.0,2.0,3.0,1.0,2.0]}}}"#
    );
    // An empty packed run alone prints nothing.
    assert_eq!(
        compact(&ld(4, &ld(21, &ld(1, b"")))),
        r#"{"session":{"monitor":{}}}"#
    );
    // Bad packed length is an error.
    let e = err(&ld(4, &ld(21, &ld(1, &[0; 7]))));
    assert_eq!(e.kind, WireErrorKind::BadPackedLength);
    assert_eq!(e.path, "coprocess.Object.session.monitor.trigger_limits");
}

#[test]
fn duplicate_and_split_map_keys() {
    let wire = [
        ld(6, &entry(b"APIID", b"first")),
        ld(6, &entry(b"OrgID", b"org")),
        ld(6, &entry(b"APIID", b"second")),
    ]
    .concat();
    assert_eq!(
        value(&wire),
        serde_json::json!({"spec": {"APIID": "second", "OrgID": "org"}})
    );
    let s = validate_object(&wire).unwrap();
    assert_eq!((s.api_id, s.org_id), ("second", "org"));
    let mut out = Vec::new();
    assert_eq!(
        object_to_json(&wire, JsonStyle::Compact, &mut out).unwrap(),
        s
    );

    // Split run of a map.
    let wire = [
        ld(6, &entry(b"a", b"1")),
        ld(2, b"h"),
        ld(6, &entry(b"b", b"2")),
    ]
    .concat();
    assert_eq!(
        value(&wire),
        serde_json::json!({"spec": {"a": "1", "b": "2"}, "hookName": "h"})
    );

    // Map sizes around the switch from direct comparison to a hash set,
    // with the duplicate taken from either side of it; then a second map in
    // the same message (its keys must not count as the first one's).
    for n in [2usize, 7, 8, 9, 10, 40] {
        for dup in [0, n / 2, n - 1, 7.min(n - 1), 8.min(n - 1)] {
            let mut wire: Vec<u8> = (0..n)
                .flat_map(|i| ld(5, &entry(format!("k{i}").as_bytes(), b"v")))
                .collect();
            wire.extend(ld(5, &entry(format!("k{dup}").as_bytes(), b"last")));
            wire.extend((0..n).flat_map(|i| ld(6, &entry(format!("k{i}").as_bytes(), b"s"))));
            let v = value(&wire);
            assert_eq!(v["metadata"].as_object().unwrap().len(), n, "{n} {dup}");
            assert_eq!(v["metadata"][format!("k{dup}")], "last", "{n} {dup}");
            assert_eq!(v["spec"].as_object().unwrap().len(), n, "{n} {dup}");
        }
        // No duplicate: both maps print in full, in wire order.
        let wire: Vec<u8> = (0..n)
            .flat_map(|i| ld(5, &entry(format!("k{i}").as_bytes(), b"v")))
            .chain((0..n).flat_map(|i| ld(6, &entry(format!("k{i}").as_bytes(), b"s"))))
            .collect();
        let v = value(&wire);
        assert_eq!(v["metadata"].as_object().unwrap().len(), n);
        assert_eq!(v["spec"].as_object().unwrap().len(), n);
    }

    // Keys alike at both ends (same length, same first and last 8 bytes)
    // are still different keys; then a real duplicate among them.
    let alike = [
        "aaaaaaaaXbbbbbbbb",
        "aaaaaaaaYbbbbbbbb",
        "aaaaaaaaZbbbbbbbb",
    ];
    let mut wire: Vec<u8> = alike
        .iter()
        .flat_map(|k| ld(5, &entry(k.as_bytes(), b"v")))
        .collect();
    assert_eq!(value(&wire)["metadata"].as_object().unwrap().len(), 3);
    wire.extend(ld(5, &entry(alike[1].as_bytes(), b"last")));
    let v = value(&wire);
    assert_eq!(v["metadata"].as_object().unwrap().len(), 3);
    assert_eq!(v["metadata"][alike[1]], "last");

    // Many distinct keys and one duplicate at the very end.
    let mut entries: Vec<u8> = (0..600)
        .flat_map(|i| ld(5, &entry(format!("k{i}").as_bytes(), b"v")))
        .collect();
    let v = value(&entries);
    assert_eq!(v["metadata"].as_object().unwrap().len(), 600);
    entries.extend(ld(5, &entry(b"k17", b"last")));
    let v = value(&entries);
    assert_eq!(v["metadata"].as_object().unwrap().len(), 600);
    assert_eq!(v["metadata"]["k17"], "last");
    let compact_text = compact(&entries);
    assert_eq!(compact_text.matches("\"k17\"").count(), 1);
}

#[test]
fn map_entry_edge_cases() {
    // Missing key, missing value, empty entry, key/value twice, unknown
    // field inside the entry, wrong wire type inside the entry.
    let wire = [
        ld(5, &ld(2, b"no key")),
        ld(5, &ld(1, b"nov")),
        ld(5, b""),
        ld(
            5,
            &[
                ld(1, b"x"),
                ld(2, b"1"),
                ld(1, b"k"),
                ld(2, b"2"),
                vi(3, 9),
                vi(2, 5),
            ]
            .concat(),
        ),
    ]
    .concat();
    // "" appears twice (missing key; empty entry): last wins → "".
    assert_eq!(
        value(&wire),
        serde_json::json!({"metadata": {"": "", "nov": "", "k": "2"}})
    );
    // Message-valued map: missing value prints {}; value twice merges.
    let ad1 = [ld(1, b"name"), ld(3, b"v1")].concat();
    let ad2 = [ld(2, b"id"), ld(3, b"v2")].concat();
    let session = [
        ld(10, &ld(1, b"empty")),
        ld(10, &[ld(1, b"api"), ld(2, &ad1), ld(2, &ad2)].concat()),
    ]
    .concat();
    assert_eq!(
        value(&ld(4, &session)),
        serde_json::json!({"session": {"accessRights": {
            "empty": {},
            "api": {"apiName": "name", "apiId": "id", "versions": ["v1", "v2"]}
        }}})
    );
    // Duplicate key with message values: replaced, not merged.
    let session = [
        ld(10, &[ld(1, b"api"), ld(2, &ad1)].concat()),
        ld(10, &[ld(1, b"api"), ld(2, &ad2)].concat()),
    ]
    .concat();
    assert_eq!(
        value(&ld(4, &session)),
        serde_json::json!({"session": {"accessRights": {"api": {"apiId": "id", "versions": ["v2"]}}}})
    );
}

// --- errors ---

#[test]
fn error_truncated() {
    let e = err(&[0x08]);
    assert_eq!((e.kind, e.offset), (WireErrorKind::Truncated, 1));
    assert_eq!(e.path, "coprocess.Object.hook_type");
    assert_eq!(err(&[0x08, 0x80]).kind, WireErrorKind::Truncated);
    assert_eq!(err(&[0x91]).kind, WireErrorKind::Truncated); // tag cut
    let e = err(&[tag(4, 1), vec![0; 7]].concat());
    assert_eq!(e.kind, WireErrorKind::Truncated);
    let e = err(&[tag(4, 5), vec![0; 3]].concat());
    assert_eq!(e.kind, WireErrorKind::Truncated);
}

#[test]
fn error_varint_too_long() {
    let mut wire = vec![0x08];
    wire.extend([0xff; 10]);
    wire.push(0x01);
    let e = err(&wire);
    assert_eq!((e.kind, e.offset), (WireErrorKind::VarintTooLong, 1));
    // Exactly 10 bytes is fine.
    let mut wire = vec![0x08];
    wire.extend([0xff; 9]);
    wire.push(0x01);
    assert_eq!(compact(&wire), r#"{"hookType":-1}"#);
}

#[test]
fn error_length_past_end() {
    let e = err(&[0x12, 0x05, b'a']);
    assert_eq!((e.kind, e.offset), (WireErrorKind::LengthOutOfBounds, 1));
    // Nested: within the buffer but past the sub-message end.
    let wire = [
        vec![0x1a, 0x03],
        ld(5, b"abcdef")[..3].to_vec(),
        ld(2, b"xyz"),
    ]
    .concat();
    let e = err(&wire);
    assert_eq!(e.kind, WireErrorKind::LengthOutOfBounds);
    assert_eq!(e.path, "coprocess.Object.request.url");
    assert_eq!(e.offset, 3);
    // Huge length.
    let wire = [vec![0x12], varint(u64::MAX)].concat();
    assert_eq!(err(&wire).kind, WireErrorKind::LengthOutOfBounds);
}

#[test]
fn error_field_number_zero_and_range() {
    let e = err(&[0x00, 0x00]);
    assert_eq!((e.kind, e.offset), (WireErrorKind::FieldNumberZero, 0));
    assert_eq!(e.path, "coprocess.Object");
    let wire = [varint(1 << 35), vec![0]].concat();
    assert_eq!(err(&wire).kind, WireErrorKind::FieldNumberOutOfRange);
}

#[test]
fn error_wire_types_6_and_7() {
    assert_eq!(err(&[0x0e, 0]).kind, WireErrorKind::InvalidWireType(6));
    let e = err(&ld(3, &[0x0f, 0]));
    assert_eq!((e.kind, e.offset), (WireErrorKind::InvalidWireType(7), 2));
    assert_eq!(e.path, "coprocess.Object.request");
}

#[test]
fn error_unbalanced_groups() {
    assert_eq!(err(&tag(9, 4)).kind, WireErrorKind::UnbalancedGroupEnd);
    assert_eq!(
        err(&ld(3, &tag(1, 4))).kind,
        WireErrorKind::UnbalancedGroupEnd
    );
    let e = err(&[tag(9, 3), tag(8, 4)].concat());
    assert_eq!((e.kind, e.offset), (WireErrorKind::UnbalancedGroupEnd, 1));
    // Unterminated group.
    assert_eq!(
        err(&[tag(9, 3), vi(1, 1)].concat()).kind,
        WireErrorKind::Truncated
    );
    // A group may not end outside the sub-message it started in.
    let wire = [ld(3, &tag(9, 3)), tag(9, 4)].concat();
    assert!(err(&wire).kind == WireErrorKind::Truncated);
}

#[test]
fn deep_group_nesting() {
    let nested = |n: usize| {
        let mut w = Vec::new();
        for _ in 0..n {
            w.extend(tag(9, 3));
        }
        for _ in 0..n {
            w.extend(tag(9, 4));
        }
        w
    };
    assert_eq!(compact(&nested(MAX_DEPTH)), "{}");
    let e = err(&nested(MAX_DEPTH + 1));
    assert_eq!(e.kind, WireErrorKind::TooDeep);
    // Deeper inside a sub-message hits the limit sooner.
    assert_eq!(compact(&ld(3, &nested(MAX_DEPTH - 1))), r#"{"request":{}}"#);
    assert_eq!(err(&ld(3, &nested(MAX_DEPTH))).kind, WireErrorKind::TooDeep);
    // Very deep input fails cleanly (no stack overflow).
    assert_eq!(err(&nested(100_000)).kind, WireErrorKind::TooDeep);
}

#[test]
fn error_invalid_utf8() {
    let e = err(&ld(2, b"ok\xff"));
    assert_eq!((e.kind, e.offset), (WireErrorKind::InvalidUtf8, 4));
    assert_eq!(e.path, "coprocess.Object.hook_name");
    let wire = [
        ld(2, b"x"),
        ld(3, &[ld(11, b"GET"), ld(5, b"/p\xc3")].concat()),
    ]
    .concat();
    let e = err(&wire);
    assert_eq!(e.kind, WireErrorKind::InvalidUtf8);
    assert_eq!(e.path, "coprocess.Object.request.url");
    assert_eq!(e.offset, wire.len() - 1);
    let e = err(&ld(6, &entry(b"\xe2\x82", b"v")));
    assert_eq!(e.path, "coprocess.Object.spec.key");
    let e = err(&ld(6, &entry(b"k", b"\xc0\xaf")));
    assert_eq!(e.path, "coprocess.Object.spec.value");
    let e = err(&ld(
        4,
        &ld(10, &[ld(1, b"k"), ld(2, &ld(4, &ld(1, b"\xff")))].concat()),
    ));
    assert_eq!(
        e.path,
        "coprocess.Object.session.access_rights.value.allowed_urls.url"
    );
    // bytes fields accept anything.
    assert_eq!(
        compact(&ld(3, &ld(14, b"\xff"))),
        r#"{"request":{"rawBody":"/w=="}}"#
    );
    // Surrogate code points are not valid UTF-8.
    assert_eq!(
        err(&ld(2, b"\xed\xa0\x80")).kind,
        WireErrorKind::InvalidUtf8
    );
    // An error after a non-canonical part is still reported precisely.
    let wire = [ld(2, b"a"), ld(2, b"b"), ld(2, b"\xff")].concat();
    let e = err(&wire);
    assert_eq!((e.kind, e.offset), (WireErrorKind::InvalidUtf8, 8));
}

#[test]
fn error_message_is_readable() {
    let e = err(&ld(3, &ld(5, b"\xff")));
    assert_eq!(
        e.to_string(),
        "malformed protobuf: invalid UTF-8 in a string field in coprocess.Object.request.url at byte 4"
    );
}
