"""What the Linux kernel says about the machine and our processes (/proc only)."""

from __future__ import annotations

import os
import platform
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# /proc/<pid>/stat counts CPU time in clock ticks.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Fields of the "cpu" line of /proc/stat that count idle time (idle, iowait).
IDLE_FIELDS = (3, 4)
# Helpers that multiprocessing starts beside spawned workers (granian, uvicorn
# --workers): children of the main process, but they serve no request.
HELPER_MARKERS = ("resource_tracker", "semaphore_tracker", "forkserver")
# The state column of /proc/net/tcp for a listening socket.
TCP_LISTEN = "0A"


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's guess."""
    for line in (PROC / "cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_summary() -> str:
    """Describe the machine in one line: CPU, cores, memory, kernel."""
    meminfo = (PROC / "meminfo").read_text().split()
    memory_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}"
    )


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages as written by the kernel."""
    return " ".join((PROC / "loadavg").read_text().split()[:3])


def children(pid: int) -> list[int]:
    """Return the pids whose parent is `pid` (scans /proc; no psutil needed)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited while we looked
            continue
        # The command name (field 2) may contain spaces: split after its ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


def command_line(pid: int) -> str:
    """Return the command line of `pid` with spaces between arguments."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_helper(command: str) -> bool:
    """Tell whether a child's command line is a multiprocessing helper."""
    return any(marker in command for marker in HELPER_MARKERS)


def worker_pids(pid: int) -> list[int]:
    """Return the request-serving processes of a server whose main pid is `pid`.

    granian, gunicorn and `uvicorn --workers N` serve from child processes
    (forked by gunicorn, spawned by the others: `... spawn_main(...)`), minus
    the resource tracker that spawning starts; a single-process uvicorn serves
    from `pid` itself.
    """
    workers = [child for child in children(pid) if not is_helper(command_line(child))]
    return workers or [pid]


def process_tree(pid: int) -> list[int]:
    """Return `pid` and all its descendants."""
    tree = [pid]
    for child in children(pid):
        tree.extend(process_tree(child))
    return tree


def listening_inodes(proc_net_tcp: str, port: int) -> set[int]:
    """Return the socket inodes listening on `port` in a /proc/net/tcp table."""
    inodes = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == TCP_LISTEN:
            inodes.add(int(fields[9]))
    return inodes


def listener_pids(port: int) -> set[int]:
    """Return the pids holding a socket that listens on TCP `port`.

    granian binds with SO_REUSEPORT, so a second server can listen on a port
    that is already in use, and the kernel then splits connections between them.
    """
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            inodes |= listening_inodes((PROC / "net" / table).read_text(), port)
        except OSError:  # no IPv6 on this kernel
            continue
    links = {f"socket:[{inode}]" for inode in inodes}
    pids = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
            if any(os.readlink(fd) in links for fd in fds):
                pids.add(int(entry.name))
        except OSError:  # exited, or not ours to read
            continue
    return pids


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """Parse /proc/<pid>/smaps_rollup into {field: kB}."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            values[parts[0].rstrip(":")] = int(parts[1])
    return values


def pss_kib(pid: int) -> int:
    """Return the proportional set size of `pid` in KiB.

    PSS charges each shared page to the processes that map it in equal parts,
    so forked workers sharing their parent's pages are not counted twice (RSS
    would count them once per worker).
    """
    text = (PROC / str(pid) / "smaps_rollup").read_text()
    return parse_smaps_rollup(text)["Pss"]


def process_cpu_seconds(pids: list[int]) -> float:
    """Return the user + system CPU seconds used so far by the live `pids`."""
    total = 0
    for pid in pids:
        try:
            fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
    return total / CLOCK_TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """Return (busy, total) CPU seconds of the whole machine since boot."""
    first_line = (PROC / "stat").read_text().splitlines()[0]
    ticks = [int(value) for value in first_line.split()[1:]]
    # guest time is already included in user time: count the first 8 fields only.
    ticks = ticks[:8]
    idle = sum(ticks[index] for index in IDLE_FIELDS)
    return (sum(ticks) - idle) / CLOCK_TICKS, sum(ticks) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """Return the CPU seconds of this process's waited-for children (e.g. wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    """Return the CPU seconds this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU counters taken at one instant, to attribute a run's CPU time."""

    machine_busy: float
    machine_total: float
    server: float
    load_generator: float
    harness: float
    workers: tuple[float, ...] = ()  # each worker's own, in the order given

    @classmethod
    def take(
        cls, server_pids: list[int], worker_pids: Sequence[int] = ()
    ) -> CpuSnapshot:
        """Read the counters now for a server made of `server_pids`."""
        busy, total = machine_cpu_seconds()
        return cls(
            busy,
            total,
            process_cpu_seconds(server_pids),
            children_cpu_seconds(),
            self_cpu_seconds(),
            tuple(process_cpu_seconds([pid]) for pid in worker_pids),
        )


@dataclass(frozen=True)
class CpuShare:
    """How CPU time was spent during a run, in % of one core (as top shows it).

    On 2 cores the three add up to at most 200%.
    """

    server: float
    load_generator: float
    other: float  # everything else on the machine: other users' work is noise
    # Each worker's share, busiest first: how evenly the connections spread.
    workers: tuple[float, ...] = ()


def cpu_share(
    before: CpuSnapshot, after: CpuSnapshot, cores: int | None = None
) -> CpuShare:
    """Attribute the CPU time between two snapshots, in % of one core."""
    cores = cores or os.cpu_count() or 1
    wall = (after.machine_total - before.machine_total) / cores
    if wall <= 0:
        return CpuShare(0.0, 0.0, 0.0)
    busy = after.machine_busy - before.machine_busy
    server = after.server - before.server
    generator = after.load_generator - before.load_generator
    harness = after.harness - before.harness
    other = max(0.0, busy - server - generator - harness)
    workers = sorted(
        (
            100 * (end - start) / wall
            for start, end in zip(before.workers, after.workers, strict=True)
        ),
        reverse=True,
    )
    return CpuShare(
        100 * server / wall, 100 * generator / wall, 100 * other / wall, tuple(workers)
    )
