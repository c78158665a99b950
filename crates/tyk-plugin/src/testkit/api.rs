//! API definitions: the parts of a Tyk API definition that matter to plugins.

use serde_json::Value;

/// A configured plugin hook (`custom_middleware.pre[]` and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// `name`: sent as `hook_name`.
    pub name: String,
    /// `raw_body_only`: the `body` strings are left empty.
    pub raw_body_only: bool,
    /// `disabled`: the hook is skipped.
    pub disabled: bool,
}

impl Hook {
    /// An enabled hook called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            raw_body_only: false,
            disabled: false,
        }
    }

    /// Sets `raw_body_only`.
    pub fn raw_body_only(mut self) -> Self {
        self.raw_body_only = true;
        self
    }

    /// Sets `disabled`.
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }
}

impl From<&str> for Hook {
    fn from(name: &str) -> Self {
        Hook::new(name)
    }
}

impl From<String> for Hook {
    fn from(name: String) -> Self {
        Hook::new(name)
    }
}

/// Where an ID extractor reads the identity from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractFrom {
    /// A request header (`header_name`).
    Header(String),
    /// A form parameter (`param_name`), from the query and a url-encoded body.
    Form(String),
    /// The whole request body (regex only).
    Body,
}

/// How an ID extractor turns the source into the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractWith {
    /// The value as it is.
    Value,
    /// Whole match number `index` of `pattern` (not a capture group).
    Regex {
        /// `regex_expression`.
        pattern: String,
        /// `regex_match_index`.
        index: usize,
    },
}

/// The ID extractor of a custom-auth API (§3.6): caches the plugin's session
/// under `<org><md5hex(identity)>` while `id_extractor_deadline` is ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdExtractor {
    /// The source.
    pub from: ExtractFrom,
    /// The method.
    pub with: ExtractWith,
}

impl IdExtractor {
    /// `extract_from: header`, `extract_with: value`.
    pub fn header_value(header: impl Into<String>) -> Self {
        Self {
            from: ExtractFrom::Header(header.into()),
            with: ExtractWith::Value,
        }
    }

    /// `extract_from: header`, `extract_with: regex`.
    pub fn header_regex(
        header: impl Into<String>,
        pattern: impl Into<String>,
        index: usize,
    ) -> Self {
        Self {
            from: ExtractFrom::Header(header.into()),
            with: ExtractWith::Regex {
                pattern: pattern.into(),
                index,
            },
        }
    }

    /// `extract_from: form`, `extract_with: value`.
    pub fn form_value(param: impl Into<String>) -> Self {
        Self {
            from: ExtractFrom::Form(param.into()),
            with: ExtractWith::Value,
        }
    }

    /// `extract_from: form`, `extract_with: regex`.
    pub fn form_regex(param: impl Into<String>, pattern: impl Into<String>, index: usize) -> Self {
        Self {
            from: ExtractFrom::Form(param.into()),
            with: ExtractWith::Regex {
                pattern: pattern.into(),
                index,
            },
        }
    }

    /// `extract_from: body`, `extract_with: regex`.
    pub fn body_regex(pattern: impl Into<String>, index: usize) -> Self {
        Self {
            from: ExtractFrom::Body,
            with: ExtractWith::Regex {
                pattern: pattern.into(),
                index,
            },
        }
    }
}

/// How requests to an API are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `use_keyless: true`: no auth, no PostKeyAuth hooks.
    Keyless,
    /// Standard token auth against the emulator's key store.
    Token,
    /// Custom plugin auth (`custom_plugin_auth_enabled`): the auth hook.
    Custom {
        /// `auth_check` (a disabled one falls back to token auth).
        hook: Hook,
        /// `id_extractor`, if enabled.
        id_extractor: Option<IdExtractor>,
    },
}

