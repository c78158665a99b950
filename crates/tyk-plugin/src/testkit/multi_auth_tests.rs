//! Multi-authentication (custom auth plus standard token auth), the base
//! identity and global response headers with `$tyk_meta.*`.

use bytes::Bytes;
use prost::Message;
use serde_json::json;
use tonic::Status;
use tyk_coprocess::{HookType, Object, SessionState};

use super::{Api, BaseIdentity, Gateway, Key, TestResponse};
use crate::{BoxFuture, Dispatcher};

/// Grants `Authorization: abc` (rate 100 per 60, `sessionMetaKey` =
/// `custom`), rejects any other value with 400; other hooks echo.
#[derive(Clone, Copy)]
struct AuthPlugin;

impl Dispatcher for AuthPlugin {
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        let mut o = Object::decode(object).expect("the emulator sends valid Objects");
        if o.hook_type == HookType::CustomKeyCheck as i32 {
            let request = o.request.as_mut().expect("request present");
            let token = request
                .headers
                .get("Authorization")
                .cloned()
                .unwrap_or_default();
            if token == "abc" {
                o.metadata.insert("token".into(), token);
                o.session = Some(SessionState {
                    rate: 100.0,
                    per: 60.0,
                    metadata: [("sessionMetaKey".to_string(), "custom".to_string())].into(),
                    ..Default::default()
                });
            } else {
                let ro = request
                    .return_overrides
                    .as_mut()
                    .expect("return_overrides present");
                ro.response_code = 400;
                ro.response_error = "invalid token".into();
            }
        }
        Box::pin(std::future::ready(Ok(Bytes::from(o.encode_to_vec()))))
    }
}

const T: &str = "key-t";

/// The API of Tyk's `TestGRPC_MultiAuthentication` with `base`.
fn multi_auth_api(base: BaseIdentity) -> Api {
    Api::custom_auth("m", "auth")
        .listen_path("/")
        .use_standard_auth(true)
        .token_header("AuthToken")
        .base_identity_provided_by(base)
        .global_response_header("sessionMetaKey", "$tyk_meta.sessionMetaKey")
}

fn key_t() -> Key {
    Key::new()
        .rate(200.0, 60.0)
        .meta("sessionMetaKey", "token")
        .access("m")
}

fn gateway(api: Api) -> Gateway {
    Gateway::new(AuthPlugin).api(api).with_key(T, key_t())
}

async fn get(gw: &Gateway, headers: &[(&str, &str)]) -> TestResponse {
    let mut req = http::Request::get("/x");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    gw.send(req.body(Bytes::new()).expect("valid request"))
        .await
        .expect("the emulator handles the request")
}

async fn both(gw: &Gateway) -> TestResponse {
    get(gw, &[("Authorization", "abc"), ("AuthToken", T)]).await
}

fn error_of(res: &TestResponse) -> String {
    res.json().expect("JSON error template")["error"]
        .as_str()
        .expect("error message")
        .to_string()
}

#[tokio::test]
async fn custom_auth_base_identity_keeps_and_stores_the_plugin_session() {
    let gw = gateway(multi_auth_api(BaseIdentity::CustomAuth));
    let res = both(&gw).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert_eq!(res.header("sessionMetaKey"), Some("custom"));
    assert_eq!(res.exchanges().len(), 1, "the auth hook ran");
    let stored = gw.key("abc").expect("the plugin's session is stored");
    assert_eq!(stored.rate, 100.0);
    assert_eq!(gw.key(T).expect("T still stored").rate, 200.0);
}

#[tokio::test]
async fn auth_token_base_identity_discards_the_plugin_session() {
    let gw = gateway(multi_auth_api(BaseIdentity::AuthToken));
    let res = both(&gw).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert_eq!(res.header("sessionMetaKey"), Some("token"));
    assert_eq!(res.exchanges().len(), 1, "the auth hook still ran");
    assert!(
        gw.key("abc").is_none(),
        "the plugin's session is not stored"
    );
    assert_eq!(gw.key(T).expect("T stored").rate, 200.0);
}

#[tokio::test]
async fn unset_base_identity_stores_the_plugin_session_and_token_auth_wins() {
    let gw = gateway(multi_auth_api(BaseIdentity::Unset));
    let res = both(&gw).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    // Both set the session; token auth runs last.
    assert_eq!(res.header("sessionMetaKey"), Some("token"));
    assert!(gw.key("abc").is_some(), "custom auth saved its session");
}

