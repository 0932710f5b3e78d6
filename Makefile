# Entry points. `make demo` and `make test` each run `make setup` first, so each is one
# command on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python

.PHONY: help setup lint test demo demo-down bench emulator status clean-cache

help:
	@echo "make demo       sandbox stack on the local Docker engine against the GitHub emulator"
	@echo "make demo-down  destroy the sandbox stack and stop its emulator"
	@echo "make test       make lint, then every test suite on the real Pulumi and Docker engines"
	@echo "make lint       ruff, mypy (strict) and shellcheck; fails on any finding"
	@echo "make bench      benchmarks (ratios to baselines measured in the same run)"
	@echo "make emulator   run the GitHub emulator standalone"
	@echo "make status     fleet status of a stack (STACK=sandbox)"
	@echo "make setup      toolchain, Docker engine, base image, virtualenv (idempotent, cached)"

setup:
	@toolchain/setup.sh

lint: setup
	@toolchain/lint.sh

# Lint first: a finding fails the run before the long suites start.
test: setup lint
	@toolchain/test.sh $(PYTEST_ARGS)

demo: setup
	@scripts/demo.sh up

demo-down: setup
	@scripts/demo.sh down

bench: setup
	@toolchain/bench.sh

emulator:
	@$(PY) -m emulator

status:
	@source toolchain/env.sh && $(PY) -m components.status --stack $${STACK:-sandbox}

clean-cache:
	rm -rf $${GHR_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/ghr-toolchain}
