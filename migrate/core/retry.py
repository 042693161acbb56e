"""Retries at the edges: tenacity around server calls, for transient faults only, each retry logged.

A transient fault is a :class:`~migrate.core.errors.RemoteError` whose ``transient`` is true
(connection reset, BYE, timeout, throttling). When the server said how long to wait
(``retry_after``: EWS BackOffMilliseconds, HTTP Retry-After), that wait is honoured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from migrate.core.errors import RemoteError

T = TypeVar("T")
log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, RemoteError) and exc.transient


class _ServerWait:
    """Exponential back-off, unless the server named its own wait."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.fallback = wait_exponential(multiplier=initial, min=initial, max=maximum)
        self.maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), self.maximum)
        return self.fallback(state)


def retrying(what: str, *, attempts: int = 5, initial: float = 0.5, maximum: float = 60.0,
             on_retry: Callable[[BaseException, int], None] | None = None) -> Retrying:
    """A tenacity ``Retrying`` for ``what`` (used in log lines): ``for attempt in retrying(...): with attempt:``."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        log.warning("%s: %s; retry %d of %d in %.1fs", what, exc, state.attempt_number, attempts - 1, wait)
        if on_retry is not None and exc is not None:
            on_retry(exc, state.attempt_number)

    return Retrying(retry=retry_if_exception(is_transient), stop=stop_after_attempt(attempts),
                    wait=_ServerWait(initial, maximum), before_sleep=before_sleep, reraise=True)


def call_with_retry(what: str, fn: Callable[[], T], **kwargs) -> T:
    for attempt in retrying(what, **kwargs):
        with attempt:
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover
