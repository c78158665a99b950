//! Typed, cached `config_data`.
//!
//! The gateway sends each API's `config_data` as a JSON string in
//! `spec["config_data"]` on every call (compact, keys sorted). A
//! [`ConfigCache`] deserializes it into your type once per API, type and
//! config version, and hands out an [`Arc`] on every later call:
//!
//! ```
//! use serde::Deserialize;
//! use tyk_plugin::config::ConfigCache;
//!
//! #[derive(Deserialize)]
//! struct Limits { max_body: usize }
//!
//! let cache = ConfigCache::new();
//! let a = cache.get::<Limits>("api1", Some(r#"{"max_body":1024}"#))?;
//! let b = cache.get::<Limits>("api1", Some(r#"{"max_body":1024}"#))?;
//! assert_eq!(a.max_body, 1024);
//! assert!(std::sync::Arc::ptr_eq(&a, &b)); // parsed once
//! # Ok::<(), tyk_plugin::config::ConfigError>(())
//! ```
//!
//! # Missing config
//!
//! Gateways ≥ 5.0 omit `config_data` when the API's `config_data` is empty
//! or `config_data_disabled` is set; older ones send `"{}"`.
//! [`ConfigCache::get`] reports an absent value as [`ConfigError::Missing`]
//! and parses `"{}"` like any other document (so a type whose fields all
//! have defaults gets them). [`ConfigCache::get_or_default`] treats both
//! "absent" and `"{}"` as "no config" and returns a cached `T::default()`.
//! An invalid config is an error with both methods: a broken config is
//! never silently replaced by defaults.
//!
//! # Caching
//!
//! Entries are keyed by API id and Rust type, and remember the exact
//! `config_data` string they were parsed from; a different string (the API
//! was reloaded with a new config) is parsed again and replaces the entry.
//! A config that fails to parse is cached too: the error is logged once
//! (`tracing::warn!`) and returned on every call until the string changes.
//!
//! A hit takes a read lock on one of 16 shards, looks the API id up,
//! compares the string (a `memcmp`) and clones an `Arc`: it does not
//! allocate, parse, or take a write lock. Memory is bounded: at most
//! `max_apis` APIs (default 1024) are kept; beyond that the
//! (approximately) least recently used API is evicted.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;

/// The `spec` key holding the API's config.
pub const CONFIG_DATA_KEY: &str = "config_data";
/// The `spec` key holding the API id.
pub const API_ID_KEY: &str = "APIID";

const SHARDS: usize = 16;
const DEFAULT_MAX_APIS: usize = 1024;

/// Why an API's config could not be provided. Cheap to clone.
///
/// ```
/// use tyk_plugin::config::{ConfigCache, ConfigError};
/// let cache = ConfigCache::new();
/// let err = cache.get::<u32>("api1", None).unwrap_err();
/// assert!(matches!(err, ConfigError::Missing { .. }));
/// let err = cache.get::<u32>("api1", Some("\"x\"")).unwrap_err();
/// assert!(err.to_string().contains("api1") && err.to_string().contains("u32"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The call carried no `config_data`.
    #[error(
        "API {api_id:?} has no config_data (the gateway omits it when the API's config_data is empty or config_data_disabled is set)"
    )]
    Missing {
        /// The API id.
        api_id: Arc<str>,
    },
    /// `config_data` does not deserialize into the requested type.
    #[error(transparent)]
    Invalid(Arc<InvalidConfig>),
}

impl ConfigError {
    /// The API the error is about.
    pub fn api_id(&self) -> &str {
        match self {
            ConfigError::Missing { api_id } => api_id,
            ConfigError::Invalid(e) => &e.api_id,
        }
    }
}

/// Details of a `config_data` that does not fit the requested type.
#[derive(Debug)]
pub struct InvalidConfig {
    api_id: Arc<str>,
    type_name: &'static str,
    path: String,
    message: String,
    line: usize,
    column: usize,
}

