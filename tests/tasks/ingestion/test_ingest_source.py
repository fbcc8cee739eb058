from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from tasks.db.models import RawItem, Source, SourceHealth
from tests.tasks.conftest import add
from tests.tasks.helpers import RecordingContext, Reply, SeenRequest, WebServer, run_task


def _source(ctx: RecordingContext, url: str, **kw) -> Source:
    source = Source(type="rss", url=url, name="fixture", **kw)
    add(ctx.session_factory, source)
    return source


def _items(ctx: RecordingContext) -> list[RawItem]:
    with ctx.session_factory() as session:
        return list(session.scalars(select(RawItem).order_by(RawItem.external_id)))


def _health(ctx: RecordingContext, source: Source) -> SourceHealth:
    with ctx.session_factory() as session:
        return session.get_one(SourceHealth, source.id)


def test_rss_entries_become_raw_items_with_canonical_urls(ctx: RecordingContext, web: WebServer) -> None:
    feed = web.fixture("/feed.xml", "feeds/rss.xml", "application/rss+xml")
    source = _source(ctx, feed)

    result = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)

    assert result["status"] == "ok" and result["itemsSeen"] == 3 and result["itemsInserted"] == 3
    items = {i.title: i for i in _items(ctx)}
    quill = items["Quillstack 3.0 & the new build graph"]  # double-escaped in the feed, entities decoded
    assert quill.external_id == "test-dispatch-0001"
    assert quill.canonical_url == web.url("/pages/quillstack.html?ref=home")  # utm_* gone, rest sorted
    assert quill.published_at == dt.datetime(2026, 1, 12, 9, 30, tzinfo=dt.UTC)
    assert quill.summary == "Quillstack 3.0 rewrites its build graph."
    assert quill.kind == "article" and quill.status == "pending"
    latency = items["Latency budget notes for inference servers"]
    # no guid: the canonical link (fragment dropped) is the id; the time zone is normalised to UTC
    assert latency.external_id == latency.canonical_url == web.url("/pages/latency.html")
    assert latency.published_at == dt.datetime(2026, 1, 11, 17, 0, tzinfo=dt.UTC)

    sent = ctx.sent("fetch-content")
    assert len(sent) == 1 and sorted(sent[0]["rawItemIds"]) == sorted(str(i.id) for i in items.values())
    health = _health(ctx, source)
    assert health.status == "ok" and health.consecutive_failures == 0 and health.last_success_at is not None


def test_rerun_is_idempotent(ctx: RecordingContext, web: WebServer) -> None:
    source = _source(ctx, web.fixture("/feed.xml", "feeds/rss.xml", "application/rss+xml"))
    run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    second = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert second["itemsSeen"] == 3 and second["itemsInserted"] == 0
    assert len(_items(ctx)) == 3
    assert len(ctx.sent("fetch-content")) == 1


def test_fetch_content_is_sent_in_chunks(ctx: RecordingContext, web: WebServer) -> None:
    entries = "".join(
        f"<item><title>Item {i}</title><link>{web.base}/p/{i}</link><guid>g{i}</guid></item>"
        for i in range(45)
    )
    web.route("/many.xml", f"<rss version='2.0'><channel><title>t</title>{entries}</channel></rss>")
    source = _source(ctx, web.url("/many.xml"))
    run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert [len(p["rawItemIds"]) for p in ctx.sent("fetch-content")] == [20, 20, 5]


def test_conditional_get_uses_and_stores_validators(ctx: RecordingContext, web: WebServer) -> None:
    etag = '"v1"'
    last_modified = "Mon, 12 Jan 2026 10:00:00 GMT"
    feed = web.fixture("/feed.xml", "feeds/rss.xml", "application/rss+xml")
    data = web.routes["/feed.xml"].body  # type: ignore[union-attr]

    def handler(request: SeenRequest) -> Reply:
        if request.headers.get("if-none-match") == etag:
            return Reply(304, b"", {"ETag": etag})
        return Reply(
            200, data, {"Content-Type": "application/rss+xml", "ETag": etag, "Last-Modified": last_modified}
        )

    web.route("/feed.xml", handler)
    source = _source(ctx, feed)
    first = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert first["status"] == "ok"
    with ctx.session_factory() as session:
        stored = session.get_one(Source, source.id)
        assert (stored.etag, stored.last_modified) == (etag, last_modified)

    second = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert second["status"] == "not_modified" and second["itemsInserted"] == 0
    request = web.hits("/feed.xml")[-1]
    assert request.headers["if-none-match"] == etag and request.headers["if-modified-since"] == last_modified
    assert _health(ctx, source).status == "ok"

    forced = run_task("ingest-source", {"sourceId": str(source.id), "force": True}, ctx)
    assert forced["status"] == "ok" and "if-none-match" not in web.hits("/feed.xml")[-1].headers


def test_atom_feed_with_relative_links_and_html_titles(ctx: RecordingContext, web: WebServer) -> None:
    source = _source(ctx, web.fixture("/atom.xml", "feeds/atom.xml", "application/atom+xml"))
    result = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert result["itemsInserted"] == 2
    items = {i.external_id: i for i in _items(ctx)}
    context = items["tag:model-notes.test,2026:context-windows"]
    assert context.title == "Context windows keep growing"
    assert context.canonical_url == web.url("/pages/latency.html")  # fbclid and gclid dropped
    relative = items["tag:model-notes.test,2026:relative"]
    assert relative.url == web.url("/pages/quillstack.html")
    assert relative.published_at == dt.datetime(2026, 1, 12, 7, 0, tzinfo=dt.UTC)  # updated, no published


