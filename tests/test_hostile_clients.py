"""The live API against generated and sustained traffic, on a real server.

schemathesis reads the served OpenAPI document and sends, for every operation,
valid requests and requests that break the document on purpose; every answer
must match the document (status, content type, body schema) and no request
may get a 5xx. The mini-soak then sends steady traffic for 60 s and requires
no unexpected answer and flat memory and file descriptors.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.conftest import serving_process
from tests.test_server import children_of

EXAMPLES_PER_OPERATION_AND_MODE = 25
SOAK_SECONDS = 60
SOAK_CLIENTS = 4
# A worker may still be growing caches in the first seconds: compare the
# second quarter of the soak with the last.
RSS_GROWTH_LIMIT_KIB = 4 * 1024


@pytest.fixture(scope="module")
def server(onnx_path, tmp_path_factory) -> Iterator[tuple]:
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with serving_process(onnx_path, log, workers=2) as (process, port):
        yield process, port


def operation_failures(operation, mode: GenerationMode) -> list[str]:
    """Run `operation`'s generated cases in `mode`; describe what failed."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        database=None,  # no example database written into the repository
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        case.call_and_validate()

    try:
        run()
    except Unsatisfiable:
        # Nothing in this operation can be made invalid (a GET without
        # parameters, a path parameter that takes any string): no cases.
        pass
    except Exception as error:  # schemathesis reports failed checks as exceptions
        failures.append(f"{operation.label} ({mode.value}): {str(error)[:1500]}")
    return failures


def test_every_operation_answers_by_its_document(server):
    _, port = server
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # the seed's routes, the protocols, the page
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for failure in operation_failures(operation, mode)
    ]
    assert failures == [], "\n\n".join(failures)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def footprint(process) -> tuple[int, int]:
    """(RSS in KiB, open file descriptors) of the launcher and its workers."""
    pids = [process.pid, *children_of(process.pid)]
    return sum(rss_kib(pid) for pid in pids), sum(open_fds(pid) for pid in pids)


def soak_client(port: int, stop: threading.Event, outcomes: list) -> None:
    """Alternate valid predictions and bad requests; record unexpected answers."""
    valid = json.dumps({"features": [3] * 64}).encode()
    invalid = json.dumps({"features": [99] * 64}).encode()
    while not stop.is_set():
        for body, expected in ((valid, 200), (invalid, 422)):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    status = response.status
                    response.read()
            except urllib.error.HTTPError as error:
                status = error.code
                error.read()
            except OSError as error:
                status = f"{type(error).__name__}: {error}"
            outcomes.append(status == expected or status)


def test_a_minute_of_traffic_leaves_memory_and_descriptors_flat(server):
    process, port = server
    stop = threading.Event()
    outcomes: list = []
    clients = [
        threading.Thread(target=soak_client, args=(port, stop, outcomes))
        for _ in range(SOAK_CLIENTS)
    ]
    for client in clients:
        client.start()
    samples = []
    started = time.monotonic()
    while time.monotonic() - started < SOAK_SECONDS:
        time.sleep(SOAK_SECONDS / 8)
        samples.append(footprint(process))
    stop.set()
    for client in clients:
        client.join(timeout=10)
    unexpected = [outcome for outcome in outcomes if outcome is not True]
    assert len(outcomes) > 1000 and unexpected == []
    (early_rss, early_fds), (late_rss, late_fds) = samples[2], samples[-1]
    assert late_rss - early_rss < RSS_GROWTH_LIMIT_KIB, samples
    assert late_fds <= early_fds + 4, samples
