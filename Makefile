# Two commands on a fresh machine with only a Rust toolchain:
#   make demo   builds the importer component and runs the demo
#   make test   builds the components and compositions and runs every test
CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
COMPONENT   := target/$(WASM_TARGET)/wasm/assets_scheduled_import.wasm
TEST_GUEST  := target/$(WASM_TARGET)/wasm/misbehaving_guest.wasm
HOSTILE_GUEST := target/$(WASM_TARGET)/wasm/hostile_guest.wasm
SOURCES     := target/$(WASM_TARGET)/wasm
COMPOSED    := target/composed

# Component tools, pinned, built once from crates.io and cached outside the
# clone (a clean clone reuses them; a fresh machine builds them, ~15 min).
TOOLS_ROOT         ?= $(HOME)/.cache/assets-scheduled-import
WAC_VERSION        := 0.12.0
WASM_TOOLS_VERSION := 1.263.0
WAC                := $(TOOLS_ROOT)/bin/wac
WASM_TOOLS         := $(TOOLS_ROOT)/bin/wasm-tools

.PHONY: all setup tools component sources compose test-guest demo test shared-build runtime-deps bench lint clean

all: test

# The wasm target comes from rustup; install it only when missing.
setup:
	@rustup target list --installed 2>/dev/null | grep -qx '$(WASM_TARGET)' \
		|| rustup target add $(WASM_TARGET)

# wac composes components; wasm-tools shows what a composition imports.
tools:
	@$(WAC) --version 2>/dev/null | grep -q '$(WAC_VERSION)' \
		|| $(CARGO) install --locked --root $(TOOLS_ROOT) wac-cli --version $(WAC_VERSION)
	@$(WASM_TOOLS) --version 2>/dev/null | grep -q '$(WASM_TOOLS_VERSION)' \
		|| $(CARGO) install --locked --root $(TOOLS_ROOT) wasm-tools --version $(WASM_TOOLS_VERSION)

# The guest component, in the size-optimised `wasm` profile.
component: setup
	$(CARGO) build --target $(WASM_TARGET) --profile wasm -p assets-scheduled-import
	@ls -l $(COMPONENT) | awk '{print "component: " $$NF " (" $$5 " bytes)"}'

# Data-source components (world `asset-source`).
sources: setup
	$(CARGO) build --target $(WASM_TARGET) --profile wasm -p http-json-source -p fixed-list-source

# The importer with each source plugged into its `data-source` import.
compose: component sources tools
	@mkdir -p $(COMPOSED)
	$(WAC) plug $(COMPONENT) --plug $(SOURCES)/http_json_source.wasm -o $(COMPOSED)/http-json-importer.wasm
	$(WAC) plug $(COMPONENT) --plug $(SOURCES)/fixed_list_source.wasm -o $(COMPOSED)/fixed-list-importer.wasm
	@echo "$(COMPOSED)/http-json-importer.wasm imports:"
	@$(WASM_TOOLS) component wit $(COMPOSED)/http-json-importer.wasm | sed -n '/^world /,/^}/p'

# Not --quiet: on a fresh machine the first build takes minutes (wasmtime),
# and cargo's progress shows it is working.
demo: component
	$(CARGO) run -p assets-host -- demo --component $(COMPONENT)

# Guests that misbehave on purpose: one for the sandbox tests, one that
# attacks the host (other sources, callback SSRF, floods, huge answers) for
# the serve-mode security tests.
test-guest: setup
	$(CARGO) build --target $(WASM_TARGET) --profile wasm -p misbehaving-guest -p hostile-guest

# The PostgreSQL tests run against a throwaway cluster that
# scripts/with-postgres starts (installing the server with apt-get where it
# is missing) and stops afterwards, also when tests fail.
test: component test-guest compose
	scripts/with-postgres env ASSETS_COMPONENT=$(CURDIR)/$(COMPONENT) ASSETS_TEST_GUEST=$(CURDIR)/$(TEST_GUEST) \
		ASSETS_HOSTILE_GUEST=$(CURDIR)/$(HOSTILE_GUEST) \
		ASSETS_COMPOSED_DIR=$(CURDIR)/$(COMPOSED) $(CARGO) test --workspace
	@$(MAKE) --no-print-directory shared-build runtime-deps

# `make demo` and `make test` share one build of the dependencies: every
# third-party artifact the demo's binary is built from must be one the tests
# were built from too, or a fresh machine compiles wasmtime twice. The feature
# pins in host/cli/Cargo.toml keep it so; this catches a new dependency that
# breaks it. Both builds are already done here, so it only reads cargo's plan.
ARTIFACTS = grep '"reason":"compiler-artifact"' | grep '"package_id":"registry+' \
	| grep -o '"filenames":\["[^"]*"' | sort -u
