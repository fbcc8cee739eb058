"""tasks.samples: the sample files are complete and the sample server serves them."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.request import Request, urlopen

import httpx
import pytest

from tasks.samples import SAMPLES_DIR, YOUTUBE_CHANNEL_ID, serve_samples


@pytest.fixture
def samples() -> Iterator[str]:
    base, stop = serve_samples()
    yield base
    stop()


def test_sample_server(samples: str) -> None:
    with httpx.Client(base_url=samples) as client:
        feed = client.get("/feeds/byteline.xml")
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/rss+xml")
        assert f"{samples}/articles/ferrite-2.html" in feed.text and "{{BASE}}" not in feed.text
        assert (
            client.get("/feeds/byteline.xml", headers={"If-None-Match": feed.headers["etag"]}).status_code
            == 304
        )
        assert client.get("/feeds/model-notes.xml").headers["content-type"].startswith("application/atom+xml")
        assert "Ferrite 2.0" in client.get("/articles/ferrite-2.html").text
        yt = client.get("/youtube/feeds/videos.xml", params={"channel_id": YOUTUBE_CHANNEL_ID})
        assert yt.status_code == 200 and "zkDemo00001" in yt.text
        for bad in ("/articles/../__init__.py", "/feeds/nope.xml", "/articles/%2e%2e.html", "/secret"):
            assert client.get(bad).status_code == 404, bad
    with urlopen(Request(samples + "/", method="HEAD")) as response:
        assert response.status == 200


def test_sample_files_are_complete() -> None:
    feeds = sorted(p.name for p in SAMPLES_DIR.glob("feed-*.xml"))
    assert feeds == ["feed-byteline.xml", "feed-model-notes.xml", "feed-ops-digest.xml"]
    items = sum(
        p.read_text().count("<item>") + p.read_text().count("<entry>") for p in SAMPLES_DIR.glob("feed-*.xml")
    )
    assert 10 <= items <= 15
    assert len(list(SAMPLES_DIR.glob("article-*.html"))) == 12
