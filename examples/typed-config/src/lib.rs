//! A Pre hook configured per API through the API definition's `config_data`
//! (classic) or `pluginConfig.data` (Tyk OAS), read as a typed struct.
//!
//! ```json
//! "config_data": { "tenant_header": "X-Tenant", "allowed_tenants": ["acme", "globex"], "deny_status": 403 }
//! ```
//!
//! Requests without the tenant header, or with a tenant not in the list, are
//! refused through Tyk's error template; accepted requests get
//! `X-Tenant-Checked: <tenant>`. An API without (or with an invalid)
//! config_data fails closed: 500, with the reason in the server log.

use http::StatusCode;
use serde::Deserialize;
use tyk_plugin::{PluginError, Request, Router};

/// The hook name to use in the API definition.
pub const HOOK: &str = "TenantGate";

/// The per-API configuration.
#[derive(Debug, Deserialize)]
pub struct TenantConfig {
    /// The header naming the tenant.
    #[serde(default = "default_header")]
    pub tenant_header: String,
    /// Tenants admitted.
    pub allowed_tenants: Vec<String>,
    /// Status for refused requests (400..=599).
    #[serde(default = "default_status")]
    pub deny_status: u16,
}

fn default_header() -> String {
    "X-Tenant".into()
}

fn default_status() -> u16 {
    403
}

/// The plugin's handlers.
pub fn router() -> Router {
    Router::new().pre(HOOK, tenant_gate)
}

async fn tenant_gate(mut req: Request) -> Result<Request, PluginError> {
    // Parsed once per API and config version, then shared.
    let config = req.config::<TenantConfig>()?;
    let status = StatusCode::from_u16(config.deny_status)
        .ok()
        .filter(|s| s.as_u16() >= 400)
        .unwrap_or(StatusCode::FORBIDDEN);
    let tenant = req.header(&config.tenant_header).map(str::to_string);
    match tenant {
        None => Ok(req.error(status, format!("missing {} header", config.tenant_header))),
        Some(t) if !config.allowed_tenants.contains(&t) => {
            Ok(req.error(status, format!("tenant {t:?} is not allowed")))
        }
        Some(t) => {
            req.set_header("X-Tenant-Checked", t);
            Ok(req)
        }
    }
}
