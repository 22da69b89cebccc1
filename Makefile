# Two commands on a fresh machine with only a Rust toolchain:
#   make demo   builds the importer component and runs the demo
#   make test   builds the components and compositions and runs every test
CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
COMPONENT   := target/$(WASM_TARGET)/wasm/assets_scheduled_import.wasm
TEST_GUEST  := target/$(WASM_TARGET)/wasm/misbehaving_guest.wasm
SOURCES     := target/$(WASM_TARGET)/wasm
COMPOSED    := target/composed

# Component tools, pinned, built once from crates.io and cached outside the
# clone (a clean clone reuses them; a fresh machine builds them, ~15 min).
TOOLS_ROOT         ?= $(HOME)/.cache/assets-scheduled-import
WAC_VERSION        := 0.12.0
WASM_TOOLS_VERSION := 1.263.0
WAC                := $(TOOLS_ROOT)/bin/wac
WASM_TOOLS         := $(TOOLS_ROOT)/bin/wasm-tools

.PHONY: all setup tools component sources compose test-guest demo test bench lint clean

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

demo: component
	$(CARGO) run --quiet -p assets-host -- demo --component $(COMPONENT)

# A guest that misbehaves on purpose, for the sandbox tests.
test-guest: setup
	$(CARGO) build --target $(WASM_TARGET) --profile wasm -p misbehaving-guest

test: component test-guest compose
	ASSETS_COMPONENT=$(CURDIR)/$(COMPONENT) ASSETS_TEST_GUEST=$(CURDIR)/$(TEST_GUEST) \
		ASSETS_COMPOSED_DIR=$(CURDIR)/$(COMPOSED) $(CARGO) test --workspace

# Benchmarks are not tests: figures with targets, printed as one table
# (BENCHMARKS.md explains them). `make bench BENCH_ARGS=--json` for JSON.
bench: component
	$(CARGO) run --release --quiet -p assets-host -- bench --component $(COMPONENT) $(BENCH_ARGS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
