//! The emulated gateway: request chain, Object building, reply application.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use prost::Message;
use tyk_coprocess::{
    Header, HookType, MiniRequestObject, Object, ResponseObject, ReturnOverrides, SessionState,
};

use super::api::{Api, Auth, ExtractFrom, ExtractWith, Hook, IdExtractor};
use super::gocompat::{self, ParsedUrl, canonical_header_key, encode_query, md5_hex};
use super::store::{Clock, Key, Policy, apply_policies, normalize};
use super::transport::Transport;
use crate::Dispatcher;

/// What the emulator reports instead of an HTTP response: situations a test
/// should fail on (the real gateway would crash or misbehave), and setup errors.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The reply lacks a field the gateway dereferences unconditionally.
    #[error(
        "the reply to {hook_type:?} hook {hook_name:?} has no `{missing}`: a real gateway would crash on it (nil dereference); echo the received Object instead"
    )]
    WouldCrashGateway {
        /// The hook type.
        hook_type: HookType,
        /// The hook name.
        hook_name: String,
        /// The missing field.
        missing: &'static str,
    },
    /// A Response hook returned a status the gateway cannot write.
    #[error(
        "the reply to Response hook {hook_name:?} has status_code {status}: not a valid HTTP status (echo the received one)"
    )]
    InvalidResponseStatus {
        /// The hook name.
        hook_name: String,
        /// The status.
        status: i32,
    },
    /// No API's listen path matches the request path.
    #[error("no API listens on {0:?}")]
    NoApi(String),
    /// A `tyk://` loop names no known API.
    #[error("tyk:// loop to unknown API {0:?}")]
    UnknownLoopTarget(String),
    /// Too many `tyk://` loops.
    #[error("more than {0} tyk:// loops")]
    LoopTooDeep(usize),
    /// The request could not be turned into a gateway request.
    #[error("invalid test request: {0}")]
    BadRequest(String),
    /// The target address is not usable.
    #[error("invalid target {0:?}: use host:port, tcp://host:port or unix:///path.sock")]
    Target(String),
    /// No server answered at the target.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// Where.
        target: String,
        /// Why.
        reason: String,
    },
}

/// One `Dispatch` call the emulator made.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The API the hook belongs to.
    pub api_id: String,
    /// The hook type.
    pub hook_type: HookType,
    /// The hook name.
    pub hook_name: String,
    /// The Object sent.
    pub sent: Object,
    /// The decoded reply, if the call succeeded and decoded.
    pub reply: Option<Object>,
    /// The gRPC error or decode failure, if any.
    pub error: Option<String>,
}

/// One delivery of an event to a `cp_dynamic_handler`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `handler_meta.name`.
    pub handler_name: String,
    /// The payload sent to `DispatchEvent`.
    pub payload: String,
    /// The plugin's answer (`Err` = gRPC error text; the gateway only logs it).
    pub result: Result<(), String>,
}

/// An event the gateway fired (§4).
#[derive(Debug, Clone, PartialEq)]
pub struct FiredEvent {
    /// `AuthFailure`, `KeyExpired`, `QuotaExceeded`, `RatelimitExceeded`.
    pub event_type: String,
    /// The API.
    pub api_id: String,
    /// `message` of the payload: `Type`, `Meta`, `TimeStamp`.
    pub message: serde_json::Value,
    /// Deliveries to the API's `cp_dynamic_handler`s for this event.
    pub deliveries: Vec<Delivery>,
}

impl FiredEvent {
    /// `message.Meta`.
    pub fn meta(&self) -> &serde_json::Value {
        &self.message["Meta"]
    }
}

/// A custom upstream: gets the proxied request, returns the response.
pub type Upstream = Arc<dyn Fn(&http::Request<Bytes>) -> http::Response<Bytes> + Send + Sync>;

/// What the client got, plus what happened on the way.
#[derive(Debug)]
pub struct TestResponse {
    response: http::Response<Bytes>,
    upstream: Option<http::Request<Bytes>>,
    exchanges: Vec<Exchange>,
    events: Vec<FiredEvent>,
}

impl TestResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// All values of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.response
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The headers.
    pub fn headers(&self) -> &http::HeaderMap {
        self.response.headers()
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        self.response.body()
    }

    /// The message of Tyk's JSON error template (`{"error": "..."}`), or
    /// `None` when the body is not that template.
    ///
    /// Released gateways insert the message with Go's
    /// `template.JSEscapeString` (an apostrophe becomes `\'`, which is not
    /// JSON); newer ones use JSON escaping. Both read back the same here.
    pub fn error_message(&self) -> Option<String> {
        let body = std::str::from_utf8(self.response.body()).ok()?;
        let inner = body
            .strip_prefix("{\n    \"error\": \"")?
            .strip_suffix("\"\n}")?;
        serde_json::from_str::<String>(&format!("\"{}\"", inner.replace("\\'", "'"))).ok()
    }

    /// The body as text (lossy).
    pub fn body_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.response.body())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(self.response.body())
    }

    /// The request the upstream received; `None` if it was not called.
    pub fn upstream_request(&self) -> Option<&http::Request<Bytes>> {
        self.upstream.as_ref()
    }

    /// Every `Dispatch` call made for this request, in order.
    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }

    /// The Objects sent for this request, in order.
    pub fn sent_objects(&self) -> Vec<&Object> {
        self.exchanges.iter().map(|e| &e.sent).collect()
    }

    /// Events fired while handling this request.
    pub fn events(&self) -> &[FiredEvent] {
        &self.events
    }

    /// The plain HTTP response.
    pub fn into_http(self) -> http::Response<Bytes> {
        self.response
    }
}

#[derive(Default)]
struct State {
    keys: HashMap<String, SessionState>,
    policies: HashMap<String, Policy>,
    events: Vec<FiredEvent>,
    quota_started: std::collections::HashSet<String>,
    rate_windows: HashMap<String, Vec<i64>>,
}

