//! Custom authentication example (being written: needs the session builder).

/// The plugin's handlers.
pub fn router() -> tyk_plugin::Router {
    tyk_plugin::Router::new()
}
