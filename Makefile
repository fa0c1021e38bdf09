# Two commands do everything on a fresh machine with python3 and pip:
#   make demo   build the demo dataset from datasets/ and print what is in it
#   make test   run the whole test suite
#   make docs   build the documentation site into site/ (mkdocs build --strict, offline)
# CI (.ci/run) runs `make lint`, `make docs`, then `make test`: ruff, mypy and the import contracts,
# the site, then the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pairgen build pipelines/mnist-demo.toml --out build/mnist-demo --overwrite
	$(BIN)/pairgen inspect build/mnist-demo
	$(BIN)/pairgen preview build/mnist-demo --split train --count 24 --out build/mnist-demo-preview.png

test: $(STAMP)
	$(BIN)/python -m pytest tests

# Style, types and the layering of the stage packages (contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check pairgen tests benchmarks
	$(BIN)/mypy pairgen
	$(BIN)/lint-imports --no-cache

# The documentation site (mkdocs.yml, docs/): broken links, missing references and docstring
# errors fail the build. Nothing is fetched: no web fonts, no CDN.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/build_throughput.py
	$(BIN)/python benchmarks/load_throughput.py

clean:
	rm -rf build site .pytest_cache
