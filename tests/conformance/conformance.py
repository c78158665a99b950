#!/usr/bin/env python3
"""Conformance suite for any `coprocess.Dispatcher` gRPC server (Tyk rich-plugin protocol).

Starts the server under test, talks to it with independent clients (Python grpcio here,
optionally the grpc-go client from tests/conformance/go), prints one line per check
("PASS name" / "FAIL name: detail") and closes with "N passed, M failed".
Exit status 0 only if nothing failed.

The server command is given after "--"; these placeholders are substituted in every
argument:  {tcp} -> 127.0.0.1:PORT   {port} -> PORT   {unix} -> /abs/path/to.sock
{tmp} -> the run's temporary directory.

Expected values come only from the fixtures and from Python protobuf (bindings generated
from our protos by bench/reference/setup.sh).
"""
import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

DISPATCH = "/coprocess.Dispatcher/Dispatch"
DISPATCH_EVENT = "/coprocess.Dispatcher/DispatchEvent"
MAX_MESSAGE = 100 * 1024 * 1024
BIG_BODY_LEN = 20_000_000
PROTO_FILES = None  # filled from --proto-dir

# --------------------------------------------------------------------------- results


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def ok(self, name, note=""):
        self.passed += 1
        print(f"PASS {name}" + (f"  ({note})" if note else ""), flush=True)

    def fail(self, name, detail):
        self.failed += 1
        detail = str(detail).replace("\n", " | ")
        if len(detail) > 600:
            detail = detail[:600] + "…"
        self.failures.append(name)
        print(f"FAIL {name}: {detail}", flush=True)

    def check(self, name, fn, *a, **kw):
        """Run fn; it passes unless it raises. Returns fn's value or None."""
        t0 = time.monotonic()
        try:
            v = fn(*a, **kw)
        except CheckFailed as e:
            self.fail(name, e)
            return None
        except Exception as e:  # noqa: BLE001 - every error is a failure of the check
            self.fail(name, f"{type(e).__name__}: {e}")
            if os.environ.get("CONFORMANCE_TRACEBACK"):
                traceback.print_exc()
            return None
        dt = time.monotonic() - t0
        self.ok(name, f"{dt * 1000:.0f} ms" if dt > 1 else "")
        return v


class CheckFailed(Exception):
    pass


