//! Tyk's coprocess (gRPC rich plugin) protocol.
//!
//! * [`pb`]: the protobuf messages and tonic stubs of package `coprocess`,
//!   generated from `proto/` at build time (no `protoc` needed).
//! * [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.
//! * [`json`]: wire bytes → canonical proto3 JSON (Python `MessageToJson`),
//!   streaming, without decoding into structs.

pub mod json;
mod schema;

pub use json::{JsonStyle, ObjectSummary, WireError, WireErrorKind};

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
