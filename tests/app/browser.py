"""A headless Chromium for the dashboard tests: Debian's ``chromium`` (``make browser`` installs it),
driven through Playwright's Python client. Playwright never downloads a browser here: it launches the
system's executable with the flags of an offline, throwaway profile."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Where Debian puts it; ZEKE_CHROMIUM overrides.
CHROMIUM = os.environ.get("ZEKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A Playwright browser context on a fresh ``--user-data-dir`` under ``profile``."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1360, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()
