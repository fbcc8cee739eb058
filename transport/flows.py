"""pg-boss flows and groups from Python (mixed into JobManager beside transport.verbs): jobs that
wait for each other (``flow``) and jobs limited per group across workers (``fetch_grouped``).
SQL in ``transport/sql/verbs.sql``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from transport import names, outputs
from transport.exceptions import InvalidOption
from transport.jobrows import PLAIN_FETCH_POLICIES, FetchedJob, _fetched_jobs
from transport.mixins import ManagerSelf


class FlowVerbs(ManagerSelf):
    """pg-boss ``flow`` and ``fetch`` with ``groupConcurrency``."""

    # -- groups ---------------------------------------------------------------------------------

    def fetch_grouped(
        self,
        name: str,
        batch_size: int = 1,
        *,
        group_concurrency: int | Mapping[str, Any],
    ) -> list[FetchedJob]:
        """pg-boss ``fetch(name, {batchSize, groupConcurrency})``: claim jobs of one queue with at most
        ``group_concurrency`` active jobs per ``group.id`` across every worker. A mapping
        ``{"default": n, "tiers": {"tier": m}}`` gives jobs sent with ``group={"id", "tier"}`` their
        tier's limit. Jobs sent without a group are not limited. Queues of the standard, short and
        exclusive policies only (the per-key policies have fetch rules of their own)."""
        self._require("fetch with group_concurrency", "group", "pg-boss 12.6")
        default, tiers = _group_limits(group_concurrency)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidOption(f"batch_size must be a whole number >= 1, not {batch_size!r}")
        queue = self._existing_queue("fetch_grouped", name)
        if queue["policy"] not in PLAIN_FETCH_POLICIES:
            raise InvalidOption(
                "group_concurrency is served here for standard, short and exclusive queues, "
                f"not {queue['policy']}"
            )
        params = {
            "name": name,
            "batch_size": batch_size,
            "default_limit": default,
            "tiers": outputs.to_json(tiers),
        }
        return _fetched_jobs(self.sql.rows("fetch_grouped_jobs", self._params(params), tuples=True))

    def fetch_group_limited(
        self,
        queue: str,
        batch_size: int,
        default_limit: int,
        tiers: Mapping[str, int],
        *,
        cap: int | None = None,
        synchronous_commit: bool = True,
    ) -> list[FetchedJob]:
        """One look of the consumer's group-limited fetch (:class:`transport.groups.GroupFetcher`):
        claim up to ``batch_size`` runnable jobs of groups below their limit (and within the queue's
        ``cap``), serialised with the queue's other capped fetchers."""
        params = {
            "name": queue,
            "batch_size": batch_size,
            "default_limit": default_limit,
            "tiers": outputs.to_json(tiers),
            "cap": cap,
        }
        with self.sql.transaction(tuples=True, async_commit=not synchronous_commit) as tx:
            tx.run("lock_concurrency_slots", self.concurrency_locks([queue]))
            return _fetched_jobs(tx.rows("fetch_group_limited_jobs", self._params(params)))

    # -- flows ----------------------------------------------------------------------------------

    def flow(self, jobs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """pg-boss ``flow(jobs)``: send jobs that wait for each other, atomically.

        Each job is ``{"ref", "name", "data"?, "options"?, "depends_on"?: [refs]}``; a job runs once
        every job it depends on has completed (pg-boss's flow resolver, in Node's supervisor,
        releases it). Returns ref -> job id. Needs schema 31 (pg-boss 12.19).
        """
        self._require("flow", "blocked", "pg-boss 12.19")
        refs = _check_flow(jobs)
        ids = {
            job["ref"]: names.parse_job_id((job.get("options") or {}).get("id") or uuid.uuid4())
            for job in jobs
        }
        parents = {ref for job in jobs for ref in job.get("depends_on") or ()}
        edges: list[dict[str, str]] = []
        marks: dict[str, list[dict[str, Any]]] = {}
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for job in jobs:
            ref = job["ref"]
            depends_on = list(dict.fromkeys(job.get("depends_on") or ()))
            for parent in depends_on:
                edges.append(
                    {
                        "child_name": job["name"],
                        "child_id": ids[ref],
                        "parent_name": refs[parent],
                        "parent_id": ids[parent],
                    }
                )
            options = {**(job.get("options") or {}), "id": ids[ref]}
            by_queue.setdefault(job["name"], []).append({"data": job.get("data"), **options})
            marks.setdefault(job["name"], []).append(
                {
                    "id": ids[ref],
                    "blocked": bool(depends_on),
                    "blocking": ref in parents,
                    "pending": len(depends_on),
                }
            )
        with self.sql.connection() as conn:
            for queue, queue_jobs in by_queue.items():
                inserted = self.send_many(queue, queue_jobs, conn=conn)
                if len(inserted) != len(queue_jobs):
                    conn.rollback()
                    raise InvalidOption(
                        f"flow: {len(queue_jobs) - len(inserted)} job(s) of queue {queue!r} were not "
                        "inserted (an id already used, or a policy/singleton rule dropped them); "
                        "nothing was sent"
                    )
                self._run(
                    "flow_mark_jobs", {"name": queue, "marks": outputs.to_json(marks[queue])}, conn=conn
                )
            self._run("flow_insert_dependencies", {"edges": outputs.to_json(edges)}, conn=conn)
            conn.commit()
        return ids


def _group_limits(group_concurrency: Any) -> tuple[int, dict[str, int]]:
    """(default limit, tier -> limit) of pg-boss's groupConcurrency option (a number or a mapping)."""

    def check(value: Any, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidOption(f"{what} must be a whole number >= 1, not {value!r}")
        return value

    if not isinstance(group_concurrency, Mapping):
        return check(group_concurrency, "group_concurrency"), {}
    unknown = set(group_concurrency) - {"default", "tiers"}
    if unknown:
        raise InvalidOption(f"unknown group_concurrency key(s): {', '.join(sorted(unknown))}")
    default = check(group_concurrency.get("default"), "group_concurrency default")
    tiers = group_concurrency.get("tiers") or {}
    if not isinstance(tiers, Mapping):
        raise InvalidOption("group_concurrency tiers must be a mapping of tier -> limit")
    return default, {
        str(tier): check(limit, f"group_concurrency tier {tier!r}") for tier, limit in tiers.items()
    }


def _check_flow(jobs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """pg-boss's flow validation: ref -> queue name, or InvalidOption naming what is wrong."""
    if not isinstance(jobs, Sequence) or len(jobs) < 2:
        raise InvalidOption("flow requires at least 2 jobs")
    refs: dict[str, str] = {}
    for job in jobs:
        unknown = set(job) - {"ref", "name", "data", "options", "depends_on"}
        if unknown:
            raise InvalidOption(f"unknown flow job key(s): {', '.join(sorted(unknown))}")
        ref = job.get("ref")
        if not isinstance(ref, str) or not ref:
            raise InvalidOption("each flow job must have a non-empty ref")
        if ref in refs:
            raise InvalidOption(f'duplicate ref: "{ref}"')
        refs[ref] = names.validate_queue_name(job.get("name"))
    if not any(job.get("depends_on") for job in jobs):
        raise InvalidOption("flow requires at least one job with depends_on")
    for job in jobs:
        depends_on = job.get("depends_on") or []
        if not isinstance(depends_on, list | tuple):
            raise InvalidOption(f'depends_on for ref "{job["ref"]}" must be a list')
        for dep in depends_on:
            if dep not in refs:
                raise InvalidOption(f'ref "{job["ref"]}" depends on unknown ref "{dep}"')
            if dep == job["ref"]:
                raise InvalidOption(f'ref "{dep}" cannot depend on itself')
    _check_acyclic({job["ref"]: list(job.get("depends_on") or ()) for job in jobs})
    return refs


def _check_acyclic(graph: Mapping[str, Sequence[str]]) -> None:
    done: set[str] = set()
    path: set[str] = set()

    def visit(ref: str) -> None:
        if ref in done:
            return
        if ref in path:
            raise InvalidOption(f'flow has a dependency cycle through ref "{ref}"')
        path.add(ref)
        for dep in graph[ref]:
            visit(dep)
        path.discard(ref)
        done.add(ref)

    for ref in graph:
        visit(ref)