/// The gateway emulator: plays Tyk around a plugin.
///
/// ```no_run
/// # async fn t() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use tyk_plugin::testkit::{Api, Gateway};
/// let gw = Gateway::new(tyk_plugin::Echo).api(Api::keyless("api1").listen_path("/a/").pre("MyPre"));
/// let res = gw.send(http::Request::get("/a/x?q=1").header("X", "1").body(Bytes::new())?).await?;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.upstream_request().unwrap().uri(), "/x?q=1");
/// # Ok(()) }
/// ```
pub struct Gateway {
    transport: Transport,
    apis: Vec<Api>,
    upstream: Option<Upstream>,
    clock: Clock,
    state: Mutex<State>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("transport", &self.transport)
            .field("apis", &self.apis)
            .finish_non_exhaustive()
    }
}

const MAX_LOOPS: usize = 5;

/// Tyk's JSON error template; the gateway inserts the message through Go's
/// `template.JSEscapeString`.
fn error_body(message: &str) -> Bytes {
    let message = super::gocompat::js_escape_string(message);
    Bytes::from(format!("{{\n    \"error\": \"{message}\"\n}}"))
}

/// A response on the way to the client.
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Resp {
    fn error(status: u16, message: &str, extra: &BTreeMap<String, String>) -> Resp {
        let mut headers: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (canonical_header_key(k), v.clone()))
            .filter(|(k, _)| k != "Content-Type")
            .collect();
        headers.push(("Content-Type".into(), "application/json".into()));
        headers.push(("X-Generator".into(), "tyk.io".into()));
        Resp {
            status,
            headers,
            body: error_body(message),
        }
    }
}

/// The gateway's view of the request.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    url: ParsedUrl,
    rewrite: Option<ParsedUrl>,
    method_target: Option<String>,
    request_uri: String,
    scheme: String,
    host: String,
    headers: BTreeMap<String, Vec<String>>,
    headers_utf8: bool,
    body: Bytes,
    session: Option<(String, SessionState)>,
    token: String,
    original: String,
}

#[derive(Default)]
struct Ctx {
    exchanges: Vec<Exchange>,
    events: Vec<FiredEvent>,
    upstream: Option<http::Request<Bytes>>,
}

enum Flow {
    Continue(Box<Object>),
    Stop(Resp),
}

impl Gateway {
    /// An emulator around an in-process plugin.
    pub fn new(plugin: impl Dispatcher) -> Self {
        Self::with_transport(Transport::Local(Arc::new(plugin)))
    }

    /// An emulator around a running plugin server at `target`
    /// (`host:port`, `tcp://host:port` or `unix:///abs/path.sock`).
    pub async fn connect(target: &str) -> Result<Self, GatewayError> {
        Ok(Self::with_transport(Transport::connect(target).await?))
    }

    fn with_transport(transport: Transport) -> Self {
        Self {
            transport,
            apis: Vec::new(),
            upstream: None,
            clock: Clock::system(),
            state: Mutex::new(State::default()),
        }
    }

    /// Adds an API.
    pub fn api(mut self, api: Api) -> Self {
        self.apis.push(api);
        self
    }

    /// Replaces the echo upstream.
    pub fn upstream(
        mut self,
        f: impl Fn(&http::Request<Bytes>) -> http::Response<Bytes> + Send + Sync + 'static,
    ) -> Self {
        self.upstream = Some(Arc::new(f));
        self
    }

    /// Uses `clock` (e.g. [`Clock::manual`]) for expiry, quotas, rate limits
    /// and the ID-extractor deadline.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Stores a key under `token` (builder form of [`Gateway::add_key`]).
    pub fn with_key(self, token: impl Into<String>, key: impl Into<Key>) -> Self {
        self.add_key(token, key);
        self
    }

    /// Stores a policy (builder form of [`Gateway::add_policy`]).
    pub fn with_policy(self, id: impl Into<String>, policy: Policy) -> Self {
        self.add_policy(id, policy);
        self
    }

    /// Stores a key under `token`.
    pub fn add_key(&self, token: impl Into<String>, key: impl Into<Key>) {
        self.lock()
            .keys
            .insert(token.into(), key.into().into_session());
    }

    /// Stores a policy.
    pub fn add_policy(&self, id: impl Into<String>, policy: Policy) {
        self.lock().policies.insert(id.into(), policy);
    }

    /// The stored session under `key` (a token, or an ID-extractor key).
    pub fn key(&self, key: &str) -> Option<SessionState> {
        self.lock().keys.get(key).cloned()
    }

    /// Deletes a stored session.
    pub fn delete_key(&self, key: &str) -> bool {
        self.lock().keys.remove(key).is_some()
    }

    /// Every event fired so far.
    pub fn events(&self) -> Vec<FiredEvent> {
        self.lock().events.clone()
    }

    /// The clock.
    pub fn get_clock(&self) -> &Clock {
        &self.clock
    }

