"""The pacer spaces calls evenly below the limit, with a bounded catch-up burst."""

from __future__ import annotations

import pytest

from ps_integrations.pacing import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_calls_are_spaced_by_the_interval():
    clock = FakeClock()
    pacer = Pacer(600, clock=clock, sleep=clock.sleep)
    waits = [round(pacer.wait(), 6) for _ in range(4)]
    assert waits == [0.0, 0.1, 0.1, 0.1]
    assert clock.now == pytest.approx(100.3)


def test_idle_time_is_not_saved_up_beyond_the_burst():
    clock = FakeClock()
    pacer = Pacer(60, burst=2, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 100  # idle for a long time
    assert [round(pacer.wait(), 6) for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_no_window_ever_holds_more_than_the_rate_plus_the_burst():
    clock = FakeClock()
    pacer = Pacer(600, burst=5, clock=clock, sleep=clock.sleep)
    times = []
    for number in range(2000):
        if number % 100 == 0:
            clock.now += 3  # a caller stalls now and then
        pacer.wait()
        times.append(clock.now)
    worst = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    assert worst <= 600 + 5


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)
