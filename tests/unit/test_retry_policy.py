import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from humanizer.worker.retry_policy import retry_countdown

pytestmark = pytest.mark.unit


@given(attempt=st.integers(0, 30), retry_after=st.one_of(st.none(), st.floats(0.01, 120)), seed=st.integers())
def test_retry_after_is_a_floor(attempt: int, retry_after: float | None, seed: int) -> None:
    c = retry_countdown(attempt, base=1.0, cap=60.0, retry_after=retry_after, rng=random.Random(seed))
    if retry_after is not None:
        assert c > retry_after, f"countdown {c:.3f}s would retry before Retry-After {retry_after:.3f}s"
    assert c > 0


@given(attempt=st.integers(0, 50), seed=st.integers())
def test_backoff_is_capped(attempt: int, seed: int) -> None:
    c = retry_countdown(attempt, base=1.0, cap=10.0, rng=random.Random(seed))
    assert c <= 11.0, f"countdown {c:.2f}s exceeds cap+1s"


def test_backoff_grows_and_is_jittered() -> None:
    rng = random.Random(7)
    means = [sum(retry_countdown(a, 1.0, 1000.0, rng=rng) for _ in range(200)) / 200 for a in range(5)]
    assert all(b > a * 1.6 for a, b in itertools.pairwise(means)), means
    samples = {round(retry_countdown(3, 1.0, 1000.0, rng=rng), 6) for _ in range(50)}
    assert len(samples) > 40, "no jitter: retries would come back in lock-step"
    assert min(retry_countdown(3, 1.0, 1000.0, rng=rng) for _ in range(200)) >= 4.0  # equal jitter: half fixed
