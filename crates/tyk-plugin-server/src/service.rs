//! The `coprocess.Dispatcher` gRPC service.
//!
//! Written by hand rather than generated so that `Dispatch` moves the Object
//! as bytes ([`RawCodec`]): an Object nobody changes is returned exactly as
//! received, unknown fields included, with no decode or encode on the way.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use prost::Message;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tyk_coprocess::codec::RawCodec;
use tyk_coprocess::{Event, EventReply};

use tyk_plugin::{BoxFuture, Dispatcher};

use crate::reqlog::RequestLog;

/// The Dispatcher service, ready to be added to a tonic router.
pub struct DispatcherService {
    inner: Arc<Inner>,
}

impl Clone for DispatcherService {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner {
    handler: Box<dyn Dispatcher>,
    log: RequestLog,
    max_recv: usize,
    max_send: usize,
}

impl DispatcherService {
    /// A service running `handler` behind `log`, with message size limits.
    pub fn new(
        handler: impl Dispatcher,
        log: RequestLog,
        max_recv: usize,
        max_send: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                handler: Box::new(handler),
                log,
                max_recv,
                max_send,
            }),
        }
    }

    fn grpc(&self) -> Grpc<RawCodec> {
        // No compression either way: the gateway sends none and advertises
        // nothing we could rely on.
        Grpc::new(RawCodec)
            .apply_max_message_size_config(Some(self.inner.max_recv), Some(self.inner.max_send))
    }
}

/// gRPC method paths.
pub mod paths {
    pub use tyk_coprocess::client::{
        DISPATCH_EVENT_PATH as DISPATCH_EVENT, DISPATCH_PATH as DISPATCH,
    };
}

impl NamedService for DispatcherService {
    const NAME: &'static str = "coprocess.Dispatcher";
}

struct DispatchMethod(Arc<Inner>);

impl UnaryService<Bytes> for DispatchMethod {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let object = request.into_inner();
            if let Err(e) = inner.log.dispatch(&object) {
                tracing::warn!(error = %e, bytes = object.len(), "rejected malformed Object");
                return Err(Status::invalid_argument(format!(
                    "malformed coprocess.Object: {e}"
                )));
            }
            inner.handler.dispatch(object).await.map(Response::new)
        })
    }
}

struct DispatchEventMethod(Arc<Inner>);

impl UnaryService<Bytes> for DispatchEventMethod {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let event = match Event::decode(request.into_inner()) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "rejected malformed Event");
                    return Err(Status::invalid_argument(format!(
                        "malformed coprocess.Event: {e}"
                    )));
                }
            };
            inner.log.event(&event.payload);
            inner.handler.dispatch_event(event.payload).await?;
            Ok(Response::new(Bytes::from(EventReply {}.encode_to_vec())))
        })
    }
}

impl<B> tower::Service<http::Request<B>> for DispatcherService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut grpc = self.grpc();
        let inner = self.inner.clone();
        match req.uri().path() {
            paths::DISPATCH => {
                Box::pin(async move { Ok(grpc.unary(DispatchMethod(inner), req).await) })
            }
            paths::DISPATCH_EVENT => {
                Box::pin(async move { Ok(grpc.unary(DispatchEventMethod(inner), req).await) })
            }
            _ => Box::pin(async move { Ok(Status::unimplemented("unknown method").into_http()) }),
        }
    }
}
