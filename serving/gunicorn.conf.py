"""gunicorn settings, derived from ServeConfig (HOST, PORT, SERVE_*).

This file runs in the master, which must stay light: no onnxruntime, no app.
"""

import glob
import os
import shutil
import tempfile

from serving.config import ServeConfig

_config = ServeConfig.from_env()

bind = _config.bind
workers = _config.worker_count
threads = _config.threads
# gunicorn's sync/gthread workers, answering the requests gunicorn rejects itself
# (bad request line or headers, over-long URL) with our JSON error shape.
worker_class = (
    "serving.gunicorn_workers.ThreadWorkerWithJsonErrors"
    if _config.threads > 1
    else "serving.gunicorn_workers.SyncWorkerWithJsonErrors"
)
timeout = _config.timeout
# SIGTERM: workers finish the request in hand, then exit; stragglers are killed
# after this many seconds, so a rolling deploy never waits long.
graceful_timeout = _config.graceful_timeout
loglevel = _config.log_level
# Each worker imports the app (and onnxruntime) itself. Loading onnxruntime in
# the master via preload makes every SIGTERM wait the full graceful timeout.
preload_app = False
wsgi_app = "serving.wsgi:app"
# The app writes its own JSON access log with request ids (SERVE_ACCESS_LOG).
accesslog = None
# gunicorn's runtime control socket lives in $HOME; the service does not use it
# and a container user may have no writable home.
control_socket_disable = True
# Worker heartbeats are file writes; on Docker's overlay filesystem they can
# stall, so use memory-backed /dev/shm where it exists.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
# gunicorn's own lines as JSON, like the app's.
logger_class = "serving.gunicorn_workers.GunicornJsonLogger"

# Multiprocess metrics: workers write samples to files in one directory, and
# /metrics sums them. The directory must exist and be empty before workers
# start, so the master prepares it and passes it down through the environment.
_metrics_dir = _config.metrics_dir or tempfile.mkdtemp(prefix="digits-metrics-")
_owns_metrics_dir = not _config.metrics_dir
os.makedirs(_metrics_dir, exist_ok=True)
# Only prometheus-client's own sample files: a shared directory may hold others.
for _stale in glob.glob(os.path.join(_metrics_dir, "*.db")):
    os.remove(_stale)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges so they stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server) -> None:
    """Remove the metrics directory this config created."""
    if _owns_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