/// `base_identity_provided_by`: which of several auth methods of an API
/// supplies the request's session (Tyk's `AuthTypeEnum`).
///
/// Every auth method runs and must pass; only the one named here (any
/// method when unset) makes its session the request's session — the one
/// later checks, hooks and `$tyk_meta.*` see, and the one custom auth
/// stores. The emulator has custom auth and standard token auth; any other
/// method ([`BaseIdentity::Other`]) leaves the request without a session,
/// except for an ID-extractor cache hit, which the gateway always adopts.
///
/// ```
/// # use tyk_plugin::testkit::BaseIdentity;
/// assert_eq!(BaseIdentity::from_name("auth_token"), BaseIdentity::AuthToken);
/// assert_eq!(BaseIdentity::from_name(""), BaseIdentity::Unset);
/// assert_eq!(BaseIdentity::CustomAuth.as_str(), "custom_auth");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BaseIdentity {
    /// `""` (the default): every auth method sets the session; the last one
    /// in the chain wins.
    #[default]
    Unset,
    /// `auth_token`: standard token auth.
    AuthToken,
    /// `custom_auth`: the custom plugin auth hook.
    CustomAuth,
    /// Another method (`jwt_claim`, `hmac_key`, `basic_auth_user`,
    /// `oidc_user`, `oauth_key`, …), none of which the emulator runs.
    Other(String),
}

impl BaseIdentity {
    /// The setting for a `base_identity_provided_by` value.
    pub fn from_name(name: &str) -> Self {
        match name {
            "" => BaseIdentity::Unset,
            "auth_token" => BaseIdentity::AuthToken,
            "custom_auth" => BaseIdentity::CustomAuth,
            other => BaseIdentity::Other(other.to_string()),
        }
    }

    /// The `base_identity_provided_by` value.
    pub fn as_str(&self) -> &str {
        match self {
            BaseIdentity::Unset => "",
            BaseIdentity::AuthToken => "auth_token",
            BaseIdentity::CustomAuth => "custom_auth",
            BaseIdentity::Other(name) => name,
        }
    }

    /// Whether the custom auth hook's session becomes the request's session.
    pub(crate) fn custom_auth_sets_session(&self) -> bool {
        matches!(self, BaseIdentity::Unset | BaseIdentity::CustomAuth)
    }

    /// Whether the standard token auth's session becomes the request's session.
    pub(crate) fn token_auth_sets_session(&self) -> bool {
        matches!(self, BaseIdentity::Unset | BaseIdentity::AuthToken)
    }
}

/// A path rule (`extended_paths`): matched against the path below the listen
/// path, as a prefix; `{name}` segments match anything but `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathRule {
    pub path: String,
    pub method: Option<String>,
    pub ignore_case: bool,
    pub target: String,
}

impl PathRule {
    /// A case-sensitive rule for `path` and `method` with `target`.
    fn new(path: impl Into<String>, method: impl Into<String>, target: impl Into<String>) -> Self {
        PathRule {
            path: path.into(),
            method: Some(method.into()),
            ignore_case: false,
            target: target.into(),
        }
    }

    pub(crate) fn matches(&self, path: &str, method: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        let mut pattern = String::from("^");
        if self.ignore_case {
            pattern.push_str("(?i)");
        }
        let rule = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        for (i, part) in rule.split('{').enumerate() {
            let literal = if i == 0 {
                part
            } else {
                pattern.push_str("[^/]+");
                part.split_once('}').map_or("", |(_, rest)| rest)
            };
            pattern.push_str(&regex::escape(literal));
        }
        regex::Regex::new(&pattern).is_ok_and(|re| re.is_match(path))
    }
}

/// An API definition, reduced to what plugins can observe.
///
/// ```
/// # use tyk_plugin::testkit::{Api, Hook};
/// let api = Api::keyless("api1")
///     .listen_path("/a/")
///     .pre("MyPre")
///     .response(Hook::new("MyResponse").raw_body_only())
///     .config_data(serde_json::json!({"k": "v"}));
/// assert_eq!(api.api_id(), "api1");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    pub(crate) api_id: String,
    pub(crate) org_id: String,
    pub(crate) name: String,
    pub(crate) listen_path: String,
    pub(crate) strip_listen_path: bool,
    pub(crate) auth: Auth,
    pub(crate) auth_header: String,
    pub(crate) standard_auth: bool,
    pub(crate) token_header: Option<String>,
    pub(crate) base_identity: BaseIdentity,
    pub(crate) response_headers: Vec<(String, String)>,
    pub(crate) response_headers_remove: Vec<String>,
    pub(crate) pre: Vec<Hook>,
    pub(crate) post_key_auth: Vec<Hook>,
    pub(crate) post: Vec<Hook>,
    pub(crate) response: Vec<Hook>,
    pub(crate) config_data: Option<Value>,
    pub(crate) config_data_disabled: bool,
    pub(crate) bundle: Option<String>,
    pub(crate) ignored: Vec<PathRule>,
    pub(crate) url_rewrites: Vec<PathRule>,
    pub(crate) method_transforms: Vec<PathRule>,
    pub(crate) event_handlers: Vec<(String, String)>,
}

