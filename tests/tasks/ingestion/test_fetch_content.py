from __future__ import annotations

import uuid

from sqlalchemy import func, select

from tasks.db.models import Content, RawItem, Source, Story
from tests.tasks.conftest import add
from tests.tasks.helpers import RecordingContext, WebServer, make_pdf, run_task


def _raw(ctx: RecordingContext, url: str | None, *, source: Source | None = None, **kw) -> RawItem:
    if source is None:
        source = Source(type="rss", url=f"{url}#feed-{uuid.uuid4().hex[:6]}", name="src", authority=0.8)
        add(ctx.session_factory, source)
    item = RawItem(
        source_id=source.id, external_id=kw.pop("external_id", url or uuid.uuid4().hex), url=url, **kw
    )
    add(ctx.session_factory, item)
    return item


def _get(ctx: RecordingContext, item: RawItem) -> RawItem:
    with ctx.session_factory() as session:
        return session.get_one(RawItem, item.id)


def test_fetches_extracts_and_makes_a_story(ctx: RecordingContext, web: WebServer) -> None:
    url = web.fixture("/pages/quillstack.html", "pages/quillstack.html")
    item = _raw(ctx, url, canonical_url=url, title="feed title")

    result = run_task("fetch-content", {"rawItemIds": [str(item.id)]}, ctx)

    assert result["counts"] == {"fetched": 1} and len(result["storiesCreated"]) == 1
    with ctx.session_factory() as session:
        story = session.scalars(select(Story)).one()
        content = story.content
        assert story.title == "Quillstack 3.0 rewrites its build graph"
        assert story.url == url and story.source_id == item.source_id and story.kind == "article"
        assert "content-addressed build graph" in content.text
        assert "```" in content.text and "defineGraph" in content.text  # code kept as a fenced block
        assert (
            "All rights reserved" not in content.text and "Subscribe" not in content.text
        )  # boilerplate gone
        assert content.language == "en" and content.content_type == "html" and len(content.content_hash) == 64
    fetched = _get(ctx, item)
    assert fetched.status == "fetched" and fetched.content_id == content.id and fetched.fetch_attempts == 1
    assert ctx.sent("analyze-story") == [{"storyId": str(story.id), "trigger": "auto"}]


def test_same_text_from_two_urls_is_one_story(ctx: RecordingContext, web: WebServer) -> None:
    a = web.fixture("/a.html", "pages/latency.html")
    b = web.fixture("/b.html", "pages/latency.html")
    first, second = _raw(ctx, a), _raw(ctx, b)
    result = run_task("fetch-content", {"rawItemIds": [str(first.id), str(second.id)]}, ctx)
    assert result["counts"] == {"fetched": 2} and len(result["storiesCreated"]) == 1
    with ctx.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Story)) == 1
        assert session.scalar(select(func.count()).select_from(Content)) == 1
    assert _get(ctx, first).content_id == _get(ctx, second).content_id
    assert len(ctx.sent("analyze-story")) == 1


def test_known_canonical_url_is_not_fetched_again(ctx: RecordingContext, web: WebServer) -> None:
    url = web.fixture("/pages/latency.html", "pages/latency.html")
    first = _raw(ctx, url, canonical_url=url)
    run_task("fetch-content", {"rawItemIds": [str(first.id)]}, ctx)
    other = _raw(ctx, url + "?utm_source=x", canonical_url=url, external_id="other-feed-guid")
    result = run_task("fetch-content", {"rawItemIds": [str(other.id)]}, ctx)
    assert result["counts"] == {"duplicate": 1}
    assert len(web.hits("/pages/latency.html")) == 1
    assert _get(ctx, other).content_id == _get(ctx, first).content_id


def test_one_bad_item_does_not_fail_the_others(ctx: RecordingContext, web: WebServer) -> None:
    good = _raw(ctx, web.fixture("/good.html", "pages/quillstack.html"))
    missing = _raw(ctx, web.url("/nope.html"))
    empty = _raw(ctx, web.fixture("/empty.html", "pages/empty.html"))
    image = _raw(ctx, web.route("/cat.png", b"\x89PNG....", content_type="image/png"))
    flaky = _raw(ctx, web.route("/flaky.html", "try later", status=503, headers={"Retry-After": "42"}))
    no_url = _raw(ctx, None, external_id="no-url")
    ids = [str(i.id) for i in (good, missing, empty, image, flaky, no_url)] + [str(uuid.uuid4())]

    result = run_task("fetch-content", {"rawItemIds": ids}, ctx)

    assert result["counts"] == {"fetched": 1, "failed": 4, "retrying": 1, "missing": 1}
    assert _get(ctx, good).status == "fetched"
    for item, needle in (
        (missing, "HTTP 404"),
        (empty, "no text"),
        (image, "content type"),
        (no_url, "no URL"),
    ):
        row = _get(ctx, item)
        assert row.status == "failed" and needle in row.fetch_error and row.fetch_attempts == 1, needle
    flaky_row = _get(ctx, flaky)
    assert flaky_row.status == "pending" and "503" in flaky_row.fetch_error
    retry = [t for t in ctx.triggered if t.task_id == "fetch-content"]
    assert len(retry) == 1 and retry[0].payload["rawItemIds"] == [str(flaky.id)]
    assert retry[0].options == {"countdown": 42.0}
    assert len(ctx.sent("analyze-story")) == 1


