"""Housekeeping of the workers' shared metric files (prometheus-client's
multiprocess mode): what a worker that has exited leaves behind.

Each worker maps its own files, named `<type>_<pid>.db` (gauges:
`gauge_<mode>_<pid>.db`). The HTTP server has no hook for a worker's exit, so
every scrape and every worker's start-up does the bookkeeping:

- a dead worker's live gauges are dropped (it no longer serves that model);
- its counters and histograms are added into one `<type>_merged.db` per type
  and its files removed, so totals survive reloads and crashes while the
  number of files, and the cost of a scrape, stays bounded.

Scrapes hold a shared lock while they read the directory, merges an exclusive
one, so no scrape sees a dead worker's counts twice (once merged, once not).

prometheus-client is imported inside the functions that use it: the launcher
clears the directory before that import, which fixes prometheus-client's mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
from collections import defaultdict
from collections.abc import Iterator

# Types whose samples add up across processes (histograms store raw buckets
# and sums per process; the collector accumulates the buckets when it reads).
ADDITIVE_TYPES = ("counter", "histogram", "summary")
MERGED_NAME = "merged"  # `counter_merged.db` holds every dead worker's counters
LOCK_FILENAME = ".merge.lock"  # not *.db: the collector reads only those
PARTIAL_SUFFIX = ".partial"  # a merged file being written
FOLDED_SUFFIX = ".folded"  # the files a merge has counted, until they are gone
UNREADABLE_SUFFIX = ".unreadable"  # a torn file, kept for a look, never read
INITIAL_FILE_BYTES = 64 * 1024  # prometheus-client's first size for a file

logger = logging.getLogger("serving.metrics")


def pid_is_alive(pid: int) -> bool:
    """True while process `pid` exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_pid(path: str) -> int | None:
    """The worker pid a metric file belongs to, or None (e.g. a merged file)."""
    pid_text = os.path.basename(path).removesuffix(".db").rsplit("_", 1)[-1]
    return int(pid_text) if pid_text.isdigit() else None


@contextlib.contextmanager
def directory_lock(metrics_dir: str, exclusive: bool) -> Iterator[None]:
    """Hold the directory's merge lock, shared (readers) or exclusive (a merge)."""
    fd = os.open(
        os.path.join(metrics_dir, LOCK_FILENAME), os.O_RDWR | os.O_CREAT, 0o644
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def reserve_files(metrics_dir: str, pid: int) -> None:
    """Allocate every page of process `pid`'s metric files now.

    prometheus-client grows its files sparse and writes through a memory map:
    a page first touched once the filesystem is full kills the process with
    SIGBUS. Allocated pages never fault; a full filesystem here is an OSError.
    """
    for path in glob.glob(os.path.join(metrics_dir, f"*_{pid}.db")):
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)


def forget_dead_workers(metrics_dir: str) -> None:
    """Drop the live gauges of worker processes that have exited."""
    from prometheus_client import multiprocess

    for path in dead_worker_files(metrics_dir, "gauge_live*"):
        multiprocess.mark_process_dead(file_pid(path), metrics_dir)


def dead_worker_files(metrics_dir: str, kind: str) -> list[str]:
    """The files of workers that have exited, of `kind` (a glob: "gauge_live*")."""
    return [
        path
        for path in glob.glob(os.path.join(metrics_dir, f"{kind}_*.db"))
        if (pid := file_pid(path)) is not None and not pid_is_alive(pid)
    ]


def file_values(path: str) -> list[tuple[str, float]]:
    """The (key, value) samples of one metric file; raises if it is unreadable."""
    from prometheus_client.mmap_dict import MmapedDict

    return [
        (key, value)
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(
            path
        )
    ]


def quarantine(path: str, error: Exception) -> None:
    """Rename an unreadable file out of the collector's way, saying why once.

    A worker killed while creating its file leaves it empty or torn; left as
    *.db it would make every scrape and every merge fail.
    """
    os.replace(path, path + UNREADABLE_SUFFIX)
    logger.warning(
        f"metric file {os.path.basename(path)} is unreadable "
        f"({type(error).__name__}: {error}); renamed to *{UNREADABLE_SUFFIX}, "
        "its counts are lost"
    )


