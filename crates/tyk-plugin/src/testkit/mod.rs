//! A gateway emulator for testing plugins without a Tyk gateway.
//!
//! [`Gateway`] plays the part of Tyk around any [`Dispatcher`](crate::Dispatcher)
//! (in process) or a running plugin server (over gRPC, [`Gateway::connect`]):
//! it routes a test HTTP request to an [`Api`], builds the `coprocess.Object`
//! for each configured hook exactly as the gateway does, sends it, applies the
//! reply with the gateway's rules (body, headers, query, url, method, return
//! overrides, custom-auth sessions, Response hooks), calls an upstream (an
//! echo server like Tyk's test one by default) and returns what the client
//! would get, with the Objects exchanged, the request the upstream saw and
//! the events fired.
//!
//! ```no_run
//! # async fn t() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use tyk_plugin::testkit::{Api, Gateway};
//!
//! let gw = Gateway::new(tyk_plugin::Echo)
//!     .api(Api::keyless("api1").listen_path("/a/").pre("MyPre"));
//! let res = gw
//!     .send(http::Request::get("/a/x?q=1").header("X", "1").body(Bytes::new())?)
//!     .await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.sent_objects()[0].hook_name, "MyPre");
//! # Ok(()) }
//! ```
//!
//! Replies a real gateway would crash on (no `request`, no
//! `request.return_overrides`) and invalid Response statuses are reported
//! as [`GatewayError`]s rather than HTTP responses, so tests fail loudly.

mod api;
mod gateway;
pub mod gocompat;
#[cfg(test)]
mod multi_auth_tests;
mod store;
mod transport;

pub use api::{Api, ApiDefError, Auth, BaseIdentity, ExtractFrom, ExtractWith, Hook, IdExtractor};
pub use gateway::{Delivery, Exchange, FiredEvent, Gateway, GatewayError, TestResponse, Upstream};
pub use store::{Clock, Key, Policy};
