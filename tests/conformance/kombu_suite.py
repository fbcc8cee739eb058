"""Kombu's own transport conformance mixins (``t/integration/common.py``), fetched at test time.

The file ships only in kombu's sdist, not in the wheel, and a third-party test file is not vendored
here: pip downloads the sdist of the installed kombu version once per machine (cached in the temp
directory, under a lock for concurrent sessions) and the module is imported from the extracted copy.
"""

from __future__ import annotations

import fcntl
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import kombu

MEMBER = "t/integration/common.py"


def _cache_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"zeke-kombu-sdist-{kombu.__version__}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def common_path() -> Path:
    cache = _cache_dir()
    target = cache / "common.py"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        download = cache / "download"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"kombu=={kombu.__version__}",
                "-d",
                str(download),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        archives = sorted(download.glob("kombu-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise RuntimeError(f"pip could not download kombu=={kombu.__version__}'s sdist:\n{done.stderr}")
        with tarfile.open(archives[0]) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("/" + MEMBER))
            source = tar.extractfile(member)
            assert source is not None
            target.with_suffix(".tmp").write_bytes(source.read())
        target.with_suffix(".tmp").rename(target)
        return target


def load() -> ModuleType:
    """``t/integration/common.py`` of the installed kombu, as module ``kombu_integration_common``."""
    name = "kombu_integration_common"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, common_path())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
