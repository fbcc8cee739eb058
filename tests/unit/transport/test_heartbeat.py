"""transport.heartbeat.Heartbeat's life cycle against its hub: a started heartbeat's start (called on
every delivering pass of the worker's loop) does nothing, and a start racing a stop never leaves a
running heartbeat unknown to the hub (whose release and hand-back find jobs through it)."""

from __future__ import annotations

import threading
from typing import Any

from transport.heartbeat import Heartbeat


class Owner:
    """A hub's heartbeat registry, counting the calls; ``remove_heartbeat`` can be held midway."""

    def __init__(self) -> None:
        self.heartbeats: set[Heartbeat] = set()
        self.adds = 0
        self.removing = threading.Event()
        self.let_remove = threading.Event()
        self.let_remove.set()

    def add_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.adds += 1
        self.heartbeats.add(heartbeat)

    def remove_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.removing.set()
        assert self.let_remove.wait(10)
        self.heartbeats.discard(heartbeat)


def heartbeat(owner: Owner) -> Heartbeat:
    manager: Any = None  # holds no job: the thread never touches
    return Heartbeat(manager, hub=owner)


def test_a_started_heartbeat_starts_again_without_asking_the_hub() -> None:
    owner = Owner()
    beat = heartbeat(owner)
    beat.start()
    try:
        for _ in range(100):  # one per delivering pass of the loop
            beat.start()
        assert owner.adds == 1 and beat in owner.heartbeats
    finally:
        beat.stop(join=True, timeout=5)
    assert not beat.running and beat not in owner.heartbeats
    beat.start()  # stopped: a start registers it again
    try:
        assert owner.adds == 2 and beat in owner.heartbeats
    finally:
        beat.stop(join=True, timeout=5)


def test_a_start_racing_a_stop_leaves_a_running_heartbeat_known_to_its_hub() -> None:
    owner = Owner()
    beat = heartbeat(owner)
    beat.start()
    owner.let_remove.clear()
    stopper = threading.Thread(target=beat.stop, name="pgboss-test-stopper")
    stopper.start()
    assert owner.removing.wait(5)  # the stop has ended the thread and is leaving the hub
    starter = threading.Thread(target=beat.start, name="pgboss-test-starter")
    starter.start()
    starter.join(0.2)  # a start that does not wait for the stop registers (and runs) first
    owner.let_remove.set()
    stopper.join(5)
    starter.join(5)
    try:
        assert beat.running
        assert beat in owner.heartbeats  # the stop's removal did not undo the start's registration
    finally:
        beat.stop(join=True, timeout=5)
