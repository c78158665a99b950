//! Sessions: the one a custom-auth plugin grants, and typed reads of the one
//! the gateway sends.
//!
//! * [`Session::builder`] builds the session a `CustomKeyCheck` (custom
//!   authentication) hook returns. It cannot forget the token the gateway
//!   requires (`metadata["token"]`, tyk#2543), takes every time as a
//!   [`Duration`] or [`SystemTime`] and converts it to the gateway's units
//!   (Unix seconds, seconds), and rejects values the gateway would
//!   misread (a `NaN` rate, a zero period, an expiry at the epoch, which
//!   means "never").
//! * [`SessionView`] reads the session the gateway sends to `PostKeyAuth`,
//!   `Post` and `Response` hooks: expiry and deadlines as [`SystemTime`],
//!   quota, access rights, and metadata values decoded from JSON (the
//!   gateway JSON-encodes non-string metadata values).
//!
//! ```
//! use std::time::Duration;
//! use tyk_plugin::session::Session;
//!
//! let session = Session::builder("user-42")
//!     .rate(100, Duration::from_secs(60))
//!     .quota(10_000, Duration::from_secs(3600))
//!     .access("api1", "Petstore", ["Default"])
//!     .meta("plan", "gold")
//!     .cache_for(Duration::from_secs(300))
//!     .build()?;
//! assert_eq!(session.token(), "user-42");
//! assert_eq!(session.state().metadata["token"], "user-42");
//! # Ok::<(), tyk_plugin::session::SessionError>(())
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use tyk_coprocess::{
    AccessDefinition, AccessSpec, BasicAuthData, JwtData, Monitor, Object, SessionState,
};

/// The metadata key holding the session token.
///
/// The gateway grants a custom-auth session only if this key is present
/// and non-empty, even when an ID extractor is used (tyk#2543).
pub const TOKEN_KEY: &str = "token";

/// Why a session could not be built or accepted.
///
/// ```
/// use tyk_plugin::session::{Session, SessionError};
///
/// let err = Session::builder("").build().unwrap_err();
/// assert!(matches!(err, SessionError::EmptyToken));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The token is empty (or the state has no `metadata["token"]`).
    #[error(
        "the session token is empty: the gateway rejects a custom-auth session without a non-empty metadata[\"token\"] (tyk#2543)"
    )]
    EmptyToken,
    /// The rate is `NaN`, infinite or negative.
    #[error(
        "invalid rate {rate}: the number of requests per period must be finite and not negative (0 = no rate limit)"
    )]
    InvalidRate {
        /// The rejected value.
        rate: f64,
    },
    /// A period or duration is zero or too short for the gateway's unit.
    #[error("{what} must be at least {minimum}, got {got:?}")]
    PeriodTooShort {
        /// Which setting (e.g. "rate period").
        what: &'static str,
        /// The smallest accepted value, in words.
        minimum: &'static str,
        /// The rejected duration.
        got: Duration,
    },
    /// The quota maximum is zero or negative.
    #[error(
        "invalid quota maximum {max}: it must be at least 1 (use unlimited_quota() for no quota)"
    )]
    InvalidQuota {
        /// The rejected value.
        max: i64,
    },
    /// A point in time cannot be expressed as gateway Unix seconds.
    #[error(
        "{what} is out of range: it must be after 1970-01-01T00:00:01Z and fit in 64-bit Unix seconds"
    )]
    TimeOutOfRange {
        /// Which setting (e.g. "expiry").
        what: &'static str,
    },
    /// `meta("token", …)` with a value other than the builder's token.
    #[error(
        "metadata key \"token\" is reserved for the session token; pass the token to Session::builder"
    )]
    ReservedMetadataKey,
    /// An access right without an API id.
    #[error("an access right needs a non-empty API id")]
    EmptyApiId,
    /// [`SessionBuilder::allow_url`] for an API without [`SessionBuilder::access`].
    #[error(
        "allowed URL {url:?} for API {api_id:?}, which has no access right: call access({api_id:?}, …) too"
    )]
    UrlWithoutAccess {
        /// The API id given to `allow_url`.
        api_id: String,
        /// The URL pattern given to `allow_url`.
        url: String,
    },
}

/// What happens to a key after it expires (`post_expiry_action`, gateway ≥ 5.13).
///
/// ```
/// use tyk_plugin::session::PostExpiryAction;
/// assert_eq!(PostExpiryAction::Retain.as_str(), "retain");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostExpiryAction {
    /// Keep the expired key (`"retain"`).
    Retain,
    /// Delete the expired key (`"delete"`).
    Delete,
}

impl PostExpiryAction {
    /// The value the gateway expects.
    pub fn as_str(self) -> &'static str {
        match self {
            PostExpiryAction::Retain => "retain",
            PostExpiryAction::Delete => "delete",
        }
    }
}

/// A session granted by a custom-auth plugin: a [`SessionState`] whose
/// `metadata["token"]` is non-empty, plus that token.
///
/// Build one with [`Session::builder`], or check an existing state with
/// [`Session::from_state`]; return it with [`Session::grant`].
///
/// ```
/// use tyk_plugin::session::Session;
///
/// let session = Session::builder("key-1").build()?;
/// let state = session.into_state();
/// assert_eq!(state.metadata["token"], "key-1");
/// # Ok::<(), tyk_plugin::session::SessionError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    token: String,
    state: SessionState,
}

