"""A session calendar's open minutes per year are computed once, not per backtest."""

from datetime import time, timedelta

import pytest

from goldrl_dagster.lib.evaluation.annualisation import Annualisation
from goldrl_dagster.lib.evaluation.metrics import bars_per_year, open_minutes_per_year
from goldrl_dagster.lib.market.closures import ClosureCalendar, WeeklyClosure


def test_open_minutes_per_year_are_computed_once_per_calendar(monkeypatch):
    calendar = ClosureCalendar(
        weekly=(WeeklyClosure(4, time(21, 7), timedelta(hours=48, minutes=3), "cache test"),)
    )
    calls = []
    real = ClosureCalendar.open_minutes_per_year

    def counted(self: ClosureCalendar) -> float:
        calls.append(self)
        return real(self)

    monkeypatch.setattr(ClosureCalendar, "open_minutes_per_year", counted)
    minutes = real(calendar)
    assert open_minutes_per_year(calendar) == minutes
    for interval in ("1m", "5m", "1h", "5m"):
        assert bars_per_year(interval, calendar) == pytest.approx(
            minutes / {"1m": 1, "5m": 5, "1h": 60}[interval]
        )
    assert Annualisation(calendar).record("5m")["open_minutes_per_year"] == minutes
    assert len(calls) == 1
    assert open_minutes_per_year(None) == 525_960
    assert open_minutes_per_year(ClosureCalendar()) == 525_960
    assert len(calls) == 1
