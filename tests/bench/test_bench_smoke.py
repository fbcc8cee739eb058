"""The benchmarks run end to end in their quick mode and produce every row (timings never asserted).

`make bench` reproduces BENCHMARKS.md; these smoke runs keep it from rotting: real PostgreSQL, Redis,
celery worker processes and Node pg-boss, small sizes, sections written to a scratch file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.targets import targets

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.node


def _run(args: list[str], admin_url: str, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update(DATABASE_PRIMARY_URL=admin_url, BENCH_QUICK="1")
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def _row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row starting with ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("×%"))


def test_compare_quick_writes_every_setup_row(admin_url: str, node_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    _run(["bench.compare", "--out", str(out)], admin_url, timeout=280)
    text = out.read_text()
    assert text.count("## Setups side by side") == 1
    assert re.search(r"^- Load average \(1 min\) over each round: [\d.]+ → [\d.]+", text, re.M)
    for target in targets(admin_url):
        cells = _row(text, target.label)
        assert len(cells) == 15
        assert _number(cells[9]) > 0  # group() send rate: every setup sends one
        if target.sends_only:
            assert cells[1] == "–"
            continue
        # measured, not placeholders: drain, enqueue, pickups, RSS, connections
        for index in (1, 3, 5, 7, 11, 13):
            assert _number(cells[index]) > 0, (target.label, cells)
    headline = text.split("### zeke's setup against Celery+Redis")[1].split("### Every setup")[0]
    metrics = ("drain tasks/s", "enqueue `delay()`/s", "pickup p50 ms", "pickup p99 ms", "worker RSS MiB")
    for metric in metrics:
        assert _number(_row(headline, metric)[3]) > 0
    verdicts = re.findall(r"^- (.+): .+ — \*\*(met|missed)\*\*$", headline, re.M)
    assert len(verdicts) == 8, headline


@pytest.mark.slow
def test_make_bench_quick_runs_every_part(admin_url: str, node_dir: Path, tmp_path: Path) -> None:
    """`python -m bench --quick`, what `BENCH_QUICK=1 make bench` runs: all four parts."""
    out = tmp_path / "BENCHMARKS.md"
    stdout = _run(["bench", "--quick", "--out", str(out)], admin_url, timeout=290)
    text = out.read_text()
    assert "## Setups side by side" in text
    scaleout = text.split("## Scale-out: drain against worker processes")[1]
    for processes in ("1", "2"):
        cells = _row(scaleout, processes)
        assert len(cells) == 11 and all(_number(c.split()[0]) >= 0 for c in cells[1:])
        assert _number(cells[1]) > 0
    assert "### Bulk send throughput" in stdout and "| `client.send_jobs` | 1000 |" in stdout
    assert "| empty |" in stdout
    assert _row(stdout, "12.38.1 (46)")[1] != "–"
