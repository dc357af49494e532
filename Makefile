# genofed task runner: the README's two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast bench bench-quick lint docs format screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## simulate a cohort, build a node, print example queries, serve until Ctrl-C
	$(BIN)/genofed demo

test: $(STAMP)  ## the test suite (tests needing ../shared skip with a reason when it is absent)
	$(BIN)/pytest -q

test-fast: $(STAMP)  ## the suite without the tests that start node, hub or broker processes
	$(BIN)/pytest -q -m "not servers"

bench: $(STAMP)  ## benchmarks: JSON in bench/results/, ratios printed against baselines
	$(BIN)/python bench/bench_ingest.py --repeats 3 --out bench/results/ingest.json
	$(BIN)/python bench/bench_ingest.py --sites 300000 --repeats 3 --out bench/results/ingest-300k.json
	$(BIN)/python bench/bench_beacon.py --out bench/results/beacon.json
	$(BIN)/python bench/bench_governance.py --out bench/results/governance.json
	$(BIN)/python bench/bench_membership.py --out bench/results/membership.json
	$(BIN)/python bench/bench_data_connect.py --out bench/results/data-connect.json
	$(BIN)/python bench/bench_hub.py --out bench/results/hub.json
	$(BIN)/python bench/bench_glm.py --out bench/results/glm.json
	$(BIN)/python bench/bench_analysis_federation.py --out bench/results/analysis-federation.json
	$(BIN)/python bench/bench_gwas.py --out bench/results/gwas.json
	$(BIN)/python bench/bench_learning.py --out bench/results/learning.json
	$(BIN)/python bench/bench_wes.py --out bench/results/wes.json
	$(BIN)/python bench/bench_scale.py --out bench/results/scale.json

bench-quick: $(STAMP)
	$(BIN)/python bench/bench_ingest.py --quick
	$(BIN)/python bench/bench_beacon.py --quick
	$(BIN)/python bench/bench_governance.py --quick
	$(BIN)/python bench/bench_membership.py --quick
	$(BIN)/python bench/bench_data_connect.py --quick
	$(BIN)/python bench/bench_hub.py --quick
	$(BIN)/python bench/bench_glm.py --quick
	$(BIN)/python bench/bench_analysis_federation.py --quick
	$(BIN)/python bench/bench_gwas.py --quick
	$(BIN)/python bench/bench_learning.py --quick
	$(BIN)/python bench/bench_wes.py --quick
	$(BIN)/python bench/bench_scale.py --quick

lint: $(STAMP)  ## ruff, and the generated reference pages are current
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/python tools/reference_docs.py --check

docs: $(STAMP)  ## regenerate docs/reference/ (CLI, settings, endpoints, error codes) from the code
	$(BIN)/python tools/reference_docs.py

format: $(STAMP)
	$(BIN)/ruff format src tests bench tools
	$(BIN)/ruff check --fix src tests bench tools

screenshots: $(STAMP)  ## the portal's screenshots in docs/ (needs Debian's chromium)
	$(BIN)/python tools/portal_screenshots.py

clean:
	rm -rf $(VENV) .demo build dist src/*.egg-info
