"""ServeConfig: every environment variable the service reads, declared once.

Each field is declared with `setting(...)`: its environment name, default,
marshmallow field (type and bounds) and a one-line description. Reading the
environment, validating it and the README's settings table all follow from that
one declaration (`python -m serving.config` prints the table).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from contract import ARTIFACTS_DIR, MODEL_FILENAME

DEFAULT_MAX_BATCH_ROWS = 1024  # rows per POST /predict/batch
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def setting(env: str, default: Any, field: fields.Field, doc: str) -> Any:
    """Declare one setting: its variable, default, type and bounds, and its doc."""
    return dataclasses.field(
        default=default, metadata={"env": env, "field": field, "doc": doc}
    )


def between(minimum: int, maximum: int) -> fields.Integer:
    """An integer setting with inclusive bounds."""
    return fields.Integer(
        error_messages={"invalid": "is not an integer"},
        validate=validate.Range(
            minimum, maximum, error="must be between {min} and {max}"
        ),
    )


class Choice(fields.String):
    """One of a few words, in any case; loaded in lower case."""

    def __init__(self, choices: tuple[str, ...]) -> None:
        super().__init__(
            validate=validate.OneOf(choices, error="is not one of {choices}")
        )

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip().lower()


CGROUP_ROOT = Path("/sys/fs/cgroup")


def read_quota(quota_file: Path, period_file: Path | None = None) -> int | None:
    """Whole cores (rounded up) of a CFS quota, or None for none or unreadable.

    cgroup v2 keeps "QUOTA PERIOD" in one file ("max" for none); v1 keeps
    each in its own file (-1 for none).
    """
    try:
        if period_file is None:
            quota, period = quota_file.read_text().split()
        else:
            quota, period = quota_file.read_text(), period_file.read_text()
        if quota.strip() in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def cpu_quota_cores(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """Cores this process's CPU quota grants (docker --cpus, a Kubernetes CPU
    limit), rounded up; None when there is none. cgroup v2, then v1."""
    v2 = read_quota(cgroup_root / "cpu.max")
    if v2 is not None:
        return v2
    for controller in ("cpu", "cpu,cpuacct"):
        directory = cgroup_root / controller
        v1 = read_quota(directory / "cpu.cfs_quota_us", directory / "cpu.cfs_period_us")
        if v1 is not None:
            return v1
    return None


def default_workers(cgroup_root: Path = CGROUP_ROOT) -> int:
    """One worker per usable core: each worker runs onnxruntime on one thread.

    Usable means both schedulable and paid for: the affinity mask honours
    cpusets (docker --cpuset-cpus, taskset), which os.cpu_count() ignores, and
    a CPU quota caps it, so a container limited to 2 CPUs on a 64-core node
    runs 2 workers rather than 64 that share 2 cores.
    """
    cores = len(os.sched_getaffinity(0)) or 1
    quota = cpu_quota_cores(cgroup_root)
    return min(cores, quota) if quota else cores


@dataclass(frozen=True)
class ServeConfig:
    """Runtime settings of `python -m serving`; tests build one directly."""

    host: str = setting(
        "HOST",
        "127.0.0.1",
        fields.String(validate=validate.Length(min=1)),
        "Address to listen on; use 0.0.0.0 only in a container.",
    )
    port: int = setting("PORT", 8000, between(1, 65535), "TCP port to listen on.")
    model_path: str = setting(
        "SERVE_MODEL_PATH",
        str(Path(ARTIFACTS_DIR) / MODEL_FILENAME),
        fields.String(validate=validate.Length(min=1)),
        "The ONNX model to serve.",
    )
    workers: int = setting(
        "SERVE_WORKERS",
        0,
        between(0, 256),
        "Worker processes; 0 means one per usable core (affinity, capped by a "
        "cgroup CPU quota).",
    )
    threads: int = setting(
        "SERVE_THREADS",
        32,
        between(1, 1024),
        "Threads per worker taking requests in; each request in progress, a "
        "stalled upload included, holds one.",
    )
    app_concurrency: int = setting(
        "SERVE_APP_CONCURRENCY",
        1,
        between(1, 1024),
        "Requests per worker running app code at once, once their body is in; "
        "the rest wait their turn.",
    )
    connections: int = setting(
        "SERVE_CONNECTIONS",
        1000,
        between(1, 100_000),
        "Open connections per worker, idle keep-alive and slow senders "
        "included; more wait in the listen backlog.",
    )
    ort_threads: int = setting(
        "SERVE_ORT_THREADS",
        1,
        between(1, 256),
        "onnxruntime compute threads per worker.",
    )
    malloc_arenas: int = setting(
        "SERVE_MALLOC_ARENAS",
        2,
        between(0, 1024),
        "glibc malloc arenas per worker; 0 keeps glibc's default (8 per core), "
        "with which each server thread keeps the memory it freed.",
    )
    timeout: int = setting(
        "SERVE_TIMEOUT",
        10,
        between(1, 3600),
        "Seconds a client has to send its request headers (slower ones are "
        "disconnected), and most it may pause while sending its body (a stalled "
        "body is logged and counted, and answered 408 if it ever completes).",
    )
    graceful_timeout: int = setting(
        "SERVE_GRACEFUL_TIMEOUT",
        1,
        between(1, 3600),
        "Seconds SIGTERM or SIGHUP waits for a worker's requests in progress "
        "before killing it.",
    )
    log_level: str = setting(
        "SERVE_LOG_LEVEL",
        "info",
        Choice(LOG_LEVELS),
        "Log level: " + ", ".join(LOG_LEVELS) + ".",
    )
    access_log: bool = setting(
        "SERVE_ACCESS_LOG",
        True,
        fields.Boolean(
            error_messages={"invalid": "is not a boolean (use true or false)"}
        ),
        "One JSON access line per request (true/false).",
    )
    max_batch_rows: int = setting(
        "SERVE_MAX_BATCH_ROWS",
        DEFAULT_MAX_BATCH_ROWS,
        between(1, 1_000_000),
        "Most rows in one POST /predict/batch.",
    )
    max_content_length: int = setting(
        "SERVE_MAX_CONTENT_LENGTH",
        2 * 1024 * 1024,
        between(1024, 1024**3),
        "Largest request body in bytes; 2 MiB holds 1024 rows of long floats.",
    )
    metrics_dir: str = setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "",
        fields.String(),
        "Directory where workers share metrics; empty means a fresh temporary "
        "one. The metric files are removed at exit (a temporary one too).",
    )

    @property
    def bind(self) -> str:
        """The listening address, HOST:PORT."""
        return f"{self.host}:{self.port}"

    @property
    def worker_count(self) -> int:
        """SERVE_WORKERS, or one per usable core when it is 0."""
        return self.workers or default_workers()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeConfig:
        """Build the config from HOST, PORT and SERVE_* variables."""
        environ = os.environ if environ is None else environ
        # An empty variable means "not set", as in most shells' ${VAR:-default}.
        present = {name: value for name, value in environ.items() if value != ""}
        try:
            values = ENVIRONMENT_SCHEMA.load(present)
        except ValidationError as error:
            raise ConfigError(describe_errors(error.messages, present)) from None
        return cls(**values)


def declared_settings() -> list[dataclasses.Field]:
    """The fields of ServeConfig, in declaration order."""
    return list(dataclasses.fields(ServeConfig))


def build_environment_schema() -> Schema:
    """A marshmallow schema reading each setting from its variable."""
    declared = {}
    for field in declared_settings():
        declared[field.name] = field.metadata["field"]
        declared[field.name].data_key = field.metadata["env"]
    return Schema.from_dict(declared, name="ServeEnvironment")(unknown="exclude")


def describe_errors(messages: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """Turn marshmallow's messages into "NAME='value' problem" sentences."""
    parts = []
    for name, problems in sorted(messages.items()):
        problem = problems[0] if isinstance(problems, list) else str(problems)
        raw = environ.get(name, "")
        shown = raw if raw.isdigit() else repr(raw)  # PORT=0, HOST='x y'
        parts.append(f"{name}={shown} {problem}")
    return "; ".join(parts)


ENVIRONMENT_SCHEMA = build_environment_schema()
# Field name -> environment variable, derived from the declarations.
ENV_NAMES = {field.name: field.metadata["env"] for field in declared_settings()}


def settings_table() -> str:
    """The README's settings table, generated from the declarations."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field in declared_settings():
        default = field.default
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        rows.append(
            f"| `{field.metadata['env']}` | `{shown or '(empty)'}` "
            f"| {field.metadata['doc']} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(settings_table() + "\n")
