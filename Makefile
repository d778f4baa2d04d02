# Two commands do all setup on a fresh machine: `make run` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
# torch 2.13.0 is the CPU wheel on disk; the test target installs it first so nothing pulls a CUDA
# build. `make run` needs no torch: the default embedder is MiniLM on ONNX Runtime.
TORCH := torch==2.13.0
# llama-cpp-python builds from source; a native build crashes on generation on these CPUs.
export CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_RUN): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP_TEST): $(BIN)/python pyproject.toml scripts/apt-deps.sh
	bash scripts/apt-deps.sh
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/memq demo

test: $(STAMP_TEST)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Heavy benchmarks run by their own command, never inside `make test`.
bench: $(STAMP_TEST)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python benchmarks/ann_bench.py
	$(BIN)/python benchmarks/store_bench.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