impl Session {
    /// Starts a session for `token`, the key the gateway will store the
    /// session under (unless an ID extractor is active) and show in logs.
    ///
    /// An empty token is reported by [`SessionBuilder::build`].
    ///
    /// ```
    /// use tyk_plugin::session::Session;
    /// let session = Session::builder("user-42").build()?;
    /// assert_eq!(session.token(), "user-42");
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn builder(token: impl Into<String>) -> SessionBuilder {
        SessionBuilder::new(token.into())
    }

    /// Accepts an existing state if its `metadata["token"]` is non-empty.
    ///
    /// ```
    /// use tyk_plugin::coprocess::SessionState;
    /// use tyk_plugin::session::{Session, SessionError};
    ///
    /// let mut state = SessionState::default();
    /// assert_eq!(Session::from_state(state.clone()).unwrap_err(), SessionError::EmptyToken);
    /// state.metadata.insert("token".into(), "abc".into());
    /// assert_eq!(Session::from_state(state)?.token(), "abc");
    /// # Ok::<(), SessionError>(())
    /// ```
    pub fn from_state(state: SessionState) -> Result<Self, SessionError> {
        match state.metadata.get(TOKEN_KEY) {
            Some(token) if !token.is_empty() => Ok(Session {
                token: token.clone(),
                state,
            }),
            _ => Err(SessionError::EmptyToken),
        }
    }

    /// The token (`metadata["token"]`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The state that will be sent to the gateway.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Typed reads of this session.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").rate(5, Duration::from_secs(1)).build()?;
    /// assert_eq!(s.view().rate().unwrap().requests, 5.0);
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn view(&self) -> SessionView<'_> {
        SessionView::new(&self.state)
    }

    /// The state, for a reply's `Object.session`.
    pub fn into_state(self) -> SessionState {
        self.state
    }

    /// The token and the state.
    pub fn into_parts(self) -> (String, SessionState) {
        (self.token, self.state)
    }

    /// Grants this session in a custom-auth reply: sets `object.session`
    /// and `object.metadata["token"]`.
    ///
    /// The gateway merges `Object.metadata` into the session's metadata, so
    /// the token is set in both places (either one is enough for the
    /// gateway, as Tyk's own samples show).
    ///
    /// ```
    /// use tyk_plugin::coprocess::Object;
    /// use tyk_plugin::session::Session;
    ///
    /// let mut object = Object::default();
    /// Session::builder("user-42").build()?.grant(&mut object);
    /// assert_eq!(object.metadata["token"], "user-42");
    /// assert_eq!(object.session.unwrap().metadata["token"], "user-42");
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn grant(self, object: &mut Object) {
        object
            .metadata
            .insert(TOKEN_KEY.to_owned(), self.token.clone());
        object.session = Some(self.state);
    }
}

impl From<Session> for SessionState {
    fn from(session: Session) -> Self {
        session.state
    }
}

impl TryFrom<SessionState> for Session {
    type Error = SessionError;
    fn try_from(state: SessionState) -> Result<Self, SessionError> {
        Session::from_state(state)
    }
}

#[derive(Debug, Clone, Copy)]
enum Expiry {
    Never,
    In(Duration),
    At(SystemTime),
}

/// Builds a [`Session`]; see [`Session::builder`].
///
/// Setters never fail: the first invalid value is remembered and reported
/// by [`build`](SessionBuilder::build) / [`build_at`](SessionBuilder::build_at).
/// Times relative to "now" (`expires_in`, `quota`, `cache_for`) are
/// resolved when the session is built.
///
/// Defaults: no rate limit, no quota, never expires, access to all APIs
/// (empty `access_rights`), active.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use tyk_plugin::session::Session;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let s = Session::builder("user-42")
///     .rate(100, Duration::from_secs(60))
///     .quota(10_000, Duration::from_secs(3600))
///     .expires_in(Duration::from_secs(86_400))
///     .policy("pol1")
///     .tag("gold")
///     .build_at(now)?;
/// let st = s.state();
/// assert_eq!((st.rate, st.per), (100.0, 60.0));
/// assert_eq!((st.quota_max, st.quota_remaining, st.quota_renewal_rate), (10_000, 10_000, 3600));
/// assert_eq!(st.quota_renews, 1_700_003_600);
/// assert_eq!(st.expires, 1_700_086_400);
/// # Ok::<(), tyk_plugin::session::SessionError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct SessionBuilder {
    token: String,
    state: SessionState,
    error: Option<SessionError>,
    expiry: Expiry,
    quota_period: Option<Duration>,
    cache_for: Option<Duration>,
    urls: Vec<(String, AccessSpec)>,
}

impl SessionBuilder {
    fn new(token: String) -> Self {
        SessionBuilder {
            token,
            state: SessionState::default(),
            error: None,
            expiry: Expiry::Never,
            quota_period: None,
            cache_for: None,
            urls: Vec::new(),
        }
    }

