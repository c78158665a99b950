//! The wire fixtures (encoded by Tyk's Python bindings) transcoded to JSON
//! must equal Python's `MessageToJson` output for them.

use std::path::{Path, PathBuf};

use tyk_coprocess::json::{JsonStyle, message_to_json, object_to_json, validate_object};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire")
}

/// (name, wire bytes, reference JSON text) for every `.bin` fixture.
fn fixtures() -> Vec<(String, Vec<u8>, String)> {
    let dir = fixture_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".bin").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 13, "fixtures missing: {names:?}");
    names
        .into_iter()
        .map(|name| {
            let bin = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
            let current = dir.join(format!("{name}.current-proto.json"));
            let json = if current.exists() {
                std::fs::read_to_string(current).unwrap()
            } else {
                std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()
            };
            (name, bin, json)
        })
        .collect()
}

fn transcode(name: &str, bin: &[u8], style: JsonStyle) -> Vec<u8> {
    let mut out = Vec::new();
    if name.starts_with("event_") {
        message_to_json("coprocess.Event", bin, style, &mut out).unwrap();
    } else {
        object_to_json(bin, style, &mut out).unwrap();
    }
    out
}

#[test]
fn every_fixture_matches_message_to_json() {
    for (name, bin, reference) in fixtures() {
        let want: serde_json::Value = serde_json::from_str(&reference).unwrap();
        for style in [JsonStyle::Pretty, JsonStyle::Compact] {
            let out = transcode(&name, &bin, style);
            let got: serde_json::Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{name} {style:?}: not JSON: {e}"));
            assert_eq!(got, want, "{name} {style:?}");
            // ensure_ascii: the output is pure ASCII.
            assert!(out.is_ascii(), "{name}");
            if !name.starts_with("event_") {
                let mut streamed = Vec::new();
                tyk_coprocess::json::object_to_json_writer(&bin, style, &mut streamed).unwrap();
                assert!(streamed == out, "{name} {style:?}: streamed output differs");
            }
        }
        // Compact is Pretty without the whitespace outside strings.
        let pretty = transcode(&name, &bin, JsonStyle::Pretty);
        let compact = transcode(&name, &bin, JsonStyle::Compact);
        assert_eq!(strip_ws(&pretty), compact, "{name}");
    }
}

fn strip_ws(json: &[u8]) -> Vec<u8> {
    let (mut in_str, mut esc) = (false, false);
    let mut out = Vec::new();
    for &c in json {
        if in_str {
            in_str = esc || c != b'"';
            esc = !esc && c == b'\\';
        } else if c == b'"' {
            in_str = true;
        } else if c == b' ' || c == b'\n' {
            continue;
        }
        out.push(c);
    }
    out
}

#[test]
fn summaries_of_fixtures() {
    for (name, bin, reference) in fixtures() {
        if name.starts_with("event_") {
            continue;
        }
        let want: serde_json::Value = serde_json::from_str(&reference).unwrap();
        let summary = validate_object(&bin).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            object_to_json(&bin, JsonStyle::Compact, &mut out).unwrap(),
            summary
        );
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
        assert_eq!(summary.hook_name, s(&want["hookName"]), "{name}");
        assert_eq!(summary.api_id, s(&want["spec"]["APIID"]), "{name}");
        assert_eq!(summary.org_id, s(&want["spec"]["OrgID"]), "{name}");
        let hook = tyk_coprocess::json::hook_type_name(summary.hook_type).unwrap_or("Unknown");
        assert_eq!(
            hook,
            want["hookType"].as_str().unwrap_or("Unknown"),
            "{name}"
        );
    }
}

// --- byte-exact Pretty output for pre_petstore ---------------------------
//
// Python's map order is upb's (random per process), ours is wire order. To
// compare bytes honestly we permute the map entries *on the wire* into the
// order the reference text shows them, then require identical bytes.

