//! Field tables for the wire→JSON walker, built once from
//! [`FILE_DESCRIPTOR_SET`](crate::FILE_DESCRIPTOR_SET).
//!
//! Everything the hot path needs per field is precomputed here: the JSON key
//! (already quoted and escaped), the scalar kind, and a dense field-number
//! lookup table per message.

use std::collections::HashMap;
use std::sync::LazyLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

/// Sentinel for "no entry" in the dense lookup tables.
pub(crate) const NONE: u16 = u16::MAX;

/// The protobuf type of a field (or of one element of a repeated field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Double,
    Float,
    Int64,
    UInt64,
    Int32,
    UInt32,
    SInt32,
    SInt64,
    Fixed32,
    Fixed64,
    SFixed32,
    SFixed64,
    Bool,
    String,
    Bytes,
    /// Index into [`Schema::enums`].
    Enum(u16),
    /// Index into [`Schema::messages`].
    Message(u16),
}

impl Kind {
    /// The wire type of a single, unpacked value of this kind.
    pub(crate) fn wire_type(self) -> u8 {
        match self {
            Kind::Double | Kind::Fixed64 | Kind::SFixed64 => 1,
            Kind::Float | Kind::Fixed32 | Kind::SFixed32 => 5,
            Kind::String | Kind::Bytes | Kind::Message(_) => 2,
            _ => 0,
        }
    }

    /// Whether a repeated field of this kind may arrive packed.
    pub(crate) fn packable(self) -> bool {
        !matches!(self, Kind::String | Kind::Bytes | Kind::Message(_))
    }
}

/// Cardinality of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Card {
    Singular,
    Repeated,
    /// `map<K, V>`; the entry message (key = its field 0, value = field 1).
    Map(u16),
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    /// Proto name, for error paths.
    pub(crate) name: Box<str>,
    /// `"jsonName"`, quoted and escaped, ready to copy into the output.
    pub(crate) json_key: Box<[u8]>,
    pub(crate) number: u32,
    pub(crate) kind: Kind,
    pub(crate) card: Card,
    /// Explicit presence (proto2 optional, proto3 `optional`): the default
    /// value is printed when it is on the wire.
    pub(crate) presence: bool,
}

/// One message type.
#[derive(Debug)]
pub(crate) struct MessageDef {
    /// Full name without the leading dot, e.g. `coprocess.Object`.
    pub(crate) full_name: Box<str>,
    pub(crate) fields: Vec<Field>,
    /// Field number → index into `fields` (dense; numbers are small).
    lookup: Vec<u16>,
}

impl MessageDef {
    /// The field with this number, with its index.
    #[inline]
    pub(crate) fn field(&self, number: u32) -> Option<(usize, &Field)> {
        let idx = *self.lookup.get(usize::try_from(number).ok()?)?;
        if idx == NONE {
            return None;
        }
        let i = usize::from(idx);
        self.fields.get(i).map(|f| (i, f))
    }
}

/// One enum type.
#[derive(Debug)]
pub(crate) struct EnumDef {
    /// (number, name), sorted by number; the first declared name of an alias wins.
    values: Vec<(i32, Box<str>)>,
}

impl EnumDef {
    /// The name of the value with this number.
    #[inline]
    pub(crate) fn name(&self, number: i32) -> Option<&str> {
        self.values
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .and_then(|i| self.values.get(i))
            .map(|(_, name)| &**name)
    }
}

/// All message and enum types of the descriptor set.
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) messages: Vec<MessageDef>,
    pub(crate) enums: Vec<EnumDef>,
    by_name: HashMap<Box<str>, u16>,
    /// `coprocess.Object` and the fields the summary captures.
    pub(crate) object: u16,
    pub(crate) obj_hook_type: usize,
    pub(crate) obj_hook_name: usize,
    pub(crate) obj_spec: usize,
    pub(crate) hook_type_enum: u16,
}

