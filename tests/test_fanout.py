"""The one parallel runner: order kept, bounded, a bug raised after the work in flight, Ctrl-C and stop."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from migrate.core.errors import Interrupted
from migrate.core.fanout import fanout


def test_results_come_back_in_the_order_of_the_items_within_the_bound():
    active, peak, lock = [0], [0], threading.Lock()

    def work(n: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01 * (n % 3))
        with lock:
            active[0] -= 1
        return n * n

    assert fanout(range(20), work, workers=3, name="t") == [n * n for n in range(20)]
    assert peak[0] <= 3


def test_a_bug_in_one_item_is_raised_after_the_others_in_flight_ended():
    started, finished = [], []

    def work(n: int) -> int:
        started.append(n)
        if n == 1:
            raise ZeroDivisionError("bug")
        time.sleep(0.05)
        finished.append(n)
        return n

    with pytest.raises(ZeroDivisionError):
        fanout(range(6), work, workers=3, name="t")
    assert 0 in finished
    assert sorted(finished) == sorted(n for n in started if n != 1), "work already started is not abandoned"


def test_ctrl_c_lets_the_work_in_flight_finish_starts_nothing_new_and_says_run_again():
    started, finished = [], []
    stop = threading.Event()

    def work(n: int) -> int:
        started.append(n)
        if n == 0:
            _thread.interrupt_main()  # Ctrl-C arrives while item 0 runs
        time.sleep(0.3)
        finished.append(n)
        return n

    with pytest.raises(Interrupted, match="run the same command again"):
        fanout(range(10), work, workers=2, name="t", stop=stop)
    assert stop.is_set()
    assert sorted(finished) == sorted(started) and len(started) < 10


def test_a_stop_set_by_the_caller_ends_with_interrupted():
    stop = threading.Event()

    def work(n: int) -> int:
        stop.set()
        return n

    with pytest.raises(Interrupted):
        fanout(range(5), work, workers=1, name="t", stop=stop)
