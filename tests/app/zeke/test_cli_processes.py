"""`zeke run` (worker + beat + API) and `zeke worker --dev` (restart on change) as real processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.app.conftest import ROOT, wait_for


class Output:
    """Collects a process's combined output in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_run_starts_worker_beat_and_api_and_prints_url_and_token(env: dict[str, str], tmp_path: Path) -> None:
    port = _free_port()
    env = {**env, "ZEKE_DATA_DIR": str(tmp_path)}  # its stored token and logs
    proc = subprocess.Popen(
        [sys.executable, "-m", "zeke.cli", "run", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out = Output(proc)
    try:
        wait_for(lambda: out.count("zeke: token") or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, out.text()
        url = f"http://localhost:{port}"
        assert f"zeke: API up at {url}, dashboard at {url}/dashboard" in out.text()
        token = next(line.split()[2] for line in out.lines if line.startswith("zeke: token"))
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/api/tasks").status_code == 401  # a token was set: no anonymous access
        job = {"taskId": "t-echo", "payload": {"message": "x"}}
        r = httpx.post(f"{url}/api/jobs", headers=auth, json=job)
        assert r.status_code == 201, r.text
        job_url = f"{url}/api/jobs/{r.json()['id']}"
        wait_for(lambda: httpx.get(job_url, headers=auth).json()["status"] == "completed", timeout=30)
        assert "beat: Starting" in (tmp_path / "logs" / "beat.log").read_text()  # its output, not ours
    except BaseException:
        print(out.text())  # what the children said, for the failure report
        raise
    finally:
        code = _stop(proc, signal.SIGINT)
    assert code == 0, out.text()
    # Every child is gone with it.
    ps = subprocess.run(["ps", "-o", "pid=", "-s", str(proc.pid)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", ps.stdout


def test_worker_dev_restarts_on_code_change(env: dict[str, str], tmp_path: Path) -> None:
    watched = tmp_path / "src"
    watched.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zeke.cli", "worker", "--dev", "--watch", str(watched), "-c", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out = Output(proc)
    try:
        wait_for(lambda: out.count(" ready.") >= 1 or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, out.text()
        time.sleep(0.5)
        (watched / "module.py").write_text("VALUE = 1\n")
        wait_for(lambda: out.count("restarting") >= 1, timeout=20)
        wait_for(lambda: out.count(" ready.") >= 2, timeout=60)
    finally:
        _stop(proc)
