"""Every process that creates zeke's schema beside pg-boss's (``<schema>_zeke``) can do so at the
same moment as the others: a worker (the transport's tables), the result backend and beat.

CREATE SCHEMA IF NOT EXISTS is not safe against itself: two at once fail one with a unique
violation, which killed a worker at start-up while the API created the result store."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from celery import Celery

from transport import bindings
from transport.backend import PgBossBackend
from transport.db import Database
from transport.manager import JobManager


def _race(starters: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    gate = threading.Barrier(len(starters))

    def run(start: Callable[[], None]) -> None:
        gate.wait()
        try:
            start()
        except BaseException as exc:  # noqa: BLE001  (collected and asserted on)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(start,)) for start in starters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_the_transport_and_the_result_backend_create_the_aux_schema_at_once(
    database: Database, db_url: str
) -> None:
    for _ in range(10):
        schema = "aux_" + uuid.uuid4().hex[:10]
        managers = [JobManager(Database(db_url), schema) for _ in range(3)]
        apps = [Celery("aux-race", set_as_current=False) for _ in range(3)]
        backends = []
        for app in apps:
            app.conf.result_backend_transport_options = {"schema": schema}
            backends.append(PgBossBackend(app=app, url=db_url))
        try:
            errors = _race(
                [lambda m=m: bindings.install(m) for m in managers]
                + [lambda b=b: b._ensure_store() for b in backends]
            )
            assert errors == []
            with database.cursor() as cur:
                cur.execute(
                    "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = %s",
                    (schema + "_zeke",),
                )
                assert cur.fetchone()["n"] >= 3  # broadcast, binding, result
        finally:
            for backend in backends:
                backend.close()
            for manager in managers:
                manager.db.close()
            with database.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}_zeke" CASCADE')
