# The single entry point: people and CI run the same commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast lint typecheck check serve bench clean

$(STAMP): pyproject.toml requirements.lock scripts/setup.sh scripts/setup-tools.sh
	PYTHON=$(PYTHON) scripts/setup.sh
	@touch $(STAMP)

setup: $(STAMP)

## The main job on embedded defaults: every seed incident end to end (kubesim, moto, fake Slack, private Redis).
SCENARIO ?= all
demo: setup
	$(BIN)/python -m sandbox.demo $(SCENARIO)

## Everything CI runs: lint, types, layering, then the whole test suite.
test: setup
	$(MAKE) --no-print-directory check

check: lint typecheck
	PATH="$(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -r aR --rerun-show-tracebacks

test-fast: setup
	PATH="$(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q tests/core tests/contracts

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

serve: setup
	$(BIN)/rollbot serve

BENCH_ENV := PATH="$(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$$PATH"

## Benchmarks print JSON; targets and figures are in each script's docstring and the closing notes.
bench: setup
	$(BENCH_ENV) $(BIN)/python bench/ack_latency.py
	$(BENCH_ENV) $(BIN)/python bench/kubesim_scale.py
	$(BENCH_ENV) $(BIN)/python bench/k8s_rollback_latency.py
	$(BENCH_ENV) $(BIN)/python bench/helm_rollback_latency.py
	$(BENCH_ENV) $(BIN)/python bench/ecs_latency.py
	$(BENCH_ENV) $(BIN)/python bench/ecs_slack_latency.py

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
