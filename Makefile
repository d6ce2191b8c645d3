# Developer entry points. `make help` lists them.
#
# Everything is installed project-locally (git-ignored): Python tools in .tools/venv
# (tools/requirements.txt, e.g. cargo-lambda, moto), npm packages in tests/e2e/node_modules.
# No global installs. Stamp files make `make tools` a no-op when nothing changed.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

TOOLS_DIR := .tools
VENV := $(TOOLS_DIR)/venv
PYTHON := $(VENV)/bin/python
PY_STAMP := $(VENV)/.requirements.stamp
E2E_DIR := tests/e2e
NPM_STAMP := $(E2E_DIR)/node_modules/.package-lock.stamp

# The venv's binaries (cargo-lambda, moto_server, ...) come first, so `cargo lambda ...` works.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

PORT ?= 9000
DEV_ENV ?= dev/dev.env

# make dev-token SUB=alice [ROLES=moderator,admin] [NAME=Alice] [ORG=acme] [TTL=3600]
SUB ?=
ROLES ?=
NAME ?=
ORG ?= acme
TTL ?= 3600

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- tools

.PHONY: tools tools-py tools-npm
tools: tools-py tools-npm ## install the project-local tools (idempotent)

tools-py: $(PY_STAMP)
tools-npm: $(NPM_STAMP)

$(PY_STAMP): tools/requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	@touch $@