#[tokio::test]
async fn other_base_identity_leaves_no_session() {
    let gw = gateway(multi_auth_api(BaseIdentity::from_name("jwt_claim")));
    let res = both(&gw).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert_eq!(res.header("sessionMetaKey"), Some(""));
    assert!(gw.key("abc").is_none());
}

#[tokio::test]
async fn both_auth_methods_must_pass() {
    for base in [BaseIdentity::CustomAuth, BaseIdentity::AuthToken] {
        let gw = gateway(multi_auth_api(base.clone()));
        // A bad custom token stops the request before token auth.
        let res = get(&gw, &[("Authorization", "nope"), ("AuthToken", T)]).await;
        assert_eq!(res.status(), 400, "{base:?}");
        assert_eq!(error_of(&res), "invalid token");
        // A good custom token with an unknown key fails token auth.
        let res = get(&gw, &[("Authorization", "abc"), ("AuthToken", "unknown")]).await;
        assert_eq!(res.status(), 403, "{base:?}");
        assert_eq!(error_of(&res), "Access to this API has been disallowed");
        let failure = res.events().last().expect("AuthFailure fired");
        assert_eq!(failure.event_type, "AuthFailure");
        assert_eq!(failure.meta()["Key"], "unknown", "the token auth's key");
        // Token auth reads its own header, not Authorization.
        let res = get(&gw, &[("Authorization", "abc")]).await;
        assert_eq!(res.status(), 401, "{base:?}");
        assert_eq!(error_of(&res), "Authorization field missing");
        assert!(res.upstream_request().is_none());
    }
}

#[tokio::test]
async fn later_checks_apply_to_the_base_identity_session() {
    // T allows one request a minute; the plugin's session 100.
    let limited = || Key::new().rate(1.0, 60.0).access("m");
    let gw = Gateway::new(AuthPlugin)
        .api(multi_auth_api(BaseIdentity::AuthToken))
        .with_key(T, limited());
    assert_eq!(both(&gw).await.status(), 200);
    assert_eq!(both(&gw).await.status(), 429, "T's rate limit applies");

    let gw = Gateway::new(AuthPlugin)
        .api(multi_auth_api(BaseIdentity::CustomAuth))
        .with_key(T, limited());
    assert_eq!(both(&gw).await.status(), 200);
    assert_eq!(
        both(&gw).await.status(),
        200,
        "only the plugin's session counts"
    );

    // T without access to the API: refused only when T is the session.
    let gw = Gateway::new(AuthPlugin)
        .api(multi_auth_api(BaseIdentity::AuthToken))
        .with_key(T, Key::new().access("other"));
    assert_eq!(both(&gw).await.status(), 403);
    let gw = Gateway::new(AuthPlugin)
        .api(multi_auth_api(BaseIdentity::CustomAuth))
        .with_key(T, Key::new().access("other"));
    assert_eq!(both(&gw).await.status(), 200);
}

#[tokio::test]
async fn without_use_standard_auth_the_token_is_not_checked() {
    let api = multi_auth_api(BaseIdentity::AuthToken).use_standard_auth(false);
    assert!(!api.runs_token_auth());
    let gw = gateway(api);
    let res = get(&gw, &[("Authorization", "abc")]).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    // Custom auth alone, but not the base identity: no session at all.
    assert_eq!(res.header("sessionMetaKey"), Some(""));
}

