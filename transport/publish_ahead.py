"""A channel's open batch (a Celery group being published), sent ahead while it is still built.

Celery builds a group's messages one by one, each taking longer than PostgreSQL takes to insert its
row. Once a batch holds :data:`CHUNK_ROWS` messages they are serialised and handed to a sender thread
that inserts them on its own pooled connection while Celery builds the next ones (psycopg2 lets go
of the GIL while the server works), and so on; when the producer comes back, only the rest is left
to insert before the sender commits, once. One transaction: the group's rows are all committed
before ``apply_async`` returns, or none (an error rolls the whole batch back and is raised there).
Identical NOTIFYs of one transaction are delivered once, at commit: a queue hears of its new jobs
once, when they can be fetched.

A smaller batch (a single ``delay()``, most chords) never starts a thread: it is sent when the
producer comes back, as :meth:`transport.publisher.Publisher.send_jobs` sends one.
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from typing import Any

from transport import envelope
from transport.publisher import BatchOutcome, Part, Publisher, QueueOptions

#: Messages handed to the sender at a time (the first hand-off starts it).
CHUNK_ROWS = 256

Message = tuple[str, envelope.Job, dict[str, Any]]
#: What a sender gets instead of the next part when its batch was dropped without a flush.
_ABANDONED = object()


class Batch:
    """The messages a channel holds while a producer is out (see :mod:`transport.batch_publish`)."""

    def __init__(self, publisher: Publisher, queue_options: QueueOptions) -> None:
        self.publisher = publisher
        self.queue_options = queue_options
        self.pending: list[Message] = []
        self.ahead: _Sender | None = None
        self._dropped: weakref.finalize | None = None
        #: What made the batch fail before its flush (a message's options, checked at a hand-off).
        self.error: BaseException | None = None
        self.pid = os.getpid()

    def add(self, queue_name: str, job: envelope.Job, message: dict[str, Any]) -> None:
        if self.error is not None:
            return  # the batch failed: dropped, and raised by flush()
        pending = self.pending
        pending.append((queue_name, job, message))
        if len(pending) >= CHUNK_ROWS and self._can_send_ahead():
            self.pending = []
            try:
                # Serialised here, not by the sender: this thread holds the GIL anyway, and one that
                # gives it up as briefly and often as Celery's publishing does would rarely let the
                # sender have it (the GIL's switch interval never runs out for the thread waiting).
                parts = self.publisher.prepare(pending)
            except Exception as exc:  # noqa: BLE001 - raised by flush(), as a failed send is
                self.error = exc
                if self.ahead is not None:
                    self.ahead.abandon()
                return
            if self.ahead is None:
                self.ahead = _Sender(self.publisher)
                # A batch dropped unflushed (its producer never given back) rolls back and lets its
                # connection go instead of holding it, in an open transaction, for ever.
                self._dropped = weakref.finalize(self, self.ahead.abandon)
            self.ahead.send(parts)

    def flush(self) -> None:
        """Send what is left and commit; raises what failed (nothing of the batch is committed then)."""
        if self.pid != os.getpid():
            return  # a forked child's copy: the parent sends its batch
        pending, self.pending = self.pending, []
        ahead, self.ahead = self.ahead, None
        if self._dropped is not None:
            self._dropped.detach()
        if self.error is not None:
            if ahead is not None:
                ahead.join()
            raise self.error
        if ahead is None:
            if pending:
                self.publisher.send_jobs(pending, self.queue_options)
            return
        try:
            rest = self.publisher.prepare(pending) if pending else []
        except BaseException:
            ahead.abandon()
            ahead.join()
            raise
        outcome = ahead.finish(rest)
        self.publisher.after_batch(outcome, self.queue_options)

    def _can_send_ahead(self) -> bool:
        # The sender holds a pooled connection until the batch ends; with a pool of one, the caller's
        # own checkouts meanwhile (a queue declared mid-group) would wait for it for ever.
        return self.publisher.session.db.max_connections >= 2


class _Sender:
    """A thread inserting a batch's parts in one transaction, committed by :meth:`finish`.

    Each hand-off waits until the sender has taken up the part and is about to send it (it then waits
    for the server without the GIL): a thread waiting for the GIL behind one that keeps it busy would
    otherwise wait long, and the server with it."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.outcome = BatchOutcome()
        self.error: BaseException | None = None
        self.parts: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: Set by the sender once it took up the last part handed to it (or stopped).
        self.taken = threading.Event()
        self.thread = threading.Thread(target=self._run, name="zeke-publish-ahead", daemon=True)
        self.thread.start()

    def send(self, parts: list[Part]) -> None:
        if self.error is None:  # after a failure the thread is gone: the batch is lost anyway
            self.taken.clear()
            self.parts.put(parts)
            self.taken.wait()

    def abandon(self) -> None:
        self.parts.put(_ABANDONED)

    def join(self) -> None:
        self.thread.join()

    def finish(self, rest: list[Part]) -> BatchOutcome:
        """Insert ``rest``, commit, and return what the batch did; raises the batch's failure."""
        if rest:
            self.parts.put(rest)
        self.parts.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.outcome

    def _run(self) -> None:
        try:
            with self.publisher.session.transaction() as conn:
                while (parts := self.parts.get()) is not None:
                    self.taken.set()
                    if parts is _ABANDONED:
                        return  # rolled back as the block ends
                    self.publisher.insert_prepared(conn, parts, self.outcome)
                conn.commit()
        except BaseException as exc:  # raised by finish(), in the publishing thread
            self.error = exc
        finally:
            self.taken.set()
