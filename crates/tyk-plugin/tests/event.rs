//! Event decoding against the wire fixtures (protobuf `coprocess.Event`).

use std::time::{Duration, UNIX_EPOCH};

use prost::Message;
use serde_json::json;
use tyk_plugin::coprocess::Event;
use tyk_plugin::event::{EventError, EventKind, EventMeta, GatewayEvent};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tyk-coprocess/tests/fixtures/wire/"
);

fn fixture(name: &str) -> GatewayEvent {
    let bytes = std::fs::read(format!("{FIXTURES}{name}.bin")).expect("fixture");
    let event = Event::decode(bytes.as_slice()).expect("valid Event");
    GatewayEvent::from_event(&event).expect("decodes")
}

#[test]
fn auth_failure_fixture() {
    let e = fixture("event_auth_failure");
    assert_eq!(e.kind, EventKind::AuthFailure);
    assert_eq!(e.handler_name, "MyEventHandler");
    assert_eq!(e.api_id, "ce6528c0af7b43206b9cf736a5e5d1b4");
    assert_eq!(e.org_id, "5e9d9544a1dcd60001d0ed20");
    assert_eq!(
        e.timestamp,
        "2024-02-24 11:33:36.482199372 +0000 UTC m=+52.104517001"
    );
    assert_eq!(
        e.time,
        Some(UNIX_EPOCH + Duration::new(1_708_774_416, 482_199_372))
    );
    let EventMeta::KeyFailure(m) = &e.meta else {
        panic!("{:?}", e.meta)
    };
    assert_eq!(m.message, "Auth Failure");
    assert_eq!(
        m.path, "/pet/<script>&x",
        "Go's \\u003c escapes are decoded"
    );
    assert_eq!(m.origin, "127.0.0.1");
    assert_eq!(m.key, "bad-key");
    assert_eq!(m.originating_request_bytes().unwrap(), b"");
    assert_eq!(e.meta.key(), Some("bad-key"));
    assert_eq!(e.raw["message"]["Type"], "AuthFailure");
}

#[test]
fn quota_and_rate_limit_fixtures() {
    let q = fixture("event_quota_exceeded");
    assert_eq!(q.kind, EventKind::QuotaExceeded);
    let EventMeta::KeyFailure(m) = &q.meta else {
        panic!("{:?}", q.meta)
    };
    assert_eq!(m.message, "Key Quota Limit Exceeded");
    let req = m.originating_request_bytes().unwrap();
    assert!(req.starts_with(
        b"GET /pet/findByStatus?status=available HTTP/1.1\r\nHost: localhost:8080\r\n"
    ));
    assert!(req.ends_with(b"\r\n\r\n"));

    let r = fixture("event_ratelimit_exceeded");
    assert_eq!(r.kind, EventKind::RateLimitExceeded);
    assert_eq!(r.handler_name, "OnRateLimit");
    assert_eq!(r.meta.message(), Some("Rate Limit Exceeded"));
    assert_eq!(r.meta.path(), Some("/pet/findByStatus"));
}

fn payload(kind: &str, meta: serde_json::Value) -> String {
    json!({"message": {"Type": kind, "Meta": meta, "TimeStamp": "2026-08-21 15:39:47 +0300 EEST"},
           "handler_name": "h", "spec": {"APIID": "6", "OrgID": "default"}})
    .to_string()
}

