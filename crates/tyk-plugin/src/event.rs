//! Typed gateway events (`DispatchEvent` payloads).
//!
//! The gateway calls `DispatchEvent` for the events an API's
//! `event_handlers` route to a `cp_dynamic_handler`. The payload is JSON:
//!
//! ```json
//! {"message": {"Type": "AuthFailure", "Meta": {…}, "TimeStamp": "2026-08-21 15:39:47.123456789 +0300 EEST"},
//!  "handler_name": "my_handler", "spec": {"APIID": "6", "OrgID": "default"}}
//! ```
//!
//! [`GatewayEvent::parse`] decodes it into an [`EventKind`], a typed
//! [`EventMeta`] and the context fields. Unknown event types and `Meta`
//! shapes are kept as raw JSON, never an error; only a payload that is not
//! JSON or lacks `message` (or its `Type`) is an [`EventError`].
//!
//! ```
//! use tyk_plugin::event::{EventKind, EventMeta, GatewayEvent};
//!
//! let payload = r#"{"message":{"Type":"AuthFailure","Meta":{"Message":"Auth Failure",
//!   "OriginatingRequest":"","Path":"/api/","Origin":"127.0.0.1","Key":"bad"},
//!   "TimeStamp":"2026-08-21 15:39:47.123456789 +0300 EEST"},
//!   "handler_name":"my_handler","spec":{"APIID":"6","OrgID":"default"}}"#;
//! let event = GatewayEvent::parse(payload)?;
//! assert_eq!(event.kind, EventKind::AuthFailure);
//! assert_eq!(event.api_id, "6");
//! let EventMeta::KeyFailure(meta) = &event.meta else { panic!("typed meta") };
//! assert_eq!((meta.key.as_str(), meta.path.as_str()), ("bad", "/api/"));
//! assert!(event.time.is_some());
//! # Ok::<(), tyk_plugin::event::EventError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tyk_coprocess::Event;

/// Why an event payload could not be decoded.
///
/// ```
/// use tyk_plugin::event::{EventError, GatewayEvent};
/// assert!(matches!(GatewayEvent::parse("nope"), Err(EventError::NotJson(_))));
/// assert!(matches!(GatewayEvent::parse("{}"), Err(EventError::MissingMessage)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The payload is not a JSON document.
    #[error("event payload is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The payload has no `message` object.
    #[error(
        "event payload has no \"message\" object (expected {{\"message\":{{\"Type\":…,\"Meta\":…,\"TimeStamp\":…}},\"handler_name\":…,\"spec\":…}})"
    )]
    MissingMessage,
    /// `message` has no string `Type`.
    #[error("event payload's \"message\" has no string \"Type\"")]
    MissingType,
    /// `OriginatingRequest` is not valid base64.
    #[error("OriginatingRequest is not valid base64: {0}")]
    InvalidOriginatingRequest(#[source] base64::DecodeError),
}

/// The event type (`message.Type`).
///
/// ```
/// use tyk_plugin::event::EventKind;
/// assert_eq!(EventKind::from_name("RatelimitExceeded"), EventKind::RateLimitExceeded);
/// assert_eq!(EventKind::from_name("TokenCreated"), EventKind::Other("TokenCreated".into()));
/// assert_eq!(EventKind::RateLimitExceeded.as_str(), "RatelimitExceeded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// `AuthFailure`: a key was rejected, or any hook returned `>= 400`
    /// without `override_error`.
    AuthFailure,
    /// `KeyExpired`.
    KeyExpired,
    /// `QuotaExceeded`.
    QuotaExceeded,
    /// `RatelimitExceeded` (Tyk's spelling; `RateLimitExceeded` is accepted too).
    RateLimitExceeded,
    /// `VersionFailure`.
    VersionFailure,
    /// `BreakerTriggered`: any circuit breaker state change.
    BreakerTriggered,
    /// `BreakerTripped`.
    BreakerTripped,
    /// `BreakerReset`.
    BreakerReset,
    /// `HostDown` (uptime tests).
    HostDown,
    /// `HostUp` (uptime tests).
    HostUp,
    /// `TriggerExceeded` (a key's quota passed a monitor trigger).
    TriggerExceeded,
    /// Any other type, kept verbatim.
    Other(String),
}

