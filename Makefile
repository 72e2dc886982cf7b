# mlstack: the commands of the stack. `make` alone lists them; scripts/ holds the longer steps.
SHELL := /bin/bash
.DEFAULT_GOAL := help

COMPOSE := docker compose
VENV := .venv
PYTHON := $(VENV)/bin/python
# Images to build: all by default (make build IMAGES="jupyter bash")
IMAGES ?=
# Options for train.py (make train ARGS="--n-estimators 200")
ARGS ?=
# Options for pytest (make test PYTEST_ARGS="-k image -x")
PYTEST_ARGS ?=
# Options for the benchmark (make bench BENCH_ARGS="--build-reps 1"; python -m bench --help)
BENCH_ARGS ?=

.PHONY: help up down build ps logs urls shell train test lint format clean lock bench preflight

help: ## Show this help
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_.-]+:.*## / { printf "  make %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

preflight:
	@scripts/preflight.sh

# Real file target: created when missing, refreshed when env/images.env changes
.env: env/images.env
	@scripts/env.sh

up: preflight .env build ## Build if needed, start MLflow and Jupyter, wait until healthy, print the URLs
	@scripts/up.sh

down: preflight .env ## Stop and remove the containers (the MLflow data volume is kept)
	@$(COMPOSE) --profile runner down --remove-orphans
	@rm -f .mlstack/urls.env

build: preflight .env ## Build the images in dependency order (IMAGES="..." for some of them)
	@scripts/build.sh $(IMAGES)

ps: preflight .env ## Show the stack's containers and their health
	@$(COMPOSE) --profile runner ps --all

logs: preflight .env ## Follow the services' logs
	@$(COMPOSE) logs --follow --tail 100

urls: preflight .env ## Print the MLflow and Jupyter URLs
	@scripts/urls.sh

shell: preflight .env ## Open an interactive shell in the runner container
	@$(COMPOSE) run --rm bash

train: preflight .env ## Run train.py in the runner container (ARGS="--n-estimators 200")
	@$(COMPOSE) run --rm bash python train.py $(ARGS)

test: $(VENV)/.installed ## Run the tests: static checks, each image, the stack end to end
	@$(PYTHON) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed ## Check formatting (black), Dockerfiles, shell scripts, compose.yaml
	@$(PYTHON) -m pytest tests/static $(PYTEST_ARGS)

format: $(VENV)/.installed ## Format the Python code with black
	@$(VENV)/bin/black .

clean: preflight .env ## Remove containers, networks and build leftovers (never the MLflow data)
	@$(COMPOSE) --profile runner down --remove-orphans
	@rm -rf .build .mlstack .pytest_cache
	@find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

bench: preflight $(VENV)/.installed ## Benchmark builds, start, memory, logging against baselines (bench/results.md)
	@$(PYTHON) -m bench $(BENCH_ARGS)

lock: $(VENV)/.installed ## Re-lock the Python packages of every image (after editing a requirements.in)
	@scripts/lock.sh

# The host's tools, from their lock file; uv's pin comes from the same lock
$(VENV)/.installed: tests/requirements.lock
	@python3 -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet "$$(grep '^uv==' tests/requirements.lock)"
	@$(VENV)/bin/uv pip sync --quiet --python $(PYTHON) tests/requirements.lock
	@touch $@