def test_broken_feed_with_entries_is_used_and_marked_warn(ctx: RecordingContext, web: WebServer) -> None:
    source = _source(ctx, web.fixture("/broken.xml", "feeds/malformed.xml", "application/rss+xml"))
    result = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert result["status"] == "warn" and result["itemsInserted"] >= 1
    health = _health(ctx, source)
    assert health.status == "warn" and "SAXParseException" in (health.last_error or "")
    assert health.consecutive_failures == 0


def test_not_a_feed_is_an_error_recorded_in_health(ctx: RecordingContext, web: WebServer) -> None:
    source = _source(ctx, web.fixture("/home.html", "feeds/not-a-feed.html"))
    result = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert result["status"] == "error" and result["itemsInserted"] == 0
    health = _health(ctx, source)
    assert health.status == "error" and "feed" in health.last_error
    assert health.consecutive_failures == 1 and health.last_error_at is not None
    assert ctx.sent("fetch-content") == []


def test_wrong_encoding_is_decoded_and_flagged(ctx: RecordingContext, web: WebServer) -> None:
    source = _source(
        ctx, web.fixture("/latin.xml", "feeds/latin1-declared-utf8.xml", "application/rss+xml; charset=utf-8")
    )
    result = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert result["itemsInserted"] == 1 and result["status"] == "warn"
    assert _items(ctx)[0].title == "Naïve résumé parsing considered harmful"


def test_huge_feed_is_refused_by_the_size_cap(ctx: RecordingContext, web: WebServer) -> None:
    item = (
        "<item><title>{0}</title><link>{1}/p/{0}</link><guid>{0}</guid><description>{2}</description></item>"
    )
    body = "<rss version='2.0'><channel><title>big</title>"
    body += "".join(item.format(i, web.base, "x" * 2000) for i in range(600)) + "</channel></rss>"
    web.route("/huge.xml", body, content_type="application/rss+xml")
    source = _source(ctx, web.url("/huge.xml"))
    small = ctx.with_settings(fetch_max_bytes=256 * 1024)
    result = run_task("ingest-source", {"sourceId": str(source.id)}, small)
    assert result["status"] == "error" and "limit" in result["error"]
    assert _items(ctx) == []
    # with room for it, entries are capped at max_feed_items
    roomy = ctx.with_settings(max_feed_items=50)
    result = run_task("ingest-source", {"sourceId": str(source.id)}, roomy)
    assert result["itemsSeen"] == 50 and result["itemsInserted"] == 50


def test_redirecting_feed_is_followed(ctx: RecordingContext, web: WebServer) -> None:
    web.fixture("/new-feed.xml", "feeds/rss.xml", "application/rss+xml")
    web.route("/old-feed", b"", status=301, headers={"Location": "/new-feed.xml"})
    source = _source(ctx, web.url("/old-feed"))
    result = run_task("ingest-source", {"sourceId": str(source.id)}, ctx)
    assert result["status"] == "ok" and result["itemsInserted"] == 3


def test_failures_back_off_and_count_up(ctx: RecordingContext, web: WebServer) -> None:
    web.route("/gone.xml", "gone", status=410)
    web.route("/busy.xml", "slow down", status=429, headers={"Retry-After": "3600"})
    gone = _source(ctx, web.url("/gone.xml"), check_interval_seconds=600)
    busy = _source(ctx, web.url("/busy.xml"), check_interval_seconds=600)
    for _ in range(2):
        result = run_task("ingest-source", {"sourceId": str(gone.id)}, ctx)
    assert result["status"] == "error" and result["httpStatus"] == 410 and result["retryable"] is False
    health = _health(ctx, gone)
    assert health.consecutive_failures == 2 and health.last_http_status == 410
    with ctx.session_factory() as session:
        due = session.get_one(Source, gone.id).next_check_at
    assert due is not None and due - health.last_checked_at == dt.timedelta(seconds=600 * 4)

    result = run_task("ingest-source", {"sourceId": str(busy.id)}, ctx)
    assert result["retryable"] is True
    with ctx.session_factory() as session:
        due = session.get_one(Source, busy.id).next_check_at
    assert due - _health(ctx, busy).last_checked_at >= dt.timedelta(seconds=3600)


def test_missing_inactive_and_wrong_type_sources(ctx: RecordingContext, web: WebServer) -> None:
    import uuid

    assert run_task("ingest-source", {"sourceId": str(uuid.uuid4())}, ctx)["status"] == "missing"
    inactive = _source(ctx, web.url("/feed.xml"), active=False)
    assert run_task("ingest-source", {"sourceId": str(inactive.id)}, ctx)["status"] == "skipped"
    youtube = Source(type="youtube_channel", url="https://www.youtube.com/channel/x")
    add(ctx.session_factory, youtube)
    assert run_task("ingest-source", {"sourceId": str(youtube.id)}, ctx)["status"] == "skipped"
    assert web.requests == []


def test_refuses_private_feed_urls_without_permission(ctx: RecordingContext, web: WebServer) -> None:
    source = _source(ctx, web.fixture("/feed.xml", "feeds/rss.xml", "application/rss+xml"))
    strict = ctx.with_settings(allow_private_urls=False)
    result = run_task("ingest-source", {"sourceId": str(source.id)}, strict)
    assert result["status"] == "error" and "non-public address" in result["error"]
    assert web.requests == []