impl InvalidConfig {
    /// The API id.
    pub fn api_id(&self) -> &str {
        &self.api_id
    }
    /// The Rust type that was requested.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
    /// Where in the document the error is, e.g. `limits.daily` or
    /// `rules[2].path` (`.` for the document itself).
    pub fn path(&self) -> &str {
        &self.path
    }
    /// serde's message (including the line and column).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// 1-based line of the error in `config_data` (0 if unknown).
    pub fn line(&self) -> usize {
        self.line
    }
    /// 1-based column of the error in `config_data` (0 if unknown).
    pub fn column(&self) -> usize {
        self.column
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "API {:?}: config_data is not a valid {}: at `{}`: {}",
            self.api_id, self.type_name, self.path, self.message
        )
    }
}

impl std::error::Error for InvalidConfig {}

type Value = Result<Arc<dyn Any + Send + Sync>, ConfigError>;

struct Slot {
    type_id: TypeId,
    value: Value,
}

struct ApiEntry {
    /// The `config_data` the slots were built from; `None` = no config
    /// (only used by `get_or_default`).
    raw: Option<Box<str>>,
    slots: Vec<Slot>,
    /// Cache tick of the last use, for eviction.
    last_used: AtomicU64,
}

type Shard = RwLock<HashMap<Arc<str>, ApiEntry>>;

struct Inner {
    shards: [Shard; SHARDS],
    hasher: RandomState,
    max_per_shard: usize,
    /// Advanced on every miss; hits record it (written only when changed).
    tick: AtomicU64,
}

/// A cache of deserialized `config_data`, keyed by API id and Rust type.
///
/// Cloning is cheap (an [`Arc`]); clones share the cache. `Send + Sync`.
/// See the [module documentation](self) for the semantics.
#[derive(Clone)]
pub struct ConfigCache {
    inner: Arc<Inner>,
}

impl Default for ConfigCache {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ConfigCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigCache")
            .field("apis", &self.len())
            .field("max_apis", &(self.inner.max_per_shard * SHARDS))
            .finish()
    }
}

impl ConfigCache {
    /// A cache holding up to 1024 APIs.
    pub fn new() -> Self {
        Self::with_max_apis(DEFAULT_MAX_APIS)
    }

    /// A cache holding up to about `max_apis` APIs (rounded up to a
    /// multiple of 16, at least 16); the least recently used API is
    /// evicted beyond that.
    pub fn with_max_apis(max_apis: usize) -> Self {
        ConfigCache {
            inner: Arc::new(Inner {
                shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
                hasher: RandomState::new(),
                max_per_shard: max_apis.div_ceil(SHARDS).max(1),
                tick: AtomicU64::new(0),
            }),
        }
    }

