"""tasks.lib.text's invariants over generated input: truncation bounds, NUL removal everywhere,
normalisation that is a fixed point, and hashes that ignore whitespace only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.lib.text import Extracted, content_hash, drop_nul, normalize_text, sentences, truncate

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=300)


@given(TEXT, st.integers(min_value=1, max_value=120))
def test_truncate_never_exceeds_its_limit(text: str, limit: int) -> None:
    assert len(truncate(text, limit)) <= limit


@given(TEXT)
def test_truncate_keeps_short_text_whole_apart_from_whitespace(text: str) -> None:
    assert truncate(text, 10_000) == " ".join(text.split())


def test_truncate_cuts_at_a_word_and_marks_the_cut() -> None:
    assert truncate("alpha beta gamma delta", 14) == "alpha beta…"
    assert truncate("alpha, beta gamma", 9) == "alpha…"  # trailing punctuation before the cut goes
    assert truncate("abcdefghij", 5) == "abcd…"  # one long word is cut inside it


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*_strings(k), *_strings(v)]]
    return []


@given(JSONISH)
def test_drop_nul_leaves_no_nul_in_any_string_or_key(value: object) -> None:
    cleaned = drop_nul(value)
    assert all("\x00" not in s for s in _strings(cleaned))


@given(JSONISH.filter(lambda v: all("\x00" not in s for s in _strings(v))))
def test_drop_nul_changes_nothing_without_nul(value: object) -> None:
    assert drop_nul(value) == value


def test_extracted_drops_nul_from_text_and_title() -> None:
    doc = Extracted("a\x00b", "t\x00")
    assert (doc.text, doc.title) == ("ab", "t")


@given(TEXT)
def test_normalize_text_is_a_fixed_point(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "\x00" not in once and "\r" not in once and "\n\n\n" not in once


def test_normalize_text_keeps_code_indentation() -> None:
    text = "para   with   spaces\n```\n    indented  code\n```\n\n\n\nend"
    assert normalize_text(text) == "para with spaces\n```\n    indented  code\n```\n\nend"


@given(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=6), min_size=1, max_size=8), st.data())
def test_content_hash_ignores_whitespace_only(words: list[str], data: st.DataObject) -> None:
    separators = data.draw(
        st.lists(
            st.sampled_from([" ", "  ", "\n", "\t", " \n "]), min_size=len(words) - 1, max_size=len(words) - 1
        )
    )
    spaced = words[0] + "".join(sep + word for sep, word in zip(separators, words[1:], strict=True))
    assert content_hash(spaced) == content_hash(" ".join(words))
    assert content_hash(" ".join(words)) != content_hash(" ".join(words) + " extra")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three?", ["One.", "Two!", "Three?"]),
        ("Use e.g. a queue. Then stop.", ["Use e.g. a queue.", "Then stop."]),
        ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
        ("# Heading\n\nBody text here.", ["Body text here."]),
        ("Before.\n\n```\ncode. Not. Sentences.\n```\n\nAfter.", ["Before.", "After."]),
        ("version 3.0 ships today. Yes.", ["version 3.0 ships today.", "Yes."]),
    ],
)
def test_sentences(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected
