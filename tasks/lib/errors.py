"""What a task run can raise, and what the queue wrapper should do about it.

* :class:`RetryLater` — transient: retry this job after ``seconds`` (a server's Retry-After, or our
  default back-off).
* :class:`PermanentError` — the same payload would fail the same way: fail without retrying.
* anything else — a bug or an unexpected failure: the queue's normal retry policy applies.
"""

from __future__ import annotations


class TaskError(Exception):
    """A task could not do its work."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())


class RetryLater(TaskError):
    """A transient failure (rate limit, timeout, unavailable server): try again after ``seconds``."""

    def __init__(self, seconds: float, message: str | None = None) -> None:
        self.seconds = max(0.0, float(seconds))
        super().__init__(message or f"retry in {self.seconds:g}s")


class PermanentError(TaskError):
    """Retrying would fail the same way."""


class UnsafeURL(PermanentError):
    """The URL points somewhere fetches may not go (a private, loopback or link-local address, or a
    scheme other than http/https)."""


class FetchFailed(PermanentError):
    """The server answered, but not with something we can use (4xx, too large, wrong content type)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ExtractionFailed(PermanentError):
    """No usable text could be extracted from the document."""


class ProviderResponseInvalid(PermanentError):
    """The AI provider's answer did not match the structure we asked for."""


class NotFound(PermanentError):
    """A row the payload refers to does not exist."""


#: Longest wait we accept from a server's Retry-After (seconds); anything longer is capped.
MAX_RETRY_AFTER = 6 * 3600.0


def retry_after_seconds(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header value (delta-seconds or an HTTP date)."""
    import datetime as dt
    from email.utils import parsedate_to_datetime

    if not value or not value.strip():
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