#[tokio::test]
async fn global_response_headers_substitute_and_remove() {
    let gw = Gateway::new(crate::Echo)
        .api(
            Api::protected("p")
                .listen_path("/")
                .global_response_header("X-Plan", "plan=$tyk_meta.plan; $tyk_meta.plan")
                .global_response_header("X-Missing", "[$tyk_meta.nothing]")
                .global_response_header("X-Static", "v")
                .remove_global_response_header("x-tyk-test"),
        )
        .with_key("k", Key::new().meta("plan", "gold").meta("n", json!(5)));
    let res = get(&gw, &[("Authorization", "k")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("X-Plan"), Some("plan=gold; gold"));
    assert_eq!(
        res.header("X-Missing"),
        Some("[]"),
        "a missing key is empty"
    );
    assert_eq!(res.header("X-Static"), Some("v"));
    assert!(
        res.header("X-Tyk-Test").is_none(),
        "removed from the upstream's"
    );
    assert_eq!(res.header_all("X-Plan").len(), 1);

    // Keyless: no session, so every `$tyk_meta.*` is empty, the header is set.
    let gw = Gateway::new(crate::Echo).api(
        Api::keyless("k")
            .listen_path("/")
            .global_response_header("X-Plan", "$tyk_meta.plan"),
    );
    let res = get(&gw, &[]).await;
    assert_eq!(res.header("X-Plan"), Some(""));

    // Error responses do not go through the response processors.
    let gw = Gateway::new(crate::Echo).api(
        Api::protected("p")
            .listen_path("/")
            .global_response_header("X-Plan", "x"),
    );
    let res = get(&gw, &[("Authorization", "unknown")]).await;
    assert_eq!(res.status(), 403);
    assert!(res.header("X-Plan").is_none());
}

#[tokio::test]
async fn response_hooks_see_the_global_response_headers() {
    let gw = Gateway::new(crate::Echo)
        .api(
            Api::protected("p")
                .listen_path("/")
                .global_response_header("sessionMetaKey", "$tyk_meta.plan")
                .response("R"),
        )
        .with_key("k", Key::new().meta("plan", "gold"));
    let res = get(&gw, &[("Authorization", "k")]).await;
    assert_eq!(res.status(), 200);
    let sent = res.exchanges()[0].sent.response.as_ref().expect("response");
    assert_eq!(
        sent.headers.get("Sessionmetakey").map(String::as_str),
        Some("gold"),
        "set (canonicalised) before Response hooks: {:?}",
        sent.headers
    );
}

#[test]
fn classic_definition_with_multi_auth() {
    let def = json!({
        "api_id": "my-api-id",
        "org_id": "default",
        "use_keyless": false,
        "enable_coprocess_auth": true,
        "use_standard_auth": true,
        "base_identity_provided_by": "auth_token",
        "auth_configs": {"authToken": {"auth_header_name": "AuthToken"}},
        "proxy": {"listen_path": "/", "strip_listen_path": true},
        "custom_middleware": {"driver": "grpc", "auth_check": {"name": "testAuthHook1"}},
        "version_data": {"not_versioned": true, "versions": {"v1": {
            "name": "v1",
            "global_response_headers": {"sessionMetaKey": "$tyk_meta.sessionMetaKey"},
            "global_response_headers_remove": ["X-Tyk-Test"]
        }}}
    });
    let api = Api::from_classic_json(&def).expect("loads");
    assert_eq!(api.get_base_identity(), &BaseIdentity::AuthToken);
    assert!(api.runs_token_auth());
    assert_eq!(api.get_token_header(), "AuthToken");
    assert_eq!(api.auth_header, "Authorization", "coprocess default");
    assert_eq!(
        api.response_headers,
        vec![(
            "sessionMetaKey".to_string(),
            "$tyk_meta.sessionMetaKey".to_string()
        )]
    );
    assert_eq!(api.response_headers_remove, vec!["X-Tyk-Test".to_string()]);

    // Without auth_configs.authToken the deprecated `auth` is used.
    let mut legacy = def.clone();
    legacy["auth_configs"] = json!({});
    legacy["auth"] = json!({"auth_header_name": "X-Key"});
    let api = Api::from_classic_json(&legacy).expect("loads");
    assert_eq!(api.get_token_header(), "X-Key");

    // Disabled global headers are not loaded.
    let mut disabled = def.clone();
    disabled["version_data"]["versions"]["v1"]["global_response_headers_disabled"] = json!(true);
    let api = Api::from_classic_json(&disabled).expect("loads");
    assert!(api.response_headers.is_empty() && api.response_headers_remove.is_empty());

    // Several versions: the default one's headers.
    let mut versioned = def.clone();
    versioned["version_data"] = json!({
        "not_versioned": false,
        "default_version": "b",
        "versions": {
            "a": {"global_response_headers": {"X-V": "a"}},
            "b": {"global_response_headers": {"X-V": "b"}}
        }
    });
    let api = Api::from_classic_json(&versioned).expect("loads");
    assert_eq!(api.response_headers, vec![("X-V".into(), "b".into())]);

    // Unset base identity.
    let mut unset = def;
    unset
        .as_object_mut()
        .expect("object")
        .remove("base_identity_provided_by");
    let api = Api::from_classic_json(&unset).expect("loads");
    assert_eq!(api.get_base_identity(), &BaseIdentity::Unset);
}

#[tokio::test]
async fn classic_multi_auth_api_behaves_like_the_builder() {
    let def = json!({
        "api_id": "m",
        "enable_coprocess_auth": true,
        "use_standard_auth": true,
        "base_identity_provided_by": "custom_auth",
        "auth_configs": {"authToken": {"auth_header_name": "AuthToken"}},
        "proxy": {"listen_path": "/"},
        "custom_middleware": {"driver": "grpc", "auth_check": {"name": "auth"}},
        "version_data": {"not_versioned": true, "versions": {"v1": {
            "global_response_headers": {"sessionMetaKey": "$tyk_meta.sessionMetaKey"}
        }}}
    });
    let gw = gateway(Api::from_classic_json(&def).expect("loads"));
    let res = both(&gw).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert_eq!(res.header("sessionMetaKey"), Some("custom"));
    assert_eq!(gw.key("abc").expect("stored").rate, 100.0);
    let res = get(&gw, &[("Authorization", "abc"), ("AuthToken", "unknown")]).await;
    assert_eq!(res.status(), 403);
}

/// The OAS form of the multi-auth API: custom auth in `x-tyk-api-gateway`,
/// token auth as an `apiKey` scheme named by the first `security`
/// requirement, and `baseIdentityProvider`.
fn oas_multi_auth(base: &str, token_enabled: bool) -> serde_json::Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "m", "version": "1.0.0"},
        "paths": {},
        "security": [{"authToken": []}],
        "components": {"securitySchemes": {
            "authToken": {"type": "apiKey", "in": "header", "name": "AuthToken"}
        }},
        "x-tyk-api-gateway": {
            "info": {"id": "m", "name": "m", "state": {"active": true}},
            "server": {
                "listenPath": {"value": "/"},
                "authentication": {
                    "enabled": true,
                    "baseIdentityProvider": base,
                    "securitySchemes": {"authToken": {"enabled": token_enabled}},
                    "custom": {"enabled": true, "config": {"enabled": true, "functionName": "auth"}}
                }
            },
            "middleware": {"global": {"pluginConfig": {"driver": "grpc"}}}
        }
    })
}

