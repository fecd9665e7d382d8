# `make demo` and `make test` build .venv from requirements.txt when it is missing or older than
# it (or than pyproject.toml), install this repository into it in editable mode (so that
# `import research` works from any directory), and build the oneDNN convolution library
# (research/onednn/conv.cc) into build/ when it is out of date.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ONEDNN_LIB := build/libonednn_conv.so

.PHONY: demo test lint format bench onednn clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e .
	touch $(STAMP)

# libdnnl and its headers come from the onednn wheels (into $(VENV)/lib and $(VENV)/include),
# the FFI headers from jaxlib; the rpath finds libdnnl without LD_LIBRARY_PATH. Built beside
# and renamed into place, so that running processes keep the library they loaded.
$(ONEDNN_LIB): research/onednn/conv.cc $(STAMP)
	mkdir -p $(dir $@)
	$(CXX) -O3 -std=c++17 -shared -fPIC -fopenmp -Wall -o $@.tmp $< \
	  -isystem "$$($(PY) -c 'import jax; print(jax.ffi.include_dir())')" -isystem $(VENV)/include \
	  -L$(VENV)/lib -ldnnl -Wl,-rpath,$(abspath $(VENV))/lib
	mv -f $@.tmp $@

onednn: $(ONEDNN_LIB)

# The demo ablation (experiments/demo.py): U-Net and FCN-8s × 4 decoders, one seed. Re-running
# skips finished cells; its table goes to workdirs/demo (committed results live in results/).
demo: $(STAMP) $(ONEDNN_LIB)
	$(PY) -m launch.sweep --config experiments/demo.py --root workdirs/demo
	$(PY) -m launch.table --root workdirs/demo --name demo --out workdirs/demo
	@cat workdirs/demo/demo.md

test: $(STAMP) $(ONEDNN_LIB)
	$(PY) -m pytest -q -ra -n 2 --dist loadfile tests

# Formatting and lint errors fail CI (.ci/run); `make format` fixes what can be fixed.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check --no-cache .  # no cache: what a fresh clone sees
	$(VENV)/bin/ruff check --no-cache .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP) $(ONEDNN_LIB)
	$(PY) -m launch.bench

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info build
