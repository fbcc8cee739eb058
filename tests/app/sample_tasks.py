"""Schema tasks the app-layer tests run (in process and in real `celery -A zeke worker` processes).

Workers import this module through ``ZEKE_TASK_MODULES=tests.app.sample_tasks``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from zeke.schema_task import TaskContext, schema_task


class Echo(BaseModel):
    message: str
    count: int = Field(1, ge=1, le=10)


@schema_task(id="t-echo", schema=Echo, retry={"retryLimit": 3, "retryDelay": 0, "retryBackoff": False})
def echo(payload: Echo, ctx: TaskContext) -> dict[str, Any]:
    ctx.logger.info("echoing", count=payload.count)
    return {"echo": payload.message * payload.count, "jobId": ctx.run.id}


class Item(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    item_id: str = Field(alias="itemId", min_length=1)
    reason: str = "manual"


@schema_task(id="t-item", schema=Item, queue={"expireInSeconds": 120})
def item(payload: Item, ctx: TaskContext) -> Item:
    return payload


class Sleep(BaseModel):
    seconds: float = Field(ge=0, le=30)
    tag: str = ""


#: Global cap the concurrency test checks against: more than one worker (-c 2) can hold alone.
SLEEP_LIMIT = 3


@schema_task(id="t-sleep", schema=Sleep, queue={"concurrency_limit": SLEEP_LIMIT}, retry={"retry_limit": 0})
def sleep(payload: Sleep, ctx: TaskContext) -> dict[str, Any]:
    time.sleep(payload.seconds)
    return {"tag": payload.tag, "pid": os.getpid()}


class Fan(BaseModel):
    messages: list[str]


@schema_task(id="t-fan", schema=Fan)
def fan(payload: Fan, ctx: TaskContext) -> dict[str, Any]:
    """Triggers one t-echo per message from inside a task."""
    return {"children": [ctx.trigger("t-echo", {"message": m}) for m in payload.messages]}


class Boom(BaseModel):
    message: str = "boom"


@schema_task(id="t-boom", schema=Boom, retry={"retry_limit": 1, "retry_delay": 0, "retry_backoff": False})
def boom(payload: Boom, ctx: TaskContext) -> None:
    raise RuntimeError(payload.message)
