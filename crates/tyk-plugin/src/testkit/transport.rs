//! How the emulator reaches the plugin: in process, or over gRPC.

use std::sync::Arc;

use bytes::Bytes;
use tonic::Status;
use tonic::transport::Channel;
use tyk_coprocess::client::{self, ClientError};

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

impl Transport {
    pub(crate) async fn dispatch(&self, object: Bytes) -> Result<Bytes, Status> {
        match self {
            Transport::Local(d) => d.dispatch(object).await,
            Transport::Remote(ch) => client::dispatch_raw(ch.clone(), object)
                .await
                .map_err(into_status),
        }
    }

    pub(crate) async fn dispatch_event(&self, payload: String) -> Result<(), Status> {
        match self {
            Transport::Local(d) => d.dispatch_event(payload).await,
            Transport::Remote(ch) => client::dispatch_event(ch.clone(), payload)
                .await
                .map_err(into_status),
        }
    }

    /// Connects to `host:port`, `tcp://host:port` or `unix:///abs/path.sock`.
    pub(crate) async fn connect(target: &str) -> Result<Transport, GatewayError> {
        match client::connect(target).await {
            Ok(channel) => Ok(Transport::Remote(channel)),
            Err(ClientError::Target(t)) => Err(GatewayError::Target(t)),
            Err(e) => Err(GatewayError::Connect {
                target: target.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

fn into_status(e: ClientError) -> Status {
    match e {
        ClientError::Status(s) => s,
        other => Status::unavailable(other.to_string()),
    }
}
