# ORCA: burst Kubernetes pods to EC2. `make help` lists the targets.
#
# Everything runs from a virtual environment this Makefile builds (.venv) with
# the pinned dependencies; as root it also installs the Debian packages the
# local stand-ins need (Docker's daemon, a static busybox for local images).
# Servers started for the tests or the demo listen on loopback only and are
# stopped afterwards, also when a step fails.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := .local
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
DEBIAN_PACKAGES := docker.io busybox-static
PYTEST_ARGS ?=
BENCH_PODS ?= 10
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= orca:$(VERSION)

# `make demo KUBECONFIG=path` uses that cluster; a KUBECONFIG merely exported in
# the shell is ignored, so the demo never touches a cluster nobody named.
ifeq ($(origin KUBECONFIG),command line)
DEMO_CLUSTER := --kubeconfig $(KUBECONFIG)
endif

.DEFAULT_GOAL := help
.PHONY: help demo test lint format bench system venv services-up services-down clean \
	policy-packs image

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

demo: venv system ## Burst the example pods end to end on the embedded stand-ins
	$(BIN)/python -m orca_local.demo --state-dir $(STATE)/demo $(DEMO_CLUSTER)

test: venv system ## Run every test (starts and stops the loopback servers)
	@$(BIN)/python -m orca_local.services up --state-dir $(STATE)/test
	@set -a; source $(STATE)/test/services.env; set +a; \
	  $(BIN)/pytest $(PYTEST_ARGS); status=$$?; \
	  $(BIN)/python -m orca_local.services down --state-dir $(STATE)/test; exit $$status

bench: venv system ## Time pods bursting end to end on the stand-ins (BENCH_PODS=10)
	$(BIN)/python -m orca_local.bench --pods $(BENCH_PODS) --state-dir $(STATE)/bench

lint: venv ## Check style and types (ruff, mypy)
	$(BIN)/ruff check runtime tests infra policies
	$(BIN)/ruff format --check runtime tests infra policies
	$(BIN)/mypy

format: venv ## Format the code
	$(BIN)/ruff format runtime tests infra policies
	$(BIN)/ruff check --fix runtime tests infra policies

policy-packs: venv ## Build self-contained policy packs to publish (build/policy-packs)
	$(BIN)/python policies/bundle.py build/policy-packs

# The bases (the Dockerfile's *_IMAGE arguments) must be present or pullable: no registry is
# reachable from the development machines, so the image has never been built there.
image: ## Build the runtime and agent image with the local dockerd (IMAGE=orca:<version>)
	@command -v docker >/dev/null || { echo "make image: no docker command"; exit 1; }
	@docker info >/dev/null 2>&1 || { \
	  echo "make image: no Docker daemon answers at $${DOCKER_HOST:-the default socket}"; exit 1; }
	@for base in $$(sed -n 's/^ARG [A-Z_]*_IMAGE=//p' Dockerfile); do \
	  docker image inspect $$base >/dev/null 2>&1 || docker pull --quiet $$base >/dev/null || { \
	    echo "make image: base image $$base is not present and cannot be pulled (is a" \
	      "registry reachable?); the image cannot be built here"; exit 1; }; \
	done
	docker build --tag $(IMAGE) --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) .

services-up: venv system ## Start moto, the Kubernetes API emulator and dockerd on loopback
	$(BIN)/python -m orca_local.services up --state-dir $(STATE)/dev --cluster-stand-ins
	@echo "use them with: source $(STATE)/dev/services.env (and $(STATE)/dev/kubelet.env for a runtime)"

services-down: venv ## Stop what services-up started
	$(BIN)/python -m orca_local.services down --state-dir $(STATE)/dev

venv: $(STAMP) ## Build the virtual environment with the pinned dependencies

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

system: ## Install the Debian packages the stand-ins need (as root; once)
	@missing=""; \
	  command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	  test -x /bin/busybox || missing="$$missing busybox-static"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then \
	      echo "missing Debian packages:$$missing; install them as root (apt-get install$$missing)"; \
	      exit 1; \
	    fi; \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi

clean: ## Stop servers and remove the virtual environment and local state
	-test -x $(BIN)/python && $(BIN)/python -m orca_local.services down --state-dir $(STATE)/test
	-test -x $(BIN)/python && $(BIN)/python -m orca_local.services down --state-dir $(STATE)/dev
	rm -rf $(VENV) $(STATE)
