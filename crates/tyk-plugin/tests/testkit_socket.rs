//! The gateway emulator against a plugin served over a real TCP socket.
#![cfg(feature = "testkit")]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prost::Message;
use tonic::{Request, Response, Status};
use tyk_plugin::coprocess::pb::dispatcher_server::{
    Dispatcher as GrpcDispatcher, DispatcherServer,
};
use tyk_plugin::coprocess::{Event, EventReply, Object};
use tyk_plugin::testkit::{Api, Gateway, GatewayError};
use tyk_plugin::{BoxFuture, Dispatcher};

/// Sets a header in Pre hooks, rejects with 403 when asked; keeps events.
#[derive(Default)]
struct Plugin {
    events: Mutex<Vec<String>>,
}

impl Dispatcher for Plugin {
    fn dispatch(&self, object: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        let mut o = Object::decode(object).unwrap();
        let r = o.request.as_mut().unwrap();
        r.set_headers
            .insert("Testheader".into(), "testvalue".into());
        if r.params.contains_key("deny") {
            r.return_overrides.as_mut().unwrap().response_code = 403;
        }
        Box::pin(std::future::ready(Ok(Bytes::from(o.encode_to_vec()))))
    }
    fn dispatch_event(&self, payload: String) -> BoxFuture<Result<(), Status>> {
        self.events.lock().unwrap().push(payload);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The generated tonic service around a byte-level Dispatcher.
struct Served(Arc<Plugin>);

#[tonic::async_trait]
impl GrpcDispatcher for Served {
    async fn dispatch(&self, request: Request<Object>) -> Result<Response<Object>, Status> {
        let bytes = Bytes::from(request.into_inner().encode_to_vec());
        let reply = self.0.dispatch(bytes).await?;
        Ok(Response::new(
            Object::decode(reply).map_err(|e| Status::internal(e.to_string()))?,
        ))
    }
    async fn dispatch_event(
        &self,
        request: Request<Event>,
    ) -> Result<Response<EventReply>, Status> {
        self.0.dispatch_event(request.into_inner().payload).await?;
        Ok(Response::new(EventReply {}))
    }
}

#[tokio::test]
async fn same_api_over_tcp() {
    let plugin = Arc::new(Plugin::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DispatcherServer::new(Served(plugin.clone())))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let api = Api::keyless("1")
        .listen_path("/grpc-test-api/")
        .pre("testPreHook1")
        .event_handler("AuthFailure", "h");
    for target in [format!("tcp://{addr}"), addr.to_string()] {
        let gw = Gateway::connect(&target).await.unwrap().api(api.clone());
        let res = gw.get("/grpc-test-api/").await.unwrap();
        assert_eq!(res.status(), 200);
        let echoed: serde_json::Value = res.json().unwrap();
        assert_eq!(echoed["Headers"]["Testheader"], "testvalue");
        let res = gw.get("/grpc-test-api/?deny=1").await.unwrap();
        assert_eq!(res.status(), 403);
        assert_eq!(res.events()[0].deliveries[0].result, Ok(()));
    }
    let payloads = plugin.events.lock().unwrap().clone();
    assert_eq!(payloads.len(), 2);
    assert!(payloads[0].contains("\"handler_name\":\"h\""));

    assert!(matches!(
        Gateway::connect("unix://relative.sock").await.unwrap_err(),
        GatewayError::Target(_)
    ));
    server.abort();
    let port = addr.port();
    let _ = server.await;
    // Nothing listens any more: connecting fails clearly.
    let err = Gateway::connect(&format!("127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Connect { .. }), "{err}");
}
