# account-linker — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
# Both helpers install on first use into a cache outside the repository and print the path.
VENV = $(shell bash hack/venv.sh)
PY = $(VENV)/bin/python
ASSETS = $(shell bash hack/control-plane-assets.sh)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: toolchain
toolchain: ## Make sure rustfmt and clippy are installed
	@command -v rustup >/dev/null && rustup component add rustfmt clippy >/dev/null 2>&1 || true
	@$(CARGO) fmt --version >/dev/null && $(CARGO) clippy --version >/dev/null

.PHONY: build
build: ## Build the operator binary
	$(CARGO) build --locked

.PHONY: crds
crds: ## Regenerate crds/ (and the chart's copy) from the Rust types
	$(CARGO) run --locked --quiet -- crd --out-dir crds
	rm -f charts/account-linker/crds/*.yaml
	cp crds/*.yaml charts/account-linker/crds/

.PHONY: docs
docs: ## Regenerate docs/api-reference.md from the CRD schemas
	$(CARGO) run --locked --quiet -- docs api-reference > docs/api-reference.md

.PHONY: fmt
fmt: ## Format the Rust code
	$(CARGO) fmt

.PHONY: lint
lint: toolchain ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features failpoints -- -D warnings

.PHONY: unit-test
unit-test: ## Unit tests, the CRD-in-sync and reasons-documented checks (no services needed)
	$(CARGO) test --locked --features failpoints --lib --bins --test crds_in_sync --test api_reference_in_sync \
		--test reasons_documented

.PHONY: emulator-test
emulator-test: ## The AWS emulator's own test suite (pytest)
	cd emulator && $(PY) -m pytest -q

.PHONY: testenv-test
testenv-test: ## Tests of the local control-plane supervisor (pytest)
	KUBEBUILDER_ASSETS=$(ASSETS) $(PY) -m pytest -q hack/tests

.PHONY: integration-test
integration-test: ## Integration tests against a real API server and the strict emulator (crash points armed by tests)
	KUBEBUILDER_ASSETS=$(ASSETS) ACCOUNT_LINKER_PYTHON=$(PY) \
		$(CARGO) test --locked --features failpoints --test '*' -- --test-threads=4

# Every fault scenario binary (tests/chaos_*.rs), at full size.
CHAOS_TESTS = $(patsubst tests/%.rs,--test %,$(sort $(wildcard tests/chaos_*.rs)))
CHAOS_THREADS ?= 1

.PHONY: chaos
chaos: ## Fault scenarios at full size (ACCOUNT_LINKER_CHAOS=full; each prints CHAOS {json} lines); not part of `make test`
	KUBEBUILDER_ASSETS=$(ASSETS) ACCOUNT_LINKER_PYTHON=$(PY) ACCOUNT_LINKER_CHAOS=full \
		$(CARGO) test --locked --features failpoints $(CHAOS_TESTS) -- --test-threads=$(CHAOS_THREADS) --nocapture

.PHONY: chart-docs
chart-docs: ## Regenerate the chart's Artifact Hub annotations and README values table
	$(PY) hack/chart-docs.py

.PHONY: chart-test
chart-test: ## Lint, render and server-side validate the Helm chart; Argo CD health checks
	PY=$(PY) bash hack/chart-test.sh

# cargo-deny, built once from crates.io into the cache outside the repository (hack/tools.sh).
DENY = $(shell bash hack/tools.sh cargo-deny)

.PHONY: deny
deny: ## Licenses, sources and banned crates of the dependency graph (deny.toml)
	$(DENY) --locked check licenses sources bans

.PHONY: deny-advisories
deny-advisories: ## RustSec advisories of the dependency graph (fetches the advisory database from GitHub)
	@$(DENY) --locked check advisories || { \
		echo "deny-advisories: failed. If the output above says the advisory database could not be fetched," >&2; \
		echo "this check needs network access to the RustSec advisory database (a git repository on" >&2; \
		echo "GitHub). A clone placed in ~/.cargo/advisory-dbs is used offline with:" >&2; \
		echo "  $(DENY) --locked --offline check advisories" >&2; \
		exit 1; }

# Release tooling, built or fetched once into the cache outside the repository (hack/tools.sh).
.PHONY: lint-release
lint-release: ## Static checks of the release: Dockerfile (hadolint + our rules) and workflows (actionlint)
	$(shell bash hack/tools.sh hadolint) Dockerfile
	python3 hack/dockerfile-check.py Dockerfile
	$(shell bash hack/tools.sh actionlint) -color=false -shellcheck=$(shell bash hack/tools.sh shellcheck) .github/workflows/*.yml

.PHONY: sbom
sbom: ## CycloneDX SBOM of the crate into target/sbom/ (the image's SBOM, without building it)
	@mkdir -p target/sbom
	PATH="$(dir $(shell bash hack/tools.sh cargo-cyclonedx)):$$PATH" $(CARGO) cyclonedx --format json --spec-version 1.5 --override-filename account-linker.cdx
	mv account-linker.cdx.json target/sbom/account-linker.cdx.json
	@echo "sbom: target/sbom/account-linker.cdx.json"

.PHONY: test
test: lint deny lint-release unit-test emulator-test testenv-test chart-test integration-test bench-smoke ## Everything CI runs, from a fresh machine

# The fleet benchmark (bench/, docs/benchmarks.md). The binary lives where cargo puts it.
BIN_DIR = $(or $(CARGO_TARGET_DIR),target)
BENCH_SIZES ?= 1000,5000,10000

.PHONY: bench
bench: ## Release build, then every benchmark scenario at BENCH_SIZES; writes docs/benchmarks.md and docs/benchmarks/
	$(CARGO) build --locked --release
	KUBEBUILDER_ASSETS=$(ASSETS) $(PY) bench/run.py --binary $(BIN_DIR)/release/account-linker \
		--sizes $(BENCH_SIZES) --out docs/benchmarks --report docs/benchmarks.md

# bench-smoke builds with the integration tests' features (crash points stay inert unless
# armed), so `make test` compiles the binary once.
.PHONY: bench-smoke
bench-smoke: ## Every benchmark scenario at N=50 with the debug build, into a temporary folder, then checks the JSON
	$(CARGO) build --locked --features failpoints
	@out=$$(mktemp -d -t bench-smoke-XXXXXX) && \
	KUBEBUILDER_ASSETS=$(ASSETS) $(PY) bench/run.py --binary $(BIN_DIR)/debug/account-linker --smoke \
		--sizes 50 --steady-intervals 1 --serial-sample 20 --timeout 300 --out $$out && \
	$(PY) bench/check.py $$out

include hack/dev-env.mk

.PHONY: demo
demo: dev-env ## Local control plane + emulator up, CRDs and examples applied, shown with kubectl
	@source target/dev-env/env.sh && bash hack/demo.sh

.PHONY: clean
clean: ## Remove build output (the cached venv and control-plane binaries stay)
	$(CARGO) clean
