"""transport.redact over generated passwords: whatever a password holds, it never survives redaction
of the URL carrying it (as written or percent-encoded), nor of text that quotes it."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import assume, given
from hypothesis import strategies as st

from transport.redact import MASK, passwords, redact, redact_url, split_password

# Passwords as people make them: printable, no whitespace; at least 3 characters (redact() leaves
# shorter ones alone, they would blank out ordinary words).
PASSWORDS = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="@*"), min_size=3, max_size=24
)


@given(PASSWORDS)
def test_an_encoded_password_leaves_the_url(password: str) -> None:
    # A password that is part of the rest of the URL ("pos", "app") would be "found" in what is shown.
    assume(quote(password, safe="") not in "postgresql://zeke:@db.example:5432/app")
    url = f"postgresql://zeke:{quote(password, safe='')}@db.example:5432/app"
    shown = redact_url(url)
    assert quote(password, safe="") not in shown.replace(MASK, "")
    assert shown == f"postgresql://zeke:{MASK}@db.example:5432/app"
    assert password in passwords(url)


@given(PASSWORDS)
def test_split_password_gives_it_back_decoded(password: str) -> None:
    url = f"postgresql://zeke:{quote(password, safe='')}@db.example/app"
    bare, found = split_password(url)
    assert found == password and bare == "postgresql://zeke@db.example/app"


@given(PASSWORDS, st.text(max_size=40))
def test_text_quoting_the_password_is_redacted(password: str, around: str) -> None:
    assume(MASK not in around)
    url = f"postgresql://zeke:{quote(password, safe='')}@db/app"
    text = f'{around} invalid percent-encoded token: "{password}" {around}'
    assert password not in redact(text, url)


@given(PASSWORDS)
def test_a_query_password_is_redacted_and_split(password: str) -> None:
    encoded = quote(password, safe="")
    assume(encoded not in "postgresql://db/app?sslmode=require&password=")
    url = f"postgresql://db/app?sslmode=require&password={encoded}"
    assert encoded not in redact_url(url).replace(MASK, "")
    bare, found = split_password(url)
    assert found == password and bare == "postgresql://db/app?sslmode=require"


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz :/.", max_size=60))
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assume("password" not in text and "@" not in text)
    assert redact(text) == text
