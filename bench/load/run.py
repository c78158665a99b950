#!/usr/bin/env python3
"""Load suite for tyk-plugin-server (issue 4). Python 3 standard library only.

One HTTP/2 connection with C concurrent streams (how the gateway connects),
h2load on core 1, each server on core 0, over 127.0.0.1:

  rust-file     tyk-plugin-server, every Object logged as JSON to a file (the reference job)
  rust-devnull  the same, logging to /dev/null
  python        bench/reference/server.py (grpc.aio, MessageToJson, logging to a file)
  tonic-echo    bench/tonic-echo: bare tonic + prost echo, the ceiling of the stack

Servers x concurrency x payload are interleaved, ROUNDS times; each cell is a
separate warm-up h2load run (own connection) then the measured run. Success is
checked on the bytes: every reply is the full echo, so h2load's DATA bytes must
equal succeeded x frame size (a gRPC error reply has no DATA), else the suite fails.

Then large bodies (fresh server per size: VmHWM is a high-water mark), the
criterion micro-benchmarks, the tables (bench-out/tables.md, and BENCHMARKS.md
between its markers), the chart (docs/bench/throughput.png).

    python3 bench/load/run.py                 # everything (what `make bench` runs)
    python3 bench/load/run.py --quick         # 1 round, 1 s, for trying it out
    python3 bench/load/run.py --help
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "crates/tyk-coprocess/tests/fixtures/wire")
URL_PATH = "/coprocess.Dispatcher/Dispatch"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MARK_BEGIN = "<!-- bench:results:begin -->"
MARK_END = "<!-- bench:results:end -->"

SERVERS = ["rust-file", "rust-devnull", "python", "tonic-echo"]
SERVER_DESC = {
    "rust-file": "tyk-plugin-server, JSON log of every Object to a file",
    "rust-devnull": "tyk-plugin-server, JSON log to /dev/null",
    "python": "Python reference (grpc.aio, MessageToJson, logging to a file)",
    "tonic-echo": "bare tonic + prost echo (ceiling)",
}
BASE_PORT = 50071


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def die(msg):
    print(f"bench: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description="tyk-plugin-server load suite")
    p.add_argument("--out", default=os.path.join(ROOT, "bench-out"))
    p.add_argument("--venv", default=os.path.join(ROOT, "target/py-venv"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=float, default=3.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run")
    p.add_argument("--conc", default="1,16,64", help="streams on the one connection")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--payloads", default="pre_petstore,response_multivalue")
    p.add_argument("--large-sizes", default="1000,16000,256000,1000000,4000000,20000000",
                   help="body sizes in bytes (each sent as body and raw_body)")
    p.add_argument("--large-calls", type=int, default=5)
    p.add_argument("--server-core", default="0")
    p.add_argument("--client-core", default="1")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--no-load", action="store_true", help="skip the concurrency grid")
    p.add_argument("--no-large", action="store_true")
    p.add_argument("--no-criterion", action="store_true")
    p.add_argument("--criterion-args", default="--warm-up-time 0.2 --measurement-time 0.5",
                   help="passed to the criterion benches after --")
    p.add_argument("--benchmarks", default=os.path.join(ROOT, "BENCHMARKS.md"),
                   help="file whose marked section receives the tables ('' = none)")
    p.add_argument("--chart", default=os.path.join(ROOT, "docs/bench/throughput.png"))
    p.add_argument("--quick", action="store_true", help="1 round of 1 s, 2 large sizes")
    p.add_argument("--from-results", metavar="JSON",
                   help="run nothing: redo tables, chart and BENCHMARKS.md from a results.json")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.secs, a.warmup = 1, 1.0, 0.5
        a.large_sizes = "1000,1000000"
        a.large_calls = 3
    a.conc = [int(c) for c in a.conc.split(",") if c]
    a.servers = [s for s in a.servers.split(",") if s]
    for s in a.servers:
        if s not in SERVERS:
            die(f"unknown server {s!r} (known: {', '.join(SERVERS)})")
    a.payloads = [x for x in a.payloads.split(",") if x]
    a.large_sizes = [int(x) for x in a.large_sizes.split(",") if x]
    return a


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "h2load": out(["h2load", "--version"]),
        "rustc": out(["rustc", "--version"]),
        "git": out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "python": out([python_of_venv(ARGS.venv), "--version"]),
    }


def python_of_venv(venv):
    return os.path.join(venv, "bin", "python")


# ---------------------------------------------------------------- payloads

def frame(wire):
    return b"\x00" + struct.pack(">I", len(wire)) + wire


def prepare_payloads(a):
    d = os.path.join(a.out, "payloads")
    os.makedirs(d, exist_ok=True)
    payloads = {}
    for name in a.payloads:
        with open(os.path.join(FIXTURES, name + ".bin"), "rb") as f:
            body = frame(f.read())
        path = os.path.join(d, name + ".frame")
        with open(path, "wb") as f:
            f.write(body)
        payloads[name] = {"path": path, "frame_bytes": len(body)}
    large = {}
    if not a.no_large and a.large_sizes:
        py = python_of_venv(a.venv)
        res = subprocess.run(
            [py, os.path.join(ROOT, "bench/load/large_objects.py"),
             "--bindings", os.path.join(a.venv, "coprocess-bindings"),
             "--fixture", os.path.join(FIXTURES, "post_json_body.bin"),
             "--out", d] + [str(s) for s in a.large_sizes],
            check=True, capture_output=True, text=True)
        for line in res.stdout.split("\n"):
            if line.strip():
                size, path, nbytes = line.split()
                large[int(size)] = {"path": path, "frame_bytes": int(nbytes)}
    return payloads, large


# ---------------------------------------------------------------- servers

class Server:
    def __init__(self, name, a, port, logdir):
        self.name, self.port = name, port
        self.logfile = None
        rel = os.path.join(ROOT, "target/release")
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        if name in ("rust-file", "rust-devnull"):
            out = "/dev/null"
            if name == "rust-file":
                out = self.logfile = os.path.join(logdir, f"{name}.log")
            cmd = [os.path.join(rel, "tyk-plugin-server"), "serve",
                   "--listen", f"127.0.0.1:{port}", "--log-format", "json",
                   "--log-output", out]
        elif name == "python":
            self.logfile = os.path.join(logdir, f"{name}.log")
            cmd = [python_of_venv(a.venv), os.path.join(ROOT, "bench/reference/server.py"),
                   "--listen", f"127.0.0.1:{port}", "--log-file", self.logfile]
        else:
            cmd = [os.path.join(rel, "tonic-echo"), "--listen", f"127.0.0.1:{port}"]
        if self.logfile and os.path.exists(self.logfile):
            os.truncate(self.logfile, 0)
        self.cmd = ["taskset", "-c", a.server_core] + cmd
        self.stderr = open(os.path.join(logdir, f"{name}.stderr"), "ab")
        # taskset execs the server: the pid is the server's.
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self.stderr,
                                     stderr=self.stderr, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                die(f"{name} exited with {self.proc.returncode} at start: {' '.join(self.cmd)}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    die(f"{name} did not listen on port {port} within 30 s")
                time.sleep(0.05)

    def cpu_ticks(self):
        with open(f"/proc/{self.pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)

    def status_kb(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def threads(self):
        return self.status_kb("Threads")

    def log_bytes_and_truncate(self):
        if not self.logfile or not os.path.exists(self.logfile):
            return 0
        n = os.path.getsize(self.logfile)
        os.truncate(self.logfile, 0)  # opened with O_APPEND: writes go on at 0
        return n

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


# ---------------------------------------------------------------- h2load

H2_RE = {
    "finished": re.compile(r"finished in ([\d.]+)(us|ms|s),"),
    "requests": re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                           r"(\d+) failed, (\d+) errored, (\d+) timeout"),
    "data": re.compile(r"\((\d+)\) data"),
}


def h2load(a, port, payload, conc, secs=None, n=None, logfile=None):
    cmd = ["taskset", "-c", a.client_core, "h2load", "-c", "1", "-m", str(conc), "-t", "1"]
    if secs is not None:
        cmd += ["-D", f"{int(round(secs * 1000))}ms"]
    if n is not None:
        cmd += ["-n", str(n)]
    if logfile:
        if os.path.exists(logfile):
            os.remove(logfile)  # h2load appends
        cmd += ["--log-file", logfile]
    cmd += ["-d", payload, "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://127.0.0.1:{port}{URL_PATH}"]
    timeout = (secs or 0) + 120 + (n or 0) * 30
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = res.stdout
    if res.returncode != 0:
        die(f"h2load exited {res.returncode}: {' '.join(cmd)}\n{out}\n{res.stderr}")
    m = H2_RE["finished"].search(out)
    r = H2_RE["requests"].search(out)
    d = H2_RE["data"].search(out)
    if not (m and r and d):
        die(f"cannot parse h2load output of {' '.join(cmd)}:\n{out}")
    dur = float(m.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1}[m.group(2)]
    total, started, done, ok, failed, errored, tmo = map(int, r.groups())
    return {"cmd": cmd, "duration_s": dur, "total": total, "started": started, "done": done, "succeeded": ok,
            "failed": failed, "errored": errored, "timeout": tmo,
            "data_bytes": int(d.group(1)), "stdout": out}


def check_echo(res, frame_bytes, what):
    """Every reply is the full echo: DATA bytes = succeeded x frame (a gRPC error reply
    carries none). Streams cut at the end of a timed run may have received their DATA
    without being done, so up to (started - succeeded) extra frames are allowed."""
    lo = res["succeeded"] * frame_bytes
    hi = res["started"] * frame_bytes
    problems = []
    if res["succeeded"] == 0:
        problems.append("no request succeeded")
    if res["failed"] or res["errored"] or res["timeout"] or res["done"] != res["succeeded"]:
        problems.append(f"{res['failed']} failed, {res['errored']} errored, "
                        f"{res['timeout']} timeout, {res['done']} done vs {res['succeeded']} ok")
    if not lo <= res["data_bytes"] <= hi:
        problems.append(f"DATA bytes {res['data_bytes']} not in [{res['succeeded']}, "
                        f"{res['started']}] x {frame_bytes} (replies that are not the full "
                        "echo: gRPC errors?)")
    if problems:
        die(f"{what}: " + "; ".join(problems) + "\n" + res["stdout"])


def latencies(logfile):
    """h2load --log-file: start time (µs), HTTP status, duration (µs), tab-separated."""
    d = []
    with open(logfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "200":
                d.append(int(parts[2]))
    d.sort()
    return d


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# ---------------------------------------------------------------- suites

def load_grid(a, payloads, logdir):
    servers = {}
    for i, name in enumerate(a.servers):
        servers[name] = Server(name, a, BASE_PORT + i, logdir)
        log(f"started {name} pid {servers[name].pid} on :{servers[name].port}")
    runs = []
    reqlog = os.path.join(a.out, "h2load-requests.log")
    try:
        for rnd in range(a.rounds):
            # rotate the server order each round so no server always goes first
            order = a.servers[rnd % len(a.servers):] + a.servers[:rnd % len(a.servers)]
            for pname, p in payloads.items():
                for conc in a.conc:
                    for name in order:
                        s = servers[name]
                        what = f"round {rnd + 1} {pname} C={conc} {name}"
                        w = h2load(a, s.port, p["path"], conc, secs=a.warmup)
                        check_echo(w, p["frame_bytes"], what + " (warm-up)")
                        s.log_bytes_and_truncate()
                        t0 = s.cpu_ticks()
                        r = h2load(a, s.port, p["path"], conc, secs=a.secs, logfile=reqlog)
                        t1 = s.cpu_ticks()
                        check_echo(r, p["frame_bytes"], what)
                        if not s.alive():
                            die(f"{what}: server died")
                        lat = latencies(reqlog)
                        n = r["succeeded"]
                        rec = {
                            "round": rnd + 1, "payload": pname, "conc": conc, "server": name,
                            "requests": n, "duration_s": r["duration_s"],
                            "rps": n / r["duration_s"],
                            "p50_us": pct(lat, 50), "p99_us": pct(lat, 99),
                            "max_us": lat[-1] if lat else None,
                            "cpu_us_per_req": (t1 - t0) * 1e6 / CLK_TCK / n,
                            "hwm_kb": s.status_kb("VmHWM"), "rss_kb": s.status_kb("VmRSS"),
                            "threads": s.threads(),
                            "log_bytes_per_req": s.log_bytes_and_truncate() / n,
                            "data_bytes": r["data_bytes"], "frame_bytes": p["frame_bytes"],
                            "h2load": " ".join(r["cmd"]),
                        }
                        runs.append(rec)
                        log(f"{what}: {rec['rps']:.0f} req/s, p50 {rec['p50_us']} µs, "
                            f"p99 {rec['p99_us']} µs, {rec['cpu_us_per_req']:.1f} µs CPU/req, "
                            f"HWM {rec['hwm_kb'] / 1024:.1f} MiB")
    finally:
        peaks = {}
        for name, s in servers.items():
            if s.alive():
                peaks[name] = s.status_kb("VmHWM")
            s.stop()
        if os.path.exists(reqlog):
            os.remove(reqlog)
    return runs, peaks


def large_suite(a, large, logdir):
    out = []
    reqlog = os.path.join(a.out, "h2load-large.log")
    for i, name in enumerate(a.servers):
        for size in sorted(large):
            p = large[size]
            s = Server(name, a, BASE_PORT + 10 + i, logdir)
            try:
                idle = s.status_kb("VmHWM")
                t0 = s.cpu_ticks()
                r = h2load(a, s.port, p["path"], 1, n=a.large_calls, logfile=reqlog)
                t1 = s.cpu_ticks()
                what = f"large {name} body {size}"
                check_echo(r, p["frame_bytes"], what)
                lat = latencies(reqlog)
                rec = {"server": name, "body_bytes": size, "frame_bytes": p["frame_bytes"],
                       "calls": r["succeeded"], "rtt_ms_median": statistics.median(lat) / 1000,
                       "rtt_ms_min": lat[0] / 1000, "rtt_ms_max": lat[-1] / 1000,
                       "cpu_ms_per_call": (t1 - t0) * 1e3 / CLK_TCK / r["succeeded"],
                       "idle_hwm_kb": idle, "hwm_kb": s.status_kb("VmHWM")}
                time.sleep(0.5)  # let the log writer drain before counting
                rec["log_bytes_per_call"] = s.log_bytes_and_truncate() / r["succeeded"]
                out.append(rec)
                log(f"{what}: rtt {rec['rtt_ms_median']:.2f} ms, "
                    f"HWM {rec['hwm_kb'] / 1024:.1f} MiB (idle {idle / 1024:.1f})")
            finally:
                s.log_bytes_and_truncate()
                s.stop()
    if os.path.exists(reqlog):
        os.remove(reqlog)
    return out


def criterion_suite(a):
    extra = a.criterion_args.split()
    for pkg, bench in (("tyk-coprocess", "wire"), ("tyk-plugin", "dispatch")):
        log(f"criterion: cargo bench -p {pkg} --bench {bench} -- {' '.join(extra)}")
        with open(os.path.join(a.out, f"criterion-{bench}.log"), "w") as out:
            run(["cargo", "bench", "--locked", "-q", "-p", pkg, "--bench", bench, "--"] + extra,
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    results = []
    base = os.path.join(ROOT, "target/criterion")
    for dirpath, _dirs, files in os.walk(base):
        if os.path.basename(dirpath) == "new" and "estimates.json" in files \
                and "benchmark.json" in files:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                bj = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
            results.append({"group": bj["group_id"], "function": bj.get("function_id"),
                            "throughput": bj.get("throughput"),
                            "mean_ns": est["mean"]["point_estimate"],
                            "median_ns": est["median"]["point_estimate"]})
    return results


# ---------------------------------------------------------------- report

def med_range(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    return f"{fmt(statistics.median(vals))} [{fmt(min(vals))}–{fmt(max(vals))}]"


def f0(v):
    return f"{v:,.0f}"


def f1(v):
    return f"{v:,.1f}"


def cells(runs, payload, server, conc):
    return [r for r in runs if r["payload"] == payload and r["server"] == server
            and r["conc"] == conc]


def median_of(runs, payload, server, conc, key):
    c = cells(runs, payload, server, conc)
    return statistics.median(r[key] for r in c) if c else None


def fmt_bytes(n):
    for unit, k in (("MB", 1e6), ("KB", 1e3)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n} B"


def tables(res):
    a = res["args"]
    runs, peaks = res["runs"], res["peak_hwm_kb"]
    L = []
    m = res["machine"]
    L.append(f"Run of {m['date']} on {m['nproc']} × {m['cpu_model']}, kernel {m['kernel']}, "
             f"load average at start {' '.join(m['loadavg_at_start'])}; git {m['git']}, "
             f"{m['rustc']}, {m['h2load']}, {m['python']}. The suite took {res.get('elapsed_s', 0):.0f} s "
             "(build, grid, large bodies, criterion).")
    L.append("")
    if runs:
        L.append(f"One HTTP/2 connection, C concurrent streams, {a['rounds']} interleaved rounds of "
                 f"{a['secs']:g} s (each after a {a['warmup']:g} s warm-up run); "
                 f"median [min–max] over the rounds. Server on core {a['server_core']}, "
                 f"h2load on core {a['client_core']}. CPU = server utime+stime per request. "
                 "Every reply was checked to be the full echo.")
        L.append("")
        for payload in a["payloads"]:
            fb = next((r["frame_bytes"] for r in runs if r["payload"] == payload), 0)
            L.append(f"#### {payload} ({fb} bytes per gRPC frame)")
            L.append("")
            L.append("| server | C | req/s | p50 µs | p99 µs | CPU µs/req | log B/req |")
            L.append("|---|---:|---:|---:|---:|---:|---:|")
            for server in a["servers"]:
                for conc in a["conc"]:
                    c = cells(runs, payload, server, conc)
                    if not c:
                        continue
                    lb = statistics.median(r["log_bytes_per_req"] for r in c)
                    L.append(
                        f"| {server} | {conc} | {med_range([r['rps'] for r in c], f0)} | "
                        f"{med_range([r['p50_us'] for r in c], f0)} | "
                        f"{med_range([r['p99_us'] for r in c], f0)} | "
                        f"{med_range([r['cpu_us_per_req'] for r in c], f1)} | "
                        f"{f0(lb) if lb else '–'} |")
            L.append("")
        L.append("Peak RSS (VmHWM) of each server over the whole grid above:")
        L.append("")
        L.append("| server | what | peak RSS MiB |")
        L.append("|---|---|---:|")
        for server in a["servers"]:
            hwm = peaks.get(server) or max((r["hwm_kb"] for r in runs if r["server"] == server),
                                           default=0)
            L.append(f"| {server} | {SERVER_DESC[server]} | {hwm / 1024:.1f} |")
        L.append("")
    if res["large"]:
        L.append(f"#### Large bodies: Post hook, body and raw_body both N bytes; "
                 f"{a['large_calls']} sequential calls on one connection, fresh server per size")
        L.append("")
        L.append("| server | body N | message | RTT ms median [min–max] | server CPU ms/call "
                 "| idle RSS MiB | peak RSS MiB | peak / message | (peak − idle) / message "
                 "| log bytes/call |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in res["large"]:
            msg = r["frame_bytes"] - 5
            L.append(f"| {r['server']} | {fmt_bytes(r['body_bytes'])} | {fmt_bytes(msg)} | "
                     f"{r['rtt_ms_median']:.2f} [{r['rtt_ms_min']:.2f}–{r['rtt_ms_max']:.2f}] | "
                     f"{r['cpu_ms_per_call']:.1f} | {r['idle_hwm_kb'] / 1024:.1f} | "
                     f"{r['hwm_kb'] / 1024:.1f} | {r['hwm_kb'] * 1024 / msg:.2f} | "
                     f"{(r['hwm_kb'] - r['idle_hwm_kb']) * 1024 / msg:.2f} | "
                     f"{fmt_bytes(r['log_bytes_per_call']) if r.get('log_bytes_per_call') else '–'} |")
        L.append("")
    if res["criterion"]:
        L.append("#### Micro-benchmarks (criterion, median time per iteration)")
        L.append("")
        wire = [c for c in res["criterion"] if c["group"].startswith("wire/")]
        ops = ["prost_decode", "json_compact", "json_pretty", "validate", "scan_summary",
               "prost_encode", "unknown_collect"]
        if wire:
            L.append("| fixture | bytes | " + " | ".join(ops) + " |")
            L.append("|---|---:|" + "---:|" * len(ops))
            fixtures = []
            for c in wire:
                if c["group"] not in fixtures:
                    fixtures.append(c["group"])
            for g in fixtures:
                by = {c["function"]: c for c in wire if c["group"] == g}
                tp = next(iter(by.values())).get("throughput") or {}
                nbytes = tp.get("Bytes", tp.get("BytesDecimal", ""))
                L.append(f"| {g[5:]} | {nbytes} | " + " | ".join(
                    fmt_ns(by[o]["median_ns"]) if o in by else "–" for o in ops) + " |")
            L.append("")
        disp = [c for c in res["criterion"] if c["group"].startswith("dispatch/")]
        if disp:
            L.append("| in-process Router dispatch, pre_petstore | time |")
            L.append("|---|---:|")
            for c in sorted(disp, key=lambda c: c["function"] or ""):
                L.append(f"| {c['function']} | {fmt_ns(c['median_ns'])} |")
            L.append("")
    L += targets(res)
    return "\n".join(L) + "\n"


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def targets(res):
    a, runs = res["args"], res["runs"]
    P = "pre_petstore"
    rows = []

    def verdict(ok):
        return "n/a" if ok is None else ("**met**" if ok else "**not met**")

    def get(server, conc, key, payload=P):
        return median_of(runs, payload, server, conc, key)

    rf64, py64, te64, dn64 = (get(s, 64, "rps") for s in
                              ("rust-file", "python", "tonic-echo", "rust-devnull"))
    if rf64 and py64:
        x = rf64 / py64
        rows.append(("reference job at C=64 ≥ 15× Python req/s", f"{x:.1f}×", verdict(x >= 15)))
    if rf64 and te64:
        x = rf64 / te64
        rows.append(("reference job at C=64 ≥ 85% of bare tonic", f"{x:.0%}", verdict(x >= 0.85)))
    p99 = get("rust-file", 16, "p99_us")
    if p99 is not None:
        rows.append(("p99 at C=16 ≤ 1 ms (reference job)", f"{p99:,.0f} µs", verdict(p99 <= 1000)))
    cpu = {c: get("rust-file", c, "cpu_us_per_req") for c in a["conc"]}
    cpu = {c: v for c, v in cpu.items() if v is not None}
    if cpu:
        top = max(cpu)
        others = ", ".join(f"C={c}: {v:.1f}" for c, v in cpu.items() if c != top)
        rows.append((f"server CPU ≤ 30 µs/request on petstore (reference job, under load: "
                     f"C={top})", f"{cpu[top]:.1f} µs ({others})", verdict(cpu[top] <= 30)))
    hwm = res["peak_hwm_kb"].get("rust-file")
    if hwm:
        rows.append(("peak RSS under load ≤ 20 MB (reference job)", f"{hwm / 1024:.1f} MiB",
                     verdict(hwm * 1024 <= 20e6)))
    if rf64 and dn64:
        cost = 1 - rf64 / dn64
        rows.append(("file logging ≤ 15% throughput cost vs /dev/null (C=64)",
                     f"{cost:.0%}", verdict(cost <= 0.15)))
    big = [r for r in res["large"] if r["server"] == "rust-file"]
    if big:
        top = max(big, key=lambda r: r["body_bytes"])
        ratio = top["hwm_kb"] * 1024 / (top["frame_bytes"] - 5)
        rows.append((f"{fmt_bytes(top['body_bytes'])} body: peak RSS ≤ 3× message size",
                     f"{ratio:.2f}×", verdict(ratio <= 3)))
        ref = [r for r in big if r["body_bytes"] >= 1_000_000 and r is not top]
        if ref:
            lo = min(ref, key=lambda r: r["body_bytes"])
            per_lo = lo["rtt_ms_median"] / lo["frame_bytes"]
            per_top = top["rtt_ms_median"] / top["frame_bytes"]
            g = per_top / per_lo
            rows.append((f"time linear in size (ms per MB at {fmt_bytes(top['body_bytes'])} vs "
                         f"{fmt_bytes(lo['body_bytes'])}, within 1.5×)",
                         f"{per_top * 1e6:.1f} vs {per_lo * 1e6:.1f} ms/MB ({g:.2f}×)",
                         verdict(g <= 1.5)))
    if not rows:
        return []
    L = ["#### Targets (issue 4), from this run", "",
         "| target | now | verdict |", "|---|---:|---|"]
    L += [f"| {t} | {v} | {ok} |" for t, v, ok in rows]
    return L + [""]


def update_benchmarks(path, text):
    if not path or not os.path.exists(path):
        return False
    with open(path) as f:
        doc = f.read()
    if MARK_BEGIN not in doc or MARK_END not in doc:
        return False
    head, rest = doc.split(MARK_BEGIN, 1)
    _, tail = rest.split(MARK_END, 1)
    with open(path, "w") as f:
        f.write(head + MARK_BEGIN + "\n" + text + MARK_END + tail)
    return True


# ---------------------------------------------------------------- main

ARGS = None


def main():
    global ARGS
    a = ARGS = parse_args()
    for tool in ("h2load", "taskset", "cargo"):
        if not shutil.which(tool):
            die(f"{tool} not found (make bench installs nghttp2-client for h2load)")
    if "python" in a.servers or not a.no_large:
        if not os.path.exists(os.path.join(a.venv, "coprocess-bindings")):
            die(f"no venv with bindings at {a.venv}: run bench/reference/setup.sh")
    if a.from_results:
        with open(a.from_results) as f:
            report(a, json.load(f))
        return
    os.makedirs(a.out, exist_ok=True)
    logdir = os.path.join(a.out, "logs")
    os.makedirs(logdir, exist_ok=True)
    t_start = time.time()
    if not a.no_build:
        log("cargo build --release -p tyk-plugin-server -p tonic-echo")
        run(["cargo", "build", "--locked", "--release", "-q", "-p", "tyk-plugin-server",
             "-p", "tonic-echo"], cwd=ROOT)
    payloads, large = prepare_payloads(a)
    res = {"machine": machine(), "args": {k: v for k, v in vars(a).items()},
           "runs": [], "peak_hwm_kb": {}, "large": [], "criterion": []}
    if not a.no_load:
        res["runs"], res["peak_hwm_kb"] = load_grid(a, payloads, logdir)
    if large:
        res["large"] = large_suite(a, large, logdir)
    if not a.no_criterion:
        res["criterion"] = criterion_suite(a)
    res["elapsed_s"] = round(time.time() - t_start, 1)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    report(a, res)


def report(a, res):
    os.makedirs(a.out, exist_ok=True)
    text = tables(res)
    with open(os.path.join(a.out, "tables.md"), "w") as f:
        f.write(text)
    print()
    print(text)
    if res["runs"] and a.chart:
        py = python_of_venv(a.venv)
        src = a.from_results or os.path.join(a.out, "results.json")
        ok = subprocess.run([py, os.path.join(ROOT, "bench/load/chart.py"),
                             src, a.chart]).returncode == 0
        log(f"chart {'written to ' + a.chart if ok else 'FAILED (matplotlib in the venv?)'}")
    if update_benchmarks(a.benchmarks, text):
        log(f"tables written into {a.benchmarks}")
    log(f"done in {res['elapsed_s']:.0f} s (suite); raw results in "
        f"{a.from_results or os.path.join(a.out, 'results.json')}")


if __name__ == "__main__":
    main()
