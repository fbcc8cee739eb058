"""pg-boss in Python: the v12 schema, the job state machine, and their Celery faces.

Importing this package registers the ``pgboss://`` Kombu transport alias, so any Celery app whose
``broker_url`` starts with ``pgboss://`` works once ``transport`` is imported (``zeke`` does that).
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

TRANSPORT_ALIASES.setdefault("pgboss", "transport.broker:Transport")
