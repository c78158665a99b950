#!/usr/bin/env bash
# Create the Python venv for the reference server and the conformance suite,
# and generate Python bindings from OUR protos (proto/*.proto) into it.
#
#   bench/reference/setup.sh [VENV_DIR]      (default: target/py-venv, relative to the repo root)
#
# Idempotent: an existing venv with the pinned packages is reused; the bindings
# are regenerated every time (it takes < 1 s). Bindings go to VENV_DIR/coprocess-bindings
# (never committed), where server.py and tests/conformance/conformance.py look by default.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/target/py-venv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --timeout 60 -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

out="$venv/coprocess-bindings"
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
"$venv/bin/python" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$out.tmp" --grpc_python_out="$out.tmp" --pyi_out="$out.tmp" \
  "$root"/proto/coprocess_*.proto
rm -rf "$out"
mv "$out.tmp" "$out"
echo "setup.sh: venv $venv ready, bindings in $out"
