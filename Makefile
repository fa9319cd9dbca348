# SPDX-License-Identifier: Apache-2.0
# Thin wrapper: every target installs what it needs (Debian packages) and builds first.
BUILD ?= build
ASAN_BUILD ?= build-asan
STORE ?= file

.PHONY: all deps build demo test test-asan clean

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

build: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD)

demo: build
	tools/demo.sh --build $(BUILD) --store $(STORE)

test: build
	tests/run-all.sh --build $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

test-asan: deps $(ASAN_BUILD)/build.ninja
	@ninja -C $(ASAN_BUILD)
	tests/run-all.sh --build $(ASAN_BUILD) --suites 'unit dp'

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
