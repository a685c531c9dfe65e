"""Start the production server: python -m serving (HOST, PORT, SERVE_* env vars).

Checks the config and the model first, so a bad setup fails with one clear
line instead of a gunicorn boot loop, then replaces this process with gunicorn.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from serving.config import ConfigError, ServeConfig

GUNICORN_CONFIG = Path(__file__).with_name("gunicorn.conf.py")


def preflight(config: ServeConfig) -> None:
    """Load the model once in this process; exit with a one-line error if unusable."""
    from serving.model import ModelLoadError, Predictor

    try:
        info = Predictor.load(config.model_path).info
    except ModelLoadError as error:
        sys.exit(f"error: {error}")
    print(
        f"serving {info.path} (sha256 {info.sha256[:12]}) on http://{config.bind} "
        f"with {config.worker_count} worker(s)",
        flush=True,
    )


def main() -> None:
    """Validate, then exec gunicorn so signals reach its master directly."""
    try:
        config = ServeConfig.from_env()
    except ConfigError as error:
        sys.exit(f"error: {error}")
    preflight(config)
    argv = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG)]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
