"""tasks.lib.feeds on the fixture feeds: RSS, Atom and YouTube entries normalised (ids, canonical
links, dates, summaries), repeats and unusable entries skipped, broken documents told apart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tasks.lib.feeds import MAX_EXTERNAL_ID, FeedUnreadable, parse_feed

FEEDS = Path(__file__).resolve().parents[3] / "fixtures" / "feeds"
BASE = "https://feeds.test"


def feed(name: str) -> bytes:
    return (FEEDS / name).read_bytes().replace(b"{{BASE}}", BASE.encode())


def test_rss_entries_are_normalised() -> None:
    parsed = parse_feed(feed("rss.xml"), url=f"{BASE}/rss.xml", content_type="application/rss+xml")
    assert parsed.title == "Test Dispatch" and parsed.problem is None
    first, second, third = parsed.entries
    assert first.external_id == "test-dispatch-0001"
    assert first.title == "Quillstack 3.0 & the new build graph"  # entities decoded once, then text
    # utm_* are dropped, the remaining parameter kept
    assert first.canonical_url == f"{BASE}/pages/quillstack.html?ref=home"
    assert first.published_at == dt.datetime(2026, 1, 12, 9, 30, tzinfo=dt.UTC)
    assert first.summary == "Quillstack 3.0 rewrites its build graph."
    # no guid: the canonical link is the id; the fragment is not part of it; +0100 is read as such
    assert second.external_id == second.canonical_url == f"{BASE}/pages/latency.html"
    assert second.published_at == dt.datetime(2026, 1, 11, 17, 0, tzinfo=dt.UTC)
    assert third.published_at is None and third.summary is None
    assert third.url == f"{BASE}/pages/missing.html"
    assert parsed.skipped == 1  # the item with neither id nor link


def test_atom_links_resolve_against_the_feed_and_lose_click_ids() -> None:
    parsed = parse_feed(feed("atom.xml"), url=f"{BASE}/atom.xml")
    assert parsed.title == "Model Notes (fixture)"
    windows, relative = parsed.entries
    assert windows.title == "Context windows keep growing"  # HTML in a type="html" title is stripped
    assert windows.canonical_url == f"{BASE}/pages/latency.html"
    assert windows.published_at == dt.datetime(2026, 1, 13, 10, 0, tzinfo=dt.UTC)  # published wins
    assert relative.url == relative.canonical_url == f"{BASE}/pages/quillstack.html"
    assert relative.published_at == dt.datetime(2026, 1, 12, 7, 0, tzinfo=dt.UTC)  # else updated


def test_youtube_entries_carry_their_video_ids() -> None:
    parsed = parse_feed(feed("youtube.xml"), url="https://www.youtube.com/feeds/videos.xml")
    assert [e.video_id for e in parsed.entries] == ["vid-alpha01", "vid-beta002"]
    assert [e.external_id for e in parsed.entries] == ["yt:video:vid-alpha01", "yt:video:vid-beta002"]


def test_a_broken_feed_with_entries_is_read_and_its_problem_kept() -> None:
    parsed = parse_feed(feed("malformed.xml"), url=f"{BASE}/broken.xml", content_type="application/rss+xml")
    assert parsed.problem is not None and "not well-formed" in parsed.problem
    assert parsed.title == "Broken & proud"
    assert [e.title for e in parsed.entries] == [
        "Tools & tricks: an unescaped ampersand",
        "The feed ends before this item closes",
    ]


def test_a_mislabelled_encoding_still_parses() -> None:
    parsed = parse_feed(feed("latin1-declared-utf8.xml"), url=f"{BASE}/latin.xml", content_type="text/xml")
    assert parsed.title == "Café Dispatch"
    assert [e.title for e in parsed.entries] == ["Naïve résumé parsing considered harmful"]
    assert parsed.problem is not None and "windows-1252" in parsed.problem


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="html-page"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\x01\x02 binary", id="binary"),
        pytest.param(b"<html><body><p>not a feed</p></body></html>", id="inline-html"),
    ],
)
def test_what_is_not_a_feed_is_refused(content: bytes | None) -> None:
    with pytest.raises(FeedUnreadable):
        parse_feed(feed("not-a-feed.html") if content is None else content, url=f"{BASE}/x")


def _guid(value: str) -> str:
    return f'<guid isPermaLink="false">{value}</guid>'


def _rss(*items: str) -> bytes:
    body = "".join(f"<item>{item}</item>" for item in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def test_repeated_ids_are_skipped() -> None:
    parsed = parse_feed(_rss(_guid("a"), _guid("a"), _guid("b")), url=BASE)
    assert [e.external_id for e in parsed.entries] == ["a", "b"] and parsed.skipped == 1


def test_the_limit_caps_the_entries() -> None:
    parsed = parse_feed(_rss(*(_guid(f"g{i}") for i in range(10))), url=BASE, limit=3)
    assert [e.external_id for e in parsed.entries] == ["g0", "g1", "g2"]


def test_overlong_ids_are_stored_as_a_hash() -> None:
    long_id = "x" * (MAX_EXTERNAL_ID + 1)
    (entry,) = parse_feed(_rss(_guid(long_id)), url=BASE).entries
    assert entry.external_id.startswith("sha256:") and len(entry.external_id) == len("sha256:") + 64


def test_dates_before_1990_are_not_dates() -> None:
    epoch = "<pubDate>Thu, 01 Jan 1970 00:00:00 GMT</pubDate>"
    (entry,) = parse_feed(_rss(_guid("old") + epoch), url=BASE).entries
    assert entry.published_at is None


def test_links_that_are_not_http_leave_the_entry_without_a_url() -> None:
    (entry,) = parse_feed(_rss(_guid("j") + "<link>javascript:alert(1)</link>"), url=BASE).entries
    assert entry.url is None and entry.canonical_url is None and entry.external_id == "j"


def test_a_plain_rss_guid_is_resolved_like_a_link() -> None:
    # RSS says a guid is a permalink unless isPermaLink="false"; feedparser resolves it as one.
    (entry,) = parse_feed(_rss("<guid>item-7</guid>"), url=f"{BASE}/feed.xml").entries
    assert entry.external_id == f"{BASE}/item-7"
