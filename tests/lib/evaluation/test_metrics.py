import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.evaluation.metrics import (
    METRIC_KEYS,
    bars_per_year,
    max_drawdown,
    performance_metrics,
    round_trips,
)

T0 = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)


def curve(values, step=dt.timedelta(hours=1)):
    return pl.DataFrame(
        {"ts": [T0 + (i + 1) * step for i in range(len(values))], "equity": values},
        schema={"ts": pl.Datetime("us", "UTC"), "equity": pl.Float64},
    )


def fills(rows, step=dt.timedelta(hours=1)):
    """rows: (bar index, side, quantity, price, commission); fills stamp at the bar close."""
    return pl.DataFrame(
        {
            "ts": [T0 + (bar + 1) * step for bar, *_ in rows],
            "side": [r[1] for r in rows],
            "quantity": [float(r[2]) for r in rows],
            "price": [float(r[3]) for r in rows],
            "commission": [float(r[4]) for r in rows],
        },
        schema={
            "ts": pl.Datetime("us", "UTC"),
            "side": pl.String,
            "quantity": pl.Float64,
            "price": pl.Float64,
            "commission": pl.Float64,
        },
    )


NO_FILLS = fills([])


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("1m", 525_960.0),
        ("15m", 35_064.0),
        ("1h", 8_766.0),
        ("4h", 2_191.5),
        ("1d", 365.25),
        ("1w", 365.25 / 7),
        ("1M", 12.0),
        ("3M", 4.0),
    ],
)
def test_bars_per_year_for_a_24_7_venue(interval, expected):
    assert bars_per_year(interval) == pytest.approx(expected)


@pytest.mark.parametrize("interval", ["", "1x", "0m", "1H", None])
def test_bars_per_year_rejects_unknown_intervals(interval):
    with pytest.raises(ValueError, match="unknown bar interval"):
        bars_per_year(interval)


def test_sharpe_and_sortino_hand_computed():
    # Returns +10%, -10%, +10% on a start of 100: 110, 99, 108.9.
    metrics = performance_metrics(
        curve([110.0, 99.0, 108.9]), NO_FILLS, starting_balance=100.0, interval="1d"
    )

    returns = np.array([0.1, -0.1, 0.1])
    mean = returns.mean()
    assert metrics["sharpe"] == pytest.approx(mean / returns.std(ddof=1) * math.sqrt(365.25))
    downside = math.sqrt(0.01 / 3)  # one negative return of -0.1 over three bars
    assert metrics["sortino"] == pytest.approx(mean / downside * math.sqrt(365.25))
    assert metrics["net_pnl"] == pytest.approx(8.9)
    assert metrics["return_pct"] == pytest.approx(8.9)
    assert metrics["max_drawdown"] == pytest.approx(0.1)


def test_annualisation_scales_with_the_interval():
    values = [101.0, 100.0, 102.0, 101.5]
    daily = performance_metrics(curve(values), NO_FILLS, starting_balance=100.0, interval="1d")
    minute = performance_metrics(curve(values), NO_FILLS, starting_balance=100.0, interval="1m")

    assert minute["sharpe"] / daily["sharpe"] == pytest.approx(math.sqrt(1_440))


def test_flat_curve_has_no_ratios_and_no_exposure():
    metrics = performance_metrics(
        curve([100.0] * 5), NO_FILLS, starting_balance=100.0, interval="1h"
    )

    assert metrics["sharpe"] is None
    assert metrics["sortino"] is None
    assert metrics["net_pnl"] == 0.0
    assert metrics["trade_count"] == 0
    assert metrics["win_rate"] is None
    assert metrics["exposure"] == 0.0
    assert metrics["avg_holding_bars"] is None
    assert metrics["turnover"] == 0.0
    assert list(metrics) == list(METRIC_KEYS)
    assert json.loads(json.dumps(metrics)) == metrics


def test_trades_exposure_turnover_and_holding_hand_computed():
    # Long 2 @100 at bar 0, closed @110 at bar 3; short 1 @110 at bar 5, covered @100 at bar 9
    # (flip-free). 10 bars; commission 1 per fill.
    rows = [
        (0, "BUY", 2, 100, 1.0),
        (3, "SELL", 2, 110, 1.0),
        (5, "SELL", 1, 110, 1.0),
        (9, "BUY", 1, 100, 1.0),
    ]
    equity = [1000.0] * 10
    metrics = performance_metrics(
        curve(equity),
        fills(rows),
        starting_balance=1000.0,
        interval="1h",
        total_funding=0.25,
    )

    assert metrics["trade_count"] == 2
    assert metrics["win_rate"] == 1.0  # +18 and +8 after fees
    assert metrics["fill_count"] == 4
    assert metrics["total_fees"] == 4.0
    assert metrics["total_funding"] == 0.25
    assert metrics["turnover"] == pytest.approx((200 + 220 + 110 + 100) / 1000)
    # Open after the fills of bars 0,1,2 and 5,6,7,8: 7 of 10 bars.
    assert metrics["exposure"] == pytest.approx(0.7)
    assert metrics["avg_holding_bars"] == pytest.approx((3 + 4) / 2)
    assert metrics["avg_holding_hours"] == pytest.approx(3.5)