def summed_values(paths: list[str]) -> tuple[dict[str, float], list[str]]:
    """Add up the samples of files of one additive type, key by key.

    Returns the totals and the files they came from; unreadable files are
    quarantined and left out.
    """
    totals: dict[str, float] = defaultdict(float)
    summed: list[str] = []
    for path in paths:
        try:
            values = file_values(path)
        except Exception as error:  # struct.error, RuntimeError, ... (torn file)
            quarantine(path, error)
            continue
        for key, value in values:
            totals[key] += value
        summed.append(path)
    return totals, summed


def entry_bytes_at_most(key: str) -> int:
    """An upper bound on one sample's size in prometheus-client's file format:
    a 4-byte length, the key padded to 8 bytes, value and timestamp."""
    return 4 + len(key.encode()) + 8 + 16


def write_values(path: str, values: dict[str, float]) -> None:
    """Write `values` to a fresh file at `path`, in prometheus-client's format.

    The file's pages are allocated before it is mapped, at the size the
    library would grow it to (64 KiB, doubled as needed): on a full
    filesystem this raises OSError instead of a SIGBUS on the first write.
    """
    from prometheus_client.mmap_dict import MmapedDict

    needed = 8 + sum(entry_bytes_at_most(key) for key in values)
    size = INITIAL_FILE_BYTES
    while size < needed:
        size *= 2
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    mapped = MmapedDict(path)  # a zeroed file of this size: an empty one
    try:
        for key, value in values.items():
            mapped.write_value(key, value, 0.0)
    finally:
        mapped.close()


def finish_interrupted_merge(merged: str) -> None:
    """Complete or undo a merge that a crash cut short.

    A merge writes `<merged>.partial`, lists the files it folds in
    `<merged>.folded`, renames the partial file into place, then removes the
    folded files and the list. A partial file left over means the rename
    never happened: drop it and the list. A list without a partial file means
    it did: the files it names are already counted in `merged`.
    """
    partial, folded = merged + PARTIAL_SUFFIX, merged + FOLDED_SUFFIX
    if os.path.exists(partial):
        os.remove(partial)
    elif os.path.exists(folded):
        with open(folded) as listing:
            for path in listing.read().splitlines():
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(folded)


def merge_kind(metrics_dir: str, kind: str) -> int:
    """Fold the exited workers' `kind` files into `<kind>_merged.db`."""
    merged = os.path.join(metrics_dir, f"{kind}_{MERGED_NAME}.db")
    finish_interrupted_merge(merged)
    dead = dead_worker_files(metrics_dir, kind)
    if not dead:
        return 0
    sources = [merged, *dead] if os.path.exists(merged) else dead
    totals, summed = summed_values(sources)
    folded = [path for path in summed if path != merged]
    if not folded:
        return 0
    write_values(merged + PARTIAL_SUFFIX, totals)
    with open(merged + FOLDED_SUFFIX, "w") as listing:
        listing.write("\n".join(folded))
    os.replace(merged + PARTIAL_SUFFIX, merged)
    for path in folded:
        os.remove(path)
    os.remove(merged + FOLDED_SUFFIX)
    return len(folded)


def merge_dead_workers(metrics_dir: str) -> int:
    """Drop exited workers' live gauges; fold their counters and histograms
    into the merged files. Returns how many files were folded in and removed.
    """
    with directory_lock(metrics_dir, exclusive=True):
        forget_dead_workers(metrics_dir)
        return sum(merge_kind(metrics_dir, kind) for kind in ADDITIVE_TYPES)


def remove_metric_files(metrics_dir: str) -> None:
    """Remove every prometheus-client file (and our lock) from the directory."""
    for name in os.listdir(metrics_dir):
        if name.endswith((".db", PARTIAL_SUFFIX, FOLDED_SUFFIX, UNREADABLE_SUFFIX)) or (
            name == LOCK_FILENAME
        ):
            os.remove(os.path.join(metrics_dir, name))
