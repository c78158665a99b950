//! Tyk's coprocess (gRPC rich plugin) protocol.
//!
//! * [`pb`]: the protobuf messages and tonic stubs of package `coprocess`,
//!   generated from `proto/` at build time (no `protoc` needed).
//! * [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.
//! * [`codec`]: a tonic codec that moves messages as bytes (zero-copy echo).
//! * [`wire`]: cheap scans of encoded messages.

pub mod codec;
pub mod wire;

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
