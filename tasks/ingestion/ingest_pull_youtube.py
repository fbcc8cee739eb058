"""ingest-pull-youtube: read due YouTube channel sources through each channel's public Atom feed.

No API key: ``{YOUTUBE_FEED_BASE}?channel_id=UC…``. Each video becomes a raw item of kind ``video``;
its title and description are the story text (stored directly, no page fetch), and new stories go to
analyze-story. Channels are independent: one failing channel is recorded in its source health and the
others go on.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from pydantic import Field

from tasks.ai.analyze_story import AnalyzeStoryPayload
from tasks.db.models import RawItem, Source
from tasks.lib.context import Context, Payload, send
from tasks.lib.feeds import FeedEntry
from tasks.lib.fetching import Fetcher
from tasks.lib.sources import FeedCheck, SourceRef, check_feed, claim_due_sources, save_check
from tasks.lib.store import insert_raw_item, record_health, store_document, utcnow
from tasks.lib.text import extract_plain
from transport.redact import redact_url

TASK_ID = "ingest-pull-youtube"

_CHANNEL_ID = re.compile(r"^UC[0-9A-Za-z_-]{22}$")
_CHANNEL_PATH = re.compile(r"/channel/(UC[0-9A-Za-z_-]{22})(?:[/?#]|$)")


class IngestPullYouTubePayload(Payload):
    task_id = TASK_ID

    reason: Literal["schedule", "manual"] = "schedule"
    #: Every active channel, due or not (and ignoring stored validators).
    force: bool = False
    #: Only these sources.
    source_ids: list[uuid.UUID] | None = Field(default=None, max_length=500)


PAYLOAD = IngestPullYouTubePayload


def channel_id_of(url: str | None, metadata: dict | None = None) -> str | None:
    """The UC… channel id from ``metadata["channel_id"]``, a /channel/ URL, a feed URL or a bare id."""
    candidates = [str((metadata or {}).get("channel_id") or ""), (url or "").strip()]
    for candidate in candidates:
        if _CHANNEL_ID.match(candidate):
            return candidate
        match = _CHANNEL_PATH.search(candidate)
        if match:
            return match.group(1)
        for value in parse_qs(urlsplit(candidate).query).get("channel_id", []):
            if _CHANNEL_ID.match(value):
                return value
    return None


def feed_url(base: str, channel_id: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'channel_id': channel_id})}"


def run(payload: IngestPullYouTubePayload, ctx: Context) -> dict:
    with ctx.session_factory.begin() as session:
        refs = [
            SourceRef.of(s)
            for s in claim_due_sources(
                session,
                "youtube_channel",
                force=payload.force,
                only=payload.source_ids,
                include_demo=ctx.settings.demo,
            )
        ]
    channels: list[dict] = []
    new_stories: list[uuid.UUID] = []
    with Fetcher(ctx.settings) as fetcher:
        for ref in refs:
            report, stories = _channel(ctx, fetcher, ref, payload.force)
            channels.append(report)
            new_stories.extend(stories)
    for story_id in new_stories:
        send(ctx, AnalyzeStoryPayload(story_id=story_id, trigger="auto"))
    result = {
        "channels": len(channels),
        "itemsInserted": sum(c.get("itemsInserted", 0) for c in channels),
        "storiesCreated": [str(s) for s in new_stories],
        "errors": {c["sourceId"]: c["error"] for c in channels if c["status"] == "error"},
        "details": channels,
    }
    ctx.logger.info("ingest_pull_youtube_done", channels=len(channels), items=result["itemsInserted"])
    return result


def _channel(ctx: Context, fetcher: Fetcher, ref: SourceRef, force: bool) -> tuple[dict, list[uuid.UUID]]:
    channel_id = channel_id_of(ref.url, ref.metadata)
    if channel_id is None:
        error = (
            f"no channel id in {redact_url(ref.url)!r}: "
            "use https://www.youtube.com/channel/UC… (handles need the API)"
        )
        with ctx.session_factory.begin() as session:
            source = session.get(Source, ref.id, with_for_update=True)
            if source is not None:
                record_health(session, source, "error", error=error)
        return {"sourceId": str(ref.id), "status": "error", "error": error}, []

    check = check_feed(
        fetcher,
        feed_url(ctx.settings.youtube_feed_base, channel_id),
        etag=None if force else ref.etag,
        last_modified=None if force else ref.last_modified,
        limit=ctx.settings.max_feed_items,
    )
    inserted, stories = _store(ctx, ref.id, check)
    report = {
        "sourceId": str(ref.id),
        "channelId": channel_id,
        "status": check.status,
        "itemsInserted": inserted,
    }
    if check.error:
        report["error"] = check.error
        ctx.logger.warning("ingest_youtube_channel_problem", source_id=str(ref.id), error=check.error)
    return report, stories


def _store(ctx: Context, source_id: uuid.UUID, check: FeedCheck) -> tuple[int, list[uuid.UUID]]:
    inserted = 0
    stories: list[uuid.UUID] = []
    with ctx.session_factory.begin() as session:
        source = session.get(Source, source_id, with_for_update=True)
        if source is None:
            return 0, []
        save_check(session, source, check, utcnow())
        for entry in check.feed.entries if check.feed else ():
            video_id = entry.video_id or entry.external_id.removeprefix("yt:video:")
            watch = f"https://www.youtube.com/watch?{urlencode({'v': video_id})}"
            new_id = insert_raw_item(
                session,
                source_id=source_id,
                external_id=f"yt:video:{video_id}",
                kind="video",
                title=entry.title,
                url=entry.url or watch,
                canonical_url=watch,
                published_at=entry.published_at,
                summary=entry.summary,
                metadata_={"src": "youtube", "video_id": video_id},
            )
            if new_id is None:
                continue
            inserted += 1
            stored = store_document(
                session,
                session.get_one(RawItem, new_id),
                extract_plain(_video_text(entry)),
                content_type="video_description",
                story_kind="video",
                html_url=watch,
            )
            if stored.created:
                stories.append(stored.story_id)
    return inserted, stories


def _video_text(entry: FeedEntry) -> str:
    parts = [entry.title or "", entry.summary or ""]
    return "\n\n".join(p for p in parts if p.strip())
