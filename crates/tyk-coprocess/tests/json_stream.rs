//! `object_to_json_writer`: large Objects stream in bounded pieces and print
//! exactly what the buffered transcoder prints.

use std::collections::BTreeMap;
use std::io::{self, Write};

use prost::Message;
use tyk_coprocess::json::{JsonStyle, WireError, object_to_json, object_to_json_writer};
use tyk_coprocess::{HookType, MiniRequestObject, Object, SessionState};

/// Records every write; optionally fails after some bytes.
#[derive(Default)]
struct Recorder {
    out: Vec<u8>,
    largest_write: usize,
    writes: usize,
    fail_after: Option<usize>,
}

impl Write for Recorder {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.fail_after
            && self.out.len() + data.len() > limit
        {
            return Err(io::Error::other("disk full"));
        }
        self.writes += 1;
        self.largest_write = self.largest_write.max(data.len());
        self.out.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A body mixing ASCII, characters that need escaping and multi-byte
/// characters (2, 3 and 4 bytes) at every alignment, so pieces get cut next
/// to and inside escapes and characters.
fn awkward_text(len: usize) -> String {
    let alphabet = [
        "a", "\"", "\\", "\n", "é", "€", "😀", "\u{1}", "bcdefgh", "<>",
    ];
    let mut s = String::with_capacity(len + 8);
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(alphabet[(i * 7 + i / 3) % alphabet.len()]);
        i += 1;
    }
    s
}

fn big_object(body_len: usize, raw_len: usize) -> Object {
    let body = awkward_text(body_len);
    let raw_body: Vec<u8> = (0..raw_len).map(|i| (i * 31 % 251) as u8).collect();
    let headers: BTreeMap<String, String> = (0..2000)
        .map(|i| (format!("X-Header-{i}"), awkward_text(40 + i % 50)))
        .collect();
    Object {
        hook_type: HookType::Post as i32,
        hook_name: "big".into(),
        request: Some(MiniRequestObject {
            headers,
            body,
            raw_body: raw_body.into(),
            url: "/anything".into(),
            method: "POST".into(),
            ..Default::default()
        }),
        session: Some(SessionState {
            rate: 1.5,
            tags: (0..100).map(|i| format!("tag-{i}")).collect(),
            ..Default::default()
        }),
        spec: [("APIID".to_string(), "api".to_string())].into(),
        ..Default::default()
    }
}

fn buffered(wire: &[u8], style: JsonStyle) -> Vec<u8> {
    let mut out = Vec::new();
    object_to_json(wire, style, &mut out).unwrap();
    out
}

#[test]
fn large_objects_stream_in_bounded_pieces_with_identical_output() {
    // Lengths not multiples of the piece sizes (and raw_body not of 3).
    for (body, raw) in [(3 << 20, (2 << 20) + 1), (100_003, 12 * 1024 + 2), (0, 1)] {
        let wire = big_object(body, raw).encode_to_vec();
        for style in [JsonStyle::Compact, JsonStyle::Pretty] {
            let mut rec = Recorder::default();
            object_to_json_writer(&wire, style, &mut rec).unwrap();
            assert!(rec.out == buffered(&wire, style), "{body} {raw} {style:?}");
            if body > 1 << 20 {
                // 3 MB of body alone escapes to well over 3 MB of output.
                assert!(rec.writes > 100, "{} writes", rec.writes);
                assert!(
                    rec.largest_write <= 256 * 1024,
                    "largest write {} bytes",
                    rec.largest_write
                );
            }
        }
    }
}

#[test]
fn non_canonical_large_objects_take_the_slow_path_and_agree() {
    // Two encodings concatenated: the second hook_name and body win and
    // the maps merge, which a single streaming pass cannot print.
    let a = big_object(200_000, 50_000).encode_to_vec();
    let mut b = big_object(10, 10);
    b.hook_name = "second".into();
    let wire = [a, b.encode_to_vec()].concat();
    let mut rec = Recorder::default();
    object_to_json_writer(&wire, JsonStyle::Compact, &mut rec).unwrap();
    assert!(rec.out == buffered(&wire, JsonStyle::Compact));
    let v: serde_json::Value = serde_json::from_slice(&rec.out).unwrap();
    assert_eq!(v["hookName"], "second");
}

#[test]
fn malformed_input_writes_nothing_and_says_why() {
    let mut wire = big_object(100_000, 10).encode_to_vec();
    let n = wire.len();
    wire.truncate(n - 3);
    let mut rec = Recorder::default();
    let err = object_to_json_writer(&wire, JsonStyle::Compact, &mut rec).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err.get_ref().unwrap().downcast_ref::<WireError>().unwrap();
    assert!(inner.path.starts_with("coprocess.Object"), "{inner}");
    assert!(rec.out.is_empty(), "nothing written");
}

#[test]
fn a_write_error_is_returned_and_ends_the_output() {
    let wire = big_object(1 << 20, 1000).encode_to_vec();
    let mut rec = Recorder {
        fail_after: Some(200_000),
        ..Default::default()
    };
    let err = object_to_json_writer(&wire, JsonStyle::Compact, &mut rec).unwrap_err();
    assert_eq!(err.to_string(), "disk full");
    assert!(rec.out.len() <= 200_000);
}
