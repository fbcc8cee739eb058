"""The Node pg-boss 12.38.1 row: one ``node bench/pgboss_loop.mjs`` process on a scratch database."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.config import ROOT, database_url
from bench.runner import Held, Scratch, connections
from bench.targets import Target
from transport.db import dsn_from_url

SCRIPT = ROOT / "bench" / "pgboss_loop.mjs"


@dataclass
class NodeSession:
    """Mirrors :class:`bench.runner.Session` where the comparison needs it."""

    target: Target
    scratch: Scratch
    proc: subprocess.Popen
    backlog: int = 0
    enqueue_seconds: float = 0.0
    enqueued: int = 0

    @classmethod
    def open(cls, target: Target, admin_url: str, log_dir: Path) -> NodeSession:
        scratch = Scratch(admin_url)
        db = scratch.__enter__()
        url = database_url(dsn_from_url(admin_url), db)
        log = open(log_dir / f"node-{db}.log", "w")  # noqa: SIM115  (owned by the process)
        proc = subprocess.Popen(
            ["node", str(SCRIPT), url, "bench"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        return cls(target, scratch, proc)

    def _call(self, command: str, n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{command} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node {command}: the process ended (exit {self.proc.wait(10)})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"node {command}: {answer['error']}")
        return answer

    def delay(self, count: int) -> float:
        self.backlog += count
        return float(self._call("send", count)["seconds"])

    def group(self, count: int) -> float:
        self.backlog += count
        return float(self._call("insert", count)["seconds"])

    def drain(self) -> float:
        return self.backlog / float(self._call("drain", self.backlog)["seconds"])

    def pickup(self, samples: int, warmup: int = 5) -> list[float]:
        return [float(v) for v in self._call("ping", samples + warmup)["latencies"][warmup:]]

    def held(self) -> Held:
        pids = procs.tree(self.proc.pid)
        return Held(procs.rss_mib(pids), connections(pids), len(pids))

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        finally:
            self.scratch.__exit__(None, None, None)
