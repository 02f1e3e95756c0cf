# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo lint test bench clean

$(STAMP): pyproject.toml requirements/constraints.txt requirements/nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -c requirements/constraints.txt -e '.[test,jax-check]'
	$(BIN)/pip check
	$(BIN)/pip install --no-deps -r requirements/nodeps.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/argen-ray run --config configs/local.yaml

# Undefined names, redefinitions and syntax errors (pyflakes rules in pyproject's [tool.ruff.lint]).
lint: $(STAMP)
	$(BIN)/ruff check argen_ray serve tests benchmarks

# Two workers (pytest-xdist): a test file runs whole in one worker (tests/conftest.py groups them);
# the 25 slowest tests are listed at the end (the suite has a 20-minute budget on 2 cores).
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder --durations=25 tests

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs
