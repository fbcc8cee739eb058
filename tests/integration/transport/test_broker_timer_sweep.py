"""transport/broker.py with transport/timer_sweep.py: a consuming transport keeps its event loop free of
cancelled timers (the prefork pool's per-task time limits), and stops sweeping when unregistered."""

from __future__ import annotations

import time
import uuid

import kombu
import pytest
from kombu.asynchronous import Hub

from tests.dbutil import pgboss_url
from transport import timer_sweep


def test_the_registered_transport_sweeps_cancelled_timers(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timer_sweep, "SWEEP_INTERVAL", 0.05)
    schema = "s_" + uuid.uuid4().hex[:12]
    options = {"schema": schema, "polling_interval": 60, "supervise": False}
    with kombu.Connection(pgboss_url(db_url), transport_options=options) as conn:
        conn.connect()
        transport, hub = conn.transport, Hub()
        transport.register_with_event_loop(conn.connection, hub)
        try:
            live = len(hub.timer)
            for _ in range(500):  # what a pool leaves behind: time limits of tasks that ended
                hub.call_later(3600, lambda: None).cancel()
            deadline = time.monotonic() + 5
            while len(hub.timer) > live and time.monotonic() < deadline:
                hub.run_once()
            assert len(hub.timer) <= live
        finally:
            transport.unregister_from_event_loop(conn.connection, hub)
        for _ in range(20):
            hub.call_later(3600, lambda: None).cancel()
        swept_before = len(hub.timer)
        time.sleep(0.1)
        hub.fire_timers(max_timers=100)
        assert len(hub.timer) >= swept_before - 1 >= 19  # unregistered: no more sweeps
        hub.close()
