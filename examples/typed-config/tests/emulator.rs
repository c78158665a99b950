//! The plugin inside the gateway emulator, with per-API config_data.

use bytes::Bytes;
use tyk_plugin::testkit::{Api, Gateway};

/// The example's classic and OAS definitions.
fn apis() -> Vec<Api> {
    ["classic.json", "oas.json"]
        .map(|f| Api::load(format!("{}/apidef/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .into()
}

fn get(path: &str, tenant: Option<&str>) -> http::Request<Bytes> {
    let mut b = http::Request::get(path);
    if let Some(t) = tenant {
        b = b.header("X-Tenant", t);
    }
    b.body(Bytes::new()).unwrap()
}

#[tokio::test]
async fn tenants_are_checked_against_the_apis_config() {
    for api in apis() {
        let gw = Gateway::new(example_typed_config::router()).api(api);
        let ok = gw.send(get("/tenants/x", Some("acme"))).await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(
            ok.upstream_request().unwrap().headers()["X-Tenant-Checked"],
            "acme"
        );

        let denied = gw.send(get("/tenants/x", Some("initech"))).await.unwrap();
        assert_eq!(denied.status(), 403);
        assert_eq!(
            denied.json().unwrap()["error"],
            "tenant \"initech\" is not allowed"
        );
        assert!(denied.upstream_request().is_none());

        let missing = gw.send(get("/tenants/x", None)).await.unwrap();
        assert_eq!(missing.status(), 403);
        assert_eq!(missing.json().unwrap()["error"], "missing X-Tenant header");
    }
}

#[tokio::test]
async fn each_api_has_its_own_config() {
    let other = Api::keyless("other")
        .listen_path("/other/")
        .pre(example_typed_config::HOOK)
        .config_data(serde_json::json!({"tenant_header": "X-Org", "allowed_tenants": ["initech"], "deny_status": 401}));
    let gw = Gateway::new(example_typed_config::router())
        .api(apis().remove(0))
        .api(other);
    let req = http::Request::get("/other/")
        .header("X-Org", "initech")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(gw.send(req).await.unwrap().status(), 200);
    let res = gw.send(get("/other/", Some("acme"))).await.unwrap();
    assert_eq!(res.status(), 401, "the other API's deny_status");
    // The first API is unaffected by the second's config.
    assert_eq!(
        gw.send(get("/tenants/", Some("acme")))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_missing_or_broken_config_fails_closed() {
    let no_config = Api::keyless("bare")
        .listen_path("/bare/")
        .pre(example_typed_config::HOOK);
    let broken = Api::keyless("broken")
        .listen_path("/broken/")
        .pre(example_typed_config::HOOK)
        .config_data(serde_json::json!({"allowed_tenants": "acme"}));
    let gw = Gateway::new(example_typed_config::router())
        .api(no_config)
        .api(broken);
    for path in ["/bare/", "/broken/"] {
        let res = gw.send(get(path, Some("acme"))).await.unwrap();
        assert_eq!(res.status(), 500, "{path}");
        assert!(res.upstream_request().is_none());
    }
}
