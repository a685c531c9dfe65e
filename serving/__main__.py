"""Start the production server: python -m serving (HOST, PORT, SERVE_* env vars).

Checks the config and the model first, so a bad setup fails with one clear
line instead of workers failing one after another, then serves (serving/server.py).
"""

from __future__ import annotations

import sys

from serving.config import ConfigError, ServeConfig


def check_model(config: ServeConfig) -> str:
    """Verify the model once for every worker; return the start line.

    Exits with a one-line error when the file is missing or unusable.
    """
    from serving.model import ModelLoadError
    from serving.rollout import adopt, verify

    try:
        model = verify(config.model_path)
    except ModelLoadError as error:
        sys.exit(f"error: {error}")
    adopt(model)  # the workers, forked from here, open these bytes
    return (
        f"serving {model.path} (sha256 {model.sha256[:12]}) on http://{config.bind} "
        f"with {config.worker_count} worker(s)"
    )


def main() -> None:
    """Validate the settings and the model, then serve until stopped."""
    try:
        config = ServeConfig.from_env()
    except ConfigError as error:
        sys.exit(f"error: {error}")
    start_line = check_model(config)
    from serving.server import (
        MetricsDirectoryError,
        PortInUse,
        ensure_port_is_free,
        serve,
    )

    try:
        ensure_port_is_free(config.host, config.port)
        serve(config, start_line)
    except (PortInUse, MetricsDirectoryError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
