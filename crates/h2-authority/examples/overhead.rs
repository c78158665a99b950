//! Rough overhead measurement over in-memory streams:
//! `cargo run --release -p h2-authority --example overhead`.
//!
//! Feeds N gRPC requests (HEADERS + small DATA, grpc-go-like HPACK with
//! dynamic-table references after the first block) through a plain reader,
//! through `AuthorityRepair` in pass-through mode (valid authority) and in
//! repair mode (empty authority), and prints nanoseconds per request.

use std::time::Instant;

use h2_authority::{AuthorityRepair, RepairMode};
use tokio::io::{AsyncRead, AsyncReadExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, sid: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&sid.to_be_bytes());
    out.extend_from_slice(payload);
}

fn s(out: &mut Vec<u8>, v: &[u8]) {
    out.push(v.len() as u8);
    out.extend_from_slice(v);
}

/// `authority` is the raw representation of `:authority` in the first block;
/// later blocks reference it as `later_authority`.
fn connection(n: u32, authority: &[u8], later_authority: &[u8]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, 4, 0, 0, &[]);
    let mut first = vec![0x83, 0x86, 0x44];
    s(&mut first, b"/coprocess.Dispatcher/Dispatch");
    first.extend_from_slice(authority);
    first.push(0x5f);
    s(&mut first, b"application/grpc");
    first.push(0x7a);
    s(&mut first, b"grpc-go/1.62.1");
    first.push(0x40);
    s(&mut first, b"te");
    s(&mut first, b"trailers");
    let mut later = vec![0x83, 0x86, 0xc1];
    later.extend_from_slice(later_authority);
    later.extend_from_slice(&[0xc0, 0xbf, 0xbe]);
    let mut data = vec![0, 0, 0, 0, 95];
    data.extend_from_slice(&[0x2a; 95]);
    for i in 0..n {
        let sid = 1 + 2 * i;
        frame(&mut out, 1, 4, sid, if i == 0 { &first } else { &later });
        frame(&mut out, 0, 1, sid, &data);
    }
    out
}

async fn drain<R: AsyncRead + Unpin>(mut r: R, buf: &mut [u8]) -> (usize, R) {
    let mut total = 0;
    loop {
        let n = r.read(buf).await.unwrap();
        if n == 0 {
            return (total, r);
        }
        total += n;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = 200_000u32;
    let mut valid_auth = vec![0x41];
    s(&mut valid_auth, b"localhost");
    // The valid authority is inserted (incremental indexing), so later blocks
    // reference it (index 66 after the 4 other insertions).
    let valid = connection(n, &valid_auth, &[0x80 | 66]);
    let empty = connection(n, &[0x81], &[0x81]);
    let mut buf = vec![0u8; 64 * 1024];
    rt.block_on(async {
        for round in 0..3 {
            let t = Instant::now();
            let (a, _) = drain(&valid[..], &mut buf).await;
            let plain = t.elapsed();
            let t = Instant::now();
            let (b, r) = drain(AuthorityRepair::new(&valid[..]), &mut buf).await;
            let pass = t.elapsed();
            assert_eq!(r.mode(), RepairMode::PassThrough);
            let t = Instant::now();
            let (c, r) = drain(AuthorityRepair::new(&empty[..]), &mut buf).await;
            let repair = t.elapsed();
            assert_eq!(r.mode(), RepairMode::Repairing);
            assert_eq!(a, b);
            let per = |d: std::time::Duration| d.as_nanos() as f64 / f64::from(n);
            println!(
                "round {round}: {n} requests, {a} bytes in ({c} repaired bytes out): \
                 plain {:.1} ns/req, pass-through {:.1} ns/req, repair {:.1} ns/req",
                per(plain),
                per(pass),
                per(repair)
            );
        }
        // Per-connection cost: wrap + detect on a one-request connection.
        let one = connection(1, &valid_auth, &[]);
        let conns = 100_000;
        let t = Instant::now();
        for _ in 0..conns {
            let _ = drain(AuthorityRepair::new(&one[..]), &mut buf).await;
        }
        let with = t.elapsed();
        let t = Instant::now();
        for _ in 0..conns {
            let _ = drain(&one[..], &mut buf).await;
        }
        let without = t.elapsed();
        println!(
            "per connection (detect + switch to pass-through): {:.0} ns with adapter vs {:.0} ns plain",
            with.as_nanos() as f64 / f64::from(conns),
            without.as_nanos() as f64 / f64::from(conns)
        );
    });
}
