"""The setups ``python -m bench.compare`` puts side by side (``{db}``: a scratch database of their own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.config import REDIS, REDIS_BROKER_DB, REDIS_RESULT_DB, database_url


@dataclass
class Target:
    """One setup: a Celery broker (``memory://`` sends only; ``node`` is Node pg-boss's own loop)."""

    label: str
    broker_url: str
    options: dict[str, Any] = field(default_factory=dict)
    result_backend: str | None = None
    #: Short name for ``--only``.
    key: str = ""
    note: str = ""
    #: Polls instead of being woken: fewer pickup samples.
    slow_pickup: bool = False
    #: Runs in the first rounds only (a slow setup that would stretch every round).
    max_rounds: int | None = None

    @property
    def results(self) -> bool:
        return self.result_backend is not None

    @property
    def sends_only(self) -> bool:
        return self.broker_url == "memory://"

    @property
    def node(self) -> bool:
        return self.broker_url.startswith("node:")


ZEKE, PGBOSS, REDIS_ON, REDIS_OFF = "zeke", "pgboss", "redis-on", "redis-off"
ZEKE_ASYNC = "zeke-async"
SQLA, NODE, MEMORY = "sqla", "node", "memory"


def targets(pg: str) -> list[Target]:
    # The server's address and query (the embedded server's socket directory is ?host=...), any database.
    server = database_url(pg, "{db}").split("://", 1)[1]
    pgboss = f"pgboss://{server}"
    return [
        Target(
            "zeke (pgboss broker + pgboss results)", pgboss, result_backend=pgboss, key=ZEKE,
            note="`celery -A zeke worker`'s setup: the result backend ends each job with its output",
        ),
        Target(
            "zeke, durable_publish off", pgboss, result_backend=pgboss, key=ZEKE_ASYNC,
            options={"durable_publish": False},
            note="the same with the opt-in non-durable publish (no WAL flush wait on send)",
        ),
        Target(
            "pgboss broker, results off", pgboss, key=PGBOSS,
            note="the ack completes the job (settle_on_ack, on by default without pg-boss results)",
        ),
        Target(
            "Celery+Redis, results on", f"{REDIS}/{REDIS_BROKER_DB}",
            result_backend=f"{REDIS}/{REDIS_RESULT_DB}", key=REDIS_ON,
            note="Redis broker and Redis result backend",
        ),
        Target("Celery+Redis, results off", f"{REDIS}/{REDIS_BROKER_DB}", key=REDIS_OFF, note="Redis broker"),
        Target(
            "kombu SQLAlchemy, results off",
            # psycopg2, named: SQLAlchemy 2.1 made psycopg 3 the default driver of postgresql://.
            f"sqla+postgresql+psycopg2://{server}", key=SQLA, slow_pickup=True, max_rounds=1,
            note="kombu's SQLAlchemy transport on the same PostgreSQL (polls every 1 s)",
        ),
        Target(
            "Node pg-boss 12.38.1", "node:{db}", key=NODE,
            note="its own loop: `send()`, `insert()` for the group, `work()` with 2 × batchSize 4",
        ),
        Target(
            "Celery memory://", "memory://", key=MEMORY, note="in-process transport: Celery's own ceiling"
        ),
    ]  # fmt: skip