impl Schema {
    /// A message by full name (`coprocess.Event`, a leading dot is accepted).
    pub(crate) fn message_index(&self, full_name: &str) -> Option<u16> {
        let name = full_name.strip_prefix('.').unwrap_or(full_name);
        self.by_name.get(name).copied()
    }
}

/// The schema of the `coprocess` protos, built on first use.
pub(crate) static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    // The descriptor set is compiled into the binary by build.rs, so failing
    // here is a build bug, not an input error.
    build(crate::FILE_DESCRIPTOR_SET).expect("coprocess descriptor set is valid")
});

/// protobuf's `ToJsonName`: drop underscores, upper-case the letter after one.
fn json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Collect every message and enum name (depth-first) so fields can refer to them.
fn collect_names(
    prefix: &str,
    msgs: &[DescriptorProto],
    enums: &[EnumDescriptorProto],
    out_msgs: &mut Vec<(String, DescriptorProto, bool)>,
    out_enums: &mut Vec<(String, EnumDescriptorProto)>,
    proto3: bool,
) {
    for e in enums {
        out_enums.push((format!("{prefix}{}", e.name()), e.clone()));
    }
    for m in msgs {
        let full = format!("{prefix}{}", m.name());
        out_msgs.push((full.clone(), m.clone(), proto3));
        collect_names(
            &format!("{full}."),
            &m.nested_type,
            &m.enum_type,
            out_msgs,
            out_enums,
            proto3,
        );
    }
}

