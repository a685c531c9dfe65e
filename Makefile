# Two commands on a fresh machine (Python 3.11 with venv):
#   make run    set up, export the model if needed, serve it on $HOST:$PORT
#   make test   set up, lint, run the test suite
PYTHON ?= python3
TRAIN_ENV := .venv-train
SERVE_ENV := .venv-serve
DEV_ENV := .venv-dev
MODEL := artifacts/model.onnx

.PHONY: run export evaluate test lint format clean

run: $(MODEL) $(SERVE_ENV)/.installed
	$(SERVE_ENV)/bin/python -m serving

export: $(TRAIN_ENV)/.installed
	$(TRAIN_ENV)/bin/python -m training.export

evaluate: $(TRAIN_ENV)/.installed
	$(TRAIN_ENV)/bin/python -m training.evaluate --seeds 0-4

test: lint
	$(DEV_ENV)/bin/python -m pytest

lint: $(DEV_ENV)/.installed
	$(DEV_ENV)/bin/ruff format --check .
	$(DEV_ENV)/bin/ruff check .

format: $(DEV_ENV)/.installed
	$(DEV_ENV)/bin/ruff format .
	$(DEV_ENV)/bin/ruff check --fix .

$(MODEL): $(TRAIN_ENV)/.installed contract.py $(wildcard training/*.py)
	$(TRAIN_ENV)/bin/python -m training.export

# Each environment is rebuilt when its requirements change.
$(TRAIN_ENV)/.installed: requirements-train.txt
	$(PYTHON) -m venv $(TRAIN_ENV)
	$(TRAIN_ENV)/bin/pip install -r requirements-train.txt
	touch $@

$(SERVE_ENV)/.installed: requirements-serve.txt
	$(PYTHON) -m venv $(SERVE_ENV)
	$(SERVE_ENV)/bin/pip install -r requirements-serve.txt
	touch $@

$(DEV_ENV)/.installed: requirements-train.txt requirements-serve.txt requirements-dev.txt
	$(PYTHON) -m venv $(DEV_ENV)
	$(DEV_ENV)/bin/pip install -r requirements-train.txt -r requirements-serve.txt \
		-r requirements-dev.txt
	touch $@

clean:
	rm -rf $(TRAIN_ENV) $(SERVE_ENV) $(DEV_ENV) .cache .pytest_cache .ruff_cache
	find artifacts -mindepth 1 ! -name README.md -delete
