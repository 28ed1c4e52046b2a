# Torchscope: `make run` opens the app on the built-in sample; `make test` runs ruff and every test.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: setup run test lint bench browser clean

# Idempotent: reinstalls only when a requirements file or pyproject.toml changed since the last install.
# The pinned requirements first, then this project in editable mode without touching them: `lib` imports from
# any folder, bench/ scripts run as `python bench/NAME.py`, and the `torchscope` command is on the venv's PATH.
setup: $(VENV)/.installed

$(VENV)/bin/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; install Python 3.11 or run make PY=python3"; exit 1; }
	$(PY) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python requirements.txt pyproject.toml
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: setup
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

# Chromium for the browser tests: Debian's package, installed when missing and we are root with apt-get.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.installed-dev browser lint
	$(BIN)/python -m pytest -q -rs

bench: $(VENV)/.installed-dev
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
