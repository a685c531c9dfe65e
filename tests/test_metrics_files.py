"""Dead workers' metric files: live gauges dropped, counters and histograms
merged into one file per type, totals unchanged, crashes mid-merge recovered.

The "workers" are real processes writing prometheus-client's multiprocess
files, as the server's workers do.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics_files import (
    FOLDED_SUFFIX,
    PARTIAL_SUFFIX,
    UNREADABLE_SUFFIX,
    directory_lock,
    finish_interrupted_merge,
    forget_dead_workers,
    merge_dead_workers,
    remove_metric_files,
    summed_values,
    write_values,
)
from tests.conftest import REPO_ROOT
from tests.test_rollout import fill, mounted_tmpfs

WORKER = textwrap.dedent(
    """
    import sys
    from prometheus_client import Counter, Gauge, Histogram
    served = Counter("served_total", "Requests.", ["route"])
    latency = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0))
    model = Gauge("model_info", "Model.", ["version"], multiprocess_mode="livemax")
    count, seconds = int(sys.argv[1]), float(sys.argv[2])
    served.labels("/predict").inc(count)
    served.labels("/model").inc()
    for _ in range(count):
        latency.observe(seconds)
    model.labels("v1").set(1)
    print("ready", flush=True)
    sys.stdin.read()  # stay alive until the test closes stdin
    """
)


def start_worker(metrics_dir: Path, count: int, seconds: float) -> subprocess.Popen:
    """A process that records `count` requests of `seconds` and stays alive."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(count), str(seconds)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout.readline().strip() == "ready"
    return worker


def stop(worker: subprocess.Popen) -> None:
    worker.stdin.close()
    worker.wait(timeout=10)
    worker.stdout.close()


def dead_worker(metrics_dir: Path, count: int, seconds: float = 0.5) -> int:
    """Record `count` requests in a process that then exits; return its pid."""
    worker = start_worker(metrics_dir, count, seconds)
    stop(worker)
    return worker.pid


def scrape(metrics_dir: Path) -> dict[tuple, float]:
    """What /metrics would show: {(sample name, labels): value}."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def dead_pid() -> int:
    """A pid no process has: that of a child that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def metric_files(metrics_dir: Path) -> list[str]:
    return sorted(name for name in os.listdir(metrics_dir) if name.endswith(".db"))


def files_of(metrics_dir: Path, pid: int) -> list[str]:
    return [name for name in os.listdir(metrics_dir) if name.endswith(f"_{pid}.db")]


@pytest.fixture()
def metrics_dir(tmp_path) -> Path:
    return tmp_path


def test_dead_workers_are_merged_and_their_files_removed(metrics_dir):
    first, second = dead_worker(metrics_dir, 3), dead_worker(metrics_dir, 4, 2.0)
    alive = start_worker(metrics_dir, 5, 0.05)
    try:
        before = scrape(metrics_dir)
        assert merge_dead_workers(str(metrics_dir)) == 4  # 2 counters, 2 histograms
        assert scrape(metrics_dir) == before  # same totals, same buckets
        assert files_of(metrics_dir, first) == files_of(metrics_dir, second) == []
        assert files_of(metrics_dir, alive.pid)  # a live worker's stay
        assert before[("served_total", (("route", "/predict"),))] == 12
        assert before[("latency_seconds_count", ())] == 12
        assert before[("latency_seconds_bucket", (("le", "1.0"),))] == 8
    finally:
        stop(alive)


def test_merges_accumulate_across_reloads(metrics_dir):
    for count in (1, 2, 3):
        dead_worker(metrics_dir, count)
        merge_dead_workers(str(metrics_dir))
    totals = scrape(metrics_dir)
    assert totals[("served_total", (("route", "/predict"),))] == 6
    assert totals[("served_total", (("route", "/model"),))] == 3
    assert totals[("latency_seconds_sum", ())] == pytest.approx(3.0)
    assert metric_files(metrics_dir) == [
        "counter_merged.db",
        "histogram_merged.db",
    ]


def test_a_dead_workers_live_gauge_is_dropped(metrics_dir):
    gone = dead_worker(metrics_dir, 1)
    forget_dead_workers(str(metrics_dir))
    assert sorted(files_of(metrics_dir, gone)) == [
        f"counter_{gone}.db",
        f"histogram_{gone}.db",
    ]
    assert not any(name == "model_info" for name, _ in scrape(metrics_dir))