    /// The key the ID extractor derives for an identity: `<org><md5hex(id)>`
    /// (Tyk's legacy `generateToken` form).
    pub fn id_extractor_key(org_id: &str, identity: &str) -> String {
        format!("{org_id}{}", md5_hex(identity.as_bytes()))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `GET path` with no headers.
    pub async fn get(&self, path: &str) -> Result<TestResponse, GatewayError> {
        let req = http::Request::get(path)
            .body(Bytes::new())
            .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        self.send(req).await
    }

    /// Runs a request through the gateway: the API chain, the plugin's hooks,
    /// the upstream, Response hooks.
    pub async fn send<B: Into<Bytes>>(
        &self,
        request: http::Request<B>,
    ) -> Result<TestResponse, GatewayError> {
        let (parts, body) = request.into_parts();
        let body: Bytes = body.into();
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let url = ParsedUrl::parse(&pq).ok_or_else(|| GatewayError::BadRequest(pq.clone()))?;
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut headers_utf8 = true;
        let mut host = parts.uri.authority().map(|a| a.to_string());
        for (name, value) in &parts.headers {
            let v = match std::str::from_utf8(value.as_bytes()) {
                Ok(v) => v.to_string(),
                Err(_) => {
                    headers_utf8 = false;
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                }
            };
            if name == http::header::HOST {
                host.get_or_insert(v);
                continue;
            }
            headers
                .entry(canonical_header_key(name.as_str()))
                .or_default()
                .push(v);
        }
        let scheme = if parts.uri.scheme_str() == Some("https") {
            "https"
        } else {
            "http"
        };
        let mut original = format!("{} {} HTTP/1.1\r\n", parts.method, pq);
        for (k, vs) in &headers {
            for v in vs {
                original.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        original.push_str("\r\n");
        let mut original = original.into_bytes();
        original.extend_from_slice(&body);
        let req = Req {
            method: parts.method.to_string(),
            url,
            rewrite: None,
            method_target: None,
            request_uri: pq.clone(),
            scheme: scheme.into(),
            host: host.unwrap_or_else(|| "localhost".into()),
            headers,
            headers_utf8,
            body,
            session: None,
            token: String::new(),
            original: base64(&original),
        };
        let api = self
            .find_api(&req.url.path)
            .ok_or_else(|| GatewayError::NoApi(req.url.path.clone()))?;
        let mut ctx = Ctx::default();
        let mut req = req;
        let resp = self.chain(api, &mut req, &mut ctx, 0).await?;
        let mut builder = http::Response::builder().status(resp.status);
        for (k, v) in &resp.headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                builder = builder.header(k, v);
            }
        }
        let response = builder
            .body(resp.body)
            .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        Ok(TestResponse {
            response,
            upstream: ctx.upstream,
            exchanges: ctx.exchanges,
            events: ctx.events,
        })
    }

    fn find_api(&self, path: &str) -> Option<&Api> {
        self.apis
            .iter()
            .filter(|a| {
                let lp = a.listen_path.trim_end_matches('/');
                path == lp || path.starts_with(&format!("{lp}/")) || lp.is_empty()
            })
            .max_by_key(|a| a.listen_path.len())
    }

    fn relative_path(api: &Api, path: &str) -> String {
        let lp = api.listen_path.trim_end_matches('/');
        let rest = path.strip_prefix(lp).unwrap_or(path);
        if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        }
    }

    async fn chain(
        &self,
        api: &Api,
        req: &mut Req,
        ctx: &mut Ctx,
        depth: usize,
    ) -> Result<Resp, GatewayError> {
        if req.token.is_empty() {
            req.token = first(&req.headers, &api.auth_header)
                .map(strip_bearer)
                .unwrap_or_default();
        }
        for hook in api.pre.iter().filter(|h| !h.disabled) {
            if let Flow::Stop(r) = self
                .request_hook(api, hook, HookType::Pre, req, ctx)
                .await?
            {
                return Ok(r);
            }
        }
        let rel = Self::relative_path(api, &gocompat_path(&req.url));
        let ignored = api.ignored.iter().any(|r| r.matches(&rel, &req.method));
        match &api.auth {
            Auth::Keyless => {}
            _ if ignored => {}
            Auth::Custom { hook, id_extractor } if !hook.disabled => {
                if let Some(r) = self
                    .custom_auth(api, hook, id_extractor.as_ref(), req, ctx)
                    .await?
                {
                    return Ok(r);
                }
                // `use_standard_auth`: token auth is chained after the auth
                // hook (§3.1); both must pass.
                if api.standard_auth
                    && let Some(r) = self.token_auth(api, req, ctx).await
                {
                    return Ok(r);
                }
            }
            _ => {
                if let Some(r) = self.token_auth(api, req, ctx).await {
                    return Ok(r);
                }
            }
        }
        if api.auth != Auth::Keyless {
            for hook in api.post_key_auth.iter().filter(|h| !h.disabled) {
                if let Flow::Stop(r) = self
                    .request_hook(api, hook, HookType::PostKeyAuth, req, ctx)
                    .await?
                {
                    return Ok(r);
                }
            }
        }
        if let Some(r) = self.key_checks(api, req, ctx).await {
            return Ok(r);
        }
        if let Some(rule) = api
            .url_rewrites
            .iter()
            .find(|r| r.matches(&rel, &req.method))
            && let Some(mut target) = ParsedUrl::parse(&rule.target)
        {
            if target.query.is_none() {
                target.query = req.url.query.clone();
            }
            req.rewrite = Some(target);
        }
        if let Some(rule) = api
            .method_transforms
            .iter()
            .find(|r| r.matches(&rel, &req.method))
        {
            req.method_target = Some(rule.target.clone());
        }
        for hook in api.post.iter().filter(|h| !h.disabled) {
            if let Flow::Stop(r) = self
                .request_hook(api, hook, HookType::Post, req, ctx)
                .await?
            {
                return Ok(r);
            }
        }
        // Proxy.
        if let Some(target) = req.rewrite.take() {
            req.url = target;
        }
        if let Some(m) = req.method_target.take() {
            req.method = m;
        }
        if req.method.is_empty() {
            req.method = "GET".into();
        }
        let mut resp = if let Some(target) = req.url.origin.strip_prefix("tyk://") {
            if depth >= MAX_LOOPS {
                return Err(GatewayError::LoopTooDeep(MAX_LOOPS));
            }
            let next = self
                .apis
                .iter()
                .find(|a| a.name == target || a.api_id == target)
                .or_else(|| (target == "self").then_some(api))
                .ok_or_else(|| GatewayError::UnknownLoopTarget(target.to_string()))?;
            let mut looped = req.clone();
            looped.url.origin.clear();
            if looped.url.path.is_empty() {
                looped.url.path = "/".into();
            }
            looped.request_uri = looped.url.request_uri();
            Box::pin(self.chain(next, &mut looped, ctx, depth + 1)).await?
        } else {
            if api.strip_listen_path && req.url.origin.is_empty() {
                let lp = api.listen_path.trim_end_matches('/');
                if let Some(rest) = req.url.path.strip_prefix(lp) {
                    req.url.path = if rest.starts_with('/') {
                        rest.to_string()
                    } else {
                        format!("/{rest}")
                    };
                }
            }
            self.proxy(req, ctx)?
        };
        // Built-in response processors run before Response hooks (§3.1 step 9).
        apply_global_response_headers(api, req, &mut resp);
        for hook in api.response.iter().filter(|h| !h.disabled) {
            match self.response_hook(api, hook, req, &resp, ctx).await? {
                Ok(next) => resp = next,
                Err(stop) => return Ok(stop),
            }
        }
        Ok(resp)
    }

