//! In-process `Router` dispatch of the petstore Pre-hook Object: no gRPC, no
//! logging. Run with `cargo bench -p tyk-plugin`.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tyk_plugin::{Dispatcher, Request, Router};

const PETSTORE: &[u8] = include_bytes!("../../tyk-coprocess/tests/fixtures/wire/pre_petstore.bin");
/// `hook_name` of the petstore fixture.
const HOOK: &str = "MyPrePluginMiddleware";

async fn unchanged(req: Request) -> Request {
    req
}

async fn one_header(mut req: Request) -> Request {
    req.set_header("X-Bench", "1");
    req
}

fn dispatch_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let object = Bytes::from_static(PETSTORE);
    let routers = [
        // No route for this hook: the Object comes back as is.
        ("unrouted_echo", Router::new()),
        ("routed_unchanged", Router::new().pre(HOOK, unchanged)),
        ("routed_set_header", Router::new().pre(HOOK, one_header)),
    ];
    let mut g = c.benchmark_group("dispatch/pre_petstore");
    g.throughput(Throughput::Elements(1));
    for (name, router) in &routers {
        // Sanity: every variant answers with a well-formed Object.
        let reply = rt
            .block_on(router.dispatch(object.clone()))
            .expect("dispatch succeeds");
        assert!(!reply.is_empty());
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(router.dispatch(black_box(object.clone())))
                    .expect("dispatch succeeds")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, dispatch_benches);
criterion_main!(benches);
