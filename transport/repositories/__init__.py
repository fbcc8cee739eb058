"""The owners of zeke's state beside the job table, one per concern, each a method per named
statement run through the manager's :class:`~transport.executor.Executor` (``manager.sql``).

The modules that hold the behaviour (the result backend, beat and cron, the broker's bindings and
broadcast log, the supervisor's upkeep, the monitoring views) call these methods; none of them runs a
statement itself. A method with ``conn`` joins the caller's transaction.
"""
