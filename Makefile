# The set-up commands: `make run` (install and start the service), `make demo` (the service with a chat page and no
# Telegram) and `make test` (install and run every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Installing is done again only when pyproject.toml is newer than the stamp file of the last install.
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev

.PHONY: run demo test install install-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(INSTALLED_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train]'
	touch $@ $(INSTALLED)

install: $(INSTALLED)

install-dev: $(INSTALLED_DEV)

run: $(INSTALLED)
	$(BIN)/hemowatch run

demo: $(INSTALLED)
	$(BIN)/hemowatch demo

test: $(INSTALLED_DEV)
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || { \
		echo "installing Debian's mosquitto (the tests start their own broker)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; }
	$(BIN)/python -m pytest
