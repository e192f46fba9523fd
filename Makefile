# Each target sets up its own environment (.venv) on a fresh machine, then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
# The environment's own commands (ptame, saved_model_cli) come first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?= -n 2 -q

.PHONY: setup demo test lint compare speed

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch; a plain `torch` may pull a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,test]"
	touch $@

demo: setup
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) -m keras_ptame.demo --output demo_output

# P-TAME against RISE, Grad-CAM, gradients, random and centre maps (issue 4's table).
compare: setup
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) benchmarks/compare.py --output benchmarks/results

# Classifier vs explain vs training step, on every backend (README's speed table).
speed: setup
	$(PY) benchmarks/speed.py --output benchmarks/speed.md

# Fast tests on every backend, then the slow end-to-end cases once.
test: setup
	@set -e; for backend in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$backend"; \
	  KERAS_BACKEND=$$backend $(PY) -m pytest $(PYTEST_ARGS) -m "not slow" tests; \
	done
	@echo "=== slow end-to-end tests (KERAS_BACKEND=jax)"
	KERAS_BACKEND=jax $(PY) -m pytest $(PYTEST_ARGS) -m slow tests || test $$? -eq 5

lint: setup
	$(PY) -m ruff check keras_ptame keras_ptame_launcher.py tests benchmarks notebooks
	$(PY) -m ruff format --check keras_ptame keras_ptame_launcher.py tests benchmarks

# Wheel and sdist into dist/, built from this tree with the environment's
# setuptools (no download of build requirements).
.PHONY: dist
dist: setup
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
