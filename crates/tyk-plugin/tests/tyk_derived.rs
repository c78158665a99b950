//! The derived cases of spec §5.4 (not in Tyk's tests; from the gateway's
//! code), each with an SDK plugin against the emulator.
//!
//! All §5.4 cases are covered. Where §5.4 describes a raw protocol edit the
//! SDK does not let a handler make by mistake (an empty `url`), the test
//! shows both sides: the SDK's safety layer repairs it, and a raw plugin
//! making the same edit gets the gateway's 500.
#![cfg(feature = "testkit")]

mod common;
use common::{error_message, get, send};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use prost::Message;
use serde::Deserialize;
use serde_json::json;
use tonic::Status;
use tyk_plugin::coprocess::Object;
use tyk_plugin::event::EventMeta;
use tyk_plugin::testkit::{Api, Gateway, Hook, Key, TestResponse};
use tyk_plugin::{
    AuthRequest, BoxFuture, DirectResponse, Dispatcher, EventKind, GatewayEvent, PluginError,
    Request, Response, Router, Session,
};

// ------------------------------------------------------------------ helpers

fn upstream(res: &TestResponse) -> &http::Request<Bytes> {
    res.upstream_request().expect("the upstream was called")
}

/// A plugin written directly against the protocol (no SDK): decode, edit,
/// encode. For contrast with what the SDK prevents.
struct RawPlugin(fn(&mut Object));

impl Dispatcher for RawPlugin {
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        let mut o = Object::decode(object).expect("the emulator sends valid Objects");
        (self.0)(&mut o);
        Box::pin(std::future::ready(Ok(Bytes::from(o.encode_to_vec()))))
    }

    fn dispatch_event(&self, _payload: String) -> BoxFuture<Result<(), Status>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

// ------------------------------------------------------------------ echo

/// One API with a hook of every request-side type and a Response hook.
fn all_hooks_api() -> Api {
    Api::protected("e")
        .listen_path("/e/")
        .pre("Echo")
        .post_key_auth("Echo")
        .post("Echo")
        .response("Echo")
}

fn echo_router(touch: bool) -> Router {
    // `touch`: the handler takes the raw Object and changes nothing, so the
    // router re-encodes the reply instead of returning the bytes received.
    let request = move |mut req: Request| async move {
        if touch {
            let _ = req.object_mut();
        }
        req
    };
    let response = move |mut res: Response| async move {
        if touch {
            let _ = res.object_mut();
        }
        res
    };
    Router::new()
        .pre("Echo", request)
        .post_key_auth("Echo", request)
        .post("Echo", request)
        .response("Echo", response)
}

async fn echo_request(gw: &Gateway) -> TestResponse {
    send(
        gw,
        http::Request::post("/e/items?b=2&a=1&a=0&c=%20x&b=1")
            .header("Authorization", "k")
            .header("Content-Type", "application/octet-stream")
            .header("X-Multi", "one")
            .header("X-Multi", "two"),
        vec![0xff, 0x00, b'h', b'i', 0xfe],
    )
    .await
}

#[tokio::test]
async fn echo_on_every_hook_type_is_a_no_op() {
    let plain = Gateway::new(Router::new())
        .api(Api::protected("e").listen_path("/e/"))
        .with_key("k", Key::new());
    let want = echo_request(&plain).await;
    assert_eq!(want.status(), 200);
    assert!(want.exchanges().is_empty());
    let want_up = upstream(&want);

    for touch in [false, true] {
        let gw = Gateway::new(echo_router(touch))
            .api(all_hooks_api())
            .with_key("k", Key::new());
        let got = echo_request(&gw).await;
        let hooks: Vec<_> = got.exchanges().iter().map(|x| x.hook_type).collect();
        assert_eq!(hooks.len(), 4, "touch={touch}: every hook was called");
        assert!(got.exchanges().iter().all(|x| x.error.is_none()));
        // Upstream request: method, query order, headers, body.
        let got_up = upstream(&got);
        assert_eq!(got_up.method(), want_up.method(), "touch={touch}");
        assert_eq!(got_up.uri(), want_up.uri(), "touch={touch}: query order");
        assert_eq!(got_up.uri().query(), Some("b=2&a=1&a=0&c=%20x&b=1"));
        assert_eq!(got_up.headers(), want_up.headers(), "touch={touch}");
        assert_eq!(got_up.body(), want_up.body(), "touch={touch}");
        // Client response: status, body, headers but Content-Length.
        assert_eq!(got.status(), want.status());
        assert_eq!(got.body(), want.body(), "touch={touch}");
        let strip = |res: &TestResponse| {
            let mut h = res.headers().clone();
            h.remove(http::header::CONTENT_LENGTH);
            h
        };
        assert_eq!(strip(&got), strip(&want), "touch={touch}");
        assert_eq!(
            got.header("Content-Length"),
            Some(got.body().len().to_string().as_str()),
            "the Response hook sets Content-Length"
        );
    }
}

