"""SERVE_MALLOC_ARENAS: the server's threads share a few malloc arenas.

glibc reserves each arena as a 64 MiB-aligned heap; counting those in
/proc/self/maps after eight threads allocated at once shows how many exist.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

COUNT_ARENAS = """
import sys, threading
from serving.server import limit_malloc_arenas

capped = limit_malloc_arenas(int(sys.argv[1]))
start = threading.Barrier(8)

def allocate():
    start.wait()
    for _ in range(50):
        blocks = [bytearray(1000) for _ in range(200)]
        del blocks

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
heaps = 0
for line in open("/proc/self/maps"):
    address, permissions = line.split()[:2]
    low = int(address.split("-")[0], 16)
    anonymous = len(line.split()) == 5
    if permissions.startswith("rw") and anonymous and low % (64 << 20) == 0:
        heaps += 1
print(capped, heaps)
"""


def thread_arenas(arenas: int) -> tuple[bool, int]:
    completed = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, str(arenas)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    capped, heaps = completed.stdout.split()
    return capped == "True", int(heaps)


def test_the_arena_cap_keeps_threads_from_making_their_own():
    assert thread_arenas(0) == (False, pytest.approx(8, abs=1))  # glibc default
    capped, heaps = thread_arenas(2)
    assert capped
    assert heaps <= 1  # the main arena is not a heap; one more is shared