def test_transient_failures_give_up_after_max_attempts(ctx: RecordingContext, web: WebServer) -> None:
    flaky = _raw(ctx, web.route("/flaky.html", "down", status=500))
    for _ in range(3):
        result = run_task("fetch-content", {"rawItemIds": [str(flaky.id)]}, ctx)
    assert result["counts"] == {"failed": 1}
    row = _get(ctx, flaky)
    assert row.status == "failed" and row.fetch_attempts == 3
    # a failed item is skipped unless forced
    assert run_task("fetch-content", {"rawItemIds": [str(flaky.id)]}, ctx)["counts"] == {"skipped": 1}
    web.fixture("/flaky.html", "pages/latency.html")
    forced = run_task("fetch-content", {"rawItemIds": [str(flaky.id)], "force": True}, ctx)
    assert forced["counts"] == {"fetched": 1}


def test_already_fetched_items_are_skipped(ctx: RecordingContext, web: WebServer) -> None:
    item = _raw(ctx, web.fixture("/p.html", "pages/latency.html"))
    run_task("fetch-content", {"rawItemIds": [str(item.id)]}, ctx)
    again = run_task("fetch-content", {"rawItemIds": [str(item.id), str(item.id)]}, ctx)
    assert again["counts"] == {"already_fetched": 1}
    assert len(web.hits("/p.html")) == 1


def test_size_cap_and_slow_servers(ctx: RecordingContext, web: WebServer) -> None:
    body = "<p>" + "word " * 50_000 + "</p>"
    declared = _raw(ctx, web.route("/big.html", body))
    streamed = _raw(ctx, web.route("/big-stream.html", body, length=False))
    slow = _raw(ctx, web.route("/slow.html", "<p>" + "slow " * 200 + "</p>", drip=0.2))
    tight = ctx.with_settings(fetch_max_bytes=10_000, fetch_timeout=1.0)
    result = run_task("fetch-content", {"rawItemIds": [str(i.id) for i in (declared, streamed, slow)]}, tight)
    assert result["counts"] == {"failed": 2, "retrying": 1}
    assert "the limit is 10000" in _get(ctx, declared).fetch_error  # refused on Content-Length
    assert "larger than 10000 bytes" in _get(ctx, streamed).fetch_error  # refused while reading
    assert "longer than" in _get(ctx, slow).fetch_error


def test_plain_text_and_pdf_pages(ctx: RecordingContext, web: WebServer) -> None:
    text = "Plain text release notes.\n\n" + "The scheduler is now 20% faster on cold starts. " * 5
    plain = _raw(ctx, web.route("/notes.txt", text, content_type="text/plain; charset=utf-8"))
    pdf_bytes = make_pdf(
        ["Benchmarks for the new tokenizer.", "Throughput rose to 9,000 tokens per second on one core."] * 3,
        title="Tokenizer report",
    )
    pdf = _raw(ctx, web.route("/report.pdf", pdf_bytes, content_type="application/pdf"))
    result = run_task("fetch-content", {"rawItemIds": [str(plain.id), str(pdf.id)]}, ctx)
    assert result["counts"] == {"fetched": 2}
    with ctx.session_factory() as session:
        stories = {s.kind: s for s in session.scalars(select(Story))}
        assert stories["pdf"].title == "Tokenizer report"
        assert "9,000 tokens per second" in stories["pdf"].content.text
        assert stories["article"].content.content_type == "text"


def test_private_targets_are_refused_without_permission(ctx: RecordingContext, web: WebServer) -> None:
    item = _raw(ctx, web.fixture("/p.html", "pages/latency.html"))
    strict = ctx.with_settings(allow_private_urls=False)
    result = run_task("fetch-content", {"rawItemIds": [str(item.id)]}, strict)
    assert result["counts"] == {"failed": 1} and "non-public" in result["errors"][str(item.id)]
    assert web.requests == []


def test_redirects_to_private_targets_are_refused(ctx: RecordingContext, web: WebServer) -> None:
    web.fixture("/page.html", "pages/latency.html")
    hop = _raw(ctx, web.route("/hop", b"", status=302, headers={"Location": "/page.html"}))
    sneaky = _raw(
        ctx, web.route("/sneaky", b"", status=302, headers={"Location": "http://169.254.169.254/latest/"})
    )
    only_this_server = ctx.with_settings(allow_private_urls=False, allowed_networks=("127.0.0.1/32",))
    result = run_task("fetch-content", {"rawItemIds": [str(hop.id), str(sneaky.id)]}, only_this_server)
    assert result["counts"] == {"fetched": 1, "failed": 1}
    assert "169.254.169.254" in _get(ctx, sneaky).fetch_error
    with ctx.session_factory() as session:
        story = session.scalars(select(Story)).one()
        assert story.content.html_url == web.url("/page.html")  # where the text really came from


def test_a_broken_pdf_is_a_permanent_failure(ctx: RecordingContext, web: WebServer) -> None:
    """pypdf raises AttributeError on a mangled trailer; it used to count as a transient failure, so the
    same bytes were downloaded and parsed again until fetch_max_attempts."""
    broken = make_pdf(["Benchmarks for the new tokenizer."] * 5).replace(b"trailer\n", b"trailer-")
    item = _raw(ctx, web.route("/broken.pdf", broken, content_type="application/pdf"))
    result = run_task("fetch-content", {"rawItemIds": [str(item.id)]}, ctx)
    assert result["counts"] == {"failed": 1} and result["retrying"] == []
    row = _get(ctx, item)
    assert row.status == "failed" and row.fetch_attempts == 1
    assert "unreadable PDF: AttributeError" in row.fetch_error
    assert ctx.triggered == []
