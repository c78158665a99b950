//! ConfigCache: parse once, invalidate on change, cache and log errors once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Deserializer};
use tyk_plugin::config::{ConfigCache, ConfigError};

/// Counts how often serde is run; one counter per `N` so tests can run in parallel.
static PARSES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

#[derive(Debug, Default, PartialEq)]
struct Counted<const N: usize> {
    limit: u32,
}

impl<'de, const N: usize> Deserialize<'de> for Counted<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PARSES[N].fetch_add(1, Ordering::SeqCst);
        #[derive(Deserialize)]
        struct Raw {
            limit: u32,
        }
        Ok(Counted {
            limit: Raw::deserialize(d)?.limit,
        })
    }
}

fn parses<const N: usize>() -> usize {
    PARSES[N].load(Ordering::SeqCst)
}

#[test]
fn parsed_once_per_api_and_version() {
    let cache = ConfigCache::new();
    let v1 = r#"{"limit":1}"#;
    let first = cache.get::<Counted<0>>("api1", Some(v1)).unwrap();
    for _ in 0..100 {
        let again = cache.get::<Counted<0>>("api1", Some(v1)).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }
    assert_eq!(parses::<0>(), 1);
    // Another API with the same config is parsed separately.
    cache.get::<Counted<0>>("api2", Some(v1)).unwrap();
    assert_eq!(parses::<0>(), 2);
    // A new config version replaces the entry.
    let v2 = cache
        .get::<Counted<0>>("api1", Some(r#"{"limit":2}"#))
        .unwrap();
    assert_eq!(v2.limit, 2);
    assert_eq!(parses::<0>(), 3);
    cache
        .get::<Counted<0>>("api1", Some(r#"{"limit":2}"#))
        .unwrap();
    assert_eq!(parses::<0>(), 3);
    assert_eq!(cache.len(), 2);
    // Clones share the cache.
    let clone = cache.clone();
    clone
        .get::<Counted<0>>("api1", Some(r#"{"limit":2}"#))
        .unwrap();
    assert_eq!(parses::<0>(), 3);
    cache.remove("api1");
    clone
        .get::<Counted<0>>("api1", Some(r#"{"limit":2}"#))
        .unwrap();
    assert_eq!(parses::<0>(), 4);
}

#[test]
fn several_types_per_api() {
    let cache = ConfigCache::new();
    let raw = Some(r#"{"limit":7,"name":"x"}"#);
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    assert_eq!(cache.get::<Counted<1>>("api", raw).unwrap().limit, 7);
    assert_eq!(cache.get::<Named>("api", raw).unwrap().name, "x");
    assert_eq!(cache.get::<Counted<1>>("api", raw).unwrap().limit, 7);
    assert_eq!(parses::<1>(), 1);
}

/// Counts `tracing` events on this thread.
struct CountEvents(Arc<AtomicUsize>);

impl tracing::Subscriber for CountEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        assert_eq!(*event.metadata().level(), tracing::Level::WARN);
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn invalid_config_is_cached_logged_once_and_explained() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let cache = ConfigCache::new();
    let bad = "{\n  \"limit\": \"many\"\n}";
    tracing::subscriber::with_default(CountEvents(warnings.clone()), || {
        for _ in 0..10 {
            let err = cache.get::<Counted<2>>("api-9", Some(bad)).unwrap_err();
            let ConfigError::Invalid(e) = &err else {
                panic!("{err}")
            };
            assert_eq!(e.api_id(), "api-9");
            assert!(e.type_name().ends_with("Counted<2>"), "{}", e.type_name());
            assert_eq!((e.line(), e.column()), (2, 17));
            let msg = err.to_string();
            assert!(
                msg.contains("\"api-9\"") && msg.contains("Counted<2>"),
                "{msg}"
            );
            assert!(msg.contains("at `limit`"), "{msg}");
            assert!(
                msg.contains("invalid type: string \"many\", expected u32 at line 2 column 17"),
                "{msg}"
            );
        }
        assert_eq!(parses::<2>(), 1, "a broken config is parsed once");
        assert_eq!(warnings.load(Ordering::SeqCst), 1, "and logged once");
        // Fixing the config replaces the cached error.
        assert_eq!(
            cache
                .get::<Counted<2>>("api-9", Some(r#"{"limit":3}"#))
                .unwrap()
                .limit,
            3
        );
        // Breaking it again logs again.
        cache.get::<Counted<2>>("api-9", Some("[]")).unwrap_err();
        assert_eq!(warnings.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn missing_config() {
    let cache = ConfigCache::new();
    let err = cache.get::<Counted<3>>("api", None).unwrap_err();
    assert!(matches!(&err, ConfigError::Missing { api_id } if &**api_id == "api"));
    assert!(err.to_string().contains("no config_data"), "{err}");
    // `get` parses "{}" like any document: a required field is missing.
    let err = cache.get::<Counted<3>>("api", Some("{}")).unwrap_err();
    assert!(err.to_string().contains("missing field `limit`"), "{err}");
    // `get_or_default`: absent and "{}" (pre-5.0 gateways) mean "no config".
    let d1 = cache.get_or_default::<Counted<3>>("api", None).unwrap();
    let d2 = cache
        .get_or_default::<Counted<3>>("api", Some("{}"))
        .unwrap();
    assert_eq!(*d1, Counted::default());
    assert!(Arc::ptr_eq(&d1, &d2), "the default is cached");
    // But a broken config is not silently defaulted.
    assert!(
        cache
            .get_or_default::<Counted<3>>("api", Some(r#"{"limit":-1}"#))
            .is_err()
    );
    assert_eq!(
        cache
            .get_or_default::<Counted<3>>("api", Some(r#"{"limit":4}"#))
            .unwrap()
            .limit,
        4
    );
}

#[test]
fn spec_map_helpers() {
    use std::collections::BTreeMap;
    let cache = ConfigCache::new();
    let mut spec = BTreeMap::from([
        ("APIID".to_string(), "a1".to_string()),
        ("OrgID".to_string(), "o".to_string()),
    ]);
    assert!(matches!(
        cache.get_for_spec::<Counted<4>>(&spec),
        Err(ConfigError::Missing { .. })
    ));
    assert_eq!(
        cache
            .get_or_default_for_spec::<Counted<4>>(&spec)
            .unwrap()
            .limit,
        0
    );
    spec.insert("config_data".into(), r#"{"limit":9}"#.into());
    assert_eq!(cache.get_for_spec::<Counted<4>>(&spec).unwrap().limit, 9);
}

#[test]
fn concurrent_callers_share_one_value() {
    let cache = ConfigCache::new();
    let raw = r#"{"limit":5}"#;
    let values: Vec<Arc<Counted<5>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..1000)
                        .map(|_| cache.get::<Counted<5>>("api", Some(raw)).unwrap())
                        .next_back()
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(values.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    assert!(
        parses::<5>() <= 4,
        "at most one parse per racing thread: {}",
        parses::<5>()
    );
}

/// `cargo test --release -p tyk-plugin --test config -- --ignored --nocapture hit_cost`
#[test]
#[ignore = "timing measurement, run manually in release"]
fn hit_cost() {
    use std::time::Instant;
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Cfg {
        upstream: String,
        rules: Vec<serde_json::Value>,
    }
    let rules: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"path":"/p{i}","limit":{i}}}"#))
        .collect();
    let raw = format!(r#"{{"rules":[{}],"upstream":"http://x"}}"#, rules.join(","));
    let cache = ConfigCache::new();
    for i in 0..500 {
        cache.get::<Cfg>(&format!("api{i:04}"), Some(&raw)).unwrap();
    }
    let api = "api0042";
    const N: u32 = 2_000_000;
    let t = Instant::now();
    for _ in 0..N {
        std::hint::black_box(
            cache
                .get::<Cfg>(std::hint::black_box(api), Some(&raw))
                .unwrap(),
        );
    }
    let hit = t.elapsed() / N;
    let t = Instant::now();
    for _ in 0..20_000 {
        std::hint::black_box(serde_json::from_str::<Cfg>(&raw).unwrap());
    }
    let parse = t.elapsed() / 20_000;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..N {
                    std::hint::black_box(cache.get::<Cfg>(api, Some(&raw)).unwrap());
                }
            });
        }
    });
    let contended = t.elapsed() / N;
    println!(
        "config_data {} bytes: hit {hit:?}, parse {parse:?}, 2 threads same API {contended:?} per hit per thread",
        raw.len()
    );
}
