"""The product's one clock: pinned in every test process, advancing with real time, and the only
place product code reads the time of day from."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ps_integrations import clock
from tests.conftest import PINNED_NOW

ROOT = Path(__file__).resolve().parents[1]
# Reading the machine's clock for a date or a timestamp; monotonic timers are fine.
SYSTEM_CLOCK = re.compile(r"datetime\.now\(|datetime\.utcnow\(|date\.today\(|pendulum\.(now|today)\(|time\.time\(\)")
# Real time on purpose: credentials expire by the real clock of the remote system.
ALLOWED = {"plugins/ps_integrations/clock.py", "plugins/ps_integrations/hooks/salesforce.py"}


def test_the_suite_runs_on_the_pinned_clock():
    assert abs(clock.now() - PINNED_NOW) < timedelta(hours=2)  # pinned at session start, then ticking


def test_the_pinned_clock_advances_with_real_time(monkeypatch):
    monkeypatch.setenv(clock.PIN_VARIABLE, clock.pin_value(datetime(2030, 3, 31, 1, 59, 59, tzinfo=UTC)))
    first = clock.now()
    time.sleep(0.02)
    assert timedelta(0) < clock.now() - first < timedelta(seconds=5)
    assert first.tzinfo is not None and first.date().isoformat() == "2030-03-31"
    assert clock.today("Pacific/Auckland").isoformat() == "2030-03-31"  # 14:59 NZDT
    assert clock.today("America/Los_Angeles").isoformat() == "2030-03-30"


def test_a_child_process_reads_the_same_pinned_moment():
    code = "from ps_integrations import clock; print(clock.now().isoformat())"
    child = datetime.fromisoformat(subprocess.check_output([sys.executable, "-c", code], text=True).strip())
    assert abs(child - clock.now()) < timedelta(seconds=30)


def test_unpinned_it_is_the_system_clock(monkeypatch):
    monkeypatch.delenv(clock.PIN_VARIABLE)
    assert abs(clock.now().timestamp() - time.time()) < 1


@pytest.mark.parametrize("value", ["2026-11-23T10:00:00+00:00", "2026-11-23T10:00:00@1.0", "noon@yesterday"])
def test_a_malformed_pin_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv(clock.PIN_VARIABLE, value)
    with pytest.raises(ValueError, match=clock.PIN_VARIABLE):
        clock.now()


def test_product_and_sandbox_code_read_the_time_only_through_the_clock():
    offenders = []
    for folder in ("plugins", "dags", "sandbox"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in ALLOWED:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if SYSTEM_CLOCK.search(line.split("#")[0]):
                    offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "read the time through ps_integrations.clock:\n" + "\n".join(offenders)
