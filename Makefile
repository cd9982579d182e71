# The README's two commands: `make lab` (the main job, the local lab) and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup apt venv lab lab-down test lint

setup: apt venv

# Installs the Debian packages listed in packages.apt (skipped when all are present).
apt:
	@pkgs=$$(grep -v '^#' packages.apt | xargs); \
	if ! dpkg -s $$pkgs >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $$pkgs; \
	fi

venv: $(BIN)/hybrid

$(BIN)/hybrid: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

lab: setup
	$(BIN)/hybrid lab up --stack dev
	$(BIN)/hybrid lab test --stack dev
	@echo "The lab keeps running. Inspect: hybrid lab status   Tear down: hybrid lab down"

lab-down: venv
	$(BIN)/hybrid lab down

lint: venv
	$(BIN)/ruff check .
	$(BIN)/pyright

test: setup lint
	$(BIN)/pytest
