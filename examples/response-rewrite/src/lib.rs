//! A Response hook that rewrites the upstream's answer.
//!
//! * JSON object bodies get a `"_served_by": "tyk-plugin"` member (other
//!   bodies pass unchanged);
//! * the `Server` header is removed, `X-Response-Plugin: 1` is added, and a
//!   second `Set-Cookie` is appended beside the upstream's;
//! * an upstream 5xx becomes a 502 with a JSON problem body, hiding details.

use http::StatusCode;
use tyk_plugin::{Response, Router};

/// The hook name to use in the API definition.
pub const HOOK: &str = "RewriteResponse";

/// The plugin's handlers.
pub fn router() -> Router {
    Router::new().response(HOOK, rewrite)
}

async fn rewrite(mut res: Response) -> Response {
    res.delete_header("Server")
        .set_header("X-Response-Plugin", "1")
        .append_header("Set-Cookie", "served_by=tyk-plugin; Path=/");
    if res.status() >= 500 {
        res.set_status(StatusCode::BAD_GATEWAY)
            .set_header("Content-Type", "application/json")
            .set_body(r#"{"error":"upstream unavailable"}"#);
        return res;
    }
    let is_json = res
        .header("Content-Type")
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json && let Ok(serde_json::Value::Object(mut body)) = serde_json::from_slice(res.body()) {
        body.insert("_served_by".into(), "tyk-plugin".into());
        let text = serde_json::Value::Object(body).to_string();
        res.set_body(text);
    }
    res
}