$(NPM_STAMP): $(E2E_DIR)/package.json $(E2E_DIR)/package-lock.json
	cd $(E2E_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# ---------------------------------------------------------------- local run

.PHONY: dev dev-token
dev: tools-py ## serve the functions on http://127.0.0.1:9000 (PORT=...) under cargo lambda watch, dev settings
	$(PYTHON) scripts/dev.py --port $(PORT) --env-file $(DEV_ENV)

dev-token: ## print a dev caller token: make dev-token SUB=alice [ROLES=moderator] [NAME=Alice] [ORG=acme] [TTL=3600]
	@test -n "$(SUB)" || { echo 'usage: make dev-token SUB=alice [ROLES=moderator] [NAME=Alice] [ORG=acme] [TTL=3600]' >&2; exit 2; }
	@cargo run -q -p ably-auth -- dev-token --sub '$(SUB)' --roles '$(ROLES)' --name '$(NAME)' --org '$(ORG)' --ttl '$(TTL)'

# ---------------------------------------------------------------- checks and tests
# `make test` runs each step below in order; add a step by appending a target to TEST_STEPS.

TEST_STEPS := fmt-check clippy test-unit fuzz-regressions test-e2e lint-template test-template test-emulator perf-smoke browser-test test-cli policy-test test-sam

.PHONY: test check fmt-check clippy test-unit test-e2e fmt
test: ## everything CI runs: fmt, clippy, unit + integration tests, end-to-end tests
	@failed=""; \
	for step in $(TEST_STEPS); do \
	  echo "==> make $$step"; start=$$SECONDS; \
	  if $(MAKE) --no-print-directory $$step; then echo "==> make $$step: ok ($$((SECONDS - start)) s)"; \
	  else echo "==> make $$step: FAILED ($$((SECONDS - start)) s)" >&2; failed="$$failed $$step"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "==> make test: FAILED:$$failed" >&2; exit 1; fi; \
	echo "==> make test: all steps passed ($(TEST_STEPS))"

check: fmt-check clippy ## cargo fmt --check and clippy -D warnings

fmt-check: ## cargo fmt --all --check
	cargo fmt --all --check

clippy: ## cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	cargo fmt --all

test-unit: tools-py ## cargo test --workspace (unit, property, handler tests; moto_server for the Secrets Manager tests)
	cargo test --workspace --no-fail-fast

test-e2e: tools ## the real ably-js SDK against the functions under cargo lambda watch
	node --test $(E2E_DIR)/

# ---------------------------------------------------------------- deployment (SAM), local invoke, browser demo
# template.yaml + samconfig.toml: `make deploy`. env.json: settings of `sam local invoke --env-vars env.json`
# and `make invoke`. aws-sam-cli, cfn-lint and ziglang come from tools/requirements.txt (.tools/venv).

FUNCTIONS := $(sort $(notdir $(patsubst %/Cargo.toml,%,$(wildcard functions/*/Cargo.toml))))
SAM := $(VENV)/bin/sam
# SAM needs a region to translate the template; nothing here contacts AWS.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}
FN ?= issue-jwt
EVENT ?= events/jwt-get-valid-caller.json
# Function architecture for sam-build / deploy: arm64 (template default) or x86_64.
ARCH ?=
GUIDED ?=
BROWSER_DIR := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.package-lock.stamp
CHROMIUM := /usr/bin/chromium
DEMO_PORT ?= 8080

# ---------------------------------------------------------------- the ably-auth CLI (README, "Policy as code")

ABLY_AUTH := $${CARGO_TARGET_DIR:-target}/release/ably-auth
POLICY ?= dev/policy.json
CASES ?= examples/policy-tests/dev-policy.cases.json

.PHONY: test-cli policy-test
test-cli: release ## the ably-auth CLI end to end, on its release binary
	ABLY_AUTH_BIN=$(ABLY_AUTH) cargo test -p ably-auth --test cli

policy-test: release ## check a policy and run its cases with the release CLI: make policy-test [POLICY=...] [CASES=...]
	$(ABLY_AUTH) policy check $(POLICY) --route jwt
	$(ABLY_AUTH) policy test $(POLICY) $(CASES)

.PHONY: release invoke lint-template test-template test-emulator sam-build deploy browser-test demo tools-browser

release: ## cargo build --release of every function binary and the ably-auth CLI (target/release/<name>)
	cargo build --release $(addprefix -p ,$(FUNCTIONS)) -p ably-auth

invoke: release tools-py ## run a release binary under the Lambda emulator: make invoke FN=issue-jwt EVENT=events/jwt-get-valid-caller.json
	$(PYTHON) scripts/invoke.py $(FN) $(EVENT)

lint-template: tools-py ## cfn-lint (errors and warnings) and sam validate --lint of template.yaml (offline)
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml

test-template: tools-py ## template.yaml through SAM's translator per parameter set (offline): routes, env, IAM, logs, throttling, outputs; alarms and dashboard against the emitted metrics (tests/template/emitted-metrics.json)
	$(SAM_ENV) $(PYTHON) -m unittest discover --start-directory tests/template --top-level-directory tests/template $(if $(V),-v)

test-emulator: release tools-py ## every function's release binary over its events/ under the Lambda emulator, and in concurrent mode (Managed Instances) against a loopback Runtime API
	cargo test -p integration-tests --test emulator --test concurrent_runtime -- --include-ignored

# The Rust standard library cargo-lambda needs for ARCH (template default: arm64).
SAM_TRIPLE := $(if $(filter x86_64,$(ARCH)),x86_64-unknown-linux-gnu,aarch64-unknown-linux-gnu)

sam-build: tools-py ## sam build (cargo-lambda + zig from .tools/venv): make sam-build [ARCH=x86_64]
	@test -d "$$(rustc --print sysroot)/lib/rustlib/$(SAM_TRIPLE)/lib" || { \
	  echo "make sam-build: Architecture=$(or $(ARCH),arm64) needs the Rust standard library for $(SAM_TRIPLE)," >&2; \
	  echo "  which is not installed: rustup target add $(SAM_TRIPLE)   (needs network access)." >&2; \
	  echo "  Or build for this machine's architecture: make sam-build ARCH=x86_64" >&2; exit 2; }
	$(SAM_ENV) $(SAM) build --beta-features $(if $(ARCH),--parameter-overrides Architecture=$(ARCH))

deploy: tools-py ## sam build + sam deploy (--guided the first time): make deploy [ARCH=x86_64] [GUIDED=1]
	$(PYTHON) scripts/deploy.py $(if $(ARCH),--arch $(ARCH)) $(if $(GUIDED),--guided)

tools-browser: $(BROWSER_STAMP) $(CHROMIUM)

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Debian's chromium (the browser test drives it with playwright-core; no browser download).
$(CHROMIUM):
	apt-cache policy chromium | grep -q 'Candidate: [0-9]' || apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

browser-test: tools tools-browser ## the browser demo (examples/web) in headless Chromium against the functions
	node --test $(BROWSER_DIR)/

demo: tools-npm ## serve the browser demo on http://127.0.0.1:$(DEMO_PORT) (run `make dev` in another terminal)
	node examples/web/serve.mjs --port $(DEMO_PORT) --auth-url http://127.0.0.1:$(PORT)

# ---------------------------------------------------------------- SAM in Docker, offline (README, "Running it with SAM locally")
# A project-local Docker engine (Debian docker.io; dockerd with its data and socket in
# .tools/docker, no bridge, no iptables), a stand-in for SAM's base image built from host
# files (offline tests only), and SAM with its Lambda containers on the host network
# (scripts/sam_hostnet.py). Every connection stays on 127.0.0.1.

DOCKER_STAMP := $(TOOLS_DIR)/.docker-apt.stamp
SAM_LOCAL_PORT ?= 3000

.PHONY: tools-docker test-sam sam-local docker-start docker-stop

tools-docker: $(DOCKER_STAMP) ## install Docker's engine (docker.io) and busybox-static from Debian (for test-sam, sam-local)
$(DOCKER_STAMP):
	@mkdir -p $(TOOLS_DIR)
	@if command -v dockerd >/dev/null && dpkg -s busybox-static >/dev/null 2>&1; then :; else \
	  pkgs="busybox-static"; command -v dockerd >/dev/null || pkgs="docker.io $$pkgs"; \
	  apt-cache policy $$pkgs | grep -q 'Candidate: [0-9]' || apt-get update; \
	  echo "apt-get install $$pkgs"; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkgs; \
	fi
	@touch $@

test-sam: tools tools-docker ## sam build, then sam local invoke of every event and ably-js through sam local start-api, in Docker (offline)
	$(PYTHON) tests/sam/run.py

sam-local: tools-py tools-docker ## sam build, then sam local start-api with the dev settings on 127.0.0.1 (SAM_LOCAL_PORT=3000; Docker)
	$(PYTHON) scripts/sam_local.py --port $(SAM_LOCAL_PORT)

docker-start: tools-py tools-docker ## start the project-local Docker engine (prints DOCKER_HOST)
	@$(PYTHON) scripts/docker_engine.py start

docker-stop: tools-py ## stop the project-local Docker engine (by its PID)
	@$(PYTHON) scripts/docker_engine.py stop

# ---------------------------------------------------------------- performance (docs/PERFORMANCE.md, docs/CAPACITY.md)
# Measurements, not tests: none of these is part of `make test`.

SOAK_FN ?= issue-jwt issue-ably-token
SOAK_N ?= 100000

.PHONY: bench bench-compare coldstart soak perf-smoke capacity

# cargo runs a bench in its package directory (tests/), so its output paths are absolute.
MANAGED_BENCH := cargo bench -q -p integration-tests --bench managed_instances --

bench: release ## criterion benchmarks of the engine and every route in process, a table of medians; then concurrent mode (Managed Instances) against one at a time on the release binaries
	@start=$$(date +%s); cargo bench -p shared; python3 scripts/bench_summary.py --since $$start
	$(MANAGED_BENCH) throughput --json $(CURDIR)/target/bench/managed-instances.json

bench-compare: tools-npm ## the same JWT / TokenRequest work in Node.js (jsonwebtoken, ably) vs Rust, one core, ratios
	python3 scripts/bench_compare.py

coldstart: release tools-py ## each release binary cold-started 20 times under the Lambda emulator: init, RSS, sizes; then one at a time against 8 workers (Managed Instances)
	$(PYTHON) scripts/coldstart.py --runs 20
	$(MANAGED_BENCH) coldstart --runs 20 --json $(CURDIR)/target/bench/managed-instances-coldstart.json

soak: release tools-py ## 100,000 invocations in one emulator container, RSS sampled: memory must stay flat
	@for fn in $(SOAK_FN); do $(PYTHON) scripts/soak.py --function $$fn --invocations $(SOAK_N) || exit 1; done

capacity: ## docs/CAPACITY.md's tables: cost and first limit per route at 100 / 10k / 1M req/s
	python3 scripts/capacity.py

# The perf scripts on a few invocations, in `make test`, so that they keep working; the
# figures come from the full runs above (docs/PERFORMANCE.md).
perf-smoke: release tools-py ## coldstart, soak, capacity and the managed-instances benchmark on a few invocations each
	$(PYTHON) scripts/coldstart.py --runs 2 --warm 5 --json target/perf-smoke/coldstart.json
	$(PYTHON) scripts/soak.py --function issue-ably-token --invocations 3000 --every 500 --warmup 1000 --json target/perf-smoke/soak.json
	python3 scripts/capacity.py > target/perf-smoke/capacity.md
	$(MANAGED_BENCH) throughput --rounds 1 --invocations 300 --json $(CURDIR)/target/perf-smoke/managed-instances.json
	$(MANAGED_BENCH) coldstart --runs 1 --json $(CURDIR)/target/perf-smoke/managed-instances-coldstart.json

# ---------------------------------------------------------------- fuzzing (docs/SECURITY.md, "Adversarial testing")
# fuzz/ is its own cargo workspace (instrumented build in fuzz/target). cargo-fuzz is installed
# into .tools/cargo; the stable toolchain accepts its nightly flags with RUSTC_BOOTSTRAP=1.

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= params capability policy caller_token request event
CARGO_FUZZ := $(TOOLS_DIR)/cargo/bin/cargo-fuzz
CARGO_FUZZ_VERSION := 0.13.2

.PHONY: fuzz fuzz-regressions

$(CARGO_FUZZ):
	cargo install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION) --root $(TOOLS_DIR)/cargo

fuzz: $(CARGO_FUZZ) ## run each fuzz target for FUZZ_SECONDS (default 60) and report executions: make fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS=request]
	python3 scripts/fuzz.py --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-regressions: ## replay the committed fuzz inputs (fuzz/regressions, fuzz/seeds) through the targets, on stable
	cargo test -p integration-tests --test fuzz_regressions
