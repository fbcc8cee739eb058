"""``/api/jobs`` (trigger, status, cancel, retry, SSE stream), ``/api/tasks`` and ``/healthz``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from transport.exceptions import InvalidOption, InvalidPayload
from zeke.api import sse
from zeke.api.auth import require_principal
from zeke.jobs import JobNotFound, JobRefused, Jobs
from zeke.registry import UnknownTask
from zeke.schema_task import PayloadInvalid
from zeke.settings import Settings

JOB_NOT_FOUND = "Job not found"


class TriggerRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    task_id: str = Field(alias="taskId", min_length=1, examples=["ingest-oneoff"])
    payload: dict[str, Any] = Field(default_factory=dict, description="Validated by the task's schema")


class TriggerResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str | None = Field(description="None when a queue policy or singleton deduplicated the job")
    status: str = Field(description="created, or deduplicated")
    task_id: str = Field(alias="taskId")


class JobStatus(BaseModel):
    """zeke.client's job status; further pg-boss fields (priority, startAfter, keepUntil...) follow."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: str
    status: str = Field(description="pg-boss state: created, retry, active, completed, cancelled, failed")
    task_id: str = Field(alias="taskId")
    data: Any = None
    output: Any = None
    created_on: str | None = Field(None, alias="createdOn")
    started_on: str | None = Field(None, alias="startedOn")
    completed_on: str | None = Field(None, alias="completedOn")
    retry_count: int | None = Field(None, alias="retryCount")
    retry_limit: int | None = Field(None, alias="retryLimit")


class TaskInfo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    concurrency_limit: int | None = Field(None, alias="concurrencyLimit")
    queue_options: dict[str, Any] = Field(alias="queueOptions")
    payload_schema: dict[str, Any] = Field(alias="payloadSchema")


def jobs_of(request: Request) -> Jobs:
    return request.app.state.jobs


health = APIRouter(tags=["health"])
api = APIRouter(prefix="/api", tags=["jobs"], dependencies=[Depends(require_principal)])


@health.get("/healthz")
def healthz(request: Request, response: Response) -> dict[str, Any]:
    """Liveness plus a database round trip; 503 when the database does not answer."""
    hub: sse.StateHub = request.app.state.hub
    try:
        jobs_of(request).manager.now()
    except Exception as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "error", "database": type(exc).__name__}
    return {"status": "ok", "database": "ok", "listening": hub.listening.is_set()}


@api.get("/tasks", response_model=list[TaskInfo], response_model_by_alias=True)
def list_tasks(request: Request) -> list[dict[str, Any]]:
    """Every registered task with its queue settings and payload JSON schema."""
    return [
        {
            "id": task.name,
            "concurrencyLimit": task.concurrency_limit,
            "queueOptions": task.queue_options,
            "payloadSchema": task.schema.model_json_schema(by_alias=True),
        }
        for task in jobs_of(request).registry
    ]


@api.post(
    "/jobs",
    status_code=status.HTTP_201_CREATED,
    response_model=TriggerResult,
    response_model_by_alias=True,
    responses={404: {"description": "Unknown task"}, 422: {"description": "Payload fails the task's schema"}},
)
def trigger_job(body: TriggerRequest, request: Request, response: Response) -> dict[str, Any]:
    """Send a job; the payload is validated by the task's schema first."""
    try:
        result = jobs_of(request).send(body.task_id, body.payload)
    except UnknownTask as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except PayloadInvalid as exc:
        detail = [{**err, "loc": ["body", "payload", *err.get("loc", ())]} for err in exc.errors]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from None
    except (InvalidPayload, InvalidOption) as exc:  # valid for the task, still not storable (a NUL)
        detail = [{"type": "invalid_payload", "loc": ["body", "payload"], "msg": str(exc)}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from None
    if result["id"] is None:
        response.status_code = status.HTTP_200_OK  # nothing was created
    else:
        response.headers["Location"] = f"/api/jobs/{result['id']}"
    return result


@api.get("/jobs/{job_id}", response_model=JobStatus, response_model_by_alias=True, responses={404: {}})
def get_job(job_id: uuid.UUID, request: Request) -> dict[str, Any]:
    try:
        return jobs_of(request).status(str(job_id))
    except JobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=JOB_NOT_FOUND) from None


@api.post(
    "/jobs/{job_id}/cancel",
    response_model=JobStatus,
    response_model_by_alias=True,
    responses={404: {}, 409: {"description": "The job has already finished"}},
)
def cancel_job(job_id: uuid.UUID, request: Request) -> dict[str, Any]:
    return _changing(jobs_of(request).cancel, str(job_id))


@api.post(
    "/jobs/{job_id}/retry",
    response_model=JobStatus,
    response_model_by_alias=True,
    responses={404: {}, 409: {"description": "Only failed jobs can be retried"}},
)
def retry_job(job_id: uuid.UUID, request: Request) -> dict[str, Any]:
    return _changing(jobs_of(request).retry, str(job_id))


def _changing(action: Callable[[str], dict[str, Any]], job_id: str) -> dict[str, Any]:
    """Cancel or retry: 404 for an unknown job, 409 when its state does not allow the action."""
    try:
        return action(job_id)
    except JobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=JOB_NOT_FOUND) from None
    except JobRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"job is {exc.status}; {exc.reason}") from None


@api.get(
    "/jobs/stream/{run_id}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Events: status (JSON job status), close, error, timeout; keep-alive comments",
        },
        404: {},
    },
)
async def stream_job(run_id: uuid.UUID, request: Request) -> Any:
    """Server-Sent Events: the job's status now, then every change as it commits."""
    jobs = jobs_of(request)
    hub: sse.StateHub = request.app.state.hub
    settings: Settings = request.app.state.settings
    job_id = str(run_id)

    async def read(job_id: str) -> dict[str, Any] | None:
        return await run_in_threadpool(jobs.get, job_id)

    queue = hub.subscribe(job_id)  # before the first read: no change can slip between the two
    try:
        job = await read(job_id)
    except BaseException:
        hub.unsubscribe(job_id, queue)
        raise
    if job is None:
        hub.unsubscribe(job_id, queue)
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=JOB_NOT_FOUND)

    async def events() -> Any:
        try:
            async for frame in sse.job_events(
                job,
                hub,
                queue,
                read,
                keepalive_seconds=settings.sse_keepalive_seconds,
                reread_seconds=settings.sse_reread_seconds,
                max_seconds=settings.sse_max_seconds,
            ):
                yield frame
        finally:  # also when the client goes away: Starlette cancels the stream on http.disconnect
            hub.unsubscribe(job_id, queue)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )
