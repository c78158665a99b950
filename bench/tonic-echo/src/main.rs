//! `tonic-echo --listen host:port`: the bare ceiling of the stack for the load
//! suite. The generated `coprocess.Dispatcher` service on a default tonic
//! server and a default multi-thread runtime; `Dispatch` returns the decoded
//! `Object` (prost decode + encode), with no logging and no JSON.

use std::net::SocketAddr;
use std::process::ExitCode;

use tonic::{Request, Response, Status};
use tyk_coprocess::pb::dispatcher_server::{Dispatcher, DispatcherServer};
use tyk_coprocess::{Event, EventReply, Object};

/// Same limit as tyk-plugin-server's default, so large-body runs compare.
const MAX_MESSAGE: usize = 100 * 1024 * 1024;

struct Echo;

#[tonic::async_trait]
impl Dispatcher for Echo {
    async fn dispatch(&self, request: Request<Object>) -> Result<Response<Object>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    async fn dispatch_event(&self, _: Request<Event>) -> Result<Response<EventReply>, Status> {
        Ok(Response::new(EventReply::default()))
    }
}

fn parse_listen() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = String::from("127.0.0.1:50052");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" | "-l" => listen = args.next().ok_or("--listen needs host:port")?,
            "-h" | "--help" => {
                return Err(
                    "usage: tonic-echo [--listen host:port] (default 127.0.0.1:50052)".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let listen = listen.strip_prefix("tcp://").unwrap_or(&listen);
    listen
        .parse()
        .map_err(|e| format!("bad --listen {listen:?}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match parse_listen() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tonic-echo: {e}");
            return ExitCode::from(2);
        }
    };
    let service = DispatcherServer::new(Echo)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    eprintln!("tonic-echo: listening on {addr}");
    match tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_shutdown(addr, shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tonic-echo: {e}");
            ExitCode::FAILURE
        }
    }
}