#[tokio::test]
async fn echo_on_the_auth_hook_grants_nothing() {
    // The one hook type where an echo is not a no-op: no session and no
    // token ⇒ 403 "Forbidden" (§3.5).
    let router = Router::new().auth("Echo", |req: AuthRequest| async move { req });
    let gw = Gateway::new(router).api(Api::custom_auth("a", "Echo"));
    let res = get(&gw, "/a/", &[("Authorization", "t")]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(error_message(&res), "Forbidden");
}

// ------------------------------------------------------------------ handler errors

async fn fail_request(_req: Request) -> Result<Request, PluginError> {
    Err(PluginError::internal("request handler failed"))
}

async fn fail_auth(_req: AuthRequest) -> Result<AuthRequest, PluginError> {
    Err(PluginError::internal("auth handler failed"))
}

async fn fail_response(_res: Response) -> Result<Response, PluginError> {
    Err(PluginError::internal("response handler failed"))
}

async fn panic_request(_req: Request) -> Request {
    panic!("handler bug")
}

#[tokio::test]
async fn handler_errors_map_per_hook_type() {
    let router = Router::new()
        .pre("Fail", fail_request)
        .post("Fail", fail_request)
        .pre("Panic", panic_request)
        .auth("Fail", fail_auth)
        .response("Fail", fail_response);
    let gw = Gateway::new(router)
        .api(Api::keyless("pre").pre("Fail"))
        .api(Api::keyless("post").post("Fail"))
        .api(Api::keyless("panic").pre("Panic"))
        .api(Api::custom_auth("auth", "Fail"))
        .api(Api::keyless("resp").response("Fail"));

    for path in ["/pre/", "/post/", "/panic/"] {
        let res = gw.get(path).await.unwrap();
        assert_eq!(res.status(), 500, "{path}");
        assert_eq!(error_message(&res), "Middleware error", "{path}");
        assert!(res.upstream_request().is_none(), "{path}");
        assert!(res.exchanges()[0].error.is_some(), "{path}: a gRPC error");
        assert!(res.events().is_empty(), "{path}: no event on this path");
    }

    let res = get(&gw, "/auth/", &[("Authorization", "t")]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(error_message(&res), "Key not authorised");
    assert!(res.events().is_empty(), "§2.6: no AuthFailure on this path");
    assert!(gw.key("t").is_none());

    let res = gw.get("/resp/").await.unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(error_message(&res), "Middleware error");
    assert!(
        res.upstream_request().is_some(),
        "upstream answer discarded"
    );
    assert_eq!(res.header("X-Tyk-Test"), None);
}

// ------------------------------------------------------------------ url safety

#[tokio::test]
async fn emptied_url_is_repaired_by_the_sdk() {
    async fn empty_url(mut req: Request) -> Request {
        req.set_header("X-Still-Applied", "1");
        if let Some(r) = req.object_mut().request.as_mut() {
            r.url.clear();
        }
        req
    }
    let gw = Gateway::new(Router::new().pre("EmptyUrl", empty_url))
        .api(Api::keyless("u").pre("EmptyUrl"));
    let res = gw.get("/u/items?x=1").await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.body_str());
    let reply = res.exchanges()[0].reply.as_ref().unwrap();
    assert_eq!(
        reply.request.as_ref().unwrap().url,
        "/u/items?x=1",
        "the reply carries the received url"
    );
    let up = upstream(&res);
    assert_eq!(up.uri(), "/items?x=1");
    assert_eq!(
        up.headers()["X-Still-Applied"],
        "1",
        "the rest of the reply works"
    );

    // Without the SDK the same edit is the gateway's 500 (§3.4 step 4).
    let raw = Gateway::new(RawPlugin(|o| o.request.as_mut().unwrap().url.clear()))
        .api(Api::keyless("u").pre("EmptyUrl"));
    let res = raw.get("/u/items?x=1").await.unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(error_message(&res), "Middleware error");
}

#[tokio::test]
async fn query_change_through_url_is_reverted_but_set_param_works() {
    fn set_raw_url(req: &mut Request, url: &str) {
        // Raw on purpose: the SDK has no way to put a query into the url
        // (set_path refuses `?`), which is the point of this case.
        if let Some(r) = req.object_mut().request.as_mut() {
            r.url = url.to_string();
        }
    }
    let router = Router::new()
        .pre("UrlOnly", |mut req: Request| async move {
            set_raw_url(&mut req, "/q/items?b=3&evil=1");
            req
        })
        .pre("SetParam", |mut req: Request| async move {
            req.set_param("c", "3");
            req
        })
        .pre("Both", |mut req: Request| async move {
            set_raw_url(&mut req, "/q/items?b=3&evil=1");
            req.set_param("c", "3");
            req
        });
    for (hook, want) in [
        // The query is rebuilt from the original values, keys sorted.
        ("UrlOnly", "/items?a=1&b=2"),
        ("SetParam", "/items?a=1&b=2&c=3"),
        ("Both", "/items?a=1&b=2&c=3"),
    ] {
        let gw = Gateway::new(router.clone()).api(Api::keyless("q").pre(hook));
        let res = gw.get("/q/items?b=2&a=1").await.unwrap();
        assert_eq!(res.status(), 200, "{hook}");
        assert_eq!(upstream(&res).uri(), want, "{hook}");
    }
}

// ------------------------------------------------------------------ headers

#[tokio::test]
async fn delete_and_set_of_the_same_header_set_wins() {
    let router = Router::new()
        .pre("Typed", |mut req: Request| async move {
            req.delete_header("X-Thing");
            req.set_header("X-Thing", "new");
            req
        })
        .pre("Raw", |mut req: Request| async move {
            // Raw: both lists filled, to exercise the gateway's order
            // (delete_headers first, then set_headers).
            if let Some(r) = req.object_mut().request.as_mut() {
                r.delete_headers.push("x-thing".into());
                r.set_headers.insert("X-Thing".into(), "new".into());
            }
            req
        });
    for hook in ["Typed", "Raw"] {
        let gw = Gateway::new(router.clone()).api(Api::keyless("h").pre(hook));
        let res = get(&gw, "/h/", &[("X-Thing", "old")]).await;
        assert_eq!(res.status(), 200);
        let values: Vec<_> = upstream(&res).headers().get_all("x-thing").iter().collect();
        assert_eq!(values, ["new"], "{hook}");
    }
}

#[tokio::test]
async fn direct_redirect_with_location() {
    let router = Router::new()
        .pre("Redirect", |req: Request| async move {
            req.respond(DirectResponse::redirect("https://example.com/login"))
        })
        .response("Mark", |mut res: Response| async move {
            res.set_header("X-Response-Hook", "ran");
            res
        });
    let gw = Gateway::new(router).api(Api::keyless("r").pre("Redirect").response("Mark"));
    let res = gw.get("/r/x").await.unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.header("Location"), Some("https://example.com/login"));
    assert!(res.body().is_empty());
    assert!(res.upstream_request().is_none(), "upstream not called");
    assert_eq!(res.exchanges().len(), 1, "Response hooks do not run");
    assert_eq!(res.header("X-Response-Hook"), None);
    assert!(res.events().is_empty());
}

