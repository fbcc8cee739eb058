from __future__ import annotations

import pytest

from tasks.lib.errors import ExtractionFailed
from tasks.lib.extractive import rank_sentences, top_sentences
from tasks.lib.text import (
    content_hash,
    extract_html,
    extract_markdown,
    extract_pdf,
    extract_plain,
    normalize_text,
    sentences,
    strip_html,
    truncate,
)
from tests.tasks.helpers import FIXTURES, make_pdf


def test_html_extraction_keeps_article_and_code_drops_chrome() -> None:
    html = (FIXTURES / "pages/quillstack.html").read_text()
    extracted = extract_html(html, url="https://news.test/quillstack")
    assert extracted.title == "Quillstack 3.0 rewrites its build graph"
    assert extracted.language == "en" and extracted.format == "html"
    assert "content-addressed build graph" in extracted.text
    assert "```" in extracted.text and 'roots: ["packages/*"]' in extracted.text
    assert "Privacy" not in extracted.text and "Subscribe" not in extracted.text


def test_empty_pages_give_no_text() -> None:
    assert len(extract_html((FIXTURES / "pages/empty.html").read_text()).text) < 40


def test_markdown_keeps_fences_and_link_text() -> None:
    extracted = extract_markdown((FIXTURES / "pages/notes.md").read_text())
    assert extracted.title == "Release notes: tidewire 0.9"
    assert "```python" in extracted.text and "migration guide" in extracted.text
    assert "https://example.test/migrate" not in extracted.text


def test_pdf_text_and_title() -> None:
    extracted = extract_pdf(
        make_pdf(["First line of the report.", "Second (with parentheses)."], title="Report")
    )
    assert extracted.title == "Report" and extracted.format == "pdf"
    assert "First line of the report." in extracted.text and "(with parentheses)" in extracted.text
    with pytest.raises(ExtractionFailed):
        extract_pdf(b"%PDF-1.4 not really a pdf")


def test_hash_ignores_formatting_but_not_words() -> None:
    assert content_hash("a  b\n\nc") == content_hash(" a b c ")
    assert content_hash("a b c") != content_hash("a b d")
    assert normalize_text("x\r\n\r\n\r\n\r\ny  \t z ") == "x\n\ny z"


def test_plain_and_fragments() -> None:
    assert extract_plain("Title line\n\nBody text here.").title == "Title line"
    assert strip_html("<p>One &amp; two</p><p>three</p>") == "One & two\nthree"


def test_sentences_and_truncation() -> None:
    text = "Dr. Smith shipped v2.1 today. It is 3x faster, e.g. on cold starts! Really?"
    text += "\n\n```\ncode. Here\n```\nEnd."
    assert sentences(text) == [
        "Dr. Smith shipped v2.1 today.",
        "It is 3x faster, e.g. on cold starts!",
        "Really?",
        "End.",
    ]
    assert truncate("one two three four", 12) == "one two…"
    assert len(truncate("x" * 300, 140)) == 140
    assert truncate("short", 140) == "short"


def test_extractive_ranking_is_deterministic_and_from_the_text() -> None:
    text = (FIXTURES / "pages/notes.md").read_text()
    first = rank_sentences(text, "tidewire 0.9")
    assert first == rank_sentences(text, "tidewire 0.9")
    picked = top_sentences(text, "tidewire 0.9", 2)
    assert len(picked) == 2 and all(p in " ".join(text.split()) for p in picked)
