# The single entry point: people and CI run the same commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast lint typecheck check serve bench bench-load bench-detect clean

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
	PATH="$(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -r aR --rerun-show-tracebacks -n 2 --dist loadfile

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

BENCH_RESULTS := bench/results

## Benchmarks print JSON; targets and figures are in each script's docstring. Each one's JSON lands in
## bench/results/, then the load bench runs and bench/report.py writes report.md with its plots.
bench: setup
	mkdir -p $(BENCH_RESULTS)
	$(BENCH_ENV) $(BIN)/python bench/ack_latency.py > $(BENCH_RESULTS)/ack_latency.json
	$(BENCH_ENV) $(BIN)/python bench/kubesim_scale.py > $(BENCH_RESULTS)/kubesim_scale.json
	$(BENCH_ENV) $(BIN)/python bench/k8s_rollback_latency.py > $(BENCH_RESULTS)/k8s_rollback_latency.json
	$(BENCH_ENV) $(BIN)/python bench/helm_rollback_latency.py > $(BENCH_RESULTS)/helm_rollback_latency.json
	$(BENCH_ENV) $(BIN)/python bench/ecs_latency.py > $(BENCH_RESULTS)/ecs_latency.json
	$(BENCH_ENV) $(BIN)/python bench/ecs_slack_latency.py > $(BENCH_RESULTS)/ecs_slack_latency.json
	$(MAKE) --no-print-directory bench-load

## Services broken at once: 30 at Slack's own speed (100 take over twenty minutes there), and 100 with
## Slack's minute ten times faster. `LOAD_REAL_TARGETS=100 make bench-load` for the full real-speed run.
LOAD_REAL_TARGETS ?= 30
bench-load: setup
	mkdir -p $(BENCH_RESULTS)
	$(BENCH_ENV) $(BIN)/python bench/load.py --targets $(LOAD_REAL_TARGETS) --scale 1 > $(BENCH_RESULTS)/load-real.json
	$(BENCH_ENV) $(BIN)/python bench/load.py --targets 100 --scale 10 > $(BENCH_RESULTS)/load-scaled.json
	$(BENCH_ENV) $(BIN)/python bench/report.py $(BENCH_RESULTS)

## Failure detection over 10,000 Deployments in 500 namespaces, 50 of them broken at once (about 6 minutes
## each): at Slack's own pace of posts in the one detect channel, then with that pace lifted.
bench-detect: setup
	mkdir -p $(BENCH_RESULTS)
	$(BENCH_ENV) $(BIN)/python bench/detect_scale.py > $(BENCH_RESULTS)/detect_scale-real.json
	$(BENCH_ENV) $(BIN)/python bench/detect_scale.py --slack-budget-scale 60 > $(BENCH_RESULTS)/detect_scale-scaled.json

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
