# Two commands on a fresh machine with only a Rust toolchain:
#   make demo   builds the importer component and runs the demo
#   make test   builds the importer component and runs every test
CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
COMPONENT   := target/$(WASM_TARGET)/wasm/assets_scheduled_import.wasm
TEST_GUEST  := target/$(WASM_TARGET)/wasm/misbehaving_guest.wasm

.PHONY: all setup component test-guest demo test bench lint clean

all: test

# The wasm target comes from rustup; install it only when missing.
setup:
	@rustup target list --installed 2>/dev/null | grep -qx '$(WASM_TARGET)' \
		|| rustup target add $(WASM_TARGET)

# The guest component, in the size-optimised `wasm` profile.
component: setup
	$(CARGO) build --target $(WASM_TARGET) --profile wasm -p assets-scheduled-import
	@ls -l $(COMPONENT) | awk '{print "component: " $$NF " (" $$5 " bytes)"}'

demo: component
	$(CARGO) run --quiet -p assets-host -- demo --component $(COMPONENT)

# A guest that misbehaves on purpose, for the sandbox tests.
test-guest: setup
	$(CARGO) build --target $(WASM_TARGET) --profile wasm -p misbehaving-guest

test: component test-guest
	ASSETS_COMPONENT=$(CURDIR)/$(COMPONENT) ASSETS_TEST_GUEST=$(CURDIR)/$(TEST_GUEST) $(CARGO) test --workspace

# Benchmarks are not tests: figures with targets, printed as one table
# (BENCHMARKS.md explains them). `make bench BENCH_ARGS=--json` for JSON.
bench: component
	$(CARGO) run --release --quiet -p assets-host -- bench --component $(COMPONENT) $(BENCH_ARGS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
