"""gunicorn settings, derived from ServeConfig (HOST, PORT, SERVE_*)."""

from serving.config import ServeConfig

_config = ServeConfig.from_env()

bind = _config.bind
workers = _config.worker_count
threads = _config.threads
worker_class = "gthread" if _config.threads > 1 else "sync"
timeout = _config.timeout
graceful_timeout = _config.graceful_timeout
loglevel = _config.log_level
# Each worker imports the app (and onnxruntime) itself. Loading onnxruntime in
# the master via preload makes every SIGTERM wait the full graceful timeout.
preload_app = False
accesslog = None
wsgi_app = "serving.wsgi:app"
