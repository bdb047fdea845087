# msmae — set-up, tests, demo and benchmarks from a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.msmae-installed
# Keep the test suite to the machine's cores; torch otherwise oversubscribes small CPUs.
export OMP_NUM_THREADS ?= 2
export MPLBACKEND ?= Agg

.PHONY: setup test demo bench docs clean

setup: $(STAMP)

# torch==2.13.0 first: on the reference machine this is the CPU wheel on disk; elsewhere pip takes
# the normal wheel. Installing it before the package keeps pip from choosing another build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[extract,slt,dev,docs]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q tests

demo: setup
	$(BIN)/msmae demo

# The documentation site; warnings are errors (-W), all of them reported (--keep-going).
docs: setup
	$(BIN)/sphinx-build -b html -W --keep-going -q docs docs/_build/html

# Every benchmark, each kept with its date and machine in benchmarks/results/<name>.jsonl (benchmarks/record.py),
# the files the documentation's benchmarks page is made from.
bench: setup
	@for b in benchmarks/*.py; do [ "$$b" = benchmarks/record.py ] && continue; \
	  echo "# $$b" >&2; $(BIN)/python benchmarks/record.py $$b || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache docs/_build
