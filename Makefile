# `make demo` and `make test` build .venv from requirements.txt when it is missing or older than
# it (or than pyproject.toml), and install this repository into it in editable mode, so that
# `import research` works from any directory.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e .
	touch $(STAMP)

# The demo ablation (experiments/demo.py): U-Net and FCN-8s × 4 decoders, one seed. Re-running
# skips finished cells; its table goes to workdirs/demo (committed results live in results/).
demo: $(STAMP)
	$(PY) -m launch.sweep --config experiments/demo.py --root workdirs/demo
	$(PY) -m launch.table --root workdirs/demo --name demo --out workdirs/demo
	@cat workdirs/demo/demo.md

test: $(STAMP)
	$(PY) -m pytest -q -ra tests

# Formatting and lint errors fail CI (.ci/run); `make format` fixes what can be fixed.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m launch.bench

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
