//! Per-fixture costs of the wire path: prost decode and encode, the canonical
//! JSON transcoder (compact and pretty), validation alone, the summary scan
//! and the unknown-field walk. Run with `cargo bench -p tyk-coprocess`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use tyk_coprocess::{JsonStyle, Object, json, unknown, wire};

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../tests/fixtures/wire/", $name, ".bin")) as &[u8])),*]
    };
}

/// Every `Dispatch` (Object) fixture; the `event_*` ones are Events.
const FIXTURES: &[(&str, &[u8])] = fixtures![
    "pre_petstore",
    "response_multivalue",
    "post_json_body",
    "post_key_auth_session",
    "custom_key_check_auth",
    "int64_session",
    "unicode",
    "binary_raw_body",
    "huge_headers",
    "empty_object",
];

fn wire_benches(c: &mut Criterion) {
    for &(name, bytes) in FIXTURES {
        let mut g = c.benchmark_group(format!("wire/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let object = Object::decode(bytes).expect("fixture decodes");
        let mut out = Vec::with_capacity(bytes.len() * 4);

        g.bench_function("prost_decode", |b| {
            b.iter(|| Object::decode(black_box(bytes)).expect("decodes"))
        });
        g.bench_function("json_compact", |b| {
            b.iter(|| {
                out.clear();
                json::object_to_json(black_box(bytes), JsonStyle::Compact, &mut out)
                    .expect("transcodes");
                black_box(out.len())
            })
        });
        g.bench_function("json_pretty", |b| {
            b.iter(|| {
                out.clear();
                json::object_to_json(black_box(bytes), JsonStyle::Pretty, &mut out)
                    .expect("transcodes");
                black_box(out.len())
            })
        });
        g.bench_function("validate", |b| {
            b.iter(|| json::validate_object(black_box(bytes)).is_ok())
        });
        g.bench_function("scan_summary", |b| {
            b.iter(|| wire::scan_summary(black_box(bytes)).is_ok())
        });
        g.bench_function("prost_encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&object).encode(&mut out).expect("fits");
                black_box(out.len())
            })
        });
        g.bench_function("unknown_collect", |b| {
            b.iter(|| unknown::collect(black_box(bytes)).expect("well-formed"))
        });
        g.finish();
    }
}

criterion_group!(benches, wire_benches);
criterion_main!(benches);
