//! A log sink that never blocks a request.
//!
//! Records (whole lines, already formatted) are queued in memory and written
//! by a dedicated thread in batches, so the request path pays for a lock-free
//! check, a short mutex hold and no system call in the common case. When the
//! writer falls behind by more than the configured number of bytes, new
//! records are dropped and counted; the count is reported in the log itself.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use crate::config::LogFormat;

/// How long the writer lets records accumulate after a busy batch.
const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// A cloneable handle to the writer thread.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Vec<Vec<u8>>>,
    queued_bytes: AtomicUsize,
    capacity: usize,
    sleeping: AtomicBool,
    closed: AtomicBool,
    dropped: AtomicU64,
    written: AtomicU64,
    format: LogFormat,
    writer_thread: Mutex<Option<Thread>>,
}

/// Stops the writer thread, after it wrote everything queued, when dropped.
#[must_use = "logs are flushed when the guard is dropped"]
pub struct SinkGuard {
    sink: LogSink,
    handle: Option<JoinHandle<()>>,
}

impl LogSink {
    /// Starts a writer thread writing to `out`, holding at most `capacity`
    /// bytes of pending records. `format` is used for the sink's own reports.
    pub fn spawn(
        out: Box<dyn Write + Send>,
        capacity: usize,
        format: LogFormat,
    ) -> io::Result<(LogSink, SinkGuard)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            queued_bytes: AtomicUsize::new(0),
            capacity,
            sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            format,
            writer_thread: Mutex::new(None),
        });
        let worker = shared.clone();
        let handle = thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(&worker, out))?;
        *lock(&shared.writer_thread) = Some(handle.thread().clone());
        let sink = LogSink { shared };
        Ok((
            sink.clone(),
            SinkGuard {
                sink,
                handle: Some(handle),
            },
        ))
    }

    /// Queues one record (it should end with a newline). Returns false when
    /// the record was dropped because the queue is full.
    pub fn push(&self, record: Vec<u8>) -> bool {
        let s = &*self.shared;
        let len = record.len();
        let before = s.queued_bytes.fetch_add(len, Ordering::AcqRel);
        // An oversized record is still taken when nothing else waits, so a
        // single huge Object is logged rather than always dropped.
        if before != 0 && before + len > s.capacity {
            s.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        lock(&s.queue).push(record);
        if s.sleeping.swap(false, Ordering::AcqRel) {
            s.wake();
        }
        true
    }

    /// Records dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn wake(&self) {
        if let Some(t) = lock(&self.writer_thread).as_ref() {
            t.unpark();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_loop(s: &Shared, out: Box<dyn Write + Send>) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut write_failed = false;
    loop {
        std::mem::swap(&mut *lock(&s.queue), &mut batch);
        if batch.is_empty() {
            if s.closed.load(Ordering::Acquire) {
                break;
            }
            // Announce sleep, then re-check so a record pushed in between
            // is not left waiting.
            s.sleeping.store(true, Ordering::Release);
            if lock(&s.queue).is_empty() && !s.closed.load(Ordering::Acquire) {
                thread::park();
            }
            s.sleeping.store(false, Ordering::Release);
            continue;
        }
        let mut bytes = 0;
        let count = batch.len() as u64;
        for record in batch.drain(..) {
            bytes += record.len();
            if let Err(e) = out.write_all(&record) {
                report_write_error(&mut write_failed, &e);
            }
        }
        s.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        s.written.fetch_add(count, Ordering::Relaxed);
        let dropped = s.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let msg = format!(
                "log queue full: {dropped} log records dropped (raise log.queue_capacity or use a faster log output)"
            );
            let _ = out.write_all(&own_record(s.format, "WARN", &msg));
        }
        if let Err(e) = out.flush() {
            report_write_error(&mut write_failed, &e);
        }
        // Shrink a batch buffer grown by a burst so it does not pin memory.
        if batch.capacity() > 4096 {
            batch = Vec::new();
        }
        if !s.closed.load(Ordering::Acquire) {
            thread::park_timeout(BATCH_WINDOW);
        }
    }
    let _ = out.flush();
}

fn report_write_error(already: &mut bool, e: &io::Error) {
    // The log itself is broken; stderr is the last place to say so, once.
    if !*already {
        *already = true;
        eprintln!(
            "tyk-plugin-server: cannot write logs: {e}; further log write errors are not reported"
        );
    }
}

