"""Start the production server: python -m serving (HOST, PORT, SERVE_* env vars).

Checks the config and the model first, so a bad setup fails with one clear
line instead of workers failing one after another, then serves (serving/server.py).
"""

from __future__ import annotations

import logging
import sys

from serving.config import ConfigError, ServeConfig


def preflight(config: ServeConfig) -> None:
    """Load the model once in this process; exit with a one-line error if unusable."""
    from serving.model import ModelLoadError, Predictor

    try:
        info = Predictor.load(config.model_path).info
    except ModelLoadError as error:
        sys.exit(f"error: {error}")
    from serving.telemetry import configure_logging

    configure_logging(config.log_level)  # the start line is JSON like the rest
    logging.getLogger("serving.main").info(
        f"serving {info.path} (sha256 {info.sha256[:12]}) on http://{config.bind} "
        f"with {config.worker_count} worker(s)",
        extra={"model_sha256": info.sha256, "workers": config.worker_count},
    )


def main() -> None:
    """Validate the settings and the model, then serve until stopped."""
    try:
        config = ServeConfig.from_env()
    except ConfigError as error:
        sys.exit(f"error: {error}")
    preflight(config)
    from serving.server import serve

    serve(config)


if __name__ == "__main__":
    main()
