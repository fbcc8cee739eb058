from __future__ import annotations

import base64
import uuid

import pytest
from sqlalchemy import select

from tasks.db.models import RawItem, Source, Story
from tasks.lib.errors import NotFound
from tests.tasks.helpers import FIXTURES, RecordingContext, make_pdf, run_task

NOTES = (FIXTURES / "pages/notes.md").read_text()
PAGE = (FIXTURES / "pages/quillstack.html").read_text()


def _stories(ctx: RecordingContext) -> dict[str, Story]:
    with ctx.session_factory() as session:
        return {s.content.content_type: s for s in session.scalars(select(Story))}


def test_each_format_becomes_a_story(ctx: RecordingContext) -> None:
    pdf = make_pdf(
        ["Quarterly report on model serving costs."] + ["Costs fell 30% after batching."] * 4, "Q4"
    )
    items = [
        {"externalId": "txt-1", "text": "Plain notes about the release.\n\n" + "The rollout went fine. " * 8},
        {"externalId": "md-1", "filename": "notes.md", "text": NOTES},
        {"externalId": "html-1", "mediaType": "text/html", "text": PAGE, "url": "https://news.test/quill"},
        {"externalId": "pdf-1", "filename": "report.pdf", "dataBase64": base64.b64encode(pdf).decode()},
    ]
    result = run_task("ingest-from-upload", {"items": items, "uploadedBy": "user_7"}, ctx)

    assert result["counts"] == {"stored": 4} and len(result["storiesCreated"]) == 4
    stories = _stories(ctx)
    assert set(stories) == {"text", "markdown", "html", "pdf"}
    assert stories["markdown"].title == "Release notes: tidewire 0.9" and stories["markdown"].kind == "note"
    assert "```python" in stories["markdown"].content.text
    assert (
        stories["html"].title == "Quillstack 3.0 rewrites its build graph"
        and stories["html"].kind == "article"
    )
    assert "Privacy" not in stories["html"].content.text
    assert (
        stories["pdf"].kind == "pdf" and stories["pdf"].title == "Q4" and "30%" in stories["pdf"].content.text
    )
    with ctx.session_factory() as session:
        source = session.scalars(select(Source)).one()
        assert (source.type, source.url) == ("upload", "upload://default")
        assert {i.metadata_["uploadedBy"] for i in session.scalars(select(RawItem))} == {"user_7"}
    assert len(ctx.sent("analyze-story")) == 4

    again = run_task("ingest-from-upload", {"items": items}, ctx)
    assert again["counts"] == {"duplicate": 4} and again["storiesCreated"] == []


def test_bad_items_fail_alone_and_url_items_are_fetched(ctx: RecordingContext) -> None:
    source = Source(type="upload", url="upload://team-x", name="Team X uploads")
    with ctx.session_factory.begin() as session:
        session.add(source)
    items = [
        {"externalId": "ok", "text": NOTES},
        {"externalId": "tiny", "text": "too short"},
        {"externalId": "bad64", "dataBase64": "***not base64***", "filename": "x.pdf"},
        {"externalId": "badpdf", "dataBase64": base64.b64encode(b"%PDF-1.4 garbage").decode()},
        {"externalId": "link", "url": "https://news.test/later"},
    ]
    result = run_task("ingest-from-upload", {"sourceId": str(source.id), "items": items}, ctx)
    statuses = {r["externalId"]: r["status"] for r in result["items"]}
    assert statuses == {
        "ok": "stored",
        "tiny": "failed",
        "bad64": "failed",
        "badpdf": "failed",
        "link": "pending_fetch",
    }
    assert [r["index"] for r in result["items"]] == [0, 1, 2, 3, 4]
    errors = [r["error"] for r in result["items"] if r["status"] == "failed"]
    assert "characters of text" in errors[0] and "base64" in errors[1] and "PDF" in errors[2]
    link = next(r for r in result["items"] if r["status"] == "pending_fetch")
    assert ctx.sent("fetch-content") == [{"rawItemIds": [link["rawItemId"]], "force": False}]


def test_unknown_source_and_limits(ctx: RecordingContext) -> None:
    with pytest.raises(NotFound):
        run_task("ingest-from-upload", {"sourceId": str(uuid.uuid4()), "items": [{"text": NOTES}]}, ctx)
    small = ctx.with_settings(fetch_max_bytes=100)
    result = run_task("ingest-from-upload", {"items": [{"text": NOTES}]}, small)
    assert result["counts"] == {"failed": 1} and "larger than 100 bytes" in result["items"][0]["error"]


def _broken_pdf() -> bytes:
    """A PDF whose trailer is mangled: pypdf raises AttributeError on it, not one of its own errors."""
    pdf = make_pdf(["Quarterly report on model serving costs."] * 5, "Q4").replace(b"trailer\n", b"trailer-")
    assert pdf.count(b"trailer-") == 1
    return pdf


def test_an_item_that_breaks_the_parser_or_the_database_fails_alone(ctx: RecordingContext) -> None:
    """A broken PDF (pypdf's AttributeError) or a NUL in a title or metadata (which PostgreSQL refuses)
    used to escape the item loop: the job failed, and its retry found the good items "duplicate", so
    their stories were never sent to analyze-story."""
    items = [
        {"externalId": "good", "text": NOTES},
        {"externalId": "broken-pdf", "dataBase64": base64.b64encode(_broken_pdf()).decode()},
        {"externalId": "nul-title", "title": "Release\x00 notes", "text": PAGE, "mediaType": "text/html"},
        {
            "externalId": "nul\x00-meta",
            "text": "Plain notes about the rollout.\n\n" + "The rollout went fine. " * 8,
            "metadata": {"tag": "a\x00b", "nested": [{"k\x00": "v\x00"}]},
        },
    ]
    result = run_task("ingest-from-upload", {"items": items, "uploadedBy": "user\x00_7"}, ctx)

    statuses = {r["externalId"]: r["status"] for r in result["items"]}
    assert statuses == {"good": "stored", "broken-pdf": "failed", "nul-title": "stored", "nul-meta": "stored"}
    failed = next(r for r in result["items"] if r["status"] == "failed")
    assert "unreadable PDF: AttributeError" in failed["error"]
    stories = [r["storyId"] for r in result["items"] if r["status"] == "stored"]
    assert sorted(result["storiesCreated"]) == sorted(stories)
    assert sorted(p["storyId"] for p in ctx.sent("analyze-story")) == sorted(stories)
    with ctx.session_factory() as session:
        raws = {r.external_id: r for r in session.scalars(select(RawItem))}
    assert raws["nul-title"].title == "Release notes"
    assert raws["nul-meta"].metadata_["tag"] == "ab" and raws["nul-meta"].metadata_["nested"] == [{"k": "v"}]
    assert raws["good"].metadata_["uploadedBy"] == "user_7"
