from collections.abc import Callable

import numpy as np
import pytest

Market = tuple[np.ndarray, np.ndarray]


def _random_market(n: int = 600, k: int = 5, seed: int = 3) -> Market:
    """Seeded random features and a random-walk close series of n bars."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, k))
    closes = 2500.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    return features, closes


@pytest.fixture(scope="session")
def random_market() -> Callable[..., Market]:
    return _random_market


@pytest.fixture
def market() -> Market:
    return _random_market()
