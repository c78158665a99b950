//! A small Dispatcher client: what the `dispatch` and `dispatch-event`
//! commands use, and what tests use against a running server.

use std::sync::LazyLock;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use tyk_coprocess::{HookType, MiniRequestObject, Object, ResponseObject, ReturnOverrides};

pub use tyk_coprocess::client::{ClientError, connect, dispatch_event, dispatch_raw};

/// The input JSON is not a valid Object.
#[derive(Debug, thiserror::Error)]
#[error("invalid coprocess.Object JSON: {0}")]
pub struct JsonError(String);

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(tyk_coprocess::FILE_DESCRIPTOR_SET)
        .expect("embedded descriptors are valid")
});

fn descriptor(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(name)
        .expect("message is in the embedded descriptors")
}

/// Parses an Object written as proto3 JSON (what the server logs, or what
/// protobuf's `MessageToJson` prints) and encodes it.
pub fn object_from_json(json: &str) -> Result<Bytes, JsonError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let msg = DynamicMessage::deserialize(descriptor("coprocess.Object"), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| JsonError(e.to_string()))?;
    Ok(Bytes::from(msg.encode_to_vec()))
}

/// What the gateway sends as `spec.bundle_hash` when an API has no bundle:
/// the MD5 of the empty string.
pub const NO_BUNDLE_HASH: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// An Object shaped like the gateway's, from a few request facts.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    /// The hook type.
    pub hook_type: HookType,
    /// The hook name.
    pub hook_name: String,
    /// HTTP method.
    pub method: String,
    /// Request URL (path and query).
    pub url: String,
    /// Request headers, in order; the first value of a name is sent.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// `spec.APIID`.
    pub api_id: String,
    /// `spec.OrgID`.
    pub org_id: String,
    /// `spec.config_data`, if any.
    pub config_data: Option<String>,
    /// Upstream status for Response hooks.
    pub response_status: i32,
}

impl ObjectSpec {
    /// Builds the Object the way the gateway fills it (first header values,
    /// first query values, `body` only when UTF-8, `response_code` -1).
    pub fn build(&self) -> Object {
        let mut headers = std::collections::BTreeMap::new();
        for (k, v) in &self.headers {
            headers.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut params = std::collections::BTreeMap::new();
        if let Some((_, query)) = self.url.split_once('?') {
            for (k, v) in form_pairs(query) {
                params.entry(k).or_insert(v);
            }
        }
        let body_text = String::from_utf8(self.body.clone()).unwrap_or_default();
        let mut spec: std::collections::BTreeMap<String, String> = [
            ("APIID".to_string(), self.api_id.clone()),
            ("OrgID".to_string(), self.org_id.clone()),
            ("bundle_hash".to_string(), NO_BUNDLE_HASH.to_string()),
        ]
        .into();
        if let Some(cd) = &self.config_data {
            spec.insert("config_data".into(), cd.clone());
        }
        let request = MiniRequestObject {
            headers,
            body: body_text,
            url: self.url.clone(),
            params,
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            method: self.method.clone(),
            request_uri: self.url.clone(),
            scheme: "http".into(),
            raw_body: Bytes::from(self.body.clone()),
            ..Default::default()
        };
        let response = (self.hook_type == HookType::Response).then(|| ResponseObject {
            status_code: self.response_status,
            ..Default::default()
        });
        let session = matches!(self.hook_type, HookType::Response).then(Default::default);
        Object {
            hook_type: self.hook_type as i32,
            hook_name: self.hook_name.clone(),
            request: Some(request),
            session,
            spec,
            response,
            ..Default::default()
        }
    }
}

/// Splits `a=1&b=%20x` into decoded pairs (form encoding, `+` is a space).
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_gateway_like_pre_object() {
        let o = ObjectSpec {
            hook_type: HookType::Pre,
            hook_name: "MyPre".into(),
            method: "GET".into(),
            url: "/pet/findByStatus?status=available&status=sold&q=a%20b+c".into(),
            headers: vec![
                ("Accept".into(), "*/*".into()),
                ("Accept".into(), "x".into()),
            ],
            body: vec![],
            api_id: "api".into(),
            org_id: "org".into(),
            config_data: None,
            response_status: 200,
        }
        .build();
        let r = o.request.unwrap();
        assert_eq!(r.params["status"], "available");
        assert_eq!(r.params["q"], "a b c");
        assert_eq!(r.headers["Accept"], "*/*");
        assert_eq!(r.return_overrides.unwrap().response_code, -1);
        assert!(o.response.is_none() && o.session.is_none());
        assert_eq!(o.spec["bundle_hash"], NO_BUNDLE_HASH);
    }

    #[test]
    fn percent_decoding_tolerates_bad_escapes() {
        assert_eq!(percent_decode("%41%2"), "A%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%éé"), "%éé");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn object_json_round_trips_and_errors_are_clear() {
        let wire =
            object_from_json(r#"{"hookType":"Pre","request":{"url":"/x","rawBody":"aGk="}}"#)
                .unwrap();
        let o = Object::decode(wire).unwrap();
        assert_eq!(o.request.unwrap().raw_body.as_ref(), b"hi");
        let e = object_from_json(r#"{"hookType":"Nope"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("coprocess.Object"), "{e}");
        assert!(object_from_json("{} trailing").is_err());
    }
}
