//! Tyk's Python-driver tests ported to gRPC (spec §5.3, P1–P10): they run
//! through the same gateway code (`BuildObject`, `ProcessRequest`) as gRPC;
//! here the Python bundles are one SDK plugin ([`Router`], API-scoped where
//! two bundles use the same hook name) and the gateway is the emulator.
//!
//! Every P-case is covered. Notes:
//! * P1: both API variants (`enable_coprocess_auth` and
//!   `custom_plugin_auth_enabled`) are loaded from classic definitions;
//!   `DELETE /tyk/keys/V` is `Gateway::delete_key`.
//! * P2: the Python hook sets the legacy `apply_policy_id`; the SDK's
//!   `SessionBuilder::policy` sets `apply_policies`, which the gateway applies
//!   the same way (§3.5 step 2).
//! * P10 runs twice: with typed SDK edits, and with the Python plugin's
//!   `return_overrides` fields set one by one (`response_error` versus
//!   `response_body` is what the scenario is about).
#![cfg(feature = "testkit")]

mod common;
use common::{error_message, get, send};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use tyk_plugin::session::SessionView;
use tyk_plugin::testkit::{Api, Gateway, IdExtractor, Key, Policy};
use tyk_plugin::{AuthRequest, DirectResponse, Request, Response, Router, Session};

/// The valid token of P1 (Tyk uses a random hex id).
const VALID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The token of P2 (`token_without_quota`).
const POLICY_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

// ------------------------------------------------------------------ the plugin

/// P1/P2 `MyAuthHook`.
async fn my_auth_hook(req: AuthRequest) -> AuthRequest {
    match req.header("Authorization") {
        Some(VALID) => {
            let session = Session::builder(VALID)
                .rate(1000, Duration::from_secs(1))
                .quota(1, Duration::from_secs(60))
                // No typed setter: the Python hook sets max_query_depth 1.
                .with_state(|s| s.max_query_depth = 1)
                .build()
                .expect("valid session");
            req.allow(session)
        }
        Some(POLICY_TOKEN) => {
            let mut builder = Session::builder(POLICY_TOKEN);
            if let Some(policy) = req.header("Policy").filter(|p| !p.is_empty()) {
                builder = builder.policy(policy);
            }
            req.allow(builder.build().expect("valid session"))
        }
        // No session, no token: the gateway answers 403.
        _ => req,
    }
}

/// P3 `MyPostHook`: the key's metadata, checked as the Python hook does.
async fn metadata_post_hook(req: Request) -> Request {
    let message = req.session().and_then(|state| {
        let session = SessionView::new(state);
        let Some(testkey) = session.meta_value("testkey") else {
            return Some("'testkey' not found in metadata");
        };
        if testkey.get("nestedkey").is_none() {
            return Some("'nestedkey' not found in nested metadata");
        }
        match session.meta_str("stringkey") {
            None => Some("'stringkey' not found in metadata"),
            Some("testvalue") => None,
            Some(_) => Some("'stringkey' value doesn't match"),
        }
    });
    match message {
        Some(m) => req.error(StatusCode::BAD_REQUEST, m),
        None => req,
    }
}

/// P4 `MyResponseHook`.
async fn new_body_response_hook(mut res: Response) -> Response {
    res.set_body("newbody");
    res
}

/// P5 `MyPreHook`.
async fn utf8_pre_hook(req: Request) -> Request {
    let content_type = req.header("Content-Type").unwrap_or_default().to_owned();
    // The informational `body` string (empty when the body is not UTF-8) has
    // no typed accessor; it is what the hook checks, so read it (read only).
    let body_string = req
        .object()
        .request
        .as_ref()
        .map(|r| r.body.clone())
        .unwrap_or_default();
    let raw_body_empty = req.body().is_empty();
    let failure = if content_type.contains("json") {
        if raw_body_empty {
            Some("Raw body field is empty")
        } else if !body_string.contains("{}") {
            Some("Body field doesn't match")
        } else {
            None
        }
    } else if content_type.contains("multipart") {
        if raw_body_empty {
            Some("Raw body field is empty")
        } else if !body_string.is_empty() {
            Some("Body field isn't empty")
        } else {
            None
        }
    } else {
        None
    };
    match failure {
        Some(m) => req.error(StatusCode::BAD_REQUEST, m),
        None => req,
    }
}

