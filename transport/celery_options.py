"""Celery's task and call options on pg-boss job rows: one retry budget and the ``pgboss`` namespace.

A Celery publish on the pg-boss broker passes through :func:`on_before_publish` (Celery's
``before_task_publish`` signal) in the sending process, which knows the task and the app. It writes
two headers the transport and the result backend read:

* ``pgboss``: the job's pg-boss send options, merged from (weakest first) the task's Celery retry
  options mapped onto pg-boss's fields, the task's ``pgboss={...}`` attribute (``@app.task(pgboss=...)``)
  and the call's ``pgboss={...}`` (``apply_async``, ``signature.set``; Celery hands unknown options
  to the message properties). The transport takes it out of the message and sends the job with it;
  the manager's ``send`` checks it there (the one check ``zeke.client`` uses too), so a bad option
  is an :class:`~transport.exceptions.InvalidOption` raised by ``apply_async``.
* ``pgboss_retry``: ``"celery"`` or ``"pgboss"``, who decides whether a raise is retried
  (:func:`retry_policy`). It is stored with the job and comes back on delivery, so the worker's
  result backend knows without asking the sender.

The retry budget is the job's own ``retry_count``/``retry_limit``: every delivery carries
``retries = retry_count`` (:mod:`transport.envelope`), so Celery's ``max_retries`` check and
pg-boss's supervisor count the same attempts. A task that sets no retry option follows its queue's
pg-boss policy; the ``retry_policy`` transport option (:func:`queue_defaults`) chooses that policy
for the queues the transport creates without ``queue_options``: Celery's "a raise fails once"
(``retry_limit`` 0, the default) or pg-boss's retries (the seed's: 3 with backoff). A lost attempt
(its process died, or it was stopped at its job's expiry) is retried within the budget whoever
decides about raises (:func:`attempt_lost`).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

#: The namespace of pg-boss send options in ``apply_async``, ``signature.set`` and the decorator.
NAMESPACE = "pgboss"
#: Header carrying the merged send options from the sender to the transport (taken out on send).
OPTIONS_HEADER = "pgboss"
#: Header naming who decides whether a raise is retried: ``"celery"`` or ``"pgboss"``.
RETRY_HEADER = "pgboss_retry"
CELERY = "celery"
PGBOSS = "pgboss"
POLICIES = frozenset({CELERY, PGBOSS})
#: ``broker_transport_options`` key: the retry policy of the queues the transport creates.
POLICY_OPTION = "retry_policy"
DEFAULT_POLICY = CELERY
#: Task attributes that hand retries to Celery when a task sets one of them.
CELERY_RETRY_ATTRIBUTES = (
    "max_retries",
    "default_retry_delay",
    "autoretry_for",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "retry_kwargs",
)
#: Namespace options that hand retries to pg-boss when a task or call sets one of them.
PGBOSS_RETRY_OPTIONS = frozenset({"retry_limit", "retry_delay", "retry_backoff", "retry_delay_max"})
#: Send options the namespace does not take: the Celery task id is the job id, the kwargs its data.
NOT_IN_NAMESPACE = frozenset({"id", "data"})
#: Exception type names :func:`never_succeeds` knows in Celery's exception dicts.
NEVER_SUCCEEDS_TYPES = frozenset(
    {"EncodeError", "DecodeError", "ContentDisallowed", "NotRegistered", "Reject"}
)
#: ``max_retries=None`` (retry for ever) as a pg-boss ``retry_limit`` (a PostgreSQL integer).
UNLIMITED = 2**31 - 1


def queue_defaults(policy: str | None) -> dict[str, Any]:
    """``create_queue`` options of a queue the transport creates under a ``retry_policy``: Celery's
    (a raise fails once: ``retry_limit`` 0) or pg-boss's (nothing to add: the seed's queue
    defaults, 3 retries with backoff)."""
    policy = DEFAULT_POLICY if policy is None else policy
    if policy not in POLICIES:
        from transport.exceptions import InvalidOption

        raise InvalidOption(f"{POLICY_OPTION} must be 'celery' or 'pgboss', not {policy!r}")
    return {"retry_limit": 0} if policy == CELERY else {}


def sets(task: Any, attribute: str) -> bool:
    """Whether a task sets ``attribute`` itself (decorator, subclass, annotation), rather than
    inheriting Celery's default from ``celery.app.task.Task``."""
    return bool(_own_attributes(task, (attribute,)))


