//! Handlers: plain async functions, or types implementing [`Hook`].

use std::future::Future;

use crate::context::{AuthRequest, Request, Response};
use crate::dispatch::BoxFuture;
use crate::error::PluginError;
use crate::event::GatewayEvent;

/// A handler for one kind of hook call: it receives the call's context and
/// returns it, edited.
///
/// Implemented for every `async fn(C) -> C` and `async fn(C) -> Result<C, E>`
/// (with `E: Into<PluginError>`), and for your own types, e.g. a handler
/// holding a database pool.
pub trait Hook<C>: Send + Sync + 'static {
    /// Handles one call.
    fn call(&self, ctx: C) -> BoxFuture<Result<C, PluginError>>;
}

/// What a handler function may return for context `C`.
pub trait IntoHookResult<C> {
    /// Converts into the router's result type.
    fn into_hook_result(self) -> Result<C, PluginError>;
}

macro_rules! hook_results {
    ($($c:ty),*) => {$(
        impl IntoHookResult<$c> for $c {
            fn into_hook_result(self) -> Result<$c, PluginError> {
                Ok(self)
            }
        }
        impl<E: Into<PluginError>> IntoHookResult<$c> for Result<$c, E> {
            fn into_hook_result(self) -> Result<$c, PluginError> {
                self.map_err(Into::into)
            }
        }
    )*};
}
hook_results!(Request, AuthRequest, Response);

impl<C, F, Fut, R> Hook<C> for F
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoHookResult<C>,
{
    fn call(&self, ctx: C) -> BoxFuture<Result<C, PluginError>> {
        let fut = self(ctx);
        Box::pin(async move { fut.await.into_hook_result() })
    }
}

/// A handler for gateway events (`DispatchEvent`): implemented for every
/// `async fn(GatewayEvent)` returning `()` or `Result<(), E>`, and for your
/// own types.
pub trait EventHook: Send + Sync + 'static {
    /// Handles one event.
    fn call(&self, event: GatewayEvent) -> BoxFuture<Result<(), PluginError>>;
}

/// What an event handler function may return.
pub trait IntoEventResult {
    /// Converts into the router's result type.
    fn into_event_result(self) -> Result<(), PluginError>;
}

impl IntoEventResult for () {
    fn into_event_result(self) -> Result<(), PluginError> {
        Ok(())
    }
}

impl<E: Into<PluginError>> IntoEventResult for Result<(), E> {
    fn into_event_result(self) -> Result<(), PluginError> {
        self.map_err(Into::into)
    }
}

impl<F, Fut, R> EventHook for F
where
    F: Fn(GatewayEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoEventResult,
{
    fn call(&self, event: GatewayEvent) -> BoxFuture<Result<(), PluginError>> {
        let fut = self(event);
        Box::pin(async move { fut.await.into_event_result() })
    }
}
