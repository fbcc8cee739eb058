"""A cap on request bodies, enforced before anything reads or parses them.

:class:`BodyLimit` is the outermost ASGI middleware: it answers 413 at once when ``Content-Length``
says the body is too large, and otherwise counts the bytes as the application receives them,
answering 413 (or cutting the request) as soon as the count passes the limit. So neither the JSON
parser nor the authentication dependency ever sees an oversized body, and an anonymous client cannot
make the server hold more than ``max_body_bytes`` of its body in memory.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _detail(limit: int) -> str:
    return f"request body larger than {limit} bytes (ZEKE_API_MAX_BODY_BYTES)"


class BodyTooLarge(HTTPException):
    """Raised inside the application's ``receive`` once the body passes the limit: an HTTP error, so
    FastAPI's body reader passes it on (rather than calling it a parse error) and the app's handler
    answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _message(self) -> bytes:
        return json.dumps({"detail": _detail(self.max_body_bytes)}).encode()

    async def _refuse(self, send: Send) -> None:
        body = self._message()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:  # else the response is under way: the connection just ends
                await self._refuse(send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
