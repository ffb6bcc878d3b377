"""Bounded lists for people: they say how many they left out."""

from goldrl_dagster.lib.text import bounded_join, bounded_lines


def test_a_list_that_fits_is_unchanged():
    assert bounded_lines(["a", "b"], 2) == ["a", "b"]
    assert bounded_join(["a", "b"], 2) == "a, b"


def test_a_truncated_list_counts_the_rest():
    lines = [f"gap {i}" for i in range(57)]
    shown = bounded_lines(lines, 20, indent="  ")
    assert shown[:20] == lines[:20]
    assert shown[20:] == ["  … and 37 more"]
    assert bounded_join(["a", "b", "c"], 1) == "a … and 2 more"