/// P6 `MyPostHook`: after URL rewrite and method transform, loop to
/// `test-api-2` with GET.
async fn rewrite_post_hook(mut req: Request) -> Request {
    if req.url() == "/test2" {
        if req.method() != "POST" {
            return req.error(StatusCode::INTERNAL_SERVER_ERROR, "'invalid method type'");
        }
        req.set_path("tyk://test-api-2/newpath")
            .expect("a tyk:// loop target is a valid path");
        req.set_method(Method::GET);
    }
    req
}

/// The P7–P9 grant: rate 1000/s, cached by the ID extractor for 60 s.
fn cached_session() -> Session {
    Session::builder(VALID)
        .rate(1000, Duration::from_secs(1))
        .cache_for(Duration::from_secs(60))
        .build()
        .expect("valid session")
}

/// P7–P9 `MyAuthHook`: grants on its first call only, if `identity` says so.
fn first_call_only(
    calls: Arc<AtomicUsize>,
    valid: fn(&AuthRequest) -> bool,
) -> impl Fn(AuthRequest) -> std::future::Ready<AuthRequest> + Send + Sync + 'static {
    move |req: AuthRequest| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(if valid(&req) && n < 2 {
            req.allow(cached_session())
        } else {
            req
        })
    }
}

/// `application/x-www-form-urlencoded` value of `name` (first one).
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name).then(|| percent_decode(v))?
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// P10 `MyRequestHook` with typed edits.
async fn override_typed(req: Request) -> Request {
    let Some(status) = req
        .query("status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
    else {
        return req;
    };
    let body = if req.query("response_body") == Some("true") {
        "foobar"
    } else {
        r#"{"foo": "bar"}"#
    };
    let raw = req.query("override").is_some_and(|o| !o.is_empty());
    if status.as_u16() >= 400 && !raw {
        req.respond(DirectResponse::error(status, body).header("X-Foo", "Bar"))
    } else {
        req.respond(
            DirectResponse::new(status)
                .header("X-Foo", "Bar")
                .body(body),
        )
    }
}

/// P10 `MyRequestHook` as the Python plugin writes it, field by field.
async fn override_raw_fields(mut req: Request) -> Request {
    let status = req.query("status").and_then(|s| s.parse::<i32>().ok());
    let response_body = req.query("response_body") == Some("true");
    let override_error = req.query("override").is_some_and(|o| !o.is_empty());
    // Raw on purpose: the scenario is about which override fields the
    // gateway reads (response_error overwriting response_body).
    let Some(ro) = req
        .object_mut()
        .request
        .as_mut()
        .and_then(|r| r.return_overrides.as_mut())
    else {
        return req;
    };
    ro.headers.insert("X-Foo".into(), "Bar".into());
    ro.response_code = status.unwrap_or(0);
    if response_body {
        ro.response_body = "foobar".into();
    } else {
        ro.response_error = r#"{"foo": "bar"}"#.into();
    }
    if override_error {
        ro.override_error = true;
    }
    req
}

/// The plugin, with the counters of the P7–P9 auth hooks.
struct Plugin {
    router: Router,
    p7_calls: Arc<AtomicUsize>,
    p8_calls: Arc<AtomicUsize>,
    p9_calls: Arc<AtomicUsize>,
}

fn plugin() -> Plugin {
    let (p7_calls, p8_calls, p9_calls) = (Arc::default(), Arc::default(), Arc::default());
    let router = Router::new()
        .auth("MyAuthHook", my_auth_hook)
        .post("MyPostHook", metadata_post_hook)
        .response("MyResponseHook", new_body_response_hook)
        .pre("MyPreHook", utf8_pre_hook)
        .pre("MyRequestHook", override_typed)
        .api("p6-test-api-1", |r| r.post("MyPostHook", rewrite_post_hook))
        .api("p10-raw", |r| r.pre("MyRequestHook", override_raw_fields))
        .api("api1", |r| {
            r.auth(
                "MyAuthHook",
                first_call_only(Arc::clone(&p7_calls), |req| {
                    req.header("Authorization") == Some(VALID)
                }),
            )
        })
        .api("api2", |r| {
            r.auth(
                "MyAuthHook",
                first_call_only(Arc::clone(&p8_calls), |req| {
                    form_value(req.body(), "auth").as_deref() == Some(VALID)
                }),
            )
        })
        .api("api3", |r| {
            r.auth(
                "MyAuthHook",
                first_call_only(Arc::clone(&p9_calls), |req| {
                    req.header("Authorization")
                        .and_then(|h| h.split_once('-'))
                        .is_some_and(|(_, n)| n == "12345")
                }),
            )
        });
    Plugin {
        router,
        p7_calls,
        p8_calls,
        p9_calls,
    }
}

// ------------------------------------------------------------------ helpers

// ------------------------------------------------------------------ P1–P10

#[tokio::test]
async fn p01_auth_hook_quota_and_key_deletion() {
    let variant = |api_id: &str, listen_path: &str, flag: &str| {
        let mut def = json!({
            "api_id": api_id,
            "org_id": "default",
            "use_keyless": false,
            "proxy": {"listen_path": listen_path, "strip_listen_path": true},
            "custom_middleware": {"driver": "grpc", "auth_check": {"name": "MyAuthHook"}},
        });
        def[flag] = json!(true);
        Api::from_classic_json(&def).expect("definition loads")
    };
    let gw = Gateway::new(plugin().router)
        .api(variant("p1a", "/test-api/", "enable_coprocess_auth"))
        .api(variant(
            "p1b",
            "/test-api-with-customplugin-auth-enabled/",
            "custom_plugin_auth_enabled",
        ));
    for (i, path) in ["/test-api/", "/test-api-with-customplugin-auth-enabled/"]
        .into_iter()
        .enumerate()
    {
        let res = get(&gw, path, &[("Authorization", VALID)]).await;
        assert_eq!(res.status(), 200, "{path}: {}", res.body_str());
        let res = get(&gw, path, &[("Authorization", "invalid_token")]).await;
        assert_eq!(res.status(), 403, "{path}");
        let res = get(&gw, path, &[("Authorization", VALID)]).await;
        assert_eq!(res.status(), 403, "{path}: quota of 1 used up");
        let stored = gw.key(VALID).expect("stored under the token");
        assert_eq!(
            (stored.quota_max, stored.rate, stored.per),
            (1, 1000.0, 1.0)
        );
        if i == 0 {
            // DELETE /tyk/keys/V ⇒ 200 "action":"deleted", so the next
            // variant starts afresh.
            assert!(gw.delete_key(VALID));
            assert!(gw.key(VALID).is_none());
        }
    }
}

#[tokio::test]
async fn p02_auth_hook_with_policy() {
    let api = Api::from_classic_json(&json!({
        "api_id": "p2",
        "org_id": "default",
        "use_keyless": false,
        "enable_coprocess_auth": true,
        "auth": {"auth_header_name": "Authorization"},
        "proxy": {"listen_path": "/test-api/", "strip_listen_path": true},
        "custom_middleware": {"driver": "grpc", "auth_check": {"name": "MyAuthHook"}},
    }))
    .expect("definition loads");
    let gw = Gateway::new(plugin().router)
        .api(api)
        .with_policy("p2-policy", Policy::new().quota(1, 60).access("p2"));
    let headers = [("authorization", POLICY_TOKEN), ("policy", "p2-policy")];
    let res = get(&gw, "/test-api/", &headers).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    let res = get(&gw, "/test-api/", &headers).await;
    assert_eq!(res.status(), 403, "the policy's quota of 1 is used up");
}

#[tokio::test]
async fn p03_post_hook_metadata() {
    let gw = Gateway::new(plugin().router)
        .api(
            Api::protected("p3")
                .listen_path("/test-api-2/")
                .post("MyPostHook"),
        )
        .with_key(
            "p3-key",
            Key::new()
                .meta("testkey", json!({"nestedkey": "nestedvalue"}))
                .meta("stringkey", "testvalue"),
        )
        .with_key("p3-other", Key::new().meta("stringkey", "other"));
    let res = get(&gw, "/test-api-2/", &[("Authorization", "p3-key")]).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    // The same hook rejects a key without the metadata (can fail).
    let res = get(&gw, "/test-api-2/", &[("Authorization", "p3-other")]).await;
    assert_eq!(res.status(), 400);
    assert_eq!(error_message(&res), "'testkey' not found in metadata");
}

#[tokio::test]
async fn p04_response_hook() {
    let gw = Gateway::new(plugin().router)
        .api(
            Api::protected("p4")
                .listen_path("/test-api-3/")
                .response("MyResponseHook"),
        )
        .with_key("p4-key", Key::new());
    let res = get(&gw, "/test-api-3/", &[("Authorization", "p4-key")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.body_str(), "newbody");
}

#[tokio::test]
async fn p05_pre_hook_utf8_and_binary_bodies() {
    let gw = Gateway::new(plugin().router).api(
        Api::keyless("p5")
            .listen_path("/test-api-2/")
            .pre("MyPreHook"),
    );
    // Multipart with a binary file part (not UTF-8).
    let boundary = "p5-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"test.bin\"\r\n\r\n"
    )
    .into_bytes();
    body.extend((0u8..=255).rev().cycle().take(160));
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"testfield\"\r\n\r\ntestvalue\r\n--{boundary}--\r\n")
            .as_bytes(),
    );
    assert!(std::str::from_utf8(&body).is_err());
    let res = send(
        &gw,
        http::Request::get("/test-api-2/").header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        ),
        body,
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    let res = send(
        &gw,
        http::Request::get("/test-api-2/").header("Content-Type", "application/json"),
        "{}",
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    // The hook can fail: a JSON body without "{}".
    let res = send(
        &gw,
        http::Request::get("/test-api-2/").header("Content-Type", "application/json"),
        "[]",
    )
    .await;
    assert_eq!(res.status(), 400);
    assert_eq!(error_message(&res), "Body field doesn't match");
}

