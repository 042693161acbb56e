"""The forecast without a store: the windows a wave needs and when they fall, the failure rate applied to what
remains, and the programme's verdict against its plan (migrate/reports/forecast.py)."""

from __future__ import annotations

import datetime as dt

from migrate.core.timezones import Zone
from migrate.reports.forecast import WaveInput, forecast, programme_forecast

BELIZE = Zone.of("America/Belize")
NOW = BELIZE.wall(dt.datetime(2030, 6, 5, 12, 0))


def wave(id_: str, day: int | None, *, to_migrate: int = 10, done: int = 0, failed: int = 0, hours: float = 2.0,
         approved: bool = True) -> WaveInput:
    start = BELIZE.wall(dt.datetime(2030, 6, day, 22, 0)) if day else None
    return WaveInput(id_, to_migrate, done, failed, 0, hours, start, 6.0, approved)


def ends(result) -> dict[str, str | None]:
    return {w: f.forecast_end for w, f in result.items()}


def test_a_wave_on_track_keeps_its_window_and_the_programme_is_on_schedule():
    result = forecast([wave("wave-01", 10), wave("wave-02", 17)], failure_rate=0.0, now=NOW, zone=BELIZE)
    assert ends(result) == {"wave-01": "2030-06-11T04:00-06:00", "wave-02": "2030-06-18T04:00-06:00"}
    assert {f.status for f in result.values()} == {"scheduled"} and all(f.windows == 1 for f in result.values())
    verdict = programme_forecast(result, attempted=0, failed=0, unplanned=0, basis="")
    assert (verdict.verdict, verdict.days_late, verdict.forecast_end) == ("on schedule", 0, "2030-06-18T04:00-06:00")


def test_failed_mailboxes_cost_the_wave_another_window_and_the_programme_slips():
    result = forecast([wave("wave-01", 10, failed=3, to_migrate=3)], failure_rate=0.5, now=NOW, zone=BELIZE)
    failing = result["wave-01"]
    assert failing.status == "failing" and failing.windows == 2
    assert failing.forecast_end == "2030-06-12T04:00-06:00" and failing.days_late == 1
    assert "3 of its 3 mailboxes failed" in failing.reasons[0]
    verdict = programme_forecast(result, attempted=6, failed=3, unplanned=0, basis="")
    assert (verdict.verdict, verdict.days_late, verdict.headline) == ("behind", 1, "1 day behind the plan")


def test_the_failure_rate_so_far_puts_a_later_wave_at_risk():
    low = forecast([wave("wave-02", 17, to_migrate=10)], failure_rate=0.04, now=NOW, zone=BELIZE)["wave-02"]
    assert low.status == "scheduled", "0.4 of a mailbox expected to fail: no extra window"
    high = forecast([wave("wave-02", 17, to_migrate=10)], failure_rate=0.1, now=NOW, zone=BELIZE)["wave-02"]
    assert high.status == "at risk" and high.windows == 2 and "about 1 mailbox" in high.reasons[0]


def test_a_copy_longer_than_the_window_takes_the_following_free_nights():
    result = forecast([wave("wave-01", 10, hours=13.0), wave("wave-02", 11)], failure_rate=0.0, now=NOW,
                      zone=BELIZE)
    big = result["wave-01"]
    assert big.windows == 3, "13 h of copy in 6 h windows"
    # The 11th holds wave-02's window: wave-01 takes the 10th, the 12th and the 13th.
    assert big.forecast_end == "2030-06-14T04:00-06:00" and big.status == "at risk"
    assert result["wave-02"].forecast_end == "2030-06-12T04:00-06:00"


def test_a_passed_window_with_work_left_moves_to_the_next_free_night():
    result = forecast([wave("wave-01", 1, done=4), wave("wave-02", 5)], failure_rate=0.0, now=NOW, zone=BELIZE)
    late = result["wave-01"]
    assert late.status == "overdue" and "has passed with 6 mailboxes not done" in late.reasons[0]
    # Tonight (the 5th, 22:00) is wave-02's: wave-01 gets the 6th.
    assert late.forecast_end == "2030-06-07T04:00-06:00" and late.days_late == 5


def test_done_and_unscheduled_waves():
    result = forecast([wave("pilot", 1, done=10), wave("wave-09", None), wave("empty", 3, to_migrate=0)],
                      failure_rate=0.0, now=NOW, zone=BELIZE)
    assert [result[w].status for w in ("pilot", "wave-09", "empty")] == ["done", "not scheduled", "nothing planned"]
    assert programme_forecast(result, attempted=10, failed=0, unplanned=0, basis="").verdict == "not scheduled"
    done = forecast([wave("pilot", 1, done=10)], failure_rate=0.0, now=NOW, zone=BELIZE)
    assert programme_forecast(done, attempted=10, failed=0, unplanned=0, basis="").verdict == "done"