impl EventKind {
    /// The kind for a `Type` string.
    pub fn from_name(name: &str) -> Self {
        match name {
            "AuthFailure" => EventKind::AuthFailure,
            "KeyExpired" => EventKind::KeyExpired,
            "QuotaExceeded" => EventKind::QuotaExceeded,
            "RatelimitExceeded" | "RateLimitExceeded" => EventKind::RateLimitExceeded,
            "VersionFailure" => EventKind::VersionFailure,
            "BreakerTriggered" => EventKind::BreakerTriggered,
            "BreakerTripped" => EventKind::BreakerTripped,
            "BreakerReset" => EventKind::BreakerReset,
            "HostDown" => EventKind::HostDown,
            "HostUp" => EventKind::HostUp,
            "TriggerExceeded" => EventKind::TriggerExceeded,
            other => EventKind::Other(other.to_owned()),
        }
    }

    /// The gateway's name for this kind.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::AuthFailure => "AuthFailure",
            EventKind::KeyExpired => "KeyExpired",
            EventKind::QuotaExceeded => "QuotaExceeded",
            EventKind::RateLimitExceeded => "RatelimitExceeded",
            EventKind::VersionFailure => "VersionFailure",
            EventKind::BreakerTriggered => "BreakerTriggered",
            EventKind::BreakerTripped => "BreakerTripped",
            EventKind::BreakerReset => "BreakerReset",
            EventKind::HostDown => "HostDown",
            EventKind::HostUp => "HostUp",
            EventKind::TriggerExceeded => "TriggerExceeded",
            EventKind::Other(name) => name,
        }
    }

    /// Whether `Meta` is a key failure ([`KeyFailureMeta`]).
    pub fn is_key_failure(&self) -> bool {
        matches!(
            self,
            EventKind::AuthFailure
                | EventKind::KeyExpired
                | EventKind::QuotaExceeded
                | EventKind::RateLimitExceeded
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Meta` of key failures (`AuthFailure`, `KeyExpired`, `QuotaExceeded`,
/// `RatelimitExceeded`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[non_exhaustive]
pub struct KeyFailureMeta {
    /// Human-readable message, e.g. "Auth Failure".
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    /// Base64 of the request in HTTP/1.x wire format (may be empty);
    /// see [`KeyFailureMeta::originating_request_bytes`].
    #[serde(deserialize_with = "nullable")]
    pub originating_request: String,
    /// The request path.
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    /// The client address.
    #[serde(deserialize_with = "nullable")]
    pub origin: String,
    /// The key as presented (not obfuscated).
    #[serde(deserialize_with = "nullable")]
    pub key: String,
}

impl KeyFailureMeta {
    /// The originating request, decoded from base64 (empty if none).
    pub fn originating_request_bytes(&self) -> Result<Vec<u8>, EventError> {
        decode_originating_request(&self.originating_request)
    }
}

/// `Meta` of `VersionFailure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[non_exhaustive]
pub struct VersionFailureMeta {
    /// Human-readable message.
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    /// Base64 of the request in HTTP/1.x wire format (may be empty).
    #[serde(deserialize_with = "nullable")]
    pub originating_request: String,
    /// The request path.
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    /// The client address.
    #[serde(deserialize_with = "nullable")]
    pub origin: String,
    /// The key as presented.
    #[serde(deserialize_with = "nullable")]
    pub key: String,
    /// Why the version was rejected.
    #[serde(deserialize_with = "nullable")]
    pub reason: String,
}

impl VersionFailureMeta {
    /// The originating request, decoded from base64 (empty if none).
    pub fn originating_request_bytes(&self) -> Result<Vec<u8>, EventError> {
        decode_originating_request(&self.originating_request)
    }
}

/// `Meta` of circuit breaker events (`BreakerTriggered`, `BreakerTripped`,
/// `BreakerReset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[non_exhaustive]
pub struct BreakerMeta {
    /// Human-readable message.
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    /// The protected path.
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    /// The API id.
    #[serde(rename = "APIID", deserialize_with = "nullable")]
    pub api_id: String,
    /// The breaker's event code (Tyk's `circuit.BreakerEvent`, an integer).
    #[serde(deserialize_with = "nullable")]
    pub circuit_event: i64,
}

/// `Meta` of `HostDown` / `HostUp`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[non_exhaustive]
pub struct HostMeta {
    /// Human-readable message.
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    /// The uptime check report.
    #[serde(deserialize_with = "nullable")]
    pub host_info: HostInfo,
}

/// The uptime check report of a host event (Tyk's `HostHealthReport`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[non_exhaustive]
pub struct HostInfo {
    /// The checked URL.
    #[serde(rename = "CheckURL", deserialize_with = "nullable")]
    pub check_url: String,
    /// The check's HTTP method.
    #[serde(deserialize_with = "nullable")]
    pub method: String,
    /// The status the host answered with (0 on connection errors).
    #[serde(deserialize_with = "nullable")]
    pub response_code: i64,
    /// The check's latency as reported by the gateway.
    #[serde(deserialize_with = "nullable")]
    pub latency: f64,
    /// Whether the check failed at the TCP level.
    #[serde(rename = "IsTCPError", deserialize_with = "nullable")]
    pub is_tcp_error: bool,
    /// The check's metadata.
    #[serde(rename = "MetaData", deserialize_with = "nullable")]
    pub metadata: BTreeMap<String, String>,
}

/// `Meta` of `TriggerExceeded` (snake_case keys on current gateways; older
/// ones used `Org`, `Key`, `TriggerLimit`, which are accepted too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TriggerMeta {
    /// Human-readable message.
    #[serde(rename = "Message", deserialize_with = "nullable")]
    pub message: String,
    /// The organisation id.
    #[serde(alias = "Org", deserialize_with = "nullable")]
    pub org_id: String,
    /// The key.
    #[serde(alias = "Key", deserialize_with = "nullable")]
    pub key: String,
    /// The trigger that was passed, in percent.
    #[serde(alias = "TriggerLimit", deserialize_with = "nullable")]
    pub trigger_limit: i64,
    /// The quota usage, in percent.
    #[serde(deserialize_with = "nullable")]
    pub usage_percentage: i64,
}

/// The typed `Meta` of an event.
///
/// A known kind whose `Meta` does not have the expected shape, and every
/// unknown kind, gives [`EventMeta::Other`] with the raw JSON.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventMeta {
    /// `AuthFailure`, `KeyExpired`, `QuotaExceeded`, `RatelimitExceeded`.
    KeyFailure(KeyFailureMeta),
    /// `VersionFailure`.
    VersionFailure(VersionFailureMeta),
    /// `BreakerTriggered`, `BreakerTripped`, `BreakerReset`.
    Breaker(BreakerMeta),
    /// `HostDown`, `HostUp`.
    Host(HostMeta),
    /// `TriggerExceeded`.
    Trigger(TriggerMeta),
    /// Anything else: `message.Meta` as sent (`Null` if absent).
    Other(Value),
}

