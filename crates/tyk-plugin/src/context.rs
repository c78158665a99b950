//! What a handler receives: the Object of one hook call, with read views and
//! typed edits that follow the gateway's rules.
//!
//! * [`Request`]: Pre, PostKeyAuth and Post hooks.
//! * [`AuthRequest`]: custom authentication (CustomKeyCheck).
//! * [`Response`]: Response hooks.
//!
//! Each edit changes the fields the gateway actually applies (for example
//! `raw_body`, never only `body`; `set_headers`/`delete_headers`, never only
//! `headers`) and keeps the informational copies consistent.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;
use tyk_coprocess::{
    Header, HookType, MiniRequestObject, Object, ResponseObject, ReturnOverrides, SessionState,
};

use crate::config::{ConfigCache, ConfigError};
use crate::session::Session;

/// Router-wide services a context can reach.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) config: ConfigCache,
}

/// The decoded Object plus what the router needs to build the reply.
pub(crate) struct Ctx {
    pub(crate) object: Object,
    /// Set by every edit: an untouched Object is echoed as received.
    pub(crate) dirty: bool,
    pub(crate) shared: Arc<Shared>,
}

impl Ctx {
    pub(crate) fn new(object: Object, shared: Arc<Shared>) -> Self {
        Self {
            object,
            dirty: false,
            shared,
        }
    }

    fn request_mut(&mut self) -> &mut MiniRequestObject {
        self.dirty = true;
        self.object
            .request
            .get_or_insert_with(|| MiniRequestObject {
                return_overrides: Some(no_override()),
                ..Default::default()
            })
    }

    fn overrides_mut(&mut self) -> &mut ReturnOverrides {
        self.request_mut()
            .return_overrides
            .get_or_insert_with(no_override)
    }

    fn config<T: DeserializeOwned + Send + Sync + 'static>(&self) -> Result<Arc<T>, ConfigError> {
        let view = RequestView::new(&self.object);
        self.shared
            .config
            .get::<T>(view.api_id(), view.config_data())
    }

    fn respond(&mut self, r: DirectResponse) {
        // Without override_error a status of 400 and above goes through Tyk's
        // error template; a plain direct response means exactly this body.
        let override_error = !r.template && r.status.as_u16() >= 400;
        let ro = self.overrides_mut();
        *ro = ReturnOverrides {
            response_code: i32::from(r.status.as_u16()),
            // response_error would overwrite response_body.
            response_error: String::new(),
            headers: r.headers,
            override_error,
            response_body: r.body,
        };
    }
}

/// `return_overrides` as the gateway sends it: no override.
pub(crate) fn no_override() -> ReturnOverrides {
    ReturnOverrides {
        response_code: -1,
        ..Default::default()
    }
}

/// Read-only view of the request side of an Object.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    object: &'a Object,
}

static EMPTY_REQUEST: std::sync::LazyLock<MiniRequestObject> =
    std::sync::LazyLock::new(MiniRequestObject::default);

impl<'a> RequestView<'a> {
    /// A view of `object`.
    pub fn new(object: &'a Object) -> Self {
        Self { object }
    }

