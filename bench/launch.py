"""Start the service's app as `python -m serving` does, for two bench targets.

Usage:
    python -m bench.launch noop                 # POST /noop added, production server
    python -m bench.launch gunicorn ARGUMENTS   # gunicorn, as before granian

Both read HOST, PORT and SERVE_* and load the model once in the launcher
before serving, as the service's entry point does (serving/__main__.py), so
their cold starts pay for what production's pays for. Only public pieces of
serving/ are used (ServeConfig, Predictor, serve), so the entry point's own
helpers can change freely.

- noop: bench/noop_app.py under exactly the production server and settings
  (serving/server.py); only the app factory differs.
- gunicorn: what `python -m serving` did before the move (commit 91cb13a):
  the preflight, then os.execv into gunicorn, whose master never loads
  onnxruntime, so the preflight's memory is freed. Needs gunicorn
  (requirements-bench-serve.txt).
"""

from __future__ import annotations

import os
import sys

from serving.config import ConfigError, ServeConfig
from serving.model import ModelLoadError, Predictor

NOOP_FACTORY = "bench.noop_app:create_noop_app"


def checked_config() -> ServeConfig:
    """Read the settings and load the model once; exit with one line if unusable."""
    try:
        config = ServeConfig.from_env()
        Predictor.load(config.model_path)
    except (ConfigError, ModelLoadError) as error:
        sys.exit(f"error: {error}")
    print(f"bench launcher: serving {config.model_path} on {config.bind}", flush=True)
    return config


def main(argv: list[str]) -> None:
    """Entry point of `python -m bench.launch noop|gunicorn [ARGUMENTS...]`."""
    if not argv or argv[0] not in ("noop", "gunicorn"):
        sys.exit(__doc__)
    config = checked_config()
    if argv[0] == "noop":
        from serving.server import serve

        serve(config, target=NOOP_FACTORY)
    else:
        os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
