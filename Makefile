# kubeforge developer entry points. `make` or `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# every transitive dependency's version, resolved from pyproject.toml by `make lock`: a fresh
# clone installs what CI tested, and the images' dependency layers (4 GB for the trainer) stay
# the same until the lock changes, not whenever some dependency of a dependency is released
LOCK := constraints.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
# two workers; the tests that use the cluster run in order on one of them (tests/conftest.py).
# Not in test-slow: its scenarios share the real node's 2 CPUs, which the kubelet advertises and
# the scheduler counts (the demo's examples request most of them, the queueing scenarios' training
# a whole one), and KServe, Kueue and cluster-wide roles the demo's release and the tests' share;
# side by side, pods would wait for CPU. (The slow Kueue hand-over once blamed on running them
# side by side was kubernetes-sigs/kueue#12232: docs/queueing.md.) Tried (2026-12-04): its
# scenarios of processes alone (no_cluster) on a second worker beside the real-node ones: 26:18
# against 26:40 serial, the 147 s they took made up by the real-node scenarios' 108 s slower.
XDIST := -n 2
# checkov (the chart's security scan) has its own environment: its pins are not ours
CHECKOV_VERSION := 3.3.30
CHECKOV := .cache/tools/checkov-$(CHECKOV_VERSION)/bin/checkov
CHECKOV_LOCK := constraints-checkov.txt
# uv installs the environments: from its cache (outside the clone) a fresh clone's .venv takes
# seconds where pip took minutes; the resolver picks the same versions pip does. With their
# bytecode (--compile-bytecode, about 30 s on two cores): uv writes none by default, and where
# PYTHONDONTWRITEBYTECODE is set (this machine's environment) nothing ever would, so every
# Python process of the tests compiled torch, transformers and kserve from source again (4-5
# CPU-seconds each; the unit tests 59 s -> 42 s with it)
UV_VERSION := 0.13.9
UV := $(HOME)/.cache/kubeforge/tools/uv-$(UV_VERSION)/bin/uv
# mypy's cache outside the clone: a fresh clone checks in seconds, not 40 s (mypy compares the
# hashes of files whose mtimes differ, so a clone's new mtimes do not make it stale)
export MYPY_CACHE_DIR ?= $(HOME)/.cache/kubeforge/mypy

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	@command -v $(PYTHON_BOOTSTRAP) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON_BOOTSTRAP) not found)"; exit 1; }
	$(PYTHON_BOOTSTRAP) -m venv $(dir $(UV))..
	$(dir $(UV))pip install --quiet uv==$(UV_VERSION)

$(STAMP): pyproject.toml $(LOCK) | $(UV)
	test -x $(PY) || $(UV) venv --quiet --allow-existing --python $(PYTHON_BOOTSTRAP) $(VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -c $(LOCK) -e '.[test,lint,data,ml,serving]'
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: lock
lock: | $(UV) ## Re-resolve constraints*.txt after a change to pyproject.toml's pins or checkov's (LOCK_ARGS=--upgrade: every version anew)
	$(UV) pip compile --quiet pyproject.toml --all-extras --python $(PYTHON_BOOTSTRAP) \
	  --custom-compile-command 'make lock' -o $(LOCK) $(LOCK_ARGS)
	echo checkov==$(CHECKOV_VERSION) | $(UV) pip compile --quiet - --python $(PYTHON_BOOTSTRAP) \
	  --custom-compile-command 'make lock' -o $(CHECKOV_LOCK) $(LOCK_ARGS)

.PHONY: deps
deps: ## Install the Debian packages the demo and tests need (as root), or name the missing ones
	@python3 hack/deps.py

.PHONY: venv
venv: $(STAMP) $(CHECKOV) ## Create .venv with kubeforge and its test and lint tools

$(CHECKOV): $(CHECKOV_LOCK) | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON_BOOTSTRAP) $(dir $(CHECKOV))..
	$(UV) pip install --quiet --compile-bytecode --python $(dir $(CHECKOV))python -c $(CHECKOV_LOCK) checkov==$(CHECKOV_VERSION)
	touch $@

.PHONY: demo
demo: deps $(STAMP) ## kubeforge on the embedded control plane (or KUBECONFIG): the examples, and the closed loop on the real node
	$(PY) hack/demo.py

.PHONY: demo-down
demo-down: ## Stop everything `make demo` started
	$(PY) hack/demo.py --down

.PHONY: test
test: deps $(STAMP) $(CHECKOV) ## Unit, integration and e2e tests but the slow scenarios (starts the local cluster)
	$(PY) -m pytest $(XDIST) tests/unit tests/integration tests/e2e -m "not slow" $(PYTEST_ARGS)

.PHONY: test-slow
test-slow: deps $(STAMP) $(CHECKOV) ## The slow scenarios (the demo and its closed loop, serving on KServe), which CI runs after make test
	$(PY) -m pytest tests/unit tests/integration tests/e2e -m slow $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## Unit tests only (no cluster)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: deps $(STAMP) $(CHECKOV) ## Integration tests against a real kube-apiserver
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: deps $(STAMP) ## e2e tests: kubeforge from its chart, workloads in real containers on the real node
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

