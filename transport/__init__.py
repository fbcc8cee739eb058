"""pg-boss in Python: the v12 schema, the job state machine, and their Celery faces.

Importing this package registers the ``pgboss://`` Kombu transport alias, so any Celery app whose
``broker_url`` starts with ``pgboss://`` works once ``transport`` is imported (``zeke`` does that).
"""

from __future__ import annotations

from celery.app.backends import BACKEND_ALIASES
from kombu.transport import TRANSPORT_ALIASES

TRANSPORT_ALIASES.setdefault("pgboss", "transport.broker:Transport")
# The entry point in setup.cfg does the same for installed copies; this covers a plain checkout.
BACKEND_ALIASES.setdefault("pgboss", "transport.backend:PgBossBackend")

from transport import result_relay, worker_events, worker_hooks  # noqa: E402,F401  (worker signal handlers)