fn build(fds_bytes: &[u8]) -> Result<Schema, String> {
    let fds = FileDescriptorSet::decode(fds_bytes).map_err(|e| e.to_string())?;
    let mut msgs = Vec::new();
    let mut enums = Vec::new();
    for file in &fds.file {
        let prefix = match file.package() {
            "" => String::new(),
            p => format!("{p}."),
        };
        let proto3 = file.syntax() == "proto3";
        collect_names(
            &prefix,
            &file.message_type,
            &file.enum_type,
            &mut msgs,
            &mut enums,
            proto3,
        );
    }
    let idx16 = |i: usize| u16::try_from(i).map_err(|_| "too many types".to_string());
    let mut by_name = HashMap::new();
    for (i, (name, _, _)) in msgs.iter().enumerate() {
        by_name.insert(name.clone().into_boxed_str(), idx16(i)?);
    }
    let mut enum_by_name = HashMap::new();
    for (i, (name, _)) in enums.iter().enumerate() {
        enum_by_name.insert(name.clone(), idx16(i)?);
    }
    let is_map_entry: Vec<bool> = msgs
        .iter()
        .map(|(_, m, _)| m.options.as_ref().and_then(|o| o.map_entry) == Some(true))
        .collect();

    let mut messages = Vec::with_capacity(msgs.len());
    for (full_name, m, proto3) in &msgs {
        let mut fields = Vec::with_capacity(m.field.len());
        for f in &m.field {
            let type_name = f.type_name().trim_start_matches('.');
            let kind = match f.r#type() {
                Type::Double => Kind::Double,
                Type::Float => Kind::Float,
                Type::Int64 => Kind::Int64,
                Type::Uint64 => Kind::UInt64,
                Type::Int32 => Kind::Int32,
                Type::Fixed64 => Kind::Fixed64,
                Type::Fixed32 => Kind::Fixed32,
                Type::Bool => Kind::Bool,
                Type::String => Kind::String,
                Type::Bytes => Kind::Bytes,
                Type::Uint32 => Kind::UInt32,
                Type::Sfixed32 => Kind::SFixed32,
                Type::Sfixed64 => Kind::SFixed64,
                Type::Sint32 => Kind::SInt32,
                Type::Sint64 => Kind::SInt64,
                Type::Enum => Kind::Enum(
                    *enum_by_name
                        .get(type_name)
                        .ok_or_else(|| format!("unknown enum {type_name}"))?,
                ),
                // Groups are proto2-only and absent from our protos; their
                // payload is walked like a message would be, which the
                // wire-type check turns into "unknown field".
                Type::Message | Type::Group => Kind::Message(
                    *by_name
                        .get(type_name)
                        .ok_or_else(|| format!("unknown message {type_name}"))?,
                ),
            };
            let repeated = f.label() == Label::Repeated;
            let card = match kind {
                Kind::Message(sub) if repeated && is_map_entry[usize::from(sub)] => Card::Map(sub),
                _ if repeated => Card::Repeated,
                _ => Card::Singular,
            };
            let presence =
                !repeated && (f.proto3_optional() || (!proto3 && f.label() == Label::Optional));
            let jn = match &f.json_name {
                Some(j) if !j.is_empty() => j.clone(),
                _ => json_name(f.name()),
            };
            let mut json_key = Vec::with_capacity(jn.len() + 2);
            crate::json::write_json_string(&mut json_key, &jn);
            fields.push(Field {
                name: f.name().into(),
                json_key: json_key.into_boxed_slice(),
                number: u32::try_from(f.number()).map_err(|_| "negative field number")?,
                kind,
                card,
                presence,
            });
        }
        // Map entries: key first, value second, whatever the declaration order.
        fields.sort_by_key(|f| f.number);
        let max = fields.iter().map(|f| f.number).max().unwrap_or(0);
        if max > 1 << 16 {
            return Err(format!(
                "field numbers of {full_name} too large for a dense table"
            ));
        }
        let mut lookup = vec![NONE; max as usize + 1];
        for (i, f) in fields.iter().enumerate() {
            lookup[f.number as usize] = idx16(i)?;
        }
        messages.push(MessageDef {
            full_name: full_name.clone().into_boxed_str(),
            fields,
            lookup,
        });
    }

    let enums_out = enums
        .iter()
        .map(|(_, e)| {
            let mut values: Vec<(i32, Box<str>)> = Vec::with_capacity(e.value.len());
            for v in &e.value {
                if !values.iter().any(|(n, _)| *n == v.number()) {
                    values.push((v.number(), v.name().into()));
                }
            }
            values.sort_by_key(|(n, _)| *n);
            EnumDef { values }
        })
        .collect();

    let object = *by_name
        .get("coprocess.Object")
        .ok_or("coprocess.Object missing")?;
    let field_idx = |name: &str| {
        messages[usize::from(object)]
            .fields
            .iter()
            .position(|f| &*f.name == name)
            .ok_or_else(|| format!("coprocess.Object.{name} missing"))
    };
    Ok(Schema {
        obj_hook_type: field_idx("hook_type")?,
        obj_hook_name: field_idx("hook_name")?,
        obj_spec: field_idx("spec")?,
        hook_type_enum: *enum_by_name
            .get("coprocess.HookType")
            .ok_or("coprocess.HookType missing")?,
        messages,
        enums: enums_out,
        by_name,
        object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_name_rule() {
        assert_eq!(json_name("hook_type"), "hookType");
        assert_eq!(
            json_name("post_expiry_grace_period"),
            "postExpiryGracePeriod"
        );
        assert_eq!(json_name("OrgID"), "OrgID");
        assert_eq!(json_name("a__b_"), "aB");
    }

    #[test]
    fn descriptor_json_names_match_rule() {
        // protox fills json_name; it must agree with the computed rule.
        for m in &SCHEMA.messages {
            for f in &m.fields {
                let mut want = Vec::new();
                crate::json::write_json_string(&mut want, &json_name(&f.name));
                assert_eq!(*f.json_key, *want, "{}.{}", m.full_name, f.name);
            }
        }
        let obj = &SCHEMA.messages[usize::from(SCHEMA.object)];
        assert_eq!(&*obj.fields[SCHEMA.obj_spec].name, "spec");
    }
}
