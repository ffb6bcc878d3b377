"""``goldrl live``: the live engine's command (defined in ``live_engine.cli``), registered here.

``python -m live_engine`` runs the same function.
"""

from live_engine.cli import live

__all__ = ["live"]
