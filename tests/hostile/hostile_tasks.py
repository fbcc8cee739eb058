"""Schema tasks the hostile-input tests send to through the API and the CLI (never run by a worker).

``hostile-doc`` takes free-form JSON, so whatever a client puts in it reaches the job table;
``hostile-echo`` has a narrow schema, so most of what a fuzzer sends is refused before it does.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from zeke.schema_task import TaskContext, schema_task


class Echo(BaseModel):
    message: str = Field(max_length=1000)
    count: int = Field(1, ge=1, le=10)


@schema_task(id="hostile-echo", schema=Echo)
def echo(payload: Echo, ctx: TaskContext) -> dict[str, Any]:
    return {"echo": payload.message * payload.count}


class Doc(BaseModel):
    title: str = ""
    body: Any = None
    tags: list[str] = []


@schema_task(id="hostile-doc", schema=Doc)
def doc(payload: Doc, ctx: TaskContext) -> dict[str, Any]:
    return {"title": payload.title}