    /// The config of `api_id` as `T`, given the call's `config_data`
    /// (`None` if the gateway sent none).
    ///
    /// Errors: [`ConfigError::Missing`] if `raw` is `None`;
    /// [`ConfigError::Invalid`] (cached, logged once) if it does not
    /// deserialize into `T`.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use tyk_plugin::config::ConfigCache;
    /// #[derive(Debug, Deserialize)]
    /// struct Cfg { upstream: String }
    /// let cache = ConfigCache::new();
    /// let err = cache.get::<Cfg>("api1", Some(r#"{"upstream":5}"#)).unwrap_err();
    /// assert!(err.to_string().contains("at `upstream`"), "{err}");
    /// assert!(err.to_string().contains("line 1 column"), "{err}");
    /// ```
    pub fn get<T>(&self, api_id: &str, raw: Option<&str>) -> Result<Arc<T>, ConfigError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let Some(raw) = raw else {
            return Err(ConfigError::Missing {
                api_id: api_id.into(),
            });
        };
        self.lookup_or_insert(api_id, Some(raw), || parse::<T>(api_id, raw))
    }

    /// Like [`get`](Self::get), but a missing `config_data` or `"{}"`
    /// (what gateways before 5.0 send for "no config") gives a cached
    /// `T::default()`. An invalid config is still an error.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use tyk_plugin::config::ConfigCache;
    /// #[derive(Deserialize, Default)]
    /// struct Cfg { strict: bool }
    /// let cache = ConfigCache::new();
    /// assert!(!cache.get_or_default::<Cfg>("api1", None)?.strict);
    /// assert!(!cache.get_or_default::<Cfg>("api1", Some("{}"))?.strict);
    /// assert!(cache.get_or_default::<Cfg>("api1", Some(r#"{"strict":true}"#))?.strict);
    /// # Ok::<(), tyk_plugin::config::ConfigError>(())
    /// ```
    pub fn get_or_default<T>(&self, api_id: &str, raw: Option<&str>) -> Result<Arc<T>, ConfigError>
    where
        T: DeserializeOwned + Default + Send + Sync + 'static,
    {
        match raw.filter(|r| r.trim() != "{}") {
            Some(raw) => self.lookup_or_insert(api_id, Some(raw), || parse::<T>(api_id, raw)),
            None => self.lookup_or_insert(api_id, None, || Ok(Arc::new(T::default()))),
        }
    }

    /// [`get`](Self::get) with the API id and `config_data` taken from an
    /// `Object.spec` map.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use tyk_plugin::config::ConfigCache;
    /// let spec = BTreeMap::from([
    ///     ("APIID".to_string(), "api1".to_string()),
    ///     ("config_data".to_string(), r#"{"k":"v"}"#.to_string()),
    /// ]);
    /// let cfg = ConfigCache::new().get_for_spec::<BTreeMap<String, String>>(&spec)?;
    /// assert_eq!(cfg["k"], "v");
    /// # Ok::<(), tyk_plugin::config::ConfigError>(())
    /// ```
    pub fn get_for_spec<T>(&self, spec: &BTreeMap<String, String>) -> Result<Arc<T>, ConfigError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let api_id = spec.get(API_ID_KEY).map_or("", String::as_str);
        self.get(api_id, spec.get(CONFIG_DATA_KEY).map(String::as_str))
    }

    /// [`get_or_default`](Self::get_or_default) with the API id and
    /// `config_data` taken from an `Object.spec` map.
    pub fn get_or_default_for_spec<T>(
        &self,
        spec: &BTreeMap<String, String>,
    ) -> Result<Arc<T>, ConfigError>
    where
        T: DeserializeOwned + Default + Send + Sync + 'static,
    {
        let api_id = spec.get(API_ID_KEY).map_or("", String::as_str);
        self.get_or_default(api_id, spec.get(CONFIG_DATA_KEY).map(String::as_str))
    }

    /// Number of APIs cached.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| read(s).len()).sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets one API (e.g. after it was deleted).
    pub fn remove(&self, api_id: &str) {
        write(self.shard(api_id)).remove(api_id);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        for shard in &self.inner.shards {
            write(shard).clear();
        }
    }

    fn shard(&self, api_id: &str) -> &Shard {
        let h = self.inner.hasher.hash_one(api_id);
        // The top bits: the map uses the low bits of its own hash.
        &self.inner.shards[(h >> 60) as usize % SHARDS]
    }

    fn lookup_or_insert<T: Send + Sync + 'static>(
        &self,
        api_id: &str,
        raw: Option<&str>,
        make: impl FnOnce() -> Value,
    ) -> Result<Arc<T>, ConfigError> {
        let type_id = TypeId::of::<T>();
        let shard = self.shard(api_id);
        {
            let map = read(shard);
            if let Some(entry) = map.get(api_id)
                && entry.raw.as_deref() == raw
                && let Some(slot) = entry.slots.iter().find(|s| s.type_id == type_id)
            {
                let tick = self.inner.tick.load(Ordering::Relaxed);
                if entry.last_used.load(Ordering::Relaxed) != tick {
                    entry.last_used.store(tick, Ordering::Relaxed);
                }
                if let Some(hit) = downcast::<T>(&slot.value) {
                    return hit;
                }
            }
        }

        // Miss: build outside the lock, then publish unless another thread
        // was faster (its value wins, so every caller shares one Arc and
        // an error is logged once).
        let value = make();
        // The entry is stamped with the tick before the increment, so a hit
        // after this insert (which records the new tick) ranks as more recent.
        let tick = self.inner.tick.fetch_add(1, Ordering::Relaxed);
        let mut map = write(shard);
        let entry = match map.get_mut(api_id) {
            Some(entry) => entry,
            None => {
                if map.len() >= self.inner.max_per_shard {
                    evict_lru(&mut map);
                }
                map.entry(Arc::from(api_id)).or_insert_with(|| ApiEntry {
                    raw: raw.map(Box::from),
                    slots: Vec::new(),
                    last_used: AtomicU64::new(tick),
                })
            }
        };
        entry.last_used.store(tick, Ordering::Relaxed);
        if entry.raw.as_deref() != raw {
            entry.raw = raw.map(Box::from);
            entry.slots.clear();
        }
        if let Some(slot) = entry.slots.iter().find(|s| s.type_id == type_id)
            && let Some(existing) = downcast::<T>(&slot.value)
        {
            return existing;
        }
        entry.slots.retain(|s| s.type_id != type_id);
        if let Err(ConfigError::Invalid(e)) = &value {
            tracing::warn!(
                api_id = e.api_id(),
                type_name = e.type_name(),
                path = e.path(),
                "{e}; the error is cached until the API's config_data changes"
            );
        }
        let result = downcast::<T>(&value);
        entry.slots.push(Slot { type_id, value });
        result.unwrap_or_else(|| {
            // Unreachable: `make` builds a `T`. Report rather than panic.
            Err(ConfigError::Missing {
                api_id: api_id.into(),
            })
        })
    }
}