    fn fail(&mut self, error: SessionError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Rate limit: `requests` per `period` (`rate` / `per`). A period may
    /// be fractional seconds; `requests` may be fractional too. `0`
    /// requests means no rate limit (the default).
    ///
    /// Errors at build: `requests` negative or not finite, `period` zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").rate(2.5, Duration::from_millis(500)).build()?;
    /// assert_eq!((s.state().rate, s.state().per), (2.5, 0.5));
    /// assert!(Session::builder("t").rate(f64::NAN, Duration::from_secs(1)).build().is_err());
    /// assert!(Session::builder("t").rate(1, Duration::ZERO).build().is_err());
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn rate(mut self, requests: impl Into<f64>, period: Duration) -> Self {
        let rate = requests.into();
        if !rate.is_finite() || rate < 0.0 {
            self.fail(SessionError::InvalidRate { rate });
        } else if period.is_zero() {
            self.fail(SessionError::PeriodTooShort {
                what: "the rate period",
                minimum: "one nanosecond",
                got: period,
            });
        } else {
            self.state.rate = rate;
            self.state.per = period.as_secs_f64();
        }
        self
    }

    /// Quota: at most `max` requests per renewal `period`. Sets
    /// `quota_max` and `quota_remaining` to `max`, `quota_renewal_rate` to
    /// the period in whole seconds (fractions are dropped) and
    /// `quota_renews` to now + period.
    ///
    /// If the gateway already stores a session under this key, it keeps
    /// that session's `quota_remaining`/`quota_renews`, so the quota keeps
    /// counting down across grants.
    ///
    /// Errors at build: `max < 1`, `period` under one second.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tyk_plugin::session::Session;
    /// let now = UNIX_EPOCH + Duration::from_secs(1000);
    /// let s = Session::builder("t").quota(50, Duration::from_secs(60)).build_at(now)?;
    /// assert_eq!(s.state().quota_renews, 1060);
    /// assert!(Session::builder("t").quota(0, Duration::from_secs(60)).build().is_err());
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn quota(mut self, max: i64, period: Duration) -> Self {
        if max < 1 {
            self.fail(SessionError::InvalidQuota { max });
        } else if period.as_secs() == 0 {
            self.fail(SessionError::PeriodTooShort {
                what: "the quota renewal period",
                minimum: "one second",
                got: period,
            });
        } else {
            self.state.quota_max = max;
            self.state.quota_remaining = max;
            self.quota_period = Some(period);
        }
        self
    }

    /// No quota: `quota_max = -1` (Tyk's "unlimited"), renewal fields zero.
    ///
    /// ```
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").unlimited_quota().build()?;
    /// assert_eq!(s.state().quota_max, -1);
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn unlimited_quota(mut self) -> Self {
        self.state.quota_max = -1;
        self.state.quota_remaining = 0;
        self.state.quota_renewal_rate = 0;
        self.quota_period = None;
        self
    }

    /// The key expires `after` from now (`expires`, Unix seconds).
    ///
    /// Errors at build: `after` under one second.
    pub fn expires_in(mut self, after: Duration) -> Self {
        if after.as_secs() == 0 {
            self.fail(SessionError::PeriodTooShort {
                what: "the expiry delay",
                minimum: "one second",
                got: after,
            });
        } else {
            self.expiry = Expiry::In(after);
        }
        self
    }

    /// The key expires at `when` (rounded down to whole Unix seconds). A
    /// time in the past makes the gateway answer 401 "Key has expired".
    ///
    /// Errors at build: `when` before 1970-01-01T00:00:01Z (the gateway
    /// reads values below 1 as "never expires").
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").expires_at(UNIX_EPOCH + Duration::from_secs(2_000_000_000)).build()?;
    /// assert_eq!(s.state().expires, 2_000_000_000);
    /// assert!(Session::builder("t").expires_at(UNIX_EPOCH).build().is_err());
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn expires_at(mut self, when: SystemTime) -> Self {
        self.expiry = Expiry::At(when);
        self
    }

    /// The key never expires (`expires = 0`, the default).
    pub fn never_expires(mut self) -> Self {
        self.expiry = Expiry::Never;
        self
    }

    /// Grants access to one API (`access_rights[api_id]`), replacing an
    /// earlier grant for the same id. Once any access right is set, only
    /// the listed APIs are allowed (403 "Access to this API has been
    /// disallowed" elsewhere). Unversioned APIs use the version
    /// `"Default"`.
    ///
    /// ```
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").access("api1", "Petstore", ["Default"]).build()?;
    /// let def = &s.state().access_rights["api1"];
    /// assert_eq!((def.api_id.as_str(), def.api_name.as_str()), ("api1", "Petstore"));
    /// assert_eq!(def.versions, ["Default"]);
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn access<V, S>(
        self,
        api_id: impl Into<String>,
        api_name: impl Into<String>,
        versions: V,
    ) -> Self
    where
        V: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let api_id = api_id.into();
        self.access_definition(AccessDefinition {
            api_name: api_name.into(),
            api_id,
            versions: versions.into_iter().map(Into::into).collect(),
            allowed_urls: Vec::new(),
        })
    }

