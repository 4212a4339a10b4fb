"""The pauses every retrying part shares: doubling up to a cap, with jitter where many clients retry at once."""

from __future__ import annotations

from core.backoff import Backoff, doubling_s


def test_pauses_double_from_the_first_up_to_the_longest_and_start_again_after_a_success() -> None:
    backoff = Backoff(2.0, 30.0, jitter=False)
    assert [backoff.next_delay() for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.failures == 6
    backoff.reset()
    assert backoff.next_delay() == 2.0


def test_a_failure_that_lasts_for_days_keeps_the_longest_pause() -> None:
    assert doubling_s(1.0, 60.0, 5000) == 60.0  # 2**5000 is no float: the doubling stops long before


def test_jitter_draws_each_pause_from_the_upper_half_of_its_span() -> None:
    pauses = [Backoff(4.0, 30.0).next_delay() for _ in range(200)]
    assert all(2.0 <= pause <= 4.0 for pause in pauses)
    assert len(set(pauses)) > 1
