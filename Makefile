# candor: the two README commands (demo, test) and the developer chores. Each target runs the
# idempotent set-up first, so a fresh Debian 12 machine needs nothing else.
SHELL := /bin/bash
JOBS ?= 2
SANITIZE ?=
BUILD_TYPE ?= RelWithDebInfo
ifeq ($(SANITIZE),)
BUILD_DIR ?= build
else
BUILD_DIR ?= build-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,
# Ninja schedules the whole graph at once (a fresh build is ~15% faster than with Makefiles on 2
# cores, docs/results/build.md); a build folder configured earlier keeps its generator.
GENERATOR := $(if $(wildcard $(BUILD_DIR)/CMakeCache.txt),,-G Ninja)
SHARED ?= $(abspath ../shared)
# The demo's model: stories260K from ../shared when present, else candor's built-in LM (a small
# student distilled from it, committed under models/builtin/lm).
BUILTIN_LM := $(abspath models/builtin/lm)
DEMO_MODEL ?= $(if $(wildcard $(SHARED)/models/stories260K/stories260K.bin),$(SHARED)/models/stories260K,$(BUILTIN_LM))
export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR ?= $(HOME)/.cache/ccache
# Paths relative to the tree, so that every clone and worktree of candor shares the cache.
export CCACHE_BASEDIR ?= $(CURDIR)
export CCACHE_NOHASHDIR ?= 1

.PHONY: setup configure build demo test format lint bench clean

setup:
	@bash scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCANDOR_SANITIZE=$(SANITIZE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS)

demo: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS) --target candor_cli
	@bash scripts/demo.sh $(BUILD_DIR)/candor "$(DEMO_MODEL)"

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) --timeout 900

bench: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS) --target bench_runtime
	@$(BUILD_DIR)/bench/bench_runtime --benchmark_counters_tabular=true

format: setup
	@git ls-files '*.h' '*.cpp' | xargs clang-format -i

# clang-tidy cannot read GCC's precompiled headers: lint from a compile database without them.
LINT_FILES ?= $(shell git ls-files 'src/*.cpp' 'tools/*.cpp' | grep -v /shim/)
lint: setup
	@cmake -S . -B build-lint -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
	@clang-tidy -p build-lint --quiet $(LINT_FILES)

clean:
	rm -rf build build-*