    /// Grants access with a complete [`AccessDefinition`] (keyed by its
    /// `api_id`), e.g. one copied from another session.
    pub fn access_definition(mut self, definition: AccessDefinition) -> Self {
        if definition.api_id.is_empty() {
            self.fail(SessionError::EmptyApiId);
        } else {
            self.state
                .access_rights
                .insert(definition.api_id.clone(), definition);
        }
        self
    }

    /// Restricts an API granted with [`access`](Self::access) to a URL
    /// pattern (a regular expression matched against the path) and the
    /// given methods. May be called several times; the API is then limited
    /// to the union of its allowed URLs.
    ///
    /// Errors at build: no `access` for `api_id`.
    ///
    /// ```
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t")
    ///     .access("api1", "Petstore", ["Default"])
    ///     .allow_url("api1", "/pet/.*", ["GET"])
    ///     .build()?;
    /// let urls = &s.state().access_rights["api1"].allowed_urls;
    /// assert_eq!((urls[0].url.as_str(), urls[0].methods.as_slice()), ("/pet/.*", &["GET".to_string()][..]));
    /// assert!(Session::builder("t").allow_url("api2", "/x", ["GET"]).build().is_err());
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn allow_url<M, S>(
        mut self,
        api_id: impl Into<String>,
        url: impl Into<String>,
        methods: M,
    ) -> Self
    where
        M: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls.push((
            api_id.into(),
            AccessSpec {
                url: url.into(),
                methods: methods.into_iter().map(Into::into).collect(),
            },
        ));
        self
    }

    /// Applies a policy by id (`apply_policies`); an unknown policy makes
    /// the gateway answer 403.
    pub fn policy(mut self, policy_id: impl Into<String>) -> Self {
        self.state.apply_policies.push(policy_id.into());
        self
    }

    /// Applies several policies (appended to `apply_policies`).
    ///
    /// ```
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").policy("a").policies(["b", "c"]).build()?;
    /// assert_eq!(s.state().apply_policies, ["a", "b", "c"]);
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn policies<P, S>(mut self, policy_ids: P) -> Self
    where
        P: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.state
            .apply_policies
            .extend(policy_ids.into_iter().map(Into::into));
        self
    }

    /// Adds a tag (`tags`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.state.tags.push(tag.into());
        self
    }

    /// Sets a metadata entry. The gateway stores what a plugin returns as
    /// strings; to keep structured data, store JSON text and read it back
    /// with [`SessionView::meta_as`].
    ///
    /// Errors at build: key `"token"` with a value other than the token.
    ///
    /// ```
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").meta("plan", "gold").meta("limits", r#"{"a":1}"#).build()?;
    /// assert_eq!(s.state().metadata["plan"], "gold");
    /// assert!(Session::builder("t").meta("token", "other").build().is_err());
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let value = value.into();
        if key == TOKEN_KEY && value != self.token {
            self.fail(SessionError::ReservedMetadataKey);
        } else {
            self.state.metadata.insert(key, value);
        }
        self
    }

    /// Sets the alias shown in analytics and logs (`alias`).
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.state.alias = alias.into();
        self
    }

    /// Lets the gateway's ID extractor reuse this session for `ttl`
    /// without calling the plugin (`id_extractor_deadline` = now + ttl,
    /// Unix seconds, rounded down). Only has an effect on APIs with an ID
    /// extractor. `Duration::ZERO` (the default) disables caching: the
    /// plugin is called on every request.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tyk_plugin::session::Session;
    /// let now = UNIX_EPOCH + Duration::from_secs(1000);
    /// let s = Session::builder("t").cache_for(Duration::from_secs(300)).build_at(now)?;
    /// assert_eq!(s.state().id_extractor_deadline, 1300);
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn cache_for(mut self, ttl: Duration) -> Self {
        self.cache_for = (!ttl.is_zero()).then_some(ttl);
        self
    }

    /// Marks the key inactive (`is_inactive`): the gateway answers 403
    /// "Key is inactive, please renew".
    pub fn inactive(mut self, inactive: bool) -> Self {
        self.state.is_inactive = inactive;
        self
    }

    /// Sets `key_id` (gateway ≥ 5.9).
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.state.key_id = key_id.into();
        self
    }

    /// Sets what happens after expiry (`post_expiry_action`, gateway ≥ 5.13).
    pub fn post_expiry_action(mut self, action: PostExpiryAction) -> Self {
        self.state.post_expiry_action = action.as_str().to_owned();
        self
    }

    /// Sets how long an expired key is kept (`post_expiry_grace_period`,
    /// whole seconds, gateway ≥ 5.13); `None` keeps it forever (`-1`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tyk_plugin::session::{PostExpiryAction, Session};
    /// let s = Session::builder("t")
    ///     .post_expiry_action(PostExpiryAction::Delete)
    ///     .post_expiry_grace_period(Some(Duration::from_secs(3600)))
    ///     .build()?;
    /// assert_eq!((s.state().post_expiry_action.as_str(), s.state().post_expiry_grace_period), ("delete", 3600));
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn post_expiry_grace_period(mut self, grace: Option<Duration>) -> Self {
        self.state.post_expiry_grace_period = match grace {
            None => -1,
            Some(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        };
        self
    }

    /// Sets `session_lifetime` (whole seconds): how long the gateway keeps
    /// the stored session.
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.state.session_lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Records request and response bodies in analytics
    /// (`enable_detailed_recording`).
    pub fn detailed_recording(mut self, enabled: bool) -> Self {
        self.state.enable_detailed_recording = enabled;
        self
    }

    /// Edits the raw state for fields the builder does not cover (e.g.
    /// `hmac_secret`, `monitor`). The token, the time-derived fields set by
    /// the builder and `last_updated` are applied afterwards at build.
    ///
    /// ```
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").with_state(|st| st.hmac_enabled = true).build()?;
    /// assert!(s.state().hmac_enabled);
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn with_state(mut self, edit: impl FnOnce(&mut SessionState)) -> Self {
        edit(&mut self.state);
        self
    }

    /// Builds the session with the system clock.
    pub fn build(self) -> Result<Session, SessionError> {
        self.build_at(SystemTime::now())
    }

    /// Builds the session with `now` as the current time (for tests, or a
    /// clock of your own). Sets `last_updated` to `now`.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").build_at(UNIX_EPOCH + Duration::from_secs(42))?;
    /// assert_eq!(s.state().last_updated, "42");
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn build_at(self, now: SystemTime) -> Result<Session, SessionError> {
        let SessionBuilder {
            token,
            mut state,
            error,
            expiry,
            quota_period,
            cache_for,
            urls,
        } = self;
        if token.is_empty() {
            return Err(SessionError::EmptyToken);
        }
        if let Some(error) = error {
            return Err(error);
        }
        for (api_id, spec) in urls {
            match state.access_rights.get_mut(&api_id) {
                Some(def) => def.allowed_urls.push(spec),
                None => {
                    return Err(SessionError::UrlWithoutAccess {
                        api_id,
                        url: spec.url,
                    });
                }
            }
        }
        let now_secs = unix_secs(now, "the current time")?;
        state.expires = match expiry {
            Expiry::Never => 0,
            Expiry::In(after) => add_secs(now_secs, after, "the expiry")?,
            Expiry::At(when) => unix_secs(when, "the expiry")?,
        };
        if let Some(period) = quota_period {
            let secs =
                i64::try_from(period.as_secs()).map_err(|_| SessionError::TimeOutOfRange {
                    what: "the quota renewal period",
                })?;
            state.quota_renewal_rate = secs;
            state.quota_renews = add_secs(now_secs, period, "the quota renewal time")?;
        }
        state.id_extractor_deadline = match cache_for {
            None => 0,
            Some(ttl) => add_secs(now_secs, ttl, "the ID extractor deadline")?,
        };
        state.last_updated = now_secs.to_string();
        // The gateway always sends these sub-messages; mirror that so the
        // reply looks like a session the gateway produced.
        state
            .basic_auth_data
            .get_or_insert_with(BasicAuthData::default);
        state.jwt_data.get_or_insert_with(JwtData::default);
        state.monitor.get_or_insert_with(Monitor::default);
        state.metadata.insert(TOKEN_KEY.to_owned(), token.clone());
        Ok(Session { token, state })
    }
}