#[tokio::test]
async fn p06_post_hook_after_url_rewrite_and_method_transform() {
    let gw = Gateway::new(plugin().router)
        .api(
            Api::keyless("p6-test-api-1")
                .listen_path("/test-api-1/")
                .url_rewrite("/get", "GET", "/test2")
                .method_transform("/get", "GET", "POST")
                .post("MyPostHook"),
        )
        .api(
            Api::keyless("p6-test-api-2")
                .name("test-api-2")
                .listen_path("/test-api-2/"),
        );
    let res = gw.get("/test-api-1/get").await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert!(res.body_str().contains("newpath"), "{}", res.body_str());
    assert!(res.body_str().contains("GET"), "{}", res.body_str());
    let res = gw.get("/test-api-1/post").await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert!(!res.body_str().contains("newpath"), "{}", res.body_str());
}

/// A custom-auth API at `/` with an ID extractor, as in Tyk's tests.
fn extractor_api(api_id: &str, extractor: IdExtractor) -> Api {
    Api::custom_auth(api_id, "MyAuthHook")
        .listen_path("/")
        .id_extractor(extractor)
}

#[tokio::test]
async fn p07_id_extractor_header_value() {
    let p = plugin();
    let gw = Gateway::new(p.router).api(extractor_api(
        "api1",
        IdExtractor::header_value("Authorization"),
    ));
    let res = get(&gw, "/", &[("Authorization", VALID)]).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    let res = get(&gw, "/", &[("Authorization", VALID)]).await;
    assert_eq!(res.status(), 200, "served from the ID-extractor cache");
    assert!(res.exchanges().is_empty());
    let res = get(&gw, "/", &[("Authorization", "invalid_token")]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(p.p7_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn p08_id_extractor_form_value() {
    let p = plugin();
    let gw = Gateway::new(p.router).api(extractor_api("api2", IdExtractor::form_value("auth")));
    let post = |token: &str| {
        send(
            &gw,
            http::Request::post("/").header("Content-Type", "application/x-www-form-urlencoded"),
            format!("auth={token}"),
        )
    };
    let res = post(VALID).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    let res = post(VALID).await;
    assert_eq!(res.status(), 200, "served from the ID-extractor cache");
    let res = post("invalid_token").await;
    assert_eq!(res.status(), 403);
    assert_eq!(p.p8_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn p09_id_extractor_header_regex() {
    let p = plugin();
    let gw = Gateway::new(p.router).api(extractor_api(
        "api3",
        IdExtractor::header_regex("Authorization", "[0-9]+", 0),
    ));
    let res = get(&gw, "/", &[("Authorization", "prefix-12345")]).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    let res = get(&gw, "/", &[("Authorization", "prefix-12345")]).await;
    assert_eq!(res.status(), 200, "served from the ID-extractor cache");
    let res = get(&gw, "/", &[("Authorization", "prefix-123456")]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(p.p9_calls.load(Ordering::SeqCst), 2);
}

/// How a P10 body is checked.
enum Expect {
    /// Exactly this body.
    Raw(&'static str),
    /// Tyk's JSON error template with this message.
    Error(&'static str),
}

async fn p10_table(gw: &Gateway, listen_path: &str) {
    const CUSTOM_ERROR: &str = r#"{"foo": "bar"}"#;
    let cases = [
        ("?status=200", 200, Expect::Raw(CUSTOM_ERROR)),
        ("?status=200&response_body=true", 200, Expect::Raw("foobar")),
        ("?status=400", 400, Expect::Error(CUSTOM_ERROR)),
        (
            "?status=400&response_body=true",
            400,
            Expect::Error("foobar"),
        ),
        ("?status=401", 401, Expect::Error(CUSTOM_ERROR)),
        ("?status=400&override=true", 400, Expect::Raw(CUSTOM_ERROR)),
        (
            "?status=400&override=true&response_body=true",
            400,
            Expect::Raw("foobar"),
        ),
        ("?status=401&override=true", 401, Expect::Raw(CUSTOM_ERROR)),
    ];
    for (query, status, expect) in cases {
        let path = format!("{listen_path}{query}");
        let res = gw.get(&path).await.unwrap();
        assert_eq!(res.status(), status, "{path}: {}", res.body_str());
        assert_eq!(res.header("X-Foo"), Some("Bar"), "{path}");
        match expect {
            Expect::Raw(body) => assert_eq!(res.body_str(), body, "{path}"),
            Expect::Error(message) => assert_eq!(error_message(&res), message, "{path}"),
        }
        assert!(res.upstream_request().is_none(), "{path}: upstream called");
    }
}

#[tokio::test]
async fn p10_return_overrides() {
    let gw = Gateway::new(plugin().router).api(
        Api::keyless("p10")
            .listen_path("/test/")
            .pre("MyRequestHook"),
    );
    p10_table(&gw, "/test/").await;
}

#[tokio::test]
async fn p10_return_overrides_raw_fields() {
    let gw = Gateway::new(plugin().router).api(
        Api::keyless("p10-raw")
            .listen_path("/test/")
            .pre("MyRequestHook"),
    );
    p10_table(&gw, "/test/").await;
}