def require(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def first_difference(a, b, path="$"):
    """Human-readable location of the first difference between two parsed JSON values."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} {short(a)} != {type(b).__name__} {short(b)}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                return f"{path}.{k}: missing in logged, expected {short(b[k])}"
            if k not in b:
                return f"{path}.{k}: unexpected in logged: {short(a[k])}"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: list length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {short(a)} != {short(b)}"


def short(v, n=120):
    s = json.dumps(v, ensure_ascii=True) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + "…"


# --------------------------------------------------------------------------- protobuf helpers


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_len(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def field_varint(num, v):
    return varint(num << 3 | 0) + varint(v)


def field_fixed32(num, raw4):
    return varint(num << 3 | 5) + raw4


def field_fixed64(num, raw8):
    return varint(num << 3 | 1) + raw8


def load_bindings(bindings_dir):
    sys.path.insert(0, bindings_dir)
    import coprocess_object_pb2  # noqa: E402
    import coprocess_mini_request_object_pb2  # noqa: E402
    import coprocess_session_state_pb2  # noqa: E402
    return coprocess_object_pb2, coprocess_mini_request_object_pb2, coprocess_session_state_pb2


def canonical_json(msg):
    """What the server must log as `object`: MessageToJson with default options, parsed."""
    from google.protobuf.json_format import MessageToJson
    return json.loads(MessageToJson(msg))


def descriptor_summary(fdp):
    """Schema content of a FileDescriptorProto that must match (names, numbers, types)."""
    def msg(m):
        return {
            "fields": sorted((f.name, f.number, f.label, f.type, f.type_name) for f in m.field),
            "nested": {n.name: msg(n) for n in m.nested_type},
            "enums": {e.name: sorted((v.name, v.number) for v in e.value) for e in m.enum_type},
            "map_entry": m.options.map_entry,
        }
    return {
        "name": fdp.name,
        "package": fdp.package,
        "dependency": sorted(fdp.dependency),
        "messages": {m.name: msg(m) for m in fdp.message_type},
        "enums": {e.name: sorted((v.name, v.number) for v in e.value) for e in fdp.enum_type},
        "services": {s.name: sorted((x.name, x.input_type, x.output_type,
                                     x.client_streaming, x.server_streaming) for x in s.method)
                     for s in fdp.service},
    }


# --------------------------------------------------------------------------- server log


class LogTail:
    """Incrementally reads the server's log file and turns it into records (dicts).

    fmt "json": one JSON object per line, lines split on b"\\n" only (U+2028 may occur raw).
    fmt "reference": bench/reference/server.py's text log: "REQUEST START", MessageToJson,
    "REQUEST END" (-> {"message": "dispatch", "object": ...}) and "EVENT START", payload,
    "EVENT END" (-> {"message": "event", "payload": ...}).
    """

    def __init__(self, path, fmt):
        self.path = path
        self.fmt = fmt
        self.offset = 0
        self.partial = b""
        self.records = []
        self.bad_lines = 0
        self._ref_state = None  # (kind, [lines])

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        for line in lines:
            self._line(line.decode("utf-8", errors="replace"))

    def _line(self, line):
        if self.fmt == "json":
            if not line.strip():
                return
            try:
                rec = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                return
            if isinstance(rec, dict):
                self.records.append(rec)
            else:
                self.bad_lines += 1
            return
        # reference text format: "<date> <time> LEVEL message", continuation lines raw
        parts = line.split(" ", 3)
        prefixed = len(parts) == 4 and parts[2] in ("INFO", "WARNING", "ERROR", "DEBUG")
        text = parts[3] if prefixed else line
        st = self._ref_state
        if prefixed and text in ("REQUEST START", "EVENT START"):
            self._ref_state = ("dispatch" if text.startswith("REQUEST") else "event", [])
        elif prefixed and st and text == ("REQUEST END" if st[0] == "dispatch" else "EVENT END"):
            body = "\n".join(st[1])
            self._ref_state = None
            if st[0] == "dispatch":
                try:
                    self.records.append({"message": "dispatch", "object": json.loads(body)})
                except ValueError:
                    self.bad_lines += 1
            else:
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = body
                self.records.append({"message": "event", "payload": payload})
        elif st:
            st[1].append(text)

    def mark(self):
        self.poll()
        return len(self.records)

    def wait_for(self, start, message, pred, timeout):
        """Wait until a record with `message` after index `start` satisfies pred.
        Returns (record, None) or (None, last candidate record)."""
        deadline = time.monotonic() + timeout
        last = None
        checked = start
        while True:
            self.poll()
            for rec in self.records[checked:]:
                if rec.get("message") == message:
                    if pred(rec):
                        return rec, None
                    last = rec
            checked = len(self.records)
            if time.monotonic() >= deadline:
                return None, last
            time.sleep(0.02)


# --------------------------------------------------------------------------- server process


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, cmd, tmp, log_source):
        self.tmp = tmp
        self.port = free_port()
        self.sock = os.path.join(tmp, "tps.sock")
        subst = {"{tcp}": f"127.0.0.1:{self.port}", "{port}": str(self.port),
                 "{unix}": self.sock, "{tmp}": tmp}
        self.cmd = []
        for a in cmd:
            for k, v in subst.items():
                a = a.replace(k, v)
            self.cmd.append(a)
        self.stdout_path = os.path.join(tmp, "server.stdout")
        self.stderr_path = os.path.join(tmp, "server.stderr")
        self.log_path = self.stdout_path if log_source == "stdout" else self.stderr_path
        self.proc = None

    def start(self):
        print(f"# server: {shlex.join(self.cmd)}", flush=True)
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, start_new_session=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()

    def tail(self, path, lines=20, width=300, window=1 << 20):
        """Last `lines` lines of a log, each cut to `width` characters."""
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - window))
                data = f.read().decode("utf-8", errors="replace")
        except OSError as e:
            return f"<{e}>"
        out = data.split("\n")[-lines:]
        return "\n".join(l if len(l) <= width else l[:width] + f"… ({len(l)} chars)" for l in out)


# --------------------------------------------------------------------------- the suite


class Suite:
    def __init__(self, args, res, server, grpc_mod, pb):
        self.args = args
        self.res = res
        self.server = server
        self.grpc = grpc_mod
        self.obj_pb2, self.req_pb2, self.sess_pb2 = pb
        self.Object = self.obj_pb2.Object
        self.Event = self.obj_pb2.Event
        self.log = LogTail(server.log_path, args.log_format) if args.log_format != "none" else None
        self.fixtures = self._load_fixtures(args.fixtures)
        self.log_silent = False

    # ---- fixtures

    def _load_fixtures(self, d):
        out = []
        for name in sorted(os.listdir(d)):
            if not name.endswith(".bin"):
                continue
            stem = name[:-4]
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            jpaths = [os.path.join(d, stem + ".current-proto.json"), os.path.join(d, stem + ".json")]
            ref_json = None
            for p in jpaths:
                if os.path.exists(p):
                    with open(p, encoding="utf-8") as f:
                        ref_json = (os.path.basename(p), json.load(f))
                    break
            out.append({"name": stem, "bytes": data, "event": stem.startswith("event_"), "ref": ref_json})
        return out

    def check_fixtures_sane(self):
        """Independent of the server: our bindings reproduce the fixture JSON."""
        r = self.res
        r.check("fixtures/present", lambda: require(
            sum(1 for f in self.fixtures if not f["event"]) >= 1 and any(f["event"] for f in self.fixtures),
            f"need Dispatch and Event fixtures in {self.args.fixtures}"))
        for fx in self.fixtures:
            def one(fx=fx):
                msg = (self.Event if fx["event"] else self.Object).FromString(fx["bytes"])
                require(fx["ref"] is not None, "no .json next to the .bin")
                got = canonical_json(msg)
                d = first_difference(got, fx["ref"][1])
                require(d is None, f"MessageToJson with our bindings differs from {fx['ref'][0]}: {d}")
                if fx["event"]:
                    json.loads(msg.payload)  # event fixtures carry JSON payloads
            r.check(f"fixtures/{fx['name']}: our bindings reproduce the fixture JSON", one)

    # ---- channels

    def channel(self, transport):
        opts = [("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.enable_retries", 0)]
        if transport == "tcp":
            target = f"127.0.0.1:{self.server.port}"
        else:
            target = f"unix://{self.server.sock}"
            if transport == "uds-localhost":
                opts.append(("grpc.default_authority", "localhost"))
        return self.grpc.insecure_channel(target, options=opts)

    def raw_call(self, ch, method, data, timeout=None):
        fn = ch.unary_unary(method)  # no serializers: bytes in, bytes out
        return fn(data, timeout=timeout or self.args.rpc_timeout)

    def call_status(self, ch, method, data):
        try:
            self.raw_call(ch, method, data)
        except self.grpc.RpcError as e:
            return e.code(), e.details()
        return self.grpc.StatusCode.OK, ""

    # ---- log checks

    def expect_dispatch_log(self, mark, msg, timeout=None):
        if self.log is None:
            return
        want = canonical_json(msg)
        ev = self.Object.DESCRIPTOR.fields_by_name["hook_type"].enum_type.values_by_number.get(msg.hook_type)
        hook_type = ev.name if ev is not None else None
        rec, last = self.log.wait_for(mark, "dispatch", lambda r: r.get("object") == want,
                                      self._log_wait(timeout))
        if rec is None:
            if last is None:
                self.log_silent = True
                raise CheckFailed("no 'dispatch' log record appeared"
                                  f" (records so far: {len(self.log.records)}, unparsable lines: {self.log.bad_lines})")
            raise CheckFailed("logged object differs from MessageToJson: "
                              f"{first_difference(last.get('object'), want)}")
        if self.args.log_format == "json":
            if hook_type is not None:
                ok = rec.get("hook_type") == hook_type or (msg.hook_type == 0 and rec.get("hook_type") is None)
                require(ok, f"hook_type {rec.get('hook_type')!r} != {hook_type!r}")
            require(rec.get("hook_name") == msg.hook_name,
                    f"hook_name {short(rec.get('hook_name'))} != {short(msg.hook_name)}")
            if "APIID" in msg.spec and "api_id" in rec:
                require(rec["api_id"] == msg.spec["APIID"], f"api_id {rec['api_id']!r} != {msg.spec['APIID']!r}")
            require(rec.get("level") in (None, "INFO", "info"), f"level {rec.get('level')!r}")

    def _log_wait(self, timeout):
        """Full timeout normally; 1 s once a wait found no record at all (a log that
        shows nothing should cost seconds, not minutes)."""
        t = timeout or self.args.log_timeout
        return min(t, 1.0) if self.log_silent else t

    def expect_event_log(self, mark, want_payload):
        if self.log is None:
            return
        rec, last = self.log.wait_for(mark, "event", lambda r: r.get("payload") == want_payload,
                                      self._log_wait(None))
        if rec is None:
            if last is None:
                self.log_silent = True
                raise CheckFailed("no 'event' log record appeared")
            raise CheckFailed(f"logged payload differs: {first_difference(last.get('payload'), want_payload)}")

    # ---- individual checks (each raises on failure)

    def dispatch_echo(self, ch, data, parsed=None, timeout=None, log_timeout=None):
        mark = self.log.mark() if self.log else 0
        reply = self.raw_call(ch, DISPATCH, data, timeout)
        if reply != data:
            raise CheckFailed(f"reply differs from request: sent {len(data)} bytes, got {len(reply)}"
                              + (f"; first differing byte at {next((i for i, (x, y) in enumerate(zip(reply, data)) if x != y), min(len(reply), len(data)))}"))
        msg = parsed if parsed is not None else self.Object.FromString(data)
        self.expect_dispatch_log(mark, msg, log_timeout)

    def event_ok(self, ch, data, want_payload):
        mark = self.log.mark() if self.log else 0
        reply = self.raw_call(ch, DISPATCH_EVENT, data)
        require(reply == b"", f"EventReply should be empty on the wire, got {len(reply)} bytes")
        self.obj_pb2.EventReply.FromString(reply)
        self.expect_event_log(mark, want_payload)

    def health(self, ch, service, want):
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        stub = health_pb2_grpc.HealthStub(ch)
        if want == "NOT_FOUND":
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.args.rpc_timeout)
            except self.grpc.RpcError as e:
                require(e.code() == self.grpc.StatusCode.NOT_FOUND, f"status {e.code()} {e.details()}")
                return
            raise CheckFailed(f"expected NOT_FOUND, got {health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)}")
        r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.args.rpc_timeout)
        require(r.status == health_pb2.HealthCheckResponse.SERVING,
                f"status {health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)}")

    def unknown_fields_object(self):
        base = self.Object.FromString(next(f["bytes"] for f in self.fixtures if f["name"] == "pre_petstore")) \
            if any(f["name"] == "pre_petstore" for f in self.fixtures) else None
        req = base.request if base is not None else self.req_pb2.MiniRequestObject(url="/u", method="GET")
        req_bytes = (req.SerializeToString(deterministic=True)
                     + field_varint(50, 7)
                     + field_len(51, b"nested unknown inside request")
                     + field_fixed32(52, b"\x01\x02\x03\x04"))
        sess = self.sess_pb2.SessionState(rate=10.0, per=1.0, quota_max=-1, metadata={"k": "v"})
        sess_bytes = (sess.SerializeToString(deterministic=True)
                      + field_fixed64(99, b"\x01\x02\x03\x04\x05\x06\x07\x08")
                      + field_len(120, field_len(1, b"nested unknown message inside session")))
        data = (field_varint(1, 1)                    # hook_type Pre
                + field_len(2, b"unknown-fields")     # hook_name
                + field_len(3, req_bytes)
                + field_len(4, sess_bytes)
                + field_len(99, b"top-level unknown field 99")
                + field_varint(100, 2 ** 63 + 5))
        msg = self.Object.FromString(data)  # Python must accept it (unknown fields are legal)
        require(msg.request.url == req.url and msg.session.rate == 10.0, "unknown-field Object built wrongly")
        return data, msg

    def malformed_cases(self):
        """Byte strings Python protobuf rejects for Object (each verified here)."""
        from google.protobuf.message import DecodeError
        cases = [
            ("invalid UTF-8 in hook_name", field_len(2, b"\xff\xfe")),
            ("invalid UTF-8 in request.url", field_len(3, field_len(5, b"/p\xc3\x28"))),
            ("length beyond end", field_len(2, b"x")[:1] + varint(100) + b"short"),
            ("invalid wire type 7", b"\x0f"),
        ]
        fx = next((f for f in self.fixtures if f["name"] == "post_json_body"), None) or \
            max((f for f in self.fixtures if not f["event"]), key=lambda f: len(f["bytes"]))
        data = fx["bytes"]
        for k in range(len(data) - 1, 0, -1):  # longest prefix Python rejects: truncated mid-field
            try:
                self.Object.FromString(data[:k])
            except DecodeError:
                cases.insert(0, (f"{fx['name']} truncated to {k} of {len(data)} bytes", data[:k]))
                break
        out = []
        for name, b in cases:
            try:
                self.Object.FromString(b)
            except DecodeError:
                out.append((name, b))
                continue
            raise CheckFailed(f"suite bug: Python accepts the malformed case {name!r}")
        return out

    def big_object(self):
        pattern = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ{}[]:,\"-_\n"
        body = (pattern * (BIG_BODY_LEN // len(pattern) + 1))[:BIG_BODY_LEN]
        msg = self.Object(hook_type=2, hook_name="big-body")
        msg.request.url = "/big"
        msg.request.method = "POST"
        msg.request.headers["Content-Type"] = "application/octet-stream"
        msg.request.body = body.decode("ascii")
        msg.request.raw_body = body
        msg.request.return_overrides.response_code = -1
        msg.spec["APIID"] = "big-body-api"
        return msg.SerializeToString(deterministic=True), msg

    # ---- reflection

    def reflection_v1alpha(self, ch):
        from google.protobuf import descriptor_pb2
        from google.protobuf.descriptor_pool import DescriptorPool
        from google.protobuf.message_factory import GetMessageClass
        from google.protobuf.json_format import MessageToJson
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase)
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        for s in ("coprocess.Dispatcher", "grpc.health.v1.Health"):
            require(s in services, f"{s} not listed (got {sorted(services)})")
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName("coprocess.Dispatcher")
        methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in svc.methods}
        local_svc = self.obj_pb2.DESCRIPTOR.services_by_name["Dispatcher"]
        want_methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in local_svc.methods}
        require(methods == want_methods, f"Dispatcher methods {methods} != {want_methods}")
        obj_desc = pool.FindMessageTypeByName("coprocess.Object")
        # the whole reflected schema (with the imports it pulled in) equals ours
        for fname in PROTO_FILES:
            got = descriptor_pb2.FileDescriptorProto()
            pool.FindFileByName(fname).CopyToProto(got)
            want = descriptor_pb2.FileDescriptorProto()
            self._local_file(fname).CopyToProto(want)
            d = first_difference(json.loads(json.dumps(descriptor_summary(got))),
                                 json.loads(json.dumps(descriptor_summary(want))), fname)
            require(d is None, f"reflected schema differs from our protos: {d}")
        # build an Object dynamically from the reflected pool and Dispatch it
        Dyn = GetMessageClass(obj_desc)
        m = Dyn()
        m.hook_type = obj_desc.fields_by_name["hook_type"].enum_type.values_by_name["PostKeyAuth"].number
        m.hook_name = "reflected-object"
        m.request.url = "/reflected?x=1"
        m.request.method = "GET"
        m.request.headers["Host"] = "localhost"
        m.request.return_overrides.response_code = -1
        m.session.rate = 2.5
        m.session.quota_max = -1
        m.session.access_rights["api1"].versions.append("Default")
        m.session.post_expiry_grace_period = -1
        m.metadata["token"] = "abc"
        m.spec["APIID"] = "api1"
        data = m.SerializeToString(deterministic=True)
        fn = ch.unary_unary(DISPATCH, request_serializer=lambda x: x.SerializeToString(deterministic=True),
                            response_deserializer=Dyn.FromString)
        mark = self.log.mark() if self.log else 0
        reply = fn(m, timeout=self.args.rpc_timeout)
        require(reply.SerializeToString(deterministic=True) == data, "reflected Object not echoed")
        local = self.Object.FromString(data)
        require(json.loads(MessageToJson(m)) == canonical_json(local),
                "reflected and local MessageToJson differ")
        self.expect_dispatch_log(mark, local)
        return f"{len(services)} services"

    def _local_file(self, fname):
        from google.protobuf import descriptor_pool
        return descriptor_pool.Default().FindFileByName(fname)

    def reflection_v1(self, ch):
        from google.protobuf import descriptor_pb2
        from grpc_reflection.v1alpha import reflection_pb2 as rp  # v1 is wire-identical to v1alpha
        call = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                request_serializer=rp.ServerReflectionRequest.SerializeToString,
                                response_deserializer=rp.ServerReflectionResponse.FromString)
        reqs = [rp.ServerReflectionRequest(list_services="*")]
        reqs += [rp.ServerReflectionRequest(file_by_filename=f) for f in PROTO_FILES]
        reqs.append(rp.ServerReflectionRequest(file_containing_symbol="coprocess.Dispatcher"))
        responses = list(call(iter(reqs), timeout=self.args.rpc_timeout))
        require(len(responses) == len(reqs), f"{len(responses)} responses to {len(reqs)} requests")
        for q, a in zip(reqs, responses):
            require(not a.HasField("error_response"),
                    f"{q.WhichOneof('message_request')}: error {a.error_response.error_code} {a.error_response.error_message}")
        names = {s.name for s in responses[0].list_services_response.service}
        for s in ("coprocess.Dispatcher", "grpc.health.v1.Health"):
            require(s in names, f"list_services lacks {s}: {sorted(names)}")
        for fname, a in zip(PROTO_FILES, responses[1:1 + len(PROTO_FILES)]):
            fds = [descriptor_pb2.FileDescriptorProto.FromString(b)
                   for b in a.file_descriptor_response.file_descriptor_proto]
            got = next((f for f in fds if f.name == fname), None)
            require(got is not None, f"file_by_filename {fname}: got {[f.name for f in fds]}")
            want = descriptor_pb2.FileDescriptorProto()
            self._local_file(fname).CopyToProto(want)
            d = first_difference(json.loads(json.dumps(descriptor_summary(got))),
                                 json.loads(json.dumps(descriptor_summary(want))), fname)
            require(d is None, f"file_by_filename {fname} differs from our protos: {d}")
        fds = [descriptor_pb2.FileDescriptorProto.FromString(b)
               for b in responses[-1].file_descriptor_response.file_descriptor_proto]
        require(any(any(s.name == "Dispatcher" for s in f.service) and f.package == "coprocess" for f in fds),
                f"file_containing_symbol coprocess.Dispatcher: no file defines it ({[f.name for f in fds]})")
        return f"services: {', '.join(sorted(names))}"

    # ---- transports

    def run_transport(self, transport):
        r = self.res
        ch = self.channel(transport)
        p = f"{transport}/"
        try:
            try:
                self.grpc.channel_ready_future(ch).result(timeout=self.args.rpc_timeout)
            except self.grpc.FutureTimeoutError:
                pass  # connectivity is judged by the first RPC below
            if r.check(p + "probe: Dispatch of an empty Object works", self._probe, ch) is None:
                return
            r.check(p + "health Check '' -> SERVING", self.health, ch, "", "SERVING")
            r.check(p + "health Check coprocess.Dispatcher -> SERVING", self.health, ch, "coprocess.Dispatcher", "SERVING")
            r.check(p + "health Check unknown service -> NOT_FOUND", self.health, ch, "no.such.Service", "NOT_FOUND")
            r.check(p + "reflection v1alpha (descriptor database, dynamic Object)", self.reflection_v1alpha, ch)
            r.check(p + "reflection v1 (raw stub)", self.reflection_v1, ch)
            for fx in self.fixtures:
                if fx["event"]:
                    msg = self.Event.FromString(fx["bytes"])
                    r.check(p + f"DispatchEvent {fx['name']}", self.event_ok, ch, fx["bytes"], json.loads(msg.payload))
                else:
                    r.check(p + f"Dispatch {fx['name']} ({len(fx['bytes'])} B): byte-identical echo"
                            + (" + logged object" if self.log else ""), self.dispatch_echo, ch, fx["bytes"])
            ev = self.Event(payload="this is not JSON {\u2028 \u00e9")
            r.check(p + "DispatchEvent non-JSON payload -> OK, logged as string",
                    self.event_ok, ch, ev.SerializeToString(), ev.payload)
            ev2 = self.Event(payload="")
            r.check(p + "DispatchEvent empty payload -> OK", self.event_ok, ch, ev2.SerializeToString(), "")
            data, msg = self.unknown_fields_object()
            r.check(p + "Dispatch with unknown fields (top level, in session, in request): byte-identical echo",
                    self.dispatch_echo, ch, data, msg)
            pre = next((f["bytes"] for f in self.fixtures if f["name"] == "pre_petstore"), b"")
            cases = r.check(p + "malformed cases prepared", self.malformed_cases)
            for name, b in cases or []:
                r.check(p + f"malformed Object ({name}) -> INVALID_ARGUMENT, then still serving",
                        self._malformed, ch, DISPATCH, b, pre)
            r.check(p + "malformed Event (invalid UTF-8 payload) -> INVALID_ARGUMENT, then still serving",
                    self._malformed, ch, DISPATCH_EVENT, field_len(1, b"{\"a\":\"\xff\"}"), pre)
            if not self.args.skip_big:
                data, msg = self.big_object()
                r.check(p + f"Dispatch Post with {BIG_BODY_LEN}-byte body and raw_body ({len(data)} B): echo",
                        self.dispatch_echo, ch, data, msg, self.args.big_timeout, self.args.big_timeout)
        finally:
            ch.close()

    def _probe(self, ch):
        try:
            self.raw_call(ch, DISPATCH, b"")
        except self.grpc.RpcError as e:
            raise CheckFailed(f"{e.code()} {e.details()!r}; the remaining checks on this transport are skipped")
        return True

    def _malformed(self, ch, method, data, after):
        code, details = self.call_status(ch, method, data)
        require(code == self.grpc.StatusCode.INVALID_ARGUMENT, f"status {code.name} {details!r}")
        reply = self.raw_call(ch, DISPATCH, after)
        require(reply == after, "the following valid Dispatch was not echoed")


# --------------------------------------------------------------------------- go client


def run_go(args, res, server):
    for mode in ("probe", "old", "old-authority", "new"):
        cmd = [args.go_client, "-mode", mode, "-tcp", f"127.0.0.1:{server.port}", "-unix", server.sock,
               "-fixtures", args.fixtures]
        print(f"# go: {shlex.join(cmd)}", flush=True)
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=args.go_timeout)
        except subprocess.TimeoutExpired:
            res.fail(f"go/{mode}", f"client timed out after {args.go_timeout} s")
            continue
        counted = 0
        for line in p.stdout.split("\n"):
            if line.startswith("PASS "):
                res.ok(line[5:])
                counted += 1
            elif line.startswith("FAIL "):
                name, _, detail = line[5:].partition(": ")
                res.fail(name, detail)
                counted += 1
            elif line.strip() and not re.fullmatch(r"\d+ passed, \d+ failed", line.strip()):
                print(f"# go: {line}", flush=True)
        if p.returncode != 0 and not any(l.startswith("FAIL ") for l in p.stdout.split("\n")):
            res.fail(f"go/{mode}", f"exit {p.returncode}: {p.stderr.strip()[-500:]}")
        if counted == 0:
            res.fail(f"go/{mode}", f"client reported no checks; stderr: {p.stderr.strip()[-500:]}")
        print(f"# go/{mode}: {counted} checks, exit {p.returncode}, {time.monotonic() - t0:.1f} s", flush=True)


# --------------------------------------------------------------------------- main


def wait_ready(_unused, server, timeout):
    """Poll health over TCP (any answer from a live server counts), then the Unix socket file."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    deadline = time.monotonic() + timeout
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            if not server.alive():
                raise CheckFailed(f"server exited with status {server.proc.returncode}")
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() >= deadline:
                raise CheckFailed(f"no SERVING health answer on 127.0.0.1:{server.port} within {timeout} s")
            time.sleep(0.1)
    finally:
        ch.close()
    while not os.path.exists(server.sock):
        if time.monotonic() >= deadline:
            raise CheckFailed(f"Unix socket {server.sock} not created within {timeout} s")
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bindings", default=os.path.join(sys.prefix, "coprocess-bindings"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "crates/tyk-coprocess/tests/fixtures/wire"))
    ap.add_argument("--proto-dir", default=os.path.join(ROOT, "proto"))
    ap.add_argument("--log-format", choices=("json", "reference", "none"), default="json",
                    help="how the server logs Dispatch/DispatchEvent (none = skip log checks)")
    ap.add_argument("--log-source", choices=("stdout", "stderr"), default="stdout")
    ap.add_argument("--transports", default="tcp,uds-default,uds-localhost")
    ap.add_argument("--go-client", default=None, help="path of the grpc-go conformance client (optional)")
    ap.add_argument("--skip-big", action="store_true", help="skip the 20 MB body checks")
    ap.add_argument("--startup-timeout", type=float, default=30)
    ap.add_argument("--rpc-timeout", type=float, default=20)
    ap.add_argument("--log-timeout", type=float, default=5)
    ap.add_argument("--big-timeout", type=float, default=120)
    ap.add_argument("--go-timeout", type=float, default=300)
    ap.add_argument("--total-timeout", type=float, default=1200, help="hard limit for the whole run")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("server_cmd", nargs=argparse.REMAINDER, help="-- SERVER_CMD ARGS...")
    args = ap.parse_args()
    cmd = args.server_cmd[1:] if args.server_cmd[:1] == ["--"] else args.server_cmd
    if not cmd:
        ap.error("no server command given (after --)")

    global PROTO_FILES
    PROTO_FILES = sorted(f for f in os.listdir(args.proto_dir) if f.endswith(".proto"))

    import grpc
    pb = load_bindings(args.bindings)
    res = Results()
    tmp = tempfile.mkdtemp(prefix="tps-conformance-")
    server = None

    def on_alarm(signum, frame):
        raise TimeoutError(f"conformance run exceeded --total-timeout {args.total_timeout} s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.total_timeout))
    t_start = time.monotonic()
    crashed = False
    try:
        Suite(args, res, Server(cmd, tmp, args.log_source), grpc, pb).check_fixtures_sane()
        # The free port is picked before the server binds it; if the server dies during
        # startup (e.g. another process took the port), retry with a new port, twice.
        for attempt in range(1, 4):
            server = Server(cmd, tempfile.mkdtemp(prefix=f"start{attempt}-", dir=tmp), args.log_source)
            server.start()
            t0 = time.monotonic()
            try:
                wait_ready(None, server, args.startup_timeout)
                res.ok("server starts and answers health on TCP")
                break
            except CheckFailed as e:
                died = not server.alive()
                server.stop()
                if died and attempt < 3:
                    print(f"# server exited during startup ({e}); stderr: {server.tail(server.stderr_path, 5)}; retrying",
                          flush=True)
                    continue
                res.fail("server starts and answers health on TCP", e)
                raise CheckFailed("server not ready")
        suite = Suite(args, res, server, grpc, pb)
        print(f"# server ready after {time.monotonic() - t0:.2f} s", flush=True)
        for t in [x for x in args.transports.split(",") if x]:
            t0 = time.monotonic()
            suite.run_transport(t)
            print(f"# {t}: {time.monotonic() - t0:.1f} s", flush=True)
        if args.go_client:
            run_go(args, res, server)
        res.check("server still running at the end", lambda: require(server.alive(), f"exit status {server.proc.returncode}"))
        if suite.log is not None and args.log_format == "json":
            suite.log.poll()
            res.check("server log: every stdout line is a JSON object",
                      lambda: require(suite.log.bad_lines == 0, f"{suite.log.bad_lines} unparsable lines"))
    except (CheckFailed, TimeoutError) as e:
        res.fail("run aborted", e)
        crashed = True
    except Exception as e:  # noqa: BLE001
        res.fail("run aborted", f"{type(e).__name__}: {e}")
        traceback.print_exc()
        crashed = True
    finally:
        signal.alarm(0)
        if server is not None:
            server.stop()
    if res.failed and server is not None:
        print(f"# server stderr (tail):\n{server.tail(server.stderr_path)}", flush=True)
        if args.log_source == "stdout":
            print(f"# server stdout (tail):\n{server.tail(server.stdout_path)}", flush=True)
        print(f"# failed checks: {len(res.failures)}; logs kept in {tmp}", flush=True)
    elif not args.keep_tmp:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# total {time.monotonic() - t_start:.1f} s", flush=True)
    print(f"{res.passed} passed, {res.failed} failed", flush=True)
    return 1 if (res.failed or crashed) else 0


if __name__ == "__main__":
    sys.exit(main())
