//! End to end over real TCP sockets against a stock tonic server
//! (`tonic-health`), with the raw HTTP/2 test client.

use std::net::SocketAddr;
use std::time::Duration;

use h2_authority::testing::{
    AuthorityEncoding, CallError, PROTOCOL_ERROR, RawH2Client, UnaryResponse,
};
use h2_authority::{AuthorityRepair, RepairStats};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

const CHECK: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse { status: SERVING }`.
const SERVING: &[u8] = &[0x08, 0x01];

/// Starts a tonic server with the health service; `stats` set = with the adapter.
async fn server(stats: Option<RepairStats>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let router = tonic::transport::Server::builder().add_service(health);
    let incoming = TcpListenerStream::new(listener);
    tokio::spawn(async move {
        match stats {
            Some(stats) => {
                let incoming = incoming
                    .map(move |conn| conn.map(|s| AuthorityRepair::with_stats(s, stats.clone())));
                router.serve_with_incoming(incoming).await.unwrap();
            }
            None => router.serve_with_incoming(incoming).await.unwrap(),
        }
    });
    addr
}

async fn client(addr: SocketAddr) -> RawH2Client<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    RawH2Client::handshake(tcp).await.unwrap()
}

async fn call(
    c: &mut RawH2Client<TcpStream>,
    path: &str,
    authority: &AuthorityEncoding,
) -> Result<UnaryResponse, CallError> {
    tokio::time::timeout(Duration::from_secs(10), c.unary(path, authority, &[]))
        .await
        .expect("call timed out")
}

fn assert_serving(r: &UnaryResponse, what: &str) {
    assert_eq!(r.http_status, Some(200), "{what}: {r:?}");
    assert_eq!(r.grpc_status, Some(0), "{what}: {r:?}");
    assert_eq!(r.message.as_deref(), Some(SERVING), "{what}: {r:?}");
}

fn bad_authorities() -> Vec<(&'static str, AuthorityEncoding)> {
    vec![
        (
            "empty (0x81, grpc-go Dial(\"\"))",
            AuthorityEncoding::EmptyIndexed,
        ),
        (
            "socket path literal",
            AuthorityEncoding::Literal("/tmp/tyk-plugin.sock".into()),
        ),
        (
            "socket path, incremental indexing then dynamic reference",
            AuthorityEncoding::Incremental("/var/run/plugin.sock".into()),
        ),
        ("empty literal", AuthorityEncoding::Literal(String::new())),
    ]
}

/// The bug: stock h2 resets these streams with PROTOCOL_ERROR.
#[tokio::test]
async fn without_adapter_invalid_authority_is_reset_with_protocol_error() {
    let addr = server(None).await;
    for (what, enc) in bad_authorities() {
        let mut c = client(addr).await;
        let err = call(&mut c, CHECK, &enc).await.expect_err(&format!(
            "{what}: h2 accepted it; is the bug fixed upstream?"
        ));
        assert!(
            matches!(err, CallError::Reset(PROTOCOL_ERROR)),
            "{what}: {err:?}"
        );
    }
}

/// Valid and absent authorities, three calls on each connection: all served.
async fn serves_good_authorities(addr: SocketAddr) {
    for enc in [
        AuthorityEncoding::Literal("localhost".into()),
        AuthorityEncoding::Incremental("localhost:50051".into()),
        AuthorityEncoding::Absent,
    ] {
        let mut c = client(addr).await;
        for i in 0..3 {
            assert_serving(
                &call(&mut c, CHECK, &enc).await.unwrap(),
                &format!("{enc:?} #{i}"),
            );
        }
    }
}

#[tokio::test]
async fn without_adapter_valid_or_absent_authority_works() {
    let addr = server(None).await;
    serves_good_authorities(addr).await;
}

#[tokio::test]
async fn with_adapter_invalid_authorities_are_repaired() {
    let stats = RepairStats::new();
    let addr = server(Some(stats.clone())).await;
    let bad = bad_authorities();
    for (what, enc) in &bad {
        let mut c = client(addr).await;
        for i in 0..3 {
            let r = call(&mut c, CHECK, enc).await;
            assert_serving(&r.unwrap_or_else(|e| panic!("{what} #{i}: {e}")), what);
        }
        // Routing still works by path: an unknown method is UNIMPLEMENTED.
        let r = call(&mut c, "/grpc.health.v1.Health/Nope", enc)
            .await
            .unwrap();
        assert_eq!(r.grpc_status, Some(12), "{what}: {r:?}");
    }
    assert_eq!(stats.connections_repaired(), bad.len() as u64);
    assert_eq!(stats.header_blocks_rewritten(), 4 * bad.len() as u64);
    assert_eq!(stats.fallbacks(), 0);
}

#[tokio::test]
async fn with_adapter_valid_or_absent_authority_passes_through() {
    let stats = RepairStats::new();
    let addr = server(Some(stats.clone())).await;
    serves_good_authorities(addr).await;
    assert_eq!(stats.connections_repaired(), 0);
    assert_eq!(stats.header_blocks_rewritten(), 0);
}
