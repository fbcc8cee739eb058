"""ingest-pull: every active RSS/Atom source that is due becomes one ingest-source job.

Due means ``next_check_at`` is NULL or past; ``force`` takes every active source. Claimed sources
are leased one interval ahead so overlapping pulls do not enqueue a source twice.
"""

from __future__ import annotations

from typing import Literal

from tasks.ingestion.ingest_source import IngestSourcePayload
from tasks.lib.context import Context, Payload, send
from tasks.lib.sources import claim_due_sources

TASK_ID = "ingest-pull"


class IngestPullPayload(Payload):
    task_id = TASK_ID

    reason: Literal["schedule", "manual"] = "schedule"
    #: Every active source, due or not.
    force: bool = False


PAYLOAD = IngestPullPayload


def run(payload: IngestPullPayload, ctx: Context) -> dict:
    with ctx.session_factory.begin() as session:
        source_ids = [
            s.id
            for s in claim_due_sources(session, "rss", force=payload.force, include_demo=ctx.settings.demo)
        ]
    if not source_ids:
        ctx.logger.info("ingest_pull_no_sources", reason=payload.reason)
        return {"due": 0, "enqueued": []}
    reason = "manual" if payload.reason == "manual" else "schedule"
    for source_id in source_ids:
        send(ctx, IngestSourcePayload(source_id=source_id, reason=reason, force=payload.force))
    ctx.logger.info("ingest_pull_enqueued", due=len(source_ids), reason=payload.reason)
    return {"due": len(source_ids), "enqueued": [str(i) for i in source_ids]}