impl Api {
    fn base(api_id: &str, auth: Auth) -> Self {
        Self {
            api_id: api_id.to_string(),
            org_id: "default".into(),
            name: api_id.to_string(),
            listen_path: format!("/{api_id}/"),
            strip_listen_path: true,
            auth,
            auth_header: "Authorization".into(),
            standard_auth: false,
            token_header: None,
            base_identity: BaseIdentity::Unset,
            response_headers: Vec::new(),
            response_headers_remove: Vec::new(),
            pre: Vec::new(),
            post_key_auth: Vec::new(),
            post: Vec::new(),
            response: Vec::new(),
            config_data: None,
            config_data_disabled: false,
            bundle: None,
            ignored: Vec::new(),
            url_rewrites: Vec::new(),
            method_transforms: Vec::new(),
            event_handlers: Vec::new(),
        }
    }

    /// A keyless API; org `default`, listen path `/<api_id>/` (stripped).
    pub fn keyless(api_id: impl AsRef<str>) -> Self {
        Self::base(api_id.as_ref(), Auth::Keyless)
    }

    /// An API protected by standard token auth (header `Authorization`,
    /// change it with [`Api::auth_header`]); keys come from the gateway's key store.
    pub fn protected(api_id: impl AsRef<str>) -> Self {
        Self::base(api_id.as_ref(), Auth::Token)
    }

    /// An API with custom plugin auth, `auth_check` = `hook`.
    pub fn custom_auth(api_id: impl AsRef<str>, hook: impl Into<Hook>) -> Self {
        Self::base(
            api_id.as_ref(),
            Auth::Custom {
                hook: hook.into(),
                id_extractor: None,
            },
        )
    }

    /// The API id.
    pub fn api_id(&self) -> &str {
        &self.api_id
    }

    /// The API name (used by `tyk://<name>/` loops).
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// The listen path.
    pub fn get_listen_path(&self) -> &str {
        &self.listen_path
    }

    /// The auth mode.
    pub fn get_auth(&self) -> &Auth {
        &self.auth
    }

    /// Sets the org id (`spec.OrgID`; forced onto custom-auth sessions).
    pub fn org(mut self, org_id: impl Into<String>) -> Self {
        self.org_id = org_id.into();
        self
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the listen path (matched as a prefix of the request path).
    pub fn listen_path(mut self, path: impl Into<String>) -> Self {
        self.listen_path = path.into();
        self
    }

    /// Whether the listen path is removed before proxying (default true).
    pub fn strip_listen_path(mut self, strip: bool) -> Self {
        self.strip_listen_path = strip;
        self
    }

    /// The auth header: the token for standard auth, the key reported in
    /// events for custom auth (`auth_configs.*.auth_header_name`). Standard
    /// token auth next to custom auth reads [`Api::token_header`] when set.
    pub fn auth_header(mut self, name: impl Into<String>) -> Self {
        self.auth_header = name.into();
        self
    }

    /// `use_standard_auth`: on a custom-auth API, standard token auth runs
    /// too, after the auth hook (spec §3.1). Both must pass; which session
    /// the request gets is [`Api::base_identity_provided_by`]. Without
    /// custom auth (or with a disabled `auth_check`) token auth runs anyway.
    pub fn use_standard_auth(mut self, enabled: bool) -> Self {
        self.standard_auth = enabled;
        self
    }

    /// The header standard token auth reads the key from
    /// (`auth_configs.authToken.auth_header_name`); defaults to
    /// [`Api::auth_header`]. Needed when custom auth and token auth run
    /// side by side with different headers.
    pub fn token_header(mut self, name: impl Into<String>) -> Self {
        self.token_header = Some(name.into());
        self
    }

    /// `base_identity_provided_by`: which auth method's session the request
    /// gets when several run (see [`BaseIdentity`]).
    pub fn base_identity_provided_by(mut self, base: BaseIdentity) -> Self {
        self.base_identity = base;
        self
    }

    /// A global response header (`global_response_headers` of the API's
    /// version): set on every proxied response before Response hooks run.
    /// `$tyk_meta.<key>` in `value` is replaced by that metadata entry of
    /// the request's session (empty when the key or the session is missing).
    pub fn global_response_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.response_headers.push((name.into(), value.into()));
        self
    }

