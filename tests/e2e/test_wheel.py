"""zeke as a user installs it: a wheel (not an editable install) in a venv of its own, used from a
directory outside the checkout: ``zeke --help``, ``zeke init``, ``celery -A zeke worker`` answering
``celery -A zeke inspect ping``, ``celery -A zeke beat`` starting, and a plain Celery app on
``pgboss://`` running a task.

How the venv is made, so that this stays a ~30 s test inside ``make test`` and needs no network:

* the wheel is built from a copy of the checkout with ``pip wheel --no-deps --no-build-isolation``,
  using the dev venv's setuptools and wheel (an isolated build would download them);
* the venv is created without system site-packages and zeke is installed into it from the wheel with
  ``pip --no-deps`` (copies in its own site-packages, console script in its own ``bin``);
* zeke's dependencies are not downloaded again: a ``.pth`` file lists the dev venv's site-packages
  as a plain path. A plain path line does not process that directory's own ``.pth`` files, so the
  dev venv's editable install of zeke stays inactive; the test checks that zeke, celeryconfig and
  the entry points come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dbutil import own_database

ROOT = Path(__file__).resolve().parents[2]
PLAIN_APP = """\
import os

import transport  # registers the pgboss:// transport alias
from celery import Celery

url = os.environ["PLAIN_URL"]
app = Celery("plainapp", broker=url, backend=url)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])


@app.task
def add(x, y):
    return x + y
"""




@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with zeke installed from its wheel (dependencies reached through the dev venv)."""
    base = tmp_path_factory.mktemp("wheel")
    built = base / "dist"
    pip = [sys.executable, "-m", "pip"]
    quiet = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    # From a copy: an in-tree build would reuse (and leave) build/, stale files included.
    source = base / "source"
    skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "node_modules", "tests")
    shutil.copytree(ROOT, source, ignore=skip)
    build = [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(built), str(source)]
    subprocess.run(build, **quiet)
    (wheel,) = built.glob("zeke-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **quiet)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], **quiet
    ).stdout.strip()
    Path(site, "zeke-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "-q", "--no-deps", str(wheel)], **quiet)
    return venv


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory outside the checkout, holding no celeryconfig of its own."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def url(admin_url: str) -> Iterator[str]:
    with own_database(admin_url, "wheel") as url:
        yield url


def _env(venv: Path, url: str, **extra: str) -> dict[str, str]:
    drop = ("CELERY_", "ZEKE_", "DATABASE_", "PYTHON", "VIRTUAL_ENV", "OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        DATABASE_PRIMARY_URL=url,
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _run(venv: Path, workdir: Path, env: dict[str, str], *argv: str, timeout: float = 120) -> str:
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


def _celery(venv: Path) -> list[str]:
    return [str(venv / "bin" / "python"), "-m", "celery"]


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def _wait_until(check: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow  # minutes: a wheel build and a fresh venv; `make chaos` runs it
def test_the_wheel_installs_and_runs_from_anywhere(venv: Path, workdir: Path, url: str) -> None:
    env = _env(venv, url)
    python = str(venv / "bin" / "python")
    where = json.loads(
        _run(venv, workdir, env, python, "-c", (
            "import json, zeke, celeryconfig; from zeke.app import CONFIG_FILE; "
            "from importlib.metadata import entry_points; "
            "print(json.dumps([zeke.__file__, celeryconfig.__file__, str(CONFIG_FILE), "
            "[e.value for e in entry_points(group='celery.result_backends', name='pgboss')]]))"
        ))
    )  # fmt: skip
    installed = str(venv / "lib")
    assert all(path.startswith(installed) for path in where[:3]), where
    assert where[3] and set(where[3]) == {"transport.backend:PgBossBackend"}

    helped = _run(venv, workdir, env, str(venv / "bin" / "zeke"), "--help")
    assert "init" in helped and "db" in helped
    report = json.loads(_run(venv, workdir, env, str(venv / "bin" / "zeke"), "init", "--json"))
    assert report["version"] == 46 and "ingest-pull" in report["queues"]

    worker = subprocess.Popen(
        [*_celery(venv), "-A", "zeke", "worker", "-n", "wheel@test", "-c", "1", "-l", "info"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:

        def pong() -> object:
            done = subprocess.run(
                [*_celery(venv), "-A", "zeke", "inspect", "ping", "--timeout", "2", "--json"],
                cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            return done.returncode == 0 and json.loads(done.stdout.strip().splitlines()[-1])

        assert _wait_until(pong, 60, "the worker to answer ping") == {"wheel@test": {"ok": "pong"}}
    finally:
        out = _stop(worker)
    assert "ready." in out, out

    beat = subprocess.Popen(
        [*_celery(venv), "-A", "zeke", "beat", "-l", "info", "-s", str(workdir / "beat-schedule")],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(8)
        assert beat.poll() is None, "beat exited"
    finally:
        out = _stop(beat)
    assert "beat: Starting..." in out and "Traceback" not in out, out

    (workdir / "plainapp.py").write_text(PLAIN_APP)
    plain_env = _env(venv, url, PLAIN_URL="pgboss://" + url.split("://", 1)[1], PYTHONPATH=str(workdir))
    plain = subprocess.Popen(
        [*_celery(venv), "-A", "plainapp", "worker", "-n", "plain@test", "-c", "1", "-l", "info"],
        cwd=workdir, env=plain_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        sent = _run(venv, workdir, plain_env, python, "-c", (
            "from plainapp import add; print(add.delay(2, 3).get(timeout=60))"
        ))  # fmt: skip
        assert sent.strip() == "5"
    finally:
        out = _stop(plain)
    assert "Traceback" not in out, out
