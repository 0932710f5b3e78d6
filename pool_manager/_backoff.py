"""Capped exponential backoff with jitter."""

from __future__ import annotations

import random


class Backoff:
    """Delays `initial * 2**n` capped at `maximum`, each drawn in [cap/2, cap] ("equal jitter").

    The lower half keeps a failing dependency from being hit faster than `initial/2`; the
    random upper half spreads several managers apart.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"need 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        cap = min(self.maximum, self.initial * (2 ** min(self.failures, 32)))
        self.failures += 1
        return self._rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.failures = 0
