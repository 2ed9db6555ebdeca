# Every target bootstraps what it needs on a machine that has only python3 and pip:
# a private uv (in .tools/) installs the locked environment (in .venv/) from uv.lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := .tools/bin/uv
SYNCED := $(VENV)/.synced
QUICKSTART := examples/quickstart/muse.yaml
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup serve test lint bench quickstart demo console clean

setup: $(SYNCED)

$(UV):
	$(PY) -m venv .tools
	.tools/bin/pip install --quiet "uv>=0.5"

$(SYNCED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PY)
	$(BIN)/python -m muse.console.assets
	@touch $@

## serve: serve the bundled quickstart deployment on http://127.0.0.1:8000 (Ctrl-C stops)
PORT ?= 8000
serve: setup
	$(BIN)/muse serve $(QUICKSTART) --port $(PORT)

## test: the whole suite
test: setup
	$(BIN)/python -m pytest -q

## lint: ruff (lint + format) and mypy --strict
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: every benchmark script; record figures in benchmarks/RESULTS.md
bench: setup
	$(BIN)/python benchmarks/bench_transforms.py
	$(BIN)/python benchmarks/bench_predictor.py
	$(BIN)/python benchmarks/bench_routing.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_maps.py
	$(BIN)/python benchmarks/bench_fleet.py
	$(BIN)/python benchmarks/loop_stalls.py
	$(BIN)/python benchmarks/serve_load.py
	$(BIN)/python benchmarks/serve_stalls.py
	$(BIN)/python benchmarks/bench_feature_store.py
	$(BIN)/python benchmarks/score_file.py
	$(BIN)/python benchmarks/bench_remote.py
	$(BIN)/python benchmarks/bench_image.py
	$(BIN)/python benchmarks/refresh_real_data.py --seeds 10
	$(BIN)/python benchmarks/fuzz_api.py --max-time 300
	$(BIN)/python benchmarks/abuse.py
	$(BIN)/python benchmarks/chaos.py
	$(BIN)/python benchmarks/soak.py
	$(BIN)/python benchmarks/console_pages.py

## quickstart: rebuild the quickstart's models and T^Q artifacts from the generator
quickstart: setup
	$(BIN)/python examples/quickstart/build.py --force

## console: the operator console over the quickstart (a store, a candidate version and a
## week of generated traffic under .cache/console) on http://127.0.0.1:8080 (Ctrl-C stops)
CONSOLE_PORT ?= 8080
console: setup
	$(BIN)/python examples/quickstart/console.py --port $(CONSOLE_PORT)

## demo: the model lifecycle end to end on generated data (paper §3's scenarios) into demo-out/
demo: setup
	$(BIN)/muse demo --out demo-out --force

clean:
	rm -rf .tools $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache
