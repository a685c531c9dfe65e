# Two commands on a fresh machine (Python 3.11 with venv):
#   make run    set up, export the model if needed, serve it on $HOST:$PORT
#   make test   set up, lint, run the test suite
PYTHON ?= python3
TRAIN_ENV := .venv-train
SERVE_ENV := .venv-serve
DEV_ENV := .venv-dev
MODEL := artifacts/model.onnx

CHROMIUM := /usr/bin/chromium

.PHONY: run export evaluate test lint format clean browser nginx

run: $(MODEL) $(SERVE_ENV)/.installed
	$(SERVE_ENV)/bin/python -m serving

# The curves are a separate step, so the export itself never imports matplotlib.
export: $(TRAIN_ENV)/.installed
	$(TRAIN_ENV)/bin/python -m training.export
	$(TRAIN_ENV)/bin/python -m training.plots

evaluate: $(TRAIN_ENV)/.installed
	$(TRAIN_ENV)/bin/python -m training.evaluate --seeds 0-4

test: lint browser nginx
	$(DEV_ENV)/bin/python -m pytest

# tests/test_nginx.py runs deploy/nginx/ in Debian's nginx, natively; the
# package's own site, which it starts on port 80, is stopped again.
nginx:
	@test -x /usr/sbin/nginx || { apt-get update && apt-get install -y nginx \
		&& { systemctl disable --now nginx 2>/dev/null || service nginx stop 2>/dev/null || true; }; } \
		|| { echo "tests/test_nginx.py needs Debian's nginx:" \
			"run 'apt-get install -y nginx' as root" >&2; exit 1; }

# tests/test_page.py drives Debian's chromium with Playwright (Playwright's own
# browser download is never used).
browser:
	@test -x $(CHROMIUM) || { apt-get update && apt-get install -y chromium; } || { \
		echo "tests/test_page.py needs Debian's chromium:" \
			"run 'apt-get install -y chromium' as root" >&2; exit 1; }

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
	rm -rf $(TRAIN_ENV) $(SERVE_ENV) $(DEV_ENV) $(BENCH_ENV) $(BENCH_SERVE_ENV) \
		.cache .pytest_cache .ruff_cache
	find artifacts -mindepth 1 ! -name README.md -delete

# Benchmark: the production server (granian) against the same app under
# gunicorn sync (the server before granian), a no-op route under the production
# server's settings and the seed's FastAPI + torch design, in one run (see
# bench/run.py; about 2.5 minutes once the environments exist). Needs wrk
# from Debian: `make bench-install-wrk` as root. Extra options:
# make bench BENCH_ARGS="-h".
BENCH_ENV := .venv-bench
BENCH_SERVE_ENV := .venv-bench-serve

.PHONY: bench bench-install-wrk bench-proxy bench-hostile

# What the proxy costs per request (deploy/nginx/ natively, wrk, the serve env).
bench-proxy: $(MODEL) $(BENCH_ENV)/.installed $(SERVE_ENV)/.installed nginx
	@$(BENCH_ENV)/bin/python -m bench.proxy --serve-python $(SERVE_ENV)/bin/python

# What hostile bodies cost against the largest valid batch (in process).
bench-hostile: $(MODEL) $(SERVE_ENV)/.installed
	@$(SERVE_ENV)/bin/python -m bench.hostile

bench: $(BENCH_ENV)/.installed $(BENCH_SERVE_ENV)/.installed
	@command -v wrk >/dev/null || { echo "wrk is not installed:" \
		"run 'make bench-install-wrk' as root (Debian/Ubuntu)" >&2; exit 1; }
	@# Quiet: stdout is the markdown report alone (it names its own command).
	@$(BENCH_ENV)/bin/python -m bench.run --serve-python $(BENCH_SERVE_ENV)/bin/python \
		$(BENCH_ARGS)

bench-install-wrk:
	apt-get update && apt-get install -y wrk

# The train requirements plus the baseline's FastAPI stack; never the serve env.
$(BENCH_ENV)/.installed: requirements-train.txt requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_ENV)
	$(BENCH_ENV)/bin/pip install -r requirements-train.txt -r requirements-bench.txt
	touch $@

# The serve requirements plus gunicorn, so that the production server and the
# gunicorn target run the same packages and only the server differs. The
# serve env itself (and the image) never gets gunicorn.
$(BENCH_SERVE_ENV)/.installed: requirements-serve.txt requirements-bench-serve.txt
	$(PYTHON) -m venv $(BENCH_SERVE_ENV)
	$(BENCH_SERVE_ENV)/bin/pip install -r requirements-serve.txt \
		-r requirements-bench-serve.txt
	touch $@

# Notebooks: `make notebooks` re-runs both top to bottom and saves their outputs
# (run it after changing training/, then commit them; the test suite fails while
# they are stale). `make lab` opens them in JupyterLab; pass server options with
# e.g. make lab LAB_ARGS="--no-browser --port 8899" (as root: --allow-root).
NOTEBOOK_ENV := .venv-notebooks
LAB_ARGS ?=

.PHONY: notebooks lab

notebooks: $(DEV_ENV)/.installed
	$(DEV_ENV)/bin/python -m notebooks.execute

lab: $(NOTEBOOK_ENV)/.installed
	$(NOTEBOOK_ENV)/bin/jupyter lab $(LAB_ARGS) notebooks

$(NOTEBOOK_ENV)/.installed: requirements-train.txt requirements-notebooks.txt
	$(PYTHON) -m venv $(NOTEBOOK_ENV)
	$(NOTEBOOK_ENV)/bin/pip install -r requirements-notebooks.txt
	touch $@

# The Dockerfile's two stages without Docker, as CI runs them (about 2 minutes):
# export in a fresh train venv, then serve exactly what the serve image holds
# from a venv built from requirements-serve.txt alone. See scripts/two_stage_native.sh.
.PHONY: two-stage

two-stage:
	PYTHON=$(PYTHON) bash scripts/two_stage_native.sh
