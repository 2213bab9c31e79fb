# vigil - thin wrapper around CMake. `make run` starts vigil on this host;
# `make test` runs every test in a normal and a sanitizer (ASan+UBSan)
# build. Both install what they need first (`make deps`).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
# Seconds each fuzz target runs in `make test`; `make fuzz
# VIGIL_FUZZ_SECONDS=600` for a longer run.
VIGIL_FUZZ_SECONDS ?= 10
export VIGIL_FUZZ_SECONDS
JOBS       ?= $(shell nproc)
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian 12 packages: what building and running need (`make run`), and
# what the tests add (`make test`): servers and peers they talk to, the
# sanitizer and fuzzing runtime, the format check. The reasons are in
# docs/dependencies.md.
DEPS_BUILD := build-essential cmake pkg-config \
        libuv1-dev libinih-dev liblua5.4-dev libsqlite3-dev libjansson-dev \
        libcmocka-dev libcurl4-openssl-dev libpq-dev \
        libwebsockets-dev libwebsockets-evlib-uv libssl-dev
DEPS_TEST := clang clang-format libclang-rt-14-dev python3 \
        python3-prometheus-client postgresql postgresql-contrib \
        python3-websockets openssl sqlite3 prometheus chromium \
        python3-aiohttp python3-asyncpg iproute2

RUN_PRINT := 'sys.cpu.busy_pct{cpu=total}' 'sys.mem.used_pct' \
             'sys.load.avg1' 'vigil.loop.lag_ms' 'vigil.process.*'

.PHONY: all deps deps-build build build-asan fuzz run test test-unit demo format format-check \
        bench install clean

all: build

# Installs only what is missing, without prompting; idempotent. npm
# (for the dashboard's uPlot) comes from Debian only when no npm is there:
# a NodeSource nodejs conflicts with Debian's npm.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	    grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    --no-install-recommends $$missing; \
	fi
endef

deps-build:
	$(call install_missing,$(DEPS_BUILD))

deps:
	$(call install_missing,$(DEPS_BUILD) $(DEPS_TEST))

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DVIGIL_SANITIZE=ON

$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DVIGIL_FUZZ=ON

build: deps-build $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps-build $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

fuzz: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	cd $(FUZZ_BUILD) && ctest --output-on-failure -L fuzz

run: build
	@echo "vigil: watching this host (conf/vigil.ini): dashboard on" \
	  "http://127.0.0.1:9470/ (the log below says where); Ctrl-C stops."
	./$(BUILD)/vigil run -c conf/vigil.ini $(foreach s,$(RUN_PRINT),--print $(s))

test: deps build build-asan format-check
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -LE drill
	$(MAKE) fuzz

# One drill a person can watch: slow database queries, stage by stage,
# with the dashboard's address; on a terminal each stage waits for Enter.
demo: deps build
	VIGIL_BIN=$(BUILD)/vigil tests/integration/drill_slow_db.py --demo

test-unit: deps build
	cd $(BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

SOURCES = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null)

format: deps
	clang-format -i $(SOURCES)

format-check: deps
	@clang-format --dry-run --Werror $(SOURCES) || \
	  { echo "make format-check: run 'make format'"; exit 1; }

# Each prints its figures; see bench/ for the ones that take arguments
# (ingest.sh, probes.sh: http, ws and proc) and VIGIL_BENCH_PG for
# bench_store.
bench: build
	./$(BUILD)/bench_bus
	./$(BUILD)/bench_rules
	./$(BUILD)/bench_lua
	./$(BUILD)/bench_store
	bench/alert.py ./$(BUILD)/vigil
	bench/overhead.sh ./$(BUILD)/vigil

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
