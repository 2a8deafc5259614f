# The two commands: `make run` and `make test`. Both install what is missing
# (through apt, deploy/local/setup.sh), configure and build first.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_ARGS ?=
JOBS ?= $(shell nproc)

.PHONY: all setup configure build run test test-unit test-integration test-e2e bench clean

all: build

setup:
	@deploy/local/setup.sh

configure: setup
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DIOT2MQTT_WERROR=ON $(CMAKE_ARGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@deploy/local/run.sh

test: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

test-unit test-integration test-e2e: test-%: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -L $*

bench: build
	@tests/bench/run_bench.sh
	@tests/bench/run_sdk_bench.sh

clean:
	@rm -rf $(BUILD_DIR)
