"""The pacer spaces calls evenly below the limit, without bursts."""

from __future__ import annotations

import pytest

from ps_integrations.pacing import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_calls_are_spaced_by_the_interval():
    clock = FakeClock()
    pacer = Pacer(600, clock=clock, sleep=clock.sleep)
    waits = [round(pacer.wait(), 6) for _ in range(4)]
    assert waits == [0.0, 0.1, 0.1, 0.1]
    assert clock.now == pytest.approx(100.3)


def test_idle_time_is_not_saved_up_as_a_burst():
    clock = FakeClock()
    pacer = Pacer(60, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 10  # idle for ten intervals
    assert pacer.wait() == 0.0
    assert pacer.wait() == pytest.approx(1.0)


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)
