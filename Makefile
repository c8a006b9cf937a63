# One target per job. `make test` and `make demo` set up everything they
# need on a fresh machine: the virtualenv, the openssl binary, and the
# control plane built from Go modules (cached outside the checkout).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CLUSTER_DIR := .cluster

.PHONY: test lint ship-lint lock quick unit ship e2e demo demo-offline bench bench-docs control-plane node go-tools cluster-up cluster-down image tools clean

# Runtime dependencies at the versions of requirements.lock (what the image
# runs), so that tests do not change with whatever was released today.
$(INSTALLED): pyproject.toml requirements.lock | tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' requirements.lock > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet --constraint $(VENV)/constraints.txt -e '.[dev]'
	touch $@

tools:
	@hack/ensure-tools.sh

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy operator tests hack

# hadolint and checkov live in their own virtualenv (.venv-ship): checkov
# pins packages that conflict with the development ones.
ship-lint:
	@bash hack/ship-lint.sh

lock:
	@bash hack/lock.sh

control-plane:
	@hack/control-plane/build.sh >/dev/null

# The node's runtime: containerd, runc and the CNI plugins, built from their Go
# modules and cached like the control plane (the kubelet is built with it).
node: tools
	@hack/control-plane/node/build.sh >/dev/null

# promtool, kstatus, helm and krew, built from their Go modules and cached
# like the control plane: the tests check the alerts, the GitOps status, the
# chart and the krew manifest with them.
go-tools:
	@hack/tools/build.sh promtool kstatus helm krew >/dev/null

# The unit tests (tests/unit) and nothing else: nothing to build, no Go,
# no control plane, no images; under a minute on two cores.
quick: $(INSTALLED)
	$(BIN)/pytest tests/unit

# Tests that need no cluster and nothing built: the unit tests, and the
# issued certificates checked with openssl and pkilint (tests/recipe).
unit: $(INSTALLED)
	$(BIN)/pytest tests/unit tests/recipe

# What we ship (deploy/, the chart, the krew manifest, the alerts, the
# documented commands, the bench tables of the docs), checked with the
# pinned kubectl and go-tools.
ship: $(INSTALLED) tools control-plane go-tools
	$(BIN)/pytest tests/ship

e2e: $(INSTALLED) tools control-plane node go-tools
	$(BIN)/pytest -m e2e

test: lint ship-lint tools control-plane node go-tools
	$(BIN)/pytest

demo-offline: $(INSTALLED) tools
	@$(BIN)/python hack/demo_offline.py

demo: $(INSTALLED) tools control-plane node
	@$(BIN)/python hack/demo.py

# The control plane and a node on this machine (root; one node per machine).
cluster-up: $(INSTALLED) tools control-plane node
	@$(BIN)/python hack/localcluster.py up --dir $(CLUSTER_DIR)

# The operator's image from the Dockerfile and the workloads' images, built
# without a Docker daemon, imported into the node of `make cluster-up`.
image: $(INSTALLED) tools node
	@$(BIN)/python hack/images.py load --dir $(CLUSTER_DIR)

cluster-down: $(INSTALLED)
	@$(BIN)/python hack/localcluster.py down --dir $(CLUSTER_DIR)

clean:
	rm -rf $(VENV) .venv-ship .mypy_cache .ruff_cache .pytest_cache .hypothesis

# `make bench SCENARIO=scale` (or storm, rotation, pods, policy, rolls,
# revocations, all): one scenario; figures printed, written to
# .bench/<scenario>.json and published to docs/bench/, from which the
# README's and docs' tables are rendered.
SCENARIO ?= default
bench: $(INSTALLED) control-plane
	@PYTHONPATH=hack $(BIN)/python -m bench --scenario $(SCENARIO) --publish

# The bench tables of README.md and docs/, rendered from docs/bench/*.json.
bench-docs: $(INSTALLED)
	@PYTHONPATH=hack $(BIN)/python -m bench.doc_tables
