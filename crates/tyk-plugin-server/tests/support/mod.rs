//! An in-process server on real sockets (TCP on 127.0.0.1:0 and a Unix
//! socket in a temp dir) whose logs are captured for assertions.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tyk_plugin::{Dispatcher, Echo};
use tyk_plugin_server::config::{Config, ListenAddr, LogFormat};
use tyk_plugin_server::reqlog::RequestLog;
use tyk_plugin_server::server::{self, BoundAddr};
use tyk_plugin_server::service::DispatcherService;
use tyk_plugin_server::sink::{LogSink, SinkGuard};

#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(d);
        Ok(d.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TestServer {
    pub tcp: String,
    pub unix: String,
    pub capture: Capture,
    pub sink: LogSink,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), server::ServeError>>>,
    _guard: SinkGuard,
    _tracing: tracing::subscriber::DefaultGuard,
    _dir: tempfile::TempDir,
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tyk-coprocess/tests/fixtures/wire")
}

/// Every fixture: (name, wire bytes, expected JSON). The expected JSON is the
/// `.current-proto.json` when present (our protos know SessionState 32-34).
pub fn fixtures(prefix_event: bool) -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let dir = fixtures_dir();
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".bin").map(str::to_string)
        })
        .filter(|n| n.starts_with("event_") == prefix_event)
        .collect();
    names.sort();
    for name in names {
        let wire = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let current = dir.join(format!("{name}.current-proto.json"));
        let json_path = if current.exists() {
            current
        } else {
            dir.join(format!("{name}.json"))
        };
        let json = serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap();
        out.push((name, wire, json));
    }
    assert!(out.len() >= 3, "fixtures missing in {}", dir.display());
    out
}

impl TestServer {
    pub async fn start(format: LogFormat) -> Self {
        Self::start_with(format, Echo, |_| {}).await
    }

    pub async fn start_with(
        format: LogFormat,
        handler: impl Dispatcher,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let mut config = Config::defaults();
        config.server.listen = vec![
            ListenAddr::Tcp("127.0.0.1:0".into()),
            ListenAddr::Unix(sock.clone()),
        ];
        config.log.format = format;
        tweak(&mut config);
        config.validate().unwrap();
        let capture = Capture::default();
        let (sink, guard) = LogSink::spawn(Box::new(capture.clone()), 256 << 20, format).unwrap();
        let log = RequestLog::new(sink.clone(), format, true, true);
        // #[tokio::test] runs on one thread, so a thread-local subscriber sees
        // the server's own diagnostics (warnings, "listening").
        let subscriber = tracing_subscriber::fmt()
            .with_writer(sink.clone())
            .with_ansi(false);
        let tracing = match format {
            LogFormat::Json => {
                tracing::subscriber::set_default(subscriber.json().flatten_event(true).finish())
            }
            LogFormat::Text => tracing::subscriber::set_default(subscriber.finish()),
        };
        let bound = server::bind(&config.server).await.unwrap();
        let tcp = bound
            .local_addrs()
            .iter()
            .find_map(|a| match a {
                BoundAddr::Tcp(sa) => Some(sa.to_string()),
                _ => None,
            })
            .unwrap();
        let svc = DispatcherService::new(
            handler,
            log,
            config.server.max_recv_message_size.as_usize(),
            config.server.max_send_message_size.as_usize(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(svc, async move {
            let _ = stopped.await;
        }));
        TestServer {
            tcp,
            unix: format!("unix://{}", sock.display()),
            capture,
            sink,
            stop: Some(stop),
            task: Some(task),
            _guard: guard,
            _tracing: tracing,
            _dir: dir,
        }
    }

    /// Waits until `n` records were written, then returns the whole log.
    pub async fn log_after(&self, n: u64) -> String {
        for _ in 0..500 {
            if self.sink.written() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            self.sink.written() >= n,
            "only {} of {n} log records arrived",
            self.sink.written()
        );
        String::from_utf8(self.capture.0.lock().unwrap().clone()).unwrap()
    }

    /// JSON-format records with the given `message`, once `n` of them arrived.
    pub async fn json_records(&self, n: usize, message: &str) -> Vec<serde_json::Value> {
        // Parse again only when the sink wrote more records (a record may be
        // tens of megabytes).
        let mut seen = u64::MAX;
        for _ in 0..1000 {
            let written = self.sink.written();
            if written != seen {
                seen = written;
                let recs = self.parse_records(message);
                if recs.len() >= n {
                    return recs;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let recs = self.parse_records(message);
        assert!(
            recs.len() >= n,
            "only {} of {n} {message:?} records arrived",
            recs.len()
        );
        recs
    }

    fn parse_records(&self, message: &str) -> Vec<serde_json::Value> {
        let log = self.capture.0.lock().unwrap().clone();
        // Only whole lines: a large record may be half written.
        let whole = log.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let log = String::from_utf8_lossy(&log[..whole]);
        log.split('\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("{e}: {:.300}", l))
            })
            .filter(|v| v["message"] == message)
            .collect()
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub async fn stop(mut self) {
        self.trigger_shutdown();
        let res = tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap()).await;
        res.expect("server stops in time").unwrap().unwrap();
    }
}
