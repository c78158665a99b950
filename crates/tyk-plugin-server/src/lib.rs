//! The Tyk gRPC plugin server as a library: configuration, listeners, the
//! `coprocess.Dispatcher` service, logging, and a client.

mod cli;
pub mod client;
pub mod config;
pub mod reqlog;
pub mod server;
pub mod service;
pub mod sink;
pub mod timestamp;
mod unary;

pub use cli::main_with;
pub use tyk_plugin;
