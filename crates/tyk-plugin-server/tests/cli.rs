//! The binary as users and scripts run it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tyk-plugin-server");

fn fixture(name: &str) -> String {
    format!(
        "{}/../tyk-coprocess/tests/fixtures/wire/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A `serve` process; killed on drop.
struct Served {
    child: Child,
    tcp: String,
    lines: std::sync::mpsc::Receiver<String>,
    /// The log records before the first TCP "listening" one.
    startup: Vec<serde_json::Value>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str]) -> Served {
    serve_with_env(args, &[])
}

fn serve_with_env(args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // The server prints where it listens: that is how we learn the port.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut startup = Vec::new();
    let tcp = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("listening line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "listening" {
            let addr = v["address"].as_str().unwrap();
            if let Some(a) = addr.strip_prefix("tcp://") {
                break a.to_string();
            }
        }
        startup.push(v);
    };
    Served {
        child,
        tcp,
        lines: rx,
        startup,
    }
}

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn dispatch_sends_a_json_object_and_prints_the_reply() {
    let srv = serve(&[]);
    for name in ["pre_petstore", "response_multivalue", "unicode"] {
        let path = fixture(&format!("{name}.json"));
        let (code, out, err) = run(&["dispatch", "--target", &srv.tcp, &path], None);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            json(&out),
            json(&std::fs::read_to_string(&path).unwrap()),
            "{name}"
        );
    }
    // From stdin, compact.
    let input = r#"{"hookType":"Post","hookName":"h","request":{"url":"/x"}}"#;
    let (code, out, _) = run(&["dispatch", "-t", &srv.tcp, "--compact", "-"], Some(input));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), input);
    // Logged by the server as the same Object.
    let rec = loop {
        let v = json(&srv.lines.recv_timeout(Duration::from_secs(10)).unwrap());
        if v["message"] == "dispatch" && v["hook_name"] == "h" {
            break v;
        }
    };
    assert_eq!(rec["object"], json(input));
}

/// One worker: tokio's single-threaded runtime; more: the multi-threaded one.
/// Either serves calls.
#[test]
fn the_runtime_follows_the_worker_count() {
    for (workers, flavor) in [("1", "CurrentThread"), ("2", "MultiThread")] {
        let srv = serve_with_env(&[], &[("TYK_PLUGIN_SERVER__WORKERS", workers)]);
        let started = srv
            .startup
            .iter()
            .find(|v| v["message"] == "runtime started")
            .expect("runtime line");
        assert_eq!(started["runtime"], flavor, "{started}");
        assert_eq!(started["workers"].to_string(), workers);
        let path = fixture("pre_petstore.json");
        let (code, out, err) = run(&["dispatch", "--target", &srv.tcp, &path], None);
        assert_eq!(code, 0, "{err}");
        assert_eq!(json(&out), json(&std::fs::read_to_string(&path).unwrap()));
    }
}

#[test]
fn dispatch_builds_an_object_from_flags_like_the_gateway() {
    let srv = serve(&[]);
    let (code, out, err) = run(
        &[
            "dispatch",
            "-t",
            &srv.tcp,
            "--hook-type",
            "post_key_auth",
            "--hook-name",
            "MyHook",
            "-X",
            "POST",
            "--url",
            "/pet?status=sold&status=x",
            "-H",
            "Content-Type: application/json",
            "-b",
            r#"{"a":1}"#,
            "--api-id",
            "api1",
            "--org-id",
            "org1",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["hookType"], "PostKeyAuth");
    assert_eq!(v["hookName"], "MyHook");
    let r = &v["request"];
    assert_eq!(r["method"], "POST");
    assert_eq!(r["params"]["status"], "sold");
    assert_eq!(r["headers"]["Content-Type"], "application/json");
    assert_eq!(r["body"], r#"{"a":1}"#);
    assert_eq!(r["rawBody"], "eyJhIjoxfQ==");
    assert_eq!(r["returnOverrides"]["responseCode"], -1);
    assert_eq!(v["spec"]["APIID"], "api1");
}

#[test]
fn dispatch_event_and_errors_a_user_can_cause() {
    let srv = serve(&[]);
    let (code, out, err) = run(
        &[
            "dispatch-event",
            "-t",
            &srv.tcp,
            "-p",
            r#"{"message":{"Type":"KeyExpired"}}"#,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("EventReply"));

    let (code, _, err) = run(
        &["dispatch", "-t", &srv.tcp, "-"],
        Some("{\"hookType\": 3.5}"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("invalid coprocess.Object JSON"), "{err}");

    let (code, _, err) = run(
        &[
            "dispatch",
            "-t",
            "127.0.0.1:1",
            &fixture("pre_petstore.json"),
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect to 127.0.0.1:1"), "{err}");

    let (code, _, err) = run(&["dispatch", "-t", "unix://relative.sock"], None);
    assert_eq!(code, 1);
    assert!(err.contains("invalid target"), "{err}");

    let (code, _, err) = run(&["dispatch", "--hook-type", "middle"], None);
    assert_eq!(code, 2, "clap usage error");
    assert!(err.contains("post_key_auth"), "{err}");
}

#[test]
fn check_config_validates_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "log:\n  format: json\nserver:\n  listen: [\"unix:///tmp/x.sock\", \"0.0.0.0:50051\"]\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check-config", good.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("OK")
            && out.contains("format = \"json\"")
            && out.contains("unix:///tmp/x.sock"),
        "{out}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nmax_concurrent_streams = \"many\"\n").unwrap();
    let (code, _, err) = run(&["check-config", bad.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("max_concurrent_streams"), "{err}");

    let (code, out, _) = run(&["check-config"], None);
    assert_eq!(code, 0);
    assert!(out.contains("tcp://127.0.0.1:50051"));
}

#[test]
fn configuration_errors_stop_the_server_before_it_binds() {
    // The first address is fine, the second is not: nothing may be bound.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let (code, out, err) = run(
        &[
            "serve",
            "--listen",
            &addr,
            "--listen",
            "unix:///no/such/dir/p.sock",
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("/no/such/dir") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!out.contains("listening"), "{out}");
    assert!(start.elapsed() < Duration::from_secs(10));

    let out = Command::new(BIN)
        .args(["serve", "--listen", &addr])
        .env("TYK_PLUGIN_LOG__LEVEL", "info,=[")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.level"), "{err}");
}

#[test]
fn sigterm_drains_and_removes_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("p.sock");
    let mut srv = serve(&["--listen", &format!("unix://{}", sock.display())]);
    assert!(sock.exists());
    // A Dispatch over the socket works.
    let (code, _, err) = run(
        &[
            "dispatch",
            "-t",
            &format!("unix://{}", sock.display()),
            &fixture("pre_petstore.json"),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let pid = srv.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "socket file left behind");
    // The reader thread may still be delivering the last lines: read until
    // it ends (at the closed pipe).
    let mut rest = Vec::new();
    while let Ok(line) = srv.lines.recv_timeout(Duration::from_secs(10)) {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");
}