    fn proxy(&self, req: &Req, ctx: &mut Ctx) -> Result<Resp, GatewayError> {
        let uri = if req.url.origin.is_empty() {
            req.url.request_uri()
        } else {
            req.url.to_url_string()
        };
        let mut builder = http::Request::builder()
            .method(req.method.as_str())
            .uri(uri.as_str());
        for (k, vs) in &req.headers {
            if k == "Content-Length" {
                continue;
            }
            for v in vs {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(v),
                ) {
                    builder = builder.header(k, v);
                }
            }
        }
        if !req.body.is_empty() || req.headers.contains_key("Content-Length") {
            builder = builder.header("content-length", req.body.len());
        }
        let upstream_req = builder
            .body(req.body.clone())
            .map_err(|e| GatewayError::BadRequest(format!("proxied request {uri:?}: {e}")))?;
        let response = match &self.upstream {
            Some(f) => f(&upstream_req),
            None => echo(&upstream_req, req),
        };
        ctx.upstream = Some(upstream_req);
        let (parts, body) = response.into_parts();
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    canonical_header_key(k.as_str()),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(Resp {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }

    fn build_object(&self, api: &Api, hook: &Hook, hook_type: HookType, req: &Req) -> Object {
        let mut headers: BTreeMap<String, String> = req
            .headers
            .iter()
            .filter_map(|(k, vs)| Some((k.clone(), vs.first()?.clone())))
            .collect();
        headers.insert("Host".into(), req.host.clone());
        let (url, request_uri, method) = match (&req.rewrite, hook_type) {
            (Some(target), HookType::Post) => (target.to_url_string(), target.request_uri(), None),
            _ => (req.url.to_url_string(), req.request_uri.clone(), None),
        };
        let method: Option<String> = method;
        let method = method.unwrap_or_else(|| match (&req.method_target, hook_type) {
            (Some(m), HookType::Post) => m.clone(),
            _ => req.method.clone(),
        });
        let params = req
            .url
            .values()
            .into_iter()
            .filter_map(|(k, vs)| Some((k, vs.into_iter().next()?)))
            .collect();
        let body = if hook.raw_body_only {
            String::new()
        } else {
            std::str::from_utf8(&req.body)
                .map(str::to_string)
                .unwrap_or_default()
        };
        let mut spec = BTreeMap::from([
            ("OrgID".to_string(), api.org_id.clone()),
            ("APIID".to_string(), api.api_id.clone()),
            ("bundle_hash".to_string(), api.bundle_hash()),
        ]);
        if let Some(cd) = api.config_data_json() {
            spec.insert("config_data".into(), cd);
        }
        let session = match hook_type {
            HookType::PostKeyAuth | HookType::Post => {
                req.session.as_ref().map(|(_, s)| normalize(s.clone()))
            }
            HookType::Response => Some(normalize(
                req.session
                    .as_ref()
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default(),
            )),
            _ => None,
        };
        let metadata = session
            .as_ref()
            .map(|s| s.metadata.clone())
            .unwrap_or_default();
        Object {
            hook_type: hook_type as i32,
            hook_name: hook.name.clone(),
            request: Some(MiniRequestObject {
                headers,
                body,
                url,
                params,
                return_overrides: Some(ReturnOverrides {
                    response_code: -1,
                    ..Default::default()
                }),
                method,
                request_uri,
                scheme: req.scheme.clone(),
                raw_body: req.body.clone(),
                ..Default::default()
            }),
            session,
            metadata,
            spec,
            response: None,
        }
    }

    /// Sends `object`; `Err(text)` on a gRPC error or an undecodable reply.
    async fn call(
        &self,
        api: &Api,
        object: Object,
        marshal_ok: bool,
        ctx: &mut Ctx,
    ) -> Option<Object> {
        let hook_type = HookType::try_from(object.hook_type).unwrap_or(HookType::Unknown);
        let mut exchange = Exchange {
            api_id: api.api_id.clone(),
            hook_type,
            hook_name: object.hook_name.clone(),
            sent: object,
            reply: None,
            error: None,
        };
        if !marshal_ok {
            exchange.error = Some(
                "the gateway cannot marshal non-UTF-8 header values or query parameters".into(),
            );
            ctx.exchanges.push(exchange);
            return None;
        }
        let bytes = Bytes::from(exchange.sent.encode_to_vec());
        match self.transport.dispatch(bytes).await {
            Ok(reply) => match Object::decode(reply) {
                Ok(o) => exchange.reply = Some(o),
                Err(e) => exchange.error = Some(format!("undecodable reply: {e}")),
            },
            Err(status) => {
                exchange.error = Some(format!("{:?}: {}", status.code(), status.message()))
            }
        }
        let reply = exchange.reply.clone();
        ctx.exchanges.push(exchange);
        reply
    }

    /// Runs a request-phase hook and applies its reply (§3.4).
    async fn request_hook(
        &self,
        api: &Api,
        hook: &Hook,
        hook_type: HookType,
        req: &mut Req,
        ctx: &mut Ctx,
    ) -> Result<Flow, GatewayError> {
        let object = self.build_object(api, hook, hook_type, req);
        let marshal_ok =
            req.headers_utf8 && gocompat::query_is_utf8(req.url.query.as_deref().unwrap_or(""));
        let Some(mut reply) = self.call(api, object, marshal_ok, ctx).await else {
            let (status, msg) = if hook_type == HookType::CustomKeyCheck {
                (403, "Key not authorised")
            } else {
                (500, "Middleware error")
            };
            return Ok(Flow::Stop(Resp::error(status, msg, &BTreeMap::new())));
        };
        let crash = |missing| GatewayError::WouldCrashGateway {
            hook_type,
            hook_name: hook.name.clone(),
            missing,
        };
        let r = reply.request.as_ref().ok_or_else(|| crash("request"))?;
        let ro = r
            .return_overrides
            .clone()
            .ok_or_else(|| crash("request.return_overrides"))?;
        // 1. body
        req.body = r.raw_body.clone();
        if req.headers.contains_key("Content-Length") {
            req.headers
                .insert("Content-Length".into(), vec![req.body.len().to_string()]);
        }
        // 2. headers
        for name in &r.delete_headers {
            req.headers.remove(&canonical_header_key(name));
        }
        for (k, v) in &r.set_headers {
            req.headers.insert(canonical_header_key(k), vec![v.clone()]);
        }
        // 3. query values
        let mut values = req.url.values();
        for name in &r.delete_params {
            values.remove(name);
        }
        for (k, v) in &r.add_params {
            values.insert(k.clone(), vec![v.clone()]);
        }
        // 4. url
        let Some(parsed) = ParsedUrl::parse(&r.url) else {
            return Ok(Flow::Stop(Resp::error(
                500,
                "Middleware error",
                &BTreeMap::new(),
            )));
        };
        if req.rewrite.is_some() {
            req.rewrite = Some(parsed);
        } else {
            req.url = parsed;
        }
        // 5. method
        if req.method_target.is_some() {
            req.method_target = Some(r.method.clone());
        } else {
            req.method = r.method.clone();
        }
        // 6. query re-encode
        if req.url.values() != values {
            let q = encode_query(&values);
            req.url.query = (!q.is_empty()).then_some(q);
        }
        // 7. session token
        if let Some(session) = reply.session.as_mut() {
            for (k, v) in &reply.metadata {
                session.metadata.insert(k.clone(), v.clone());
            }
            if let Some(t) = session.metadata.get("token").filter(|t| !t.is_empty()) {
                req.token = t.clone();
            }
        }
        // The key the gateway logs and reports for this reply: the reply's
        // session token, empty without a session (e.g. every Pre hook) —
        // not the token the client presented.
        let reply_token = reply
            .session
            .as_ref()
            .and_then(|s| s.metadata.get("token"))
            .cloned()
            .unwrap_or_default();
        // 8.–10. return overrides
        let mut body = ro.response_body.clone();
        if !ro.response_error.is_empty() {
            body = ro.response_error.clone();
        }
        if ro.response_code >= 400 && !ro.override_error {
            self.fire_with_key(api, "AuthFailure", "Auth Failure", req, &reply_token, ctx)
                .await;
            let msg = if body.is_empty() {
                "Key not authorised"
            } else {
                &body
            };
            return Ok(Flow::Stop(Resp::error(
                ro.response_code as u16,
                msg,
                &ro.headers,
            )));
        }
        if ro.response_code > 0 {
            let status = u16::try_from(ro.response_code)
                .ok()
                .filter(|s| (100..=999).contains(s))
                .ok_or_else(|| GatewayError::InvalidResponseStatus {
                    hook_name: hook.name.clone(),
                    status: ro.response_code,
                })?;
            let mut headers: Vec<(String, String)> = ro
                .headers
                .iter()
                .map(|(k, v)| (canonical_header_key(k), v.clone()))
                .collect();
            if !body.is_empty() && !headers.iter().any(|(k, _)| k == "Content-Type") {
                headers.push(("Content-Type".into(), sniff(body.as_bytes()).into()));
            }
            return Ok(Flow::Stop(Resp {
                status,
                headers,
                body: Bytes::from(body),
            }));
        }
        Ok(Flow::Continue(Box::new(reply)))
    }

    /// Custom plugin auth (§3.5, §3.6). `Some` = stop with this response.
    async fn custom_auth(
        &self,
        api: &Api,
        hook: &Hook,
        extractor: Option<&IdExtractor>,
        req: &mut Req,
        ctx: &mut Ctx,
    ) -> Result<Option<Resp>, GatewayError> {
        let now = self.clock.now();
        let mut ext_key = None;
        if let Some(ex) = extractor {
            let Some(identity) = extract(ex, req) else {
                return Ok(Some(Resp::error(
                    400,
                    "Authorization field missing",
                    &BTreeMap::new(),
                )));
            };
            let key = Self::id_extractor_key(&api.org_id, &identity);
            let cached = self
                .lock()
                .keys
                .get(&key)
                .filter(|s| s.id_extractor_deadline > now)
                .cloned();
            if let Some(session) = cached {
                req.session = Some((key, session));
                return Ok(None);
            }
            ext_key = Some(key);
        }
        let reply = match self
            .request_hook(api, hook, HookType::CustomKeyCheck, req, ctx)
            .await?
        {
            Flow::Stop(r) => return Ok(Some(r)),
            Flow::Continue(reply) => reply,
        };
        let reply = *reply;
        let token = reply
            .session
            .as_ref()
            .and_then(|s| {
                reply
                    .metadata
                    .get("token")
                    .or_else(|| s.metadata.get("token"))
            })
            .cloned()
            .unwrap_or_default();
        let Some(mut session) = reply.session.filter(|_| !token.is_empty()) else {
            self.fire(api, "AuthFailure", "Auth Failure", req, ctx)
                .await;
            return Ok(Some(Resp::error(403, "Forbidden", &BTreeMap::new())));
        };
        for (k, v) in &reply.metadata {
            session.metadata.insert(k.clone(), v.clone());
        }
        session.org_id = api.org_id.clone();
        let policies = self.lock().policies.clone();
        if apply_policies(&mut session, |id| policies.get(id).cloned()).is_err() {
            self.fire(api, "AuthFailure", "Auth Failure", req, ctx)
                .await;
            return Ok(Some(Resp::error(403, "Forbidden", &BTreeMap::new())));
        }
        let key = ext_key.unwrap_or_else(|| token.clone());
        session.key_id = key.clone();
        let mut st = self.lock();
        if let Some(stored) = st.keys.get(&key) {
            session.quota_renews = stored.quota_renews;
            session.quota_remaining = stored.quota_remaining;
        }
        // §3.5 step 5: only the base identity's session is adopted (and
        // stored); otherwise the plugin's session only proved the request.
        if api.base_identity.custom_auth_sets_session() {
            let session = normalize(session);
            st.keys.insert(key.clone(), session.clone());
            drop(st);
            req.token = token;
            req.session = Some((key, session));
        }
        Ok(None)
    }

    /// Standard token auth against the key store, reading
    /// [`Api::get_token_header`]; the key's session becomes the request's
    /// session unless another method is the base identity.
    async fn token_auth(&self, api: &Api, req: &mut Req, ctx: &mut Ctx) -> Option<Resp> {
        let Some(token) = first(&req.headers, api.get_token_header()).map(strip_bearer) else {
            self.fire(api, "AuthFailure", "Auth Failure", req, ctx)
                .await;
            return Some(Resp::error(
                401,
                "Authorization field missing",
                &BTreeMap::new(),
            ));
        };
        let found = self.lock().keys.get(&token).cloned();
        let Some(mut session) = found else {
            self.fire_with_key(api, "AuthFailure", "Auth Failure", req, &token, ctx)
                .await;
            return Some(Resp::error(
                403,
                "Access to this API has been disallowed",
                &BTreeMap::new(),
            ));
        };
        let policies = self.lock().policies.clone();
        if apply_policies(&mut session, |id| policies.get(id).cloned()).is_err() {
            return Some(Resp::error(403, "Forbidden", &BTreeMap::new()));
        }
        if api.base_identity.token_auth_sets_session() {
            req.token = token.clone();
            req.session = Some((token, session));
        }
        None
    }

    /// Expiry, access rights, rate limit, quota.
    async fn key_checks(&self, api: &Api, req: &mut Req, ctx: &mut Ctx) -> Option<Resp> {
        let (key, session) = req.session.clone()?;
        let now = self.clock.now();
        let none = BTreeMap::new();
        if session.is_inactive {
            return Some(Resp::error(403, "Key is inactive, please renew", &none));
        }
        if session.expires >= 1 && session.expires < now {
            self.fire(api, "KeyExpired", "Key has expired, please renew", req, ctx)
                .await;
            return Some(Resp::error(401, "Key has expired, please renew", &none));
        }
        if !session.access_rights.is_empty() && !session.access_rights.contains_key(&api.api_id) {
            return Some(Resp::error(
                403,
                "Access to this API has been disallowed",
                &none,
            ));
        }
        if session.rate > 0.0 && session.per > 0.0 {
            let limited = {
                let mut st = self.lock();
                let window = st.rate_windows.entry(key.clone()).or_default();
                window.retain(|t| (now - t) as f64 <= session.per && *t <= now);
                if window.len() as f64 >= session.rate {
                    true
                } else {
                    window.push(now);
                    false
                }
            };
            if limited {
                self.fire(
                    api,
                    "RatelimitExceeded",
                    "Key Rate Limit Exceeded",
                    req,
                    ctx,
                )
                .await;
                return Some(Resp::error(429, "Rate limit exceeded", &none));
            }
        }
        if session.quota_max > 0 {
            let exceeded = {
                let mut st = self.lock();
                let started = st.quota_started.contains(&key);
                let st = &mut *st;
                let stored = st
                    .keys
                    .entry(key.clone())
                    .or_insert_with(|| session.clone());
                if !started || (stored.quota_renewal_rate > 0 && now >= stored.quota_renews) {
                    stored.quota_remaining = stored.quota_max;
                    stored.quota_renews = now + stored.quota_renewal_rate;
                    st.quota_started.insert(key.clone());
                }
                if stored.quota_remaining <= 0 {
                    true
                } else {
                    stored.quota_remaining -= 1;
                    if let Some((_, s)) = req.session.as_mut() {
                        s.quota_remaining = stored.quota_remaining;
                        s.quota_renews = stored.quota_renews;
                    }
                    false
                }
            };
            if exceeded {
                self.fire(api, "QuotaExceeded", "Key Quota Limit Exceeded", req, ctx)
                    .await;
                return Some(Resp::error(403, "Quota exceeded", &none));
            }
        }
        None
    }

    /// Runs a Response hook (§3.7). `Ok(Err(resp))` = abort with `resp`.
    async fn response_hook(
        &self,
        api: &Api,
        hook: &Hook,
        req: &Req,
        resp: &Resp,
        ctx: &mut Ctx,
    ) -> Result<Result<Resp, Resp>, GatewayError> {
        let mut object = self.build_object(api, hook, HookType::Response, req);
        let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &resp.headers {
            multi.entry(k.clone()).or_default().push(v.clone());
        }
        let headers: BTreeMap<String, String> = multi
            .iter()
            .map(|(k, vs)| (k.clone(), vs[0].clone()))
            .collect();
        object.response = Some(ResponseObject {
            status_code: i32::from(resp.status),
            raw_body: resp.body.clone(),
            body: if hook.raw_body_only {
                String::new()
            } else {
                std::str::from_utf8(&resp.body)
                    .map(str::to_string)
                    .unwrap_or_default()
            },
            headers: headers.clone(),
            multivalue_headers: multi
                .into_iter()
                .map(|(key, values)| Header { key, values })
                .collect(),
        });
        let middleware_error = || Resp::error(500, "Middleware error", &BTreeMap::new());
        let Some(reply) = self.call(api, object, req.headers_utf8, ctx).await else {
            return Ok(Err(middleware_error()));
        };
        let Some(out) = reply.response else {
            return Ok(Err(middleware_error()));
        };
        let status = u16::try_from(out.status_code)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or_else(|| GatewayError::InvalidResponseStatus {
                hook_name: hook.name.clone(),
                status: out.status_code,
            })?;
        let multi = if out.headers != headers {
            sync_headers(&out.headers, out.multivalue_headers)
        } else {
            out.multivalue_headers
        };
        let mut new_headers: Vec<(String, String)> = Vec::new();
        for h in multi {
            let key = canonical_header_key(&h.key);
            for v in h.values {
                new_headers.push((key.clone(), v));
            }
        }
        new_headers.retain(|(k, _)| k != "Content-Length");
        new_headers.push(("Content-Length".into(), out.raw_body.len().to_string()));
        Ok(Ok(Resp {
            status,
            headers: new_headers,
            body: out.raw_body,
        }))
    }

    /// Records an event and sends it to the API's `cp_dynamic_handler`s,
    /// with the request's token as the key.
    async fn fire(&self, api: &Api, event_type: &str, message: &str, req: &Req, ctx: &mut Ctx) {
        self.fire_with_key(api, event_type, message, req, &req.token, ctx)
            .await;
    }

    /// [`fire`](Self::fire) with an explicit `Meta.Key`.
    async fn fire_with_key(
        &self,
        api: &Api,
        event_type: &str,
        message: &str,
        req: &Req,
        key: &str,
        ctx: &mut Ctx,
    ) {
        let message = serde_json::json!({
            "Type": event_type,
            "Meta": {
                "Message": message,
                "OriginatingRequest": req.original,
                "Path": req.url.decoded_path(),
                "Origin": "127.0.0.1",
                "Key": key,
            },
            "TimeStamp": gocompat::go_time_string(self.clock.now(), self.clock.nanos()),
        });
        let mut deliveries = Vec::new();
        for (_, handler_name) in api.event_handlers.iter().filter(|(e, _)| e == event_type) {
            let payload = serde_json::json!({
                "message": message,
                "handler_name": handler_name,
                "spec": {"APIID": api.api_id, "OrgID": api.org_id},
            })
            .to_string();
            let result = self
                .transport
                .dispatch_event(payload.clone())
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()));
            deliveries.push(Delivery {
                handler_name: handler_name.clone(),
                payload,
                result,
            });
        }
        let event = FiredEvent {
            event_type: event_type.to_string(),
            api_id: api.api_id.clone(),
            message,
            deliveries,
        };
        self.lock().events.push(event.clone());
        ctx.events.push(event);
    }
}

