#!/usr/bin/env bash
# Run the Dockerfile's two stages natively, without Docker (CI: make two-stage).
#
#   train stage  a fresh venv from requirements-train.txt, installed as the
#                Dockerfile does (torch alone first), in a directory holding
#                only what the train stage copies; python -m training.export
#   serve stage  an empty directory that receives only what the serve stage
#                copies (files from the repository, model.onnx from the train
#                directory), a fresh venv from requirements-serve.txt alone in
#                which torch must not be importable, python -m serving, then
#                real digits POSTed to /predict must come back with their labels
#
# What each stage copies is read from the Dockerfile and .dockerignore by
# scripts/docker_stages.py, so this run cannot drift from the image build.
#
# Environment: PYTHON (default python3, 3.11), TORCH_INDEX_URL (pip index for
# torch alone, e.g. https://download.pytorch.org/whl/cpu, as in the Dockerfile;
# default: pip's configured index), KEEP_WORKDIR=1 to keep the temp directory.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
INSTALL_TIMEOUT_S=1200  # one pip install; torch alone is a few hundred MB
START_TIMEOUT_S=60      # python -m serving until /readyz says ready
STOP_TIMEOUT_S=15       # SIGTERM until the server has exited
WORK="$(mktemp -d "${TMPDIR:-/tmp}/two-stage.XXXXXX")"
TRAIN_DIR="$WORK/train"    # stands for the train stage's WORKDIR (/app)
SERVE_DIR="$WORK/serve"    # stands for the serve stage's WORKDIR (/app)
DEPS_DIR="$WORK/serve-deps"
SERVER_PID=""
STARTED=$SECONDS

