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

# What the tests run besides Python: a broker, a DICOM sender, a browser for the demo page, a PostgreSQL server.
TEST_PACKAGES := mosquitto dcmtk chromium chromium-driver postgresql

test: $(INSTALLED_DEV)
	@command -v mosquitto >/dev/null && command -v storescu >/dev/null && command -v chromedriver >/dev/null \
		&& ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "installing Debian's $(TEST_PACKAGES) (the tests start their own broker, sender, browser and database)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES) >/dev/null; }
	$(BIN)/python -m pytest
	# Again, every test that uses a store, with PostgreSQL as its store.
	$(BIN)/python -m pytest --store=postgresql -m store