/// The response header injector's global part: `global_response_headers_remove`
/// are deleted, then `global_response_headers` are set (replacing), with
/// `$tyk_meta.*` taken from the request's session.
fn apply_global_response_headers(api: &Api, req: &Req, resp: &mut Resp) {
    if api.response_headers.is_empty() && api.response_headers_remove.is_empty() {
        return;
    }
    let metadata = req.session.as_ref().map(|(_, s)| &s.metadata);
    for name in &api.response_headers_remove {
        let name = canonical_header_key(name);
        resp.headers.retain(|(k, _)| *k != name);
    }
    for (name, value) in &api.response_headers {
        let name = canonical_header_key(name);
        let value = replace_tyk_meta(value, metadata);
        resp.headers.retain(|(k, _)| *k != name);
        resp.headers.push((name, value));
    }
}

/// Tyk's `$tyk_meta.<key>` substitution (`ReplaceTykVariables`): every match
/// of `\$tyk_meta.([A-Za-z0-9_\-\.]+)` is replaced, in order and everywhere
/// it occurs, by the session's metadata entry named by the match minus its
/// `$tyk_meta.` prefix; a missing entry or no session gives `""`.
///
/// Metadata values are the session's strings: a key's non-string metadata
/// is JSON-encoded here, where Tyk formats numbers the same way but
/// substitutes `""` for objects and booleans.
pub(crate) fn replace_tyk_meta(input: &str, metadata: Option<&BTreeMap<String, String>>) -> String {
    const LABEL: &str = "$tyk_meta.";
    if !input.contains(LABEL) {
        return input.to_string();
    }
    static META: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = META.get_or_init(|| {
        regex::Regex::new(r"\$tyk_meta.([A-Za-z0-9_\-\.]+)").expect("valid pattern")
    });
    let vars: Vec<String> = re
        .find_iter(input)
        .map(|m| m.as_str().to_string())
        .collect();
    let mut out = input.to_string();
    for var in vars {
        let key = var.replacen(LABEL, "", 1);
        let value = metadata
            .and_then(|m| m.get(&key))
            .map_or("", String::as_str);
        out = out.replace(&var, value);
    }
    out
}