/// A record the sink writes about itself, in the configured format.
fn own_record(format: LogFormat, level: &str, msg: &str) -> Vec<u8> {
    let mut rec = Vec::with_capacity(160);
    let ts = crate::timestamp::now();
    match format {
        LogFormat::Json => {
            rec.extend_from_slice(b"{\"timestamp\":\"");
            rec.extend_from_slice(ts.as_bytes());
            rec.extend_from_slice(b"\",\"level\":\"");
            rec.extend_from_slice(level.as_bytes());
            rec.extend_from_slice(b"\",\"message\":");
            let _ = serde_json::to_writer(&mut rec, msg);
            rec.extend_from_slice(b",\"target\":\"tyk_plugin_server::log\"}\n");
        }
        LogFormat::Text => {
            let _ = writeln!(rec, "{ts} {level:>5} tyk_plugin_server::log: {msg}");
        }
    }
    rec
}

impl SinkGuard {
    /// Writes everything queued and stops the writer thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.sink.shared.closed.store(true, Ordering::Release);
        self.sink.shared.wake();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `tracing_subscriber` writer: each event is collected and queued as one
/// record, so lines of concurrent events never interleave.
pub struct RecordWriter<'a> {
    sink: &'a LogSink,
    buf: Vec<u8>,
}

impl Write for RecordWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RecordWriter<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.push(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = RecordWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        RecordWriter {
            sink: self,
            buf: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that shares what it receives with the test.
    #[derive(Clone, Default)]
    pub(crate) struct Capture(pub Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_arrive_in_order_and_whole() {
        let cap = Capture::default();
        let (sink, guard) =
            LogSink::spawn(Box::new(cap.clone()), 1 << 20, LogFormat::Text).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                thread::spawn(move || {
                    for i in 0..500 {
                        assert!(
                            sink.push(format!("t{t} r{i} {}\n", "x".repeat(i % 50)).into_bytes())
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        guard.shutdown();
        let text = String::from_utf8(lock(&cap.0).clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2000);
        for t in 0..4 {
            let seq: Vec<usize> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .map(|l| l.split(' ').nth(1).unwrap()[1..].parse().unwrap())
                .collect();
            assert_eq!(seq, (0..500).collect::<Vec<_>>(), "per-producer order kept");
        }
        assert_eq!(sink.written(), 2000);
    }

    /// A writer that blocks until released, to fill the queue.
    struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>, Capture);
    impl Write for Gate {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            let (m, cv) = &*self.0;
            let mut open = lock(m);
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.1.write(d)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn full_queue_drops_and_reports_instead_of_blocking() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let cap = Capture::default();
        let (sink, guard) = LogSink::spawn(
            Box::new(Gate(gate.clone(), cap.clone())),
            4096,
            LogFormat::Json,
        )
        .unwrap();
        // The first record is taken by the writer, which then blocks in write.
        assert!(sink.push(b"first\n".to_vec()));
        while !lock(&sink.shared.queue).is_empty() {
            thread::yield_now();
        }
        let mut rec = vec![b'x'; 999];
        rec.push(b'\n');
        let accepted = (0..20).filter(|_| sink.push(rec.clone())).count();
        assert!((3..20).contains(&accepted), "accepted {accepted}");
        assert_eq!(sink.dropped(), (20 - accepted) as u64);
        *lock(&gate.0) = true;
        gate.1.notify_all();
        guard.shutdown();
        let out = String::from_utf8(lock(&cap.0).clone()).unwrap();
        assert!(
            out.contains(&format!("{} log records dropped", 20 - accepted)),
            "{out}"
        );
        let report = out.lines().find(|l| l.contains("dropped")).unwrap();
        let v: serde_json::Value = serde_json::from_str(report).unwrap();
        assert_eq!(v["level"], "WARN");
    }

    #[test]
    fn an_oversized_record_is_taken_when_the_queue_is_empty() {
        let cap = Capture::default();
        let (sink, guard) = LogSink::spawn(Box::new(cap.clone()), 4096, LogFormat::Text).unwrap();
        assert!(sink.push(vec![b'y'; 100_000]));
        guard.shutdown();
        assert_eq!(lock(&cap.0).len(), 100_000);
    }
}
