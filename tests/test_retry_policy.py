"""Retry policies: Hot's defaults, clamps and backoff formulas."""

import pytest

from runtime import Retry
from runtime.retry_policy import as_policy, delay_ms_before, has_retry_left


def test_an_int_means_that_many_retries_with_hot_defaults():
    assert as_policy(3).as_dict() == {
        "attempts": 3,
        "delay_ms": 1000,
        "backoff": "fixed",
        "max_delay_ms": 300_000,
        "jitter": False,
    }


def test_no_retry_by_default():
    policy = as_policy(None).as_dict()
    assert policy["attempts"] == 0
    assert not has_retry_left(policy, attempt=1)


def test_attempts_are_clamped_to_ten_and_delays_to_the_platform_limits(settings):
    settings.HOT = {**settings.HOT, "RETRY_MIN_DELAY_MS": 100}
    policy = Retry(50, delay=0.001, max_delay=10**9).as_dict()
    assert policy["attempts"] == 10
    assert policy["delay_ms"] == 100
    assert policy["max_delay_ms"] == 3_600_000


@pytest.mark.parametrize(
    "backoff, expected",
    [
        ("fixed", [1000, 1000, 1000, 1000]),
        ("linear", [1000, 2000, 3000, 4000]),
        ("exponential", [1000, 2000, 4000, 5000]),
    ],
)
def test_backoff_formulas_are_capped_by_max_delay(backoff, expected):
    policy = Retry(4, delay=1, backoff=backoff, max_delay=5).as_dict()
    assert [delay_ms_before(policy, n) for n in (1, 2, 3, 4)] == expected


def test_jitter_stays_within_ten_percent():
    policy = Retry(1, delay=1, jitter=True).as_dict()
    delays = {delay_ms_before(policy, 1) for _ in range(200)}
    assert min(delays) >= 900 and max(delays) <= 1100
    assert len(delays) > 1


def test_retry_attempts_left_counts_retries_after_the_first_try():
    policy = as_policy(2).as_dict()
    assert [has_retry_left(policy, a) for a in (1, 2, 3)] == [True, True, False]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"attempts": -1}, ValueError),
        ({"attempts": 1.5}, TypeError),
        ({"backoff": "random"}, ValueError),
        ({"delay": "1s"}, TypeError),
    ],
)
def test_a_malformed_policy_is_a_clear_error(kwargs, error):
    with pytest.raises(error):
        Retry(**kwargs)


def test_retry_must_be_an_int_or_a_policy():
    with pytest.raises(TypeError, match="retry must be"):
        as_policy("3")
