"""zeke.api.limits.BodyLimit as plain ASGI: a declared oversize body is refused before the app runs, a
streamed one as soon as its count passes the limit, and everything else reaches the app untouched."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from zeke.api.limits import BodyLimit

LIMIT = 10


class App:
    """Reads the whole body, then answers 200 with its length."""

    def __init__(self) -> None:
        self.called = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _run(
    chunks: list[bytes], *, declared: int | None = None, scope_type: str = "http"
) -> tuple[App, list[Any]]:
    app, sent = App(), []
    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    scope = {"type": scope_type, "headers": headers}
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> Any:
        return pending.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(BodyLimit(app, LIMIT)(scope, receive, send))
    return app, sent


def _status(sent: list[Any]) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_a_declared_oversize_body_is_refused_without_calling_the_app() -> None:
    app, sent = _run([b"x" * 11], declared=11)
    assert not app.called and _status(sent) == 413
    detail = json.loads(sent[-1]["body"])["detail"]
    assert "10 bytes" in detail and "ZEKE_API_MAX_BODY_BYTES" in detail


@pytest.mark.parametrize("chunks", [[b"x" * 11], [b"xxxx", b"xxxx", b"xxxx"]], ids=["one", "streamed"])
def test_an_undeclared_oversize_body_is_refused_once_it_passes_the_limit(chunks: list[bytes]) -> None:
    _, sent = _run(chunks)
    assert _status(sent) == 413


def test_a_lying_content_length_is_caught_by_the_count() -> None:
    _, sent = _run([b"x" * 50], declared=5)
    assert _status(sent) == 413


@pytest.mark.parametrize("size", [0, 1, LIMIT])
def test_bodies_up_to_the_limit_reach_the_app(size: int) -> None:
    app, sent = _run([b"x" * size], declared=size)
    assert app.called and _status(sent) == 200 and sent[-1]["body"] == str(size).encode()


def test_a_malformed_content_length_falls_back_to_counting() -> None:
    headers_app, sent = App(), []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"abc", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"lots")]}
    asyncio.run(BodyLimit(headers_app, LIMIT)(scope, receive, send))
    assert _status(sent) == 200


def test_other_scopes_pass_through() -> None:
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["type"])

    asyncio.run(BodyLimit(app, LIMIT)({"type": "lifespan"}, None, None))
    assert called == ["lifespan"]