// ------------------------------------------------------------------ auth sessions

async fn session_cases(req: AuthRequest) -> AuthRequest {
    let builder = Session::builder("case-token");
    let builder = match req.header("X-Case") {
        Some("inactive") => builder.inactive(true),
        Some("expired") => builder.expires_at(UNIX_EPOCH + Duration::from_secs(1_000_000)),
        Some("other-api") => builder.access("another-api", "Another", ["Default"]),
        _ => builder,
    };
    req.allow(builder.build().expect("valid session"))
}

#[tokio::test]
async fn auth_session_inactive_expired_and_other_api() {
    let gw = Gateway::new(Router::new().auth("Check", session_cases))
        .api(Api::custom_auth("s", "Check"));
    for (case, status, message) in [
        ("inactive", 403, "Key is inactive, please renew"),
        ("expired", 401, "Key has expired, please renew"),
        ("other-api", 403, "Access to this API has been disallowed"),
    ] {
        let res = get(&gw, "/s/", &[("Authorization", "x"), ("X-Case", case)]).await;
        assert_eq!(res.status(), status, "{case}");
        assert_eq!(error_message(&res), message, "{case}");
        assert!(res.upstream_request().is_none(), "{case}");
    }
    let res = get(&gw, "/s/", &[("Authorization", "x"), ("X-Case", "ok")]).await;
    assert_eq!(res.status(), 200, "the same plugin grants a plain session");
}

