//! Write Tyk API Gateway gRPC plugins as plain async Rust functions.
//!
//! ```
//! use http::StatusCode;
//! use tyk_plugin::{AuthRequest, Request, Router, Session};
//!
//! async fn add_header(mut req: Request) -> Request {
//!     req.set_header("X-Plugin", "tyk-plugin");
//!     req
//! }
//!
//! async fn check_key(req: AuthRequest) -> AuthRequest {
//!     match req.header("Authorization") {
//!         Some("secret") => {
//!             let session = Session::builder("secret").build().expect("non-empty token");
//!             req.allow(session)
//!         }
//!         _ => req.deny(StatusCode::FORBIDDEN, "invalid key"),
//!     }
//! }
//!
//! let router = Router::new().pre("AddHeader", add_header).auth("CheckKey", check_key);
//! # let _ = router;
//! ```
//!
//! Serve a router with `tyk-plugin-server` (see its `run` function), or test
//! it without a gateway with the `testkit` feature's emulator.

pub mod config;
mod context;
pub mod dispatch;
pub mod error;
pub mod event;
mod hook;
mod router;
pub mod session;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{ConfigCache, ConfigError, InvalidConfig};
pub use context::{AuthRequest, DirectResponse, EditError, Request, RequestView, Response};
pub use dispatch::{BoxFuture, Dispatcher, Echo};
pub use error::{ErrorKind, PluginError};
pub use event::{EventError, EventKind, EventMeta, GatewayEvent};
pub use hook::{EventHook, Hook, IntoEventResult, IntoHookResult};
pub use router::Router;
pub use session::{Session, SessionBuilder, SessionError, SessionView};
pub use tyk_coprocess as coprocess;
pub use tyk_coprocess::HookType;
