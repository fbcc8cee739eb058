"""ingest-from-upload: uploaded documents (plain text, Markdown, HTML, PDF) become contents and stories
directly; items that only carry a URL go to fetch-content.

Each item is independent: a bad one is reported (and recorded on its raw item when it has one) and
the rest go on. Re-sending the same upload is harmless: items are keyed by ``externalId`` (or URL, or
the hash of the bytes) within the source.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import select

from tasks.ai.analyze_story import AnalyzeStoryPayload
from tasks.db.models import RawItem, Source
from tasks.ingestion.fetch_content import FetchContentPayload
from tasks.lib.context import Context, Payload, chunked, send
from tasks.lib.errors import ExtractionFailed, NotFound, PermanentError
from tasks.lib.store import get_or_create_source, insert_raw_item, store_document
from tasks.lib.text import Extracted, drop_nul, extract_html, extract_markdown, extract_pdf, extract_plain
from tasks.lib.urls import canonicalize_url
from transport.redact import redact_url

TASK_ID = "ingest-from-upload"
DEFAULT_SOURCE_URL = "upload://default"

Format = Literal["text", "markdown", "html", "pdf"]
_BY_MEDIA_TYPE: dict[str, Format] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
}
_BY_SUFFIX: dict[str, Format] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}


class UploadItem(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    external_id: str | None = Field(default=None, min_length=1, max_length=512)
    url: str | None = Field(default=None, max_length=4096)
    title: str | None = Field(default=None, max_length=1000)
    #: Explicit format; otherwise from ``mediaType``, the file name, or the bytes.
    format: Format | None = None
    media_type: str | None = None
    filename: str | None = None
    #: The document as text (plain, Markdown or HTML source).
    text: str | None = None
    #: The document's bytes, base64 (needed for PDF).
    data_base64: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_something(self) -> UploadItem:
        if not (self.text or self.data_base64 or self.url):
            raise ValueError("an upload item needs text, dataBase64 or url")
        return self


class IngestFromUploadPayload(Payload):
    task_id = TASK_ID

    #: The upload source; the shared "Uploads" source when omitted.
    source_id: uuid.UUID | None = None
    items: list[UploadItem] = Field(min_length=1, max_length=100)
    uploaded_by: str | None = Field(default=None, max_length=200)


PAYLOAD = IngestFromUploadPayload


def detect_format(item: UploadItem, data: bytes) -> Format:
    if item.format:
        return item.format
    if item.media_type:
        found = _BY_MEDIA_TYPE.get(item.media_type.split(";", 1)[0].strip().lower())
        if found:
            return found
    if item.filename:
        name = item.filename.lower()
        for suffix, found in _BY_SUFFIX.items():
            if name.endswith(suffix):
                return found
    head = data[:1024].lstrip().lower()
    if head.startswith(b"%pdf-"):
        return "pdf"
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
        return "html"
    return "text"


def run(payload: IngestFromUploadPayload, ctx: Context) -> dict:
    with ctx.session_factory.begin() as session:
        if payload.source_id is not None:
            source = session.get(Source, payload.source_id)
            if source is None:
                raise NotFound(f"source {payload.source_id} does not exist")
        else:
            source = get_or_create_source(session, "upload", DEFAULT_SOURCE_URL, name="Uploads")
        source_id = source.id

    results: list[dict] = []
    to_fetch: list[uuid.UUID] = []
    new_stories: list[uuid.UUID] = []
    for index, item in enumerate(payload.items):
        try:
            result = _item(ctx, source_id, item, payload.uploaded_by)
        except Exception as exc:
            # The item boundary: items before this one are committed, and their new stories are only
            # sent to analyze-story after the loop. Letting this escape would fail the job, and its
            # retry would find those items "duplicate" and never analyse their stories.
            error = str(exc) if isinstance(exc, PermanentError) else f"{type(exc).__name__}: {exc}"
            result = {"externalId": drop_nul(item.external_id), "status": "failed", "error": error}
            ctx.logger.warning("ingest_upload_item_failed", index=index, error=error)
        result["index"] = index
        results.append(result)
        if result["status"] == "pending_fetch":
            to_fetch.append(uuid.UUID(result["rawItemId"]))
        if result.get("newStory"):
            new_stories.append(uuid.UUID(result["storyId"]))

    for story_id in new_stories:
        send(ctx, AnalyzeStoryPayload(story_id=story_id, trigger="auto"))
    for ids in chunked(to_fetch, ctx.settings.fetch_chunk_size):
        send(ctx, FetchContentPayload(raw_item_ids=ids))
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    ctx.logger.info("ingest_upload_done", source_id=str(source_id), **counts)
    return {
        "sourceId": str(source_id),
        "counts": counts,
        "storiesCreated": [str(s) for s in new_stories],
        "items": results,
    }


def _item(ctx: Context, source_id: uuid.UUID, item: UploadItem, uploaded_by: str | None) -> dict:
    data = _bytes(item, ctx.settings.fetch_max_bytes)
    canonical = None
    if item.url:
        try:
            canonical = canonicalize_url(item.url)
        except ValueError as exc:
            raise PermanentError(f"bad url {redact_url(item.url)!r}: {exc}") from None
    external_id = drop_nul(item.external_id) or canonical or "sha256:" + hashlib.sha256(data).hexdigest()
    extracted = _extract(item, data) if data else None
    if extracted is not None and len(extracted.text) < ctx.settings.min_content_chars:
        raise ExtractionFailed(f"upload has only {len(extracted.text)} characters of text")

    metadata = drop_nul(
        {**item.metadata, "src": "upload", "uploadedBy": uploaded_by, "filename": item.filename}
    )
    with ctx.session_factory.begin() as session:
        insert_raw_item(
            session,
            source_id=source_id,
            external_id=external_id,
            kind="article",
            title=drop_nul(item.title) or (extracted.title if extracted else None),
            url=item.url,
            canonical_url=canonical,
            metadata_=metadata,
        )
        raw = session.scalars(
            select(RawItem)
            .where(RawItem.source_id == source_id, RawItem.external_id == external_id)
            .with_for_update()
        ).one()
        base = {"rawItemId": str(raw.id), "externalId": external_id}
        if raw.content_id is not None:
            return {**base, "status": "duplicate"}
        if extracted is None:
            return {**base, "status": "pending_fetch"}
        if item.title:
            extracted = Extracted(extracted.text, item.title, extracted.language, extracted.format)
        kind = "pdf" if extracted.format == "pdf" else ("article" if item.url else "note")
        stored = store_document(
            session, raw, extracted, content_type=extracted.format, story_kind=kind, html_url=item.url
        )
    return {**base, "status": "stored", "storyId": str(stored.story_id), "newStory": stored.created}


def _bytes(item: UploadItem, limit: int) -> bytes:
    if item.data_base64:
        if len(item.data_base64) > limit * 4 // 3 + 4:
            raise PermanentError(f"upload is larger than {limit} bytes")
        try:
            data = base64.b64decode(item.data_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PermanentError(f"dataBase64 is not valid base64: {exc}") from None
    else:
        data = (item.text or "").encode("utf-8")
    if len(data) > limit:
        raise PermanentError(f"upload is larger than {limit} bytes")
    return data


def _extract(item: UploadItem, data: bytes) -> Extracted:
    fmt = detect_format(item, data)
    if fmt == "pdf":
        return extract_pdf(data)
    text = item.text if item.text is not None else data.decode("utf-8", errors="replace")
    if fmt == "html":
        return extract_html(text, url=item.url)
    if fmt == "markdown":
        return extract_markdown(text)
    return extract_plain(text)
