"""ServeConfig: every environment variable the service reads, read once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from contract import ARTIFACTS_DIR, MODEL_FILENAME

DEFAULT_MAX_BATCH_ROWS = 1024  # rows per POST /predict/batch


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def default_workers() -> int:
    """One worker per usable core: each worker runs onnxruntime on one thread."""
    # The affinity mask honours cpusets (docker --cpuset-cpus, taskset), which
    # os.cpu_count() ignores. CPU quotas (--cpus) still need SERVE_WORKERS.
    return len(os.sched_getaffinity(0)) or 1


@dataclass(frozen=True)
class ServeConfig:
    """Runtime settings; `from_env` documents which variable sets each one."""

    host: str = "127.0.0.1"  # HOST; bind 0.0.0.0 only when asked (containers)
    port: int = 8000  # PORT
    model_path: str = str(Path(ARTIFACTS_DIR) / MODEL_FILENAME)  # SERVE_MODEL_PATH
    workers: int = 0  # SERVE_WORKERS; 0 means one per core
    threads: int = 1  # SERVE_THREADS per worker; >1 switches to gthread workers
    # SERVE_ORT_THREADS: onnxruntime compute threads per worker. One per worker
    # and one worker per core avoids cores x workers threads fighting (README).
    ort_threads: int = 1
    timeout: int = 30  # SERVE_TIMEOUT: seconds before a stuck worker is killed
    graceful_timeout: int = 2  # SERVE_GRACEFUL_TIMEOUT: SIGTERM drain limit
    log_level: str = "info"  # SERVE_LOG_LEVEL
    access_log: bool = True  # SERVE_ACCESS_LOG: one JSON line per request
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS  # SERVE_MAX_BATCH_ROWS
    # SERVE_MAX_CONTENT_LENGTH in bytes; 2 MiB holds 1024 rows of long floats.
    max_content_length: int = 2 * 1024 * 1024
    # PROMETHEUS_MULTIPROC_DIR: set by the gunicorn config so that all workers'
    # metrics are summed on /metrics; empty means single-process metrics.
    metrics_dir: str = ""

    @property
    def bind(self) -> str:
        """The gunicorn bind address, HOST:PORT."""
        return f"{self.host}:{self.port}"

    @property
    def worker_count(self) -> int:
        """SERVE_WORKERS, or one per usable core when it is 0."""
        return self.workers or default_workers()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeConfig:
        """Build the config from HOST, PORT and SERVE_* variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            name = ENV_NAMES[field.name]
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            default = field.default
            if field.name == "log_level":
                values[field.name] = parse_log_level(name, raw)
            elif isinstance(default, bool):
                values[field.name] = parse_bool(name, raw)
            elif isinstance(default, int):
                values[field.name] = parse_int(name, raw, *INT_BOUNDS[field.name])
            else:
                values[field.name] = raw
        return cls(**values)


ENV_NAMES = {
    "host": "HOST",
    "port": "PORT",
    "model_path": "SERVE_MODEL_PATH",
    "workers": "SERVE_WORKERS",
    "threads": "SERVE_THREADS",
    "ort_threads": "SERVE_ORT_THREADS",
    "timeout": "SERVE_TIMEOUT",
    "graceful_timeout": "SERVE_GRACEFUL_TIMEOUT",
    "log_level": "SERVE_LOG_LEVEL",
    "access_log": "SERVE_ACCESS_LOG",
    "max_batch_rows": "SERVE_MAX_BATCH_ROWS",
    "max_content_length": "SERVE_MAX_CONTENT_LENGTH",
    "metrics_dir": "PROMETHEUS_MULTIPROC_DIR",
}
INT_BOUNDS = {  # inclusive (minimum, maximum)
    "port": (1, 65535),
    "workers": (0, 256),
    "threads": (1, 256),
    "ort_threads": (1, 256),
    "timeout": (1, 3600),
    "graceful_timeout": (0, 3600),
    "max_batch_rows": (1, 1_000_000),
    "max_content_length": (1024, 1024**3),
}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def parse_int(name: str, raw: str, minimum: int, maximum: int) -> int:
    """Parse an integer variable or raise ConfigError naming it."""
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} must be between {minimum} and {maximum}")
    return value


def parse_bool(name: str, raw: str) -> bool:
    """Parse 1/0, true/false, yes/no, on/off or raise ConfigError naming it."""
    word = raw.strip().lower()
    if word in TRUE_WORDS | FALSE_WORDS:
        return word in TRUE_WORDS
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def parse_log_level(name: str, raw: str) -> str:
    """Accept a standard logging level name, in any case, or raise ConfigError."""
    level = raw.strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return level
