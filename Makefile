# Each target sets up its own environment (.venv) on a fresh machine, then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
# The environment's own commands (ptame, saved_model_cli) come first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?= -n 2 -q

.PHONY: setup demo test lint compare compare-tuned sanity speed parity parity-env agreement agreement-env batch batch-env

setup: $(VENV)/.installed

# The CPU build of torch; a plain `torch` from the package index is the CUDA
# build on Linux (with about 15 nvidia-* packages). pip takes the CPU wheel
# where one lies at hand (a find-links folder); elsewhere name an index that
# serves CPU builds, e.g. `make setup TORCH_INDEX=<PyTorch's CPU wheel index>`
# (passed to pip as --extra-index-url; the CPU build's `+cpu` version wins).
TORCH_INDEX ?=

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,test]"
	touch $@

demo: setup
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) -m keras_ptame.demo --output demo_output --overwrite

# P-TAME against RISE, Grad-CAM, gradients, random and centre maps (issue 4's table).
compare: setup
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) benchmarks/compare.py --output benchmarks/results

# kp.tune's recipe, then P-TAME against the baselines on 1,000 held-out images
# with 95% intervals (README's "Tuning the recipe": table, figure, winners).
compare-tuned: setup
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) benchmarks/tune_compare.py --output benchmarks/results/tuned --max-trials 20 --trial-epochs 3 --figure benchmarks/figures/tuned_comparison.png

# Adebayo et al.'s sanity checks of P-TAME, Grad-CAM and RISE (README's figure).
sanity: setup
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) benchmarks/sanity/run.py --output benchmarks/results/sanity --figure benchmarks/figures/sanity_checks.png

# Classifier vs explain vs training step, on every backend (README's speed table).
speed: setup
	$(PY) benchmarks/speed.py --output benchmarks/speed.md

# Fast tests on every backend, then the slow end-to-end cases once.
# The tests' tiny models cost XLA more to compile than to run: under JAX most
# of the suite's time was compiling. So the tests compile with LLVM's
# optimisations off (TEST_XLA_FLAGS) and keep what they compiled in
# $(JAX_TEST_CACHE) (JAX's persistent compilation cache), which the fast and
# slow runs share: the JAX run took 26 minutes on 2 cores before, see the
# README's "Tests". Neither applies outside `make test`.
JAX_TEST_CACHE ?= .jax_test_cache
TEST_XLA_FLAGS ?= --xla_backend_optimization_level=0
TEST_ENV = XLA_FLAGS="$(TEST_XLA_FLAGS)" JAX_COMPILATION_CACHE_DIR=$(abspath $(JAX_TEST_CACHE)) \
  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.2

test: setup
	@set -e; for backend in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$backend"; \
	  $(TEST_ENV) KERAS_BACKEND=$$backend $(PY) -m pytest $(PYTEST_ARGS) -m "not slow" tests; \
	done
	@echo "=== slow end-to-end tests (KERAS_BACKEND=jax)"
	$(TEST_ENV) KERAS_BACKEND=jax $(PY) -m pytest $(PYTEST_ARGS) -m slow tests || test $$? -eq 5

lint: setup
	$(PY) -m ruff check keras_ptame keras_ptame_launcher.py tests benchmarks notebooks
	$(PY) -m ruff format --check keras_ptame keras_ptame_launcher.py tests benchmarks

# Wheel and sdist into dist/, built from this tree in a lean environment of
# their own ($(DIST_VENV): `build` and setuptools, nothing else), so that
# building never installs the frameworks (nor a CUDA torch) as `setup` does.
DIST_VENV ?= .venv-dist

$(DIST_VENV)/.installed:
	python3 -m venv $(DIST_VENV)
	# Ignored by git, as venvs of Python 3.13 ignore themselves.
	echo "*" > $(DIST_VENV)/.gitignore
	$(DIST_VENV)/bin/python -m pip install -q "build>=1" "setuptools>=68"
	touch $@

.PHONY: notebooks
# Runs the three notebooks offline (tiny presets, mocked tfds) and stores them
# with their outputs, so GitHub shows the pictures (2-3 minutes on 2 cores).
notebooks: setup
	KERAS_BACKEND=jax $(PY) -m tests.helpers.notebooks

.PHONY: dist
dist: $(DIST_VENV)/.installed
	rm -rf dist
	$(DIST_VENV)/bin/python -m build --no-isolation --outdir dist .

# The authors' package as the reference for parity (benchmarks/parity/): their
# `ptame` in an environment of its own, never in .venv (their licence is
# non-commercial: keras_ptame neither ships nor imports it). torchvision
# needs its matching torch; these two lie on this machine's disk.
PARITY_VENV ?= .venv-ptame
PARITY_TORCH ?= torch==2.14.1 torchvision==0.29.1
PARITY_OUT ?= benchmarks/results/parity

