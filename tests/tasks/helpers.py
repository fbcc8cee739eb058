"""Test doubles for the task suite: a recording ctx, a local web server, a fake OpenAI server, and a
tiny PDF writer. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tasks.registry_data import BY_ID
from tasks.settings import TaskSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


# -- recording ctx --------------------------------------------------------------------------------


class RecordingLogger:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, message: str, **fields: Any) -> None:
        self.records.append((level, message, fields))

    def debug(self, message: str, **fields: Any) -> None:
        self._log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log("error", message, **fields)

    def messages(self) -> list[str]:
        return [message for _, message, _ in self.records]


@dataclass
class Triggered:
    task_id: str
    payload: dict[str, Any]
    options: dict[str, Any]


class RecordingContext:
    """A ctx whose ``trigger`` records instead of enqueueing (and validates like the real one)."""

    def __init__(self, settings: TaskSettings, session_factory: Any) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.logger = RecordingLogger()
        self.triggered: list[Triggered] = []

    def trigger(self, task_id: str, payload: dict[str, Any], **options: Any) -> str:
        BY_ID[task_id].load().PAYLOAD.model_validate(payload)  # what schema_task would do on send
        json.dumps(payload)  # job data must be JSON
        self.triggered.append(Triggered(task_id, payload, options))
        return f"job-{len(self.triggered)}"

    def sent(self, task_id: str) -> list[dict[str, Any]]:
        return [t.payload for t in self.triggered if t.task_id == task_id]

    def with_settings(self, **changes: Any) -> RecordingContext:
        settings = TaskSettings.model_validate({**self.settings.model_dump(), **changes})
        return RecordingContext(settings, self.session_factory)


def run_task(task_id: str, payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Validate ``payload`` as the queue wrapper would, run the task, and check its result is JSON."""
    module = BY_ID[task_id].load()
    result = module.run(module.PAYLOAD.model_validate(payload), ctx)
    json.dumps(result)
    return result


def drain(ctx: RecordingContext, *, skip: frozenset[str] = frozenset(), limit: int = 500) -> list[Triggered]:
    """Run every triggered job in-process (FIFO) until none are left; returns what ran."""
    ran: list[Triggered] = []
    while ctx.triggered:
        job = ctx.triggered.pop(0)
        if job.task_id in skip:
            continue
        ran.append(job)
        run_task(job.task_id, job.payload, ctx)
        if len(ran) > limit:
            raise AssertionError("pipeline did not settle")
    return ran


# -- local web server ------------------------------------------------------------------------------