    /// A header removed from every proxied response
    /// (`global_response_headers_remove`), before the global ones are set.
    pub fn remove_global_response_header(mut self, name: impl Into<String>) -> Self {
        self.response_headers_remove.push(name.into());
        self
    }

    /// The header standard token auth reads the key from.
    pub fn get_token_header(&self) -> &str {
        self.token_header.as_deref().unwrap_or(&self.auth_header)
    }

    /// The `base_identity_provided_by` setting.
    pub fn get_base_identity(&self) -> &BaseIdentity {
        &self.base_identity
    }

    /// Whether standard token auth runs on this API (alone, or after custom
    /// auth with `use_standard_auth`).
    pub fn runs_token_auth(&self) -> bool {
        match &self.auth {
            Auth::Keyless => false,
            Auth::Token => true,
            Auth::Custom { hook, .. } => hook.disabled || self.standard_auth,
        }
    }

    /// Sets the ID extractor (custom auth only; ignored otherwise).
    pub fn id_extractor(mut self, extractor: IdExtractor) -> Self {
        if let Auth::Custom { id_extractor, .. } = &mut self.auth {
            *id_extractor = Some(extractor);
        }
        self
    }

    /// Appends a Pre hook.
    pub fn pre(mut self, hook: impl Into<Hook>) -> Self {
        self.pre.push(hook.into());
        self
    }

    /// Appends a PostKeyAuth hook (run on protected APIs only).
    pub fn post_key_auth(mut self, hook: impl Into<Hook>) -> Self {
        self.post_key_auth.push(hook.into());
        self
    }

    /// Appends a Post hook.
    pub fn post(mut self, hook: impl Into<Hook>) -> Self {
        self.post.push(hook.into());
        self
    }

    /// Appends a Response hook.
    pub fn response(mut self, hook: impl Into<Hook>) -> Self {
        self.response.push(hook.into());
        self
    }

    /// Sets `config_data` (sent as `spec["config_data"]` in Go JSON when
    /// non-empty and not disabled).
    pub fn config_data(mut self, data: Value) -> Self {
        self.config_data = Some(data);
        self
    }

    /// Sets `config_data_disabled`.
    pub fn config_data_disabled(mut self, disabled: bool) -> Self {
        self.config_data_disabled = disabled;
        self
    }

    /// Sets `custom_middleware_bundle` (its name's MD5 is `spec["bundle_hash"]`).
    pub fn bundle(mut self, name: impl Into<String>) -> Self {
        self.bundle = Some(name.into());
        self
    }

    /// An ignored path (any method): auth is skipped there, hooks still run.
    pub fn ignore(mut self, path: impl Into<String>) -> Self {
        self.ignored.push(PathRule {
            path: path.into(),
            method: None,
            ignore_case: false,
            target: String::new(),
        });
        self
    }

    /// A URL rewrite of `path` for `method` to `to` (e.g. `/new` or
    /// `tyk://other-api/path`): Post hooks see the target as `url`.
    pub fn url_rewrite(
        mut self,
        path: impl Into<String>,
        method: impl Into<String>,
        to: impl Into<String>,
    ) -> Self {
        self.url_rewrites.push(PathRule::new(path, method, to));
        self
    }

    /// A method transform of `path` for `method` to `to_method`: Post hooks
    /// see the target as `method`.
    pub fn method_transform(
        mut self,
        path: impl Into<String>,
        method: impl Into<String>,
        to_method: impl Into<String>,
    ) -> Self {
        self.method_transforms
            .push(PathRule::new(path, method, to_method));
        self
    }

    /// A `cp_dynamic_handler` for `event` (e.g. `AuthFailure`): the event is
    /// sent to the plugin's `DispatchEvent` with `handler_name`.
    pub fn event_handler(
        mut self,
        event: impl Into<String>,
        handler_name: impl Into<String>,
    ) -> Self {
        self.event_handlers
            .push((event.into(), handler_name.into()));
        self
    }

    /// `spec["bundle_hash"]`.
    pub fn bundle_hash(&self) -> String {
        super::gocompat::md5_hex(self.bundle.as_deref().unwrap_or("").as_bytes())
    }

