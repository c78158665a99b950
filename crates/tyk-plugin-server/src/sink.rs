//! A log sink that never blocks a request on I/O.
//!
//! Records (whole lines, already formatted) are queued in memory and written
//! by a dedicated thread in batches, so the request path pays for a lock-free
//! check, a short mutex hold and no system call in the common case. When the
//! writer falls behind by more than the configured number of bytes, new
//! records are dropped and counted; the count is reported in the log itself.
//!
//! Records too large to hold formatted (a 40 MB Object prints as 50 MB of
//! JSON) are queued as closures the writer runs, streaming into the output
//! ([`LogSink::push_rendered`]); they count the memory they keep alive, and
//! when the queue is full they wait a bounded time for room instead of being
//! dropped at once.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::LogFormat;

/// How long the writer lets records accumulate after a busy batch.
const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// A cloneable handle to the writer thread.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Writes a deferred record into the log output.
pub type Render = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// One queued record.
enum Record {
    /// Formatted bytes.
    Bytes(Vec<u8>),
    /// Rendered by the writer thread; keeps `held` bytes alive until then.
    Render { held: usize, render: Render },
}

struct Shared {
    queue: Mutex<Vec<Record>>,
    queued_bytes: AtomicUsize,
    /// Signalled when the writer has freed room, if anyone waits for it.
    room: Notify,
    waiters: AtomicUsize,
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
            room: Notify::new(),
            waiters: AtomicUsize::new(0),
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
        if !s.reserve(record.len()) {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        s.enqueue(Record::Bytes(record));
        true
    }

    /// Queues a record that the writer thread renders itself by calling
    /// `render` with the log output, for records too large to hold
    /// formatted. `held` is the memory `render` keeps alive until it has
    /// run; it counts against the queue capacity. When the queue is full the
    /// call waits for room, at most `wait`, then drops the record (counted
    /// and reported like any other). Returns whether it was queued.
    pub async fn push_rendered(&self, held: usize, wait: Duration, render: Render) -> bool {
        let s = &*self.shared;
        let record = Record::Render { held, render };
        if s.reserve(held) {
            s.enqueue(record);
            return true;
        }
        let deadline = tokio::time::Instant::now() + wait;
        s.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(s);
        loop {
            let notified = std::pin::pin!(s.room.notified());
            let mut notified = notified;
            // Registered before the check, so room freed after it wakes us.
            notified.as_mut().enable();
            if s.reserve(held) {
                s.enqueue(record);
                return true;
            }
            if s.closed.load(Ordering::Acquire)
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
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

/// Counts a waiter for room while it lives.
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Takes `len` bytes of the capacity, if there is room.
    fn reserve(&self, len: usize) -> bool {
        let before = self.queued_bytes.fetch_add(len, Ordering::SeqCst);
        // An oversized record is still taken when nothing else waits, so a
        // single huge Object is logged rather than always dropped.
        if before != 0 && before + len > self.capacity {
            self.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn enqueue(&self, record: Record) {
        lock(&self.queue).push(record);
        if self.sleeping.swap(false, Ordering::AcqRel) {
            self.wake();
        }
    }

    /// Gives back `len` bytes of the capacity and wakes whoever waits.
    fn release(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

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
    let mut batch: Vec<Record> = Vec::new();
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
            let res = match record {
                Record::Bytes(b) => {
                    bytes += b.len();
                    out.write_all(&b)
                }
                Record::Render { held, render } => {
                    // Its memory is freed once `render` has run: give the
                    // room back now rather than after the whole batch.
                    let res = render(&mut out);
                    s.release(held);
                    res
                }
            };
            if let Err(e) = res {
                report_write_error(&mut write_failed, &e);
            }
        }
        s.release(bytes);
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

    fn rendered(text: &'static str) -> Render {
        Box::new(move |out| out.write_all(text.as_bytes()))
    }

    #[tokio::test]
    async fn rendered_records_are_written_in_order_with_the_others() {
        let cap = Capture::default();
        let (sink, guard) =
            LogSink::spawn(Box::new(cap.clone()), 1 << 20, LogFormat::Text).unwrap();
        assert!(sink.push(b"one\n".to_vec()));
        assert!(
            sink.push_rendered(1000, Duration::ZERO, rendered("two\n"))
                .await
        );
        assert!(sink.push(b"three\n".to_vec()));
        guard.shutdown();
        assert_eq!(&lock(&cap.0)[..], b"one\ntwo\nthree\n");
        assert_eq!(sink.shared.queued_bytes.load(Ordering::SeqCst), 0);
    }

    /// Opens when told to, or when dropped, so a failing test never leaves
    /// the writer stuck (the sink guard joins it).
    #[derive(Default)]
    struct Latch(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl Drop for Latch {
        fn drop(&mut self) {
            open(self);
        }
    }

    /// A rendered record that blocks the writer until `latch` opens.
    fn blocking(latch: &Latch, text: &'static str) -> Render {
        let latch = latch.0.clone();
        Box::new(move |out| {
            let (m, cv) = &*latch;
            let mut open = lock(m);
            while !*open {
                open = cv.wait(open).unwrap();
            }
            out.write_all(text.as_bytes())
        })
    }

    fn open(latch: &Latch) {
        *lock(&latch.0.0) = true;
        latch.0.1.notify_all();
    }

    /// Starts a sink of 10,000 bytes whose writer is stuck rendering a
    /// record that holds `held` bytes until the returned latch opens.
    async fn stuck_sink(held: usize) -> (LogSink, SinkGuard, Capture, Latch) {
        let latch = Latch::default();
        let cap = Capture::default();
        let (sink, guard) = LogSink::spawn(Box::new(cap.clone()), 10_000, LogFormat::Text).unwrap();
        assert!(
            sink.push_rendered(held, Duration::ZERO, blocking(&latch, "first\n"))
                .await
        );
        while !lock(&sink.shared.queue).is_empty() {
            tokio::task::yield_now().await;
        }
        (sink, guard, cap, latch)
    }

    #[tokio::test]
    async fn a_large_record_waits_for_room_instead_of_being_dropped() {
        let (sink, guard, cap, latch) = stuck_sink(8000).await;
        // No room: a small record is dropped at once...
        assert!(!sink.push(vec![b'x'; 3000]));
        assert_eq!(sink.dropped(), 1);
        // ...a large one waits, and gets in once the writer frees room.
        let waiter = {
            let sink = sink.clone();
            tokio::spawn(async move {
                sink.push_rendered(8000, Duration::from_secs(30), rendered("second\n"))
                    .await
            })
        };
        while sink.shared.waiters.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "still waiting while the writer is stuck"
        );
        open(&latch);
        assert!(waiter.await.unwrap(), "queued after waiting");
        guard.shutdown();
        let out = String::from_utf8(lock(&cap.0).clone()).unwrap();
        assert!(out.starts_with("first\n"), "{out}");
        assert!(out.contains("1 log records dropped"), "{out}");
        assert!(out.ends_with("second\n"), "{out}");
    }

    #[tokio::test]
    async fn a_large_record_is_dropped_when_no_room_comes_in_time() {
        let (sink, guard, cap, latch) = stuck_sink(9000).await;
        let started = std::time::Instant::now();
        assert!(
            !sink
                .push_rendered(5000, Duration::from_millis(50), rendered("late\n"))
                .await
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(sink.dropped(), 1);
        assert_eq!(sink.shared.waiters.load(Ordering::SeqCst), 0);
        open(&latch);
        guard.shutdown();
        let out = String::from_utf8(lock(&cap.0).clone()).unwrap();
        assert!(out.starts_with("first\n") && !out.contains("late"), "{out}");
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