fn gocompat_path(url: &ParsedUrl) -> String {
    url.decoded_path()
}

fn first(headers: &BTreeMap<String, Vec<String>>, name: &str) -> Option<String> {
    headers
        .get(&canonical_header_key(name))
        .and_then(|v| v.first())
        .filter(|v| !v.is_empty())
        .cloned()
}

fn strip_bearer(v: String) -> String {
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].to_string(),
        _ => v,
    }
}

/// The ≥ 5.8 sync of a changed `headers` map into `multivalue_headers`.
pub(crate) fn sync_headers(headers: &BTreeMap<String, String>, multi: Vec<Header>) -> Vec<Header> {
    let mut out: Vec<Header> = multi
        .into_iter()
        .filter_map(|mut h| {
            let v = headers.get(&h.key)?;
            match h.values.first_mut() {
                Some(first) => *first = v.clone(),
                None => h.values.push(v.clone()),
            }
            Some(h)
        })
        .collect();
    for (k, v) in headers {
        if !out.iter().any(|h| &h.key == k) {
            out.push(Header {
                key: k.clone(),
                values: vec![v.clone()],
            });
        }
    }
    out
}

/// Form values as Go's `ParseForm` sees them: url-encoded body (POST, PUT,
/// PATCH) first, then the query.
fn form_values(req: &Req) -> gocompat::Values {
    let mut values = gocompat::Values::new();
    let is_form = first(&req.headers, "Content-Type")
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form && matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
        values = gocompat::parse_query(&String::from_utf8_lossy(&req.body));
    }
    for (k, vs) in req.url.values() {
        values.entry(k).or_default().extend(vs);
    }
    values
}

