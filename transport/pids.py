"""This process's pid without a system call (``os.getpid()`` is one): renewed in a forked child.

The transport asks on hot paths (every publish, every pass of the worker's loop) whether an object
was inherited across a fork, by comparing the pid it was made in with :func:`current`. Modules that
register fork hooks of their own import this one first, so the pid is renewed before those run.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def current() -> int:
    return _pid


def _renew() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew)
