//! Write Tyk API Gateway gRPC plugins as plain async Rust functions.
//!
//! (Crate documentation is being written.)

pub mod config;
pub mod dispatch;
pub mod event;
pub mod session;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use dispatch::{BoxFuture, Dispatcher, Echo};
pub use tyk_coprocess as coprocess;
