from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from tasks.db.models import RawItem, Source, SourceHealth, Story
from tests.tasks.conftest import add
from tests.tasks.helpers import RecordingContext, WebServer, run_task

CHANNEL = "UCzekeFixture0000000000a"


@pytest.fixture
def yt(ctx: RecordingContext, web: WebServer) -> RecordingContext:
    web.fixture("/feeds/videos.xml", "feeds/youtube.xml", "application/atom+xml; charset=utf-8")
    return ctx.with_settings(youtube_feed_base=web.url("/feeds/videos.xml"))


def test_videos_become_video_items_and_stories(yt: RecordingContext, web: WebServer) -> None:
    source = Source(type="youtube_channel", url=f"https://www.youtube.com/channel/{CHANNEL}", authority=0.6)
    add(yt.session_factory, source)

    result = run_task("ingest-pull-youtube", {}, yt)

    assert result["channels"] == 1 and result["itemsInserted"] == 2 and len(result["storiesCreated"]) == 2
    assert web.hits("/feeds/videos.xml")[0].path == f"/feeds/videos.xml?channel_id={CHANNEL}"
    with yt.session_factory() as session:
        items = {i.external_id: i for i in session.scalars(select(RawItem))}
        alpha = items["yt:video:vid-alpha01"]
        assert alpha.kind == "video" and alpha.status == "fetched"
        assert alpha.canonical_url == "https://www.youtube.com/watch?v=vid-alpha01"
        assert alpha.published_at == dt.datetime(2026, 1, 10, 15, 0, tzinfo=dt.UTC)
        assert "HNSW" in alpha.summary
        story = session.scalars(select(Story).where(Story.content_id == alpha.content_id)).one()
        assert story.kind == "video" and story.source_id == source.id and story.title == alpha.title
        assert "drops from 48 ms to 11 ms" in story.content.text
        assert story.content.content_type == "video_description"
        assert session.get_one(SourceHealth, source.id).status == "ok"
    assert sorted(p["storyId"] for p in yt.sent("analyze-story")) == sorted(result["storiesCreated"])
    assert yt.sent("fetch-content") == []  # no page fetch for videos

    again = run_task("ingest-pull-youtube", {"force": True}, yt)
    assert again["itemsInserted"] == 0 and again["storiesCreated"] == []


def test_one_bad_channel_does_not_stop_the_others(yt: RecordingContext, web: WebServer) -> None:
    good = Source(type="youtube_channel", url=CHANNEL)
    handle = Source(type="youtube_channel", url="https://www.youtube.com/@nohandlesupport")
    broken = Source(type="youtube_channel", url="https://www.youtube.com/channel/UCbrokenbrokenbrokenbrok")
    add(yt.session_factory, good, handle, broken)
    # the broken channel's feed 404s: only the fixture channel id is routed
    web.routes.pop("/feeds/videos.xml")
    web.fixture(f"/feeds/videos.xml?channel_id={CHANNEL}", "feeds/youtube.xml", "application/atom+xml")

    result = run_task("ingest-pull-youtube", {}, yt)

    assert result["channels"] == 3 and result["itemsInserted"] == 2
    assert set(result["errors"]) == {str(handle.id), str(broken.id)}
    assert "handles need the API" in result["errors"][str(handle.id)]
    with yt.session_factory() as session:
        health = {h.source_id: h for h in session.scalars(select(SourceHealth))}
    assert health[good.id].status == "ok"
    assert health[handle.id].status == "error" and health[broken.id].last_http_status == 404


def test_only_due_channels_unless_forced(yt: RecordingContext) -> None:
    later = Source(
        type="youtube_channel", url=CHANNEL, next_check_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    )
    add(yt.session_factory, later)
    assert run_task("ingest-pull-youtube", {}, yt)["channels"] == 0
    assert run_task("ingest-pull-youtube", {"sourceIds": [str(later.id)], "force": True}, yt)["channels"] == 1
