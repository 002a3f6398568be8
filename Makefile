# Two commands do everything on a fresh machine with only Python 3.11+:
#   make demo   runs the main job (`sender demo` on the embedded PostgreSQL and Redis)
#   make test   runs the whole test suite (embedded services unless SENDER_TEST_* are set)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test lint fmt services-up services-down clean

$(BIN)/sender: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/sender

demo: venv
	$(BIN)/sender demo

test: venv
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict sender api

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

services-up: venv
	$(BIN)/sender services up

services-down: venv
	$(BIN)/sender services down

clean:
	-$(BIN)/sender services down
	rm -rf .sender $(VENV) build dist *.egg-info