def test_round_trips_split_a_flip_and_its_commission():
    trips = round_trips(
        fills([(0, "BUY", 1, 100, 0.2), (1, "SELL", 2, 90, 0.4), (2, "BUY", 1, 95, 0.2)])
    )

    # Long 1 @100 -> flip at 90 (half the 0.4 fee each side) -> short 1 @90 covered at 95.
    assert [(t.open_fill, t.close_fill) for t in trips] == [(0, 1), (1, 2)]
    assert trips[0].pnl == pytest.approx(-10 - 0.2 - 0.2)
    assert trips[1].pnl == pytest.approx(-5 - 0.2 - 0.2)


def test_round_trip_scaling_in_uses_the_average_price():
    trips = round_trips(
        fills([(0, "BUY", 1, 100, 0.0), (1, "BUY", 1, 110, 0.0), (2, "SELL", 2, 120, 0.0)])
    )

    assert len(trips) == 1
    assert trips[0].pnl == pytest.approx(2 * (120 - 105))


def test_max_drawdown_starts_at_the_balance_and_caps_at_one():
    assert max_drawdown(100.0, np.array([90.0, 120.0, 60.0, 130.0])) == pytest.approx(0.5)
    assert max_drawdown(100.0, np.array([-50.0])) == 1.0
    assert max_drawdown(100.0, np.array([])) == 0.0


def test_ratios_are_none_once_equity_is_not_positive():
    metrics = performance_metrics(
        curve([50.0, -10.0, 5.0]), NO_FILLS, starting_balance=100.0, interval="1h"
    )

    assert metrics["sharpe"] is None
    assert metrics["max_drawdown"] == 1.0


@pytest.mark.parametrize(
    ("equity", "balance", "match"),
    [
        ([], 100.0, "empty"),
        ([float("nan")], 100.0, "NaN"),
        ([100.0], 0.0, "starting_balance"),
    ],
)
def test_bad_inputs_are_rejected(equity, balance, match):
    with pytest.raises(ValueError, match=match):
        performance_metrics(curve(equity), NO_FILLS, starting_balance=balance, interval="1h")


SPOT_GOLD = {
    "sessions": [
        {
            "timezone": "America/New_York",
            "daily_break": {"start": "17:00", "end": "18:00"},
            "weekend": {"start": "friday 17:00", "end": "sunday 18:00"},
        }
    ]
}


def test_empty_calendar_keeps_the_24_7_numbers_of_the_perpetuals():
    from goldrl_dagster.lib.market.closures import NO_CLOSURES, parse_closures

    values = [101.0, 100.0, 102.0, 101.5, 103.0]
    plain = performance_metrics(curve(values), NO_FILLS, starting_balance=100.0, interval="1h")
    maintenance = parse_closures(
        {"closures": [{"start": "2025-03-01T02:00:00Z", "end": "2025-03-01T03:30:00Z"}]}
    )
    for calendar in (None, NO_CLOSURES, parse_closures({}), maintenance):
        assert bars_per_year("1m", calendar) == 525_960.0
        again = performance_metrics(
            curve(values), NO_FILLS, starting_balance=100.0, interval="1h", calendar=calendar
        )
        assert again == plain  # exactly, not approximately


def test_spot_gold_is_annualised_by_its_open_minutes():
    from goldrl_dagster.lib.market.closures import parse_closures

    calendar = parse_closures(SPOT_GOLD)
    # Open 115 of the week's 168 hours: Sunday 18:00 to Friday 17:00 New York time, minus a
    # one-hour break Monday to Thursday. DST switches do not change the local hours.
    week_share = 115 / 168
    assert bars_per_year("1m", calendar) == pytest.approx(525_960 * week_share, rel=1e-3)
    assert bars_per_year("1h", calendar) == pytest.approx(8_766 * week_share, rel=1e-3)
    assert bars_per_year("1M", calendar) == 12.0
    values = [101.0, 100.0, 102.0, 101.5, 103.0]
    plain = performance_metrics(curve(values), NO_FILLS, starting_balance=100.0, interval="5m")
    gold = performance_metrics(
        curve(values), NO_FILLS, starting_balance=100.0, interval="5m", calendar=calendar
    )
    ratio = math.sqrt(bars_per_year("5m", calendar) / bars_per_year("5m"))
    assert gold["sharpe"] == pytest.approx(plain["sharpe"] * ratio)
    assert gold["sortino"] == pytest.approx(plain["sortino"] * ratio)
    assert gold["sharpe"] < plain["sharpe"]