impl EventMeta {
    fn decode(kind: &EventKind, meta: Option<&Value>) -> Self {
        let Some(meta) = meta.filter(|m| m.is_object()) else {
            return EventMeta::Other(meta.cloned().unwrap_or(Value::Null));
        };
        let typed = match kind {
            k if k.is_key_failure() => KeyFailureMeta::deserialize(meta).map(EventMeta::KeyFailure),
            EventKind::VersionFailure => {
                VersionFailureMeta::deserialize(meta).map(EventMeta::VersionFailure)
            }
            EventKind::BreakerTriggered | EventKind::BreakerTripped | EventKind::BreakerReset => {
                BreakerMeta::deserialize(meta).map(EventMeta::Breaker)
            }
            EventKind::HostDown | EventKind::HostUp => {
                HostMeta::deserialize(meta).map(EventMeta::Host)
            }
            EventKind::TriggerExceeded => TriggerMeta::deserialize(meta).map(EventMeta::Trigger),
            _ => return EventMeta::Other(meta.clone()),
        };
        typed.unwrap_or_else(|_| EventMeta::Other(meta.clone()))
    }

    /// The `Message` field, if this kind has one.
    pub fn message(&self) -> Option<&str> {
        match self {
            EventMeta::KeyFailure(m) => Some(&m.message),
            EventMeta::VersionFailure(m) => Some(&m.message),
            EventMeta::Breaker(m) => Some(&m.message),
            EventMeta::Host(m) => Some(&m.message),
            EventMeta::Trigger(m) => Some(&m.message),
            EventMeta::Other(v) => v.get("Message").and_then(Value::as_str),
        }
    }

