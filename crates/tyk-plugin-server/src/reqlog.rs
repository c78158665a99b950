//! The per-request log: every Dispatch Object as canonical proto3 JSON and
//! every event payload, in the configured format, through the [`LogSink`].
//!
//! These records bypass `tracing` on purpose: its JSON formatter can only
//! embed the Object as an escaped string, while we want the Object as a JSON
//! object (JSON format) or as indented JSON between REQUEST START and
//! REQUEST END lines (text format, like the Python reference server).

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use tyk_coprocess::json::{self, JsonStyle, WireError, hook_type_label};
use tyk_coprocess::wire::{ObjectSummary, scan_summary};

use crate::config::LogFormat;
use crate::sink::{LogSink, Render};
use crate::timestamp::{self, Timestamp};

/// Objects at least this large are printed by the log writer thread,
/// streaming, instead of being formatted into a record on the request path.
pub const RENDER_ON_WRITER_AT: usize = 256 * 1024;

/// How long a large Object's record may wait for room in a full log queue
/// before it is dropped (and counted). Small records never wait.
pub const LARGE_RECORD_WAIT: Duration = Duration::from_secs(1);

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
    ///
    /// Objects of [`RENDER_ON_WRITER_AT`] bytes or more are printed by the
    /// log writer thread straight into the output, so their JSON (larger
    /// than the Object) is never held whole; such a record holds the Object
    /// until written, and when the log queue is full the call waits up to
    /// [`LARGE_RECORD_WAIT`] for room rather than dropping it.
    pub async fn dispatch(&self, wire: &Bytes) -> Result<(), WireError> {
        let sink = match &self.sink {
            Some(sink) if self.objects => sink,
            _ => return json::validate_object(wire).map(|_| ()),
        };
        let ts = timestamp::now();
        let style = match self.format {
            LogFormat::Json => JsonStyle::Compact,
            LogFormat::Text => JsonStyle::Pretty,
        };
        if wire.len() >= RENDER_ON_WRITER_AT {
            let summary = json::validate_object(wire)?;
            let mut head = Vec::with_capacity(256);
            self.head(&mut head, &summary, &ts);
            let mut tail = Vec::with_capacity(96);
            self.tail(&mut tail, &ts);
            let object = wire.clone();
            let render: Render = Box::new(move |out| {
                out.write_all(&head)?;
                json::object_to_json_writer(&object, style, out)?;
                out.write_all(&tail)
            });
            sink.push_rendered(wire.len(), LARGE_RECORD_WAIT, render)
                .await;
            return Ok(());
        }
        // The JSON walk validates everything; the summary scan only reads the
        // top level, so it runs first to put the key fields up front.
        let summary = scan_summary(wire).unwrap_or_default();
        let mut rec = Vec::with_capacity(256 + wire.len() * 2);
        self.head(&mut rec, &summary, &ts);
        json::object_to_json(wire, style, &mut rec)?;
        self.tail(&mut rec, &ts);
        sink.push(rec);
        Ok(())
    }

    /// What a dispatch record holds before the Object's JSON.
    fn head(&self, rec: &mut Vec<u8>, summary: &ObjectSummary<'_>, ts: &Timestamp) {
        let hook_type = hook_type_label(summary.hook_type);
        match self.format {
            LogFormat::Json => {
                rec.extend_from_slice(b"{\"timestamp\":\"");
                rec.extend_from_slice(ts.as_bytes());
                rec.extend_from_slice(
                    b"\",\"level\":\"INFO\",\"message\":\"dispatch\",\"hook_type\":",
                );
                json_str(rec, &hook_type);
                rec.extend_from_slice(b",\"hook_name\":");
                json_str(rec, summary.hook_name);
                rec.extend_from_slice(b",\"api_id\":");
                json_str(rec, summary.api_id);
                rec.extend_from_slice(b",\"object\":");
            }
            LogFormat::Text => {
                let _ = writeln!(
                    rec,
                    "{ts}  INFO {DISPATCH_TARGET}: REQUEST START hook_type={hook_type} hook_name={:?} api_id={:?}",
                    summary.hook_name, summary.api_id
                );
            }
        }
    }

    /// What a dispatch record holds after the Object's JSON.
    fn tail(&self, rec: &mut Vec<u8>, ts: &Timestamp) {
        match self.format {
            LogFormat::Json => {
                rec.extend_from_slice(b",\"target\":\"");
                rec.extend_from_slice(DISPATCH_TARGET.as_bytes());
                rec.extend_from_slice(b"\"}\n");
            }
            LogFormat::Text => {
                let _ = writeln!(rec, "\n{ts}  INFO {DISPATCH_TARGET}: REQUEST END");
            }
        }
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
