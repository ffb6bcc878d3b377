"""Small helpers for text shown to people: bounded lists that say what they left out."""

from __future__ import annotations

from collections.abc import Sequence


def bounded_lines(lines: Sequence[str], limit: int, *, indent: str = "") -> list[str]:
    """The first ``limit`` lines, then one line saying how many were left out.

    Args:
        lines: Everything that could be listed.
        limit: How many to list at most (at least 1).
        indent: Prefix of the "… and N more" line.

    Returns:
        ``lines`` itself when it fits, otherwise its head plus ``"… and N more"``.
    """
    limit = max(1, limit)
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit], f"{indent}… and {len(lines) - limit} more"]


def bounded_join(items: Sequence[str], limit: int, separator: str = ", ") -> str:
    """``items`` joined, the first ``limit`` of them, then ``… and N more`` when truncated."""
    limit = max(1, limit)
    shown = separator.join(items[:limit])
    return shown if len(items) <= limit else f"{shown} … and {len(items) - limit} more"
