//! Unit tests of `tyk_coprocess::unknown` on hand-made wire bytes (cases the
//! property test does not reach: non-canonical input), plus a timing of
//! `collect` on the public fixtures (`cargo test --release -p tyk-coprocess
//! --test unknown -- --ignored --nocapture`).

use std::time::Instant;

use prost::Message;
use tyk_coprocess::json::validate_object;
use tyk_coprocess::unknown::{collect, decode, encode_with_unknown};
use tyk_coprocess::{AccessDefinition, Header, Object, ResponseObject, SessionState};

fn tag(out: &mut Vec<u8>, num: u32, wt: u8) {
    let mut v = u64::from(num) << 3 | u64::from(wt);
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(num: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    tag(&mut out, num, 2);
    assert!(payload.len() < 128);
    out.push(payload.len() as u8);
    out.extend_from_slice(payload);
    out
}

/// An unknown varint field 99 with value `v`.
fn junk(v: u8) -> Vec<u8> {
    let mut out = Vec::new();
    tag(&mut out, 99, 0);
    out.push(v);
    out
}

/// `session` holding `access_rights[key]` = an AccessDefinition with `inner`.
fn access_right(key: &str, value: &[u8]) -> Vec<u8> {
    let entry = [len_field(1, key.as_bytes()), len_field(2, value)].concat();
    len_field(4, &len_field(10, &entry))
}

#[test]
fn none_for_plain_objects_and_fixtures() {
    assert_eq!(collect(&[]).unwrap(), None);
    for path in fixtures() {
        let wire = std::fs::read(&path).unwrap();
        assert_eq!(collect(&wire).unwrap(), None, "{}", path.display());
    }
}

#[test]
fn top_level_unknowns_are_appended_verbatim() {
    let obj = Object {
        hook_name: "h".into(),
        ..Default::default()
    };
    let wire = [junk(1), obj.encode_to_vec(), junk(2)].concat();
    let u = collect(&wire).unwrap().unwrap();
    assert_eq!(u.len(), 6);
    let mut changed = obj.clone();
    changed.hook_name = "other".into();
    let out = encode_with_unknown(&changed, Some(&u));
    assert_eq!(out, [changed.encode_to_vec(), junk(1), junk(2)].concat());
}

#[test]
fn singular_submessage_sent_twice_merges_its_unknowns() {
    // request { 99: 1 } request { 99: 2 }: one request with both.
    let wire = [len_field(3, &junk(1)), len_field(3, &junk(2))].concat();
    let (obj, u) = decode(&wire).unwrap();
    assert!(obj.request.is_some());
    let out = encode_with_unknown(&obj, u.as_ref());
    assert_eq!(out, len_field(3, &[junk(1), junk(2)].concat()));
    // Removed request: its unknowns go with it.
    let out = encode_with_unknown(&Object::default(), u.as_ref());
    assert!(out.is_empty());
}

#[test]
fn duplicate_map_key_last_entry_wins() {
    let first = [len_field(1, b"first"), junk(1)].concat();
    let second = len_field(1, b"second");
    let wire = [access_right("a", &first), access_right("a", &second)].concat();
    let (obj, u) = decode(&wire).unwrap();
    let ad = &obj.session.as_ref().unwrap().access_rights["a"];
    assert_eq!(ad.api_name, "second");
    // The first entry's unknown field went with the replaced value.
    assert_eq!(u, None);

    let wire = [access_right("a", &second), access_right("a", &first)].concat();
    let (obj, u) = decode(&wire).unwrap();
    let out = encode_with_unknown(&obj, u.as_ref());
    assert_eq!(out, access_right("a", &first));
}

#[test]
fn default_map_value_gets_a_value_field_for_its_unknowns() {
    let wire = access_right("k", &junk(7));
    let (obj, u) = decode(&wire).unwrap();
    assert_eq!(
        obj.session.as_ref().unwrap().access_rights["k"],
        AccessDefinition::default()
    );
    // prost leaves the default value out; the splice puts it back.
    assert_eq!(encode_with_unknown(&obj, u.as_ref()), wire);
}

#[test]
fn map_entry_level_unknowns_stay_in_the_entry() {
    let entry = [len_field(1, b"k"), len_field(2, b"v"), junk(3)].concat();
    let wire = len_field(6, &entry);
    let (mut obj, u) = decode(&wire).unwrap();
    assert_eq!(encode_with_unknown(&obj, u.as_ref()), wire);
    obj.spec.insert("k".into(), "w".into());
    let entry = [len_field(1, b"k"), len_field(2, b"w"), junk(3)].concat();
    assert_eq!(encode_with_unknown(&obj, u.as_ref()), len_field(6, &entry));
    obj.spec.clear();
    assert!(encode_with_unknown(&obj, u.as_ref()).is_empty());
}

#[test]
fn repeated_elements_follow_their_key() {
    // multivalue_headers: A, B(+unknown), B, A(+unknown)
    let h = |k: &str, extra: &[u8]| {
        len_field(5, &[len_field(1, k.as_bytes()), extra.to_vec()].concat())
    };
    let wire = len_field(
        7,
        &[h("A", &[]), h("B", &junk(1)), h("B", &[]), h("A", &junk(2))].concat(),
    );
    let (mut obj, u) = decode(&wire).unwrap();
    let mv = &mut obj.response.as_mut().unwrap().multivalue_headers;
    // Drop the first A, put a new header in front.
    mv.remove(0);
    mv.insert(
        0,
        Header {
            key: "C".into(),
            values: vec![],
        },
    );
    let out = encode_with_unknown(&obj, u.as_ref());
    // The first B keeps junk(1). The second A is now the only A: ordinal 0,
    // which had no unknowns; junk(2) belonged to the 2nd A and is dropped.
    let want = len_field(
        7,
        &[h("C", &[]), h("B", &junk(1)), h("B", &[]), h("A", &[])].concat(),
    );
    assert_eq!(out, want);
}

#[test]
fn groups_and_wrong_wire_types_are_kept_exactly() {
    // Object { 50: group { 1: 5, 51: group {} } , hook_type as a string,
    // response { status_code as fixed32 } }
    let mut group = Vec::new();
    tag(&mut group, 50, 3);
    tag(&mut group, 1, 0);
    group.push(5);
    tag(&mut group, 51, 3);
    tag(&mut group, 51, 4);
    tag(&mut group, 50, 4);
    let hook_type_as_string = len_field(1, b"Pre");
    let mut status_fixed = Vec::new();
    tag(&mut status_fixed, 1, 5);
    status_fixed.extend_from_slice(&200u32.to_le_bytes());
    let wire = [
        group.clone(),
        hook_type_as_string.clone(),
        len_field(7, &status_fixed),
    ]
    .concat();
    // prost refuses the input; decode() does not.
    assert!(Object::decode(wire.as_slice()).is_err());
    let (mut obj, u) = decode(&wire).unwrap();
    let u = u.unwrap();
    assert!(u.has_wrong_wire_type());
    assert_eq!(obj.hook_type, 0);
    assert_eq!(obj.response, Some(ResponseObject::default()));
    obj.hook_name = "x".into();
    let out = encode_with_unknown(&obj, Some(&u));
    let want = [
        len_field(2, b"x"),
        len_field(7, &status_fixed),
        group,
        hook_type_as_string,
    ]
    .concat();
    assert_eq!(out, want);
}

#[test]
fn malformed_input_is_an_error() {
    assert!(collect(&[0x0a, 5, 1]).is_err());
    let err = collect(&len_field(4, &[0x0a, 0x80])).unwrap_err();
    assert_eq!(err.path, "coprocess.Object.session");
    // Unbalanced group end.
    assert!(collect(&[0x0c]).is_err());
    // Nesting too deep.
    let mut deep: Vec<u8> = Vec::new();
    for _ in 0..200 {
        let mut g = Vec::new();
        tag(&mut g, 60, 3);
        g.extend_from_slice(&deep);
        tag(&mut g, 60, 4);
        deep = g;
    }
    assert!(collect(&deep).is_err());
}

#[test]
fn session_removal_drops_session_unknowns_only() {
    let obj = Object {
        session: Some(SessionState {
            org_id: "o".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let session = [len_field(11, b"o"), junk(4)].concat();
    let wire = [len_field(4, &session), junk(5)].concat();
    let (mut decoded, u) = decode(&wire).unwrap();
    assert_eq!(decoded, obj);
    decoded.session = None;
    assert_eq!(encode_with_unknown(&decoded, u.as_ref()), junk(5));
}

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wire");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "bin")
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("event_")
        })
        .collect();
    out.sort();
    out
}

/// Time `f` per call (best of 5 batches).
fn time(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let n = 200;
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / f64::from(n));
    }
    best * 1e9
}

