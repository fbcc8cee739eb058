"""Jobs a consumer cannot take fail at once and for good (retrying would meet the same data),
fenced on the attempt that fetched them, with an output that says what is wrong."""

from __future__ import annotations

import logging
from typing import Any

from transport import outputs
from transport.exceptions import MalformedJob
from transport.manager import JobManager

logger = logging.getLogger(__name__)

#: Longest error message stored for a job failed on delivery (the rest is in the worker's log).
MESSAGE_MAX = 2000


def poison(manager: JobManager, queue: str, job_id: str, attempt: int, exc: BaseException) -> None:
    """Fail a job whose data cannot be delivered (``exc`` says why)."""
    if isinstance(exc, MalformedJob):
        output = {"name": type(exc).__name__, "message": f"malformed job: {exc}", "stack": ""}
        logger.error("job %s of queue %r failed without retries: malformed: %s", job_id, queue, exc)
    else:
        output = outputs.error_output(exc)
        output["message"] = f"the consumer could not take this job: {output['message']}"
        logger.error(
            "job %s of queue %r failed without retries: the consumer could not take it",
            job_id,
            queue,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    output = {k: storable(v) for k, v in output.items() if isinstance(v, str)}
    manager.fail(queue, [job_id], output, attempts={job_id: attempt}, retry=False)


def unroutable(manager: JobManager, job: Any) -> None:
    """Fail a job sent without a Celery envelope to a queue no task is registered for."""
    output = {
        "name": "NotRegistered",
        "message": f"no Celery task is registered for pg-boss queue {job.name!r} "
        "(name a task like the queue, route one to it, or set the transport option task_for_queue)",
    }
    logger.error("job %s: %s", job.id, output["message"])
    manager.fail(job.name, [job.id], output, attempts={job.id: job.retry_count})


def storable(text: str) -> str:
    """Text PostgreSQL's jsonb can hold (no NUL, no lone surrogate), at most MESSAGE_MAX long."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX] + "…"
