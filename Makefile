# alignlab: `make run` sets up, builds and runs the quick scenario; `make test` runs the tests.
SHELL := /bin/bash
ALIGNLAB_CACHE ?= $(HOME)/.cache/alignlab
TORCH_DIR := $(ALIGNLAB_CACHE)/torch-2.11.0
SCENARIO ?= scenarios/sentiment.toml
CARGO ?= cargo

.PHONY: setup build run test bench clean-runs

# Install libtorch (the PyPI torch==2.11.0 wheel) once per machine, then link it as .libtorch.
# A LIBTORCH set by the user is respected: nothing is installed and .libtorch is not touched.
setup:
	@if [ -n "$$LIBTORCH" ]; then \
		echo "setup: using LIBTORCH=$$LIBTORCH (set by you)"; \
	else \
		if [ ! -f "$(TORCH_DIR)/torch/lib/libtorch_cpu.so" ]; then \
			echo "setup: installing torch==2.11.0 into $(TORCH_DIR) (about 4.6 GB, once)"; \
			rm -rf "$(TORCH_DIR).partial"; \
			python3 -m pip install --quiet --target "$(TORCH_DIR).partial" torch==2.11.0 && \
			rm -rf "$(TORCH_DIR)" && mv "$(TORCH_DIR).partial" "$(TORCH_DIR)" || exit 1; \
		fi; \
		ln -sfn "$(TORCH_DIR)/torch" .libtorch; \
	fi

build: setup
	$(CARGO) build --release

run: build
	./target/release/alignlab run $(SCENARIO)

test: setup
	$(CARGO) test --release

bench: build
	./target/release/alignlab bench

clean-runs:
	rm -rf runs