parity-env: $(PARITY_VENV)/.installed

$(PARITY_VENV)/.installed:
	python3 -m venv $(PARITY_VENV)
	$(PARITY_VENV)/bin/python -m pip install -q --upgrade pip
	$(PARITY_VENV)/bin/python -m pip install -q $(PARITY_TORCH)
	$(PARITY_VENV)/bin/python -m pip install -q "ptame==1.0.2"
	touch $@

# Their numbers once, then keras_ptame's on every backend; the table goes to
# $(PARITY_OUT)/parity.md.
parity: setup parity-env
	$(PARITY_VENV)/bin/python benchmarks/parity/reference.py --output $(PARITY_OUT)
	@set -e; for backend in $(BACKENDS); do \
	  KERAS_BACKEND=$$backend $(PY) benchmarks/parity/check.py \
	    --reference $(PARITY_OUT) --markdown $(PARITY_OUT)/$$backend.md; \
	done
	cat $(PARITY_OUT)/*.md > $(PARITY_OUT)/parity.md

# Cross-library agreement (benchmarks/agreement/): keras_ptame's metrics against
# pytorch-grad-cam's ROAD and Quantus's on the same classifier, images and
# maps. Those two live in an environment of their own, never in .venv (they
# are no dependency of keras_ptame): keras_ptame with its base dependencies
# only (keras, numpy, scipy) on the PyTorch backend, since the other libraries
# call the model as a torch module. grad-cam imports torchvision at import,
# so the matching torch pair comes first (as in .venv-ptame: the pair lies
# on this machine's disk, a CUDA build on x86-64, 6.3 GB with its libraries). Quantus 0.6.0 calls `np.trapz`, which numpy 2.4 removed,
# hence numpy<2.4. grad-cam brings OpenCV (keras_ptame's Telea fill uses it).
AGREEMENT_VENV ?= .venv-agreement
AGREEMENT_TORCH ?= torch==2.14.1 torchvision==0.29.1
AGREEMENT_OUT ?= benchmarks/results/agreement

agreement-env: $(AGREEMENT_VENV)/.installed

$(AGREEMENT_VENV)/.installed: pyproject.toml
	python3 -m venv $(AGREEMENT_VENV)
	$(AGREEMENT_VENV)/bin/python -m pip install -q --upgrade pip
	$(AGREEMENT_VENV)/bin/python -m pip install -q $(AGREEMENT_TORCH)
	$(AGREEMENT_VENV)/bin/python -m pip install -q "grad-cam==1.5.7" "quantus==0.6.0" "pytest>=8" \
	  "numpy<2.4"
	$(AGREEMENT_VENV)/bin/python -m pip install -q -e .
	touch $@

# The table goes to $(AGREEMENT_OUT)/agreement.md; then the test that pins
# the agreeing metrics and the known differences.
agreement: agreement-env
	KERAS_BACKEND=torch $(AGREEMENT_VENV)/bin/python benchmarks/agreement/run.py --output $(AGREEMENT_OUT)
	KERAS_BACKEND=torch $(AGREEMENT_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/metrics/test_agreement.py

# Explaining a whole image collection on Ray Data (`ptame explain-dataset`,
# README "Scale-out"). Ray lives in an environment of its own, never in .venv
# (it is no dependency of keras_ptame): keras_ptame with the JAX backend,
# Pillow for the image files and PNG maps, and Ray Data (which brings pyarrow
# and pandas). Apache Beam was the other candidate: see the README for why
# Ray was chosen.
BATCH_VENV ?= .venv-batch
# The version tested; keras-ptame's `batch` extra asks for ray[data]>=2.60.
BATCH_ENGINE ?= ray[data]==2.60.0

batch-env: $(BATCH_VENV)/.installed

$(BATCH_VENV)/.installed: pyproject.toml
	python3 -m venv $(BATCH_VENV)
	$(BATCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BATCH_VENV)/bin/python -m pip install -q -e ".[jax]" "pillow>=10" "pytest>=8" \
	  "$(BATCH_ENGINE)"
	touch $@

# The pipeline's test on the engine (it skips in .venv) and the bookkeeping's
# tests: 300 synthetic images explained on 2 Ray workers, the command killed
# with SIGKILL once a shard is committed, the rerun, the output against
# `explain_outputs`'. (tests/cli/test_shard_explainer.py, the command against
# `ptame explain`'s files, needs matplotlib: it runs in .venv, every backend.)
batch: batch-env
	$(TEST_ENV) KERAS_BACKEND=jax $(BATCH_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  tests/cli/test_explain_dataset.py tests/utils/test_shards.py