fn downcast<T: Send + Sync + 'static>(value: &Value) -> Option<Result<Arc<T>, ConfigError>> {
    match value {
        Ok(any) => Arc::clone(any).downcast::<T>().ok().map(Ok),
        Err(e) => Some(Err(e.clone())),
    }
}

fn evict_lru(map: &mut HashMap<Arc<str>, ApiEntry>) {
    let oldest = map
        .iter()
        .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
        .map(|(k, _)| Arc::clone(k));
    if let Some(key) = oldest {
        map.remove(&key);
    }
}

fn parse<T: DeserializeOwned + Send + Sync + 'static>(api_id: &str, raw: &str) -> Value {
    let mut de = serde_json::Deserializer::from_str(raw);
    let result = serde_path_to_error::deserialize::<_, T>(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (".".to_owned(), e)));
    match result {
        Ok(v) => Ok(Arc::new(v)),
        Err((path, err)) => Err(ConfigError::Invalid(Arc::new(InvalidConfig {
            api_id: api_id.into(),
            type_name: std::any::type_name::<T>(),
            path,
            message: err.to_string(),
            line: err.line(),
            column: err.column(),
        }))),
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave an entry half-written
    // (entries are replaced whole), so poisoning is ignored.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<ConfigCache>();
        assert_send_sync::<ConfigError>();
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let err = ConfigCache::new()
            .get::<BTreeMap<String, u32>>("a", Some(r#"{"x":1} junk"#))
            .unwrap_err();
        let ConfigError::Invalid(e) = err else {
            panic!()
        };
        assert_eq!((e.path(), e.line(), e.column()), (".", 1, 9));
    }

    #[test]
    fn eviction_removes_the_least_recently_used_api() {
        let cache = ConfigCache::with_max_apis(2 * SHARDS); // two APIs per shard
        let home = cache.shard("a") as *const Shard;
        let mut same: Vec<String> = (0..10_000)
            .map(|i| format!("k{i}"))
            .filter(|k| std::ptr::eq(cache.shard(k), home))
            .take(2)
            .collect();
        let (b, c) = (same.remove(0), same.remove(0));
        cache.get::<u32>("a", Some("1")).unwrap();
        cache.get::<u32>(&b, Some("2")).unwrap();
        cache.get::<u32>("a", Some("1")).unwrap(); // hit: "a" is now the most recent
        cache.get::<u32>(&c, Some("3")).unwrap(); // full: evicts b
        let map = read(cache.shard("a"));
        assert!(map.contains_key("a"));
        assert!(map.contains_key(c.as_str()));
        assert!(!map.contains_key(b.as_str()));
    }

    #[test]
    fn eviction_bounds_memory_and_keeps_recent_apis() {
        let cache = ConfigCache::with_max_apis(16); // one API per shard
        for i in 0..200 {
            cache.get::<u32>(&format!("api{i}"), Some("1")).unwrap();
        }
        assert!(cache.len() <= 16, "{}", cache.len());
        cache.get::<u32>("hot", Some("1")).unwrap();
        assert!(read(cache.shard("hot")).contains_key("hot"));
    }
}
