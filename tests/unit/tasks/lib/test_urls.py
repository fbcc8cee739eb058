"""tasks.lib.urls.canonicalize_url: one spelling per document, and refusals for what is not a web URL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.lib.urls import canonicalize_url, hostname, is_tracking_param


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.COM/a", "https://example.com/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com/a#section", "https://example.com/a"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
        ("https://example.com/a?utm_source=x&utm_medium=y&id=3", "https://example.com/a?id=3"),
        ("https://example.com/a?FBCLID=1&gclid=2&mc_cid=3", "https://example.com/a"),
        ("https://example.com/a?pk_campaign=1&mtm_kwd=2&page=2", "https://example.com/a?page=2"),
        ("https://example.com/a?empty=", "https://example.com/a?empty="),
        ("https://example.com./a", "https://example.com/a"),
        ("https://bücher.example/a", "https://xn--bcher-kva.example/a"),
        ("https://[::1]:8080/a", "https://[::1]:8080/a"),
        ("  https://example.com/a  ", "https://example.com/a"),
        ("https://user:pw@example.com/a", "https://user:pw@example.com/a"),
    ],
)
def test_canonical_spelling(url: str, canonical: str) -> None:
    assert canonicalize_url(url) == canonical


@pytest.mark.parametrize(
    ("relative", "base", "canonical"),
    [
        ("/b", "https://example.com/a/", "https://example.com/b"),
        ("c?x=1", "https://example.com/a/", "https://example.com/a/c?x=1"),
        ("//other.test/d", "https://example.com/", "https://other.test/d"),
    ],
)
def test_relative_urls_resolve_against_the_base(relative: str, base: str, canonical: str) -> None:
    assert canonicalize_url(relative, base=base) == canonical


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/a", "not an http"),
        ("javascript:alert(1)", "not an http"),
        ("/relative/without/base", "not an http"),
        ("", "not an http"),
        ("https:///no-host", "no host"),
        ("https://example.com:99999/", "bad port"),
        ("https://exa\x00mple.com/", "control character"),
    ],
)
def test_what_is_not_a_web_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        canonicalize_url(url)


def test_refusals_do_not_echo_passwords() -> None:
    with pytest.raises(ValueError) as refused:
        canonicalize_url("ftp://user:hunter2@example.com/")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("name", ["utm_source", "UTM_Campaign", "fbclid", "gclid", "_ga", "pk_kwd"])
def test_tracking_params(name: str) -> None:
    assert is_tracking_param(name)


@pytest.mark.parametrize("name", ["id", "page", "q", "utm", "ref"])
def test_ordinary_params(name: str) -> None:
    assert not is_tracking_param(name)


def test_hostname_is_lower_case() -> None:
    assert hostname("https://Example.COM:8080/x") == "example.com" and hostname("not a url") == ""


PATHS = st.lists(st.text(alphabet="abcXYZ019-_~", min_size=1, max_size=8), max_size=4).map("/".join)
PARAMS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "id", "utm_source", "fbclid", "page"]), st.text("xyz01", max_size=3)
    ),
    max_size=5,
)


@given(
    st.sampled_from(["http", "https", "HTTPS"]),
    st.sampled_from(["example.com", "EXAMPLE.com", "sub.example.org."]),
    PATHS,
    PARAMS,
    st.sampled_from(["", "#frag"]),
)
def test_canonical_urls_are_fixed_points_without_tracking(
    scheme: str, host: str, path: str, params: list[tuple[str, str]], fragment: str
) -> None:
    query = "&".join(f"{k}={v}" for k, v in params)
    url = f"{scheme}://{host}/{path}" + (f"?{query}" if query else "") + fragment
    canonical = canonicalize_url(url)
    assert canonicalize_url(canonical) == canonical
    assert "#" not in canonical and "utm_source" not in canonical and "fbclid" not in canonical
    assert canonical.startswith(("http://", "https://"))