#[test]
fn oas_definition_with_multi_auth() {
    let api = Api::from_oas_json(&oas_multi_auth("auth_token", true)).expect("loads");
    assert_eq!(api.get_base_identity(), &BaseIdentity::AuthToken);
    assert!(api.runs_token_auth());
    assert_eq!(api.get_token_header(), "AuthToken");
    assert_eq!(api.auth_header, "Authorization", "custom auth default");

    let api = Api::from_oas_json(&oas_multi_auth("", false)).expect("loads");
    assert_eq!(api.get_base_identity(), &BaseIdentity::Unset);
    assert!(
        !api.runs_token_auth(),
        "a disabled token scheme does not run"
    );

    // A scheme the first security requirement does not name is not used.
    let mut unnamed = oas_multi_auth("auth_token", true);
    unnamed["security"] = json!([{"other": []}]);
    let api = Api::from_oas_json(&unnamed).expect("loads");
    assert!(!api.runs_token_auth());

    // Token auth alone reads the scheme's header.
    let mut token_only = oas_multi_auth("", true);
    token_only["x-tyk-api-gateway"]["server"]["authentication"]
        .as_object_mut()
        .expect("object")
        .remove("custom");
    let api = Api::from_oas_json(&token_only).expect("loads");
    assert!(matches!(api.auth, super::Auth::Token));
    assert_eq!(api.auth_header, "AuthToken");
}

#[tokio::test]
async fn oas_multi_auth_api_behaves_like_the_builder() {
    // Custom auth's session is kept and stored.
    let gw = gateway(Api::from_oas_json(&oas_multi_auth("custom_auth", true)).expect("loads"));
    let res = both(&gw).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert_eq!(gw.key("abc").expect("stored").rate, 100.0);
    // Token auth must pass too.
    let res = get(&gw, &[("Authorization", "abc"), ("AuthToken", "unknown")]).await;
    assert_eq!(res.status(), 403);

    // With token auth as the base identity the plugin's session is discarded.
    let gw = gateway(Api::from_oas_json(&oas_multi_auth("auth_token", true)).expect("loads"));
    let res = both(&gw).await;
    assert_eq!(res.status(), 200, "{}", res.body_str());
    assert!(gw.key("abc").is_none());
}
