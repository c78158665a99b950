//! Routing hook calls to handlers by hook type, hook name and API.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use prost::Message;
use tonic::Status;
use tyk_coprocess::json::hook_type_label;
use tyk_coprocess::unknown::{self, UnknownFields};
use tyk_coprocess::wire::scan_summary;
use tyk_coprocess::{HookType, Object};

use crate::context::{AuthRequest, Ctx, Request, Response, Shared, no_override};
use crate::dispatch::{BoxFuture, Dispatcher};
use crate::error::PluginError;
use crate::event::GatewayEvent;
use crate::hook::{EventHook, Hook};

#[derive(Clone)]
enum Route {
    Request(Arc<dyn Hook<Request>>),
    Auth(Arc<dyn Hook<AuthRequest>>),
    Response(Arc<dyn Hook<Response>>),
}

impl Route {
    async fn call(&self, ctx: Ctx) -> Result<Ctx, PluginError> {
        match self {
            Route::Request(h) => h.call(Request { ctx }).await.map(|r| r.ctx),
            Route::Auth(h) => h.call(AuthRequest { ctx }).await.map(|r| r.ctx),
            Route::Response(h) => h.call(Response { ctx }).await.map(|r| r.ctx),
        }
    }
}

/// Warnings already logged, by (hook type, hook name, what): each is logged
/// once.
#[derive(Default)]
struct Warnings(Mutex<HashSet<(i32, String, &'static str)>>);

impl Warnings {
    /// True the first time this warning is seen.
    fn first(&self, hook_type: i32, name: &str, what: &'static str) -> bool {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        w.insert((hook_type, name.to_string(), what))
    }
}

/// Routes for one (hook type, hook name): API-specific ones first.
#[derive(Default, Clone)]
struct Slot {
    any_api: Option<Route>,
    by_api: HashMap<String, Route>,
}

/// Plugin handlers, routed by hook type, hook name and (optionally) API ID.
///
/// ```
/// use tyk_plugin::{Request, Router};
///
/// async fn add_header(mut req: Request) -> Request {
///     req.set_header("X-From-Plugin", "1");
///     req
/// }
///
/// let router = Router::new()
///     .pre("AddHeader", add_header)
///     .api("petstore", |r| r.pre("AddHeader", |req: Request| async move { req }));
/// ```
///
/// A call is served by the handler registered for its API
/// (`spec["APIID"]`) if there is one, else by the handler registered for any
/// API. A call nobody handles gets its Object back unchanged (a warning is
/// logged once per hook name): that is what the gateway expects.
///
/// Registering the same hook type, name and API twice is a programming
/// error and panics.
#[derive(Clone, Default)]
pub struct Router {
    routes: HashMap<i32, HashMap<String, Slot>>,
    scope: Option<String>,
    events: HashMap<String, Arc<dyn EventHook>>,
    any_event: Option<Arc<dyn EventHook>>,
    shared: Arc<Shared>,
    warned: Arc<Warnings>,
}

impl Router {
    /// An empty router: every call is echoed.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, hook: HookType, name: String, route: Route) -> Self {
        let slot = self
            .routes
            .entry(hook as i32)
            .or_default()
            .entry(name.clone())
            .or_default();
        let place = match &self.scope {
            Some(api) => slot.by_api.insert(api.clone(), route).is_some(),
            None => slot.any_api.replace(route).is_some(),
        };
        if place {
            let api = self
                .scope
                .as_deref()
                .map_or("any API".to_string(), |a| format!("API {a:?}"));
            panic!(
                "tyk_plugin::Router: a {} hook named {name:?} for {api} is registered twice",
                hook.as_str_name()
            );
        }
        self
    }

    /// Handles Pre hooks named `name` (before authentication).
    pub fn pre(self, name: impl Into<String>, handler: impl Hook<Request>) -> Self {
        self.add(
            HookType::Pre,
            name.into(),
            Route::Request(Arc::new(handler)),
        )
    }

    /// Handles PostKeyAuth hooks named `name` (after authentication).
    pub fn post_key_auth(self, name: impl Into<String>, handler: impl Hook<Request>) -> Self {
        self.add(
            HookType::PostKeyAuth,
            name.into(),
            Route::Request(Arc::new(handler)),
        )
    }

    /// Handles Post hooks named `name` (last before the upstream).
    pub fn post(self, name: impl Into<String>, handler: impl Hook<Request>) -> Self {
        self.add(
            HookType::Post,
            name.into(),
            Route::Request(Arc::new(handler)),
        )
    }

    /// Handles custom authentication (CustomKeyCheck) named `name`.
    pub fn auth(self, name: impl Into<String>, handler: impl Hook<AuthRequest>) -> Self {
        self.add(
            HookType::CustomKeyCheck,
            name.into(),
            Route::Auth(Arc::new(handler)),
        )
    }

    /// Handles Response hooks named `name`.
    pub fn response(self, name: impl Into<String>, handler: impl Hook<Response>) -> Self {
        self.add(
            HookType::Response,
            name.into(),
            Route::Response(Arc::new(handler)),
        )
    }

    /// Handles events sent to the event handler named `handler_name` (the
    /// `handler_meta.name` of a `cp_dynamic_handler` in the API definition).
    ///
    /// # Panics
    ///
    /// When `handler_name` is registered twice.
    pub fn event(mut self, handler_name: impl Into<String>, handler: impl EventHook) -> Self {
        let name = handler_name.into();
        if self
            .events
            .insert(name.clone(), Arc::new(handler))
            .is_some()
        {
            panic!("tyk_plugin::Router: an event handler named {name:?} is registered twice");
        }
        self
    }

    /// Handles events whose handler name has no handler of its own.
    ///
    /// # Panics
    ///
    /// When called twice.
    pub fn any_event(mut self, handler: impl EventHook) -> Self {
        assert!(
            self.any_event.is_none(),
            "tyk_plugin::Router: any_event is registered twice"
        );
        self.any_event = Some(Arc::new(handler));
        self
    }

    /// Registers the routes `f` adds for API `api_id` only; they take
    /// precedence over routes for any API.
    ///
    /// # Panics
    ///
    /// When nested inside another `api` scope.
    pub fn api(mut self, api_id: impl Into<String>, f: impl FnOnce(Router) -> Router) -> Self {
        assert!(
            self.scope.is_none(),
            "tyk_plugin::Router::api scopes cannot be nested"
        );
        let scoped = f(Router {
            scope: Some(api_id.into()),
            shared: self.shared.clone(),
            warned: self.warned.clone(),
            ..Router::default()
        });
        for (hook, names) in scoped.routes {
            for (name, slot) in names {
                for (api, route) in slot.by_api {
                    self.scope = Some(api);
                    let hook = HookType::try_from(hook).unwrap_or(HookType::Unknown);
                    self = self.add(hook, name.clone(), route);
                }
            }
        }
        self.scope = None;
        self
    }

    fn lookup(&self, hook_type: i32, name: &str, api_id: &str) -> Option<&Route> {
        let slot = self.routes.get(&hook_type)?.get(name)?;
        slot.by_api.get(api_id).or(slot.any_api.as_ref())
    }

    /// Every registered route as (hook type, hook name, API ID or `None`
    /// for any API), sorted.
    pub fn routes(&self) -> Vec<(HookType, String, Option<String>)> {
        let mut out = Vec::new();
        for (hook, names) in &self.routes {
            let hook = HookType::try_from(*hook).unwrap_or(HookType::Unknown);
            for (name, slot) in names {
                if slot.any_api.is_some() {
                    out.push((hook, name.clone(), None));
                }
                out.extend(
                    slot.by_api
                        .keys()
                        .map(|api| (hook, name.clone(), Some(api.clone()))),
                );
            }
        }
        out.sort();
        out
    }
}

impl Dispatcher for Router {
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        let summary = match scan_summary(&object) {
            Ok(s) => s,
            Err(e) => {
                return Box::pin(std::future::ready(Err(Status::invalid_argument(
                    e.to_string(),
                ))));
            }
        };
        let Some(route) = self
            .lookup(summary.hook_type, summary.hook_name, summary.api_id)
            .cloned()
        else {
            if self
                .warned
                .first(summary.hook_type, summary.hook_name, "unrouted")
            {
                tracing::warn!(
                    hook_type = %hook_type_label(summary.hook_type),
                    hook_name = summary.hook_name,
                    api_id = summary.api_id,
                    "no handler registered for this hook; returning the Object unchanged (logged once per hook name)"
                );
            }
            return Box::pin(std::future::ready(Ok(object)));
        };
        // Only what the call needs: cloning the Router would copy its
        // routing table on every Dispatch.
        let (shared, warned) = (self.shared.clone(), self.warned.clone());
        Box::pin(async move {
            // Keep what our protos do not know (a newer gateway's fields) to
            // put it back if the handler changes the Object.
            let (decoded, unknown) = unknown::decode(&object).map_err(|e| {
                Status::invalid_argument(format!("malformed coprocess.Object: {e}"))
            })?;
            let (hook_type, name) = (decoded.hook_type, decoded.hook_name.clone());
            let ctx = Ctx::new(decoded, shared);
            let ctx = match AssertUnwindSafe(route.call(ctx)).catch_unwind().await {
                Ok(Ok(ctx)) => ctx,
                Ok(Err(e)) => {
                    tracing::warn!(hook_type = %hook_type_label(hook_type), hook_name = name, error = %e, "handler failed");
                    return Err(e.into());
                }
                Err(panic) => {
                    let msg = panic_message(&*panic);
                    tracing::error!(hook_type = %hook_type_label(hook_type), hook_name = name, panic = msg, "handler panicked");
                    return Err(Status::internal(format!("plugin handler panicked: {msg}")));
                }
            };
            Ok(finish(ctx, &object, unknown.as_ref(), &warned))
        })
    }

    fn dispatch_event(&self, payload: String) -> BoxFuture<Result<(), Status>> {
        let event = match GatewayEvent::parse(&payload) {
            Ok(event) => event,
            Err(e) => {
                // Events are fire-and-forget: the gateway only logs errors.
                tracing::warn!(error = %e, "ignoring an event payload that cannot be decoded");
                return Box::pin(std::future::ready(Ok(())));
            }
        };
        let Some(handler) = self
            .events
            .get(&event.handler_name)
            .or(self.any_event.as_ref())
            .cloned()
        else {
            return Box::pin(std::future::ready(Ok(())));
        };
        Box::pin(async move {
            let name = event.handler_name.clone();
            match AssertUnwindSafe(handler.call(event)).catch_unwind().await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    tracing::warn!(handler_name = name, error = %e, "event handler failed");
                    Err(e.into())
                }
                Err(panic) => {
                    let msg = panic_message(&*panic);
                    tracing::error!(handler_name = name, panic = msg, "event handler panicked");
                    Err(Status::internal(format!("event handler panicked: {msg}")))
                }
            }
        })
    }
}

