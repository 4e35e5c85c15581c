# The README's commands. `make demo` and `make test` each work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint types pytest bench servers clean

$(STAMP): pyproject.toml
	bash scripts/ensure-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# grafana-client needs urllib3-future, whose wheel would replace urllib3 for every other
	# library (influxdb-client, web3): built from source with the override off, both coexist.
	URLLIB3_NO_OVERRIDE=1 $(PY) -m pip install --quiet --no-binary urllib3-future -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pledgewatch demo

servers:
	bash scripts/ensure-servers.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) servers
	$(VENV)/bin/pytest -x -q

test: lint types pytest

bench: $(STAMP) servers
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
