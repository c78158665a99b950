//! A Pre hook that edits request headers before authentication and before
//! the upstream sees them.
//!
//! * adds `X-Plugin: header-injection` and `X-Api-Id: <the API's ID>`,
//! * removes the client's `X-Internal-Debug` header (clients must not set it),
//! * copies the first `Accept-Language` tag into `X-Lang` (default `en`).

use tyk_plugin::{Request, Router};

/// The hook name to use in the API definition.
pub const HOOK: &str = "InjectHeaders";

/// The plugin's handlers.
pub fn router() -> Router {
    Router::new().pre(HOOK, inject_headers)
}

async fn inject_headers(mut req: Request) -> Request {
    let api_id = req.api_id().to_string();
    let lang = req
        .header("Accept-Language")
        .and_then(|v| v.split([',', ';']).next())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or("en")
        .to_string();
    req.set_header("X-Plugin", "header-injection")
        .set_header("X-Api-Id", api_id)
        .set_header("X-Lang", lang)
        .delete_header("X-Internal-Debug");
    req
}
