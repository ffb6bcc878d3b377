"""Markdown tables of rule verdicts, for asset metadata (the gate's and a rollout review's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def rules_markdown(rules: Sequence[dict[str, Any]]) -> str:
    """One row per rule: name, (kind,) whether it holds, value, threshold and detail.

    Args:
        rules: Rule dicts with ``rule``, ``passed``, ``value``, ``threshold``, ``detail`` and,
            for a rollout review, ``kind``.

    Returns:
        The table; a failing rule's verdict is in bold.
    """
    kinds = any("kind" in rule for rule in rules)
    head = ["rule", *(["kind"] if kinds else []), "holds", "value", "threshold", "detail"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for rule in rules:
        cells = [
            rule["rule"],
            *([rule.get("kind", "")] if kinds else []),
            "yes" if rule["passed"] else "**NO**",
            _number(rule["value"]),
            _number(rule["threshold"]),
            str(rule["detail"]).replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
