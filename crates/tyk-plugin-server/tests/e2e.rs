//! End-to-end tests over real sockets: the fixtures, unknown fields,
//! malformed input, large messages, health, reflection, events, shutdown.

mod support;

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use support::{TestServer, fixtures};
use tokio_stream::StreamExt;
use tonic::Code;
use tyk_coprocess::{HookType, MiniRequestObject, Object, ReturnOverrides};
use tyk_plugin::{BoxFuture, Dispatcher};
use tyk_plugin_server::client::{self, ClientError};
use tyk_plugin_server::config::LogFormat;

#[tokio::test]
async fn every_fixture_is_echoed_and_logged_as_canonical_json_over_tcp_and_unix() {
    let srv = TestServer::start(LogFormat::Json).await;
    let fx = fixtures(false);
    let mut sent = 0;
    for target in [&srv.tcp, &srv.unix] {
        let ch = client::connect(target).await.unwrap();
        for (name, wire, _) in &fx {
            let reply = client::dispatch_raw(ch.clone(), Bytes::from(wire.clone()))
                .await
                .unwrap();
            assert_eq!(&reply[..], &wire[..], "{name} over {target}: echo differs");
            sent += 1;
        }
    }
    let records = srv.json_records(sent, "dispatch").await;
    assert_eq!(records.len(), sent);
    for (i, rec) in records.iter().enumerate() {
        let (name, wire, expected) = &fx[i % fx.len()];
        assert_eq!(
            &rec["object"], expected,
            "{name}: logged JSON differs from MessageToJson"
        );
        let obj = Object::decode(&wire[..]).unwrap();
        let hook = HookType::try_from(obj.hook_type)
            .map(|h| h.as_str_name().to_string())
            .unwrap();
        assert_eq!(rec["hook_type"], hook.as_str(), "{name}");
        assert_eq!(rec["hook_name"], obj.hook_name.as_str(), "{name}");
        assert_eq!(
            rec["api_id"],
            obj.spec.get("APIID").map_or("", String::as_str),
            "{name}"
        );
        assert_eq!(rec["level"], "INFO");
    }
    srv.stop().await;
}

