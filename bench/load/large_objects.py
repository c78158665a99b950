#!/usr/bin/env python3
"""Write gRPC-framed Post-hook Objects with bodies of given sizes.

Run with the reference venv's Python (bench/reference/setup.sh): it uses the
bindings generated from our protos. The base is the post_json_body fixture;
request.body and request.raw_body both get the same N-byte JSON text, as the
gateway sends a body twice.

    large_objects.py --bindings DIR --fixture post_json_body.bin --out DIR SIZE...
Prints one line per size: "SIZE PATH FRAME_BYTES".
"""
import argparse
import os
import struct
import sys


def body_of(n):
    # Valid UTF-8 JSON of exactly n bytes (n >= 16): {"data":"aaaa..."}
    head, tail = b'{"data":"', b'"}'
    pad = max(0, n - len(head) - len(tail))
    pattern = b"abcdefghijklmnopqrstuvwxyz0123456789"
    fill = (pattern * (pad // len(pattern) + 1))[:pad]
    return (head + fill + tail)[:n] if n >= len(head) + len(tail) else b"x" * n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bindings", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("sizes", nargs="+", type=int)
    a = p.parse_args()
    sys.path.insert(0, a.bindings)
    import coprocess_object_pb2 as pb

    base = pb.Object.FromString(open(a.fixture, "rb").read())
    os.makedirs(a.out, exist_ok=True)
    for n in a.sizes:
        obj = pb.Object()
        obj.CopyFrom(base)
        body = body_of(n)
        obj.request.body = body.decode("ascii")
        obj.request.raw_body = body
        wire = obj.SerializeToString(deterministic=True)
        path = os.path.join(a.out, f"post_body_{n}.frame")
        with open(path, "wb") as f:
            f.write(b"\x00" + struct.pack(">I", len(wire)) + wire)
        print(n, path, 5 + len(wire))


if __name__ == "__main__":
    main()