/// Runs an ID extractor; `None` = extraction failed (400).
fn extract(ex: &IdExtractor, req: &Req) -> Option<String> {
    let input = match &ex.from {
        ExtractFrom::Header(name) => first(&req.headers, name)?,
        ExtractFrom::Form(name) => form_values(req).get(name)?.concat(),
        ExtractFrom::Body => String::from_utf8_lossy(&req.body).into_owned(),
    };
    if input.is_empty() {
        return None;
    }
    match &ex.with {
        ExtractWith::Value => Some(input),
        ExtractWith::Regex { pattern, index } => {
            let re = regex::Regex::new(pattern).ok()?;
            re.find_iter(&input)
                .nth(*index)
                .map(|m| m.as_str().to_string())
        }
    }
}

/// Tyk's test upstream: echoes the request as JSON.
fn echo(upstream: &http::Request<Bytes>, req: &Req) -> http::Response<Bytes> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers
        .iter()
        .filter_map(|(k, vs)| Some((k.clone(), vs.first()?.clone().into())))
        .collect();
    let form: serde_json::Map<String, serde_json::Value> = form_values(req)
        .into_iter()
        .filter_map(|(k, vs)| Some((k, vs.into_iter().next()?.into())))
        .collect();
    let body = serde_json::json!({
        "Method": upstream.method().as_str(),
        "URI": req.url.request_uri(),
        "Url": req.url.to_url_string(),
        "Path": req.url.decoded_path(),
        "Body": String::from_utf8_lossy(upstream.body()),
        "Headers": headers,
        "Form": form,
    });
    http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-tyk-test", "1")
        .body(Bytes::from(body.to_string()))
        .unwrap_or_default()
}

