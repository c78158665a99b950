//! TEMPORARY stand-in for `tyk_coprocess::json` (being written on another
//! branch) with the same API, built on prost-reflect. Replaced at merge.
#![allow(missing_docs)]

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(tyk_coprocess::FILE_DESCRIPTOR_SET).expect("valid descriptors")
});

#[derive(Debug, Clone, Copy)]
pub enum JsonStyle {
    Pretty,
    Compact,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

fn desc(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(name).expect("known message")
}

pub fn message_to_json(
    name: &str,
    wire: &[u8],
    style: JsonStyle,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let msg = DynamicMessage::decode(desc(name), wire).map_err(|e| WireError(e.to_string()))?;
    let opts = SerializeOptions::new();
    match style {
        JsonStyle::Compact => {
            let mut ser = serde_json::Serializer::new(out);
            msg.serialize_with_options(&mut ser, &opts)
                .map_err(|e| WireError(e.to_string()))
        }
        JsonStyle::Pretty => {
            let mut ser = serde_json::Serializer::with_formatter(
                out,
                serde_json::ser::PrettyFormatter::with_indent(b"  "),
            );
            msg.serialize_with_options(&mut ser, &opts)
                .map_err(|e| WireError(e.to_string()))
        }
    }
}

pub fn object_to_json(wire: &[u8], style: JsonStyle, out: &mut Vec<u8>) -> Result<(), WireError> {
    message_to_json("coprocess.Object", wire, style, out)
}

pub fn validate_object(wire: &[u8]) -> Result<(), WireError> {
    DynamicMessage::decode(desc("coprocess.Object"), wire)
        .map(drop)
        .map_err(|e| WireError(e.to_string()))
}
