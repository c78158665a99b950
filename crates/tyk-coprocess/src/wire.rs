//! Small helpers over the protobuf wire format of `coprocess.Object`.

use thiserror::Error;

/// What a server wants to know about an `Object` before doing any real work:
/// found by scanning only the top-level fields, so it costs next to nothing
/// even for an Object carrying a 20 MB body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectSummary<'a> {
    /// `Object.hook_type` as sent (may be a number the enum does not know).
    pub hook_type: i32,
    /// `Object.hook_name`.
    pub hook_name: &'a str,
    /// `Object.spec["APIID"]`.
    pub api_id: &'a str,
    /// `Object.spec["OrgID"]`.
    pub org_id: &'a str,
}

/// The top-level scan met bytes that are not a protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed coprocess.Object at byte {offset}: {reason}")]
pub struct ScanError {
    /// Offset of the offending byte in the message.
    pub offset: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

/// Reads the [`ObjectSummary`] of an encoded `coprocess.Object`.
///
/// Only the top level and the `spec` map entries are parsed; nested messages
/// are skipped by length. Full validation is the job of the JSON walker
/// ([`crate::json`]). As in protobuf parsers, the last occurrence of a
/// singular field wins, and a field with an unexpected wire type is ignored.
pub fn scan_summary(wire: &[u8]) -> Result<ObjectSummary<'_>, ScanError> {
    let mut summary = ObjectSummary::default();
    let mut r = Reader { buf: wire, pos: 0 };
    while !r.done() {
        let (field, wire_type) = r.tag()?;
        match (field, wire_type) {
            (1, WT_VARINT) => summary.hook_type = r.varint()? as i32,
            (2, WT_LEN) => summary.hook_name = r.str()?,
            (6, WT_LEN) => {
                let entry = r.bytes()?;
                let (key, value) = map_entry(entry, r.pos - entry.len())?;
                match key {
                    "APIID" => summary.api_id = value,
                    "OrgID" => summary.org_id = value,
                    _ => {}
                }
            }
            _ => r.skip(wire_type)?,
        }
    }
    Ok(summary)
}

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

fn map_entry(entry: &[u8], base: usize) -> Result<(&str, &str), ScanError> {
    let mut r = Reader { buf: entry, pos: 0 };
    let (mut key, mut value) = ("", "");
    while !r.done() {
        let (field, wire_type) = r.tag().map_err(|e| e.shifted(base))?;
        match (field, wire_type) {
            (1, WT_LEN) => key = r.str().map_err(|e| e.shifted(base))?,
            (2, WT_LEN) => value = r.str().map_err(|e| e.shifted(base))?,
            _ => r.skip(wire_type).map_err(|e| e.shifted(base))?,
        }
    }
    Ok((key, value))
}

impl ScanError {
    fn shifted(self, base: usize) -> Self {
        Self {
            offset: self.offset + base,
            ..self
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, reason: &'static str) -> ScanError {
        ScanError {
            offset: self.pos,
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, ScanError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn tag(&mut self) -> Result<(u32, u8), ScanError> {
        let start = self.pos;
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            self.pos = start;
            return Err(self.err("invalid field number"));
        }
        Ok((field as u32, (key & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ScanError> {
        let len = self.varint()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.err("length runs past the end of the message"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn str(&mut self) -> Result<&'a str, ScanError> {
        let start = self.pos;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| ScanError {
            offset: start,
            reason: "string field is not valid UTF-8",
        })
    }

    fn advance(&mut self, n: usize) -> Result<(), ScanError> {
        if self.buf.len() - self.pos < n {
            return Err(self.err("truncated fixed-size field"));
        }
        self.pos += n;
        Ok(())
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), ScanError> {
        match wire_type {
            WT_VARINT => self.varint().map(drop),
            WT_I64 => self.advance(8),
            WT_LEN => self.bytes().map(drop),
            WT_I32 => self.advance(4),
            3 => self.skip_group(),
            _ => Err(self.err("invalid wire type")),
        }
    }

    fn skip_group(&mut self) -> Result<(), ScanError> {
        // Groups are deprecated but legal as unknown fields; walk them with an
        // explicit depth counter instead of recursion.
        let mut depth = 1usize;
        while depth > 0 {
            if self.done() {
                return Err(self.err("unterminated group"));
            }
            let (_, wire_type) = self.tag()?;
            match wire_type {
                3 => {
                    depth += 1;
                    if depth > 100 {
                        return Err(self.err("groups nested too deeply"));
                    }
                }
                4 => depth -= 1,
                other => self.skip(other)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HookType, Object};
    use prost::Message;

    #[test]
    fn summary_of_a_typical_object() {
        let obj = Object {
            hook_type: HookType::Pre as i32,
            hook_name: "MyPre".into(),
            spec: [("APIID", "api1"), ("OrgID", "org1"), ("bundle_hash", "x")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let wire = obj.encode_to_vec();
        let s = scan_summary(&wire).unwrap();
        assert_eq!(
            s,
            ObjectSummary {
                hook_type: 1,
                hook_name: "MyPre",
                api_id: "api1",
                org_id: "org1"
            }
        );
    }

    #[test]
    fn empty_object_has_default_summary() {
        assert_eq!(scan_summary(&[]).unwrap(), ObjectSummary::default());
    }

    #[test]
    fn last_singular_value_wins_and_wrong_wire_type_is_ignored() {
        // hook_name "a", hook_name "b", hook_type as a length-delimited field.
        let wire = [0x12, 1, b'a', 0x12, 1, b'b', 0x0a, 0];
        let s = scan_summary(&wire).unwrap();
        assert_eq!((s.hook_name, s.hook_type), ("b", 0));
    }

    #[test]
    fn malformed_input_is_reported_with_offset() {
        assert_eq!(scan_summary(&[0x12, 5, b'a']).unwrap_err().offset, 2);
        assert_eq!(
            scan_summary(&[0x12, 1, 0xff]).unwrap_err().reason,
            "string field is not valid UTF-8"
        );
        assert_eq!(
            scan_summary(&[0x00]).unwrap_err().reason,
            "invalid field number"
        );
        assert_eq!(
            scan_summary(&[0x0f]).unwrap_err().reason,
            "invalid wire type"
        );
        assert!(scan_summary(&[0x08; 11]).is_err());
    }
}
