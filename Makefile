# Every target sets itself up: `make demo`, `make test`, `make bench` work from a fresh clone
# with only Python 3.11+, pip and make.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup test demo bench lint fmt clean distclean

setup: $(STAMP)

# Rebuilt only when pyproject.toml changes (or the venv is gone).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

test: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy src
	$(BIN)/python -m topics.schema --check
	$(BIN)/pytest -q

demo: setup
	$(BIN)/charger demo

bench: setup
	$(BIN)/charger bench --events 200000 --json bench.json

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src

fmt: setup
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis bench.json
	rm -rf src/*.egg-info ./*-app-data
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