def _own_attributes(task: Any, among: Iterable[str]) -> set[str]:
    """Those of ``among`` that a task sets itself: on itself, or on its classes below Celery's ``Task``
    (looked up, not listed: a task's namespaces hold dozens of names)."""
    unwrap = getattr(task, "_get_current_object", None)  # a lazy app's task is a proxy until used
    if callable(unwrap):
        task = unwrap()
    namespaces = [vars(task)]
    base = _celery_task_class()
    for klass in type(task).__mro__:
        if klass is base:
            break
        namespaces.append(vars(klass))
    return {name for name in among if any(name in namespace for namespace in namespaces)}


@functools.cache
def _celery_task_class() -> type:
    from celery.app.task import Task

    return Task


def task_namespace(task: Any) -> dict[str, Any]:
    value = getattr(task, NAMESPACE, None) if task is not None else None
    return _namespace(value, f"task {getattr(task, 'name', '?')!r}")


def retry_policy(task: Any, call_options: Mapping[str, Any] | None = None) -> str:
    """Who decides about a raise of this task: pg-boss (the job's retry_limit) when the call sets
    pg-boss retry options, Celery when the task sets a Celery retry option (it retried already, or
    chose not to: the job then fails), else pg-boss as the job's queue says."""
    if call_options and not PGBOSS_RETRY_OPTIONS.isdisjoint(call_options):
        return PGBOSS
    if task is not None and _own_attributes(task, CELERY_RETRY_ATTRIBUTES):
        return CELERY
    return PGBOSS


def celery_retry_fields(task: Any) -> dict[str, Any]:
    """A task's Celery retry options as the job's pg-boss fields: ``max_retries`` (Celery's default
    3 when the task sets another retry option) is the ``retry_limit``, so ``max_retries=2`` allows
    three runs; a ``retry_backoff`` it sets (a factor) and ``retry_backoff_max`` the backoff, else a
    ``default_retry_delay`` it sets the fixed delay. Delays it leaves alone stay the queue's. They
    govern the retries pg-boss's supervisor makes (expired or lost attempts) within the budget."""
    max_retries = getattr(task, "max_retries", None)
    fields: dict[str, Any] = {"retry_limit": UNLIMITED if max_retries is None else int(max_retries)}
    backoff = getattr(task, "retry_backoff", False)
    own = _own_attributes(task, ("retry_backoff", "default_retry_delay"))
    if "retry_backoff" in own and backoff:
        fields["retry_backoff"] = True
        fields["retry_delay"] = max(1, int(backoff))
        backoff_max = getattr(task, "retry_backoff_max", None)
        if backoff_max is not None:
            fields["retry_delay_max"] = int(backoff_max)
    elif "default_retry_delay" in own:
        fields["retry_backoff"] = False
        fields["retry_delay"] = int(getattr(task, "default_retry_delay", None) or 0)
    return fields


