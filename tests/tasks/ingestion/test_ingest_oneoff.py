from __future__ import annotations

import pytest
from sqlalchemy import select

from tasks.db.models import RawItem, Source
from tasks.lib.errors import UnsafeURL
from tests.tasks.helpers import RecordingContext, WebServer, drain, run_task


def test_queues_a_fetch_for_a_new_url(ctx: RecordingContext, web: WebServer) -> None:
    url = web.fixture("/pages/latency.html", "pages/latency.html")
    result = run_task(
        "ingest-oneoff", {"url": url + "?utm_source=newsletter#top", "requestedBy": "user_42"}, ctx
    )

    assert result["status"] == "queued" and result["canonicalUrl"] == url
    with ctx.session_factory() as session:
        item = session.scalars(select(RawItem)).one()
        source = session.get_one(Source, item.source_id)
    assert (source.type, source.name, source.url) == ("manual", "127.0.0.1", "manual://127.0.0.1")
    assert item.external_id == url and item.metadata_["requestedBy"] == "user_42"
    assert ctx.sent("fetch-content") == [{"rawItemIds": [str(item.id)], "force": False}]

    drain(ctx, skip=frozenset({"analyze-story"}))
    dup = run_task("ingest-oneoff", {"url": url + "?fbclid=zzz"}, ctx)
    assert dup["status"] == "duplicate" and dup["rawItemId"] == str(item.id) and dup["storyId"]
    assert ctx.sent("fetch-content") == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/admin",
        "http://localhost:6379/",
        "http://10.0.0.8/internal",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::1]:8080/",
        "http://[::ffff:192.168.0.1]/",
        "file:///etc/passwd",
        "not a url",
    ],
)
def test_refuses_unsafe_targets(ctx: RecordingContext, url: str) -> None:
    strict = ctx.with_settings(allow_private_urls=False)
    with pytest.raises(UnsafeURL):
        run_task("ingest-oneoff", {"url": url}, strict)
    assert strict.triggered == []
    with ctx.session_factory() as session:
        assert session.scalars(select(RawItem)).first() is None


def test_allowed_networks_open_a_hole(ctx: RecordingContext, web: WebServer) -> None:
    url = web.fixture("/pages/latency.html", "pages/latency.html")
    scoped = ctx.with_settings(allow_private_urls=False, allowed_networks=("127.0.0.0/8",))
    assert run_task("ingest-oneoff", {"url": url}, scoped)["status"] == "queued"