    fn req(&self) -> &'a MiniRequestObject {
        self.object.request.as_ref().unwrap_or(&EMPTY_REQUEST)
    }

    /// The hook type (a value the enum does not know reads as `Unknown`).
    pub fn hook_type(&self) -> HookType {
        HookType::try_from(self.object.hook_type).unwrap_or(HookType::Unknown)
    }

    /// The hook's configured name.
    pub fn hook_name(&self) -> &'a str {
        &self.object.hook_name
    }

    fn spec(&self, key: &str) -> &'a str {
        self.object.spec.get(key).map_or("", String::as_str)
    }

    /// The API's ID (`spec["APIID"]`).
    pub fn api_id(&self) -> &'a str {
        self.spec("APIID")
    }

    /// The API's organisation (`spec["OrgID"]`).
    pub fn org_id(&self) -> &'a str {
        self.spec("OrgID")
    }

    /// MD5 of the API's bundle name (`spec["bundle_hash"]`).
    pub fn bundle_hash(&self) -> &'a str {
        self.spec("bundle_hash")
    }

    /// The API's `config_data` as the JSON text the gateway sent, if any.
    /// The gateway omits it when the config is empty or disabled.
    pub fn config_data(&self) -> Option<&'a str> {
        self.object.spec.get("config_data").map(String::as_str)
    }

    /// The HTTP method.
    pub fn method(&self) -> &'a str {
        &self.req().method
    }

    /// The request URL: path and query (the listen path is still present).
    pub fn url(&self) -> &'a str {
        &self.req().url
    }

    /// The path part of [`url`](Self::url).
    pub fn path(&self) -> &'a str {
        let url = self.url();
        url.split_once('?').map_or(url, |(p, _)| p)
    }

    /// The raw query string (without `?`), empty when there is none.
    pub fn query_string(&self) -> &'a str {
        self.url().split_once('?').map_or("", |(_, q)| q)
    }

    /// A query parameter (decoded; the first value when it repeats, which is
    /// all the gateway sends).
    pub fn query(&self, name: &str) -> Option<&'a str> {
        self.req().params.get(name).map(String::as_str)
    }

    /// Every query parameter, first values.
    pub fn params(&self) -> &'a BTreeMap<String, String> {
        &self.req().params
    }

    /// A request header, by case-insensitive name (first value only: the
    /// gateway sends no other).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        find_ci(&self.req().headers, name).map(|(_, v)| v.as_str())
    }

    /// Every request header, first values, as the gateway names them.
    pub fn headers(&self) -> &'a BTreeMap<String, String> {
        &self.req().headers
    }

    /// The request body.
    pub fn body(&self) -> &'a [u8] {
        &self.req().raw_body
    }

    /// The `body` text exactly as the gateway sent it: the body when it is
    /// UTF-8 and the hook is not `raw_body_only`, else empty. Informational:
    /// [`body`](Self::body) is the real body.
    pub fn body_text(&self) -> &'a str {
        &self.req().body
    }

    /// The request body as text, when it is UTF-8.
    pub fn body_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.body()).ok()
    }

    /// `http` or `https`: how the client reached the gateway.
    pub fn scheme(&self) -> &'a str {
        &self.req().scheme
    }

    /// The request target exactly as the client sent it.
    pub fn request_uri(&self) -> &'a str {
        &self.req().request_uri
    }

    /// The session of the request (PostKeyAuth, Post and Response hooks of
    /// protected APIs).
    pub fn session(&self) -> Option<&'a SessionState> {
        self.object.session.as_ref()
    }

    /// A value of the Object's metadata (the session's metadata, for hooks
    /// that get a session).
    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        self.object.metadata.get(key).map(String::as_str)
    }
}

fn find_ci<'m>(map: &'m BTreeMap<String, String>, name: &str) -> Option<(&'m String, &'m String)> {
    map.get_key_value(name)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
}

fn remove_ci(map: &mut BTreeMap<String, String>, name: &str) {
    map.retain(|k, _| !k.eq_ignore_ascii_case(name));
}

/// Body text to keep beside `raw_body`: the gateway ignores `body`, but a
/// consistent Object is easier to debug and identical across gateways.
fn body_text(bytes: &[u8]) -> String {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .unwrap_or_default()
}

/// A response the gateway writes instead of calling the upstream: either a
/// body written verbatim ([`new`](Self::new)) or Tyk's JSON error template
/// ([`error`](Self::error)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    status: StatusCode,
    headers: BTreeMap<String, String>,
    body: String,
    template: bool,
}

impl DirectResponse {
    /// A response with `status` and an empty body.
    ///
    /// # Panics
    ///
    /// On an informational (1xx) status, which cannot end a request.
    pub fn new(status: StatusCode) -> Self {
        assert!(
            !status.is_informational(),
            "a direct response cannot have the informational status {status}"
        );
        Self {
            status,
            headers: BTreeMap::new(),
            body: String::new(),
            template: false,
        }
    }

    /// An error through Tyk's JSON error template, `{"error": "<message>"}`
    /// (the gateway sets `Content-Type` and fires an `AuthFailure` event).
    /// The gateway escapes the message with Go's `JSEscapeString`; released
    /// gateways turn an apostrophe into `\'`, which is not valid JSON, so
    /// avoid apostrophes.
    ///
    /// # Panics
    ///
    /// When `status` is below 400.
    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        assert!(
            status.as_u16() >= 400,
            "an error response needs a status of 400 or above, got {status}; use DirectResponse::new for others"
        );
        Self {
            template: true,
            body: message.into(),
            ..Self::new(status)
        }
    }

    /// A JSON response (sets `Content-Type: application/json`).
    pub fn json(
        status: StatusCode,
        value: &impl serde::Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::new(status)
            .header("Content-Type", "application/json")
            .body(serde_json::to_string(value)?))
    }

    /// A redirect to `location` (302 Found).
    pub fn redirect(location: impl Into<String>) -> Self {
        Self::new(StatusCode::FOUND).header("Location", location)
    }

    /// Sets a header (one value per name, as the protocol carries them).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the body, written verbatim. Set a `Content-Type` header: the
    /// gateway adds none.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