shared-build:
	@$(CARGO) build -q -p assets-host --message-format=json | $(ARTIFACTS) > target/demo-artifacts.txt
	@$(CARGO) test -q --workspace --no-run --message-format=json | $(ARTIFACTS) > target/test-artifacts.txt
	@extra=$$(comm -23 target/demo-artifacts.txt target/test-artifacts.txt); \
	if [ -n "$$extra" ]; then \
		echo "make demo builds dependencies that make test builds differently (features differ):"; \
		echo "$$extra" | sed 's/.*\///; s/"$$//'; \
		echo "pin the features in host/cli/Cargo.toml (see the comment there)"; exit 1; \
	fi; \
	echo "shared build: the demo's $$(wc -l < target/demo-artifacts.txt) dependency artifacts are all the tests' too"

# The embedder's crate stays an embedder's crate: no web framework, database,
# HTTP client, CLI parser or cron parser in what assets-runtime pulls in
# (wasmtime-wasi-http, with hyper, may come in with wasi:http; a client may not).
RUNTIME_FORBIDDEN := axum rusqlite ureq reqwest clap cron croner tokio-postgres postgres sqlx
runtime-deps:
	@found=$$($(CARGO) tree -q -p assets-runtime -e normal --prefix none -f '{p}' | awk '{print $$1}' | sort -u \
		| grep -xF $(foreach c,$(RUNTIME_FORBIDDEN),-e $(c))); \
	if [ -n "$$found" ]; then echo "assets-runtime depends on $$found; move that code up a layer"; exit 1; fi; \
	echo "runtime deps: none of $(RUNTIME_FORBIDDEN)"

# Benchmarks are not tests: figures with targets, printed as one table
# (BENCHMARKS.md explains them). `make bench BENCH_ARGS=--json` for JSON.
bench: component
	$(CARGO) run --release --quiet -p assets-host -- bench --component $(COMPONENT) $(BENCH_ARGS)
	$(CARGO) run --release --quiet -p assets-host -- bench --serve $(BENCH_SERVE_ARGS)
	scripts/with-postgres $(CARGO) run --release --quiet -p assets-host -- bench --cluster --component $(COMPONENT) $(BENCH_ARGS)

# The Jepsen-style cluster test, longer and over more seeds than `make test`
# runs it (host/cli/tests/jepsen.rs).
SOAK_STEPS ?= 60
SOAK_SEEDS ?= 1,2,3
.PHONY: soak
soak: component
	scripts/with-postgres env ASSETS_JEPSEN_STEPS=$(SOAK_STEPS) ASSETS_JEPSEN_SEEDS=$(SOAK_SEEDS) \
		$(CARGO) test -p assets-host --test jepsen -- --nocapture

# `make test` RUNS times in a row with a release build competing beside it;
# stops at the first failure (scripts/repeat-test says more).
RUNS ?= 10
.PHONY: test-repeat
test-repeat:
	scripts/repeat-test $(RUNS)

# Mutation testing with cargo-mutants (`cargo install cargo-mutants`), scoped
# to the guest's lifecycle and chunker, the redaction crate and the
# confinement code, each against its own native tests (the wasm tests are too
# slow to run per mutant; each confinement file against its own crate's, so a
# mutant rebuilds one crate). In place, so it reuses target/ (the tree is left as
# it was), one scope after the other; over an hour on a busy 2-core machine.
# Reports in mutants.out-{guest,redact,confine,apipath}/; MUTANTS.md says what
# survived and why.
MUTANTS_FLAGS ?= --in-place --timeout 60 --build-timeout 300
.PHONY: mutants
mutants:
	$(CARGO) mutants $(MUTANTS_FLAGS) -o mutants.out-guest -p assets-scheduled-import -f src/lifecycle.rs -f src/chunker.rs \
		-C --lib -C --test=lifecycle -C --test=lossless_model -C --test=cloud_mapping -C --test=deadline
	$(CARGO) mutants $(MUTANTS_FLAGS) -o mutants.out-redact -p assets-redact
	$(CARGO) mutants $(MUTANTS_FLAGS) -o mutants.out-confine -p assets-platform -f host/platform/src/confine.rs -C --lib
	$(CARGO) mutants $(MUTANTS_FLAGS) -o mutants.out-apipath -p assets-runtime -f host/runtime/src/api_path.rs -C --lib

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
