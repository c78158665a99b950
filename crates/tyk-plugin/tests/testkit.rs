//! The gateway emulator against small hand-written plugins.
#![cfg(feature = "testkit")]

mod common;
use common::send;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prost::Message;
use serde_json::json;
use tonic::Status;
use tyk_plugin::coprocess::{Header, HookType, Object, SessionState};
use tyk_plugin::testkit::{
    Api, Clock, Gateway, GatewayError, Hook, IdExtractor, Key, Policy, TestResponse,
};
use tyk_plugin::{BoxFuture, Dispatcher};

type Handler = dyn Fn(&mut Object) -> Result<(), Status> + Send + Sync;

/// A plugin from a closure: decode, mutate, encode. Counts calls, keeps events.
#[derive(Clone)]
struct Plugin {
    f: Arc<Handler>,
    calls: Arc<AtomicUsize>,
    events: Arc<Mutex<Vec<String>>>,
}

impl Plugin {
    fn new(f: impl Fn(&mut Object) -> Result<(), Status> + Send + Sync + 'static) -> Self {
        Plugin {
            f: Arc::new(f),
            calls: Arc::default(),
            events: Arc::default(),
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Dispatcher for Plugin {
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut o = Object::decode(object).expect("emulator sends valid Objects");
        let r = (self.f)(&mut o).map(|()| Bytes::from(o.encode_to_vec()));
        Box::pin(std::future::ready(r))
    }
    fn dispatch_event(&self, payload: String) -> BoxFuture<Result<(), Status>> {
        self.events.lock().unwrap().push(payload);
        Box::pin(std::future::ready(Ok(())))
    }
}

fn echo() -> Plugin {
    Plugin::new(|_| Ok(()))
}

fn req(method: &str, uri: &str) -> http::request::Builder {
    http::Request::builder().method(method).uri(uri)
}

fn upstream_json(res: &TestResponse) -> serde_json::Value {
    serde_json::from_slice(res.body()).unwrap()
}

fn overrides(o: &mut Object) -> &mut tyk_plugin::coprocess::ReturnOverrides {
    o.request
        .as_mut()
        .unwrap()
        .return_overrides
        .as_mut()
        .unwrap()
}

// ---------------------------------------------------------------- Object building

#[tokio::test]
async fn pre_object_is_built_like_the_gateway() {
    let p = echo();
    let gw = Gateway::new(p.clone()).api(
        Api::keyless("api1")
            .org("org1")
            .listen_path("/shop/")
            .pre("MyPre")
            .config_data(json!({"z": 1, "k": "<v>&", "a": {"y": true, "b": null}})),
    );
    let res = send(
        &gw,
        req("POST", "/shop/items?x=1&x=2&e=a%20b")
            .header("host", "gw.example:8080")
            .header("content-type", "application/json")
            .header("x-multi", "a")
            .header("x-multi", "b"),
        r#"{"a":1}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let o = res.sent_objects()[0].clone();
    assert_eq!(o.hook_type, HookType::Pre as i32);
    assert_eq!(o.hook_name, "MyPre");
    let r = o.request.unwrap();
    assert_eq!(r.headers["Content-Type"], "application/json");
    assert_eq!(r.headers["X-Multi"], "a");
    assert_eq!(r.headers["Host"], "gw.example:8080");
    assert_eq!(r.url, "/shop/items?x=1&x=2&e=a%20b");
    assert_eq!(r.request_uri, "/shop/items?x=1&x=2&e=a%20b");
    assert_eq!(r.params["x"], "1");
    assert_eq!(r.params["e"], "a b");
    assert_eq!(r.method, "POST");
    assert_eq!(r.scheme, "http");
    assert_eq!(r.body, r#"{"a":1}"#);
    assert_eq!(r.raw_body.as_ref(), br#"{"a":1}"#);
    assert_eq!(r.return_overrides.unwrap().response_code, -1);
    assert!(r.set_headers.is_empty() && r.delete_headers.is_empty() && r.add_params.is_empty());
    assert!(o.session.is_none() && o.metadata.is_empty() && o.response.is_none());
    assert_eq!(o.spec["OrgID"], "org1");
    assert_eq!(o.spec["APIID"], "api1");
    assert_eq!(o.spec["bundle_hash"], "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        o.spec["config_data"],
        r#"{"a":{"b":null,"y":true},"k":"\u003cv\u003e\u0026","z":1}"#
    );
    // The upstream saw the stripped path.
    let up = res.upstream_request().unwrap();
    assert_eq!(up.uri(), "/items?x=1&x=2&e=a%20b");
    assert_eq!(upstream_json(&res)["Path"], "/items");
}

#[tokio::test]
async fn spec_bundle_hash_and_config_data_rules() {
    let gw = Gateway::new(echo())
        .api(
            Api::keyless("b")
                .bundle("bundle.zip")
                .pre("P")
                .config_data(json!({})),
        )
        .api(
            Api::keyless("d")
                .pre("P")
                .config_data(json!({"k": "v"}))
                .config_data_disabled(true),
        );
    let res = gw.get("/b/").await.unwrap();
    let spec = &res.sent_objects()[0].spec;
    // md5("bundle.zip")
    assert_eq!(spec["bundle_hash"], md5("bundle.zip"));
    assert_eq!(md5("bundle.zip").len(), 32);
    assert!(
        !spec.contains_key("config_data"),
        "empty config_data is not sent"
    );
    let res = gw.get("/d/").await.unwrap();
    assert!(!res.sent_objects()[0].spec.contains_key("config_data"));
}

fn md5(s: &str) -> String {
    tyk_plugin::testkit::gocompat::md5_hex(s.as_bytes())
}

#[tokio::test]
async fn body_string_only_for_utf8_and_not_raw_body_only() {
    let gw = Gateway::new(echo()).api(
        Api::keyless("a")
            .pre("Plain")
            .pre(Hook::new("Raw").raw_body_only())
            .pre(Hook::new("Off").disabled()),
    );
    let res = send(&gw, req("POST", "/a/"), "text").await;
    let sent = res.sent_objects();
    assert_eq!(sent.len(), 2, "disabled hooks are skipped");
    assert_eq!(sent[0].request.as_ref().unwrap().body, "text");
    assert_eq!(sent[1].request.as_ref().unwrap().body, "");
    assert_eq!(sent[1].request.as_ref().unwrap().raw_body.as_ref(), b"text");
    let res = send(&gw, req("POST", "/a/"), vec![0xff, 0xfe, 0x00]).await;
    let r = res.sent_objects()[0].request.clone().unwrap();
    assert_eq!(r.body, "");
    assert_eq!(r.raw_body.as_ref(), &[0xff, 0xfe, 0x00]);
}

#[tokio::test]
async fn sessions_per_hook_type() {
    let p = echo();
    let gw = Gateway::new(p.clone())
        .api(
            Api::protected("t")
                .pre("Pre")
                .post_key_auth("PKA")
                .post("Post")
                .response("Resp"),
        )
        .api(
            Api::keyless("k")
                .post_key_auth("Never")
                .post("Post")
                .response("Resp"),
        )
        .with_key(
            "K",
            Key::new()
                .meta("testkey", json!({"nestedkey": "nestedvalue"}))
                .meta("testkey2", "testvalue"),
        );
    let res = send(&gw, req("GET", "/t/").header("authorization", "K"), "").await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    let sent = res.sent_objects();
    let kinds: Vec<i32> = sent.iter().map(|o| o.hook_type).collect();
    assert_eq!(
        kinds,
        [
            HookType::Pre,
            HookType::PostKeyAuth,
            HookType::Post,
            HookType::Response
        ]
        .map(|h| h as i32)
    );
    assert!(sent[0].session.is_none() && sent[0].metadata.is_empty());
    for o in &sent[1..] {
        let s = o.session.as_ref().unwrap();
        assert_eq!(s.metadata["testkey"], r#"{"nestedkey":"nestedvalue"}"#);
        assert_eq!(s.metadata["testkey2"], "testvalue");
        assert_eq!(o.metadata, s.metadata);
        assert!(s.basic_auth_data.is_some() && s.jwt_data.is_some() && s.monitor.is_some());
    }
    let resp = sent[3].response.as_ref().unwrap();
    assert_eq!(resp.status_code, 200);
    assert_eq!(resp.headers["X-Tyk-Test"], "1");

    let res = gw.get("/k/").await.unwrap();
    let sent = res.sent_objects();
    assert_eq!(sent.len(), 2, "no PostKeyAuth on keyless APIs");
    assert!(sent[0].session.is_none(), "Post on keyless: no session");
    assert_eq!(
        sent[1].session.as_ref().unwrap().rate,
        0.0,
        "Response: zero session"
    );
}

// ---------------------------------------------------------------- reply application

#[tokio::test]
async fn object_postprocess_headers_params_body() {
    let p = Plugin::new(|o| {
        let r = o.request.as_mut().unwrap();
        r.set_headers.insert("test".into(), "value".into());
        r.delete_headers.push("deletethisheader".into());
        // delete then set on the same name: set wins
        r.delete_headers.push("X-Both".into());
        r.set_headers.insert("x-both".into(), "new".into());
        r.add_params
            .insert("customparam".into(), "customvalue".into());
        r.delete_params.push("remove".into());
        r.raw_body = Bytes::from_static(b"{\"b\":2}");
        r.body = "ignored".into();
        Ok(())
    });
    let gw = Gateway::new(p).api(Api::keyless("a").listen_path("/").pre("P"));
    let res = send(
        &gw,
        req("POST", "/get?a=a_value&b=123&remove=3")
            .header("Deletethisheader", "1")
            .header("X-Both", "old")
            .header("content-length", "3"),
        "abc",
    )
    .await;
    let up = upstream_json(&res);
    assert_eq!(up["Headers"]["Test"], "value");
    assert_eq!(up["Headers"]["X-Both"], "new");
    assert!(up["Headers"].get("Deletethisheader").is_none());
    assert_eq!(up["Form"]["customparam"], "customvalue");
    assert_eq!(up["Form"]["a"], "a_value");
    assert!(up["Form"].get("remove").is_none());
    assert_eq!(up["URI"], "/get?a=a_value&b=123&customparam=customvalue");
    assert_eq!(up["Body"], "{\"b\":2}");
    let upstream = res.upstream_request().unwrap();
    assert_eq!(upstream.headers()["content-length"], "7");
}

#[tokio::test]
async fn echo_keeps_the_raw_query_and_url_query_changes_are_reverted() {
    let gw = Gateway::new(echo()).api(Api::keyless("a").pre("P"));
    let res = gw.get("/a/x?b=2&a=1&a=0").await.unwrap();
    assert_eq!(res.upstream_request().unwrap().uri(), "/x?b=2&a=1&a=0");

    let p = Plugin::new(|o| {
        let r = o.request.as_mut().unwrap();
        r.url = "/a/y?c=3".into();
        Ok(())
    });
    let gw = Gateway::new(p).api(Api::keyless("a").pre("P"));
    let res = gw.get("/a/x?b=2&a=1").await.unwrap();
    // Path change applies; the query change through url is undone, re-encoded sorted.
    assert_eq!(res.upstream_request().unwrap().uri(), "/y?a=1&b=2");
}

#[tokio::test]
async fn empty_or_bad_url_is_a_500() {
    for bad in ["", "relative/path", "/bad%zz"] {
        let p = Plugin::new(move |o| {
            o.request.as_mut().unwrap().url = bad.into();
            Ok(())
        });
        let gw = Gateway::new(p).api(Api::keyless("a").pre("P"));
        let res = gw.get("/a/").await.unwrap();
        assert_eq!(res.status(), 500, "{bad:?}");
        assert_eq!(res.body_str(), "{\n    \"error\": \"Middleware error\"\n}");
        assert!(res.upstream_request().is_none());
    }
}

#[tokio::test]
async fn method_change_and_empty_method() {
    let p = Plugin::new(|o| {
        let r = o.request.as_mut().unwrap();
        r.method = if r.headers.contains_key("Empty") {
            String::new()
        } else {
            "PUT".into()
        };
        Ok(())
    });
    let gw = Gateway::new(p).api(Api::keyless("a").pre("P"));
    let res = gw.get("/a/").await.unwrap();
    assert_eq!(res.upstream_request().unwrap().method(), "PUT");
    let res = send(&gw, req("POST", "/a/").header("empty", "1"), "").await;
    assert_eq!(res.upstream_request().unwrap().method(), "GET");
}

/// P10 (TestResponseOverride).
#[tokio::test]
async fn return_overrides_matrix() {
    let p = Plugin::new(|o| {
        let params = o.request.as_ref().unwrap().params.clone();
        let ro = overrides(o);
        ro.headers.insert("X-Foo".into(), "Bar".into());
        ro.response_code = params["status"].parse().unwrap();
        if params.get("response_body").map(String::as_str) == Some("true") {
            ro.response_body = "foobar".into();
        } else {
            ro.response_error = r#"{"foo": "bar"}"#.into();
        }
        if params.get("override").is_some_and(|v| !v.is_empty()) {
            ro.override_error = true;
        }
        Ok(())
    });
    let gw = Gateway::new(p).api(Api::keyless("a").pre("P"));
    // The gateway inserts the message through Go's template.JSEscapeString.
    let template = |m: &str| {
        let m = tyk_plugin::testkit::gocompat::js_escape_string(m);
        format!("{{\n    \"error\": \"{m}\"\n}}")
    };
    let cases: &[(&str, u16, String)] = &[
        ("status=200", 200, r#"{"foo": "bar"}"#.into()),
        ("status=200&response_body=true", 200, "foobar".into()),
        ("status=400", 400, template(r#"{"foo": "bar"}"#)),
        ("status=400&response_body=true", 400, template("foobar")),
        ("status=401", 401, template(r#"{"foo": "bar"}"#)),
        ("status=400&override=true", 400, r#"{"foo": "bar"}"#.into()),
        (
            "status=400&override=true&response_body=true",
            400,
            "foobar".into(),
        ),
        ("status=401&override=true", 401, r#"{"foo": "bar"}"#.into()),
    ];
    for (query, status, body) in cases {
        let res = gw.get(&format!("/a/?{query}")).await.unwrap();
        assert_eq!(res.status(), *status, "{query}");
        assert_eq!(res.body_str(), body.as_str(), "{query}");
        assert_eq!(res.header("x-foo"), Some("Bar"), "{query}");
        assert!(res.upstream_request().is_none(), "{query}");
        let templated = *status >= 400 && !query.contains("override");
        assert_eq!(
            res.header("x-generator") == Some("tyk.io"),
            templated,
            "{query}"
        );
        assert_eq!(
            res.header("content-type") == Some("application/json"),
            templated,
            "{query}"
        );
        assert_eq!(res.events().len(), usize::from(templated), "{query}");
    }
}

#[tokio::test]
async fn direct_redirect_and_empty_error_message() {
    let p = Plugin::new(|o| {
        let redirect = o.request.as_ref().unwrap().params.contains_key("r");
        let ro = overrides(o);
        if redirect {
            ro.response_code = 302;
            ro.headers.insert("Location".into(), "/elsewhere".into());
        } else {
            ro.response_code = 403;
        }
        Ok(())
    });
    let gw = Gateway::new(p).api(Api::keyless("a").pre("P").response("R"));
    let res = gw.get("/a/?r=1").await.unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.header("location"), Some("/elsewhere"));
    assert_eq!(
        res.exchanges().len(),
        1,
        "no Response hooks after a direct response"
    );
    let res = gw.get("/a/").await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.body_str(),
        "{\n    \"error\": \"Key not authorised\"\n}"
    );
}

#[tokio::test]
async fn dispatch_failures_map_per_hook_type() {
    let p = Plugin::new(|_| Err(Status::internal("boom")));
    let gw = Gateway::new(p)
        .api(Api::keyless("pre").pre("P"))
        .api(Api::custom_auth("auth", "A"))
        .api(Api::keyless("resp").response("R"));
    let res = gw.get("/pre/").await.unwrap();
    assert_eq!(res.status(), 500);
    assert!(
        res.exchanges()[0]
            .error
            .as_deref()
            .unwrap()
            .contains("boom")
    );
    let res = gw.get("/auth/").await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.body_str().contains("Key not authorised"));
    assert!(
        res.events().is_empty(),
        "no AuthFailure on the dispatch-error path"
    );
    let res = gw.get("/resp/").await.unwrap();
    assert_eq!(res.status(), 500);
    assert!(res.upstream_request().is_some());
}

#[tokio::test]
async fn replies_that_would_crash_the_gateway_are_errors() {
    let gw = Gateway::new(Plugin::new(|o| {
        o.request = None;
        Ok(())
    }))
    .api(Api::keyless("a").pre("P"));
    let err = gw.get("/a/").await.unwrap_err();
    assert!(
        matches!(
            err,
            GatewayError::WouldCrashGateway {
                missing: "request",
                ..
            }
        ),
        "{err}"
    );
    let gw = Gateway::new(Plugin::new(|o| {
        o.request.as_mut().unwrap().return_overrides = None;
        Ok(())
    }))
    .api(Api::keyless("a").pre("P"));
    assert!(matches!(
        gw.get("/a/").await.unwrap_err(),
        GatewayError::WouldCrashGateway {
            missing: "request.return_overrides",
            ..
        }
    ));
}

#[tokio::test]
async fn non_utf8_header_fails_like_marshalling() {
    let gw = Gateway::new(echo()).api(Api::keyless("a").pre("P"));
    let value = http::HeaderValue::from_bytes(&[0xff, b'a']).unwrap();
    let res = send(&gw, req("GET", "/a/").header("x-bin", value), "").await;
    assert_eq!(res.status(), 500);
}

// ---------------------------------------------------------------- events

#[tokio::test]
async fn pre_hook_403_fires_auth_failure_to_the_event_handler() {
    let p = Plugin::new(|o| {
        let ro = overrides(o);
        ro.response_code = 403;
        ro.response_error = "nope".into();
        Ok(())
    });
    let gw = Gateway::new(p.clone()).api(
        Api::keyless("6")
            .listen_path("/grpc-test-api/")
            .pre("P")
            .event_handler("AuthFailure", "my_handler"),
    );
    let res = send(
        &gw,
        req("GET", "/grpc-test-api/?x=1").header("authorization", "tok"),
        "",
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.body_str(), "{\n    \"error\": \"nope\"\n}");
    let ev = &res.events()[0];
    assert_eq!(ev.event_type, "AuthFailure");
    assert_eq!(ev.meta()["Message"], "Auth Failure");
    assert_eq!(ev.meta()["Path"], "/grpc-test-api/");
    // The reply's session token (none for a Pre hook), not the presented one.
    assert_eq!(ev.meta()["Key"], "");
    assert_eq!(ev.meta()["Origin"], "127.0.0.1");
    assert!(ev.message["TimeStamp"].as_str().unwrap().ends_with(" UTC"));
    let payloads = p.events.lock().unwrap().clone();
    assert_eq!(payloads.len(), 1);
    let payload: serde_json::Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(payload["handler_name"], "my_handler");
    assert_eq!(payload["spec"], json!({"APIID": "6", "OrgID": "default"}));
    assert_eq!(payload["message"]["Type"], "AuthFailure");
    assert_eq!(ev.deliveries[0].result, Ok(()));
    assert_eq!(gw.events().len(), 1);
}

// ---------------------------------------------------------------- custom auth

/// The `Authorization` header the gateway sent with the Object ("" if none).
fn authorization(o: &Object) -> String {
    o.request
        .as_ref()
        .and_then(|r| r.headers.get("Authorization").cloned())
        .unwrap_or_default()
}

/// testAuthHook1 of Tyk's gRPC suite, with a configurable deadline.
fn auth_plugin(deadline: i64) -> Plugin {
    Plugin::new(move |o| {
        if o.hook_type != HookType::CustomKeyCheck as i32 {
            return Ok(());
        }
        let token = authorization(o);
        o.metadata.insert("token".into(), token.clone());
        if token != "abc" {
            let ro = overrides(o);
            ro.response_code = 400;
            ro.response_error = "invalid token".into();
            return Ok(());
        }
        o.session = Some(SessionState {
            rate: 100.0,
            per: 1.0,
            id_extractor_deadline: deadline,
            org_id: "plugin-org".into(),
            metadata: [(
                "sessionMetaKey".to_string(),
                "customAuthSessionMetaValue".to_string(),
            )]
            .into(),
            ..Default::default()
        });
        Ok(())
    })
}

#[tokio::test]
async fn custom_auth_grant_deny_and_id_extractor_cache() {
    let clock = Clock::manual(1_000_000);
    let p = auth_plugin(1_000_060);
    let gw = Gateway::new(p.clone())
        .clock(clock.clone())
        .api(
            Api::custom_auth("6", "testAuthHook1")
                .listen_path("/grpc-auth-hook-test-api-1/")
                .id_extractor(IdExtractor::header_value("Authorization"))
                .post("Post"),
        )
        .api(Api::custom_auth("7", "testAuthHook1").listen_path("/grpc-auth-hook-test-api-2/"));
    let get = |path: &'static str, auth: Option<&'static str>| {
        let gw = &gw;
        async move {
            let mut r = req("GET", path);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            send(gw, r, "").await
        }
    };
    // G12: grant, stored under the extractor key.
    let res = get("/grpc-auth-hook-test-api-1/", Some("abc")).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert_eq!(p.calls(), 2);
    let key = Gateway::id_extractor_key("default", "abc");
    let stored = gw.key(&key).unwrap();
    assert_eq!(stored.org_id, "default", "org forced to the API's");
    assert_eq!(stored.metadata["token"], "abc");
    // The Post hook sees the session.
    let post = &res.sent_objects()[1];
    assert_eq!(
        post.session.as_ref().unwrap().metadata["sessionMetaKey"],
        "customAuthSessionMetaValue"
    );
    // Cached: the auth hook is not called again before the deadline.
    let res = get("/grpc-auth-hook-test-api-1/", Some("abc")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(p.calls(), 3, "only the Post hook ran");
    clock.advance(61);
    let res = get("/grpc-auth-hook-test-api-1/", Some("abc")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(p.calls(), 5, "deadline passed: auth hook called again");
    // Extraction failure.
    let res = get("/grpc-auth-hook-test-api-1/", None).await;
    assert_eq!(res.status(), 400);
    assert!(res.body_str().contains("Authorization field missing"));
    // Plugin rejects.
    let res = get("/grpc-auth-hook-test-api-1/", Some("bad")).await;
    assert_eq!(res.status(), 400);
    assert!(res.body_str().contains("invalid token"));
    assert_eq!(res.events()[0].event_type, "AuthFailure");
    // G13: without extractor, stored under the token; the hook runs every time.
    let before = p.calls();
    for _ in 0..2 {
        assert_eq!(
            get("/grpc-auth-hook-test-api-2/", Some("abc"))
                .await
                .status(),
            200
        );
    }
    assert_eq!(p.calls(), before + 2);
    assert!(gw.key("abc").is_some());
}

#[tokio::test]
async fn custom_auth_without_session_or_token_is_forbidden() {
    // Echo: no session at all (G10).
    let gw = Gateway::new(echo()).api(
        Api::custom_auth("ignore_plugin", "")
            .listen_path("/grpc-test-api-ignore/")
            .id_extractor(IdExtractor::header_value("Authorization"))
            .ignore("/anything"),
    );
    let res = send(
        &gw,
        req("GET", "/grpc-test-api-ignore/something").header("authorization", "bad"),
        "",
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.body_str(), "{\n    \"error\": \"Forbidden\"\n}");
    assert_eq!(res.events()[0].event_type, "AuthFailure");
    assert_eq!(res.sent_objects()[0].hook_name, "");
    // G8/G9/G11.
    assert_eq!(
        gw.get("/grpc-test-api-ignore/something")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        gw.get("/grpc-test-api-ignore/anything")
            .await
            .unwrap()
            .status(),
        200
    );
    let res = send(
        &gw,
        req("GET", "/grpc-test-api-ignore/anything").header("authorization", "bad"),
        "",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.exchanges().is_empty());

    // A session but no token.
    let gw = Gateway::new(Plugin::new(|o| {
        o.session = Some(SessionState::default());
        Ok(())
    }))
    .api(Api::custom_auth("a", "A"));
    assert_eq!(gw.get("/a/").await.unwrap().status(), 403);
}

fn session_plugin(f: impl Fn(&str) -> Option<SessionState> + Send + Sync + 'static) -> Plugin {
    Plugin::new(move |o| {
        if o.hook_type != HookType::CustomKeyCheck as i32 {
            return Ok(());
        }
        let auth = authorization(o);
        if let Some(mut s) = f(&auth) {
            s.metadata.insert("token".into(), auth);
            o.session = Some(s);
        }
        Ok(())
    })
}

#[tokio::test]
async fn custom_auth_session_checks_quota_and_policies() {
    let clock = Clock::manual(5_000);
    let p = session_plugin(|auth| match auth {
        "inactive" => Some(SessionState {
            is_inactive: true,
            ..Default::default()
        }),
        "expired" => Some(SessionState {
            expires: 4_999,
            ..Default::default()
        }),
        "future" => Some(SessionState {
            expires: 6_000,
            ..Default::default()
        }),
        "other-api" => Some(SessionState {
            access_rights: [("other".to_string(), Default::default())].into(),
            ..Default::default()
        }),
        "quota" => Some(SessionState {
            rate: 1000.0,
            per: 1.0,
            quota_max: 1,
            quota_renewal_rate: 60,
            ..Default::default()
        }),
        "rate" => Some(SessionState {
            rate: 2.0,
            per: 10.0,
            ..Default::default()
        }),
        "policy" => Some(SessionState {
            apply_policy_id: "pol".into(),
            ..Default::default()
        }),
        "nopolicy" => Some(SessionState {
            apply_policies: vec!["missing".into()],
            ..Default::default()
        }),
        _ => None,
    });
    let gw = Gateway::new(p)
        .clock(clock.clone())
        .with_policy("pol", Policy::new().quota(1, 60).access("a"))
        .api(Api::custom_auth("a", "A"));
    let status = |auth: &'static str| {
        let gw = &gw;
        async move {
            let res = send(gw, req("GET", "/a/").header("Authorization", auth), "").await;
            (res.status(), res.body_str().into_owned())
        }
    };
    assert_eq!(status("inactive").await.0, 403);
    assert!(
        status("inactive")
            .await
            .1
            .contains("Key is inactive, please renew")
    );
    let (s, b) = status("expired").await;
    assert_eq!(
        (s, b.contains("Key has expired, please renew")),
        (401, true)
    );
    assert_eq!(status("future").await.0, 200);
    let (s, b) = status("other-api").await;
    assert_eq!(
        (s, b.contains("Access to this API has been disallowed")),
        (403, true)
    );
    // P1: quota 1.
    assert_eq!(status("quota").await.0, 200);
    let (s, b) = status("quota").await;
    assert_eq!((s, b.contains("Quota exceeded")), (403, true));
    clock.advance(60);
    assert_eq!(status("quota").await.0, 200, "quota renewed");
    // Rate 2 per 10 s.
    assert_eq!(status("rate").await.0, 200);
    assert_eq!(status("rate").await.0, 200);
    assert_eq!(status("rate").await.0, 429);
    clock.advance(11);
    assert_eq!(status("rate").await.0, 200);
    // P2: policy quota 1.
    assert_eq!(status("policy").await.0, 200);
    assert_eq!(status("policy").await.0, 403);
    assert_eq!(status("nopolicy").await.0, 403);
    assert_eq!(status("nobody").await.0, 403);
}

#[tokio::test]
async fn id_extractor_form_and_regex() {
    // P8: form/value; grants only on the first call.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let p = Plugin::new(move |o| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            o.metadata.insert("token".into(), "V".into());
            o.session = Some(SessionState {
                id_extractor_deadline: i64::MAX,
                ..Default::default()
            });
        }
        Ok(())
    });
    let gw = Gateway::new(p)
        .api(Api::custom_auth("a", "A").id_extractor(IdExtractor::form_value("auth")));
    let form = |body: &'static str| {
        let gw = &gw;
        async move {
            send(
                gw,
                req("POST", "/a/").header("content-type", "application/x-www-form-urlencoded"),
                body,
            )
            .await
            .status()
        }
    };
    assert_eq!(form("auth=V").await, 200);
    assert_eq!(form("auth=V").await, 200);
    assert_eq!(form("auth=invalid_token").await, 403);
    assert_eq!(form("other=1").await, 400);

    // P9: header/regex [0-9]+ index 0 (whole matches).
    let p = session_plugin(|auth| {
        (auth.split_once('-').map(|x| x.1) == Some("12345")).then(|| SessionState {
            id_extractor_deadline: i64::MAX,
            ..Default::default()
        })
    });
    let gw = Gateway::new(p.clone()).api(
        Api::custom_auth("a", "A").id_extractor(IdExtractor::header_regex(
            "Authorization",
            "[0-9]+",
            0,
        )),
    );
    let h = |v: &'static str| {
        let gw = &gw;
        async move {
            send(gw, req("GET", "/a/").header("Authorization", v), "")
                .await
                .status()
        }
    };
    assert_eq!(h("prefix-12345").await, 200);
    assert_eq!(h("prefix-12345").await, 200);
    assert_eq!(p.calls(), 1, "second request served from the cache");
    assert_eq!(h("prefix-123456").await, 403);
    assert_eq!(h("prefix-").await, 400, "no match");
    assert!(
        gw.key(&Gateway::id_extractor_key("default", "12345"))
            .is_some()
    );
}

#[tokio::test]
async fn standard_token_auth_with_key_store() {
    let gw = Gateway::new(echo())
        .api(Api::protected("1").auth_header("authorization").pre("P"))
        .with_key("K", Key::new().access("1"))
        .with_key("X", Key::new().access("2"));
    assert_eq!(
        send(&gw, req("GET", "/1/").header("authorization", "K"), "")
            .await
            .status(),
        200
    );
    assert_eq!(
        send(
            &gw,
            req("GET", "/1/").header("authorization", "Bearer K"),
            ""
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        send(&gw, req("GET", "/1/").header("authorization", "X"), "")
            .await
            .status(),
        403
    );
    assert_eq!(
        send(&gw, req("GET", "/1/").header("authorization", "nope"), "")
            .await
            .status(),
        403
    );
    let res = gw.get("/1/").await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.exchanges().len(), 1, "Pre ran before auth");
}

// ---------------------------------------------------------------- response hooks

#[tokio::test]
async fn response_hook_body_and_content_length() {
    let p = Plugin::new(|o| {
        if let Some(r) = o.response.as_mut() {
            r.raw_body = Bytes::from_static(b"newbody");
        }
        Ok(())
    });
    let gw = Gateway::new(p)
        .api(Api::protected("4").response("testResponseHook"))
        .with_key("K", Key::new());
    let res = send(&gw, req("GET", "/4/").header("authorization", "K"), "").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.body_str(), "newbody");
    assert_eq!(res.header("content-length"), Some("7"));
    assert_eq!(res.header("x-tyk-test"), Some("1"));
}

fn cookie_upstream(_: &http::Request<Bytes>) -> http::Response<Bytes> {
    http::Response::builder()
        .status(201)
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2")
        .header("x-drop", "1")
        .header("content-type", "text/plain")
        .body(Bytes::from_static(b"hello"))
        .unwrap()
}

#[tokio::test]
async fn response_hook_header_sync() {
    let p = Plugin::new(|o| {
        let mode = o
            .request
            .as_ref()
            .unwrap()
            .params
            .get("mode")
            .cloned()
            .unwrap_or_default();
        let r = o.response.as_mut().unwrap();
        match mode.as_str() {
            // Delete from both maps.
            "delete" => {
                r.headers.remove("X-Drop");
                r.multivalue_headers.retain(|h| h.key != "X-Drop");
            }
            // A second Set-Cookie via multivalue_headers only: headers unchanged.
            "append" => {
                let h = r
                    .multivalue_headers
                    .iter_mut()
                    .find(|h| h.key == "Set-Cookie")
                    .unwrap();
                h.values.push("c=3".into());
            }
            // Add only to multivalue_headers while changing headers: dropped by the sync.
            "mv-only-dropped" => {
                r.headers.insert("X-New".into(), "1".into());
                r.multivalue_headers.push(Header {
                    key: "X-Lost".into(),
                    values: vec!["1".into()],
                });
            }
            // Change the first Set-Cookie through headers: other values kept.
            "replace-first" => {
                r.headers.insert("Set-Cookie".into(), "z=9".into());
            }
            "status" => r.status_code = 0,
            "no-response" => o.response = None,
            _ => {}
        }
        Ok(())
    });
    let gw = Gateway::new(p)
        .upstream(cookie_upstream)
        .api(Api::keyless("a").response("R"));
    let res = gw.get("/a/?mode=echo").await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.header_all("set-cookie"), ["a=1", "b=2"]);
    assert_eq!(res.header("content-length"), Some("5"));

    let res = gw.get("/a/?mode=delete").await.unwrap();
    assert!(res.header("x-drop").is_none());
    assert_eq!(res.header_all("set-cookie"), ["a=1", "b=2"]);

    let res = gw.get("/a/?mode=append").await.unwrap();
    assert_eq!(res.header_all("set-cookie"), ["a=1", "b=2", "c=3"]);

    let res = gw.get("/a/?mode=mv-only-dropped").await.unwrap();
    assert_eq!(res.header("x-new"), Some("1"));
    assert!(res.header("x-lost").is_none());

    let res = gw.get("/a/?mode=replace-first").await.unwrap();
    assert_eq!(res.header_all("set-cookie"), ["z=9", "b=2"]);

    let err = gw.get("/a/?mode=status").await.unwrap_err();
    assert!(
        matches!(err, GatewayError::InvalidResponseStatus { status: 0, .. }),
        "{err}"
    );

    let res = gw.get("/a/?mode=no-response").await.unwrap();
    assert_eq!(res.status(), 500);
    assert!(res.body_str().contains("Middleware error"));

    // The Object carried all values.
    let res = gw.get("/a/?mode=echo").await.unwrap();
    let sent = res.sent_objects()[0].response.clone().unwrap();
    assert_eq!(sent.headers["Set-Cookie"], "a=1");
    let mv = sent
        .multivalue_headers
        .iter()
        .find(|h| h.key == "Set-Cookie")
        .unwrap();
    assert_eq!(mv.values, ["a=1", "b=2"]);
    assert_eq!(sent.body, "hello");
}

/// G16/G17 (testConfigDataResponseHook).
#[tokio::test]
async fn config_data_response_hook() {
    let p = Plugin::new(|o| {
        let v = if o.spec.contains_key("config_data") {
            "true"
        } else {
            "false"
        };
        let r = o.response.as_mut().unwrap();
        r.headers.insert("x-config-data".into(), v.into());
        r.multivalue_headers.push(Header {
            key: "x-config-data".into(),
            values: vec![v.into()],
        });
        Ok(())
    });
    let gw = Gateway::new(p)
        .api(
            Api::keyless("8")
                .listen_path("/grpc-config-data-1/")
                .response("R")
                .config_data(json!({"key": "value"})),
        )
        .api(
            Api::keyless("9")
                .listen_path("/grpc-config-data-2/")
                .response("R")
                .config_data(json!({"key": "value"}))
                .config_data_disabled(true),
        );
    assert_eq!(
        gw.get("/grpc-config-data-1/")
            .await
            .unwrap()
            .header("x-config-data"),
        Some("true")
    );
    assert_eq!(
        gw.get("/grpc-config-data-2/")
            .await
            .unwrap()
            .header("x-config-data"),
        Some("false")
    );
}

// ---------------------------------------------------------------- rewrite, loop

/// P6.
#[tokio::test]
async fn post_hook_sees_rewrite_and_method_transform_and_loops() {
    let p = Plugin::new(|o| {
        let r = o.request.as_mut().unwrap();
        if r.url == "/test2" {
            if r.method != "POST" {
                let ro = overrides(o);
                ro.response_code = 500;
                ro.response_error = "'invalid method type'".into();
                return Ok(());
            }
            r.url = "tyk://test-api-2/newpath".into();
            r.method = "GET".into();
        }
        Ok(())
    });
    let gw = Gateway::new(p)
        .api(
            Api::keyless("1")
                .listen_path("/test-api-1/")
                .url_rewrite("/get", "GET", "/test2")
                .method_transform("/get", "GET", "POST")
                .post("P"),
        )
        .api(
            Api::keyless("2")
                .name("test-api-2")
                .listen_path("/test-api-2/"),
        );
    let res = gw.get("/test-api-1/get").await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert!(res.body_str().contains("newpath"));
    assert!(res.body_str().contains("GET"));
    let post = res.sent_objects()[0].request.clone().unwrap();
    assert_eq!(
        (post.url.as_str(), post.method.as_str()),
        ("/test2", "POST")
    );
    let res = gw.get("/test-api-1/post").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(!res.body_str().contains("newpath"));
}

// ---------------------------------------------------------------- definitions

#[tokio::test]
async fn classic_definition_loads() {
    let def = json!({
        "api_id": "6", "org_id": "o", "name": "n",
        "proxy": {"listen_path": "/x/", "strip_listen_path": true},
        "use_keyless": false,
        "custom_plugin_auth_enabled": true,
        "auth_configs": {"coprocess": {"auth_header_name": "X-Key"}},
        "config_data": {"b": 1, "a": "<"},
        "custom_middleware_bundle": "bundle.zip",
        "custom_middleware": {
            "driver": "grpc",
            "pre": [{"name": "Pre1"}, {"name": "Pre2", "disabled": true}],
            "post_key_auth": [{"name": "PKA"}],
            "post": [{"name": "Post", "raw_body_only": true}],
            "response": [{"name": "Resp"}],
            "auth_check": {"name": "Auth"},
            "id_extractor": {"extract_from": "header", "extract_with": "value",
                              "extractor_config": {"header_name": "X-Key"}}
        },
        "event_handlers": {"events": {"AuthFailure": [
            {"handler_name": "cp_dynamic_handler", "handler_meta": {"name": "h"}}]}},
        "version_data": {"versions": {"v1": {"extended_paths": {
            "ignored": [{"path": "/anything", "ignore_case": true, "method_actions": {"GET": {}}}]}}}}
    });
    let api = Api::from_classic_json(&def).unwrap();
    let p = session_plugin(|a| (a.is_empty()).then(SessionState::default));
    let gw = Gateway::new(p).api(api);
    let res = gw.get("/x/ANYTHING").await.unwrap();
    assert_eq!(res.status(), 200, "ignored path, no auth");
    let names: Vec<_> = res
        .sent_objects()
        .iter()
        .map(|o| o.hook_name.clone())
        .collect();
    assert_eq!(names, ["Pre1", "PKA", "Post", "Resp"]);
    let spec = &res.sent_objects()[0].spec;
    assert_eq!(spec["OrgID"], "o");
    assert_eq!(spec["config_data"], r#"{"a":"\u003c","b":1}"#);
    assert_eq!(spec["bundle_hash"], md5("bundle.zip"));
    assert_eq!(res.sent_objects()[2].request.as_ref().unwrap().body, "");
    assert_eq!(
        gw.get("/x/other").await.unwrap().status(),
        400,
        "extractor header X-Key"
    );

    assert!(Api::from_classic_json(&json!({})).is_err());
}

#[tokio::test]
async fn oas_definition_loads() {
    let def = json!({
        "openapi": "3.0.3",
        "x-tyk-api-gateway": {
            "info": {"id": "oas1", "orgId": "o", "name": "oas"},
            "server": {
                "listenPath": {"value": "/oas/", "strip": true},
                "authentication": {"enabled": true, "custom": {
                    "enabled": true,
                    "config": {"enabled": true, "functionName": "MyAuth",
                               "idExtractor": {"enabled": true, "source": "header", "with": "value",
                                               "config": {"headerName": "Authorization"}}},
                    "header": {"enabled": true, "name": "Authorization"}}}
            },
            "middleware": {"global": {
                "pluginConfig": {"driver": "grpc", "bundle": {"enabled": true, "path": "b.zip"},
                                 "data": {"enabled": true, "value": {"k": "v"}}},
                "prePlugins": [{"enabled": true, "functionName": "MyPre", "rawBodyOnly": true}],
                "postAuthenticationPlugin": {"plugins": [{"enabled": false, "functionName": "Off"}]},
                "responsePlugins": [{"enabled": true, "functionName": "MyResponse"}]
            }}
        }
    });
    let api = Api::from_oas_json(&def).unwrap();
    let gw = Gateway::new(auth_plugin(0)).api(api);
    let res = send(&gw, req("GET", "/oas/").header("authorization", "abc"), "x").await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    let sent = res.sent_objects();
    let names: Vec<_> = sent
        .iter()
        .map(|o| (o.hook_type, o.hook_name.clone()))
        .collect();
    assert_eq!(
        names,
        [
            (HookType::Pre as i32, "MyPre".to_string()),
            (HookType::CustomKeyCheck as i32, "MyAuth".to_string()),
            (HookType::Response as i32, "MyResponse".to_string())
        ]
    );
    assert_eq!(sent[0].request.as_ref().unwrap().body, "");
    assert_eq!(sent[0].spec["config_data"], r#"{"k":"v"}"#);
    assert_eq!(sent[0].spec["bundle_hash"], md5("b.zip"));
    assert!(gw.key(&Gateway::id_extractor_key("o", "abc")).is_some());
}
