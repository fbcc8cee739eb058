"""tasks.ingestion.ingest_from_upload: which format an upload is."""

from __future__ import annotations

import pytest

from tasks.ingestion.ingest_from_upload import UploadItem, detect_format


def test_format_detection() -> None:
    assert detect_format(UploadItem(text="x", format="markdown"), b"x") == "markdown"
    assert detect_format(UploadItem(text="x", media_type="text/html; charset=utf-8"), b"x") == "html"
    assert detect_format(UploadItem(text="x", filename="A.PDF"), b"x") == "pdf"
    assert detect_format(UploadItem(data_base64="eA=="), b"%PDF-1.7") == "pdf"
    assert detect_format(UploadItem(text="<!DOCTYPE html><html>"), b"<!DOCTYPE html><html>") == "html"
    assert detect_format(UploadItem(text="hello"), b"hello") == "text"
    with pytest.raises(ValueError):
        UploadItem()
