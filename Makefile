# qmesh — every target calls the real tool; `make help` lists them.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup clients up fmt lint type unit integration e2e test chart smoke pods check bench bench-postfix clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install qmesh with its test tools

clients: ## the Debian programs the tests use as real clients (mpop, swaks, openssl)
	bash deploy/ci/system-packages.sh

up: $(STAMP) ## start the whole cluster on this machine (Ctrl-C stops it)
	$(BIN)/qmesh up

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format qmesh services tests bench
	$(BIN)/ruff check --fix qmesh services tests bench

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check qmesh services tests bench
	$(BIN)/ruff format --check qmesh services tests bench

type: $(STAMP) ## mypy --strict
	$(BIN)/mypy

unit: $(STAMP) ## pure logic tests, no servers
	$(BIN)/pytest tests/unit -q

integration: $(STAMP) ## real nats-server and S3 server
	$(BIN)/pytest tests/integration -q

e2e: $(STAMP) clients ## real services driven by real clients
	$(BIN)/pytest tests/e2e -q

test: $(STAMP) clients ## every pytest test
	$(BIN)/pytest -q

chart: ## Helm chart, manifests, Dockerfile and compose checks
	bash deploy/ci/chart-checks.sh

smoke: ## image build and compose smoke test (skips where no Docker engine starts)
	bash deploy/ci/compose-smoke.sh

pods: $(STAMP) ## the chart's scenarios as pods with podman (skips where podman cannot run)
	bash deploy/ci/pod-tier.sh

check: lint type test chart smoke pods ## everything CI runs

bench: $(STAMP) ## end-to-end throughput through `qmesh up`
	$(BIN)/python bench/e2e_throughput.py

bench-postfix: $(STAMP) ## qmesh next to a private Postfix, same load (ARGS="--load 2k-50 --store s3 ...")
	$(BIN)/python bench/compare_postfix.py $(ARGS)

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) qmesh-data .pytest_cache .mypy_cache .ruff_cache
