# tyk-plugin-server: common tasks. `make help` lists them.

CARGO    ?= cargo
PROFILE  ?= release
BIN      := target/$(PROFILE)/tyk-plugin-server
# Where `dispatch` / `dispatch_event` send to (a running server).
TARGET   ?= tcp://127.0.0.1:50051
# Where `petstore` finds a Tyk gateway, and the API's listen path there.
GATEWAY  ?= http://localhost:8080
LISTEN_PATH ?= /petstore/
# Extra server flags for `run`, e.g. ARGS="--log-format json".
ARGS     ?=
# Extra flags for the load suite, e.g. BENCH_ARGS="--quick" (bench/load/run.py --help).
BENCH_ARGS ?=
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

CARGO_PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: help build clean run serve dispatch dispatch_event petstore test lint unit doc conformance bench bench_check

help: ## List the targets.
	@grep -E '^[a-z_]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## Build the server binary (release).
	$(CARGO) build --locked $(CARGO_PROFILE_FLAG) -p tyk-plugin-server

clean: ## Remove build outputs.
	$(CARGO) clean
	rm -rf target/py-venv target/conformance

run: build ## Run the server on its embedded default configuration (127.0.0.1:50051).
	$(BIN) serve $(ARGS)

serve: run ## Same as run.

dispatch: ## Send the example Pre-hook Object (petstore) to a running server.
	@test -x $(BIN) || $(MAKE) --no-print-directory build
	$(BIN) dispatch --target $(TARGET) examples/payloads/pre_petstore.json

dispatch_event: ## Send the example AuthFailure event payload to a running server.
	@test -x $(BIN) || $(MAKE) --no-print-directory build
	$(BIN) dispatch-event --target $(TARGET) examples/payloads/event_auth_failure.json

petstore: ## Send the petstore request through a Tyk gateway on localhost:8080.
	@curl -sS -i --max-time 10 "$(GATEWAY)$(LISTEN_PATH)pet/findByStatus?status=available" \
	  || { status=$$?; echo; \
	       echo "No Tyk gateway answered at $(GATEWAY) (curl exit $$status)."; \
	       echo "Start one with the petstore API and this plugin server configured (see README, 'Configuring Tyk'),"; \
	       echo "or point elsewhere: make petstore GATEWAY=http://host:port LISTEN_PATH=/path/"; \
	       exit 1; }

test: lint unit doc conformance ## Everything CI runs: formatting, clippy, all tests, docs, conformance.

lint: ## cargo fmt --check and clippy with warnings denied.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets --all-features -- -D warnings

unit: ## Unit and end-to-end tests (real sockets).
	$(CARGO) test --locked --workspace --all-features

conformance: ## Independent clients (Python grpcio, grpc-go 1.33 as old gateways dial) against the debug binary.
	$(CARGO) build --locked -p tyk-plugin-server
	tests/conformance/run.sh

doc: ## Rustdoc, warnings denied.
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --workspace --all-features --no-deps

bench: ## Load suite (h2load, 4 servers x C=1,16,64) + large bodies + criterion; tables into BENCHMARKS.md (~9 min).
	@command -v h2load >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends nghttp2-client; }
	bench/reference/setup.sh
	target/py-venv/bin/python -m pip install --disable-pip-version-check -q --timeout 60 -r bench/load/requirements.txt
	python3 bench/load/run.py $(BENCH_ARGS)

bench_check: ## Compile the criterion benches without running them (what CI needs).
	$(CARGO) bench --locked --workspace --no-run
