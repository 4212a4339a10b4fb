# The two set-up commands: `make run` (install and start the service) and `make test` (install and run every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train]'

run: install
	$(BIN)/hemowatch run

test: install-dev
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || { \
		echo "installing Debian's mosquitto (the tests start their own broker)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; }
	$(BIN)/python -m pytest
