from __future__ import annotations

import datetime as dt

from tasks.db.models import Source
from tests.tasks.conftest import add
from tests.tasks.helpers import RecordingContext, run_task


def test_only_due_active_rss_sources_are_enqueued_once(ctx: RecordingContext) -> None:
    now = dt.datetime.now(dt.UTC)
    never = Source(type="rss", url="https://a.test/feed", name="never checked")
    due = Source(type="rss", url="https://b.test/feed", next_check_at=now - dt.timedelta(minutes=1))
    later = Source(type="rss", url="https://c.test/feed", next_check_at=now + dt.timedelta(hours=1))
    inactive = Source(type="rss", url="https://d.test/feed", active=False)
    youtube = Source(type="youtube_channel", url="https://www.youtube.com/channel/UCx")
    add(ctx.session_factory, never, due, later, inactive, youtube)

    result = run_task("ingest-pull", {}, ctx)

    assert result["due"] == 2
    sent = ctx.sent("ingest-source")
    assert {p["sourceId"] for p in sent} == {str(never.id), str(due.id)}
    assert all(p["reason"] == "schedule" and p["force"] is False for p in sent)
    # the claimed sources are leased: an immediate second pull finds nothing due
    assert run_task("ingest-pull", {}, ctx)["due"] == 0
    with ctx.session_factory() as session:
        leased = session.get_one(Source, never.id).next_check_at
        assert leased is not None and leased > now + dt.timedelta(minutes=10)


def test_manual_force_takes_every_active_source(ctx: RecordingContext) -> None:
    now = dt.datetime.now(dt.UTC)
    later = Source(type="rss", url="https://c.test/feed", next_check_at=now + dt.timedelta(hours=1))
    inactive = Source(type="rss", url="https://d.test/feed", active=False)
    add(ctx.session_factory, later, inactive)
    result = run_task("ingest-pull", {"reason": "manual", "force": True}, ctx)
    assert result["enqueued"] == [str(later.id)]
    assert ctx.sent("ingest-source") == [{"sourceId": str(later.id), "reason": "manual", "force": True}]


def test_no_sources(ctx: RecordingContext) -> None:
    assert run_task("ingest-pull", {"reason": "schedule"}, ctx) == {"due": 0, "enqueued": []}
    assert "ingest_pull_no_sources" in ctx.logger.messages()
