//! The plugin inside the gateway emulator, loaded with this example's API
//! definitions, in front of a scripted upstream.

use bytes::Bytes;
use tyk_plugin::testkit::{Api, Gateway};

/// The example's classic and OAS definitions.
fn apis() -> Vec<Api> {
    ["classic.json", "oas.json"]
        .map(|f| Api::load(format!("{}/apidef/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .into()
}

fn upstream(
    status: u16,
    content_type: &str,
    body: &'static str,
) -> impl Fn(&http::Request<Bytes>) -> http::Response<Bytes> + Send + Sync + 'static {
    let content_type = content_type.to_string();
    move |_req| {
        http::Response::builder()
            .status(status)
            .header("Content-Type", content_type.as_str())
            .header("Server", "upstream/1.0")
            .header("Set-Cookie", "session=abc; Path=/")
            .header("Content-Length", body.len().to_string())
            .body(Bytes::from_static(body.as_bytes()))
            .unwrap()
    }
}

#[tokio::test]
async fn json_bodies_get_a_member_and_headers_are_rewritten() {
    for api in apis() {
        let gw = Gateway::new(example_response_rewrite::router())
            .api(api)
            .upstream(upstream(200, "application/json", r#"{"id":1}"#));
        let res = gw.get("/rewrite/pets/1").await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.json().unwrap(),
            serde_json::json!({"id": 1, "_served_by": "tyk-plugin"})
        );
        assert_eq!(
            res.header("Content-Length"),
            Some(res.body().len().to_string().as_str())
        );
        assert_eq!(res.header("X-Response-Plugin"), Some("1"));
        assert!(res.header("Server").is_none());
        assert_eq!(
            res.header_all("Set-Cookie"),
            vec!["session=abc; Path=/", "served_by=tyk-plugin; Path=/"]
        );
    }
}

#[tokio::test]
async fn other_bodies_pass_unchanged_and_5xx_are_hidden() {
    let gw = Gateway::new(example_response_rewrite::router())
        .api(apis().remove(0))
        .upstream(upstream(200, "text/plain", "plain text"));
    let res = gw.get("/rewrite/").await.unwrap();
    assert_eq!(res.body_str(), "plain text");

    let gw = Gateway::new(example_response_rewrite::router())
        .api(apis().remove(0))
        .upstream(upstream(503, "text/html", "<h1>stack trace...</h1>"));
    let res = gw.get("/rewrite/").await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.json().unwrap(),
        serde_json::json!({"error": "upstream unavailable"})
    );
    assert_eq!(res.header("Content-Type"), Some("application/json"));
}
