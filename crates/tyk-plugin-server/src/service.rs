//! The `coprocess.Dispatcher` gRPC service.
//!
//! Written by hand rather than generated so that `Dispatch` moves the Object
//! as bytes: an Object nobody changes is returned exactly as received,
//! unknown fields included, with no decode, encode or copy on the way (the
//! gRPC framing is in the `unary` module).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use prost::Message;
use tonic::Status;
use tonic::server::NamedService;
use tyk_coprocess::{Event, EventReply};

use tyk_plugin::{BoxFuture, Dispatcher};

use crate::reqlog::RequestLog;
use crate::unary;

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

impl Inner {
    async fn dispatch(&self, object: Bytes) -> Result<Bytes, Status> {
        if let Err(e) = self.log.dispatch(&object).await {
            tracing::warn!(error = %e, bytes = object.len(), "rejected malformed Object");
            return Err(Status::invalid_argument(format!(
                "malformed coprocess.Object: {e}"
            )));
        }
        self.handler.dispatch(object).await
    }

    async fn dispatch_event(&self, event: Bytes) -> Result<Bytes, Status> {
        let event = match Event::decode(event) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "rejected malformed Event");
                return Err(Status::invalid_argument(format!(
                    "malformed coprocess.Event: {e}"
                )));
            }
        };
        self.log.event(&event.payload);
        self.handler.dispatch_event(event.payload).await?;
        Ok(Bytes::from(EventReply {}.encode_to_vec()))
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
        let inner = self.inner.clone();
        let event = match req.uri().path() {
            paths::DISPATCH => false,
            paths::DISPATCH_EVENT => true,
            _ => {
                return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
            }
        };
        Box::pin(async move {
            let reply = match unary::read_message(req, inner.max_recv).await {
                Ok(msg) if event => inner.dispatch_event(msg).await,
                Ok(msg) => inner.dispatch(msg).await,
                Err(status) => Err(status),
            };
            Ok(match reply {
                Ok(msg) => unary::reply(msg, inner.max_send),
                Err(status) => status.into_http(),
            })
        })
    }
}
