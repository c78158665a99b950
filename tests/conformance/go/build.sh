#!/usr/bin/env bash
# Build the grpc-go conformance client offline from Debian packages (GOPATH mode).
#
#   tests/conformance/go/build.sh OUT_DIR      -> OUT_DIR/tpsconf
#
# Uses Debian 12's golang-go (Go 1.19) and golang-google-grpc-dev (grpc-go 1.33.3 with
# x/net, genproto and protobuf), installed with apt-get when missing. No module proxy:
# GO111MODULE=off and GOPATH=/usr/share/gocode. The build cache lives in OUT_DIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/google.golang.org/grpc ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "build.sh: need golang-go and golang-google-grpc-dev (apt-get install as root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update only when the package lists do not know the package yet
  if ! apt-cache show golang-google-grpc-dev >/dev/null 2>&1; then
    timeout 300 apt-get update -q
  fi
  timeout 600 apt-get install -y -q --no-install-recommends golang-go golang-google-grpc-dev
fi

export GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$out/go-build-cache" GOFLAGS= CGO_ENABLED=0
cd "$here/tpsconf"
timeout 600 go build -o "$out/tpsconf" .
echo "build.sh: built $out/tpsconf ($(go version | cut -d' ' -f3), grpc-go $(sed -n 's/^const Version = "\(.*\)"/\1/p' /usr/share/gocode/src/google.golang.org/grpc/version.go))"
