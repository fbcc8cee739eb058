"""Kombu's own transport conformance suite (``t/integration/common.py``) against ``pgboss://``.

BasicFunctionality, BaseExchangeTypes (direct, routing keys, fanout, topic, empty exchange),
BasePriority (pg-boss runs higher priorities first: ``PRIORITY_ORDER = 'asc'``, as py-amqp),
BaseMessage (ack, reject, requeue) and BaseEventLoop (acks from another thread on a kombu Hub).
"""

from __future__ import annotations

from tests.conformance.kombu_suite import load

common = load()


class TestBasicFunctionality(common.BasicFunctionality):
    pass


class TestExchangeTypes(common.BaseExchangeTypes):
    pass


class TestPriority(common.BasePriority):
    PRIORITY_ORDER = "asc"


class TestMessage(common.BaseMessage):
    pass


class TestEventLoop(common.BaseEventLoop):
    pass
