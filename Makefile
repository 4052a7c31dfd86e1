# The two commands a newcomer runs: `make demo` and `make test`.
# Everything else here is what they need, installed into the checkout.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
PORT ?= 8000
EMULATOR_PORT ?= 8441
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test setup system-deps bench duplicates clean docs

## demo: start the local Azure emulator and JupyterHub on http://127.0.0.1:$(PORT) (`make demo PORT=8080`)
demo: setup
	@$(BIN)/python -m aml_jupyterhub.emulator.demo --hub-port $(PORT) --emulator-port-base $(EMULATOR_PORT)

## test: the whole test suite against the local Azure emulator
test: setup system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed node_modules/.installed

# system-deps first: gssapi (sparkmagic's Kerberos support) builds against libkrb5-dev.
$(VENV)/.installed: setup.cfg pyproject.toml | system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

## system-deps: Debian packages the tests need (installed when run as root)
system-deps:
	bash scripts/system-deps.sh

## docs: regenerate docs/config-reference.md from the settings' help (a test checks it is current)
docs: $(VENV)/.installed
	$(BIN)/python -m aml_jupyterhub._config_reference

## bench: every benchmark script in bench/ (the modules without a __main__ block are their helpers)
bench: setup
	@grep -l '^if __name__ == "__main__":' bench/*.py | xargs -n1 $(BIN)/python

duplicates:
	duplicates aml_jupyterhub tests

clean:
	rm -rf $(VENV) node_modules .pytest_cache test-artifacts .demo
