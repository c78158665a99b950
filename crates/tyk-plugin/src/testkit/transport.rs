//! How the emulator reaches the plugin: in process, or over gRPC.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use tyk_coprocess::Event;
use tyk_coprocess::codec::RawCodec;

use super::GatewayError;
use crate::Dispatcher;

/// The plugin end of the emulator.
#[derive(Clone)]
pub(crate) enum Transport {
    Local(Arc<dyn Dispatcher>),
    Remote(Channel),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Local(_) => f.write_str("Transport::Local"),
            Transport::Remote(_) => f.write_str("Transport::Remote"),
        }
    }
}

const DISPATCH: &str = "/coprocess.Dispatcher/Dispatch";
const DISPATCH_EVENT: &str = "/coprocess.Dispatcher/DispatchEvent";

impl Transport {
    pub(crate) async fn dispatch(&self, object: Bytes) -> Result<Bytes, Status> {
        match self {
            Transport::Local(d) => d.dispatch(object).await,
            Transport::Remote(ch) => {
                let mut grpc = tonic::client::Grpc::new(ch.clone())
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX);
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let reply = grpc
                    .unary(
                        Request::new(object),
                        PathAndQuery::from_static(DISPATCH),
                        RawCodec,
                    )
                    .await?;
                Ok(reply.into_inner())
            }
        }
    }

    pub(crate) async fn dispatch_event(&self, payload: String) -> Result<(), Status> {
        match self {
            Transport::Local(d) => d.dispatch_event(payload).await,
            Transport::Remote(ch) => {
                let mut grpc = tonic::client::Grpc::new(ch.clone());
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let body = Bytes::from(Event { payload }.encode_to_vec());
                grpc.unary(
                    Request::new(body),
                    PathAndQuery::from_static(DISPATCH_EVENT),
                    RawCodec,
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Connects to `host:port`, `tcp://host:port` or `unix:///abs/path.sock`.
    pub(crate) async fn connect(target: &str) -> Result<Transport, GatewayError> {
        let bad = || GatewayError::Target(target.to_string());
        let connect_err = |e: tonic::transport::Error| GatewayError::Connect {
            target: target.to_string(),
            reason: e.to_string(),
        };
        if let Some(path) = target.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad());
            }
            let path = path.to_string();
            let channel = Endpoint::try_from("http://localhost")
                .map_err(|_| bad())?
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(connect_err)?;
            return Ok(Transport::Remote(channel));
        }
        let hostport = target.strip_prefix("tcp://").unwrap_or(target);
        if hostport.contains("://") || !hostport.contains(':') {
            return Err(bad());
        }
        let channel = Endpoint::from_shared(format!("http://{hostport}"))
            .map_err(|_| bad())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(connect_err)?;
        Ok(Transport::Remote(channel))
    }
}