/// Whole Unix seconds of `t`; at least 1 (0 and below mean "never" to the gateway).
fn unix_secs(t: SystemTime, what: &'static str) -> Result<i64, SessionError> {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .filter(|&s| s >= 1)
        .ok_or(SessionError::TimeOutOfRange { what })
}

fn add_secs(base: i64, d: Duration, what: &'static str) -> Result<i64, SessionError> {
    i64::try_from(d.as_secs())
        .ok()
        .and_then(|s| base.checked_add(s))
        .ok_or(SessionError::TimeOutOfRange { what })
}

fn from_unix_secs(secs: i64) -> Option<SystemTime> {
    if secs < 1 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// A rate limit read from a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests allowed per `per`.
    pub requests: f64,
    /// The window.
    pub per: Duration,
}

/// A quota read from a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed per renewal period (`quota_max`).
    pub max: i64,
    /// Requests left in the current period (`quota_remaining`).
    pub remaining: i64,
    /// When the quota renews (`quota_renews`), if set.
    pub renews_at: Option<SystemTime>,
    /// The renewal period (`quota_renewal_rate`), if set.
    pub period: Option<Duration>,
}

/// Typed, borrowing reads of a [`SessionState`], e.g. the session the
/// gateway sends to `PostKeyAuth`, `Post` and `Response` hooks.
///
/// ```
/// use std::collections::BTreeMap;
/// use tyk_plugin::coprocess::SessionState;
/// use tyk_plugin::session::SessionView;
///
/// let mut state = SessionState::default();
/// state.expires = 2_000_000_000;
/// state.metadata.insert("token".into(), "abc".into());
/// state.metadata.insert("plan".into(), "gold".into());
/// state.metadata.insert("limits".into(), r#"{"daily":5}"#.into());
///
/// let view = SessionView::new(&state);
/// assert_eq!(view.token(), Some("abc"));
/// assert!(view.expires().is_some());
/// assert_eq!(view.meta_str("plan"), Some("gold"));
/// let limits: BTreeMap<String, u32> = view.meta_as("limits").unwrap()?;
/// assert_eq!(limits["daily"], 5);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SessionView<'a> {
    state: &'a SessionState,
}