#[tokio::test]
async fn text_format_logs_indented_json_between_request_start_and_end() {
    let srv = TestServer::start(LogFormat::Text).await;
    let fx = fixtures(false);
    let ch = client::connect(&srv.tcp).await.unwrap();
    for (_, wire, _) in &fx {
        client::dispatch_raw(ch.clone(), Bytes::from(wire.clone()))
            .await
            .unwrap();
    }
    let log = srv.log_after(fx.len() as u64 + 2).await;
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in log.split('\n') {
        if line.contains("REQUEST START") {
            assert!(
                line.contains("INFO") && line.contains("hook_type="),
                "{line}"
            );
            cur = Some(String::new());
        } else if line.contains("REQUEST END") {
            blocks.push(cur.take().expect("END after START"));
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
    }
    assert_eq!(blocks.len(), fx.len());
    for ((name, _, expected), block) in fx.iter().zip(&blocks) {
        assert!(
            block.starts_with("{\n  ") || block == "{}\n",
            "{name}: not indented JSON: {block:.40}"
        );
        let v: serde_json::Value = serde_json::from_str(block).unwrap();
        assert_eq!(&v, expected, "{name}");
    }
    srv.stop().await;
}

/// Appends an unknown field to an encoded message: (field number, varint value).
fn with_unknown(mut msg: Vec<u8>, field: u32, value: u8) -> Vec<u8> {
    prost::encoding::encode_key(field, prost::encoding::WireType::Varint, &mut msg);
    msg.push(value);
    msg
}

#[tokio::test]
async fn unknown_fields_survive_the_echo_byte_for_byte() {
    let srv = TestServer::start(LogFormat::Json).await;
    // Unknown fields at the top level, inside request and inside session, as a
    // newer gateway's protos would add them.
    let request = with_unknown(
        MiniRequestObject {
            url: "/x".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        40,
        7,
    );
    let session = with_unknown(
        tyk_coprocess::SessionState {
            rate: 5.0,
            ..Default::default()
        }
        .encode_to_vec(),
        35,
        1,
    );
    let mut wire = Object {
        hook_type: 1,
        hook_name: "u".into(),
        ..Default::default()
    }
    .encode_to_vec();
    prost::encoding::bytes::encode(3, &request, &mut wire);
    prost::encoding::bytes::encode(4, &session, &mut wire);
    let wire = with_unknown(wire, 99, 42);
    // prost (like any decoder built from our protos) drops them.
    assert!(Object::decode(&wire[..]).unwrap().encode_to_vec().len() < wire.len());

    for target in [&srv.tcp, &srv.unix] {
        let ch = client::connect(target).await.unwrap();
        let reply = client::dispatch_raw(ch, Bytes::from(wire.clone()))
            .await
            .unwrap();
        assert_eq!(&reply[..], &wire[..]);
    }
    let recs = srv.json_records(2, "dispatch").await;
    // The log shows the known fields only, as MessageToJson does.
    assert_eq!(recs[0]["object"]["request"]["url"], "/x");
    assert_eq!(
        recs[0]["object"]["session"],
        serde_json::json!({"rate": 5.0})
    );
    srv.stop().await;
}

#[tokio::test]
async fn malformed_objects_get_invalid_argument_and_the_server_goes_on() {
    let srv = TestServer::start(LogFormat::Json).await;
    let ch = client::connect(&srv.tcp).await.unwrap();
    let good = Object {
        hook_name: "ok".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated length", vec![0x12, 0x05, b'a']),
        ("invalid utf-8 in hook_name", vec![0x12, 0x02, 0xff, 0xfe]),
        ("field number zero", vec![0x00, 0x01]),
        ("wire type 7", vec![0x0f]),
        ("truncated varint", vec![0x08, 0xff]),
    ];
    for (what, bad) in cases {
        let err = client::dispatch_raw(ch.clone(), Bytes::from(bad))
            .await
            .unwrap_err();
        match err {
            ClientError::Status(s) => {
                assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
                assert!(
                    s.message().contains("malformed coprocess.Object"),
                    "{what}: {}",
                    s.message()
                );
            }
            other => panic!("{what}: {other}"),
        }
        let reply = client::dispatch_raw(ch.clone(), Bytes::from(good.clone()))
            .await
            .unwrap();
        assert_eq!(&reply[..], &good[..], "serves after {what}");
    }
    srv.json_records(5, "rejected malformed Object").await;
    let log = srv.log_after(12).await;
    assert_eq!(log.matches("rejected malformed Object").count(), 5, "{log}");
    srv.stop().await;
}

/// A Post-hook Object carrying `body` in both `body` and `raw_body`, as the
/// gateway sends a text body.
fn post_with_body(hook_name: &str, body: String) -> Object {
    Object {
        hook_type: HookType::Post as i32,
        hook_name: hook_name.into(),
        request: Some(MiniRequestObject {
            body: body.clone(),
            raw_body: Bytes::from(body),
            url: format!("/{hook_name}"),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: [("APIID".to_string(), format!("api-{hook_name}"))].into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_20_mb_body_sent_twice_is_echoed() {
    let srv = TestServer::start(LogFormat::Json).await;
    let obj = post_with_body("big", "a".repeat(20_000_000));
    let wire = Bytes::from(obj.encode_to_vec());
    assert!(wire.len() > 40_000_000);
    let ch = client::connect(&srv.tcp).await.unwrap();
    let reply = client::dispatch_raw(ch, wire.clone()).await.unwrap();
    assert!(reply == wire, "20 MB echo differs");
    let recs = srv.json_records(1, "dispatch").await;
    assert_eq!(
        recs[0]["object"]["request"]["body"].as_str().map(str::len),
        Some(20_000_000)
    );
    srv.stop().await;
}

/// Objects above `RENDER_ON_WRITER_AT` are printed by the log writer thread,
/// streaming; their records must be the same as everyone else's, in order.
#[tokio::test]
async fn large_objects_are_logged_in_order_and_in_full_in_both_formats() {
    let body = "h\u{e9}llo \"w\u{f6}rld\" \u{1f600}\n\\".repeat(30_000);
    let large = post_with_body("large", body).encode_to_vec();
    assert!(large.len() > tyk_plugin_server::reqlog::RENDER_ON_WRITER_AT);
    let small = |name: &str| {
        Object {
            hook_type: HookType::Pre as i32,
            hook_name: name.into(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let sent = [small("before"), large.clone(), small("after")];
    let expected: Vec<serde_json::Value> = sent
        .iter()
        .map(|w| {
            let mut out = Vec::new();
            tyk_coprocess::json::object_to_json(
                w,
                tyk_coprocess::json::JsonStyle::Compact,
                &mut out,
            )
            .unwrap();
            serde_json::from_slice(&out).unwrap()
        })
        .collect();
    for format in [LogFormat::Json, LogFormat::Text] {
        let srv = TestServer::start(format).await;
        let ch = client::connect(&srv.tcp).await.unwrap();
        for wire in &sent {
            let reply = client::dispatch_raw(ch.clone(), Bytes::from(wire.clone()))
                .await
                .unwrap();
            assert!(reply[..] == wire[..], "echo");
        }
        let logged: Vec<serde_json::Value> = match format {
            LogFormat::Json => {
                let recs = srv.json_records(3, "dispatch").await;
                assert_eq!(recs[1]["hook_name"], "large");
                assert_eq!(recs[1]["api_id"], "api-large");
                assert_eq!(recs[1]["hook_type"], "Post");
                recs.iter().map(|r| r["object"].clone()).collect()
            }
            LogFormat::Text => {
                let log = srv.log_after(3 + 2).await;
                let mut blocks = Vec::new();
                let mut cur: Option<String> = None;
                for line in log.split('\n') {
                    if line.contains("REQUEST START") {
                        cur = Some(String::new());
                    } else if line.contains("REQUEST END") {
                        blocks.push(serde_json::from_str(&cur.take().unwrap()).unwrap());
                    } else if let Some(c) = cur.as_mut() {
                        c.push_str(line);
                        c.push('\n');
                    }
                }
                assert!(log.contains("REQUEST START hook_type=Post hook_name=\"large\""));
                blocks
            }
        };
        assert_eq!(logged, expected, "{format:?}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn messages_over_the_configured_limit_are_refused_cleanly() {
    let srv = TestServer::start_with(LogFormat::Json, tyk_plugin::Echo, |c| {
        c.server.max_recv_message_size = tyk_plugin_server::config::ByteSize(1024);
    })
    .await;
    let ch = client::connect(&srv.tcp).await.unwrap();
    let big = Object {
        hook_name: "x".repeat(2000),
        ..Default::default()
    }
    .encode_to_vec();
    match client::dispatch_raw(ch.clone(), Bytes::from(big))
        .await
        .unwrap_err()
    {
        ClientError::Status(s) => assert_eq!(s.code(), Code::OutOfRange, "{s:?}"),
        other => panic!("{other}"),
    }
    let small = Object {
        hook_name: "x".into(),
        ..Default::default()
    }
    .encode_to_vec();
    client::dispatch_raw(ch, Bytes::from(small)).await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_dispatcher() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let srv = TestServer::start(LogFormat::Json).await;
    for target in [&srv.tcp, &srv.unix] {
        let mut h = HealthClient::new(client::connect(target).await.unwrap());
        for service in ["", "coprocess.Dispatcher"] {
            let r = h
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                r.status(),
                ServingStatus::Serving,
                "{service:?} over {target}"
            );
        }
        let unknown = h
            .check(HealthCheckRequest {
                service: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
    }
    srv.stop().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_and_resolve_the_dispatcher() {
    let srv = TestServer::start(LogFormat::Json).await;
    let ch = client::connect(&srv.tcp).await.unwrap();

    // v1
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut c = ServerReflectionClient::new(ch.clone());
        let reqs = vec![
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("coprocess.Dispatcher".into()),
            MessageRequest::FileByFilename("coprocess_session_state.proto".into()),
        ];
        let stream = tokio_stream::iter(reqs.into_iter().map(|m| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        }));
        let mut resp = c.server_reflection_info(stream).await.unwrap().into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            resp.next().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list")
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for want in [
            "coprocess.Dispatcher",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let Some(MessageResponse::FileDescriptorResponse(fd)) =
            resp.next().await.unwrap().unwrap().message_response
        else {
            panic!("not a file descriptor")
        };
        let file =
            prost_types::FileDescriptorProto::decode(&fd.file_descriptor_proto[0][..]).unwrap();
        assert_eq!(file.name(), "coprocess_object.proto");
        let svc = &file.service[0];
        let methods: Vec<_> = svc
            .method
            .iter()
            .map(|m| (m.name(), m.input_type(), m.output_type()))
            .collect();
        assert_eq!(
            methods,
            [
                ("Dispatch", ".coprocess.Object", ".coprocess.Object"),
                ("DispatchEvent", ".coprocess.Event", ".coprocess.EventReply")
            ]
        );
        let Some(MessageResponse::FileDescriptorResponse(fd)) =
            resp.next().await.unwrap().unwrap().message_response
        else {
            panic!("not a file descriptor")
        };
        let file =
            prost_types::FileDescriptorProto::decode(&fd.file_descriptor_proto[0][..]).unwrap();
        let session = file
            .message_type
            .iter()
            .find(|m| m.name() == "SessionState")
            .unwrap();
        assert_eq!(session.field.iter().map(|f| f.number()).max(), Some(34));
    }
    // v1alpha (what Python grpcio-reflection and older grpcurl use)
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut c = ServerReflectionClient::new(ch);
        let stream = tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]);
        let mut resp = c.server_reflection_info(stream).await.unwrap().into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            resp.next().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list")
        };
        assert!(
            list.service
                .iter()
                .any(|s| s.name == "coprocess.Dispatcher")
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn events_are_answered_and_their_payload_logged_as_json() {
    let srv = TestServer::start(LogFormat::Json).await;
    let ch = client::connect(&srv.unix).await.unwrap();
    let events = fixtures(true);
    for (_, wire, _) in &events {
        let ev = tyk_coprocess::Event::decode(&wire[..]).unwrap();
        client::dispatch_event(ch.clone(), ev.payload)
            .await
            .unwrap();
    }
    client::dispatch_event(ch.clone(), "not { json".into())
        .await
        .unwrap();
    let recs = srv.json_records(events.len() + 1, "event").await;
    assert_eq!(recs.len(), events.len() + 1);
    for ((name, _, expected), rec) in events.iter().zip(&recs) {
        let payload: serde_json::Value =
            serde_json::from_str(expected["payload"].as_str().unwrap()).unwrap();
        assert_eq!(rec["payload"], payload, "{name}");
        assert_eq!(rec["event_type"], payload["message"]["Type"], "{name}");
        assert_eq!(rec["handler_name"], payload["handler_name"], "{name}");
        assert_eq!(rec["payload_is_json"], true);
    }
    let last = recs.last().unwrap();
    assert_eq!(last["payload"], "not { json");
    assert_eq!(last["payload_is_json"], false);
    assert_eq!(last["level"], "WARN");
    srv.stop().await;
}

/// A handler that takes its time, to observe the drain.
struct Slow(Duration);
impl Dispatcher for Slow {
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, tonic::Status>> {
        let d = self.0;
        Box::pin(async move {
            tokio::time::sleep(d).await;
            Ok(object)
        })
    }
}

#[tokio::test]
async fn shutdown_finishes_in_flight_calls_and_reports_not_serving() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    // A short grace period: the health watch stream below is itself in
    // flight and holds the drain open until the grace period ends.
    let mut srv = TestServer::start_with(LogFormat::Json, Slow(Duration::from_millis(600)), |c| {
        c.server.shutdown_grace_period = Duration::from_secs(2);
    })
    .await;
    let ch = client::connect(&srv.tcp).await.unwrap();
    let mut health = HealthClient::new(ch.clone());
    // Watch opened before the shutdown: it sees the status change, which
    // new calls cannot (the draining server refuses new streams).
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "coprocess.Dispatcher".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let wire = Bytes::from(
        Object {
            hook_name: "slow".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let in_flight = tokio::spawn(client::dispatch_raw(ch.clone(), wire.clone()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    srv.trigger_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a status update during the drain")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    let reply = in_flight
        .await
        .unwrap()
        .expect("in-flight call completes during the drain");
    assert_eq!(reply, wire);
    // New connections are refused once the listeners are closed.
    let tcp = srv.tcp.clone();
    srv.stop().await;
    assert!(client::connect(&tcp).await.is_err());
}

/// Gateways older than 5.8.3 (grpc-go `Dial("")`) send `:authority: ""` as
/// the static-table entry 0x81 on every call; grpc-core over a Unix socket
/// sends the socket path, incrementally indexed. Stock h2 resets both.
#[tokio::test]
async fn clients_with_an_empty_or_invalid_authority_are_served() {
    use h2_authority::testing::{AuthorityEncoding, RawH2Client};
    let srv = TestServer::start(LogFormat::Json).await;
    let wire = std::fs::read(support::fixtures_dir().join("pre_petstore.bin")).unwrap();
    let encodings = [
        AuthorityEncoding::EmptyIndexed,
        AuthorityEncoding::Incremental("/tmp/plugin.sock".into()),
        AuthorityEncoding::Literal(String::new()),
        AuthorityEncoding::Literal("localhost".into()),
        AuthorityEncoding::Absent,
    ];
    let mut calls = 0usize;
    for enc in &encodings {
        for unix in [false, true] {
            let mut c = if unix {
                let path = srv.unix.strip_prefix("unix://").unwrap();
                let s = tokio::net::UnixStream::connect(path).await.unwrap();
                RawH2Client::handshake(Box::new(s) as Box<dyn Io>)
                    .await
                    .unwrap()
            } else {
                let s = tokio::net::TcpStream::connect(&srv.tcp).await.unwrap();
                RawH2Client::handshake(Box::new(s) as Box<dyn Io>)
                    .await
                    .unwrap()
            };
            // Several calls on one connection: the dynamic table must stay in step.
            for i in 0..3 {
                let r = c
                    .unary("/coprocess.Dispatcher/Dispatch", enc, &wire)
                    .await
                    .unwrap_or_else(|e| panic!("{enc:?} unix={unix} call {i}: {e:?}"));
                assert_eq!(r.http_status, Some(200), "{enc:?}");
                assert_eq!(r.grpc_status, Some(0), "{enc:?}: {:?}", r.grpc_message);
                assert_eq!(r.message.as_deref(), Some(&wire[..]), "{enc:?}: echo");
                calls += 1;
            }
        }
    }
    let recs = srv.json_records(calls, "dispatch").await;
    assert_eq!(recs.len(), calls);
    let log = srv.log_after(calls as u64 + 3).await;
    // The warning is once per process; no other test in this binary sends a
    // bad authority, so it lands in this test's log.
    assert!(
        log.contains("grpc_authority"),
        "one actionable warning names the Tyk setting"
    );
    srv.stop().await;
}

/// The server reads gRPC framing itself (not through tonic's codec), so
/// every framing fault gets a clear status and the connection goes on.
#[tokio::test]
async fn broken_grpc_framing_gets_a_clear_status_and_the_connection_goes_on() {
    use h2_authority::testing::{AuthorityEncoding, RawH2Client};
    let srv = TestServer::start(LogFormat::Json).await;
    let wire = std::fs::read(support::fixtures_dir().join("pre_petstore.bin")).unwrap();
    let framed = |flag: u8, msg: &[u8]| {
        let mut v = vec![flag];
        v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        v.extend_from_slice(msg);
        v
    };
    let ok = framed(0, &wire);
    let s = tokio::net::TcpStream::connect(&srv.tcp).await.unwrap();
    let mut c = RawH2Client::handshake(Box::new(s) as Box<dyn Io>)
        .await
        .unwrap();
    let path = "/coprocess.Dispatcher/Dispatch";
    let block = c.request_block(path, &AuthorityEncoding::Literal("localhost".into()));
    let two = [ok.clone(), ok.clone()].concat();
    let (head, tail) = ok.split_at(3);
    let cases: Vec<(&str, Vec<&[u8]>, Code, &str)> = vec![
        ("no message", vec![], Code::Internal, "no message"),
        ("cut prefix", vec![head], Code::Internal, "prefix"),
        (
            "cut message",
            vec![&ok[..ok.len() - 1]],
            Code::Internal,
            "inside a message",
        ),
        (
            "compressed flag",
            vec![&[1, 0, 0, 0, 1, 0]],
            Code::Internal,
            "compressed flag",
        ),
        (
            "two messages",
            vec![&two],
            Code::InvalidArgument,
            "exactly one message",
        ),
    ];
    for (what, frames, code, says) in cases {
        let r = c.unary_body(&block, &frames).await.unwrap();
        assert_eq!(r.grpc_status, Some(code as i32), "{what}: {r:?}");
        let msg = r.grpc_message.unwrap_or_default();
        assert!(
            msg.contains(&says.replace(' ', "%20")) || msg.contains(says),
            "{what}: {msg}"
        );
        // The same connection still serves a good call, also split oddly.
        let r = c.unary_body(&block, &[head, tail]).await.unwrap();
        assert_eq!(r.grpc_status, Some(0), "after {what}");
        assert_eq!(r.message.as_deref(), Some(&wire[..]));
    }
    // A compressed call is refused up front, naming what it sent.
    let mut gz = block.clone();
    gz.extend_from_slice(&hpack_literal("grpc-encoding", "gzip"));
    let r = c.unary_body(&gz, &[&ok]).await.unwrap();
    assert_eq!(r.grpc_status, Some(Code::Unimplemented as i32), "{r:?}");
    drop(c); // the drain waits for open connections
    srv.stop().await;
}

/// An HPACK literal header field without indexing, new name (short strings,
/// no Huffman).
fn hpack_literal(name: &str, value: &str) -> Vec<u8> {
    let mut v = vec![0x00, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v.push(value.len() as u8);
    v.extend_from_slice(value.as_bytes());
    v
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

#[tokio::test]
async fn an_sdk_router_is_served_over_the_socket() {
    use tyk_plugin::{Request, Router};
    let router = Router::new().pre("MyPrePluginMiddleware", |mut req: Request| async move {
        req.set_header("X-Served-By", "router");
        req
    });
    let srv = TestServer::start_with(LogFormat::Json, router, |_| {}).await;
    let wire = std::fs::read(support::fixtures_dir().join("pre_petstore.bin")).unwrap();
    let ch = client::connect(&srv.unix).await.unwrap();
    let reply = client::dispatch_raw(ch.clone(), Bytes::from(wire.clone()))
        .await
        .unwrap();
    let obj = Object::decode(&reply[..]).unwrap();
    let req = obj.request.unwrap();
    assert_eq!(req.set_headers["X-Served-By"], "router");
    assert_eq!(req.url, "/pet/findByStatus?status=available");
    // A hook the router does not know is echoed byte for byte.
    let other = std::fs::read(support::fixtures_dir().join("post_json_body.bin")).unwrap();
    let reply = client::dispatch_raw(ch, Bytes::from(other.clone()))
        .await
        .unwrap();
    assert_eq!(&reply[..], &other[..]);
    srv.stop().await;
}

/// The emulator plays the gateway against this server over real sockets,
/// with an SDK router inside: request edits reach the upstream, a response
/// hook rewrites the answer, and unrouted hooks pass through.
#[tokio::test]
async fn the_gateway_emulator_drives_the_server_over_tcp_and_unix() {
    use tyk_plugin::testkit::{Api, Gateway};
    use tyk_plugin::{Request, Response, Router};
    let router = Router::new()
        .pre("AddHeader", |mut req: Request| async move {
            req.set_header("X-From-Plugin", "1")
                .set_param("added", "yes");
            req
        })
        .response("Rewrite", |mut res: Response| async move {
            res.set_body("rewritten").set_header("X-Rewritten", "1");
            res
        });
    let srv = TestServer::start_with(LogFormat::Json, router, |_| {}).await;
    for target in [srv.tcp.clone(), srv.unix.clone()] {
        let gw = Gateway::connect(&target).await.unwrap().api(
            Api::keyless("api1")
                .listen_path("/api/")
                .pre("AddHeader")
                .post("Unrouted")
                .response("Rewrite"),
        );
        let res = gw.get("/api/things?x=1").await.unwrap();
        assert_eq!(res.status(), 200, "{target}: {}", res.body_str());
        assert_eq!(res.body_str(), "rewritten");
        assert_eq!(res.header("X-Rewritten"), Some("1"));
        assert_eq!(res.header("Content-Length"), Some("9"));
        let up = res.upstream_request().unwrap();
        assert_eq!(up.headers()["X-From-Plugin"], "1");
        assert_eq!(up.uri().query(), Some("added=yes&x=1"));
        assert_eq!(
            res.exchanges().len(),
            3,
            "pre, post and response hooks were dispatched"
        );
    }
    srv.stop().await;
}
