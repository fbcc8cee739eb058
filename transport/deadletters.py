"""pg-boss's dead letter redrive from Python (mixed into JobManager beside transport.verbs):
``redrive`` and ``preview_redrive``. SQL in ``transport/sql/verbs.sql``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from transport import names
from transport.exceptions import InvalidOption
from transport.mixins import ManagerSelf
from transport.verbs import LIST_LIMIT_DEFAULT, _json_arg, _limit


class RedrivePreview(TypedDict):
    """What preview_redrive returns: how many jobs a redrive would move, where, and how many it can't."""

    total: int
    destinations: list[dict[str, Any]]
    unroutable: int


class DeadLetterVerbs(ManagerSelf):
    """pg-boss ``redrive`` and ``previewRedrive``."""

    # -- dead letter queues ---------------------------------------------------------------------

    def redrive(
        self,
        name: str,
        *,
        limit: int = 1000,
        destination: str | None = None,
        source_name: str | None = None,
        data: Mapping[str, Any] | None = None,
        created_before: dt.datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """pg-boss ``redrive(name, options)``: move up to ``limit`` waiting jobs out of dead letter
        queue ``name`` back to the queue each came from (or ``destination``), oldest first, as new
        jobs. Jobs the destination's policy refuses are failed in place with the reason as output.
        Returns how many moved. Needs schema 43 (pg-boss 12.35)."""
        self._require("redrive", "source_output", "pg-boss 12.35")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidOption(f"limit must be an integer >= 1, not {limit!r}")
        params = self._redrive_params(name, limit, destination, source_name, data, created_before, ids)
        return int(self._run("redrive_jobs", params)[0]["moved"])

    def preview_redrive(
        self,
        name: str,
        *,
        limit: int = LIST_LIMIT_DEFAULT,
        destination: str | None = None,
        source_name: str | None = None,
        data: Mapping[str, Any] | None = None,
        created_before: dt.datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> RedrivePreview:
        """pg-boss ``previewRedrive``: what redrive with the same filters would do, without doing it
        (reads at most ``limit`` jobs it would move and ``limit`` it would leave)."""
        self._require("preview_redrive", "source", "pg-boss 12.23")
        _limit("preview_redrive", limit)
        params = self._redrive_params(name, limit, destination, source_name, data, created_before, ids)
        rows = self._run("preview_redrive", params)
        counts: dict[str, int] = {}
        for row in rows:
            if row["destination"] is not None:
                counts[row["destination"]] = counts.get(row["destination"], 0) + 1
        destinations = [
            {"name": k, "count": v} for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        unroutable = sum(1 for row in rows if row["destination"] is None)
        return RedrivePreview(total=len(rows), destinations=destinations, unroutable=unroutable)

    def _redrive_params(
        self,
        name: str,
        limit: int,
        destination: str | None,
        source_name: str | None,
        data: Mapping[str, Any] | None,
        created_before: dt.datetime | None,
        ids: Sequence[str] | None,
    ) -> dict[str, Any]:
        names.validate_queue_name(name)
        for queue in (destination, source_name):
            if queue is not None:
                names.validate_queue_name(queue)
        if data is not None and not isinstance(data, Mapping):
            raise InvalidOption("data must be a mapping (matched by containment)")
        if created_before is not None and not isinstance(created_before, dt.datetime):
            raise InvalidOption("created_before must be a datetime")
        if ids is not None and (isinstance(ids, str) or not ids):
            raise InvalidOption("ids must be a non-empty list of job ids")
        return {
            "name": name,
            "limit": limit,
            "destination": destination,
            "source_name": source_name,
            "data": None if data is None else _json_arg("redrive", "data", data),
            # zone-less means UTC, as everywhere else in the manager
            "created_before": None
            if created_before is None
            else created_before
            if created_before.tzinfo
            else created_before.replace(tzinfo=dt.UTC),
            "ids": None if ids is None else [names.parse_job_id(i) for i in ids],
        }
