# Two stages, one per environment of the project:
#   train       requirements-train.txt (CPU torch) + training/, runs the export
#   serve       requirements-serve.txt only + serving/, contract.py and the
#               model.onnx the train stage wrote; no torch, no compiler, no
#               pip, non-root (serve-deps builds its venv)
# Needs BuildKit for RUN --mount: Docker Engine 23 or newer builds with it by
# default; Engine 20.10 with DOCKER_BUILDKIT=1. No `# syntax=` line: BuildKit's
# built-in Dockerfile frontend reads this file, so no frontend image is pulled.
# `docker compose up --build` builds the serve target; the README shows more.
# scripts/two_stage_native.sh repeats these stages without Docker, in CI.

# One base for every stage: the serve venv is built in one stage and copied
# into another, which only works when both have the same Python at the same
# path. To pin a digest as well as the tag:
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Where torch alone comes from: PyTorch's CPU wheels. Behind a mirror or
# offline, point it at a PEP 503 index that has the torch wheel:
#   --build-arg TORCH_INDEX_URL=https://mirror.example/pytorch/whl/cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

FROM ${PYTHON_IMAGE} AS train
ARG TORCH_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONUNBUFFERED=1
WORKDIR /app
# Requirements before code, so editing training/ does not reinstall torch.
COPY requirements-train.txt ./
# torch comes from PyTorch's CPU index, and nothing else does: PyPI's Linux
# wheel of the same version is the CUDA build, several GB of nvidia-* wheels.
# --no-deps keeps that index to torch alone. The second install takes torch's
# dependencies and the rest of the file from PyPI and keeps the torch already
# there, because 2.13.0+cpu satisfies torch==2.13.0 (PEP 440 ignores a local
# label that the specifier does not name). The pin is read from the file, so
# it has one home (grep fails the build if the line is gone), and the last
# command fails the build if a CUDA torch got in anyway. The cache mount keeps
# the torch download across edits of requirements-train.txt.
RUN --mount=type=cache,target=/root/.cache/pip \
    grep -E '^torch==' requirements-train.txt > /tmp/torch.txt \
    && pip install --no-deps --index-url "${TORCH_INDEX_URL}" -r /tmp/torch.txt \
    && pip install -r requirements-train.txt \
    && pip check \
    && python -c "import sys, torch; sys.exit(f'CUDA torch {torch.__version__}' if torch.version.cuda else 0)"
COPY contract.py ./
COPY training/ training/
# Writes /app/artifacts/model.onnx (plus model.json, checkpoint, plots).
RUN python -m training.export

# The serving venv, built here so that pip never runs in the final image; pip
# and setuptools, which venv puts in every environment, leave it once done.
FROM ${PYTHON_IMAGE} AS serve-deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY requirements-serve.txt /tmp/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r /tmp/requirements-serve.txt \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools

FROM ${PYTHON_IMAGE} AS serve
# HOST, PORT and SERVE_* are the variables of the native run (serving/config.py);
# `docker run -e SERVE_WORKERS=4 ...` overrides any of them. HOST is 0.0.0.0 so
# the published port reaches the server from outside the container.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    SERVE_MODEL_PATH=/app/artifacts/model.onnx
# onnxruntime keeps a telemetry device id in the XDG cache and warns, in plain
# text on every start, when it cannot write it. /tmp is the one directory a
# read-only container must have writable anyway (the metrics live there).
ENV XDG_CACHE_HOME=/tmp/.cache
# A non-root user, named by number below because Kubernetes' runAsNonRoot can
# only verify a numeric USER.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
    --no-log-init app
WORKDIR /app
# Everything below is owned by root and read-only to the app user.
COPY --from=serve-deps /opt/venv /opt/venv
COPY contract.py contract.py
COPY serving/ serving/
COPY --from=train /app/artifacts/model.onnx artifacts/model.onnx
USER 10001:10001
EXPOSE 8000
# The image has no curl: ask /readyz with the standard library. urlopen raises
# (exit 1) on a refused connection and on any 4xx/5xx, e.g. 503 while warming up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/readyz', timeout=2).status != 200)"]
# python -m serving checks the model, then runs granian in the same process: it
# is PID 1 and so receives docker stop's SIGTERM directly.
CMD ["python", "-m", "serving"]