impl<'a> From<&'a SessionState> for SessionView<'a> {
    fn from(state: &'a SessionState) -> Self {
        SessionView { state }
    }
}

impl<'a> SessionView<'a> {
    /// Views `state`.
    pub fn new(state: &'a SessionState) -> Self {
        SessionView { state }
    }

    /// The viewed state.
    pub fn state(&self) -> &'a SessionState {
        self.state
    }

    /// `metadata["token"]`, if non-empty: the key the request was
    /// authenticated with.
    pub fn token(&self) -> Option<&'a str> {
        self.meta_str(TOKEN_KEY).filter(|t| !t.is_empty())
    }

    /// True for the all-zero session the gateway sends to Response hooks on
    /// keyless APIs (and for any session with no data at all).
    ///
    /// ```
    /// use tyk_plugin::coprocess::{BasicAuthData, SessionState};
    /// use tyk_plugin::session::SessionView;
    /// let mut s = SessionState { basic_auth_data: Some(BasicAuthData::default()), ..Default::default() };
    /// assert!(SessionView::new(&s).is_empty());
    /// s.rate = 1.0;
    /// assert!(!SessionView::new(&s).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        let s = self.state;
        if !s.metadata.is_empty() || !s.access_rights.is_empty() || !s.oauth_keys.is_empty() {
            return false;
        }
        if !s.basic_auth_data.as_ref().is_none_or(is_default)
            || !s.jwt_data.as_ref().is_none_or(is_default)
            || !s.monitor.as_ref().is_none_or(is_default)
        {
            return false;
        }
        let bare = SessionState {
            basic_auth_data: None,
            jwt_data: None,
            monitor: None,
            tags: Vec::new(),
            apply_policies: Vec::new(),
            ..s.clone()
        };
        s.tags.is_empty() && s.apply_policies.is_empty() && bare == SessionState::default()
    }

    /// The rate limit, or `None` if there is none (`rate <= 0`) or `per` is
    /// not a positive number of seconds.
    pub fn rate(&self) -> Option<RateLimit> {
        let (rate, per) = (self.state.rate, self.state.per);
        if !(rate > 0.0 && rate.is_finite()) {
            return None;
        }
        let per = Duration::try_from_secs_f64(per)
            .ok()
            .filter(|d| !d.is_zero())?;
        Some(RateLimit {
            requests: rate,
            per,
        })
    }

    /// The quota, or `None` if it is not enforced (`quota_max <= 0`, e.g.
    /// Tyk's `-1` "unlimited").
    ///
    /// ```
    /// use tyk_plugin::coprocess::SessionState;
    /// use tyk_plugin::session::SessionView;
    /// let s = SessionState { quota_max: 100, quota_remaining: 7, ..Default::default() };
    /// assert_eq!(SessionView::new(&s).quota().unwrap().remaining, 7);
    /// assert_eq!(SessionView::new(&s).quota_remaining(), Some(7));
    /// ```
    pub fn quota(&self) -> Option<Quota> {
        let s = self.state;
        (s.quota_max > 0).then(|| Quota {
            max: s.quota_max,
            remaining: s.quota_remaining,
            renews_at: from_unix_secs(s.quota_renews),
            period: u64::try_from(s.quota_renewal_rate)
                .ok()
                .filter(|&p| p > 0)
                .map(Duration::from_secs),
        })
    }

    /// Requests left in the quota period, if a quota is enforced.
    pub fn quota_remaining(&self) -> Option<i64> {
        self.quota().map(|q| q.remaining)
    }

    /// When the key expires, or `None` if it never does (`expires < 1`).
    pub fn expires(&self) -> Option<SystemTime> {
        from_unix_secs(self.state.expires)
    }

    /// Whether the key has expired at `now` (the gateway's check).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tyk_plugin::coprocess::SessionState;
    /// use tyk_plugin::session::SessionView;
    /// let s = SessionState { expires: 100, ..Default::default() };
    /// assert!(SessionView::new(&s).is_expired_at(UNIX_EPOCH + Duration::from_secs(101)));
    /// assert!(!SessionView::new(&SessionState::default()).is_expired_at(UNIX_EPOCH + Duration::from_secs(101)));
    /// ```
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires().is_some_and(|e| e < now)
    }

    /// Until when the ID extractor may reuse this session
    /// (`id_extractor_deadline`), if set.
    pub fn id_extractor_deadline(&self) -> Option<SystemTime> {
        from_unix_secs(self.state.id_extractor_deadline)
    }

    /// When the session was last updated (`last_updated`, Unix seconds as
    /// a decimal string), if set and well-formed.
    pub fn last_updated(&self) -> Option<SystemTime> {
        from_unix_secs(self.state.last_updated.trim().parse().ok()?)
    }

    /// Whether the key is inactive (`is_inactive`).
    pub fn is_inactive(&self) -> bool {
        self.state.is_inactive
    }

    /// The applied policies: `apply_policies`, then the legacy
    /// `apply_policy_id` if set and not already listed.
    ///
    /// ```
    /// use tyk_plugin::coprocess::SessionState;
    /// use tyk_plugin::session::SessionView;
    /// let s = SessionState { apply_policies: vec!["a".into()], apply_policy_id: "b".into(), ..Default::default() };
    /// assert_eq!(SessionView::new(&s).policies().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn policies(&self) -> impl Iterator<Item = &'a str> + 'a {
        let s = self.state;
        let legacy = Some(s.apply_policy_id.as_str())
            .filter(|p| !p.is_empty() && !s.apply_policies.iter().any(|q| q == p));
        s.apply_policies.iter().map(String::as_str).chain(legacy)
    }

    /// The tags.
    pub fn tags(&self) -> &'a [String] {
        &self.state.tags
    }

    /// The alias, if set.
    pub fn alias(&self) -> Option<&'a str> {
        non_empty(&self.state.alias)
    }

    /// The organisation id, if set.
    pub fn org_id(&self) -> Option<&'a str> {
        non_empty(&self.state.org_id)
    }

    /// The key id (gateway ≥ 5.9), if set.
    pub fn key_id(&self) -> Option<&'a str> {
        non_empty(&self.state.key_id)
    }

    /// Whether the session may call `api_id` (an empty `access_rights`
    /// allows every API).
    ///
    /// ```
    /// use tyk_plugin::session::Session;
    /// let s = Session::builder("t").access("api1", "A", ["Default"]).build()?;
    /// assert!(s.view().has_access("api1"));
    /// assert!(!s.view().has_access("api2"));
    /// # Ok::<(), tyk_plugin::session::SessionError>(())
    /// ```
    pub fn has_access(&self, api_id: &str) -> bool {
        self.state.access_rights.is_empty() || self.state.access_rights.contains_key(api_id)
    }

    /// The access right for `api_id`, if listed.
    pub fn access(&self, api_id: &str) -> Option<&'a AccessDefinition> {
        self.state.access_rights.get(api_id)
    }

    /// All metadata, as sent (non-string values JSON-encoded).
    pub fn metadata(&self) -> &'a BTreeMap<String, String> {
        &self.state.metadata
    }

    /// A metadata value as sent.
    pub fn meta_str(&self, key: &str) -> Option<&'a str> {
        self.state.metadata.get(key).map(String::as_str)
    }

    /// A metadata value as JSON: the decoded value if it is JSON text (the
    /// gateway encodes non-string values that way), otherwise the string.
    ///
    /// The wire cannot tell the string `"42"` from the number `42`: both
    /// arrive as `42` and decode to a number here. Use
    /// [`meta_str`](Self::meta_str) for values known to be strings.
    ///
    /// ```
    /// use serde_json::json;
    /// use tyk_plugin::coprocess::SessionState;
    /// use tyk_plugin::session::SessionView;
    /// let mut s = SessionState::default();
    /// s.metadata.insert("n".into(), "{\"a\":[1,2]}".into());
    /// s.metadata.insert("plan".into(), "gold".into());
    /// let v = SessionView::new(&s);
    /// assert_eq!(v.meta_value("n"), Some(json!({"a": [1, 2]})));
    /// assert_eq!(v.meta_value("plan"), Some(json!("gold")));
    /// ```
    pub fn meta_value(&self, key: &str) -> Option<serde_json::Value> {
        let raw = self.meta_str(key)?;
        Some(
            serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_owned())),
        )
    }

    /// A metadata value deserialized into `T`: first as JSON text, then,
    /// if that fails, as a plain string (so `meta_as::<String>` works for
    /// string values and `meta_as::<u64>` for numbers). `None` if the key
    /// is absent; the JSON error if neither works.
    ///
    /// ```
    /// use tyk_plugin::coprocess::SessionState;
    /// use tyk_plugin::session::SessionView;
    /// let mut s = SessionState::default();
    /// s.metadata.insert("limit".into(), "5".into());
    /// s.metadata.insert("plan".into(), "gold".into());
    /// let v = SessionView::new(&s);
    /// assert_eq!(v.meta_as::<u32>("limit").unwrap()?, 5);
    /// assert_eq!(v.meta_as::<String>("plan").unwrap()?, "gold");
    /// assert_eq!(v.meta_as::<String>("limit").unwrap()?, "5");
    /// assert!(v.meta_as::<u32>("plan").unwrap().is_err());
    /// assert!(v.meta_as::<u32>("missing").is_none());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn meta_as<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, serde_json::Error>> {
        let raw = self.meta_str(key)?;
        Some(serde_json::from_str(raw).or_else(|json_err| {
            let plain = serde::de::value::StrDeserializer::<serde_json::Error>::new(raw);
            T::deserialize(plain).map_err(|_| json_err)
        }))
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn full_builder_sets_every_field_in_gateway_units() {
        let s = Session::builder("user-42")
            .rate(100, Duration::from_secs(60))
            .quota(10_000, Duration::from_secs(3600))
            .expires_in(Duration::from_secs(86_400))
            .access("api1", "Petstore", ["Default"])
            .allow_url("api1", "/pet/.*", ["GET", "POST"])
            .policy("pol1")
            .tag("gold")
            .meta("plan", "gold")
            .alias("alice")
            .cache_for(Duration::from_secs(300))
            .inactive(false)
            .key_id("kid")
            .build_at(at(1_000_000))
            .unwrap();
        let st = s.state();
        assert_eq!(st.rate, 100.0);
        assert_eq!(st.per, 60.0);
        assert_eq!(st.quota_max, 10_000);
        assert_eq!(st.quota_remaining, 10_000);
        assert_eq!(st.quota_renewal_rate, 3600);
        assert_eq!(st.quota_renews, 1_003_600);
        assert_eq!(st.expires, 1_086_400);
        assert_eq!(st.id_extractor_deadline, 1_000_300);
        assert_eq!(st.last_updated, "1000000");
        assert_eq!(st.metadata["token"], "user-42");
        assert_eq!(st.metadata["plan"], "gold");
        assert_eq!(st.alias, "alice");
        assert_eq!(st.key_id, "kid");
        assert_eq!(st.apply_policies, ["pol1"]);
        assert_eq!(st.tags, ["gold"]);
        assert_eq!(st.access_rights["api1"].allowed_urls.len(), 1);
        assert_eq!(
            st.access_rights["api1"].allowed_urls[0].methods,
            ["GET", "POST"]
        );
        assert!(st.basic_auth_data.is_some() && st.jwt_data.is_some() && st.monitor.is_some());
        assert!(st.org_id.is_empty(), "org_id is forced by the gateway");
    }

    #[test]
    fn first_error_wins_and_token_is_checked_first() {
        let e = Session::builder("t")
            .rate(-1, Duration::from_secs(1))
            .quota(0, Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert_eq!(e, SessionError::InvalidRate { rate: -1.0 });
        let e = Session::builder("")
            .rate(-1, Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert_eq!(e, SessionError::EmptyToken);
    }

    #[test]
    fn invalid_values_are_rejected() {
        let b = || Session::builder("t");
        for bad in [f64::NAN, f64::INFINITY, -0.5] {
            assert!(matches!(
                b().rate(bad, Duration::from_secs(1)).build(),
                Err(SessionError::InvalidRate { .. })
            ));
        }
        assert!(matches!(
            b().quota(5, Duration::from_millis(999)).build(),
            Err(SessionError::PeriodTooShort { .. })
        ));
        assert!(matches!(
            b().expires_in(Duration::from_millis(10)).build(),
            Err(SessionError::PeriodTooShort { .. })
        ));
        assert!(matches!(
            b().expires_at(at(0)).build(),
            Err(SessionError::TimeOutOfRange { .. })
        ));
        assert!(matches!(
            b().expires_in(Duration::from_secs(u64::MAX))
                .build_at(at(10)),
            Err(SessionError::TimeOutOfRange { .. })
        ));
        assert!(matches!(
            b().access("", "x", ["Default"]).build(),
            Err(SessionError::EmptyApiId)
        ));
        // The token key may be set to the token itself.
        assert!(b().meta("token", "t").build().is_ok());
        let msg = b()
            .rate(f64::NAN, Duration::from_secs(1))
            .build()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("NaN") && msg.contains("finite"), "{msg}");
    }

    #[test]
    fn with_state_cannot_remove_the_token() {
        let s = Session::builder("t")
            .with_state(|st| {
                st.metadata.insert("token".into(), String::new());
            })
            .build()
            .unwrap();
        assert_eq!(s.state().metadata["token"], "t");
    }

    #[test]
    fn view_reads_gateway_session() {
        let s = Session::builder("t")
            .rate(10, Duration::from_millis(1500))
            .quota(3, Duration::from_secs(10))
            .expires_at(at(5000))
            .cache_for(Duration::from_secs(1))
            .build_at(at(100))
            .unwrap();
        let v = s.view();
        assert_eq!(
            v.rate(),
            Some(RateLimit {
                requests: 10.0,
                per: Duration::from_millis(1500)
            })
        );
        assert_eq!(
            v.quota(),
            Some(Quota {
                max: 3,
                remaining: 3,
                renews_at: Some(at(110)),
                period: Some(Duration::from_secs(10))
            })
        );
        assert_eq!(v.expires(), Some(at(5000)));
        assert_eq!(v.id_extractor_deadline(), Some(at(101)));
        assert_eq!(v.last_updated(), Some(at(100)));
        assert!(!v.is_empty());
        let unlimited = SessionState {
            quota_max: -1,
            rate: -1.0,
            per: f64::NAN,
            ..Default::default()
        };
        let v = SessionView::new(&unlimited);
        assert_eq!(v.quota(), None);
        assert_eq!(v.rate(), None);
        assert_eq!(v.expires(), None);
    }
}
