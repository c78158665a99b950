//! What a plugin server runs: something that turns an encoded Object into an
//! encoded reply, and accepts event payloads.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tonic::Status;

/// Boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The contract between the gRPC service and plugin logic.
///
/// The server has already validated `object` (it is a well-formed
/// `coprocess.Object`) and logged it. Implementations return the encoded
/// reply Object; returning `object` itself echoes it byte for byte.
pub trait Dispatcher: Send + Sync + 'static {
    /// Handles one `Dispatch` call.
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, Status>>;

    /// Handles one `DispatchEvent` payload (a JSON document from the gateway).
    /// The gateway ignores the reply; the default does nothing.
    fn dispatch_event(&self, payload: String) -> BoxFuture<Result<(), Status>> {
        let _ = payload;
        Box::pin(async { Ok(()) })
    }
}

/// Returns every Object unchanged: the reference server's behaviour.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Dispatcher for Echo {
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        Box::pin(std::future::ready(Ok(object)))
    }
}

impl<D: Dispatcher + ?Sized> Dispatcher for std::sync::Arc<D> {
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        (**self).dispatch(object)
    }
    fn dispatch_event(&self, payload: String) -> BoxFuture<Result<(), Status>> {
        (**self).dispatch_event(payload)
    }
}
