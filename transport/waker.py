"""A self-pipe on the worker's event loop.

Kombu's hub computes its poll timeout before it runs the tick callbacks. A timer added during a
tick (the next ``start_after``), or work handed to the prefork pool by a tick that ran after the
pool's own, would wait for that timeout; writing a byte here makes the loop go round at once.
Pid-guarded: a forked child never closes its parent's pipe.
"""

from __future__ import annotations

import os


class Waker:
    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._pid = os.getpid()

    @property
    def owned(self) -> bool:
        return self._pid == os.getpid()

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:
            pass  # already full: the loop will wake anyway

    def drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.owned:
            os.close(self._read)
            os.close(self._write)
