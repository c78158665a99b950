//! The plugin inside the gateway emulator, loaded with this example's API
//! definitions.

use bytes::Bytes;
use tyk_plugin::testkit::{Api, Gateway};

/// The example's classic and OAS definitions.
fn apis() -> Vec<Api> {
    ["classic.json", "oas.json"]
        .map(|f| Api::load(format!("{}/apidef/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .into()
}

#[tokio::test]
async fn headers_are_added_and_removed_before_the_upstream() {
    for api in apis() {
        let gw = Gateway::new(example_header_injection::router()).api(api);
        let req = http::Request::get("/headers/anything?x=1")
            .header("X-Internal-Debug", "true")
            .header("Accept-Language", "fr-CH, fr;q=0.9")
            .body(Bytes::new())
            .unwrap();
        let res = gw.send(req).await.unwrap();
        assert_eq!(res.status(), 200, "{}", res.body_str());
        let up = res.upstream_request().expect("the upstream was called");
        assert_eq!(up.headers()["X-Plugin"], "header-injection");
        assert_eq!(up.headers()["X-Api-Id"], "header-injection");
        assert_eq!(up.headers()["X-Lang"], "fr-CH");
        assert!(up.headers().get("X-Internal-Debug").is_none());
        assert_eq!(up.uri().query(), Some("x=1"), "query untouched");
    }
}

#[tokio::test]
async fn the_default_language_is_english() {
    let gw = Gateway::new(example_header_injection::router()).api(apis().remove(0));
    let res = gw.get("/headers/").await.unwrap();
    assert_eq!(res.upstream_request().unwrap().headers()["X-Lang"], "en");
}
