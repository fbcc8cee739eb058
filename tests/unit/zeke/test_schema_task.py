"""schema_task: declaration, registry, send-time validation, and the terminal failure it relies on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from tests.app import sample_tasks
from transport.exceptions import InvalidPayload
from zeke import registry as registry_module
from zeke.app import app
from zeke.registry import UnknownTask, registry
from zeke.schema_task import PayloadInvalid, SchemaTask, TaskLogger, schema_task, tasks


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def test_declared_tasks_are_celery_tasks_on_their_own_queue() -> None:
    task = sample_tasks.echo
    assert isinstance(task, SchemaTask)
    assert task.name == "t-echo" and app.tasks["t-echo"] is task
    assert app.amqp.router.route({}, "t-echo")["queue"].name == "t-echo"  # also when sent by name
    assert registry.get("t-echo") is task and tasks.get("t-echo") is task
    assert "t-echo" in app.amqp.queues.consume_from  # a plain `celery -A zeke worker` consumes it


def test_queue_and_retry_options_accept_node_names() -> None:
    assert sample_tasks.echo.queue_options == {"retry_limit": 3, "retry_delay": 0, "retry_backoff": False}
    assert sample_tasks.item.queue_options == {"expire_in_seconds": 120}
    assert sample_tasks.sleep.concurrency_limit == sample_tasks.SLEEP_LIMIT
    assert registry.queue_options["t-item"] == {"expire_in_seconds": 120}


def test_transport_hook_is_the_registry_map() -> None:
    options = app.conf.broker_transport_options
    assert options["concurrency_limits"] is registry.concurrency_limits
    assert options["concurrency_limits"]["t-sleep"] == sample_tasks.SLEEP_LIMIT
    assert options["queue_options"] is registry.queue_options
    assert "t-echo" not in options["concurrency_limits"]


def test_bad_declarations_fail_at_import() -> None:
    class P(BaseModel):
        x: int

    with pytest.raises(TypeError, match="unknown queue option"):
        schema_task(id="t-bad", schema=P, queue={"concurrency": 2})
    with pytest.raises(TypeError, match="unknown retry option"):
        schema_task(id="t-bad", schema=P, retry={"expire_in_seconds": 2})
    with pytest.raises(TypeError, match="concurrency_limit"):
        schema_task(id="t-bad", schema=P, queue={"concurrency_limit": 0})
    with pytest.raises(TypeError, match="pydantic"):
        schema_task(id="t-bad", schema=dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue name"):
        schema_task(id="bad name", schema=P)


def test_same_id_twice_is_refused() -> None:
    class P(BaseModel):
        x: int

    def other(payload: P, ctx: Any) -> None: ...

    with pytest.raises(ValueError, match="declared twice"):
        schema_task(id="t-echo", schema=P)(other)


@pytest.mark.parametrize(
    "send",
    [
        lambda: sample_tasks.echo.trigger({"count": 0}),
        lambda: sample_tasks.echo.delay(count=0),
        lambda: sample_tasks.echo.delay({"count": 0}),
        lambda: sample_tasks.echo.apply_async(kwargs={"count": 0}),
        lambda: sample_tasks.echo.s(count=0).apply_async(),
        lambda: tasks.trigger("t-echo", {"count": 0}),
    ],
    ids=["trigger", "delay-kwargs", "delay-positional", "apply_async", "signature", "tasks.trigger"],
)
def test_invalid_payload_is_refused_before_sending(send: Any) -> None:
    with pytest.raises(PayloadInvalid) as info:
        send()
    locs = {tuple(e["loc"]) for e in info.value.errors}
    assert locs == {("message",), ("count",)}
    assert info.value.task_id == "t-echo"


def test_payload_must_be_one_object() -> None:
    with pytest.raises(TypeError, match="one payload"):
        sample_tasks.echo.delay({"message": "a"}, {"message": "b"})
    with pytest.raises(TypeError, match="not both"):
        sample_tasks.echo.delay({"message": "a"}, count=2)


def test_dump_applies_defaults_and_aliases() -> None:
    assert sample_tasks.item.dump({"itemId": "x"}) == {"itemId": "x", "reason": "manual"}
    assert sample_tasks.item.dump(sample_tasks.Item(item_id="y")) == {"itemId": "y", "reason": "manual"}


def test_unknown_task() -> None:
    with pytest.raises(UnknownTask):
        tasks.trigger("t-nope", {})
    assert "t-nope" not in tasks


def test_registry_load_imports_modules() -> None:
    loaded = registry_module.load(["tests.app.sample_tasks"])
    assert {"t-echo", "t-item", "t-sleep", "t-fan", "t-boom"} <= set(loaded.ids())


def test_logger_writes_json_lines_with_ids(caplog: pytest.LogCaptureFixture) -> None:
    import json

    log = TaskLogger("t-echo", "00000000-0000-0000-0000-000000000001")
    with caplog.at_level("INFO", logger="zeke.tasks"):
        log.info("Processing", {"itemId": 1}, extra_field="x")
    record = json.loads(caplog.records[-1].getMessage())
    assert record["message"] == "Processing" and record["level"] == "info"
    assert record["taskId"] == "t-echo" and record["jobId"].endswith("1")
    assert record["itemId"] == 1 and record["extra_field"] == "x" and "timestamp" in record


def test_schema_task_refuses_non_finite_numbers() -> None:
    """pydantic writes NaN and Infinity in free-form fields as null: refused instead of stored changed."""
    from tests.hostile.hostile_tasks import Doc, doc
    from zeke.schema_task import PayloadInvalid

    for payload, loc in [
        ({"body": float("nan")}, ["body"]),
        ({"body": {"a": [1.5, float("inf")]}}, ["body", "a", 1]),
        (Doc(body=float("-inf")), ["body"]),
    ]:
        with pytest.raises(PayloadInvalid) as refused:
            doc.dump(payload)
        assert [e["loc"] for e in refused.value.errors] == [loc]
        assert refused.value.errors[0]["type"] == "finite_number"
        json.dumps(refused.value.errors, allow_nan=False)  # the errors themselves are JSON
    assert doc.dump({"body": {"a": [1.5, 10**30]}})["body"] == {"a": [1.5, 10**30]}


def test_schema_task_payload_nesting() -> None:
    """As deep as pydantic writes is stored as sent; deeper is the transport's InvalidPayload."""
    from tests.hostile.hostile_tasks import doc

    assert doc.dump({"body": _deep(200)})["body"] == _deep(200)
    with pytest.raises(InvalidPayload, match="too deeply"):
        doc.dump({"body": _deep(300)})
