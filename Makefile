# The README's commands. `make test` sets everything up from scratch and runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(abspath $(VENV)/bin)
export PROMOTE_CACHE ?= $(HOME)/.cache/promote
export PATH := $(BIN):$(PATH)

.PHONY: test lint tools demo-tools demo bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Build (once, cached under $(PROMOTE_CACHE)) the real servers and tools the tests use; install
# Debian's Chromium (apt) for the dashboard's browser tests.
tools: venv
	@for s in tools/ensure-*; do \
	  [ -x "$$s" ] || continue; echo "== $$s" >&2; \
	  "$$s" >/dev/null || exit 1; \
	done

# Only what `promote demo` runs: the local cluster (control plane + kwok), kustomize, and the
# supply chain prod gates on (registry, crane, cosign; cold, cosign alone is ~16 min) and sopsd
# (the persistent sops decryptor; without it the demo runs one sops process per Secret); no Gitea.
DEMO_TOOLS := tools/ensure-controlplane tools/ensure-kwok tools/ensure-kustomize \
  tools/ensure-registry tools/ensure-crane tools/ensure-cosign tools/ensure-sopsd
demo-tools: venv
	@for s in $(DEMO_TOOLS); do \
	  echo "== $$s" >&2; "$$s" >/dev/null || exit 1; \
	done

lint: venv
	ruff check promote tests bench
	ruff format --check promote tests bench
	mypy
	lint-imports

test: venv tools lint
	python -m pytest -q

demo: venv demo-tools
	promote demo

bench: venv tools
	@for b in bench/*.py; do [ -e "$$b" ] || continue; python "$$b" || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
