"""Where the benchmarks run and how big they are: full (``make bench``) or quick (``BENCH_QUICK=1``)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent

#: The Redis server: Celery+Redis's broker (database 13) and result backend (12), and the side
#: channel every benchmark task reports through (14), so all brokers pay the same for it.
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
REDIS_BROKER_DB, REDIS_RESULT_DB, SIDE_DB = 13, 12, 14


def server_url() -> str:
    """The PostgreSQL server the benchmarks make their scratch databases on."""
    return os.environ.get("DATABASE_PRIMARY_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


def database_url(server: str, database: str) -> str:
    """``server``'s URL naming ``database`` instead (its query, e.g. a socket directory, kept)."""
    return urlsplit(server)._replace(path="/" + database).geturl()


def zeke_celeryconfig() -> ModuleType:
    """zeke's own Celery settings (``celeryconfig.py`` at the checkout's root), for every setup alike."""
    spec = importlib.util.spec_from_file_location("celeryconfig", ROOT / "celeryconfig.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def port_of(url: str, default: int) -> int:
    return urlsplit(url).port or default


def quick() -> bool:
    """Smoke-run sizes: ``BENCH_QUICK=1`` in the environment (or ``--quick``, which sets it)."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


@dataclass(frozen=True)
class Sizes:
    rounds: int
    #: ``delay()`` calls per target per round (the enqueue rate; they join the drained backlog).
    jobs: int
    #: Tasks in the ``group()`` each target sends per round (they join the backlog too).
    group: int
    #: Pickup samples per target per round (after a few warm-up ones); kombu-sqla (1 s polling) fewer.
    pings: int
    slow_pings: int
    #: Worker processes (``-c 2`` each) of the scale-out curve, and its backlog.
    processes: tuple[int, ...]
    scaleout_jobs: int
    scaleout_rounds: int


FULL = Sizes(
    rounds=3, jobs=5000, group=5000, pings=300, slow_pings=20,
    processes=(1, 2, 4, 8), scaleout_jobs=8000, scaleout_rounds=2,
)  # fmt: skip
QUICK = Sizes(
    rounds=1, jobs=60, group=60, pings=5, slow_pings=1,
    processes=(1, 2), scaleout_jobs=200, scaleout_rounds=1,
)  # fmt: skip


def sizes() -> Sizes:
    return QUICK if quick() else FULL