/// Read methods shared by [`Request`] and [`AuthRequest`].
macro_rules! request_reads {
    () => {
        /// A read-only view of the request.
        pub fn view(&self) -> RequestView<'_> {
            RequestView::new(&self.ctx.object)
        }
        /// The API's ID (`spec["APIID"]`).
        pub fn api_id(&self) -> &str {
            self.view().api_id()
        }
        /// The hook's configured name.
        pub fn hook_name(&self) -> &str {
            self.view().hook_name()
        }
        /// The HTTP method.
        pub fn method(&self) -> &str {
            self.view().method()
        }
        /// The request URL (path and query).
        pub fn url(&self) -> &str {
            self.view().url()
        }
        /// The path part of the URL.
        pub fn path(&self) -> &str {
            self.view().path()
        }
        /// A query parameter (first value).
        pub fn query(&self, name: &str) -> Option<&str> {
            self.view().query(name)
        }
        /// A request header by case-insensitive name (first value).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.view().header(name)
        }
        /// The request body.
        pub fn body(&self) -> &[u8] {
            self.view().body()
        }
        /// The API's `config_data`, deserialized once per API and config
        /// version and shared.
        pub fn config<T: DeserializeOwned + Send + Sync + 'static>(
            &self,
        ) -> Result<Arc<T>, ConfigError> {
            self.ctx.config::<T>()
        }
        /// The Object as received (plus the edits made so far).
        pub fn object(&self) -> &Object {
            &self.ctx.object
        }
        /// The raw Object, for what no typed method covers. The reply still
        /// passes the router's safety checks.
        pub fn object_mut(&mut self) -> &mut Object {
            self.ctx.dirty = true;
            &mut self.ctx.object
        }
    };
}

/// A Pre, PostKeyAuth or Post hook call.
pub struct Request {
    pub(crate) ctx: Ctx,
}

impl Request {
    request_reads!();

    /// The session (PostKeyAuth and Post hooks of protected APIs).
    pub fn session(&self) -> Option<&SessionState> {
        self.view().session()
    }

    /// Sets a request header for the upstream, replacing its values.
    pub fn set_header(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        let r = self.ctx.request_mut();
        r.delete_headers.retain(|d| !d.eq_ignore_ascii_case(&name));
        remove_ci(&mut r.set_headers, &name);
        remove_ci(&mut r.headers, &name);
        r.headers.insert(name.clone(), value.clone());
        r.set_headers.insert(name, value);
        self
    }

