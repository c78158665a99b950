//! The plugin inside the gateway emulator, loaded with this example's API
//! definitions (custom auth plus an ID extractor on `Authorization`).

use bytes::Bytes;
use tyk_plugin::coprocess::HookType;
use tyk_plugin::testkit::{Api, Gateway, TestResponse};

/// The example's classic and OAS definitions.
fn apis() -> Vec<Api> {
    ["classic.json", "oas.json"]
        .map(|f| Api::load(format!("{}/apidef/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .into()
}

async fn get(gw: &Gateway, auth: Option<&str>) -> TestResponse {
    let mut b = http::Request::get("/secure/pets");
    if let Some(a) = auth {
        b = b.header("Authorization", a);
    }
    gw.send(b.body(Bytes::new()).unwrap()).await.unwrap()
}

fn auth_calls(res: &TestResponse) -> usize {
    res.sent_objects()
        .iter()
        .filter(|o| o.hook_type == HookType::CustomKeyCheck as i32)
        .count()
}

#[tokio::test]
async fn a_known_token_gets_a_session_the_gateway_caches() {
    for api in apis() {
        let gw = Gateway::new(example_custom_auth::router()).api(api);
        let first = get(&gw, Some("Bearer gold-token")).await;
        assert_eq!(first.status(), 200, "{}", first.body_str());
        assert_eq!(auth_calls(&first), 1);
        assert!(first.upstream_request().is_some());

        // The session is stored under the ID extractor's key, with our values.
        let key = Gateway::id_extractor_key("default", "Bearer gold-token");
        let stored = gw
            .key(&key)
            .expect("session stored under the ID extractor key");
        assert_eq!(stored.metadata["token"], "gold-token");
        assert_eq!(stored.metadata["plan"], "gold");
        assert_eq!(
            (stored.rate, stored.per, stored.quota_max),
            (1000.0, 60.0, 50_000)
        );
        assert!(stored.access_rights.contains_key("custom-auth"));

        // Within the cache period the gateway does not call the plugin.
        let second = get(&gw, Some("Bearer gold-token")).await;
        assert_eq!(second.status(), 200);
        assert_eq!(auth_calls(&second), 0, "served from the ID extractor cache");
    }
}

#[tokio::test]
async fn unknown_or_malformed_tokens_are_refused() {
    let gw = Gateway::new(example_custom_auth::router()).api(apis().remove(0));
    let res = get(&gw, Some("Bearer nope")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json().unwrap()["error"], "unknown token");
    assert!(res.upstream_request().is_none());
    assert!(
        res.events()
            .iter()
            .any(|e| e.message["Type"] == "AuthFailure")
    );

    let res = get(&gw, Some("Basic dXNlcg==")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json().unwrap()["error"], "expected a Bearer token");

    // No header: the gateway's ID extractor refuses before calling the plugin.
    let res = get(&gw, None).await;
    assert_eq!(res.status(), 400);
    assert_eq!(auth_calls(&res), 0);
}

#[tokio::test]
async fn the_trial_plans_quota_runs_out() {
    let gw = Gateway::new(example_custom_auth::router()).api(apis().remove(0));
    for _ in 0..2 {
        assert_eq!(get(&gw, Some("Bearer trial-token")).await.status(), 200);
    }
    let res = get(&gw, Some("Bearer trial-token")).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.json().unwrap()["error"], "Quota exceeded");
}
