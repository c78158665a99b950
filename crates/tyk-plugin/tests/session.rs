//! Session builder and view against the gateway's wire fixtures.

use std::time::{Duration, UNIX_EPOCH};

use prost::Message;
use tyk_plugin::coprocess::{Object, SessionState};
use tyk_plugin::session::{Session, SessionError, SessionView};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tyk-coprocess/tests/fixtures/wire/"
);

fn fixture_object(name: &str) -> Object {
    let bytes = std::fs::read(format!("{FIXTURES}{name}.bin")).expect("fixture");
    Object::decode(bytes.as_slice()).expect("valid Object")
}

#[test]
fn view_of_post_key_auth_session() {
    let object = fixture_object("post_key_auth_session");
    let state = object
        .session
        .as_ref()
        .expect("PostKeyAuth carries a session");
    let v = SessionView::new(state);
    assert!(v.token().unwrap().starts_with("eyJvcmci"));
    assert_eq!(
        v.expires(),
        Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    );
    let q = v.quota().unwrap();
    assert_eq!((q.max, q.remaining), (10_000, 9987));
    assert_eq!(
        q.renews_at,
        Some(UNIX_EPOCH + Duration::from_secs(1_708_777_216))
    );
    assert_eq!(q.period, Some(Duration::from_secs(3600)));
    let r = v.rate().unwrap();
    assert_eq!((r.requests, r.per), (1000.0, Duration::from_secs(60)));
    assert!(v.has_access("ce6528c0af7b43206b9cf736a5e5d1b4"));
    assert!(!v.has_access("other"));
    assert_eq!(
        v.policies().collect::<Vec<_>>(),
        ["65d9c9e0a1dcd60001d0ed2a"]
    );
    assert_eq!(
        v.last_updated(),
        Some(UNIX_EPOCH + Duration::from_secs(1_708_774_416))
    );
    assert_eq!(v.alias(), Some("dev@example.com"));
    assert_eq!(
        v.key_id(),
        Some("5e9d9544a1dcd60001d0ed2008639a6e9f2945ab88d6e8075781323f")
    );
    // Non-string metadata arrives JSON-encoded.
    let scopes: Vec<String> = v.meta_as("scopes").unwrap().unwrap();
    assert_eq!(scopes, ["read", "write"]);
    assert_eq!(
        v.meta_as::<String>("user_email").unwrap().unwrap(),
        "dev@example.com"
    );
    assert!(!v.is_empty());
    // A session from the gateway is acceptable as a grant as-is.
    let session = Session::from_state(state.clone()).unwrap();
    assert_eq!(Some(session.token()), v.token());
}

#[test]
fn response_hook_session_on_keyless_api_is_empty() {
    let object = fixture_object("response_multivalue");
    let state = object.session.unwrap_or_default();
    let v = SessionView::new(&state);
    assert!(v.is_empty(), "{state:?}");
    assert_eq!(v.token(), None);
    assert_eq!(
        Session::from_state(state).unwrap_err(),
        SessionError::EmptyToken
    );
}

#[test]
fn granted_session_survives_the_wire() {
    let mut object = fixture_object("custom_key_check_auth");
    assert!(object.session.is_none());
    Session::builder("user-42")
        .rate(100, Duration::from_secs(60))
        .access("api1", "Shop", ["Default"])
        .meta("plan", "gold")
        .cache_for(Duration::from_secs(300))
        .build_at(UNIX_EPOCH + Duration::from_secs(1_000))
        .unwrap()
        .grant(&mut object);
    let reply = Object::decode(object.encode_to_vec().as_slice()).unwrap();
    assert_eq!(reply.metadata["token"], "user-42");
    let state: SessionState = reply.session.unwrap();
    assert_eq!(state.metadata["token"], "user-42");
    assert_eq!(state.id_extractor_deadline, 1_300);
    assert_eq!(state.access_rights["api1"].api_name, "Shop");
    assert!(reply.request.is_some(), "the request is kept");
}
