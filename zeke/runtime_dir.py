"""A runtime directory for the embedded database's lock file, so none is guessed at.

``pgserver`` keeps an inter-process lock under ``platformdirs.user_runtime_path()``, which reads
``XDG_RUNTIME_DIR``. Servers, containers and CI runners often have no login session to set it, and
platformdirs then falls back to ``/tmp/runtime-<uid>`` with a ``RuntimeDirWarning`` on every command.
Giving it a private directory beside the embedded database's data instead removes the cause: every
zeke process of one data directory shares it (they must share the lock), and children inherit it.
"""

from __future__ import annotations

import os
from pathlib import Path


def ensure_runtime_dir(base: Path) -> None:
    """Set ``XDG_RUNTIME_DIR`` to ``base/run`` (created 0700) unless the environment already has one."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    run = base / "run"
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    run.chmod(0o700)  # mkdir's mode is masked by the umask; platformdirs wants exactly 0700
    os.environ["XDG_RUNTIME_DIR"] = str(run)
