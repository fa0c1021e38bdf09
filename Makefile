# Two commands do everything on a fresh machine with python3 and pip:
#   make demo   build the demo dataset from datasets/ and print what is in it
#   make test   run the whole test suite
# CI (.ci/run) runs `make lint`, then `make test`: ruff, mypy and the import contracts, then the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

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

bench: $(STAMP)
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/build_throughput.py
	$(BIN)/python benchmarks/load_throughput.py

clean:
	rm -rf build .pytest_cache
