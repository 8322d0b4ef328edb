# The two commands of the README. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export DO_NOT_TRACK := 1

.PHONY: demo test lint services-up services-down clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

## make demo: install, start the real services, the worker, the API and a producer
demo: $(STAMP)
	$(BIN)/fraudstream services install
	$(BIN)/fraudstream demo $(ARGS)

## make test: install, start real servers as needed, run the whole suite
test: $(STAMP)
	$(BIN)/fraudstream services install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

services-up: $(STAMP)
	$(BIN)/fraudstream services up

services-down: $(STAMP)
	$(BIN)/fraudstream services down

clean:
	-$(BIN)/fraudstream services down
	rm -rf .state