def publish_options(task: Any, call_options: Mapping[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """``(policy, send options)`` for one publish of ``task`` (None: not registered here). The
    policy is None when the sender cannot tell (a task it does not know, sent by name): the
    worker's task decides then."""
    call = _namespace(call_options, "the call")
    if task is None and PGBOSS_RETRY_OPTIONS.isdisjoint(call):
        return None, call
    policy = retry_policy(task, call)
    options: dict[str, Any] = {}
    if policy == CELERY:
        options.update(celery_retry_fields(task))
    options.update(task_namespace(task))
    options.update(call)
    return policy, options


def on_before_publish(
    sender: str | None = None,
    headers: MutableMapping[str, Any] | None = None,
    properties: MutableMapping[str, Any] | None = None,
    **_: Any,
) -> None:
    """``before_task_publish``: stamp the pg-boss headers on a task message of a pg-boss app.

    Celery logs and swallows a signal handler's exception, so nothing is validated here: a bad
    option travels in the header and the transport refuses the send with a clear error.
    """
    if headers is None or properties is None or "task" not in headers:
        return
    app, task = _app_and_task(sender or headers.get("task"), properties.get("reply_to"))
    if app is None:
        return
    call = properties.pop(NAMESPACE, None)
    try:
        policy, options = publish_options(task, call)
    except Exception as exc:  # noqa: BLE001 - reported by the transport, which raises it at send
        headers[OPTIONS_HEADER] = {"__invalid__": str(exc)}
        return
    if policy is not None:
        headers[RETRY_HEADER] = policy
    if options:
        headers[OPTIONS_HEADER] = options
    if headers.get("ignore_result") is None:  # send_task without ignore_result: the task's, or the app's
        ignore = getattr(task, "ignore_result", None) if task is not None else None
        if ignore is None and app.conf.task_ignore_result:
            ignore = True
        if ignore is not None:  # else the worker's task decides, as Celery's request does
            headers["ignore_result"] = bool(ignore)


def raise_is_retried_by_pgboss(task: Any, request: Any) -> bool:
    """Whether the job's pg-boss retries decide about a raise that reached the result backend: what
    the sender stamped (``pgboss_retry``), else what this worker's task says."""
    stamped = _request_header(request, RETRY_HEADER)
    if stamped in POLICIES:
        return stamped == PGBOSS
    return retry_policy(task) == PGBOSS


def never_succeeds(exc: Any, task: Any, request: Any) -> bool:
    """Errors a retry cannot mend: arguments the task does not take, a result that cannot be
    encoded or stored, a message Celery cannot decode or a task it does not know, and ``Reject``
    (the task refused its message for good)."""
    from celery.exceptions import NotRegistered, Reject
    from kombu.exceptions import ContentDisallowed, DecodeError, EncodeError

    if isinstance(exc, EncodeError | DecodeError | ContentDisallowed | NotRegistered | Reject):
        return True
    if isinstance(exc, dict):  # a failure reported as Celery's exception dict
        return exc.get("exc_type") in NEVER_SUCCEEDS_TYPES
    if isinstance(exc, TypeError) and task is not None and request is not None:
        return not arguments_fit(task, getattr(request, "args", None), getattr(request, "kwargs", None))
    return False


def attempt_lost(exc: Any, request: Any) -> bool:
    """Whether a failure is the attempt lost rather than a task error: its pool process died
    (``WorkerLostError``, as pg-boss's supervisor retries a job whose worker's heartbeat stopped),
    or the time limit derived from the job's ``expire_seconds`` stopped it (header
    ``pgboss_expiry_limit``, see :func:`transport.envelope.expiry_time_limits`: pg-boss's expiry).
    Such a failure is retried within the job's budget, whoever decides about raises."""
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

    name = exc.get("exc_type") if isinstance(exc, dict) else type(exc).__name__
    if isinstance(exc, WorkerLostError) or name == "WorkerLostError":
        return True
    limit = isinstance(exc, TimeLimitExceeded | SoftTimeLimitExceeded) or name in (
        "TimeLimitExceeded",
        "SoftTimeLimitExceeded",
    )
    return limit and bool(_request_header(request, "pgboss_expiry_limit"))


def arguments_fit(task: Any, args: Any, kwargs: Any) -> bool:
    """Whether the task's signature takes these arguments (Celery's own check when ``typing``)."""
    check = getattr(task, "__header__", None)
    try:
        if check is not None:
            check(*(args or ()), **(kwargs or {}))
        else:
            inspect.signature(task.run).bind(*(args or ()), **(kwargs or {}))
    except TypeError:
        return False
    except ValueError:  # no signature to read
        return True
    return True


def _namespace(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    from transport.exceptions import InvalidOption

    if not isinstance(value, Mapping):
        raise InvalidOption(f"{NAMESPACE} options of {where} must be a dict, not {type(value).__name__}")
    refused = NOT_IN_NAMESPACE & set(value)
    if refused:
        raise InvalidOption(
            f"{NAMESPACE} option(s) {', '.join(sorted(refused))} of {where} are not send options here: "
            "the Celery task id is the job id (task_id=...) and the arguments its data"
        )
    return dict(value)


def _request_header(request: Any, name: str) -> Any:
    if request is None:
        return None
    value = getattr(request, name, None)
    for attribute in ("headers", "_request_dict"):  # a task's Context; the worker's Request
        if value is None:
            headers = getattr(request, attribute, None)
            value = headers.get(name) if isinstance(headers, dict) else None
    return value


def _app_and_task(name: str | None, reply_to: Any = None) -> tuple[Any, Any]:
    """The pg-boss Celery app sending task ``name`` and the task, if registered there. The signal
    does not say which app sends: the one whose ``thread_oid`` is the message's ``reply_to`` (what
    ``send_task`` sets unless told otherwise; none when that app is on another broker, whatever
    pg-boss app has the same task), else the current app, else any that has the task."""
    if reply_to:
        # The sender found by its oid: an app on another broker publishing a task that a pg-boss
        # app also has gets no pg-boss headers.
        sender = _sender(reply_to)
        if sender is not None:
            return (sender, sender._tasks.get(name) if name else None) if _is_pgboss(sender) else (None, None)
    candidates = [a for a in _apps() if _is_pgboss(a)]
    for app in candidates:
        task = app._tasks.get(name) if name else None
        if task is not None:
            return app, task
    return (candidates[0], None) if candidates else (None, None)


def _apps() -> list[Any]:
    """This process's Celery apps, the current one first."""
    from celery import _state

    current = _state.get_current_app()
    return [current, *(a for a in _state._get_active_apps() if a is not current)]


#: ``thread_oid`` -> the app it is of in that thread (found once, checked on every use).
_SENDERS: dict[str, weakref.ref[Any]] = {}
#: Most oids :data:`_SENDERS` remembers (a process starting thread after thread forgets the old ones).
_SENDERS_MAX = 1024


def _sender(oid: Any) -> Any:
    """The app whose ``thread_oid`` in this thread is ``oid``, or None."""
    known = _SENDERS.get(oid)
    app = known() if known is not None else None
    if app is not None and app.thread_oid == oid:
        return app
    app = next((a for a in _apps() if a.thread_oid == oid), None)
    if app is not None and isinstance(oid, str):
        if len(_SENDERS) >= _SENDERS_MAX:
            _SENDERS.clear()
        _SENDERS[oid] = weakref.ref(app)
    return app


#: app -> (its producer pool when its broker was read, whether that broker is pg-boss's).
_ON_PGBOSS: weakref.WeakKeyDictionary[Any, tuple[weakref.ref[Any], bool]] = weakref.WeakKeyDictionary()


def _is_pgboss(app: Any) -> bool:
    """Whether the app publishes to pg-boss. Its configuration is read once per producer pool: the
    pool connects to the broker of that moment whatever the configuration says later (Celery makes
    a new pool after a fork or ``close()``); an app without a pool is read every time."""
    amqp = app.__dict__.get("amqp") if hasattr(app, "__dict__") else None
    pool = getattr(amqp, "_producer_pool", None)
    if pool is not None:
        known = _ON_PGBOSS.get(app)
        if known is not None and known[0]() is pool:
            return known[1]
    result = _configured_for_pgboss(app)
    if pool is not None:
        try:
            _ON_PGBOSS[app] = (weakref.ref(pool), result)
        except TypeError:  # not weakly referenceable: read every time
            pass
    return result


def _configured_for_pgboss(app: Any) -> bool:
    try:
        url = app.conf.broker_url
    except Exception:  # noqa: BLE001 - an app whose configuration cannot load is not ours
        return False
    urls = url if isinstance(url, list | tuple) else [url]
    return any(isinstance(u, str) and u.split("://", 1)[0].endswith("pgboss") for u in urls)


def connect() -> None:
    """Connect :func:`on_before_publish` (once; Celery dedups by ``dispatch_uid``)."""
    from celery.signals import before_task_publish

    before_task_publish.connect(on_before_publish, weak=False, dispatch_uid="pgboss-task-options")
