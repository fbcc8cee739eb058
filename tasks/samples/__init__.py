"""Sample content for ``make run``: three feeds (RSS 2.0, Atom, RSS) with 13 items about software and AI
news, the 12 article pages they link to, and one YouTube-style channel feed, all written for zeke and
served offline by :func:`serve_samples`.

::

    base_url, stop = serve_samples()
    seed_sources(session_factory, base_url)      # the feeds and the channel, as sources
    # settings: YOUTUBE_FEED_BASE=youtube_feed_base(base_url), ZEKE_ALLOWED_NETWORKS=127.0.0.1/32
    ...
    stop()

One Ops Digest item links to the Byteline Ferrite article with tracking parameters: after
canonicalisation both feeds point at one page, which becomes one story.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

SAMPLES_DIR = Path(__file__).resolve().parent
YOUTUBE_CHANNEL_ID = "UCzekeDemoChannel0000001"
#: Fixed Last-Modified of the sample feeds (they never change).
FEED_LAST_MODIFIED = formatdate(1768294800, usegmt=True)  # 2026-01-13 09:00 UTC

#: name, type, path, authority
SOURCES: tuple[tuple[str, str, str, float], ...] = (
    ("Byteline Dispatch", "rss", "/feeds/byteline.xml", 0.8),
    ("Model Notes", "rss", "/feeds/model-notes.xml", 0.7),
    ("Ops & Infra Digest", "rss", "/feeds/ops-digest.xml", 0.6),
    ("Build Log (YouTube)", "youtube_channel", f"https://www.youtube.com/channel/{YOUTUBE_CHANNEL_ID}", 0.5),
)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")
_TYPES = {"rss": "application/rss+xml; charset=utf-8", "atom": "application/atom+xml; charset=utf-8"}


def sample_sources(base_url: str) -> list[dict[str, Any]]:
    """The sample sources as ``sources`` rows (``type``, ``name``, ``url``, ``authority``)."""
    return [
        {
            "type": type_,
            "name": name,
            "url": path if path.startswith("https://") else base_url + path,
            "authority": a,
        }
        for name, type_, path, a in SOURCES
    ]


def youtube_feed_base(base_url: str) -> str:
    """``YOUTUBE_FEED_BASE`` for the sample server."""
    return base_url + "/youtube/feeds/videos.xml"


def seed_sources(session_factory: Callable[[], Session], base_url: str) -> list[uuid.UUID]:
    """Insert the sample sources (existing ones are left alone); returns their ids."""
    from sqlalchemy import select

    from tasks.db.models import Source

    ids: list[uuid.UUID] = []
    with session_factory() as session, session.begin():
        for row in sample_sources(base_url):
            session.execute(
                insert(Source)
                .values(id=uuid.uuid4(), check_interval_seconds=300, **row)
                .on_conflict_do_nothing(index_elements=[Source.type, Source.url])
            )
            ids.append(
                session.scalars(
                    select(Source.id).where(Source.type == row["type"], Source.url == row["url"])
                ).one()
            )
    return ids


def resolve(path: str, query: str = "") -> tuple[Path, str] | None:
    """The sample file and content type for a request path, or None."""
    if path in ("", "/"):
        return SAMPLES_DIR / "index.html", "text/html; charset=utf-8"
    match = re.fullmatch(r"/feeds/([^/]+)\.xml", path)
    if match and _SLUG.match(match.group(1)):
        file = SAMPLES_DIR / f"feed-{match.group(1)}.xml"
        kind = "atom" if file.exists() and b"<feed" in file.read_bytes()[:300] else "rss"
        return file, _TYPES[kind]
    match = re.fullmatch(r"/articles/([^/]+)\.html", path)
    if match and _SLUG.match(match.group(1)):
        return SAMPLES_DIR / f"article-{match.group(1)}.html", "text/html; charset=utf-8"
    if path == "/youtube/feeds/videos.xml":
        channel = (parse_qs(query).get("channel_id") or [""])[0]
        if re.fullmatch(r"UC[0-9A-Za-z_-]{22}", channel):
            return SAMPLES_DIR / f"youtube-{channel}.xml", _TYPES["atom"]
    return None


def serve_samples(port: int = 0, host: str = "127.0.0.1") -> tuple[str, Callable[[], None]]:
    """Serve the samples over HTTP in a daemon thread; returns ``(base_url, stop)``.

    ``{{BASE}}`` in the files becomes the base URL. Feeds carry ETag and Last-Modified and answer
    conditional requests with 304, like a real feed server.
    """
    base: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "zeke-samples/1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            found = resolve(parts.path, parts.query)
            if found is None or not found[0].is_file():
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
                return
            file, content_type = found
            body = file.read_bytes().replace(b"{{BASE}}", base["url"].encode())
            headers = {}
            if "xml" in content_type:
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                headers = {"ETag": etag, "Last-Modified": FEED_LAST_MODIFIED, "Cache-Control": "max-age=300"}
                if self.headers.get("If-None-Match") == etag:
                    self._send(304, b"", None, headers)
                    return
            self._send(200, body, content_type, headers)

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def _send(
            self, status: int, body: bytes, content_type: str | None, headers: dict | None = None
        ) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    bound_host, bound_port = server.server_address[:2]
    base["url"] = f"http://{bound_host}:{bound_port}"
    thread = threading.Thread(target=server.serve_forever, name="zeke-samples", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return base["url"], stop