// ------------------------------------------------------------------ response headers

#[tokio::test]
async fn response_hook_deletes_a_header_from_both_maps() {
    let router = Router::new().response("Drop", |mut res: Response| async move {
        res.delete_header("x-tyk-test");
        res
    });
    let gw = Gateway::new(router).api(Api::keyless("d").response("Drop"));
    let res = gw.get("/d/").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("X-Tyk-Test"), None);
    assert_eq!(res.header("Content-Type"), Some("application/json"));
    let sent = res.exchanges()[0].sent.response.as_ref().unwrap();
    assert!(
        sent.headers.contains_key("X-Tyk-Test"),
        "the upstream sent it"
    );
    let reply = res.exchanges()[0].reply.as_ref().unwrap();
    let reply = reply.response.as_ref().unwrap();
    assert!(
        !reply
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("x-tyk-test"))
    );
    assert!(
        !reply
            .multivalue_headers
            .iter()
            .any(|h| h.key.eq_ignore_ascii_case("x-tyk-test"))
    );
}

#[tokio::test]
async fn response_hook_appends_a_second_set_cookie() {
    let router = Router::new().response("Cookie", |mut res: Response| async move {
        res.append_header("Set-Cookie", "b=2");
        res
    });
    let gw = Gateway::new(router)
        .api(Api::keyless("c").response("Cookie"))
        .upstream(|_| {
            http::Response::builder()
                .status(200)
                .header("Set-Cookie", "a=1")
                .header("Content-Type", "text/plain")
                .body(Bytes::from_static(b"hello"))
                .unwrap()
        });
    let res = gw.get("/c/").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.header_all("set-cookie"), ["a=1", "b=2"]);
    assert_eq!(res.body_str(), "hello");
    // The first-value map is left as sent, so the gateway's sync does not
    // collapse the header.
    let x = &res.exchanges()[0];
    assert_eq!(
        x.reply.as_ref().unwrap().response.as_ref().unwrap().headers,
        x.sent.response.as_ref().unwrap().headers
    );
}

// ------------------------------------------------------------------ raw_body_only

#[derive(Default)]
struct Seen {
    /// (hook name, `body` string, raw body) per call.
    calls: Mutex<Vec<(String, String, Vec<u8>)>>,
}

#[tokio::test]
async fn raw_body_only_hooks_get_an_empty_body_string() {
    let seen = Arc::new(Seen::default());
    let (s1, s2) = (seen.clone(), seen.clone());
    let router = Router::new()
        .any_event(|_e: GatewayEvent| async {})
        .pre("Look", move |req: Request| {
            let body = req.view().body_text().to_string();
            s1.calls
                .lock()
                .unwrap()
                .push(("pre".into(), body, req.body().to_vec()));
            async move { req }
        })
        .response("Look", move |res: Response| {
            let r = res.object().response.as_ref().unwrap();
            s2.calls
                .lock()
                .unwrap()
                .push(("response".into(), r.body.clone(), res.body().to_vec()));
            async move { res }
        });
    for raw_body_only in [false, true] {
        seen.calls.lock().unwrap().clear();
        let hook = if raw_body_only {
            Hook::new("Look").raw_body_only()
        } else {
            Hook::new("Look")
        };
        let gw = Gateway::new(router.clone())
            .api(Api::keyless("b").pre(hook.clone()).response(hook))
            .upstream(|_| {
                http::Response::builder()
                    .status(200)
                    .body(Bytes::from_static(b"response text"))
                    .unwrap()
            });
        let res = send(&gw, http::Request::post("/b/"), "request text").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.body_str(), "response text");
        let calls = seen.calls.lock().unwrap().clone();
        let (want_req, want_res) = if raw_body_only {
            ("", "")
        } else {
            ("request text", "response text")
        };
        assert_eq!(
            calls,
            [
                (
                    "pre".to_string(),
                    want_req.to_string(),
                    b"request text".to_vec()
                ),
                (
                    "response".to_string(),
                    want_res.to_string(),
                    b"response text".to_vec()
                ),
            ],
            "raw_body_only={raw_body_only}"
        );
    }
}

