"""Jittered exponential backoff shared by the BingX clients."""

import pytest

from goldrl_dagster.lib.backoff import backoff_delay, check_backoff


def test_the_ceiling_doubles_up_to_the_cap_and_the_wait_stays_in_its_band():
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 5.0, 5.0]):
        waits = [backoff_delay(attempt, (0.5, 5.0)) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 10  # jittered, not fixed
        full = [backoff_delay(attempt, (0.5, 5.0), full_jitter=True) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in full) and min(full) < ceiling / 2


@pytest.mark.parametrize("pair", [(0, 1), (-1, 1), (2, 1)])
def test_a_pair_that_cannot_back_off_is_refused(pair):
    with pytest.raises(ValueError, match="reconnect_backoff must be"):
        check_backoff("reconnect_backoff", pair)