    /// Removes a request header before the upstream sees it.
    pub fn delete_header(&mut self, name: impl Into<String>) -> &mut Self {
        let name = name.into();
        let r = self.ctx.request_mut();
        remove_ci(&mut r.set_headers, &name);
        remove_ci(&mut r.headers, &name);
        if !r
            .delete_headers
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&name))
        {
            r.delete_headers.push(name);
        }
        self
    }

    /// Sets a query parameter, replacing all its values. (Changing the query
    /// through the URL does not work: the gateway reverts it.)
    pub fn set_param(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        let r = self.ctx.request_mut();
        r.delete_params.retain(|d| *d != name);
        r.params.insert(name.clone(), value.clone());
        r.add_params.insert(name, value);
        self
    }

    /// Removes a query parameter.
    pub fn delete_param(&mut self, name: impl Into<String>) -> &mut Self {
        let name = name.into();
        let r = self.ctx.request_mut();
        r.add_params.remove(&name);
        r.params.remove(&name);
        if !r.delete_params.contains(&name) {
            r.delete_params.push(name);
        }
        self
    }

    /// Replaces the request body (the gateway sets Content-Length).
    pub fn set_body(&mut self, body: impl Into<Bytes>) -> &mut Self {
        let body = body.into();
        let r = self.ctx.request_mut();
        r.body = if r.body.is_empty() && !r.raw_body.is_empty() {
            // The hook is raw_body_only or the old body was not text: keep
            // `body` empty as the gateway would.
            String::new()
        } else {
            body_text(&body)
        };
        r.raw_body = body;
        self
    }

    /// Rewrites the path, keeping the query (use [`set_param`](Self::set_param)
    /// for the query). `path` is an origin-form path (`/new/path`) or an
    /// internal loop target (`tyk://api-name/path`).
    pub fn set_path(&mut self, path: &str) -> Result<&mut Self, EditError> {
        let ok_start = path.starts_with('/') || path.starts_with("tyk://");
        if !ok_start
            || path.contains(['?', '#'])
            || path.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(EditError::Path(path.to_string()));
        }
        let r = self.ctx.request_mut();
        r.url = match r.url.split_once('?') {
            Some((_, q)) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        Ok(self)
    }

    /// Changes the HTTP method sent upstream.
    pub fn set_method(&mut self, method: http::Method) -> &mut Self {
        self.ctx.request_mut().method = method.as_str().to_string();
        self
    }

    /// Answers the request directly: the upstream is not called and later
    /// hooks do not run. A [`DirectResponse::new`] body is written verbatim at
    /// any status; a [`DirectResponse::error`] goes through Tyk's error
    /// template.
    pub fn respond(mut self, response: DirectResponse) -> Self {
        self.ctx.respond(response);
        self
    }

    /// Ends the request with Tyk's JSON error template,
    /// `{"error": "<message>"}`. Note that the gateway fires an
    /// `AuthFailure` event for any hook answering 400 or above this way.
    ///
    /// # Panics
    ///
    /// When `status` is below 400.
    pub fn error(self, status: StatusCode, message: impl Into<String>) -> Self {
        self.respond(DirectResponse::error(status, message))
    }
}

/// A custom authentication (CustomKeyCheck) call.
pub struct AuthRequest {
    pub(crate) ctx: Ctx,
}

impl AuthRequest {
    request_reads!();

    /// Grants access with `session`; its token is sent as
    /// `metadata["token"]`, which the gateway requires.
    pub fn allow(mut self, session: Session) -> Self {
        self.ctx.dirty = true;
        session.grant(&mut self.ctx.object);
        self
    }

    /// Refuses the request with Tyk's JSON error template (an `AuthFailure`
    /// event is fired by the gateway).
    ///
    /// # Panics
    ///
    /// When `status` is below 400.
    pub fn deny(self, status: StatusCode, message: impl Into<String>) -> Self {
        self.respond(DirectResponse::error(status, message))
    }

    /// Answers directly: a verbatim body, or an error through the template
    /// ([`DirectResponse::error`], e.g. with a `WWW-Authenticate` header).
    pub fn respond(mut self, response: DirectResponse) -> Self {
        self.ctx.respond(response);
        self.ctx.object.session = None;
        self
    }
}

/// A Response hook call: the upstream response, editable.
pub struct Response {
    pub(crate) ctx: Ctx,
}

static EMPTY_RESPONSE: std::sync::LazyLock<ResponseObject> =
    std::sync::LazyLock::new(ResponseObject::default);

impl Response {
    fn res(&self) -> &ResponseObject {
        self.ctx.object.response.as_ref().unwrap_or(&EMPTY_RESPONSE)
    }

    fn res_mut(&mut self) -> &mut ResponseObject {
        self.ctx.dirty = true;
        self.ctx
            .object
            .response
            .get_or_insert_with(Default::default)
    }

