//! A raw-bytes `coprocess.Dispatcher` client over TCP or a Unix socket:
//! sends encoded Objects and Events exactly as given and returns the reply
//! bytes, so nothing is lost or re-encoded on the way.

use bytes::Bytes;
use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::Event;
use crate::codec::RawCodec;

/// `Dispatch`'s path.
pub const DISPATCH_PATH: &str = "/coprocess.Dispatcher/Dispatch";
/// `DispatchEvent`'s path.
pub const DISPATCH_EVENT_PATH: &str = "/coprocess.Dispatcher/DispatchEvent";

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target address is not usable.
    #[error("invalid target {0:?}: use host:port, tcp://host:port or unix:///path.sock")]
    Target(String),
    /// No server answered.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Where.
        target: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The server answered with a gRPC error.
    #[error("the server answered {}: {}", .0.code(), .0.message())]
    Status(#[from] Status),
}

/// Connects to a Dispatcher at `target`: `host:port`, `tcp://host:port` or
/// `unix:///absolute/path.sock` (the forms Tyk's `coprocess_grpc_server`
/// takes).
pub async fn connect(target: &str) -> Result<Channel, ClientError> {
    let bad = || ClientError::Target(target.to_string());
    let connect_err = |source| ClientError::Connect {
        target: target.to_string(),
        source,
    };
    if let Some(path) = target.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(bad());
        }
        let path = path.to_string();
        // The authority is not used to connect; "localhost" is what grpc-go
        // sends for unix targets.
        return Endpoint::try_from("http://localhost")
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
            .map_err(connect_err);
    }
    let hostport = target.strip_prefix("tcp://").unwrap_or(target);
    if hostport.contains("://") || !hostport.contains(':') {
        return Err(bad());
    }
    Endpoint::from_shared(format!("http://{hostport}"))
        .map_err(|_| bad())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(connect_err)
}

/// Sends an encoded Object to `Dispatch` and returns the encoded reply (no
/// size limit on either side).
pub async fn dispatch_raw(channel: Channel, object: Bytes) -> Result<Bytes, ClientError> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let reply = grpc
        .unary(
            Request::new(object),
            PathAndQuery::from_static(DISPATCH_PATH),
            RawCodec,
        )
        .await?;
    Ok(reply.into_inner())
}

/// Sends an event payload to `DispatchEvent`.
pub async fn dispatch_event(channel: Channel, payload: String) -> Result<(), ClientError> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let body = Bytes::from(Event { payload }.encode_to_vec());
    grpc.unary(
        Request::new(body),
        PathAndQuery::from_static(DISPATCH_EVENT_PATH),
        RawCodec,
    )
    .await?;
    Ok(())
}
