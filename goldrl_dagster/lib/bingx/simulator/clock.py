"""Virtual exchange time for the simulator: a wall-clock anchor that may run faster than real."""

from __future__ import annotations

import time


class SimClock:
    """Virtual time: ``now = anchor_ms + elapsed_real_seconds * speed * 1000``.

    Args:
        anchor_ms: Virtual time at construction, epoch ms; ``None`` means the wall clock now.
        speed: Virtual seconds per real second (60 makes one simulated minute pass per second).
    """

    def __init__(self, anchor_ms: int | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.anchor_ms = int(time.time() * 1000) if anchor_ms is None else int(anchor_ms)
        self.speed = float(speed)
        self._started = time.monotonic()

    def now_ms(self) -> int:
        """Current virtual time, epoch milliseconds."""
        return self.anchor_ms + int((time.monotonic() - self._started) * 1000.0 * self.speed)

    def real_seconds_until(self, virtual_ms: int) -> float:
        """Real seconds until the virtual clock reaches ``virtual_ms`` (0 if already past)."""
        return max(0.0, (virtual_ms - self.now_ms()) / 1000.0 / self.speed)