step() { printf '==> [%3ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
die() { printf 'two-stage: error: %s\n' "$*" >&2; exit 1; }

stop_server() {  # SIGTERM, then its exit status; 124 if it had to be killed
  [[ -n "$SERVER_PID" ]] || return 0
  local pid=$SERVER_PID deadline=$((SECONDS + STOP_TIMEOUT_S)) status=0
  SERVER_PID=""
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 124
  fi
  wait "$pid" || status=$?
  return "$status"
}

cleanup() {
  local status=$?
  stop_server || true
  if ((status != 0)) && [[ -s "$WORK/server.log" ]]; then
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/server.log" >&2
  fi
  if [[ "${KEEP_WORKDIR:-}" == 1 ]]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

pip_install() {  # VENV_PYTHON ARGS...: pip install, bounded in time
  local python=$1
  shift
  timeout "$INSTALL_TIMEOUT_S" "$python" -m pip install --quiet "$@" \
    || die "pip install $* failed or took over ${INSTALL_TIMEOUT_S}s"
}

copy_stage() {  # STAGE INTO_DIR: copy what STAGE's COPY lines copy, file by file
  local stage=$1 into=$2 listing origin src dest from
  listing="$("$PYTHON" "$REPO/scripts/docker_stages.py" copies "$stage")"
  mkdir -p "$into"
  while IFS=$'\t' read -r origin src dest; do
    case "$origin" in
      context) from="$REPO/$src" ;;
      train) from="$TRAIN_DIR/$src" ;;
      serve-deps) continue ;;  # the venv: rebuilt below from requirements-serve.txt
      *) die "stage $stage copies from unknown stage $origin" ;;
    esac
    case "$dest" in
      /tmp/*) dest="${dest#/tmp/}" ;;  # serve-deps keeps its requirements in /tmp
      /*) die "stage $stage copies to $dest, outside its WORKDIR" ;;
    esac
    mkdir -p "$(dirname "$into/$dest")"
    cp "$from" "$into/$dest"
  done <<<"$listing"
  printf '    %s\n' "$(cd "$into" && find . -type f | sort | tr '\n' ' ')"
}

step "work directory $WORK ($("$PYTHON" --version))"

step "train stage: copy what the Dockerfile's train stage copies"
copy_stage train "$TRAIN_DIR"

step "train stage: fresh venv, torch alone first, then requirements-train.txt"
"$PYTHON" -m venv "$WORK/train-venv"
TRAIN_PY="$WORK/train-venv/bin/python"
grep -E '^torch==' "$TRAIN_DIR/requirements-train.txt" >"$WORK/torch.txt" \
  || die "requirements-train.txt pins no torch==VERSION"
pip_install "$TRAIN_PY" --no-deps ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
  -r "$WORK/torch.txt"
pip_install "$TRAIN_PY" -r "$TRAIN_DIR/requirements-train.txt"
"$TRAIN_PY" -m pip check
"$TRAIN_PY" -c "import sys, torch; sys.exit(f'CUDA torch {torch.__version__}: set TORCH_INDEX_URL to a CPU index' if torch.version.cuda else 0)"

step "train stage: python -m training.export"
(cd "$TRAIN_DIR" && "$TRAIN_PY" -m training.export)

step "serve stage: copy what the Dockerfile's serve stages copy"
copy_stage serve-deps "$DEPS_DIR"
copy_stage serve "$SERVE_DIR"

step "serve stage: fresh venv from requirements-serve.txt alone"
"$PYTHON" -m venv "$WORK/serve-venv"
SERVE_PY="$WORK/serve-venv/bin/python"
pip_install "$SERVE_PY" -r "$DEPS_DIR/requirements-serve.txt"
"$SERVE_PY" -m pip check
"$SERVE_PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
  || die "torch is importable in the serve venv"
echo "    torch is not importable"

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
step "serve stage: python -m serving on 127.0.0.1:$PORT"
# A clean environment, as in the image: only what the serve stage sets (HOST is
# 127.0.0.1 here instead of 0.0.0.0, to stay on loopback).
(
  cd "$SERVE_DIR"
  exec env -i PATH="$(dirname "$SERVE_PY"):/usr/bin:/bin" HOME="$WORK" LANG=C.UTF-8 \
    HOST=127.0.0.1 PORT="$PORT" SERVE_MODEL_PATH="$SERVE_DIR/artifacts/model.onnx" \
    SERVE_WORKERS=2 "$SERVE_PY" -m serving
) >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

step "serve stage: wait for /readyz, then POST real digits to /predict"
# The client runs in the train venv, the one with scikit-learn's digits.
"$TRAIN_PY" - "$PORT" "$START_TIMEOUT_S" "$SERVER_PID" <<'PY'
import json
import os
import sys
import time
import urllib.error
import urllib.request

from sklearn.datasets import load_digits

port, timeout_s, server_pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
base = f"http://127.0.0.1:{port}"


def call(path, body=None):
    """Return (status, parsed JSON body) of one request."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


deadline = time.monotonic() + timeout_s
while True:
    try:
        os.kill(server_pid, 0)
    except ProcessLookupError:
        sys.exit("the server exited before it was ready")
    try:
        status, body = call("/readyz")
        if status == 200:
            break
    except OSError:
        status, body = None, "connection refused"
    if time.monotonic() > deadline:
        sys.exit(f"not ready after {timeout_s:g}s: last /readyz {status} {body}")
    time.sleep(0.2)
print(f"    ready: /readyz {status} {body}")

digits = load_digits()
# The first image of each class: ten real digits, every label covered.
indices = [int((digits.target == label).nonzero()[0][0]) for label in range(10)]
for index in indices:
    label = int(digits.target[index])
    status, answer = call("/predict", {"features": digits.data[index].tolist()})
    if status != 200 or answer.get("prediction") != label:
        sys.exit(f"digit #{index} (a {label}): /predict answered {status} {answer}")
    print(f"    digit #{index}: label {label}, predicted {answer['prediction']} "
          f"(confidence {answer['confidence']:.3f})")
PY

step "serve stage: SIGTERM"
stop_server || die "the server exited with status $? after SIGTERM (124: still running after ${STOP_TIMEOUT_S}s)"
step "both stages passed in $((SECONDS - STARTED))s"