/// The safety layer: whatever the handler did, the reply must not break the
/// gateway. Untouched Objects go back byte for byte.
fn finish(ctx: Ctx, original: &Bytes, unknown: Option<&UnknownFields>, warned: &Warnings) -> Bytes {
    if !ctx.dirty {
        return original.clone();
    }
    let mut obj = ctx.object;
    let repairs = repair(&mut obj, original);
    for what in repairs {
        if warned.first(obj.hook_type, &obj.hook_name, what) {
            tracing::warn!(
                hook_type = %hook_type_label(obj.hook_type),
                hook_name = obj.hook_name,
                "the handler's reply would break the gateway ({what}); repaired (logged once per hook name)"
            );
        }
    }
    Bytes::from(unknown::encode_with_unknown(&obj, unknown))
}

/// Fixes what the gateway cannot survive, from the original Object; returns
/// what was fixed.
pub(crate) fn repair(obj: &mut Object, original: &[u8]) -> Vec<&'static str> {
    let mut fixed = Vec::new();
    let orig = || Object::decode(original).unwrap_or_default();
    let req = obj.request.get_or_insert_with(|| {
        fixed.push("request missing");
        orig().request.unwrap_or_default()
    });
    let ro = match req.return_overrides.as_mut() {
        Some(ro) => ro,
        None => {
            fixed.push("return_overrides missing");
            req.return_overrides.insert(no_override())
        }
    };
    if ro.response_code > 0 && !(100..=999).contains(&ro.response_code) {
        fixed.push("return_overrides.response_code is not an HTTP status");
        ro.response_code = 500;
        ro.override_error = false;
        ro.response_body = "plugin returned an invalid status".into();
    }
    if req.url.is_empty() {
        let url = orig().request.map(|r| r.url).unwrap_or_default();
        if !url.is_empty() {
            fixed.push("request.url empty");
            req.url = url;
        }
    }
    if req.method.is_empty() {
        let method = orig().request.map(|r| r.method).unwrap_or_default();
        if !method.is_empty() {
            fixed.push("request.method empty");
            req.method = method;
        }
    }
    if obj.hook_type == HookType::Response as i32 {
        match obj.response.as_mut() {
            None => {
                fixed.push("response missing");
                obj.response = orig().response;
            }
            Some(res) if !(100..=999).contains(&res.status_code) => {
                fixed.push("response.status_code is not an HTTP status");
                res.status_code = orig().response.map_or(500, |r| r.status_code);
            }
            Some(_) => {}
        }
    }
    fixed
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}