    /// `spec["config_data"]`, if the gateway sends it.
    pub fn config_data_json(&self) -> Option<String> {
        let data = self.config_data.as_ref()?;
        let empty = match data {
            Value::Null => true,
            Value::Object(m) => m.is_empty(),
            _ => false,
        };
        (!empty && !self.config_data_disabled).then(|| super::gocompat::go_json(data))
    }
}

/// Why an API definition could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ApiDefError {
    /// A required field is missing.
    #[error("API definition: missing {0}")]
    Missing(&'static str),
    /// A field has an unusable value.
    #[error("API definition: {field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A feature the emulator does not implement.
    #[error("API definition: {0} is not supported by the emulator")]
    Unsupported(String),
    /// The file cannot be read or is not JSON.
    #[error("API definition {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path)?.as_str()
}

fn b(v: &Value, path: &[&str]) -> bool {
    get(v, path).and_then(Value::as_bool).unwrap_or(false)
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn invalid(field: &str, reason: impl Into<String>) -> ApiDefError {
    ApiDefError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn extractor(
    from: &str,
    with: &str,
    header: Option<&str>,
    param: Option<&str>,
    regex: Option<&str>,
    index: usize,
) -> Result<IdExtractor, ApiDefError> {
    let from = match from {
        "header" => ExtractFrom::Header(
            header
                .ok_or(ApiDefError::Missing("id extractor header name"))?
                .to_string(),
        ),
        "form" => ExtractFrom::Form(
            param
                .ok_or(ApiDefError::Missing("id extractor param name"))?
                .to_string(),
        ),
        "body" => ExtractFrom::Body,
        other => return Err(ApiDefError::Unsupported(format!("extract_from {other:?}"))),
    };
    let with = match with {
        "value" => ExtractWith::Value,
        "regex" => ExtractWith::Regex {
            pattern: regex
                .ok_or(ApiDefError::Missing("id extractor regex"))?
                .to_string(),
            index,
        },
        other => return Err(ApiDefError::Unsupported(format!("extract_with {other:?}"))),
    };
    if from == ExtractFrom::Body && with == ExtractWith::Value {
        return Err(invalid("id_extractor", "body needs regex or xpath"));
    }
    Ok(IdExtractor { from, with })
}

/// The header standard token auth reads: `auth_configs.authToken`, or the
/// deprecated `auth` when that entry is absent (Tyk copies `auth` into
/// `auth_configs.authToken` only when it is missing); `None` = the default
/// `Authorization`.
fn classic_token_header(def: &Value) -> Option<&str> {
    match get(def, &["auth_configs", "authToken"]) {
        Some(cfg) => s(cfg, &["auth_header_name"]),
        None => s(def, &["auth", "auth_header_name"]),
    }
    .filter(|h| !h.is_empty())
}

/// The token auth scheme of a Tyk OAS definition, as the gateway reads it
/// (legacy security processing): an `x-tyk-api-gateway` security scheme
/// that the first `security` requirement names and whose OpenAPI
/// `components.securitySchemes` entry has type `apiKey`. Returns whether it
/// is enabled and the header it reads (`None` = the default, or a query
/// parameter or cookie, which the emulator does not read).
fn oas_token_scheme<'a>(def: &'a Value, x: &'a Value) -> Option<(bool, Option<&'a str>)> {
    let first = get(def, &["security"])?.as_array()?.first()?.as_object()?;
    let schemes = get(x, &["server", "authentication", "securitySchemes"])?.as_object()?;
    schemes.iter().find_map(|(name, tyk)| {
        let openapi = get(def, &["components", "securitySchemes", name.as_str()])?;
        if !first.contains_key(name) || s(openapi, &["type"]) != Some("apiKey") {
            return None;
        }
        let header = (s(openapi, &["in"]) == Some("header"))
            .then(|| s(openapi, &["name"]))
            .flatten()
            .filter(|h| !h.is_empty());
        Some((b(tyk, &["enabled"]), header))
    })
}

/// The version a request without version information gets (Tyk's
/// `GetSingleOrDefaultVersion`): the only one, else `default_version` on a
/// versioned API, else one named `Default`, `default` or `""`.
fn classic_default_version(def: &Value) -> Option<&Value> {
    let versions = get(def, &["version_data", "versions"]).and_then(Value::as_object)?;
    if versions.len() == 1 {
        return versions.values().next();
    }
    let default = s(def, &["version_data", "default_version"]).unwrap_or("");
    if !b(def, &["version_data", "not_versioned"]) && !default.is_empty() {
        return versions.get(default);
    }
    ["Default", "default", ""]
        .iter()
        .find_map(|name| versions.get(*name))
}

fn classic_hooks(v: &Value, key: &str) -> Vec<Hook> {
    get(v, &["custom_middleware", key])
        .and_then(Value::as_array)
        .map(|hooks| {
            hooks
                .iter()
                .map(|h| Hook {
                    name: s(h, &["name"]).unwrap_or("").to_string(),
                    raw_body_only: b(h, &["raw_body_only"]),
                    disabled: b(h, &["disabled"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn oas_hooks(mw: &Value, plural: &str, singular: &str) -> Vec<Hook> {
    let list = mw
        .get(plural)
        .or_else(|| get(mw, &[singular, "plugins"]))
        .and_then(Value::as_array);
    list.map(|hooks| {
        hooks
            .iter()
            .map(|h| Hook {
                name: s(h, &["functionName"]).unwrap_or("").to_string(),
                raw_body_only: b(h, &["rawBodyOnly"]),
                disabled: !b(h, &["enabled"]),
            })
            .collect()
    })
    .unwrap_or_default()
}

impl Api {
    /// Loads a definition file: Tyk OAS when it has `x-tyk-api-gateway`,
    /// classic otherwise.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Api, ApiDefError> {
        let path = path.as_ref();
        let file_err = |reason: String| ApiDefError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let def: Value = serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
        if def.get("x-tyk-api-gateway").is_some() {
            Api::from_oas_json(&def)
        } else {
            Api::from_classic_json(&def)
        }
    }

    /// Loads a classic (Tyk "apidef") JSON definition: `api_id`, `org_id`,
    /// `name`, `proxy.listen_path`/`strip_listen_path`, `use_keyless`,
    /// `custom_plugin_auth_enabled`/`enable_coprocess_auth`, `auth_configs`
    /// (`coprocess`, `authToken`; the deprecated `auth`), `use_standard_auth`,
    /// `base_identity_provided_by`,
    /// `custom_middleware` (hooks, `auth_check`, `id_extractor`),
    /// `config_data`(`_disabled`), `custom_middleware_bundle`,
    /// `event_handlers` (`cp_dynamic_handler`), of every version's
    /// `extended_paths`: `ignored`, `url_rewrites`, `method_transforms`, and
    /// of the version a request without version information gets (the only
    /// one, else the default): `global_response_headers`(`_remove`,
    /// `_disabled`).
    pub fn from_classic_json(def: &Value) -> Result<Api, ApiDefError> {
        let api_id = s(def, &["api_id"]).ok_or(ApiDefError::Missing("api_id"))?;
        let custom = b(def, &["custom_plugin_auth_enabled"]) || b(def, &["enable_coprocess_auth"]);
        let keyless = b(def, &["use_keyless"]);
        let auth_check = get(def, &["custom_middleware", "auth_check"]);
        let auth = if keyless {
            Auth::Keyless
        } else if custom && !auth_check.is_some_and(|a| b(a, &["disabled"])) {
            let hook = Hook {
                name: auth_check
                    .and_then(|a| s(a, &["name"]))
                    .unwrap_or("")
                    .to_string(),
                raw_body_only: auth_check.is_some_and(|a| b(a, &["raw_body_only"])),
                disabled: false,
            };
            let ex = get(def, &["custom_middleware", "id_extractor"]);
            let id_extractor = match ex {
                Some(ex)
                    if !b(ex, &["disabled"])
                        && s(ex, &["extract_from"]).is_some_and(|f| !f.is_empty()) =>
                {
                    let cfg = ex.get("extractor_config").unwrap_or(&Value::Null);
                    Some(extractor(
                        s(ex, &["extract_from"]).unwrap_or(""),
                        s(ex, &["extract_with"]).unwrap_or(""),
                        s(cfg, &["header_name"]),
                        s(cfg, &["param_name"]),
                        s(cfg, &["regex_expression"]),
                        get(cfg, &["regex_match_index"])
                            .and_then(Value::as_u64)
                            .unwrap_or(0) as usize,
                    )?)
                }
                _ => None,
            };
            Auth::Custom { hook, id_extractor }
        } else {
            Auth::Token
        };
        let mut api = Api::base(api_id, auth);
        if let Some(org) = s(def, &["org_id"]) {
            api.org_id = org.to_string();
        }
        if let Some(name) = s(def, &["name"]) {
            api.name = name.to_string();
        }
        if let Some(lp) = s(def, &["proxy", "listen_path"]) {
            api.listen_path = lp.to_string();
        }
        api.strip_listen_path = b(def, &["proxy", "strip_listen_path"]);
        let token_header = classic_token_header(def).unwrap_or("Authorization");
        if custom {
            if let Some(h) =
                s(def, &["auth_configs", "coprocess", "auth_header_name"]).filter(|h| !h.is_empty())
            {
                api.auth_header = h.to_string();
            }
            api.token_header = Some(token_header.to_string());
        } else {
            api.auth_header = token_header.to_string();
        }
        api.standard_auth = b(def, &["use_standard_auth"]);
        api.base_identity =
            BaseIdentity::from_name(s(def, &["base_identity_provided_by"]).unwrap_or(""));
        if let Some(version) =
            classic_default_version(def).filter(|v| !b(v, &["global_response_headers_disabled"]))
        {
            api.response_headers_remove = version
                .get("global_response_headers_remove")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            if let Some(headers) = version
                .get("global_response_headers")
                .and_then(Value::as_object)
            {
                for (name, value) in headers {
                    let value = value.as_str().ok_or_else(|| {
                        invalid("global_response_headers", "values must be strings")
                    })?;
                    api.response_headers.push((name.clone(), value.to_string()));
                }
            }
        }
        api.pre = classic_hooks(def, "pre");
        api.post_key_auth = classic_hooks(def, "post_key_auth");
        api.post = classic_hooks(def, "post");
        api.response = classic_hooks(def, "response");
        api.config_data = def.get("config_data").cloned();
        api.config_data_disabled = b(def, &["config_data_disabled"]);
        if !b(def, &["custom_middleware_bundle_disabled"]) {
            api.bundle = s(def, &["custom_middleware_bundle"])
                .filter(|b| !b.is_empty())
                .map(str::to_string);
        }
        if let Some(events) = get(def, &["event_handlers", "events"]).and_then(Value::as_object) {
            for (event, handlers) in events {
                for h in handlers.as_array().into_iter().flatten() {
                    if s(h, &["handler_name"]) == Some("cp_dynamic_handler") {
                        let name = s(h, &["handler_meta", "name"])
                            .ok_or_else(|| invalid("handler_meta.name", "must be a string"))?;
                        api.event_handlers.push((event.clone(), name.to_string()));
                    }
                }
            }
        }
        if let Some(versions) = get(def, &["version_data", "versions"]).and_then(Value::as_object) {
            for version in versions.values() {
                let Some(ep) = version.get("extended_paths") else {
                    continue;
                };
                for rule in ep
                    .get("ignored")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let path = s(rule, &["path"]).unwrap_or("").to_string();
                    let methods: Vec<&String> = rule
                        .get("method_actions")
                        .and_then(Value::as_object)
                        .map(|m| m.keys().collect())
                        .unwrap_or_default();
                    let ignore_case = b(rule, &["ignore_case"]);
                    if methods.is_empty() {
                        api.ignored.push(PathRule {
                            path,
                            method: None,
                            ignore_case,
                            target: String::new(),
                        });
                    } else {
                        for m in methods {
                            api.ignored.push(PathRule {
                                path: path.clone(),
                                method: Some(m.clone()),
                                ignore_case,
                                target: String::new(),
                            });
                        }
                    }
                }
                for rule in ep
                    .get("url_rewrites")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    api.url_rewrites.push(PathRule {
                        path: s(rule, &["path"]).unwrap_or("").to_string(),
                        method: s(rule, &["method"]).map(str::to_string),
                        ignore_case: false,
                        target: s(rule, &["rewrite_to"]).unwrap_or("").to_string(),
                    });
                }
                for rule in ep
                    .get("method_transforms")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    api.method_transforms.push(PathRule {
                        path: s(rule, &["path"]).unwrap_or("").to_string(),
                        method: s(rule, &["method"]).map(str::to_string),
                        ignore_case: false,
                        target: s(rule, &["to_method"]).unwrap_or("").to_string(),
                    });
                }
            }
        }
        Ok(api)
    }

    /// Loads a Tyk OAS definition (`x-tyk-api-gateway`): `info.id/orgId/name`,
    /// `server.listenPath`, `server.authentication` (custom plugin auth with
    /// `idExtractor`, token auth — an `apiKey` scheme named by the first
    /// `security` requirement, read from its header — or both, with
    /// `baseIdentityProvider`), `middleware.global` (`pluginConfig`
    /// bundle and data, `prePlugins`, `postAuthenticationPlugins`,
    /// `postPlugins`, `responsePlugins`, also the 5.0–5.2 singular wrappers).
    pub fn from_oas_json(def: &Value) -> Result<Api, ApiDefError> {
        let x = def
            .get("x-tyk-api-gateway")
            .ok_or(ApiDefError::Missing("x-tyk-api-gateway"))?;
        let api_id = s(x, &["info", "id"]).ok_or(ApiDefError::Missing("info.id"))?;
        let authn = get(x, &["server", "authentication"]);
        let auth_enabled = authn.is_some_and(|a| b(a, &["enabled"]));
        let custom = authn.and_then(|a| a.get("custom"));
        let custom_cfg = custom.and_then(|c| c.get("config"));
        let auth = if !auth_enabled {
            Auth::Keyless
        } else if custom.is_some_and(|c| b(c, &["enabled"]))
            && custom_cfg.is_some_and(|c| b(c, &["enabled"]))
        {
            let cfg = custom_cfg.unwrap_or(&Value::Null);
            let hook = Hook {
                name: s(cfg, &["functionName"]).unwrap_or("").to_string(),
                raw_body_only: b(cfg, &["rawBodyOnly"]),
                disabled: false,
            };
            let id_extractor = match cfg.get("idExtractor") {
                Some(ex) if b(ex, &["enabled"]) => {
                    let c = ex.get("config").unwrap_or(&Value::Null);
                    Some(extractor(
                        s(ex, &["source"]).unwrap_or(""),
                        s(ex, &["with"]).unwrap_or(""),
                        s(c, &["headerName"]),
                        s(c, &["formParamName"]),
                        s(c, &["regexp"]),
                        get(c, &["regexpMatchIndex"])
                            .and_then(Value::as_u64)
                            .unwrap_or(0) as usize,
                    )?)
                }
                _ => None,
            };
            Auth::Custom { hook, id_extractor }
        } else {
            Auth::Token
        };
        let mut api = Api::base(api_id, auth);
        if let Some(org) = s(x, &["info", "orgId"]) {
            api.org_id = org.to_string();
        }
        if let Some(name) = s(x, &["info", "name"]) {
            api.name = name.to_string();
        }
        if let Some(lp) = s(x, &["server", "listenPath", "value"]) {
            api.listen_path = lp.to_string();
        }
        api.strip_listen_path = b(x, &["server", "listenPath", "strip"]);
        let token = oas_token_scheme(def, x);
        let token_header = token.and_then(|(_, h)| h).unwrap_or("Authorization");
        if matches!(api.auth, Auth::Custom { .. }) {
            if let Some(h) = custom
                .and_then(|c| s(c, &["header", "name"]))
                .filter(|h| !h.is_empty())
            {
                api.auth_header = h.to_string();
            }
            api.token_header = Some(token_header.to_string());
            api.standard_auth = token.is_some_and(|(enabled, _)| enabled);
        } else {
            api.auth_header = token_header.to_string();
        }
        api.base_identity = BaseIdentity::from_name(
            s(x, &["server", "authentication", "baseIdentityProvider"]).unwrap_or(""),
        );
        if let Some(mw) = get(x, &["middleware", "global"]) {
            let pc = mw.get("pluginConfig").unwrap_or(&Value::Null);
            if b(pc, &["bundle", "enabled"]) {
                api.bundle = s(pc, &["bundle", "path"]).map(str::to_string);
            }
            if let Some(data) = pc.get("data") {
                api.config_data = data.get("value").cloned();
                api.config_data_disabled = !b(data, &["enabled"]);
            }
            api.pre = oas_hooks(mw, "prePlugins", "prePlugin");
            api.post_key_auth =
                oas_hooks(mw, "postAuthenticationPlugins", "postAuthenticationPlugin");
            api.post = oas_hooks(mw, "postPlugins", "postPlugin");
            api.response = oas_hooks(mw, "responsePlugins", "responsePlugin");
        }
        Ok(api)
    }
}
