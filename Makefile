# Two commands do everything on a fresh machine:
#   make verify VERSION=3.13.5     set up, build the pinned images, rebuild and compare
#   make test                      set up, build the images, run unit and integration tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps

VERSION ?=
REMOTE ?=
BASE_URL ?=
PUBLISHED ?=
OUT ?=
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup host test-host images verify test bench fuzz lint clean

host:
	@bash containers/host-setup.sh

test-host:
	@bash containers/host-setup.sh --tests

$(STAMPS)/venv: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	@mkdir -p $(STAMPS) && touch $@

setup: host $(STAMPS)/venv

images: setup
	$(BIN)/cpython-repro images build

verify: setup
	@test -n "$(VERSION)" || { echo "usage: make verify VERSION=3.13.5 [REMOTE=git-url] [BASE_URL=url] [PUBLISHED=file ...] [OUT=dir] [ARGS='--offline ...']" >&2; exit 2; }
	$(BIN)/cpython-repro verify $(VERSION) \
	  $(if $(REMOTE),--remote $(REMOTE)) $(if $(BASE_URL),--base-url $(BASE_URL)) \
	  $(foreach p,$(PUBLISHED),--published $(p)) $(if $(OUT),--out $(OUT)) $(ARGS)

test: setup test-host images
	$(BIN)/pytest $(PYTEST_ARGS)

bench: setup images
	$(BIN)/python -m tests.bench

FUZZ_RUNS ?= 200000
fuzz: setup
	$(BIN)/pip install --quiet atheris
	$(BIN)/python -m tests.fuzz -runs=$(FUZZ_RUNS) -max_len=16384 -rss_limit_mb=300 -timeout=30 \
	  -print_final_stats=1

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .ci/examples/verify-releases.yml
	$(BIN)/zizmor --offline --persona=auditor .ci/examples/verify-releases.yml

clean:
	rm -rf $(VENV) $(STAMPS) out