fn varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0;
    let mut shift = 0;
    loop {
        let b = buf[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Top-level fields of a message as (number, wire type, raw value bytes).
/// Only wire types 0 and 2 occur in this fixture.
fn fields(buf: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let tag = varint(buf, &mut pos);
        let (num, wt) = (tag >> 3, tag & 7);
        let start = pos;
        let value = match wt {
            0 => {
                varint(buf, &mut pos);
                buf[start..pos].to_vec()
            }
            2 => {
                let len = varint(buf, &mut pos) as usize;
                pos += len;
                buf[pos - len..pos].to_vec()
            }
            _ => panic!("unexpected wire type {wt}"),
        };
        out.push((num, wt, value));
    }
    out
}

fn encode(fields: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (num, wt, v) in fields {
        put_varint(&mut out, num << 3 | wt);
        if *wt == 2 {
            put_varint(&mut out, v.len() as u64);
        }
        out.extend_from_slice(v);
    }
    out
}

/// Reorder the entries of map fields `maps` by where `"KEY":` first appears
/// in `reference` (entries stay contiguous at the position of the first).
fn reorder_maps(
    mut fs: Vec<(u64, u64, Vec<u8>)>,
    maps: &[u64],
    reference: &str,
) -> Vec<(u64, u64, Vec<u8>)> {
    for &m in maps {
        let rank = |entry: &Vec<u8>| {
            let key = &fields(entry).into_iter().find(|f| f.0 == 1).unwrap().2;
            let needle = format!("\"{}\":", std::str::from_utf8(key).unwrap());
            reference.find(&needle).expect("key in reference")
        };
        let first = fs.iter().position(|f| f.0 == m).unwrap();
        let mut entries: Vec<_> = fs.iter().filter(|f| f.0 == m).cloned().collect();
        entries.sort_by_key(|f| rank(&f.2));
        fs.retain(|f| f.0 != m);
        for (i, e) in entries.into_iter().enumerate() {
            fs.insert(first + i, e);
        }
    }
    fs
}

#[test]
fn pre_petstore_pretty_is_byte_identical() {
    let dir = fixture_dir();
    let bin = std::fs::read(dir.join("pre_petstore.bin")).unwrap();
    let reference = std::fs::read_to_string(dir.join("pre_petstore.json")).unwrap();
    let reference = reference.strip_suffix('\n').unwrap_or(&reference);

    let mut top = reorder_maps(fields(&bin), &[6], reference);
    for f in top.iter_mut().filter(|f| f.0 == 3) {
        f.2 = encode(&reorder_maps(fields(&f.2), &[1, 6], reference));
    }
    let wire = encode(&top);
    assert_eq!(wire.len(), bin.len());

    let mut out = Vec::new();
    object_to_json(&wire, JsonStyle::Pretty, &mut out).unwrap();
    assert_eq!(std::str::from_utf8(&out).unwrap(), reference);
}

#[test]
fn output_is_appended() {
    let dir = fixture_dir();
    let bin = std::fs::read(dir.join("pre_petstore.bin")).unwrap();
    let mut out = b"prefix ".to_vec();
    object_to_json(&bin, JsonStyle::Compact, &mut out).unwrap();
    assert!(out.starts_with(b"prefix {\"hookType\":\"Pre\""));
    // On error nothing is appended.
    let before = out.clone();
    assert!(object_to_json(&bin[..bin.len() - 1], JsonStyle::Compact, &mut out).is_err());
    assert_eq!(out, before);
}

/// Rough timing, not a benchmark: `cargo test --release -p tyk-coprocess
/// --test json_fixtures -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing() {
    let dir = fixture_dir();
    for name in ["pre_petstore", "post_key_auth_session", "huge_headers"] {
        let bin = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let mut out = Vec::with_capacity(bin.len() * 4);
        let iters = if bin.len() > 100_000 { 200 } else { 200_000 };
        for (label, style) in [
            ("Compact", JsonStyle::Compact),
            ("Pretty", JsonStyle::Pretty),
        ] {
            let t = std::time::Instant::now();
            for _ in 0..iters {
                out.clear();
                object_to_json(std::hint::black_box(&bin), style, &mut out).unwrap();
            }
            let ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
            println!("{name} ({} B) {label}: {ns:.0} ns/op", bin.len());
        }
        let t = std::time::Instant::now();
        for _ in 0..iters {
            validate_object(std::hint::black_box(&bin)).unwrap();
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
        println!("{name} validate_object: {ns:.0} ns/op");
    }
}