#[test]
fn every_known_meta_shape() {
    let e = GatewayEvent::parse(&payload(
        "VersionFailure",
        json!({"Message": "m", "OriginatingRequest": "", "Path": "/p", "Origin": "o", "Key": "k", "Reason": "VersionDoesNotExist"}),
    ))
    .unwrap();
    let EventMeta::VersionFailure(m) = e.meta else {
        panic!()
    };
    assert_eq!(
        (m.key.as_str(), m.reason.as_str()),
        ("k", "VersionDoesNotExist")
    );

    for kind in ["BreakerTriggered", "BreakerTripped", "BreakerReset"] {
        let e = GatewayEvent::parse(&payload(
            kind,
            json!({"Message": "", "OriginatingRequest": "", "Path": "/p", "APIID": "6", "CircuitEvent": 1}),
        ))
        .unwrap();
        assert_eq!(e.kind.as_str(), kind);
        let EventMeta::Breaker(m) = e.meta else {
            panic!("{kind}")
        };
        assert_eq!((m.api_id.as_str(), m.circuit_event), ("6", 1));
    }

    let e = GatewayEvent::parse(&payload(
        "HostDown",
        json!({"Message": "", "OriginatingRequest": "", "HostInfo": {"CheckURL": "http://up/", "Method": "GET",
               "Headers": null, "Body": "", "MetaData": null, "ResponseCode": 0, "Latency": 1.5, "IsTCPError": true}}),
    ))
    .unwrap();
    assert_eq!(e.kind, EventKind::HostDown);
    let EventMeta::Host(m) = e.meta else { panic!() };
    assert_eq!(m.host_info.check_url, "http://up/");
    assert!(m.host_info.is_tcp_error);
    assert_eq!(m.host_info.latency, 1.5);
    assert!(m.host_info.metadata.is_empty());

    let e = GatewayEvent::parse(&payload(
        "TriggerExceeded",
        json!({"Message": "", "OriginatingRequest": "", "org_id": "o", "key": "k", "trigger_limit": 80, "usage_percentage": 85}),
    ))
    .unwrap();
    let EventMeta::Trigger(m) = e.meta else {
        panic!()
    };
    assert_eq!(
        (
            m.org_id.as_str(),
            m.key.as_str(),
            m.trigger_limit,
            m.usage_percentage
        ),
        ("o", "k", 80, 85)
    );
    // Older gateways: PascalCase.
    let e = GatewayEvent::parse(&payload(
        "TriggerExceeded",
        json!({"Org": "o", "Key": "k", "TriggerLimit": 90}),
    ))
    .unwrap();
    let EventMeta::Trigger(m) = e.meta else {
        panic!()
    };
    assert_eq!((m.org_id.as_str(), m.trigger_limit), ("o", 90));
}

#[test]
fn unknown_types_and_odd_meta_are_kept() {
    let e = GatewayEvent::parse(&payload("TokenCreated", json!({"Org": "o"}))).unwrap();
    assert_eq!(e.kind, EventKind::Other("TokenCreated".into()));
    assert_eq!(e.meta, EventMeta::Other(json!({"Org": "o"})));
    // A known type with an unexpected field type falls back to raw JSON.
    let e = GatewayEvent::parse(&payload(
        "BreakerTripped",
        json!({"CircuitEvent": "tripped"}),
    ))
    .unwrap();
    assert_eq!(e.kind, EventKind::BreakerTripped);
    assert_eq!(e.meta, EventMeta::Other(json!({"CircuitEvent": "tripped"})));
    // Missing Meta, spec, handler_name, TimeStamp.
    let e = GatewayEvent::parse(r#"{"message":{"Type":"AuthFailure"}}"#).unwrap();
    assert_eq!(e.meta, EventMeta::Other(serde_json::Value::Null));
    assert_eq!(
        (e.api_id.as_str(), e.handler_name.as_str(), e.time),
        ("", "", None)
    );
    // Null fields (Go nil) become defaults.
    let e =
        GatewayEvent::parse(&payload("AuthFailure", json!({"Key": null, "Path": "/x"}))).unwrap();
    assert_eq!(e.meta.key(), Some(""));
}

#[test]
fn malformed_payloads_are_errors() {
    let err = GatewayEvent::parse("{not json").unwrap_err();
    assert!(matches!(err, EventError::NotJson(_)));
    assert!(
        err.to_string().starts_with("event payload is not JSON"),
        "{err}"
    );
    for p in ["{}", "[]", "42", r#"{"message":"AuthFailure"}"#] {
        assert!(
            matches!(GatewayEvent::parse(p), Err(EventError::MissingMessage)),
            "{p}"
        );
    }
    assert!(matches!(
        GatewayEvent::parse(r#"{"message":{"Type":5}}"#),
        Err(EventError::MissingType)
    ));
    let err = tyk_plugin::event::decode_originating_request("not base64!").unwrap_err();
    assert!(err.to_string().contains("OriginatingRequest"), "{err}");
}
