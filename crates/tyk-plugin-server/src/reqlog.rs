//! The per-request log: every Dispatch Object as canonical proto3 JSON and
//! every event payload, in the configured format, through the [`LogSink`].
//!
//! These records bypass `tracing` on purpose: its JSON formatter can only
//! embed the Object as an escaped string, while we want the Object as a JSON
//! object (JSON format) or as indented JSON between REQUEST START and
//! REQUEST END lines (text format, like the Python reference server).

use std::io::Write;

use tyk_coprocess::json::{self, JsonStyle, WireError, hook_type_label};
use tyk_coprocess::wire::{ObjectSummary, scan_summary};

use crate::config::LogFormat;
use crate::sink::LogSink;
use crate::timestamp;

const DISPATCH_TARGET: &str = "tyk_plugin_server::dispatch";
const EVENT_TARGET: &str = "tyk_plugin_server::event";

/// Writes request records; cheap to clone.
#[derive(Clone)]
pub struct RequestLog {
    sink: Option<LogSink>,
    format: LogFormat,
    objects: bool,
    events: bool,
}

impl RequestLog {
    /// A request log writing to `sink`. `objects` / `events` switch the two
    /// kinds of record on; the caller decides them from the configuration
    /// and the level filter.
    pub fn new(sink: LogSink, format: LogFormat, objects: bool, events: bool) -> Self {
        Self {
            sink: Some(sink),
            format,
            objects,
            events,
        }
    }

    /// A request log that writes nothing (still validates Objects).
    pub fn disabled() -> Self {
        Self {
            sink: None,
            format: LogFormat::Json,
            objects: false,
            events: false,
        }
    }

    /// Validates an encoded Object and logs it when Object logging is on.
    /// The whole message is checked either way, so malformed input is always
    /// rejected.
    pub fn dispatch<'a>(&self, wire: &'a [u8]) -> Result<ObjectSummary<'a>, WireError> {
        let sink = match &self.sink {
            Some(sink) if self.objects => sink,
            _ => return json::validate_object(wire),
        };
        // The JSON walk validates everything; the summary scan only reads the
        // top level, so it runs first to put the key fields up front.
        let summary = scan_summary(wire).unwrap_or_default();
        let hook_type = hook_type_label(summary.hook_type);
        let ts = timestamp::now();
        let mut rec = Vec::with_capacity(256 + wire.len() * 2);
        match self.format {
            LogFormat::Json => {
                rec.extend_from_slice(b"{\"timestamp\":\"");
                rec.extend_from_slice(ts.as_bytes());
                rec.extend_from_slice(
                    b"\",\"level\":\"INFO\",\"message\":\"dispatch\",\"hook_type\":",
                );
                json_str(&mut rec, &hook_type);
                rec.extend_from_slice(b",\"hook_name\":");
                json_str(&mut rec, summary.hook_name);
                rec.extend_from_slice(b",\"api_id\":");
                json_str(&mut rec, summary.api_id);
                rec.extend_from_slice(b",\"object\":");
                json::object_to_json(wire, JsonStyle::Compact, &mut rec)?;
                rec.extend_from_slice(b",\"target\":\"");
                rec.extend_from_slice(DISPATCH_TARGET.as_bytes());
                rec.extend_from_slice(b"\"}\n");
            }
            LogFormat::Text => {
                let _ = writeln!(
                    rec,
                    "{ts}  INFO {DISPATCH_TARGET}: REQUEST START hook_type={hook_type} hook_name={:?} api_id={:?}",
                    summary.hook_name, summary.api_id
                );
                json::object_to_json(wire, JsonStyle::Pretty, &mut rec)?;
                let _ = writeln!(rec, "\n{ts}  INFO {DISPATCH_TARGET}: REQUEST END");
            }
        }
        sink.push(rec);
        Ok(summary)
    }

    /// Logs an event payload: as JSON when it is JSON, otherwise as a string
    /// with a warning. Never fails: events are fire-and-forget.
    pub fn event(&self, payload: &str) {
        let Some(sink) = self.sink.as_ref().filter(|_| self.events) else {
            return;
        };
        let parsed: Option<serde_json::Value> = serde_json::from_str(payload).ok();
        let field = |v: &serde_json::Value, path: &[&str]| -> String {
            let mut cur = v;
            for p in path {
                cur = &cur[*p];
            }
            cur.as_str().unwrap_or_default().to_string()
        };
        let (event_type, handler, api_id) = match &parsed {
            Some(v) => (
                field(v, &["message", "Type"]),
                field(v, &["handler_name"]),
                field(v, &["spec", "APIID"]),
            ),
            None => Default::default(),
        };
        let ts = timestamp::now();
        let mut rec = Vec::with_capacity(256 + payload.len() * 2);
        match self.format {
            LogFormat::Json => {
                rec.extend_from_slice(b"{\"timestamp\":\"");
                rec.extend_from_slice(ts.as_bytes());
                let level = if parsed.is_some() { "INFO" } else { "WARN" };
                let _ = write!(
                    rec,
                    "\",\"level\":\"{level}\",\"message\":\"event\",\"event_type\":"
                );
                json_str(&mut rec, &event_type);
                rec.extend_from_slice(b",\"handler_name\":");
                json_str(&mut rec, &handler);
                rec.extend_from_slice(b",\"api_id\":");
                json_str(&mut rec, &api_id);
                rec.extend_from_slice(b",\"payload_is_json\":");
                rec.extend_from_slice(if parsed.is_some() { b"true" } else { b"false" });
                rec.extend_from_slice(b",\"payload\":");
                match &parsed {
                    Some(v) => {
                        let _ = serde_json::to_writer(&mut rec, v);
                    }
                    None => json_str(&mut rec, payload),
                }
                let _ = writeln!(rec, ",\"target\":\"{EVENT_TARGET}\"}}");
            }
            LogFormat::Text => match &parsed {
                Some(v) => {
                    let _ = writeln!(
                        rec,
                        "{ts}  INFO {EVENT_TARGET}: EVENT type={event_type:?} handler_name={handler:?} api_id={api_id:?}"
                    );
                    let _ = serde_json::to_writer_pretty(&mut rec, v);
                    rec.push(b'\n');
                }
                None => {
                    let _ = writeln!(
                        rec,
                        "{ts}  WARN {EVENT_TARGET}: EVENT payload is not JSON; logged as a string: {payload:?}"
                    );
                }
            },
        }
        sink.push(rec);
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(out, s);
}
