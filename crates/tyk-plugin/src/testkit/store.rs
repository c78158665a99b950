//! Keys, policies and the clock of the emulated gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tyk_coprocess::{AccessDefinition, BasicAuthData, JwtData, Monitor, SessionState};

/// The gateway's notion of "now" (Unix seconds): the system clock, or a
/// manual clock shared with the test.
///
/// ```
/// # use tyk_plugin::testkit::Clock;
/// let clock = Clock::manual(1_000);
/// clock.advance(60);
/// assert_eq!(clock.now(), 1_060);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A manual clock starting at `unix_secs`; clones share the time.
    pub fn manual(unix_secs: i64) -> Self {
        Clock(Some(Arc::new(AtomicI64::new(unix_secs))))
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        match &self.0 {
            Some(t) => t.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    /// Sub-second part of now (0 for a manual clock).
    pub(crate) fn nanos(&self) -> u32 {
        match &self.0 {
            Some(_) => 0,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, secs: i64) {
        if let Some(t) = &self.0 {
            t.fetch_add(secs, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock (no effect on the system clock).
    pub fn set(&self, unix_secs: i64) {
        if let Some(t) = &self.0 {
            t.store(unix_secs, Ordering::SeqCst);
        }
    }
}

/// A pre-created key (session) for standard token auth, or a session to
/// compare against. Metadata values that are not strings are JSON-encoded,
/// as the gateway does.
///
/// ```
/// # use tyk_plugin::testkit::Key;
/// let key = Key::new()
///     .meta("plan", "gold")
///     .meta("nested", serde_json::json!({"a": 1}))
///     .quota(10, 3600)
///     .access("api1");
/// assert_eq!(key.session().metadata["nested"], r#"{"a":1}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Key(SessionState);

impl Key {
    /// An unlimited key for all APIs.
    pub fn new() -> Self {
        Key(normalize(SessionState::default()))
    }

    /// Sets a metadata entry; non-strings are stored as Go-encoded JSON.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let value = match value.into() {
            Value::String(s) => s,
            other => super::gocompat::go_json(&other),
        };
        self.0.metadata.insert(key.into(), value);
        self
    }

    /// Sets the rate limit: `rate` requests per `per` seconds.
    pub fn rate(mut self, rate: f64, per: f64) -> Self {
        self.0.rate = rate;
        self.0.per = per;
        self
    }

    /// Sets the quota: `max` requests per `renewal_secs` (0: never renews).
    pub fn quota(mut self, max: i64, renewal_secs: i64) -> Self {
        self.0.quota_max = max;
        self.0.quota_remaining = max;
        self.0.quota_renewal_rate = renewal_secs;
        self
    }

    /// Sets `expires` (Unix seconds; < 1 never expires).
    pub fn expires(mut self, unix_secs: i64) -> Self {
        self.0.expires = unix_secs;
        self
    }

    /// Marks the key inactive.
    pub fn inactive(mut self) -> Self {
        self.0.is_inactive = true;
        self
    }

    /// Grants access to `api_id` (a key with no access rights may call every API).
    pub fn access(mut self, api_id: impl Into<String>) -> Self {
        let api_id = api_id.into();
        self.0.access_rights.insert(
            api_id.clone(),
            AccessDefinition {
                api_id,
                versions: vec!["Default".into()],
                ..Default::default()
            },
        );
        self
    }

    /// Applies a policy by id (`apply_policies`).
    pub fn policy(mut self, policy_id: impl Into<String>) -> Self {
        self.0.apply_policies.push(policy_id.into());
        self
    }

    /// Sets the org id.
    pub fn org(mut self, org_id: impl Into<String>) -> Self {
        self.0.org_id = org_id.into();
        self
    }

    /// The session.
    pub fn session(&self) -> &SessionState {
        &self.0
    }

    /// The session, owned.
    pub fn into_session(self) -> SessionState {
        self.0
    }
}

impl From<SessionState> for Key {
    fn from(s: SessionState) -> Self {
        Key(normalize(s))
    }
}

/// Fills the sub-messages the gateway always sends.
pub(crate) fn normalize(mut s: SessionState) -> SessionState {
    s.basic_auth_data.get_or_insert_with(BasicAuthData::default);
    s.jwt_data.get_or_insert_with(JwtData::default);
    s.monitor.get_or_insert_with(Monitor::default);
    s
}

/// A security policy: what `apply_policies`/`apply_policy_id` pull into a
/// session (rate, quota, access rights).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Requests per `per` (0: unlimited).
    pub rate: f64,
    /// Rate window, seconds.
    pub per: f64,
    /// Quota (≤ 0: unlimited).
    pub quota_max: i64,
    /// Quota renewal period, seconds.
    pub quota_renewal_rate: i64,
    /// API ids this policy grants (empty: leaves the session's rights alone).
    pub access_rights: Vec<String>,
}

impl Policy {
    /// An empty policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rate limit.
    pub fn rate(mut self, rate: f64, per: f64) -> Self {
        self.rate = rate;
        self.per = per;
        self
    }

    /// Sets the quota.
    pub fn quota(mut self, max: i64, renewal_secs: i64) -> Self {
        self.quota_max = max;
        self.quota_renewal_rate = renewal_secs;
        self
    }

    /// Grants access to `api_id`.
    pub fn access(mut self, api_id: impl Into<String>) -> Self {
        self.access_rights.push(api_id.into());
        self
    }
}

/// Applies the session's policies; `Err(id)` for an unknown one.
pub(crate) fn apply_policies(
    session: &mut SessionState,
    lookup: impl Fn(&str) -> Option<Policy>,
) -> Result<(), String> {
    let mut ids = session.apply_policies.clone();
    if !session.apply_policy_id.is_empty() && !ids.contains(&session.apply_policy_id) {
        ids.insert(0, session.apply_policy_id.clone());
    }
    if ids.is_empty() {
        return Ok(());
    }
    let policies = ids
        .iter()
        .map(|id| lookup(id).ok_or_else(|| id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let first = &policies[0];
    session.rate = first.rate;
    session.per = first.per;
    session.quota_max = first.quota_max;
    session.quota_renewal_rate = first.quota_renewal_rate;
    let mut rights = std::collections::BTreeMap::new();
    for p in &policies {
        if p.rate > session.rate {
            session.rate = p.rate;
            session.per = p.per;
        }
        if p.quota_max > session.quota_max || p.quota_max < 0 {
            session.quota_max = p.quota_max;
            session.quota_renewal_rate = p.quota_renewal_rate;
        }
        for api in &p.access_rights {
            rights.insert(
                api.clone(),
                AccessDefinition {
                    api_id: api.clone(),
                    versions: vec!["Default".into()],
                    ..Default::default()
                },
            );
        }
    }
    if !rights.is_empty() {
        session.access_rights = rights;
    }
    Ok(())
}
