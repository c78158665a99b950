//! The router and the hook contexts, through the public API, on encoded
//! Objects as the server hands them over.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use prost::Message;
use tonic::Code;
use tyk_plugin::coprocess::{
    Header, HookType, MiniRequestObject, Object, ResponseObject, ReturnOverrides,
};
use tyk_plugin::{
    AuthRequest, DirectResponse, Dispatcher, PluginError, Request, Response, Router, Session,
};

fn request_object(hook: HookType, name: &str, api: &str) -> Object {
    Object {
        hook_type: hook as i32,
        hook_name: name.into(),
        request: Some(MiniRequestObject {
            headers: [
                ("Content-Type", "application/json"),
                ("Host", "gw:8080"),
                ("X-Keep", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            url: "/api/items?a=1&b=2".into(),
            params: [("a", "1"), ("b", "2")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            method: "POST".into(),
            request_uri: "/api/items?a=1&b=2".into(),
            scheme: "http".into(),
            body: "{\"a\":1}".into(),
            raw_body: Bytes::from_static(b"{\"a\":1}"),
            ..Default::default()
        }),
        spec: [
            ("APIID", api),
            ("OrgID", "org"),
            ("config_data", "{\"greeting\":\"hi\"}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    }
}

fn response_object(name: &str) -> Object {
    let mut o = request_object(HookType::Response, name, "api1");
    o.session = Some(Default::default());
    o.response = Some(ResponseObject {
        status_code: 200,
        raw_body: Bytes::from_static(b"hello"),
        body: "hello".into(),
        headers: [
            ("Content-Length", "5"),
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        multivalue_headers: vec![
            Header {
                key: "Set-Cookie".into(),
                values: vec!["a=1".into(), "b=2".into()],
            },
            Header {
                key: "Content-Type".into(),
                values: vec!["text/plain".into()],
            },
            Header {
                key: "Content-Length".into(),
                values: vec!["5".into()],
            },
        ],
    });
    o
}

async fn call(router: &Router, obj: &Object) -> Result<(Bytes, Object), tonic::Status> {
    let reply = router.dispatch(Bytes::from(obj.encode_to_vec())).await?;
    let decoded = Object::decode(&reply[..]).expect("reply decodes");
    Ok((reply, decoded))
}

fn overrides(o: &Object) -> &ReturnOverrides {
    o.request
        .as_ref()
        .unwrap()
        .return_overrides
        .as_ref()
        .unwrap()
}

#[tokio::test]
async fn unrouted_and_untouched_objects_come_back_byte_for_byte() {
    async fn look(req: Request) -> Request {
        assert_eq!(req.header("content-type"), Some("application/json"));
        req
    }
    let router = Router::new().pre("Look", look);
    for name in ["Other", "Look"] {
        let obj = request_object(HookType::Pre, name, "api1");
        let mut wire = obj.encode_to_vec();
        // An unknown field (a newer gateway's) must survive too.
        wire.extend_from_slice(&[0xf8, 0x06, 0x01]); // field 111, varint 1
        let reply = router.dispatch(Bytes::from(wire.clone())).await.unwrap();
        assert_eq!(&reply[..], &wire[..], "{name}");
    }
}

#[tokio::test]
async fn request_edits_set_exactly_the_fields_the_gateway_applies() {
    async fn edit(mut req: Request) -> Result<Request, PluginError> {
        req.set_header("X-Added", "yes")
            .delete_header("x-keep")
            .set_param("c", "3")
            .delete_param("a")
            .set_body(&b"{\"b\":2}"[..])
            .set_method(http::Method::PUT);
        req.set_path("/api/v2/items")
            .map_err(|e| PluginError::internal(e.to_string()))?;
        Ok(req)
    }
    let router = Router::new().pre("Edit", edit);
    let (_, o) = call(&router, &request_object(HookType::Pre, "Edit", "api1"))
        .await
        .unwrap();
    let r = o.request.as_ref().unwrap();
    assert_eq!(
        r.set_headers.get("X-Added").map(String::as_str),
        Some("yes")
    );
    assert_eq!(r.delete_headers, vec!["x-keep".to_string()]);
    assert_eq!(r.add_params.get("c").map(String::as_str), Some("3"));
    assert_eq!(r.delete_params, vec!["a".to_string()]);
    assert_eq!(&r.raw_body[..], b"{\"b\":2}");
    assert_eq!(r.body, "{\"b\":2}", "body kept consistent with raw_body");
    assert_eq!(r.method, "PUT");
    assert_eq!(
        r.url, "/api/v2/items?a=1&b=2",
        "the query stays: query edits go through params"
    );
    assert_eq!(overrides(&o).response_code, -1);
    // Read views follow the edits.
    assert_eq!(r.headers.get("X-Added").map(String::as_str), Some("yes"));
    assert!(!r.headers.contains_key("X-Keep"));
}

#[tokio::test]
async fn invalid_paths_are_refused_before_they_reach_the_gateway() {
    let router = Router::new().pre("P", |mut req: Request| async move {
        for bad in ["", "relative", "/a?b=1", "/a b", "http://x/y"] {
            assert!(req.set_path(bad).is_err(), "{bad:?}");
        }
        req.set_path("tyk://other-api/x").unwrap();
        req
    });
    let (_, o) = call(&router, &request_object(HookType::Pre, "P", "api1"))
        .await
        .unwrap();
    assert_eq!(o.request.unwrap().url, "tyk://other-api/x?a=1&b=2");
}

#[tokio::test]
async fn direct_responses_and_errors_follow_the_return_overrides_rules() {
    let router = Router::new()
        .pre("Redirect", |req: Request| async move {
            req.respond(DirectResponse::redirect("/login"))
        })
        .pre("Teapot", |req: Request| async move {
            req.respond(
                DirectResponse::json(StatusCode::IM_A_TEAPOT, &serde_json::json!({"tea": true}))
                    .unwrap(),
            )
        })
        .pre("Err", |req: Request| async move {
            req.error(StatusCode::UNAUTHORIZED, "no entry")
        });
    let (_, o) = call(&router, &request_object(HookType::Pre, "Redirect", "a"))
        .await
        .unwrap();
    let ro = overrides(&o);
    assert_eq!(
        (ro.response_code, ro.headers["Location"].as_str()),
        (302, "/login")
    );
    assert!(!ro.override_error && ro.response_error.is_empty());

    let (_, o) = call(&router, &request_object(HookType::Pre, "Teapot", "a"))
        .await
        .unwrap();
    let ro = overrides(&o);
    assert_eq!(ro.response_code, 418);
    assert!(
        ro.override_error,
        "a direct 4xx is written raw, not through the error template"
    );
    assert_eq!(ro.response_body, "{\"tea\":true}");
    assert_eq!(ro.headers["Content-Type"], "application/json");

    let (_, o) = call(&router, &request_object(HookType::Pre, "Err", "a"))
        .await
        .unwrap();
    let ro = overrides(&o);
    assert_eq!(
        (
            ro.response_code,
            ro.response_body.as_str(),
            ro.override_error
        ),
        (401, "no entry", false)
    );
}

#[tokio::test]
async fn routes_for_an_api_take_precedence() {
    let router = Router::new()
        .pre("H", |mut r: Request| async move {
            r.set_header("X-Route", "any");
            r
        })
        .api("special", |r| {
            r.pre("H", |mut r: Request| async move {
                r.set_header("X-Route", "special");
                r
            })
        });
    for (api, want) in [("special", "special"), ("other", "any")] {
        let (_, o) = call(&router, &request_object(HookType::Pre, "H", api))
            .await
            .unwrap();
        assert_eq!(o.request.unwrap().set_headers["X-Route"], want, "{api}");
    }
    // The same name under another hook type is another route.
    let obj = request_object(HookType::Post, "H", "special");
    let (reply, _) = call(&router, &obj).await.unwrap();
    assert_eq!(&reply[..], &obj.encode_to_vec()[..]);
    assert_eq!(router.routes().len(), 2);
}

#[test]
#[should_panic(expected = "registered twice")]
fn registering_a_route_twice_panics() {
    async fn h(r: Request) -> Request {
        r
    }
    let _ = Router::new().pre("Same", h).pre("Same", h);
}

#[test]
#[should_panic(expected = "registered twice")]
fn registering_an_api_route_twice_panics() {
    async fn h(r: Request) -> Request {
        r
    }
    let _ = Router::new()
        .api("a", |r| r.post("X", h))
        .api("a", |r| r.post("X", h));
}

#[tokio::test]
async fn handler_errors_and_panics_become_grpc_statuses() {
    let router = Router::new()
        .pre("Fails", |_req: Request| async move {
            Err::<Request, _>(PluginError::unavailable("backend down"))
        })
        .pre("Panics", |_req: Request| async move {
            panic!("boom");
            #[allow(unreachable_code)]
            _req
        });
    let e = call(&router, &request_object(HookType::Pre, "Fails", "a"))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::Unavailable, "backend down"));
    let e = call(&router, &request_object(HookType::Pre, "Panics", "a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert!(e.message().contains("boom"), "{}", e.message());
}

#[tokio::test]
async fn auth_allow_sets_the_session_and_the_token_deny_uses_the_template() {
    let router = Router::new().auth("Auth", |req: AuthRequest| async move {
        match req.header("authorization") {
            Some("abc") => {
                let s = Session::builder("abc")
                    .rate(100.0, Duration::from_secs(60))
                    .build()
                    .unwrap();
                req.allow(s)
            }
            _ => req.deny(StatusCode::FORBIDDEN, "invalid token"),
        }
    });
    let mut obj = request_object(HookType::CustomKeyCheck, "Auth", "a");
    obj.request
        .as_mut()
        .unwrap()
        .headers
        .insert("Authorization".into(), "abc".into());
    let (_, o) = call(&router, &obj).await.unwrap();
    assert_eq!(o.metadata["token"], "abc");
    let s = o.session.as_ref().unwrap();
    assert_eq!(s.metadata["token"], "abc");
    assert_eq!(s.rate, 100.0);
    assert_eq!(overrides(&o).response_code, -1);

    let (_, o) = call(
        &router,
        &request_object(HookType::CustomKeyCheck, "Auth", "a"),
    )
    .await
    .unwrap();
    assert!(o.session.is_none());
    let ro = overrides(&o);
    assert_eq!(
        (
            ro.response_code,
            ro.response_body.as_str(),
            ro.override_error
        ),
        (403, "invalid token", false)
    );
}

#[tokio::test]
async fn response_edits_keep_both_header_fields_consistent() {
    let router = Router::new().response("R", |mut res: Response| async move {
        assert_eq!(res.header("set-cookie"), Some("a=1"));
        assert_eq!(res.header_values("Set-Cookie"), vec!["a=1", "b=2"]);
        assert_eq!(res.request().api_id(), "api1");
        res.set_header("x-new", "1")
            .set_header("content-type", "application/json")
            .append_header("Set-Cookie", "c=3")
            .delete_header("X-Missing")
            .set_body(&b"{\"ok\":true}"[..])
            .set_status(StatusCode::CREATED);
        res
    });
    let (_, o) = call(&router, &response_object("R")).await.unwrap();
    let r = o.response.unwrap();
    assert_eq!(r.status_code, 201);
    assert_eq!(&r.raw_body[..], b"{\"ok\":true}");
    assert_eq!(r.body, "{\"ok\":true}");
    let mv = |k: &str| {
        r.multivalue_headers
            .iter()
            .find(|h| h.key == k)
            .map(|h| h.values.clone())
    };
    assert_eq!(mv("Set-Cookie").unwrap(), vec!["a=1", "b=2", "c=3"]);
    assert_eq!(r.headers["Set-Cookie"], "a=1", "first value unchanged");
    assert_eq!(mv("Content-Type").unwrap(), vec!["application/json"]);
    assert_eq!(
        r.headers["Content-Type"], "application/json",
        "the gateway's spelling is kept"
    );
    assert_eq!(mv("x-new").unwrap(), vec!["1"]);
    assert_eq!(r.headers["x-new"], "1");
    assert_eq!(
        mv("Content-Length").unwrap(),
        vec!["11"],
        "Content-Length follows the body"
    );
    // Every multivalue key is in the first-value map and vice versa, so the
    // gateway's header sync drops nothing.
    let mut a: Vec<&String> = r.headers.keys().collect();
    let mut b: Vec<&String> = r.multivalue_headers.iter().map(|h| &h.key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[tokio::test]
async fn response_header_deletion_removes_both_fields() {
    let router = Router::new().response("D", |mut res: Response| async move {
        res.delete_header("set-cookie");
        res
    });
    let (_, o) = call(&router, &response_object("D")).await.unwrap();
    let r = o.response.unwrap();
    assert!(!r.headers.contains_key("Set-Cookie"));
    assert!(r.multivalue_headers.iter().all(|h| h.key != "Set-Cookie"));
}

#[tokio::test]
async fn the_safety_layer_repairs_replies_that_would_break_the_gateway() {
    let router = Router::new()
        .pre("NoRequest", |mut req: Request| async move {
            req.object_mut().request = None;
            req
        })
        .pre("NoOverrides", |mut req: Request| async move {
            let r = req.object_mut().request.as_mut().unwrap();
            r.return_overrides = None;
            r.url.clear();
            r.method.clear();
            req
        })
        .pre("BadStatus", |mut req: Request| async move {
            req.object_mut()
                .request
                .as_mut()
                .unwrap()
                .return_overrides
                .as_mut()
                .unwrap()
                .response_code = 42;
            req
        })
        .response("NoResponse", |mut res: Response| async move {
            res.object_mut().response = None;
            res
        })
        .response("ZeroStatus", |mut res: Response| async move {
            res.object_mut().response.as_mut().unwrap().status_code = 0;
            res
        });
    let original = request_object(HookType::Pre, "NoRequest", "a");
    let (_, o) = call(&router, &original).await.unwrap();
    assert_eq!(o.request, original.request);

    let original = request_object(HookType::Pre, "NoOverrides", "a");
    let (_, o) = call(&router, &original).await.unwrap();
    let r = o.request.as_ref().unwrap();
    assert_eq!(overrides(&o).response_code, -1);
    assert_eq!(
        (r.url.as_str(), r.method.as_str()),
        ("/api/items?a=1&b=2", "POST")
    );

    let (_, o) = call(&router, &request_object(HookType::Pre, "BadStatus", "a"))
        .await
        .unwrap();
    assert_eq!(overrides(&o).response_code, 500);

    let original = response_object("NoResponse");
    let (_, o) = call(&router, &original).await.unwrap();
    assert_eq!(o.response, original.response);

    let (_, o) = call(&router, &response_object("ZeroStatus")).await.unwrap();
    assert_eq!(o.response.unwrap().status_code, 200);
}

#[tokio::test]
async fn typed_config_data_is_available_to_handlers() {
    #[derive(serde::Deserialize)]
    struct Conf {
        greeting: String,
    }
    let router = Router::new().pre("C", |mut req: Request| async move {
        let greeting = req
            .config::<Conf>()
            .map(|c| c.greeting.clone())
            .unwrap_or_default();
        req.set_header("X-Greeting", greeting);
        req
    });
    let (_, o) = call(&router, &request_object(HookType::Pre, "C", "a"))
        .await
        .unwrap();
    assert_eq!(o.request.unwrap().set_headers["X-Greeting"], "hi");
}

/// A handler type with state, implementing `Hook` itself.
struct Counter(std::sync::atomic::AtomicU32);

impl tyk_plugin::Hook<Request> for Counter {
    fn call(&self, mut req: Request) -> tyk_plugin::BoxFuture<Result<Request, PluginError>> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        req.set_header("X-Count", n.to_string());
        Box::pin(async move { Ok(req) })
    }
}

#[tokio::test]
async fn handler_types_with_state_work_too() {
    let router = Router::new().post("Count", Counter(Default::default()));
    for want in ["1", "2"] {
        let (_, o) = call(&router, &request_object(HookType::Post, "Count", "a"))
            .await
            .unwrap();
        assert_eq!(o.request.unwrap().set_headers["X-Count"], want);
    }
}

#[tokio::test]
async fn unknown_fields_survive_an_edit() {
    // Unknown fields inside request (field 40) and at the top level (99), as
    // a newer gateway would send them.
    let obj = request_object(HookType::Pre, "Edit", "a");
    let mut request = obj.request.clone().unwrap().encode_to_vec();
    request.extend_from_slice(&[0xc0, 0x02, 0x07]); // field 40, varint 7
    let mut wire = Object {
        request: None,
        ..obj
    }
    .encode_to_vec();
    prost::encoding::bytes::encode(3, &request, &mut wire);
    wire.extend_from_slice(&[0x98, 0x06, 0x2a]); // field 99, varint 42

    let router = Router::new().pre("Edit", |mut req: Request| async move {
        req.set_header("X-Edited", "1");
        req
    });
    let reply = router.dispatch(Bytes::from(wire)).await.unwrap();
    let decoded = Object::decode(&reply[..]).unwrap();
    assert_eq!(
        decoded.request.as_ref().unwrap().set_headers["X-Edited"],
        "1"
    );
    let found = tyk_plugin::coprocess::unknown::collect(&reply)
        .unwrap()
        .expect("unknown fields kept");
    assert_eq!(found.len(), 6, "two 3-byte unknown fields");
    // In the right places: the top-level one at the end, the nested one
    // inside request.
    assert!(reply.ends_with(&[0x98, 0x06, 0x2a]));
    let req_bytes = {
        let mut r = &reply[..];
        let mut found = None;
        while !r.is_empty() {
            let (tag, wt) = prost::encoding::decode_key(&mut r).unwrap();
            if tag == 3 {
                let len = prost::encoding::decode_varint(&mut r).unwrap() as usize;
                found = Some(r[..len].to_vec());
                r = &r[len..];
            } else {
                prost::encoding::skip_field(wt, tag, &mut r, Default::default()).unwrap();
            }
        }
        found.unwrap()
    };
    assert!(
        req_bytes.ends_with(&[0xc0, 0x02, 0x07]),
        "field 40 stays inside request"
    );
}

#[tokio::test]
async fn events_are_routed_by_handler_name() {
    use std::sync::{Arc, Mutex};
    use tyk_plugin::{EventKind, GatewayEvent};
    let seen: Arc<Mutex<Vec<(String, EventKind)>>> = Default::default();
    let (a, b) = (seen.clone(), seen.clone());
    let router = Router::new()
        .event("on_auth_failure", move |e: GatewayEvent| {
            let a = a.clone();
            async move { a.lock().unwrap().push(("named".into(), e.kind)) }
        })
        .any_event(move |e: GatewayEvent| {
            let b = b.clone();
            async move {
                b.lock()
                    .unwrap()
                    .push((format!("any:{}", e.handler_name), e.kind));
                Err::<(), _>(PluginError::internal("sink down"))
            }
        });
    let payload = |handler: &str, kind: &str| {
        serde_json::json!({"message": {"Type": kind, "Meta": {}, "TimeStamp": ""}, "handler_name": handler, "spec": {"APIID": "1"}})
            .to_string()
    };
    router
        .dispatch_event(payload("on_auth_failure", "AuthFailure"))
        .await
        .unwrap();
    let err = router
        .dispatch_event(payload("other", "KeyExpired"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    // Not an event at all: logged and ignored, never an error.
    router.dispatch_event("not json".into()).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("named".to_string(), EventKind::AuthFailure),
            ("any:other".to_string(), EventKind::KeyExpired)
        ]
    );
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(d);
        Ok(d.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_unrouted_hook_is_warned_about_once_per_name() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let router = Router::new();
    for name in ["A", "A", "B", "A"] {
        call(&router, &request_object(HookType::Pre, name, "api"))
            .await
            .unwrap();
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("no handler registered"))
        .collect();
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(
        warnings[0].contains("hook_name=\"A\"") && warnings[1].contains("hook_name=\"B\""),
        "{text}"
    );
}
