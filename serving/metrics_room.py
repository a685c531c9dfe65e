"""Whether the metrics directory's filesystem has room for the metrics.

prometheus-client writes samples through memory-mapped files: on a full
filesystem, touching a new page kills the process with SIGBUS, which Python
cannot catch. The launcher checks before anything maps a file (and runs without
metrics when there is no room); workers check again at most once a second.
No prometheus-client import here: the launcher needs this before that import.
"""

from __future__ import annotations

import os

MIN_FREE_BYTES = 1024 * 1024
# Set by the launcher when it starts without metrics: why, for /metrics.
DISABLED_VARIABLE = "DIGITS_METRICS_DISABLED"


def lack_of_room(directory: str) -> str | None:
    """Why metrics must not be written into `directory`, or None if they may."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    if free >= MIN_FREE_BYTES:
        return None
    return (
        f"the metrics filesystem has {free // 1024} KiB free, under "
        f"{MIN_FREE_BYTES // 1024} KiB: writing there could crash the worker"
    )