#[test]
#[ignore = "timing; run with --release -- --ignored --nocapture"]
fn timing_collect_vs_validate() {
    println!(
        "{:<24} {:>8} {:>12} {:>12} {:>14} {:>14}",
        "fixture", "bytes", "validate ns", "collect ns", "collect+1 ns", "encode+1 ns"
    );
    for path in fixtures() {
        let wire = std::fs::read(&path).unwrap();
        let v = time(|| {
            std::hint::black_box(validate_object(std::hint::black_box(&wire)).is_ok());
        });
        let c = time(|| {
            std::hint::black_box(collect(std::hint::black_box(&wire)).unwrap());
        });
        // The same with one unknown field inside request (or at the top).
        let obj = Object::decode(wire.as_slice()).unwrap();
        let mut with = obj.clone();
        with.request.get_or_insert_default();
        let injected = [with.encode_to_vec(), len_field(3, &junk(9))].concat();
        let c1 = time(|| {
            std::hint::black_box(collect(std::hint::black_box(&injected)).unwrap());
        });
        let u = collect(&injected).unwrap();
        let e1 = time(|| {
            std::hint::black_box(encode_with_unknown(&with, u.as_ref()));
        });
        let e0 = time(|| {
            std::hint::black_box(with.encode_to_vec());
        });
        println!(
            "{:<24} {:>8} {:>12.0} {:>12.0} {:>14.0} {:>8.0} (prost {:.0})",
            path.file_stem().unwrap().to_string_lossy(),
            wire.len(),
            v,
            c,
            c1,
            e1,
            e0
        );
    }
}
