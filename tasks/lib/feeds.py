"""Feed parsing (RSS 0.9x/1.0/2.0, Atom, YouTube channel feeds) with feedparser, and the normalised
entries the ingest tasks store."""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import feedparser

from tasks.lib.errors import PermanentError
from tasks.lib.text import drop_nul, strip_html, truncate
from tasks.lib.urls import canonicalize_url

#: External ids longer than this are stored as a hash (some feeds put whole URLs with tokens in guid).
MAX_EXTERNAL_ID = 512
SUMMARY_LIMIT = 4000


class FeedUnreadable(PermanentError):
    """The document is not a feed we can read."""


@dataclass(frozen=True)
class FeedEntry:
    external_id: str
    url: str | None
    canonical_url: str | None
    title: str | None
    published_at: dt.datetime | None
    summary: str | None
    #: YouTube's yt:videoId, for channel feeds.
    video_id: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: list[FeedEntry] = field(default_factory=list)
    #: What was wrong with a feed that still parsed (bozo), else None.
    problem: str | None = None
    #: Entries without a usable id or link, or repeats.
    skipped: int = 0


def parse_feed(content: bytes, *, url: str, content_type: str | None = None, limit: int = 200) -> ParsedFeed:
    """Parse feed bytes (never a URL: feedparser would fetch it itself, around our SSRF guard).

    Raises :class:`FeedUnreadable` when nothing usable came out of a broken document.
    """
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(
        content, response_headers=headers, sanitize_html=True, resolve_relative_uris=True
    )
    problem = None
    if parsed.get("bozo"):
        exc = parsed.get("bozo_exception")
        problem = f"{type(exc).__name__}: {exc}" if exc is not None else "malformed feed"
        if not parsed.entries:
            raise FeedUnreadable(f"not a readable feed ({problem})")
    elif not parsed.get("version") and not parsed.entries:
        raise FeedUnreadable("not a feed: no RSS or Atom root element")

    entries: list[FeedEntry] = []
    seen: set[str] = set()
    skipped = 0
    for raw in parsed.entries:
        if len(entries) >= limit:
            break
        entry = normalize_entry(raw, url)
        if entry is None or entry.external_id in seen:
            skipped += 1
            continue
        seen.add(entry.external_id)
        entries.append(entry)
    title = strip_html(parsed.feed.get("title", "")) or None
    return ParsedFeed(title, entries, problem, skipped)


def normalize_entry(raw: Any, feed_url: str) -> FeedEntry | None:
    """One feedparser entry as a :class:`FeedEntry`; None when it has neither id nor link."""
    link = _link(raw)
    canonical = None
    if link:
        try:
            canonical = canonicalize_url(link, base=feed_url)
            link = urljoin(feed_url, link)
        except ValueError:
            link = None
    guid = drop_nul(raw.get("id") or "").strip() or None
    external_id = guid or canonical
    if not external_id:
        return None
    if len(external_id) > MAX_EXTERNAL_ID:
        external_id = "sha256:" + hashlib.sha256(external_id.encode()).hexdigest()
    title = strip_html(raw.get("title") or "") or None
    summary_html = raw.get("summary") or ""
    summary = truncate(strip_html(summary_html), SUMMARY_LIMIT) if summary_html else None
    return FeedEntry(
        external_id=external_id,
        url=link,
        canonical_url=canonical,
        title=truncate(title, 500) if title else None,
        published_at=_published(raw),
        summary=summary or None,
        video_id=(raw.get("yt_videoid") or "").strip() or None,
    )


def _link(raw: Any) -> str | None:
    link = (raw.get("link") or "").strip()
    if link:
        return link
    for candidate in raw.get("links") or ():
        if candidate.get("href") and candidate.get("rel", "alternate") == "alternate":
            return str(candidate["href"]).strip()
    return None


def _published(raw: Any) -> dt.datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = raw.get(key)
        if value:
            try:
                when = dt.datetime.fromtimestamp(calendar.timegm(value), dt.UTC)
            except (OverflowError, ValueError, OSError):
                continue
            if when.year >= 1990:
                return when
    return None
