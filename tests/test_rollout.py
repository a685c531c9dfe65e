"""Model rollout, model faults and metrics faults, on a real `python -m serving`.

The launcher verifies the model file and the workers open its bytes: a file
changed under the server changes nothing until SIGHUP, and SIGHUP adopts a new
file only if it checks out. Each test serves its own copy of the model.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from contract import MetadataKey
from tests.conftest import serving_process
from tests.test_server import (
    children_of,
    kill_one_worker_and_wait_for_its_replacement,
    metric_samples,
    metrics_dir_of,
    reload_under_load,
    wait_until_replaced,
)


@pytest.fixture()
def served_copy(onnx_path, tmp_path):
    """A server on its own copy of the model: (process, port, model path, log)."""
    model = tmp_path / "model.onnx"
    shutil.copy(onnx_path, model)
    log = tmp_path / "server.log"
    with serving_process(model, log, workers=2) as (process, port):
        yield process, port, model, log


def model_versions(port: int, requests: int = 12) -> set[str]:
    """The versions GET /model answers, each request on a new connection."""
    versions = set()
    for _ in range(requests):
        url = f"http://127.0.0.1:{port}/model"
        with urllib.request.urlopen(url, timeout=5) as response:
            versions.add(json.loads(response.read())["version"])
    return versions


def write_new_version(source: Path, target: Path, suffix: str) -> str:
    """A valid model like `source` with another version, written as a rollout
    should be: beside the target, then renamed over it."""
    model = onnx.load(source)
    version = ""
    for prop in model.metadata_props:
        if prop.key == MetadataKey.MODEL_VERSION:
            prop.value = version = f"{prop.value}-{suffix}"
    staged = target.with_name(target.name + ".new")
    onnx.save(model, staged)
    os.replace(staged, target)
    return version


def reload_results(port: int) -> dict[str, float]:
    return {
        sample.labels["result"]: sample.value
        for sample in metric_samples(port)
        if sample.name == "digits_model_reloads_total"
    }


def test_a_corrupt_file_and_a_dead_worker_leave_the_server_serving(served_copy):
    process, port, model, _ = served_copy
    (before,) = model_versions(port)
    model.write_bytes(b"not a model")
    kill_one_worker_and_wait_for_its_replacement(process)
    assert process.poll() is None
    assert model_versions(port) == {before}  # the new worker too


def test_a_replaced_file_never_makes_workers_disagree(served_copy, onnx_path):
    process, port, model, _ = served_copy
    (before,) = model_versions(port)
    write_new_version(onnx_path, model, "unreloaded")
    kill_one_worker_and_wait_for_its_replacement(process)
    assert model_versions(port, requests=20) == {before}
    (info,) = [s for s in metric_samples(port) if s.name == "digits_model_info"]
    assert info.labels["version"] == before


def test_sighup_rolls_out_a_good_model_under_load_without_a_failure(
    served_copy, onnx_path
):
    process, port, model, _ = served_copy
    new_version = write_new_version(onnx_path, model, "rollout")
    failures = reload_under_load(process, port)
    assert failures == []
    assert model_versions(port, requests=20) == {new_version}
    infos = [s for s in metric_samples(port) if s.name == "digits_model_info"]
    assert [info.labels["version"] for info in infos] == [new_version]
    assert reload_results(port) == {"accepted": 1.0}


def test_sighup_with_a_bad_model_keeps_the_old_one_and_says_so(served_copy):
    process, port, model, log = served_copy
    (before,) = model_versions(port)
    model.write_bytes(b"\x00" * 100)
    old_workers = children_of(process.pid)
    process.send_signal(signal.SIGHUP)
    wait_until_replaced(process, old_workers)  # granian restarts them anyway
    assert model_versions(port, requests=20) == {before}
    assert reload_results(port) == {"refused": 1.0}
    refusals = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if "model reload refused" in line
    ]
    (refusal,) = refusals  # one JSON line, no traceback
    assert refusal["level"] == "error" and "cannot load" in refusal["message"]
    assert "Traceback" not in log.read_text()


def predict_statuses(port: int, count: int) -> list[int]:
    """Statuses of `count` POST /predict, each on a new connection."""
    statuses = []
    body = json.dumps({"features": [0] * 64}).encode()
    for _ in range(count):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            statuses.append(response.status)
    return statuses


def metrics_refusal(port: int) -> str:
    """GET /metrics, which must answer 503 metrics_unavailable; return its message."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        raise AssertionError("/metrics answered 200")
    except urllib.error.HTTPError as error:
        assert error.code == 503
        body = json.loads(error.read())
    assert body["error"]["code"] == "metrics_unavailable"
    return body["error"]["message"]


