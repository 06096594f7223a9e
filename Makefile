# The single entry point. `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install dev run worker test lint bench clean browser mosquitto

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	@touch $@

dev: $(VENV)/.dev-installed

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# Starts the embedded PostgreSQL unless DATABASE_URL is set, migrates, creates a demo tenant on
# first run, serves the API on 127.0.0.1:8000 and runs the job scheduler. Ctrl-C stops it all.
run: install
	$(BIN)/traksense serve

worker: install
	$(BIN)/traksense worker

lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy traksense bench

test: dev lint browser mosquitto
	$(BIN)/traksense makemigrations --check --dry-run
	$(BIN)/pytest

# The point explorer is tested in headless Chromium from Debian's packages.
browser:
	@command -v chromium >/dev/null || { \
		echo "installing Chromium (Debian package) for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The MQTT tests run a real Mosquitto with its dynamic-security plugin (Debian packages).
mosquitto:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || { \
		echo "installing Mosquitto (Debian packages) for the MQTT tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			mosquitto mosquitto-clients >/dev/null; }

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