def test_nothing_to_merge_changes_nothing(metrics_dir):
    alive = start_worker(metrics_dir, 2, 0.5)
    try:
        names = metric_files(metrics_dir)
        assert merge_dead_workers(str(metrics_dir)) == 0
        assert metric_files(metrics_dir) == names
    finally:
        stop(alive)


def crash_mid_merge(metrics_dir: Path, renamed: bool) -> tuple[dict, str, str]:
    """Leave what a merge of one dead worker's counters leaves when the process
    dies before (`renamed=False`) or after renaming its merged file into place.

    Returns the totals before the merge, the merged file's and the dead file's path.
    """
    pid = dead_worker(metrics_dir, 3)
    forget_dead_workers(str(metrics_dir))  # its model gauge goes in any case
    before = scrape(metrics_dir)
    merged = str(metrics_dir / "counter_merged.db")
    dead = str(metrics_dir / f"counter_{pid}.db")
    written = merged if renamed else merged + PARTIAL_SUFFIX
    write_values(written, summed_values([dead])[0])
    Path(merged + FOLDED_SUFFIX).write_text(dead)
    return before, merged, dead


def test_a_merge_cut_short_before_its_rename_is_undone(metrics_dir):
    before, merged, _ = crash_mid_merge(metrics_dir, renamed=False)
    finish_interrupted_merge(merged)
    assert not os.path.exists(merged + PARTIAL_SUFFIX)
    assert not os.path.exists(merged + FOLDED_SUFFIX)
    assert scrape(metrics_dir) == before  # the dead file still counts, once
    merge_dead_workers(str(metrics_dir))
    assert scrape(metrics_dir) == before


def test_a_merge_cut_short_after_its_rename_is_completed(metrics_dir):
    before, _, dead = crash_mid_merge(metrics_dir, renamed=True)
    assert scrape(metrics_dir) != before  # counted twice until recovered
    merge_dead_workers(str(metrics_dir))
    assert scrape(metrics_dir) == before
    assert not os.path.exists(dead)


def test_a_merge_waits_for_scrapes_reading_the_directory(metrics_dir):
    dead_worker(metrics_dir, 1)
    merged = threading.Event()

    def merge() -> None:
        merge_dead_workers(str(metrics_dir))
        merged.set()

    with directory_lock(str(metrics_dir), exclusive=False):  # a scrape reading
        with directory_lock(str(metrics_dir), exclusive=False):  # and another
            merging = threading.Thread(target=merge)
            merging.start()
            assert not merged.wait(0.3)
    assert merged.wait(5)
    merging.join()
    assert metric_files(metrics_dir) == ["counter_merged.db", "histogram_merged.db"]


def test_an_unreadable_dead_file_is_set_aside_and_the_rest_merged(metrics_dir):
    dead_worker(metrics_dir, 2)
    torn = metrics_dir / f"counter_{dead_pid()}.db"
    torn.write_bytes(b"")  # a worker killed while creating its file
    merge_dead_workers(str(metrics_dir))
    assert (metrics_dir / (torn.name + UNREADABLE_SUFFIX)).exists()
    assert scrape(metrics_dir)[("served_total", (("route", "/predict"),))] == 2


def test_writing_a_merged_file_on_a_full_filesystem_is_an_error_not_a_crash(
    tmp_path,
):
    """Its pages are allocated before it is mapped: no SIGBUS (checked in a
    child process, which such a crash would kill)."""
    with mounted_tmpfs(tmp_path / "full", "256k") as full:
        fill(full)
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys\n"
                "from serving.metrics_files import write_values\n"
                "try:\n"
                "    write_values(sys.argv[1], {'key': 1.0})\n"
                "except OSError as error:\n"
                "    print('OSError', error.errno)\n",
                str(full / "counter_merged.db.partial"),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert child.returncode == 0, child.stderr  # -7 would be SIGBUS
    assert child.stdout.split() == ["OSError", str(errno.ENOSPC)]


def test_removing_the_files_leaves_other_files_alone(metrics_dir):
    dead_worker(metrics_dir, 1)
    merge_dead_workers(str(metrics_dir))
    (metrics_dir / "notes.txt").write_text("not ours")
    remove_metric_files(str(metrics_dir))
    assert os.listdir(metrics_dir) == ["notes.txt"]
