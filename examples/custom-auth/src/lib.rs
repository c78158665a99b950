//! Custom authentication (CustomKeyCheck) with sessions and ID-extractor
//! caching.
//!
//! The hook checks `Authorization: Bearer <token>` against a token table (a
//! real plugin would ask an identity service) and grants a session built
//! with [`Session::builder`]: rate limit and quota by plan, access to this
//! API only, the plan as metadata, and [`cache_for`](tyk_plugin::SessionBuilder::cache_for)
//! so that the gateway's ID extractor reuses the session for a minute
//! without calling the plugin. Unknown tokens get 401 through Tyk's error
//! template.

use std::time::Duration;

use http::StatusCode;
use tyk_plugin::{AuthRequest, PluginError, Router, Session};

/// The hook name to use in the API definition.
pub const HOOK: &str = "CheckToken";

/// How long the gateway may reuse a granted session without asking again.
pub const CACHE_FOR: Duration = Duration::from_secs(60);

/// A subscription plan.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Name, stored in the session's metadata.
    pub name: &'static str,
    /// Requests per minute.
    pub per_minute: u32,
    /// Requests per hour.
    pub per_hour: i64,
}

/// The token table.
pub fn plan_for(token: &str) -> Option<Plan> {
    match token {
        "gold-token" => Some(Plan {
            name: "gold",
            per_minute: 1000,
            per_hour: 50_000,
        }),
        "silver-token" => Some(Plan {
            name: "silver",
            per_minute: 100,
            per_hour: 5_000,
        }),
        "trial-token" => Some(Plan {
            name: "trial",
            per_minute: 10,
            per_hour: 2,
        }),
        _ => None,
    }
}

/// The plugin's handlers.
pub fn router() -> Router {
    Router::new().auth(HOOK, check_token)
}

async fn check_token(req: AuthRequest) -> Result<AuthRequest, PluginError> {
    let token = match req
        .header("Authorization")
        .map(|h| h.strip_prefix("Bearer "))
    {
        None => return Ok(req.deny(StatusCode::UNAUTHORIZED, "missing Authorization header")),
        Some(None) => return Ok(req.deny(StatusCode::UNAUTHORIZED, "expected a Bearer token")),
        Some(Some(t)) => t.trim().to_string(),
    };
    let Some(plan) = plan_for(&token) else {
        return Ok(req.deny(StatusCode::UNAUTHORIZED, "unknown token"));
    };
    let session = Session::builder(token)
        .rate(plan.per_minute, Duration::from_secs(60))
        .quota(plan.per_hour, Duration::from_secs(3600))
        .access(req.api_id(), "Custom auth example", ["Default"])
        .meta("plan", plan.name)
        .cache_for(CACHE_FOR)
        .build()
        .map_err(|e| PluginError::internal(format!("cannot build the session: {e}")))?;
    Ok(req.allow(session))
}