.PHONY: images
images: $(STAMP) ## Build kubeforge's images for the real node (and import them if it runs)
	$(PY) hack/localcluster.py images

.PHONY: lint
lint: $(STAMP) ## ruff (lint and format check), mypy --strict and the import layers (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: fmt
fmt: $(STAMP) ## Format and autofix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

HELM = $$($(PY) hack/localcluster.py bin-dir)/helm

.PHONY: chart-scan
chart-scan: $(STAMP) $(CHECKOV) ## Render the Helm chart (all options on) and scan it with checkov
	$(PY) hack/localcluster.py build >/dev/null
	mkdir -p _output
	$(HELM) template kubeforge charts/kubeforge -n kubeforge-system --set image.digest=sha256:$$(printf '0%.0s' {1..64}) \
	  --set monitoring.serviceMonitor.enabled=true --set monitoring.prometheusRule.enabled=true \
	  --set monitoring.grafanaDashboard.enabled=true \
	  --set api.ingress.enabled=true --set api.ingress.host=kubeforge.example.com \
	  --set api.ingress.tlsSecretName=kubeforge-tls > _output/kubeforge-rendered.yaml
	BC_SKIP_MAPPING=TRUE $(CHECKOV) -f _output/kubeforge-rendered.yaml --framework kubernetes --compact --quiet --skip-download

.PHONY: generate
generate: $(STAMP) ## Regenerate CRD manifests and the CRD reference from the models
	$(PY) -m kubeforge_crds.generate
	$(PY) -m kubeforge_pipelines compile

.PHONY: check-generated
check-generated: $(STAMP) ## Fail if generated files are stale
	$(PY) -m kubeforge_crds.generate --check
	$(PY) -m kubeforge_pipelines compile --check

FINETUNE_DIR := .cache/finetune-local

.PHONY: finetune-local
finetune-local: $(STAMP) ## Fine-tune the tiny model for real on the CPU with kfp's local runner
	test -f $(FINETUNE_DIR)/base/config.json || $(PY) -m kubeforge_pipelines build-base-model $(FINETUNE_DIR)/base
	test -f $(FINETUNE_DIR)/tickets.jsonl || $(PY) -m kubeforge_pipelines make-dataset $(FINETUNE_DIR)/tickets.jsonl
	$(PY) -m kubeforge_pipelines run --workdir $(FINETUNE_DIR)/work \
	  --params-file examples/pipelines/finetune-local.json --result $(FINETUNE_DIR)/lineage.json
	@echo "model versions: $$(ls $(FINETUNE_DIR)/models/tickets)  lineage: $(FINETUNE_DIR)/lineage.json"

.PHONY: bench-pods
bench-pods: $(STAMP) ## Pod start latency on the real node (ratio to kwok) and its components' memory
	$(PY) bench/pod_start.py

.PHONY: bench-admission
bench-admission: $(STAMP) ## 200 FineTuneJobs of 4 Teams admitted by Kueue's real controller (beside Kueue's baseline)
	python3 hack/localcluster.py up
	python3 hack/localcluster.py kueue up
	$(PY) bench/admission.py $(BENCH_ARGS)

.PHONY: bench-drift
bench-drift: $(STAMP) ## Drift scoring and text drift against Evidently (installs the bench extra)
	$(UV) pip install --quiet --python $(PY) -c $(LOCK) -e '.[test,lint,data,ml,serving,bench]'
	$(PY) bench/drift_throughput.py
	$(PY) bench/text_drift.py

.PHONY: bench-finetune
bench-finetune: $(STAMP) ## Fine-tune tokens/s against Trainer+peft and TRL's SFTTrainer (installs the bench extra)
	$(UV) pip install --quiet --python $(PY) -c $(LOCK) -e '.[test,lint,data,ml,serving,bench]'
	$(PY) bench/finetune_throughput.py $(BENCH_ARGS)

.PHONY: cluster-build
cluster-build: ## Build the control-plane binaries from pinned Go modules (cached)
	python3 hack/localcluster.py build

.PHONY: cluster-up
cluster-up: ## Start the embedded local control plane (harmless if running)
	python3 hack/localcluster.py up

.PHONY: cluster-down
cluster-down: ## Stop the local control plane and wipe its state (harmless if stopped)
	python3 hack/localcluster.py down

.PHONY: cluster-status
cluster-status: ## Show the local control plane's components
	python3 hack/localcluster.py status

.PHONY: install-crds
install-crds: ## Install kubeforge's CRDs into the current cluster
	$$(python3 hack/localcluster.py bin-dir)/kubectl apply --server-side -f crds/manifests

.PHONY: run-operator
run-operator: $(STAMP) ## Run the operator in the foreground against KUBECONFIG
	KUBEFORGE_OPERATOR_LOG_FORMAT=plain $(PY) -m kubeforge_operator