    /// The key, for key failures, version failures and triggers.
    pub fn key(&self) -> Option<&str> {
        match self {
            EventMeta::KeyFailure(m) => Some(&m.key),
            EventMeta::VersionFailure(m) => Some(&m.key),
            EventMeta::Trigger(m) => Some(&m.key),
            _ => None,
        }
    }

    /// The request path, for key, version and breaker events.
    pub fn path(&self) -> Option<&str> {
        match self {
            EventMeta::KeyFailure(m) => Some(&m.path),
            EventMeta::VersionFailure(m) => Some(&m.path),
            EventMeta::Breaker(m) => Some(&m.path),
            _ => None,
        }
    }
}

/// A decoded `DispatchEvent` payload.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GatewayEvent {
    /// `message.Type`.
    pub kind: EventKind,
    /// `message.Meta`, typed by kind.
    pub meta: EventMeta,
    /// `message.TimeStamp` as sent (Go's `time.Time.String()` of the
    /// gateway's local time); empty if absent.
    pub timestamp: String,
    /// `timestamp` parsed, if it has Go's format.
    pub time: Option<SystemTime>,
    /// `handler_name` (the handler's `handler_meta.name`); empty if absent.
    pub handler_name: String,
    /// `spec.APIID`; empty if absent.
    pub api_id: String,
    /// `spec.OrgID`; empty if absent.
    pub org_id: String,
    /// The whole payload.
    pub raw: Value,
}

impl GatewayEvent {
    /// Decodes a payload.
    pub fn parse(payload: &str) -> Result<Self, EventError> {
        let raw: Value = serde_json::from_str(payload).map_err(EventError::NotJson)?;
        Self::from_value(raw)
    }

    /// Decodes the payload of a `coprocess.Event`.
    ///
    /// ```
    /// use tyk_plugin::coprocess::Event;
    /// use tyk_plugin::event::{EventKind, GatewayEvent};
    /// let event = Event { payload: r#"{"message":{"Type":"HostDown","Meta":{"HostInfo":{"CheckURL":"http://x"}}}}"#.into() };
    /// let e = GatewayEvent::from_event(&event)?;
    /// assert_eq!(e.kind, EventKind::HostDown);
    /// # Ok::<(), tyk_plugin::event::EventError>(())
    /// ```
    pub fn from_event(event: &Event) -> Result<Self, EventError> {
        Self::parse(&event.payload)
    }

    /// Decodes an already parsed payload.
    pub fn from_value(raw: Value) -> Result<Self, EventError> {
        let message = raw
            .get("message")
            .filter(|m| m.is_object())
            .ok_or(EventError::MissingMessage)?;
        let kind = message
            .get("Type")
            .and_then(Value::as_str)
            .map(EventKind::from_name)
            .ok_or(EventError::MissingType)?;
        let meta = EventMeta::decode(&kind, message.get("Meta"));
        let timestamp = str_at(message, "TimeStamp");
        let time = parse_go_time(&timestamp);
        let handler_name = str_at(&raw, "handler_name");
        let spec = raw.get("spec").unwrap_or(&Value::Null);
        let api_id = str_at(spec, "APIID");
        let org_id = str_at(spec, "OrgID");
        Ok(GatewayEvent {
            kind,
            meta,
            timestamp,
            time,
            handler_name,
            api_id,
            org_id,
            raw,
        })
    }
}

impl FromStr for GatewayEvent {
    type Err = EventError;
    fn from_str(payload: &str) -> Result<Self, EventError> {
        Self::parse(payload)
    }
}

impl TryFrom<&Event> for GatewayEvent {
    type Error = EventError;
    fn try_from(event: &Event) -> Result<Self, EventError> {
        Self::from_event(event)
    }
}

