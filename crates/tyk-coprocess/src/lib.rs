//! Tyk's coprocess (gRPC rich plugin) protocol.
//!
//! * [`pb`]: the protobuf messages and tonic stubs of package `coprocess`,
//!   generated from `proto/` at build time (no `protoc` needed).
//! * [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.
//! * [`json`]: wire bytes → canonical proto3 JSON (Python `MessageToJson`),
//!   streaming, without decoding into structs.
//! * [`client`]: a raw-bytes Dispatcher client (TCP and Unix sockets).
//! * [`codec`]: a tonic codec that moves messages as bytes (zero-copy echo).
//! * [`wire`]: cheap scans of encoded messages.

pub mod client;
pub mod codec;
pub mod json;
mod schema;
pub mod unknown;
pub mod wire;

pub use json::{JsonStyle, WireError, WireErrorKind};
pub use wire::ObjectSummary;

/// Messages and gRPC stubs of Tyk's `coprocess` package.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("coprocess");
}

pub use pb::{
    AccessDefinition, AccessSpec, BasicAuthData, Event, EventReply, Header, HookType, JwtData,
    MiniRequestObject, Monitor, Object, ResponseObject, ReturnOverrides, SessionState, StringSlice,
};

/// Encoded `FileDescriptorSet` of the `coprocess` protos (with source info).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/coprocess_descriptor.bin"));
