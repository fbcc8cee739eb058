"""transport.redact: passwords out of URLs and out of text that quotes them."""

from __future__ import annotations

import pytest

from transport.redact import passwords, redact, redact_url, split_password


@pytest.mark.parametrize(
    ("url", "shown", "bare", "password"),
    [
        ("pgboss://u:s3%40cret@h:5/db?x=1", "pgboss://u:**@h:5/db?x=1", "pgboss://u@h:5/db?x=1", "s3@cret"),
        (
            "postgresql://u@h/db?sslmode=require&password=s3cret&a=b",
            "postgresql://u@h/db?sslmode=require&password=**&a=b",
            "postgresql://u@h/db?sslmode=require&a=b",
            "s3cret",
        ),
        ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=**", "postgresql://u@h/db",
         "s3cret"),
        # pgserver's URLs: an empty password and a socket directory
        ("postgresql://postgres:@/postgres?host=/tmp/x", "postgresql://postgres:@/postgres?host=/tmp/x",
         "postgresql://postgres:@/postgres?host=/tmp/x", None),
        ("https://feeds.example/rss?page=2", "https://feeds.example/rss?page=2", "https://feeds.example/rss?page=2",
         None),
    ],
)  # fmt: skip
def test_urls(url: str, shown: str, bare: str, password: str | None) -> None:
    assert redact_url(url) == shown
    assert split_password(url) == (bare, password)


def test_keyword_dsns_and_quoted_fragments() -> None:
    assert redact_url("host=h password=s3cret dbname=x") == "host=h password=** dbname=x"
    assert passwords("host=h password='s3 cret' dbname=x") == {"s3 cret"}
    # libpq quoting the malformed token of a URL it could not parse: only the URL's password is known
    url = "postgresql://u:s3cr%ZZet@h/db"
    assert redact('invalid percent-encoded token: "s3cr%ZZet"', url) == 'invalid percent-encoded token: "**"'
    assert redact('bad URI: "postgresql://u:s3cret@[bad/db"') == 'bad URI: "postgresql://u:**@[bad/db"'
    assert redact("nothing to hide", None, "postgresql://u@h/db") == "nothing to hide"


def test_a_query_password_moves_where_celery_masks_it() -> None:
    from celery.app.utils import filter_hidden_settings

    from zeke.database import broker_url

    url = broker_url("postgresql://u@h/db?sslmode=require&password=s3cret")
    assert url == "pgboss://u:s3cret@h/db?sslmode=require"
    shown = filter_hidden_settings({"broker_url": url, "result_backend": url})
    assert "s3cret" not in repr(shown) and shown["result_backend"].startswith("pgboss://u:********@h/db")
