# SPDX-License-Identifier: Apache-2.0
# Thin wrapper: every target installs what it needs (Debian packages) and builds first.
BUILD ?= build
ASAN_BUILD ?= build-asan
STORE ?= file
# The sanitizer build runs the suites that exercise our own code without real daemons.
ASAN_SUITES ?= unit dp ctl
export UBSAN_OPTIONS ?= halt_on_error=1:print_stacktrace=1:suppressions=$(CURDIR)/tests/ubsan.supp
export ASAN_OPTIONS ?= detect_leaks=1

.PHONY: all deps build build-asan demo test test-asan bench bench-vhost bench-cluster clean

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD)

# Only the test executables of $(ASAN_SUITES) (alias target in tests/meson.build).
build-asan: deps $(ASAN_BUILD)/build.ninja
	@ninja -C $(ASAN_BUILD) sanitized-tests

demo: build
	tools/demo.sh --build $(BUILD) --store $(STORE)

# Every suite of the normal build, then the unit, data-plane and store suites again
# under ASan+UBSan; one "N passed, N failed" line for both.
test: build build-asan
	tests/run-all.sh --build $(BUILD) --also '$(ASAN_BUILD):$(ASAN_SUITES)'

test-asan: build-asan
	tests/run-all.sh --build $(ASAN_BUILD) --suites '$(ASAN_SUITES)' -- --no-rebuild

# Benchmarks are not tests: numbers with the machine they came from (perf/README.md,
# docs/performance.md). bench: the data plane (cycles per packet, one table, JSON and a
# plot under perf/results/) and vhost-user throughput (about 25 s); bench-vhost: only the
# latter; bench-cluster: attach latency and convergence on etcd.
bench: build
	perf/dp_bench.sh --build $(BUILD) $(BENCH_ARGS)
	perf/vhost_bench.sh --build $(BUILD)

bench-vhost: build
	perf/vhost_bench.sh --build $(BUILD) $(BENCH_ARGS)

bench-cluster: build
	perf/cluster_bench.sh --build $(BUILD) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