// ------------------------------------------------------------------ config_data

#[derive(Debug, Deserialize)]
struct Cfg {
    k: String,
    z: u32,
    a: serde_json::Value,
}

/// What the config hook saw: the raw `config_data`, then `k` and `z` typed.
type SeenConfig = Option<(Option<String>, String, u32)>;

#[tokio::test]
async fn config_data_as_the_plugin_sees_it() {
    let seen: Arc<Mutex<SeenConfig>> = Arc::default();
    let s = seen.clone();
    let router = Router::new().pre("Cfg", move |req: Request| {
        let raw = req.view().config_data().map(str::to_string);
        let cfg = req.config::<Cfg>().expect("config_data fits Cfg");
        assert_eq!(cfg.a, json!({"y": true, "b": null}));
        *s.lock().unwrap() = Some((raw, cfg.k.clone(), cfg.z));
        async move { req }
    });
    let gw = Gateway::new(router).api(
        Api::keyless("cfg")
            .pre("Cfg")
            .config_data(json!({"z": 1, "k": "<v>&", "a": {"y": true, "b": null}})),
    );
    let res = gw.get("/cfg/").await.unwrap();
    assert_eq!(res.status(), 200);
    let (raw, k, z) = seen.lock().unwrap().clone().expect("the hook ran");
    // §3.3: Go encoding/json — compact, keys sorted, <>& as \u00XX.
    assert_eq!(
        raw.as_deref(),
        Some(r#"{"a":{"b":null,"y":true},"k":"\u003cv\u003e\u0026","z":1}"#)
    );
    assert_eq!((k.as_str(), z), ("<v>&", 1));
}

// ------------------------------------------------------------------ events

#[tokio::test]
async fn auth_failure_from_a_pre_hook_reaches_dispatch_event() {
    let events: Arc<Mutex<Vec<GatewayEvent>>> = Arc::default();
    let seen = events.clone();
    let router = Router::new()
        .pre("Deny", |req: Request| async move {
            req.error(StatusCode::FORBIDDEN, "no entry")
        })
        .event("audit", move |event: GatewayEvent| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(event);
            }
        });
    let gw = Gateway::new(router).api(
        Api::keyless("ev")
            .pre("Deny")
            .event_handler("AuthFailure", "audit"),
    );
    let res = get(&gw, "/ev/path?x=1", &[("Authorization", "presented-token")]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(error_message(&res), "no entry");
    assert_eq!(res.events().len(), 1);
    assert_eq!(res.events()[0].event_type, "AuthFailure");
    assert_eq!(res.events()[0].deliveries.len(), 1);
    assert_eq!(res.events()[0].deliveries[0].result, Ok(()));

    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "delivered once to the `audit` handler");
    let event = &events[0];
    assert_eq!(event.kind, EventKind::AuthFailure);
    assert_eq!(event.handler_name, "audit");
    assert_eq!(
        (event.api_id.as_str(), event.org_id.as_str()),
        ("ev", "default")
    );
    assert!(
        event.time.is_some(),
        "Go time string: {:?}",
        event.timestamp
    );
    let EventMeta::KeyFailure(meta) = &event.meta else {
        panic!("key-failure meta: {:?}", event.meta);
    };
    assert_eq!(meta.message, "Auth Failure");
    // r.URL.Path while the listen path is still present.
    assert_eq!(meta.path, "/ev/path");
    assert!(!meta.origin.is_empty());
    // §3.4 step 7: the event's key is the reply's session token; a Pre
    // hook's reply has no session, so it is empty (not the presented
    // Authorization header).
    assert_eq!(meta.key, "");
    let original = meta.originating_request_bytes().expect("base64");
    let original = String::from_utf8(original).expect("text request");
    assert!(
        original.starts_with("GET /ev/path?x=1 HTTP/1.1\r\n"),
        "{original:?}"
    );
}