/// A rough `http.DetectContentType`.
fn sniff(body: &[u8]) -> &'static str {
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&body[..0], |i| &body[i..]);
    let lower = String::from_utf8_lossy(&trimmed[..trimmed.len().min(14)]).to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        "text/html; charset=utf-8"
    } else if lower.starts_with("<?xml") {
        "text/xml; charset=utf-8"
    } else if std::str::from_utf8(body).is_ok()
        && !body
            .iter()
            .any(|&b| b < 0x20 && !b"\t\n\x0c\r\x1b".contains(&b))
    {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    fn h(k: &str, vs: &[&str]) -> Header {
        Header {
            key: k.into(),
            values: vs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tyk_meta_substitution() {
        let meta = m(&[("a", "1"), ("ab", "2"), ("x.y", "dot"), ("u", "a b/c")]);
        let r = |s: &str| replace_tyk_meta(s, Some(&meta));
        assert_eq!(r("no variables"), "no variables");
        assert_eq!(r("$tyk_meta.ab"), "2");
        assert_eq!(r("<$tyk_meta.ab|$tyk_meta.ab>"), "<2|2>");
        assert_eq!(r("$tyk_meta.x.y"), "dot", "dots belong to the key");
        assert_eq!(r("$tyk_meta.u"), "a b/c", "not escaped in headers");
        assert_eq!(r("[$tyk_meta.missing]"), "[]", "missing key: empty");
        assert_eq!(
            r("$tyk_meta.ab!"),
            "2!",
            "the key stops at other characters"
        );
        assert_eq!(r("$tyk_meta."), "$tyk_meta.", "no key: left alone");
        // Tyk's regex has an unescaped `.`; the key is the match minus the
        // literal label, so `$tyk_metaXab` names no key and becomes empty —
        // but only when the real label occurs somewhere in the value.
        assert_eq!(r("$tyk_meta.a $tyk_metaXab"), "1 ");
        assert_eq!(r("$tyk_metaXab"), "$tyk_metaXab");
        // Matches are replaced one after another, everywhere: `$tyk_meta.a`
        // also eats the start of a later `$tyk_meta.ab`.
        assert_eq!(r("$tyk_meta.a $tyk_meta.ab"), "1 1b");
        assert_eq!(r("$tyk_meta.a-"), "", "`-` belongs to the key: `a-`");
        assert_eq!(replace_tyk_meta("v=$tyk_meta.a", None), "v=", "no session");
        assert_eq!(replace_tyk_meta("plain", None), "plain");
    }

    /// Tyk's TestSyncHeadersAndMultiValueHeaders.
    #[test]
    fn sync_matches_tyk() {
        assert_eq!(
            sync_headers(
                &m(&[("Header1", "value1"), ("Header2", "value2")]),
                vec![h("Header1", &["oldValue1"])]
            ),
            vec![h("Header1", &["value1"]), h("Header2", &["value2"])]
        );
        assert_eq!(
            sync_headers(
                &m(&[("Header1", "value1")]),
                vec![h("Header1", &["oldValue1"]), h("Header2", &["oldValue2"])]
            ),
            vec![h("Header1", &["value1"])]
        );
        assert_eq!(
            sync_headers(
                &m(&[("Header1", "newValue1")]),
                vec![h("Header1", &["oldValue1"])]
            ),
            vec![h("Header1", &["newValue1"])]
        );
        assert_eq!(
            sync_headers(
                &m(&[("Header", "newValue1")]),
                vec![h("Header", &["oldValue1", "value2"])]
            ),
            vec![h("Header", &["newValue1", "value2"])]
        );
        assert_eq!(
            sync_headers(&m(&[("Header", "newValue1")]), vec![]),
            vec![h("Header", &["newValue1"])]
        );
        assert_eq!(
            sync_headers(
                &m(&[("Set-Cookie", "session=abc123; Path=/")]),
                vec![h("Set-Cookie", &["a=1", "b=2", "c=3"])]
            ),
            vec![h("Set-Cookie", &["session=abc123; Path=/", "b=2", "c=3"])]
        );
    }
}
