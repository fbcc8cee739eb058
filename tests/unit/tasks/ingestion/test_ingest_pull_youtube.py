"""tasks.ingestion.ingest_pull_youtube: channel ids from the forms users paste."""

from __future__ import annotations

from tasks.ingestion.ingest_pull_youtube import channel_id_of, feed_url

CHANNEL = "UCzekeFixture0000000000a"


def test_channel_ids() -> None:
    assert channel_id_of(f"https://www.youtube.com/channel/{CHANNEL}") == CHANNEL
    assert channel_id_of(f"https://www.youtube.com/channel/{CHANNEL}/videos?view=0") == CHANNEL
    assert channel_id_of(f"https://www.youtube.com/feeds/videos.xml?channel_id={CHANNEL}") == CHANNEL
    assert channel_id_of(CHANNEL) == CHANNEL
    assert channel_id_of("https://www.youtube.com/@somehandle", {"channel_id": CHANNEL}) == CHANNEL
    assert channel_id_of("https://www.youtube.com/@somehandle") is None
    assert feed_url("http://h.test/f.xml", CHANNEL) == f"http://h.test/f.xml?channel_id={CHANNEL}"
