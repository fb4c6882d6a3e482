# Two commands on a fresh machine:  `make demo`  and  `make test`  (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test setup setup-test system-deps lint typecheck unit integration acceptance bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	scripts/setup.sh
	@touch $@

$(VENV)/.installed-test: pyproject.toml
	scripts/setup.sh --test
	@touch $@ $(VENV)/.installed

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

demo: setup
	$(VENV)/bin/corral demo

lint: setup-test
	$(VENV)/bin/ruff check src tests bench

typecheck: setup-test
	$(VENV)/bin/mypy

test: setup-test
	scripts/test.sh

bench: setup-test
	$(PY) -m bench.run

bench-quick: setup-test
	$(PY) -m bench.run --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