def test_a_deleted_metrics_directory_degrades_metrics_not_serving(served_copy):
    """A /tmp cleaner removing the directory: predictions go on, /metrics says why."""
    process, port, _, log = served_copy
    shutil.rmtree(metrics_dir_of(process.pid))
    assert predict_statuses(port, 10) == [200] * 10
    message = metrics_refusal(port)
    assert "No such file or directory" in message or "is gone" in message
    kill_one_worker_and_wait_for_its_replacement(process)  # boots without metrics
    assert process.poll() is None
    assert predict_statuses(port, 10) == [200] * 10
    problems = [
        line for line in log.read_text().splitlines() if "metrics disabled" in line
    ]
    assert problems and all(json.loads(line)["level"] == "error" for line in problems)


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of `size` at `mount_point`, unmounted afterwards."""
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"this test mounts a tmpfs: {mounted.stderr}"
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> None:
    """Write a file in `directory` until its filesystem has no room left."""
    filler = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(filler, b"\1" * 4096):
            pass
    except OSError:  # ENOSPC: the filesystem is full
        pass
    finally:
        os.close(filler)


@pytest.fixture()
def full_tmpfs(tmp_path) -> Iterator[Path]:
    """A 512 KiB tmpfs, filled: the first page a worker maps and touches
    there would kill it with SIGBUS."""
    with mounted_tmpfs(tmp_path / "metrics", "512k") as mount_point:
        fill(mount_point)
        yield mount_point


def test_a_full_metrics_filesystem_degrades_metrics_not_serving(
    onnx_path, tmp_path, full_tmpfs
):
    """On a full filesystem a mapped write would kill workers with SIGBUS."""
    log = tmp_path / "server.log"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(full_tmpfs)}
    with serving_process(onnx_path, log, workers=2, extra_env=env) as (process, port):
        assert predict_statuses(port, 10) == [200] * 10
        assert "KiB free" in metrics_refusal(port)
        kill_one_worker_and_wait_for_its_replacement(process)
        assert predict_statuses(port, 10) == [200] * 10
        assert process.poll() is None
    # The one worker this test killed is the only one that died.
    assert log.read_text().count("Unexpected exit from worker") == 1


# Requests that each add a new (route, method, status) series, and so new
# samples in the worker's metric files.
NEW_SERIES_PATHS = ("/predict", "/predict/batch", "/model", "/healthz", "/readyz")
NEW_SERIES_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def test_a_metrics_filesystem_filling_up_while_serving_kills_no_worker(
    onnx_path, tmp_path
):
    """The filesystem fills between two room checks: the new series must land
    on pages allocated at start-up, not on fresh ones (SIGBUS)."""
    log = tmp_path / "server.log"
    with (
        mounted_tmpfs(tmp_path / "metrics", "16m") as metrics_dir,
        serving_process(
            onnx_path,
            log,
            workers=1,
            extra_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        ) as (process, port),
    ):
        (worker,) = children_of(process.pid)
        # A room check runs at most once a second, on a metric write: wait
        # one out, have the next request run it, then fill the filesystem and
        # open the new series within the second that follows.
        time.sleep(1.1)
        assert predict_statuses(port, 1) == [200]
        fill(metrics_dir)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        statuses = []
        for path in (*NEW_SERIES_PATHS, *(f"/nowhere/{n}" for n in range(3))):
            for method in NEW_SERIES_METHODS:
                connection.request(method, path, b"{}", {"Content-Type": "text/x"})
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
        connection.close()
        assert len(statuses) == 48 and max(statuses) < 500
        # The new series were written (on the full filesystem), not skipped.
        written = request_series(metrics_dir / f"counter_{worker}.db")
        assert {
            ("/predict/batch", "POST", "415"),
            ("unmatched", "PUT", "405"),
        } <= written
        assert predict_statuses(port, 5) == [200] * 5
        assert process.poll() is None
    assert "Unexpected exit from worker" not in log.read_text()


def request_series(counter_file: Path) -> set[tuple[str, str, str]]:
    """The (route, method, status) series in one worker's counter file."""
    series = set()
    for key, _, _, _ in MmapedDict.read_all_values_from_file(str(counter_file)):
        _, sample, labels, _ = json.loads(key)
        if sample == "digits_http_requests_total":
            series.add((labels["endpoint"], labels["method"], labels["status"]))
    return series
