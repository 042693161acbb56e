"""One bounded parallel runner for every fan-out over items (mailboxes, sources, domains, extensions), with
one Ctrl-C behaviour: work already started finishes and is recorded, nothing new starts, and the caller gets
:class:`~migrate.core.errors.Interrupted` (exit 130) saying that re-running resumes.

Each ``work(item)`` handles its item's own failures (they are that item's result); an exception escaping it
is a bug, and is raised after the items in flight have finished. Limits narrower than ``workers`` (a
source's connection limit, the central host's) are the callers' semaphores, taken inside ``work``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from migrate.core.errors import Interrupted

T = TypeVar("T")
R = TypeVar("R")

INTERRUPTED = "interrupted: the work in flight was finished and recorded; run the same command again to resume"


def fanout(items: Iterable[T], work: Callable[[T], R], *, workers: int, name: str,
           stop: threading.Event | None = None) -> list[R]:
    """``work`` over ``items`` on at most ``workers`` threads; results in the order of ``items``.

    ``stop`` (optional) is set on Ctrl-C so that long-running ``work`` can end at its next safe point; a
    caller that sets it itself (SIGTERM, a stop button) gets Interrupted the same way once the work in flight
    has ended.
    """
    items = list(items)
    if not items:
        return []
    stop = stop or threading.Event()
    flight = _InFlight()
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))), thread_name_prefix=name)
    futures: list[Future[R]] = []
    try:
        for item in items:
            futures.append(pool.submit(flight.run, stop, work, item))
        pending = set(futures)
        while pending:
            # Short waits keep the main thread responsive to Ctrl-C (a blocking wait would hold it off).
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done if not f.cancelled()):
                break
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        flight.wait_idle()  # every item that started runs to its end; nothing new starts (stop is set)
        raise Interrupted(INTERRUPTED) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        flight.wait_idle()
    for future in futures:  # a bug in work(): raised, once what was in flight has ended
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    results = [f.result() for f in futures if not f.cancelled()]
    if len(results) < len(items) or any(r is _STOPPED for r in results):
        raise Interrupted(INTERRUPTED)
    return results


class _Stopped:
    pass


_STOPPED = _Stopped()


class _InFlight:
    """Counts the items whose work has started and not ended (a Ctrl-C may land anywhere in the pool's own
    bookkeeping; this count is exact whatever the pool knows)."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def run(self, stop: threading.Event, work: Callable[[T], R], item: T) -> R:
        with self._idle:
            if stop.is_set():
                return _STOPPED  # type: ignore[return-value]
            self._count += 1
        try:
            return work(item)
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    def wait_idle(self) -> None:
        with self._idle:
            while self._count:
                self._idle.wait(0.2)
