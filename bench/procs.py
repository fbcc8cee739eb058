"""What a process tree holds and spends, read from ``/proc`` (Linux): RSS, TCP connections, CPU time."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant still alive."""
    found, todo = [], [pid]
    while todo:
        each = todo.pop()
        found.append(each)
        for task in Path(f"/proc/{each}/task").glob("*/children"):
            try:
                todo += [int(p) for p in task.read_text().split()]
            except OSError:
                continue
    return found


def rss_mib(pids: Iterable[int]) -> float:
    """Resident memory of these processes together, in MiB."""
    kib = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kib += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return kib / 1024


def socket_inodes(pids: Iterable[int]) -> set[str]:
    """The inodes of the sockets these processes hold open."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def unix_connections(pids: Iterable[int], socket_name: str) -> int:
    """Unix-socket connections these processes hold to a server listening on a socket file named
    ``socket_name`` (e.g. ``.s.PGSQL.5432``), read from ``ss``: the server's end names the file and
    its peer, the client's end."""
    inodes = socket_inodes(pids)
    try:
        listing = subprocess.run(["ss", "-xn"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0
    count = 0
    for line in listing.splitlines()[1:]:
        fields = line.split()
        # Netid State Recv-Q Send-Q Local-path Local-inode Peer-path Peer-inode
        if len(fields) >= 8 and fields[1] == "ESTAB" and fields[4].endswith("/" + socket_name):
            count += fields[7] in inodes
    return count


def tcp_peers(pids: Iterable[int]) -> list[tuple[int, int]]:
    """(local port, remote port) of each established IPv4/IPv6 TCP connection these processes hold."""
    inodes = socket_inodes(pids)
    peers = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                peers.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)))
    return peers


#: The parties of a drain, in table order; "other" is whatever else kept the host busy meanwhile.
PARTIES = ("workers", "postgres (bench db)", "postgres (rest)", "redis", "other")


@dataclass
class CpuSample:
    """CPU seconds so far of every process (pid -> (command name, seconds)), and the host's busy total."""

    processes: dict[int, tuple[str, float]]
    host_busy: float


def cpu_sample() -> CpuSample:
    processes = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = raw[raw.rindex(")") + 2 :].split()
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        processes[int(entry)] = (comm, (int(fields[11]) + int(fields[12])) / TICK)
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return CpuSample(processes, (sum(values) - values[3] - values[4]) / TICK)


@dataclass
class CpuSplit:
    """vCPUs busy, by party, between two samples."""

    vcpus: dict[str, float]
    host_vcpus: float

    @staticmethod
    def between(a: CpuSample, b: CpuSample, seconds: float, workers: set[int], ours: set[int]) -> CpuSplit:
        """``workers``: the worker processes' pids; ``ours``: the PostgreSQL backends of the bench's
        database (the server's other processes, WAL writer included, are "postgres (rest)")."""
        used = dict.fromkeys(PARTIES, 0.0)
        for pid, (comm, cpu) in b.processes.items():
            earlier = a.processes.get(pid)
            delta = cpu - (earlier[1] if earlier and earlier[0] == comm else 0.0)
            if pid in workers:
                used["workers"] += delta
            elif comm.startswith("postgres"):
                used["postgres (bench db)" if pid in ours else "postgres (rest)"] += delta
            elif comm.startswith("redis-server"):
                used["redis"] += delta
        host = (b.host_busy - a.host_busy) / seconds
        vcpus = {p: used[p] / seconds for p in PARTIES[:-1]}
        vcpus["other"] = max(0.0, host - sum(vcpus.values()))
        return CpuSplit(vcpus, host)