class QuietServer(ThreadingHTTPServer):
    """Clients hanging up early (size caps, timeouts) are expected here, not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to sleep between body chunks (slow servers).
    drip: float = 0.0
    #: Send Content-Length; without it the body ends when the connection closes.
    length: bool = True


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


class WebServer:
    """Serves registered routes; ``{{BASE}}`` in fixture bodies becomes the server's base URL."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | Callable[[SeenRequest], Reply]] = {}
        self.requests: list[SeenRequest] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                seen = SeenRequest("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
                server.requests.append(seen)
                route = server.routes.get(self.path) or server.routes.get(self.path.split("?", 1)[0])
                reply = Reply(404, b"not found", {"Content-Type": "text/plain"}) if route is None else route
                if callable(reply):
                    reply = reply(seen)
                self.send_response(reply.status)
                headers = dict(reply.headers)
                if reply.length:
                    headers["Content-Length"] = str(len(reply.body))
                else:
                    headers["Connection"] = "close"
                    self.close_connection = True
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if reply.drip:
                    for i in range(0, len(reply.body), 64):
                        self.wfile.write(reply.body[i : i + 64])
                        self.wfile.flush()
                        time.sleep(reply.drip)
                else:
                    self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def route(
        self,
        path: str,
        body: bytes | str | Callable[[SeenRequest], Reply] = b"",
        *,
        status: int = 200,
        content_type: str | None = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
        drip: float = 0.0,
        length: bool = True,
    ) -> str:
        if callable(body):
            self.routes[path] = body
            return self.url(path)
        data = body.encode() if isinstance(body, str) else body
        all_headers = dict(headers or {})
        if content_type:
            all_headers.setdefault("Content-Type", content_type)
        self.routes[path] = Reply(status, data, all_headers, drip, length)
        return self.url(path)

    def fixture(self, path: str, name: str, content_type: str = "text/html; charset=utf-8", **kw: Any) -> str:
        """Serve ``tests/fixtures/<name>`` at ``path``, with ``{{BASE}}`` filled in."""
        data = (FIXTURES / name).read_bytes().replace(b"{{BASE}}", self.base.encode())
        return self.route(path, data, content_type=content_type, **kw)

    def hits(self, path: str) -> list[SeenRequest]:
        return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def reset(self) -> None:
        self.routes.clear()
        self.requests.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- fake OpenAI -----------------------------------------------------------------------------------

ANALYSIS_REPLY = {
    "why_it_matters": "• Build times drop sharply for large monorepos.\n• Plugin authors must migrate hooks.",
    "chili": 4,
    "confidence": 0.82,
    "citations": [{"quote": "cold builds of its reference monorepo are 38% faster", "url": None}],
}
BRIEF_REPLY = {
    "one_liner": "Quillstack 3.0 makes monorepo builds 38% faster with a content-addressed graph.",
    "two_liner": "Quillstack 3.0 swaps its file watcher for a build graph. Cold builds are 38% faster.",
    "elevator": (
        "Quillstack 3.0 replaces its file watcher with a content-addressed build graph. Cold builds are 38% "
        "faster and warm rebuilds take 1.4 seconds. Plugin hooks changed, so authors need the codemod. "
        "2.x gets security fixes until June."
    ),
}


class FakeOpenAI:
    """Answers POST /v1/chat/completions like OpenAI; ``mode`` picks the behaviour.

    ok: structured output for the requested schema; rate_limit: 429 with Retry-After; garbage: a
    completion whose content is not JSON; slow: sleeps longer than any client timeout in the tests;
    server_error: 500; bad_request: 400; html: a 200 HTML page (a proxy, a wrong base URL);
    not_a_completion: a 200 JSON error object instead of a completion; echo_key, echo_key_500,
    echo_key_200: a 401, 502 or 200 whose error message repeats the Authorization header.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.retry_after = "7"
        self.replies: dict[str, dict[str, Any]] = {
            "AnalysisOutput": ANALYSIS_REPLY,
            "BriefOutput": BRIEF_REPLY,
        }
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, payload, extra = fake.answer(self.path, body)
                raw = isinstance(payload, bytes)  # not JSON: a proxy's page, say
                data = payload if raw else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    media = "text/html; charset=utf-8" if raw else "application/json"
                    self.send_header("Content-Type", media)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in extra.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | bytes, dict[str, str]]:
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}}, {}
        if self.mode == "rate_limit":
            error = {
                "message": "Rate limit reached for requests",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
            return 429, {"error": error}, {"Retry-After": self.retry_after}
        if self.mode == "server_error":
            return 500, {"error": {"message": "boom", "type": "server_error"}}, {}
        if self.mode == "bad_request":
            return 400, {"error": {"message": "model not found", "type": "invalid_request_error"}}, {}
        echo = {"echo_key": 401, "echo_key_500": 502, "echo_key_200": 200}
        if self.mode in echo:  # a proxy that repeats the credentials it got
            auth = self.headers[-1].get("authorization", "")
            status = echo[self.mode]
            return status, {"error": {"message": f"Incorrect API key provided: {auth}", "type": "auth"}}, {}
        if self.mode == "html":
            return 200, b"<html><body>Welcome to the corporate proxy</body></html>", {}
        if self.mode == "not_a_completion":
            return 200, {"error": {"message": "upstream model overloaded"}}, {}
        if self.mode == "slow":
            time.sleep(3)
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
        content = (
            "Sure! Here is the analysis: {chili: lots"
            if self.mode == "garbage"
            else json.dumps(self.replies[schema])
        )
        return 200, _completion(body.get("model", "?"), content), {}

    def reset(self) -> None:
        self.mode = "ok"
        self.retry_after = "7"
        self.replies = {"AnalysisOutput": ANALYSIS_REPLY, "BriefOutput": BRIEF_REPLY}
        self.requests.clear()
        self.headers.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1768000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 321, "completion_tokens": 54, "total_tokens": 375},
    }


# -- PDF ------------------------------------------------------------------------------------------


def make_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A one-page PDF (Helvetica) with ``lines`` of text, for pypdf to read back."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    stream = "BT /F1 11 Tf 72 740 Td 14 TL " + " ".join(f"({esc(line)}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({esc(title or '')}) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
