//! TEMPORARY stand-in (the real module is being written on another branch).
#![allow(missing_docs)]
use std::sync::Arc;

#[derive(Default)]
pub struct ConfigCache;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigCache {
    pub fn get<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
        api_id: &str,
        raw: Option<&str>,
    ) -> Result<Arc<T>, ConfigError> {
        let raw = raw.ok_or_else(|| ConfigError(format!("API {api_id} has no config_data")))?;
        serde_json::from_str(raw)
            .map(Arc::new)
            .map_err(|e| ConfigError(format!("API {api_id}: {e}")))
    }
}
