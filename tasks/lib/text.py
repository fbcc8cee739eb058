"""Text helpers: main-text extraction (HTML with trafilatura, PDF with pypdf, Markdown, plain text),
content hashing, sentence splitting and truncation."""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from tasks.lib.errors import ExtractionFailed

_WS = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")
_TAGS = re.compile(r"<[^>]+>")
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")
_HTML_LANG = re.compile(r"<html[^>]*\blang\s*=\s*[\"']?([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)?", re.I)
_MD_TITLE = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.M)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "Mr.", "Ms.", "Dr.", "Inc.", "approx.", "U.S.")


def drop_nul(value: Any) -> Any:
    """``value`` without NUL characters in any string, dict keys included: PostgreSQL text and jsonb
    cannot hold them, and one in a page, a feed or a model's answer must not fail the write."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {drop_nul(k): drop_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [drop_nul(v) for v in value]
    return value


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str | None = None
    language: str | None = None
    #: text | html | markdown | pdf
    format: str = "text"

    def __post_init__(self) -> None:
        # PostgreSQL text cannot hold NUL: one in a page or a PDF title must not fail the whole run.
        for name in ("text", "title"):
            value = getattr(self, name)
            if value and "\x00" in value:
                object.__setattr__(self, name, drop_nul(value))


def normalize_text(text: str) -> str:
    """NFC, Unix newlines, trailing spaces and 3+ blank lines removed, runs of spaces collapsed outside
    fenced code blocks (code keeps its indentation); NUL characters (which PostgreSQL text cannot
    hold) dropped."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = []
    in_code = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            lines.append(line.strip())
        elif in_code:
            lines.append(line.rstrip())
        else:
            lines.append(_WS.sub(" ", line).strip())
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def unescape_markdown(text: str) -> str:
    """Undo the backslash escapes trafilatura adds to Markdown-like characters, outside code blocks."""
    out = []
    in_code = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code:
            line = _MD_ESCAPE.sub(r"\1", line)
        out.append(line)
    return "\n".join(out)


def content_hash(text: str) -> str:
    """SHA-256 of the text with all whitespace collapsed: formatting changes do not make new content."""
    canonical = " ".join(unicodedata.normalize("NFC", text).split())
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def strip_html(fragment: str) -> str:
    """Text of a small HTML fragment (a feed summary)."""
    import html

    if "<" not in fragment and "&" not in fragment:
        return normalize_text(fragment)
    text = html.unescape(_TAGS.sub(" ", re.sub(r"(?i)<br\s*/?>|</p>", "\n", fragment)))
    return normalize_text("\n".join(line.strip() for line in text.split("\n")))


def extract_html(html_text: str, url: str | None = None) -> Extracted:
    """Main text of a web page (code blocks kept as fenced blocks), its title and language."""
    import trafilatura

    text = trafilatura.extract(
        html_text,
        url=url,
        output_format="txt",
        include_comments=False,
        include_tables=True,
        include_formatting=True,
        favor_precision=True,
    )
    if not text:
        # trafilatura gives up on some short pages; recall mode is the fallback before declaring failure.
        text = trafilatura.extract(html_text, url=url, include_comments=False, favor_recall=True)
    metadata = trafilatura.extract_metadata(html_text, default_url=url)
    title = metadata.title if metadata is not None and metadata.title else None
    match = _HTML_LANG.search(html_text[:2048])
    return Extracted(
        normalize_text(unescape_markdown(text or "")),
        title,
        match.group(1).lower() if match else None,
        "html",
    )


def extract_markdown(markdown: str) -> Extracted:
    """Markdown stays Markdown (fenced code matters to highlight extraction), minus link/image syntax."""
    title_match = _MD_TITLE.search(markdown)
    text = _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", markdown))
    return Extracted(
        normalize_text(text), title_match.group(1).strip() if title_match else None, None, "markdown"
    )


def extract_plain(text: str) -> Extracted:
    text = normalize_text(text)
    first = text.split("\n", 1)[0].strip() if text else ""
    return Extracted(text, first[:200] if 0 < len(first) <= 200 else None, None, "text")


def extract_pdf(data: bytes) -> Extracted:
    """Text of every page, and the document title when the PDF has one."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata is not None else None
    except Exception as exc:
        # Untrusted bytes: a broken PDF makes pypdf raise more than its own errors (AttributeError on
        # a mangled trailer, LimitReachedError, RecursionError...). All of them mean "unreadable", and
        # retrying the same bytes would fail the same way.
        raise ExtractionFailed(f"unreadable PDF: {type(exc).__name__}: {exc}") from exc
    return Extracted(normalize_text("\n\n".join(pages)), str(title).strip() if title else None, None, "pdf")


def sentences(text: str) -> list[str]:
    """Sentences of prose, skipping fenced code blocks and headings; good enough for extractive work."""
    prose = re.sub(r"```.*?```", "\n", text, flags=re.S)
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n(?=[#*\-•]\s)", prose):
        paragraph = " ".join(paragraph.split())
        if not paragraph or paragraph.startswith("#"):
            continue
        protected = paragraph
        for i, abbr in enumerate(_ABBREVIATIONS):
            protected = protected.replace(abbr, f"\x00{i}\x00")
        for piece in _SENTENCE_END.split(protected):
            for i, abbr in enumerate(_ABBREVIATIONS):
                piece = piece.replace(f"\x00{i}\x00", abbr)
            piece = piece.strip(" -•*")
            if len(piece) >= 2:
                out.append(piece)
    return out


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """``text`` cut at a word boundary so the result, ellipsis included, is at most ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ellipsis))]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-—") + ellipsis
