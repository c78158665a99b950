#!/usr/bin/env bash
# Conformance suite for a coprocess.Dispatcher gRPC server (Tyk rich-plugin protocol).
#
#   tests/conformance/run.sh [OPTIONS] [-- SERVER_CMD ARGS...]
#
# Default server under test: our binary, started as
#   $TPS_BIN serve --listen tcp://{tcp} --listen unix://{unix} --log-format json
# with TPS_BIN defaulting to target/debug/tyk-plugin-server (relative to the repo root).
# In SERVER_CMD these placeholders are replaced: {tcp} -> 127.0.0.1:PORT (a free port),
# {port} -> PORT, {unix} -> absolute socket path in a fresh temp dir, {tmp} -> that dir.
#
# Options:
#   --reference          test bench/reference/server.py instead (its text log is checked
#                        through the "reference" log adapter)
#   --log-format F       json (default) | reference | none (skip the log checks)
#   --log-source S       stdout (default) | stderr: where the server writes its log
#   --no-go              skip the grpc-go client (no Go toolchain needed)
#   --skip-big           skip the 20 MB body checks
#   --venv DIR           Python venv (default target/py-venv; created by bench/reference/setup.sh)
#   --go-out DIR         where the Go client is built (default target/conformance-go)
#   --py ARG             pass ARG to conformance.py (repeatable), e.g. --py --transports=tcp,uds-localhost
#
# Non-interactive, bounded in time; exit status 0 only if every check passed. The last
# line printed is "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/py-venv"
go_out="$root/target/conformance-go"
reference=0 go=1
py_opts=()
log_format="" log_source=""

die() { echo "run.sh: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --reference) reference=1 ;;
    --log-format) log_format="${2:?}"; shift ;;
    --log-source) log_source="${2:?}"; shift ;;
    --no-go) go=0 ;;
    --skip-big) py_opts+=(--skip-big) ;;
    --venv) venv="${2:?}"; shift ;;
    --go-out) go_out="${2:?}"; shift ;;
    --py) py_opts+=("${2:?}"); shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown option $1 (server command goes after --)" ;;
  esac
  shift
done
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
case "$go_out" in /*) ;; *) go_out="$root/$go_out" ;; esac

if [ $# -gt 0 ]; then
  server_cmd=("$@")
elif [ "$reference" = 1 ]; then
  server_cmd=("$venv/bin/python" "$root/bench/reference/server.py" --listen "{tcp}" --listen "unix://{unix}")
  : "${log_format:=reference}" "${log_source:=stderr}"
else
  bin="${TPS_BIN:-target/debug/tyk-plugin-server}"
  case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
  [ -x "$bin" ] || die "server binary $bin not found (set TPS_BIN or build it first)"
  server_cmd=("$bin" serve --listen "tcp://{tcp}" --listen "unix://{unix}" --log-format json)
fi
: "${log_format:=json}" "${log_source:=stdout}"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { printf '%d.%01d s' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }
t0=$(ms)
timeout 900 "$root/bench/reference/setup.sh" "$venv" || die "Python venv setup failed"
t1=$(ms)
echo "# python venv + bindings: $(secs $((t1 - t0)))"
go_opts=()
if [ "$go" = 1 ]; then
  timeout 1200 "$here/go/build.sh" "$go_out" || die "Go client build failed"
  t2=$(ms)
  echo "# go client build: $(secs $((t2 - t1)))"
  go_opts=(--go-client "$go_out/tpsconf")
fi

exec timeout -k 10 1500 "$venv/bin/python" "$here/conformance.py" \
  --bindings "$venv/coprocess-bindings" --log-format "$log_format" --log-source "$log_source" \
  "${go_opts[@]}" "${py_opts[@]}" -- "${server_cmd[@]}"