fn str_at(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Treats JSON `null` (Go's nil maps and slices) as the default value.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Decodes an `OriginatingRequest` (standard base64 of the HTTP/1.x
/// request). An empty string gives an empty request.
///
/// ```
/// use tyk_plugin::event::decode_originating_request;
/// let req = decode_originating_request("R0VUIC8gSFRUUC8xLjENCg0K")?;
/// assert_eq!(req, b"GET / HTTP/1.1\r\n\r\n");
/// assert!(decode_originating_request("%%%").is_err());
/// # Ok::<(), tyk_plugin::event::EventError>(())
/// ```
pub fn decode_originating_request(b64: &str) -> Result<Vec<u8>, EventError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(EventError::InvalidOriginatingRequest)
}

/// Parses Go's `time.Time.String()` format,
/// `2006-01-02 15:04:05.999999999 -0700 MST`, optionally followed by a
/// monotonic clock reading (`m=+52.104517001`, ignored). Returns `None`
/// for anything else.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tyk_plugin::event::parse_go_time;
/// let t = parse_go_time("1970-01-01 03:00:01.5 +0300 EEST").unwrap();
/// assert_eq!(t, UNIX_EPOCH + Duration::from_millis(1500));
/// assert_eq!(parse_go_time("yesterday"), None);
/// ```
pub fn parse_go_time(s: &str) -> Option<SystemTime> {
    let mut parts = s.split_ascii_whitespace();
    let date = parts.next()?;
    let clock = parts.next()?;
    let offset = parts.next()?;
    // The zone abbreviation and an `m=±…` monotonic reading may follow.

    let mut d = date.splitn(3, '-');
    let year: i64 = digits(d.next()?, 4)?;
    let month: u32 = digits(d.next()?, 2)?;
    let day: u32 = digits(d.next()?, 2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }

    let (hms, frac) = match clock.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (clock, None),
    };
    let mut t = hms.splitn(3, ':');
    let hour: i64 = digits(t.next()?, 2)?;
    let minute: i64 = digits(t.next()?, 2)?;
    let second: i64 = digits(t.next()?, 2)?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let nanos = match frac {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u32 = f.parse().ok()?;
            n * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };

    let (sign, hhmm) = match offset.as_bytes().first()? {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => return None,
    };
    if hhmm.len() != 4 {
        return None;
    }
    let off_h: i64 = digits(&hhmm[..2], 2)?;
    let off_m: i64 = digits(&hhmm[2..], 2)?;
    if off_m > 59 {
        return None;
    }
    let offset_secs = sign * (off_h * 3600 + off_m * 60);

    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    let whole = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH
            .checked_add(whole)?
            .checked_add(Duration::from_nanos(nanos.into()))
    } else {
        UNIX_EPOCH
            .checked_sub(whole)?
            .checked_add(Duration::from_nanos(nanos.into()))
    }
}

fn digits<T: FromStr>(s: &str, len: usize) -> Option<T> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn go_timestamps() {
        // date -u -d '2026-08-21 12:39:47' +%s = 1787315987
        assert_eq!(
            parse_go_time("2026-08-21 15:39:47.123456789 +0300 EEST"),
            Some(at(1_787_315_987, 123_456_789))
        );
        assert_eq!(
            parse_go_time("2024-02-24 11:33:36.482199372 +0000 UTC m=+52.104517001"),
            Some(at(1_708_774_416, 482_199_372))
        );
        assert_eq!(
            parse_go_time("2000-02-29 00:00:00 -0130 X"),
            Some(at(951_787_800, 0))
        );
        assert_eq!(
            parse_go_time("1969-12-31 23:59:59 +0000 UTC"),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
        for bad in [
            "",
            "2026-08-21",
            "2026-08-21 15:39:47",
            "2026-13-01 00:00:00 +0000 UTC",
            "2026-02-29 00:00:00 +0000 UTC",
            "2026-08-21 24:00:00 +0000 UTC",
            "2026-08-21 15:39:47.1234567890 +0000 UTC",
            "2026-08-21 15:39:47. +0000 UTC",
            "2026-08-21 15:39:47 0300 EEST",
            "2026-08-21 15:39:47 +03:00 EEST",
            "26-08-21 15:39:47 +0300 EEST",
        ] {
            assert_eq!(parse_go_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