    /// The request this response answers.
    pub fn request(&self) -> RequestView<'_> {
        RequestView::new(&self.ctx.object)
    }

    /// The API's ID.
    pub fn api_id(&self) -> &str {
        self.request().api_id()
    }

    /// The API's `config_data`, deserialized once per API and config version.
    pub fn config<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
    ) -> Result<Arc<T>, ConfigError> {
        self.ctx.config::<T>()
    }

    /// The session (always present for Response hooks; all zero on keyless APIs).
    pub fn session(&self) -> Option<&SessionState> {
        self.ctx.object.session.as_ref()
    }

    /// The upstream status.
    pub fn status(&self) -> u16 {
        u16::try_from(self.res().status_code).unwrap_or(0)
    }

    /// Sets the status the client gets.
    pub fn set_status(&mut self, status: StatusCode) -> &mut Self {
        self.res_mut().status_code = i32::from(status.as_u16());
        self
    }

    /// A response header's first value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let res = self.res();
        match res
            .multivalue_headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(name))
        {
            Some(h) => h.values.first().map(String::as_str),
            None => find_ci(&res.headers, name).map(|(_, v)| v.as_str()),
        }
    }

    /// Every value of a response header (e.g. each `Set-Cookie`).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let res = self.res();
        let multi: Vec<&str> = res
            .multivalue_headers
            .iter()
            .filter(|h| h.key.eq_ignore_ascii_case(name))
            .flat_map(|h| h.values.iter().map(String::as_str))
            .collect();
        if multi.is_empty() && res.multivalue_headers.is_empty() {
            // Gateways before 5.2 send only the first-value map.
            return self.header(name).into_iter().collect();
        }
        multi
    }

    /// Sets a response header to one value, in both header fields so that
    /// every gateway version applies it.
    pub fn set_header(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        let res = self.res_mut();
        // Keep the gateway's spelling of an existing name: its sync matches
        // keys exactly.
        let key = res
            .multivalue_headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(&name))
            .map(|h| h.key.clone())
            .or_else(|| find_ci(&res.headers, &name).map(|(k, _)| k.clone()))
            .unwrap_or(name);
        remove_ci(&mut res.headers, &key);
        res.headers.insert(key.clone(), value.clone());
        let mut kept = false;
        res.multivalue_headers.retain_mut(|h| {
            if !h.key.eq_ignore_ascii_case(&key) {
                return true;
            }
            if kept {
                return false;
            }
            kept = true;
            h.key = key.clone();
            h.values = vec![value.clone()];
            true
        });
        if !kept {
            res.multivalue_headers.push(Header {
                key,
                values: vec![value],
            });
        }
        self
    }

    /// Adds a value to a response header (e.g. a second `Set-Cookie`),
    /// keeping the others.
    pub fn append_header(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        let res = self.res_mut();
        match res
            .multivalue_headers
            .iter_mut()
            .find(|h| h.key.eq_ignore_ascii_case(&name))
        {
            Some(h) => {
                let key = h.key.clone();
                h.values.push(value.clone());
                if find_ci(&res.headers, &key).is_none() {
                    res.headers.insert(key, value);
                }
            }
            None => {
                let key = find_ci(&res.headers, &name).map(|(k, _)| k.clone());
                match key {
                    // Only the first-value map knew it (older gateway).
                    Some(key) => {
                        let first = res.headers[&key].clone();
                        res.multivalue_headers.push(Header {
                            key,
                            values: vec![first, value],
                        });
                    }
                    None => {
                        res.headers.insert(name.clone(), value.clone());
                        res.multivalue_headers.push(Header {
                            key: name,
                            values: vec![value],
                        });
                    }
                }
            }
        }
        self
    }

    /// Removes a response header from both header fields.
    pub fn delete_header(&mut self, name: &str) -> &mut Self {
        let res = self.res_mut();
        remove_ci(&mut res.headers, name);
        res.multivalue_headers
            .retain(|h| !h.key.eq_ignore_ascii_case(name));
        self
    }

    /// The response body.
    pub fn body(&self) -> &[u8] {
        &self.res().raw_body
    }

    /// Replaces the response body. Content-Length, when the upstream sent
    /// one, is updated too (gateways before 5.8 do not recompute it).
    pub fn set_body(&mut self, body: impl Into<Bytes>) -> &mut Self {
        let body = body.into();
        let len = body.len().to_string();
        let res = self.res_mut();
        res.body = if res.body.is_empty() && !res.raw_body.is_empty() {
            String::new()
        } else {
            body_text(&body)
        };
        res.raw_body = body;
        if self.header("Content-Length").is_some() {
            self.set_header("Content-Length", len);
        }
        self
    }

    /// The Object as received (plus the edits made so far).
    pub fn object(&self) -> &Object {
        &self.ctx.object
    }

    /// The raw Object, for what no typed method covers. The reply still
    /// passes the router's safety checks.
    pub fn object_mut(&mut self) -> &mut Object {
        self.ctx.dirty = true;
        &mut self.ctx.object
    }
}

/// An edit that would make the gateway fail the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// Not an origin-form path or `tyk://` target, or it carries a query.
    #[error(
        "invalid path {0:?}: use an origin-form path such as /new/path or tyk://api/path, without ? or # (set query parameters with set_param)"
    )]
    Path(String),
}
